"""Reading datasets: get (zero-copy), info, list, wait.

``get`` pins the version's segment and wraps the payload with ``pyarrow.ipc``
— every buffer of the table points into the mapping; its cost depends on the
number of columns and batches, not on bytes. A reader reuses the mapping of a
segment it read before (:mod:`arrowshm._shm.mapcache`) and, for a single-batch
version of a schema it already parsed, decodes just the batch message (the
header's batch locator, FORMAT.md).

Each process keeps the newest table it mapped per name (one per name, so a
superseded version is released at the next ``get`` of that name): a repeated
``get`` of an unchanged version returns it without touching the segment. With
it the cache keeps the entry's stamp (:func:`arrowshm.kernels.registry.
registry_entry_stamp`: the record's seqlock sequence, valid while the entry is
LIVE under the same generation) taken around the record read that found that
version current, and the TTL deadline: a repeated ``get`` is then one kernel
call that finds the stamp unchanged — no publish, TTL or retention change and
no delete since — and the deadline not passed. Anything else takes the full
path, which reads the record through the seqlock.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import threading
import time

import pyarrow as pa

from .._arrow import PARSE_ERRORS
from .._errors import (
    ArrowShmError,
    CorruptSegmentError,
    InvalidArgumentError,
    NotFoundError,
    WaitTimeoutError,
    from_status,
)
from .._info import DatasetInfo, VersionReader
from .._names import validate_name
from .._proc import command_name, identity
from .._shm import header
from .._shm import layout as L
from .._shm.context import Context
from .._shm.mapcache import (
    ReaderPin,
    collect,
    flush_releases,
    release_later,
    release_soon,
    take_idle,
)
from .._shm.registry import EntryView, Registry
from .._shm.segment import Segment
from ..kernels.pins import PIN_BAD_FORMAT, PIN_OK, PIN_STALE, pin_version
from ..kernels.registry import registry_entry_stamp
from .entries import Recycled, dataset_entry, make_info, resolve

__all__ = ["clear_cache", "forget_table", "get", "info", "list_datasets", "wait"]

_GET_RETRIES = 64
_HAS_TO_TABLE = hasattr(pa.RecordBatch, "to_table")
_NEVER = (1 << 63) - 1
_time_ns = time.time_ns


class _Cached:
    """The newest table of a name this process mapped, and how to tell cheaply that
    it is still the current version (the fast path of :func:`get`)."""

    __slots__ = ("entry", "expires_ns", "generation", "reg", "schema_fp", "segment_id",
                 "stamp", "table", "version")

    def __init__(self, version: int, segment_id: int, table: pa.Table, schema_fp: int,
                 reg: Registry | None = None, entry: int = 0, generation: int = 0,
                 stamp: int = -1, expires_ns: int = _NEVER) -> None:
        self.version = version
        self.segment_id = segment_id
        self.table = table
        self.schema_fp = schema_fp  # fingerprint of table.schema, from the segment header
        self.reg = reg  # the registry whose entry the stamp is of
        self.entry = entry  # word index of the entry in reg.words
        self.generation = generation
        # the entry's stamp when `version` was found current there; -1: unknown, so
        # every get takes the full path
        self.stamp = stamp
        self.expires_ns = expires_ns  # CLOCK_REALTIME ns after which the TTL has passed


# (namespace, name) -> newest version this process mapped
_cache: dict[tuple[str, str], _Cached] = {}
_cache_lock = threading.Lock()


def _entry_word(reg: Registry, slot: int) -> int:
    return reg.ew(slot, 0)  # the entry's first word (kernels.registry reads from there)


def _stamp_before(reg: Registry, name: str) -> tuple[int, int, int] | None:
    """(slot, generation, stamp) of *name*'s entry before its record is read, or None."""
    found = reg.cached_lookup(name)
    if found is None:
        return None
    slot, gen = found
    stamp = registry_entry_stamp(reg.words, _entry_word(reg, slot), gen)
    return (slot, gen, stamp) if stamp >= 0 else None


def _current(reg: Registry, view: EntryView, before: tuple[int, int, int] | None,
             version: int, segment_id: int, table: pa.Table, schema_fp: int) -> _Cached:
    """The cache record of the current version *version* read in *view*: with the
    stamp taken *before* the record read if it is still the entry's stamp now (then
    the record read is exactly the one of that stamp), else with none."""
    ttl = view.ttl_ns
    expires = view.updated_ns + ttl if ttl else _NEVER
    entry = _entry_word(reg, view.slot)
    stamp = -1
    if before is not None and before[:2] == (view.slot, view.generation) and (
        registry_entry_stamp(reg.words, entry, view.generation) == before[2]
    ):
        stamp = before[2]
    return _Cached(version, segment_id, table, schema_fp, reg, entry, view.generation, stamp,
                   expires)


