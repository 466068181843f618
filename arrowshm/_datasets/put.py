"""Writing a dataset version: size it, write it once into a segment, publish it.

A version lives in its own segment: a 4 KiB header, then the table as an Arrow
IPC stream written straight into the mapping (sized beforehand by a counting
pass). Publishing is one seqlock write of the registry entry
(:meth:`arrowshm._shm.registry.Registry.publish`), so a reader sees either the
previous version or the new one, whole. Versions beyond the retention count
are retired (:func:`arrowshm._datasets.lifecycle.retire`).

The segment is a spare of the namespace when one fits (pages already faulted
in: the copy runs at memcpy speed; :mod:`arrowshm._shm.pool`), else it is
created.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa

from .._arrow import IPC_OPTIONS, schema_fingerprint
from .._errors import ConflictError
from .._info import DatasetInfo
from .._names import validate_name
from .._proc import identity
from .._shm import header, pool
from .._shm import layout as L
from .._shm.context import Context
from .._shm.registry import EntryView, Record, retain_history
from .._shm.segment import Segment
from .entries import make_info
from .inputs import check_retain, check_ttl, to_table
from .lifecycle import retire

__all__ = ["allocate_segment", "publish_version", "put"]

_PARALLEL_COPY_BYTES = 32 << 20
_CONTINUATION = b"\xff\xff\xff\xff"


def put(ctx: Context, name: str, data: Any, *, retain: int = 1,
        ttl: float | None = None) -> DatasetInfo:
    """Publish *data* as the next version of dataset *name* (see :func:`arrowshm.put`)."""
    validate_name(name)
    retain = check_retain(retain)
    ttl_ns = check_ttl(ttl)
    table = to_table(data)
    reg = ctx.registry
    found = reg.cached_lookup(name)
    if found is not None and reg.kind_at(found[0]) != L.KIND_DATASET:
        reg.forget(name)  # (a cached slot may since hold another name: look again)
        found = reg.lookup(name)
        if found is not None:
            reg.check_kind(found[0], name, L.KIND_DATASET)

    facts = _schema_facts(table.schema)
    schema_message = facts.message
    fp = facts.fp
    data_bytes = _stream_bytes(table, facts)
    seg_bytes = L.SEGMENT_HEADER_BYTES + data_bytes

    seg_id, seg, fresh = allocate_segment(ctx, seg_bytes)
    published = False
    try:
        header.begin_version(seg, data_bytes, fresh=fresh)
        end = L.SEGMENT_HEADER_BYTES + data_bytes
        out = pa.FixedSizeBufferWriter(  # (a slice of a py_buffer would be immutable)
            pa.py_buffer(memoryview(seg.mm)[L.SEGMENT_HEADER_BYTES:end])
        )
        if data_bytes >= _PARALLEL_COPY_BYTES:
            out.set_memcopy_threads(min(4, os.cpu_count() or 1))
        with pa.ipc.new_stream(out, table.schema, options=IPC_OPTIONS) as w:
            w.write_table(table)
            batch = _single_batch(w, schema_message.size, out.tell(), seg.mm)
        header.seal(seg, table.num_rows, fp)
        info = publish_version(ctx, name, seg, seg_id, data_bytes, table.num_rows, fp,
                               retain, ttl_ns, table.schema, batch)
        published = True
    finally:
        if not published:
            reg.free(seg)
    return info


class _SchemaFacts:
    """What a put needs of a schema: its IPC message, fingerprint, dictionaries."""

    __slots__ = ("dictionaries", "fp", "message", "metadata_keys", "schema")

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.message = schema.serialize()  # as the stream writer emits it first
        self.fp = schema_fingerprint(schema, self.message)
        self.metadata_keys = _metadata_keys(schema)
        self.dictionaries = any(_has_dictionary(f.type) for f in schema)


def _has_dictionary(t: pa.DataType) -> bool:
    return pa.types.is_dictionary(t) or any(
        _has_dictionary(t.field(i).type) for i in range(getattr(t, "num_fields", 0)))


def _metadata_keys(schema: pa.Schema) -> tuple[bytes, ...]:
    md = schema.metadata
    return () if md is None else tuple(md)


# the schemas of the latest puts of this process, newest first: a put of a table whose
# schema equals one of them skips serializing and hashing it again
_recent_schemas: tuple[_SchemaFacts, ...] = ()
_RECENT_SCHEMAS = 8


def _schema_facts(schema: pa.Schema) -> _SchemaFacts:
    """The facts of *schema*, from the recent schemas when one is equal to it.

    Equal means Arrow's equality, metadata included, with the schema metadata's keys
    in the same order (the serialized message keeps their order; Arrow's equality
    does not look at it).
    """
    global _recent_schemas
    recent = _recent_schemas
    for facts in recent:
        if facts.schema is schema or (
            schema.equals(facts.schema, check_metadata=True)
            and _metadata_keys(schema) == facts.metadata_keys
        ):
            return facts
    facts = _SchemaFacts(schema)
    _recent_schemas = (facts, *recent[: _RECENT_SCHEMAS - 1])
    return facts


def _stream_bytes(table: pa.Table, facts: _SchemaFacts) -> int:
    """Bytes of *table* written as an Arrow IPC stream: for a table of one record batch
    (no dictionaries) the schema message, the batch message and the 8-byte
    end-of-stream marker; otherwise a counting pass over the whole stream."""
    if not facts.dictionaries and table.num_rows:
        batches = table.to_batches()  # (the batches the stream writer writes)
        if len(batches) == 1:
            try:
                return int(facts.message.size + pa.ipc.get_record_batch_size(batches[0]) + 8)
            except pa.ArrowException:  # (e.g. lengths beyond 32 bits): count instead
                pass
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as w:
        w.write_table(table)
    return int(sink.size())


def _single_batch(
    writer: pa.ipc.RecordBatchStreamWriter, start: int, end: int, mm: Any
) -> tuple[int, int] | None:
    """(offset, length) in the payload of the only record-batch message just
    written (the stream begins with the schema message, *start* bytes), or None
    when there are several batches or dictionary batches."""
    stats = writer.stats
    if stats.num_record_batches != 1 or stats.num_dictionary_batches != 0:
        return None
    at = L.SEGMENT_HEADER_BYTES + start
    if not 0 < start < end or mm[at : at + 4] != _CONTINUATION:
        return None  # (never seen: a writer that frames messages differently)
    return start, end - start


def allocate_segment(ctx: Context, seg_bytes: int) -> tuple[int, Segment, bool]:
    """A segment of at least *seg_bytes* in state WRITING: a spare of the namespace
    when one fits (its pages already faulted in), else a new one. Returns (id,
    segment, fresh).

    Raises
    ------
    QuotaExceededError, ShmFullError
        For a new segment that does not fit even once spares are freed (nothing
        is created).
    AccessDeniedError
        When other users' files squat the names tried.
    """
    taken = pool.take(ctx, seg_bytes)
    if taken is not None:
        pool.nudge_reserve(ctx)
        return taken[0], taken[1], False
    seg_id, seg = pool.create(ctx, seg_bytes, header.init_fresh, populate=True)
    return seg_id, seg, True


def publish_version(
    ctx: Context,
    name: str,
    seg: Segment,
    seg_id: int,
    data_bytes: int,
    num_rows: int,
    fp: int,
    retain: int,
    ttl_ns: int,
    schema: pa.Schema,
    batch: tuple[int, int] | None = None,
) -> DatasetInfo:
    """Make the SEALED *seg* the next version of *name*; retire what falls out of
    retention. *batch* locates the payload's only record-batch message.

    Raises
    ------
    ConflictError
        When *name* is a stream.
    RegistryFullError
        When *name* is new and the registry is full.
    """
    pid, start = identity()
    retired: list[int] = []

    def make(old: EntryView, name_hash: int) -> Record:
        if old.kind != L.KIND_DATASET:  # (publish checked the kind; never reached)
            raise ConflictError(f"{name!r} is not a dataset", name=name)
        version = old.version + 1
        keep, out = retain_history([seg_id, *old.history()], retain)
        retired[:] = out
        header.stamp_published(seg, version, name_hash, old.generation, batch)
        now = time.time_ns()
        return Record(
            version=version, segment_id=seg_id, segment_bytes=seg.size, data_bytes=data_bytes,
            num_rows=num_rows, schema_fp=fp, created_ns=old.created_ns or now, updated_ns=now,
            ttl_ns=ttl_ns, retain=retain, owner_pid=pid, owner_start=start, history=keep,
        )  # fmt: skip

    reg = ctx.registry
    # only once the record names it: PUBLISHED + unreferenced means "retired" to gc
    done = reg.publish(name, L.KIND_DATASET, make,
                       then=lambda: header.set_state(seg, L.SEG_PUBLISHED))
    ctx.remember_own(seg_id, seg)
    reg.count_put()
    retire(ctx, retired)
    return make_info(ctx.namespace, name, done.record, schema, done.record.version,
                     reg.segment_name(seg_id))