def _cache_put(key: tuple[str, str], new: _Cached) -> None:
    with _cache_lock:
        cur = _cache.get(key)
        if cur is None or cur.version <= new.version:
            _cache[key] = new
    if cur is not None and cur.table is not new.table:
        release_soon(cur)  # not on this get's path (see arrowshm._shm.mapcache)


def forget_table(ctx: Context, name: str) -> None:
    """Drop this process's cached table of *name* (tables handed out stay valid)."""
    with _cache_lock:
        _cache.pop((ctx.namespace, name), None)


def clear_cache() -> None:
    """Drop this process's cached tables and idle mappings (tables already handed
    out stay valid)."""
    with _cache_lock:
        _cache.clear()
    flush_releases()


def _pin_version(ctx: Context, segment_id: int, version: int, view: EntryView,
                 schema_fp: int) -> tuple[Segment, ReaderPin, int, int, int, int]:
    """Map (or reuse an idle mapping of) the segment of *version* and pin it:
    (segment, pin, payload offset, length, batch offset, batch length); see
    :func:`arrowshm.kernels.pins.pin_version`.

    Raises
    ------
    NotFoundError
        When the segment is gone (retired since the registry was read).
    Recycled
        When it now holds another version (recycled since).
    CorruptSegmentError, FormatVersionError
        When its header is not one this arrowshm can read.
    """
    reg = ctx.registry
    shm_name = reg.segment_name(segment_id)
    key = (shm_name, reg.created_ns, reg.creator_pid)
    seg = take_idle(key) or Segment.open(shm_name, writable=True)
    pid, start = identity()
    status, slot, off, n, boff, blen = pin_version(
        seg.words, seg.size, L.SEGMENT_MAGIC, L.FORMAT_VERSION, pid, start, version,
        view.generation, reg.name_hash_at(view.slot), schema_fp, time.time_ns(),
    )  # fmt: skip
    if status == PIN_OK:
        return seg, ReaderPin(seg, slot, pid, key), off, n, boff, blen
    if status == PIN_STALE:
        release_later(seg)  # recycled, being rewritten or reclaimed: map it afresh
        raise Recycled()
    what = f"{seg.name} (dataset {view.name!r} version {version})"
    if status == PIN_BAD_FORMAT:  # (slot carries the format version found)
        raise from_status(status, what, "read it with the arrowshm that wrote it",
                          shm_name=seg.name, found=slot, expected=L.FORMAT_VERSION)
    raise from_status(status, what, "delete the dataset and put it again", shm_name=seg.name)


def get(ctx: Context, name: str, *, version: int | None = None,
        validate: bool = False) -> pa.Table:
    """The latest (or a retained older) version of dataset *name*, zero-copy
    (see :func:`arrowshm.get`)."""
    validate_name(name)
    collect()  # the version a previous get superseded (nothing left when wait() ran it)
    if version is None:
        # fast path: the table this process holds, if the entry has not changed since
        cached = _cache.get((ctx.namespace, name))
        if (
            cached is not None
            and cached.reg is ctx.registry
            and _time_ns() <= cached.expires_ns
            and registry_entry_stamp(cached.reg.words, cached.entry, cached.generation)
            == cached.stamp
        ):
            if validate:
                _validate(cached.table, name)
            return cached.table
    return _get(ctx, name, version, validate)


def _get(ctx: Context, name: str, version: int | None, validate: bool) -> pa.Table:
    """The full path of :func:`get`: read the entry, reuse or pin the version."""
    reg = ctx.registry
    key = (ctx.namespace, name)
    for attempt in range(_GET_RETRIES):
        before = _stamp_before(reg, name)
        view = dataset_entry(reg, name)
        want, seg_id = resolve(view, version, ctx.namespace)
        cached = _cache.get(key)
        if cached is not None and cached.version == want and cached.segment_id == seg_id:
            if want == view.version:  # (re)arm the fast path
                _cache_put(key, _current(reg, view, before, want, seg_id, cached.table,
                                         cached.schema_fp))
            if validate:
                _validate(cached.table, name)
            return cached.table
        try:
            seg, p, off, n, boff, blen = _pin_version(
                ctx, seg_id, want, view, cached.schema_fp if cached is not None else 0
            )
        except (NotFoundError, Recycled):
            # retired or recycled between reading the entry and opening it: read it again
            reg.forget(name)
            if attempt > 8:
                time.sleep(0.0001 * attempt)
            continue
        # every buffer of the table keeps `p` alive; the last one freed releases the pin
        if blen and cached is not None:
            # one record batch of a schema this process already parsed (same fingerprint)
            buf = pa.foreign_buffer(seg.address + off + boff, blen, base=p)
            table = _read_batch(buf, cached.table.schema, name, seg.name)
            fp = cached.schema_fp
        else:
            buf = pa.foreign_buffer(seg.address + off, n, base=p)
            table = _read_table(buf, name, seg.name)
            fp = header.schema_fp(seg)
        if validate:
            _validate(table, name)
        if want == view.version:
            _cache_put(key, _current(reg, view, before, want, seg_id, table, fp))
        return table
    raise NotFoundError(f"{name!r} kept changing while it was read; try again", name=name)


def _read_table(buf: pa.Buffer, name: str, shm_name: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(buf).read_all()
    except PARSE_ERRORS as exc:
        raise CorruptSegmentError(
            f"{shm_name} (dataset {name!r}) does not hold a valid Arrow stream: {exc}; "
            "delete the dataset and put it again",
            name=name,
            shm_name=shm_name,
        ) from exc


def _read_batch(buf: pa.Buffer, schema: pa.Schema, name: str, shm_name: str) -> pa.Table:
    try:
        batch = pa.ipc.read_record_batch(buf, schema)
        if _HAS_TO_TABLE:  # (pyarrow >= 16) half the cost of Table.from_batches
            return batch.to_table()
        return pa.Table.from_batches([batch], schema)
    except PARSE_ERRORS as exc:
        raise CorruptSegmentError(
            f"{shm_name} (dataset {name!r}) does not hold a valid Arrow record batch: "
            f"{exc}; delete the dataset and put it again",
            name=name,
            shm_name=shm_name,
        ) from exc


def _validate(table: pa.Table, name: str) -> None:
    try:
        table.validate(full=True)
    except (pa.ArrowException, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise CorruptSegmentError(
            f"dataset {name!r} failed Arrow validation: {exc}", name=name
        ) from exc


def _open_version(ctx: Context, segment_id: int, version: int,
                  view: EntryView) -> tuple[Segment, int, int, int]:
    """Map the segment of *version* read-only, unpinned (for its schema and size):
    (segment, payload offset, length, state word).

    Raises
    ------
    NotFoundError
        When the segment is gone (retired since the registry was read).
    Recycled
        When it now holds another version (recycled since).
    """
    reg = ctx.registry
    seg = Segment.open(reg.segment_name(segment_id))
    header.check(seg, f"dataset {view.name!r}")
    found = header.published_payload(seg, version, view.generation,
                                     reg.name_hash_at(view.slot))
    if found is None:
        raise Recycled()
    off, n, word = found
    return seg, off, n, word


def _schema_of(ctx: Context, view: EntryView, version: int, seg_id: int) -> pa.Schema:
    cached = _cache.get((ctx.namespace, view.name))
    if cached is not None and (
        (cached.segment_id == seg_id and cached.version == version)
        # the current version, of the schema this process already holds a table of
        or (version == view.version and cached.schema_fp and view.schema_fp == cached.schema_fp)
    ):
        return cached.table.schema
    seg, off, n, word = _open_version(ctx, seg_id, version, view)
    try:
        schema = pa.ipc.open_stream(pa.py_buffer(seg.mm).slice(off, n)).schema
    except PARSE_ERRORS as exc:
        if header.state_word(seg) != word:
            raise Recycled() from exc
        raise CorruptSegmentError(f"dataset {view.name!r} has an invalid schema: {exc}",
                                  name=view.name) from exc
    if header.state_word(seg) != word:  # recycled while the schema was parsed
        raise Recycled()
    return schema


def info(ctx: Context, name: str, version: int | None = None) -> DatasetInfo:
    """Describe *version* (the latest by default) of dataset *name* without mapping
    its data, with the processes reading each retained version (see
    :func:`arrowshm.info`)."""
    validate_name(name)
    reg = ctx.registry
    for _ in range(_GET_RETRIES):
        view = dataset_entry(reg, name)
        result = _describe(ctx, name, view, version)
        if result is not None:
            readers, overflow = _readers(ctx, view)
            return dataclasses.replace(result, readers=readers, readers_overflow=overflow)
        reg.forget(name)
    raise NotFoundError(f"{name!r} kept changing while it was read; try again", name=name)


def _describe(ctx: Context, name: str, view: EntryView,
              version: int | None = None) -> DatasetInfo | None:
    """The :class:`DatasetInfo` of *version* (the latest by default) of the entry
    *view*, or None when its segment was retired or recycled meanwhile."""
    reg = ctx.registry
    want, seg_id = resolve(view, version, ctx.namespace)
    try:
        schema = _schema_of(ctx, view, want, seg_id)
    except (NotFoundError, Recycled):
        return None
    result = make_info(ctx.namespace, name, view, schema, want, reg.segment_name(seg_id))
    if want != view.version:  # an older version: its sizes are in its own header
        try:
            seg, _, n, word = _open_version(ctx, seg_id, want, view)
            rows = header.num_rows(seg)
            if header.state_word(seg) != word:
                raise Recycled()
        except (NotFoundError, Recycled):
            return None
        result = dataclasses.replace(result, num_rows=rows, nbytes=n)
    return result


def _readers(ctx: Context, view: EntryView) -> tuple[tuple[VersionReader, ...],
                                                     tuple[int, ...]]:
    """The pins of every retained version of the entry *view* (newest version first)
    as :class:`VersionReader`, and the versions whose pin table overflowed.

    A version whose segment was retired, recycled or changed state while its
    pins were read is left out: it is no longer the version *view* named, or
    its readers are changing at that instant (pins are a snapshot anyway).
    """
    reg = ctx.registry
    name_hash = reg.name_hash_at(view.slot)
    out: list[VersionReader] = []
    overflow: list[int] = []
    for k, seg_id in enumerate(view.history()):
        version = view.version - k
        try:
            seg = Segment.open(reg.segment_name(seg_id))
            # (facts: None unless the header is one of ours, which bounds the pin table)
            found = header.published_payload(seg, version, view.generation, name_hash) if (
                header.facts(seg) is not None) else None
        except ArrowShmError:
            continue  # retired since the entry was read (or not ours to read)
        if found is None:
            continue
        pins, full = header.pin_table(seg)
        if header.state_word(seg) != found[2]:
            continue  # recycled or reclaimed while read
        if full:
            overflow.append(version)
        for p in sorted(pins, key=lambda p: (p.since_ns or 1 << 63, p.pid)):
            alive = p.alive
            out.append(VersionReader(
                version=version, pid=p.pid, command=command_name(p.pid) if alive else None,
                since=_dt.datetime.fromtimestamp(p.since_ns / 1e9, tz=_dt.timezone.utc)
                if p.since_ns else None,
                alive=alive,
            ))
    return tuple(out), tuple(overflow)


def list_datasets(ctx: Context) -> list[DatasetInfo]:
    """Every live dataset of the namespace, sorted by name."""
    reg = ctx.registry
    out = []
    now = time.time_ns()
    for view in reg.entries():
        if view.kind != L.KIND_DATASET or view.version == 0 or view.expired(now):
            continue
        try:
            schema = _schema_of(ctx, view, view.version, view.segment_id)
        except (ArrowShmError, Recycled):
            continue  # replaced or deleted while listing
        out.append(make_info(ctx.namespace, view.name, view, schema, view.version,
                             reg.segment_name(view.segment_id)))
    return sorted(out, key=lambda i: i.name)


def wait(ctx: Context, name: str, *, after_version: int = 0,
         timeout: float | None = None) -> DatasetInfo:
    """Block until dataset *name* has a version newer than *after_version* (see
    :func:`arrowshm.wait`)."""
    validate_name(name)
    if isinstance(after_version, bool) or not isinstance(after_version, int) or (
        after_version < 0
    ):
        raise InvalidArgumentError(
            f"after_version must be a non-negative int, not {after_version!r}",
            after_version=after_version,
        )
    if timeout is not None and not 0 <= timeout < float("inf"):
        raise InvalidArgumentError(f"timeout must be None or >= 0 seconds, not {timeout!r}",
                                   timeout=timeout)
    reg = ctx.registry
    collect()  # release superseded versions now, while there is nothing else to do
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = 3600.0 if deadline is None else deadline - time.monotonic()
        event_seq = reg.event_seq()
        found = reg.cached_lookup(name)
        if found is not None:
            try:
                view: EntryView | None = dataset_entry(reg, name)
            except NotFoundError:
                view = None
            if view is not None and view.version > after_version:
                # described from the entry just read (info() would read it again)
                return _describe(ctx, name, view) or info(ctx, name)
            if view is not None and remaining > 0:
                # sleep on the entry's own futex, in slices so a delete is noticed
                reg.wait_version(view.slot, after_version, min(remaining, 0.25))
                if deadline is None or time.monotonic() < deadline:
                    continue
        elif remaining > 0:
            reg.wait_event(event_seq, min(remaining, 0.25))  # wait for the name to appear
            if deadline is None or time.monotonic() < deadline:
                continue
        raise WaitTimeoutError(
            f"no version of {name!r} newer than {after_version} within {timeout} s",
            name=name,
            after_version=after_version,
            timeout=timeout,
        )
