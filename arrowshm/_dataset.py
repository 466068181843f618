"""Datasets: named, versioned, immutable tables in shared memory.

A version lives in its own segment: a 4 KiB header, then the table as an Arrow
IPC stream written straight into the mapping (sized beforehand by a counting
pass). Publishing is one seqlock write of the registry entry, so a reader sees
either the previous version or the new one, whole. Versions beyond the
retention count go to the writer's pool (:mod:`arrowshm._pool`) and are
rewritten by a later put once no reader pins them (:mod:`arrowshm._pin`), or
are unlinked: POSIX keeps an unlinked segment's memory valid for every process
that maps it.

``get`` pins the version's segment and wraps the payload with ``pyarrow.ipc``
— every buffer of the table points into the mapping; its cost depends on the
number of columns and batches, not on bytes. A reader reuses the mapping of a
segment it read before (:mod:`arrowshm._mapcache`) and, for a single-batch
version of a schema it already parsed, decodes just the batch message (the
header's batch locator, FORMAT.md).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from . import _layout as L
from ._errors import (
    ArrowShmError,
    ConflictError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    NotFoundError,
    WaitTimeoutError,
)
from ._mapcache import (
    ReaderPin,
    collect,
    flush_releases,
    release_later,
    release_soon,
    take_idle,
)
from ._names import current_namespace, validate_name
from ._pin import reclaim, set_state, state_word
from ._pool import get_pool
from ._proc import identity
from ._registry import EntryView, Registry, get_registry
from ._segment import Segment, object_stat
from .kernels.pins import PIN_BAD_FORMAT, PIN_BAD_OFFSETS, PIN_OK, PIN_STALE, pin_version

__all__ = [
    "DatasetInfo",
    "Ref",
    "delete",
    "get",
    "info",
    "list_datasets",
    "put",
    "ref",
    "wait",
]

_U64 = np.uint64
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(allow_64bit=True)
_PARALLEL_COPY_BYTES = 32 << 20
_GET_RETRIES = 64
_HAS_TO_TABLE = hasattr(pa.RecordBatch, "to_table")
# what pyarrow raises on bytes that are not valid IPC (ArrowKeyError is also a KeyError:
# a corrupt payload must never look like a missing name)
_PARSE_ERRORS = (pa.ArrowException, UnicodeDecodeError, ValueError, KeyError, OSError, EOFError)


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows of one dataset version.

    Attributes
    ----------
    name : str
    version : int
        1 for the first put of the name, +1 for each put.
    num_rows : int
    nbytes : int
        Bytes of the Arrow IPC payload of this version.
    schema : pyarrow.Schema
    created_at, updated_at : datetime.datetime
        When the name was first put, and when this version was published (UTC).
    ttl : float or None
        Seconds after ``updated_at`` at which the dataset expires.
    retain : int
        How many versions are kept.
    versions : tuple of int
        The retained versions, newest first.
    owner_pid : int
        Process that published this version.
    namespace : str
    segment : str
        The POSIX shared-memory name of this version.
    """

    name: str
    version: int
    num_rows: int
    nbytes: int
    schema: pa.Schema = field(repr=False)
    created_at: _dt.datetime
    updated_at: _dt.datetime
    ttl: float | None = None
    retain: int = 1
    versions: tuple[int, ...] = ()
    owner_pid: int = 0
    namespace: str = "default"
    segment: str = ""

    @property
    def ref(self) -> Ref:
        """A picklable handle to exactly this version."""
        return Ref(self.name, self.version, self.namespace)

    @property
    def expires_at(self) -> _dt.datetime | None:
        if self.ttl is None:
            return None
        return self.updated_at + _dt.timedelta(seconds=self.ttl)

    def __repr__(self) -> str:
        from ._display import dataset_info_repr

        return dataset_info_repr(self)

    def _repr_html_(self) -> str:
        from ._display import dataset_info_html

        return dataset_info_html(self)


@dataclass(frozen=True)
class Ref:
    """A picklable handle to one version of a dataset (a few dozen bytes pickled).

    Pass it to ``multiprocessing`` or ``concurrent.futures`` workers instead of
    a table; ``ref.get()`` maps the version zero-copy in the worker.
    """

    name: str
    version: int
    namespace: str = "default"

    def get(self, *, validate: bool = False) -> pa.Table:
        """The table of this version (see :func:`arrowshm.get`).

        Raises
        ------
        NotFoundError
            When the dataset or this version no longer exists.
        """
        with _in_namespace(self.namespace):
            return get(self.name, version=self.version, validate=validate)

    def info(self) -> DatasetInfo:
        """:class:`DatasetInfo` of this version.

        Raises
        ------
        NotFoundError
            When the dataset or this version no longer exists.
        """
        with _in_namespace(self.namespace):
            return _info_for(self.name, self.version)


class _in_namespace:
    """Run a block with ``ARROWSHM_NAMESPACE`` set (refs carry their namespace)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.saved: str | None = None

    def __enter__(self) -> None:
        self.saved = os.environ.get("ARROWSHM_NAMESPACE")
        os.environ["ARROWSHM_NAMESPACE"] = self.namespace

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop("ARROWSHM_NAMESPACE", None)
        else:
            os.environ["ARROWSHM_NAMESPACE"] = self.saved


# --------------------------------------------------------------------------------------
# converting input


def to_table(data: Any) -> pa.Table:
    """Turn any supported input into a ``pyarrow.Table`` (zero-copy where the
    source allows it).

    Raises
    ------
    InvalidArgumentError
        When *data* is of no supported type.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if module == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    if hasattr(data, "to_arrow_table"):  # DuckDB relations
        return data.to_arrow_table()
    raise InvalidArgumentError(
        f"cannot put a {type(data).__module__}.{type(data).__name__}: pass a pyarrow Table "
        "or RecordBatch, a pandas or polars DataFrame, or an object exporting "
        "__arrow_c_stream__",
        type=type(data).__name__,
    )


def schema_fingerprint(schema: pa.Schema, serialized: pa.Buffer | None = None) -> int:
    """64-bit fingerprint of a schema (fields, types and metadata); *serialized* is
    ``schema.serialize()`` when the caller already has it."""
    data = schema.serialize() if serialized is None else serialized
    digest = hashlib.blake2b(data.to_pybytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _check_retain(retain: object) -> int:
    if isinstance(retain, bool) or not isinstance(retain, int) or not (
        1 <= retain <= L.MAX_RETAIN
    ):
        raise InvalidArgumentError(
            f"retain must be an int from 1 to {L.MAX_RETAIN}, not {retain!r}", retain=retain
        )
    return retain


def _check_ttl(ttl: object) -> int:
    """TTL in ns (0 = none)."""
    if ttl is None:
        return 0
    if isinstance(ttl, _dt.timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise InvalidArgumentError(
            f"ttl must be a positive number of seconds (or a timedelta), not {ttl!r}", ttl=ttl
        )
    return int(ttl * 1e9)


# --------------------------------------------------------------------------------------
# writing


def put(name: str, data: Any, *, retain: int = 1, ttl: float | None = None) -> DatasetInfo:
    """Publish *data* as the next version of dataset *name*.

    The table is written once, straight into a new shared-memory segment, then
    published atomically: readers see the previous version or this one, never
    a mix. Versions beyond *retain* are freed.

    Parameters
    ----------
    name : str
        1-200 characters of letters, digits and ``. _ - / :``.
    data : pyarrow.Table, RecordBatch, pandas/polars DataFrame, or ``__arrow_c_stream__``
    retain : int, default 1
        How many versions (this one included) stay readable by ``get(version=)``;
        at most 16.
    ttl : float or timedelta, optional
        Seconds after this put at which the dataset expires (``arrowshm gc`` or
        the service then deletes it).

    Returns
    -------
    DatasetInfo
        The version just published.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    InvalidArgumentError
        When *data*, *retain* or *ttl* cannot be used.
    ShmFullError
        When /dev/shm has no room for the table (nothing is created).
    QuotaExceededError
        When the namespace's quota would be exceeded (nothing is created).
    RegistryFullError
        When the namespace's registry has no free entry for a new name.
    ConflictError
        When *name* is a stream.
    """
    validate_name(name)
    retain = _check_retain(retain)
    ttl_ns = _check_ttl(ttl)
    table = to_table(data)
    reg = get_registry(current_namespace())
    existing = reg.lookup(name)
    if existing is not None:
        _check_kind(reg, existing[0], name, L.KIND_DATASET)

    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as w:
        w.write_table(table)
    data_bytes = sink.size()
    seg_bytes = L.SEGMENT_HEADER_BYTES + data_bytes
    schema_message = table.schema.serialize()
    fp = schema_fingerprint(table.schema, schema_message)

    seg_id, seg, fresh = allocate_segment(reg, seg_bytes)
    published = False
    try:
        _write_header(seg, L.KIND_DATASET, data_bytes, fresh=fresh)
        end = L.SEGMENT_HEADER_BYTES + data_bytes
        out = pa.FixedSizeBufferWriter(  # (a slice of a py_buffer would be immutable)
            pa.py_buffer(memoryview(seg.mm)[L.SEGMENT_HEADER_BYTES:end])
        )
        if data_bytes >= _PARALLEL_COPY_BYTES:
            out.set_memcopy_threads(min(4, os.cpu_count() or 1))
        with pa.ipc.new_stream(out, table.schema, options=_IPC_OPTIONS) as w:
            w.write_table(table)
            batch = _single_batch(w, schema_message.size, out.tell(), seg.mm)
        w_ = seg.words
        w_[L.S_NUM_ROWS] = table.num_rows
        w_[L.S_SCHEMA_FP] = fp
        set_state(seg, L.SEG_SEALED)
        info = _publish(reg, name, seg, seg_id, data_bytes, table.num_rows, fp,
                        retain, ttl_ns, table.schema, batch)
        published = True
    finally:
        if not published:
            reclaim(reg, seg)
    return info


_CONTINUATION = b"\xff\xff\xff\xff"


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


def allocate_segment(reg: Registry, seg_bytes: int) -> tuple[int, Segment, bool]:
    """A segment of at least *seg_bytes* in state WRITING: a recycled one from this
    process's pool when one fits, else a new one. Returns (id, segment, fresh).

    Raises
    ------
    QuotaExceededError, ShmFullError
        For a new segment that does not fit (nothing is created).
    """
    taken = get_pool(reg).take(seg_bytes)
    if taken is not None:
        return taken[0], taken[1], False  # pages already faulted in
    res = reg.reserve_for_creation(seg_bytes)

    def init(seg: Segment) -> None:
        _init_fresh(seg)
        res.settle()  # named next: from then on the segment accounts for its bytes

    try:
        seg_id = reg.new_segment_id()
        seg = Segment.create(reg.segment_name(seg_id), seg_bytes, populate=True, init=init)
    except BaseException:
        res.cancel()
        raise
    return seg_id, seg, True


# Segments this process published, still mapped writable with their page tables
# populated, so that retiring one into the pool and rewriting it later costs no
# faults (remapping 512 MiB costs half a memcpy). Bounded, and pruned one entry per
# put: a mapping whose segment another process removed (delete, TTL) would keep
# its memory alive.
_own: collections.OrderedDict[tuple[str, int], Segment] = collections.OrderedDict()
_OWN_MAX = 16
_own_puts = 0


def prune_own() -> int:
    """Drop mappings of published segments that no longer exist; returns how many."""
    gone = [k for k, seg in _own.items() if object_stat(seg.name) is None]
    for k in gone:
        del _own[k]
    return len(gone)


def _remember_own(namespace: str, segment_id: int, seg: Segment) -> None:
    global _own_puts
    _own[(namespace, segment_id)] = seg
    _own.move_to_end((namespace, segment_id))
    oldest_key, oldest = next(iter(_own.items()))
    _own_puts += 1
    # (a stat per put would cost more than the rest of the bookkeeping: every 8th)
    if len(_own) > _OWN_MAX or (_own_puts % 8 == 0 and object_stat(oldest.name) is None):
        del _own[oldest_key]


def _retire(reg: Registry, segment_id: int) -> None:
    """A version fell out of retention: pool its segment for reuse, or free it."""
    seg = _own.pop((reg.namespace, segment_id), None)
    if seg is None:
        try:
            seg = Segment.open(reg.segment_name(segment_id), writable=True)
        except ArrowShmError:
            return  # already gone, or not ours to reuse
        if seg.size < L.SEGMENT_HEADER_BYTES or int(seg.words[L.S_MAGIC]) != L.SEGMENT_MAGIC:
            return
    if not get_pool(reg).give(segment_id, seg):
        reclaim(reg, seg)


def stamp_creator(seg: Segment) -> None:
    """Write the header fields that name this process as the segment's creator
    (format version, creator pid and start time, creation time, size)."""
    pid, start = identity()
    w = seg.words
    w[L.S_FORMAT_VERSION] = L.FORMAT_VERSION
    w[L.S_CREATOR_PID] = pid
    w[L.S_CREATOR_START] = start
    w[L.S_CREATED_NS] = time.time_ns()
    w[L.S_SEGMENT_BYTES] = seg.size


def _init_fresh(seg: Segment) -> None:
    """A new segment, before it is named: WRITING by this process, so that the
    moment it exists ``gc`` can tell whether its creator still lives."""
    stamp_creator(seg)
    seg.words[L.S_STATE] = L.SEG_WRITING
    seg.words[L.S_MAGIC] = L.SEGMENT_MAGIC


def _write_header(seg: Segment, kind: int, data_bytes: int, *, fresh: bool) -> None:
    """Header of a dataset version about to be written into *seg*, which is WRITING
    and stamped: a fresh one by :func:`_init_fresh`, a recycled one since its
    previous life (its creator is restamped here)."""
    w = seg.words
    if not fresh:
        stamp_creator(seg)
    w[L.S_KIND] = kind
    # forget the previous life of a recycled segment before its state can read SEALED
    # again: a reader holding a stale registry record must never match this version
    w[L.S_VERSION] = 0
    w[L.S_GENERATION] = 0
    w[L.S_NAME_HASH] = 0
    w[L.S_BATCH_VERSION] = 0
    w[L.S_DATA_OFFSET] = L.SEGMENT_HEADER_BYTES
    w[L.S_DATA_BYTES] = data_bytes


def _check_kind(reg: Registry, slot: int, name: str, kind: int) -> None:
    actual = int(reg.words[reg.ew(slot, L.E_KIND)])
    if actual != kind:
        raise ConflictError(
            f"{name!r} is a {L.KIND_NAMES.get(actual, '?')}, not a "
            f"{L.KIND_NAMES[kind]}: use another name, or delete it first (`arrowshm rm`)",
            name=name,
            kind=L.KIND_NAMES.get(actual, "?"),
        )


def _publish(
    reg: Registry,
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
    """Make *seg* the next version of *name*; unlink what falls out of retention.
    *batch* locates the payload's only record-batch message (see FORMAT.md)."""
    pid, start = identity()
    for _ in range(100):
        slot, gen = reg.claim(name, L.KIND_DATASET)
        _check_kind(reg, slot, name, L.KIND_DATASET)
        with reg.entry_lock(slot):
            old = reg.read_record(slot, gen)
            if old is None:  # deleted between claim and lock: claim again
                reg.forget(name)
                continue
            now = time.time_ns()
            version = int(old[L.R_VERSION]) + 1
            n_old = int(old[L.R_N_HISTORY])
            history = [seg_id] + [int(x) for x in old[L.R_HISTORY : L.R_HISTORY + n_old]]
            keep, retired = history[:retain], history[retain:]
            rec = np.zeros(L.RECORD_WORDS, dtype=np.uint64)
            rec[L.R_VERSION] = version
            rec[L.R_SEGMENT_ID] = seg_id
            rec[L.R_SEGMENT_BYTES] = seg.size
            rec[L.R_DATA_BYTES] = data_bytes
            rec[L.R_NUM_ROWS] = num_rows
            rec[L.R_SCHEMA_FP] = fp
            rec[L.R_CREATED_NS] = int(old[L.R_CREATED_NS]) or now
            rec[L.R_UPDATED_NS] = now
            rec[L.R_TTL_NS] = ttl_ns
            rec[L.R_RETAIN] = retain
            rec[L.R_OWNER_PID] = pid
            rec[L.R_OWNER_START] = start
            rec[L.R_N_HISTORY] = len(keep)
            rec[L.R_HISTORY : L.R_HISTORY + len(keep)] = keep
            w = seg.words
            w[L.S_VERSION] = version
            w[L.S_NAME_HASH] = int(reg.words[reg.ew(slot, L.E_NAME_HASH)])
            w[L.S_GENERATION] = gen
            if batch is not None:
                w[L.S_BATCH_OFFSET], w[L.S_BATCH_BYTES] = batch
                w[L.S_BATCH_VERSION] = version
            reg.write_record(slot, rec)
            # only now: PUBLISHED + unreferenced means "retired" to gc
            set_state(seg, L.SEG_PUBLISHED)
        _remember_own(reg.namespace, seg_id, seg)
        reg.count(L.H_STAT_PUTS)
        reg.notify_entry(slot)
        for sid in retired:
            _retire(reg, sid)
        return _make_info(reg, name, rec, schema, version, reg.segment_name(seg_id))
    raise ConflictError(f"{name!r} kept being deleted while it was published", name=name)


# --------------------------------------------------------------------------------------
# reading


@dataclass
class _Cached:
    version: int
    segment_id: int
    table: pa.Table
    schema_fp: int  # fingerprint of table.schema, from the segment header


# (namespace, name) -> newest version this process mapped; one per name, so a
# superseded version is released at the next get of that name
_cache: dict[tuple[str, str], _Cached] = {}
_cache_lock = threading.Lock()


def _cache_put(
    namespace: str, name: str, version: int, segment_id: int, table: pa.Table, schema_fp: int
) -> None:
    with _cache_lock:
        cur = _cache.get((namespace, name))
        if cur is None or cur.version <= version:
            _cache[(namespace, name)] = _Cached(version, segment_id, table, schema_fp)
    if cur is not None:
        release_soon(cur)  # not on this get's path (see arrowshm._mapcache)


def clear_cache() -> None:
    """Drop this process's cached tables and idle mappings (tables already handed
    out stay valid)."""
    with _cache_lock:
        _cache.clear()
    flush_releases()


def _resolve(view: EntryView, version: int | None, namespace: str) -> tuple[int, int]:
    """(version, segment id) of the wanted version of a dataset entry."""
    current = view.version
    if current == 0:
        raise NotFoundError(f"{view.name!r} has no version yet", name=view.name)
    if version is None:
        return current, view.field(L.R_SEGMENT_ID)
    hist = view.history()
    k = current - version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgumentError(f"version must be a positive int, not {version!r}",
                                   version=version)
    if 0 <= k < len(hist):
        return version, hist[k]
    lo = current - len(hist) + 1
    raise NotFoundError(
        f"{view.name!r} version {version} does not exist in namespace {namespace!r}: "
        f"versions {lo}..{current} are retained (put with a larger retain= to keep more)",
        name=view.name,
        version=version,
        retained=tuple(range(current, lo - 1, -1)),
    )


def _expired(view: EntryView) -> bool:
    ttl = view.field(L.R_TTL_NS)
    return bool(ttl) and time.time_ns() > view.field(L.R_UPDATED_NS) + ttl


def _dataset_entry(reg: Registry, name: str) -> EntryView:
    view = reg.get_entry(name)
    if view.kind != L.KIND_DATASET:
        _check_kind(reg, view.slot, name, L.KIND_DATASET)
    if _expired(view):
        raise NotFoundError(
            f"{name!r} expired (its ttl passed) and is being removed", name=name
        )
    return view


class _Recycled(Exception):
    """The segment no longer holds the version the registry pointed at."""


def _open_version(
    reg: Registry, segment_id: int, version: int, view: EntryView
) -> tuple[Segment, int, int, int]:
    """Map the segment of *version* read-only, unpinned (for its schema and size):
    (segment, payload offset, length, state word).

    Raises
    ------
    NotFoundError
        When the segment is gone (retired since the registry was read).
    _Recycled
        When it now holds another version (recycled since).
    """
    seg = Segment.open(reg.segment_name(segment_id))
    w = seg.words
    _check_header(seg, view.name)
    word = state_word(seg)
    if (
        # SEALED too: a writer killed right after publishing never marked it PUBLISHED
        L.state_of(word) not in (L.SEG_SEALED, L.SEG_PUBLISHED)
        or int(w[L.S_VERSION]) != version
        or int(w[L.S_GENERATION]) != view.generation
        or int(w[L.S_NAME_HASH]) != int(reg.words[reg.ew(view.slot, L.E_NAME_HASH)])
    ):
        raise _Recycled()
    off, n = int(w[L.S_DATA_OFFSET]), int(w[L.S_DATA_BYTES])
    if off < L.SEGMENT_HEADER_BYTES or off + n > seg.size:
        raise _bad_offsets(seg, view.name, version)
    return seg, off, n, word


def _check_header(seg: Segment, name: str, format_found: int | None = None) -> None:
    w = seg.words
    if seg.size < L.SEGMENT_HEADER_BYTES or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
        raise CorruptSegmentError(
            f"{seg.name} (dataset {name!r}) is not an arrowshm segment; delete the "
            "dataset and put it again",
            shm_name=seg.name,
        )
    found = int(w[L.S_FORMAT_VERSION]) if format_found is None else format_found
    if found != L.FORMAT_VERSION:
        raise FormatVersionError(
            f"{seg.name} was written with format version {found}; this "
            f"arrowshm reads {L.FORMAT_VERSION}: read it with the arrowshm that wrote it",
            found=found,
            expected=L.FORMAT_VERSION,
        )


def _bad_offsets(seg: Segment, name: str, version: int) -> CorruptSegmentError:
    return CorruptSegmentError(
        f"{seg.name} header of dataset {name!r} version {version} has impossible "
        "offsets; delete the dataset and put it again",
        shm_name=seg.name,
    )


def _pin_version(
    reg: Registry, segment_id: int, version: int, view: EntryView, schema_fp: int
) -> tuple[Segment, ReaderPin, int, int, int, int]:
    """Map (or reuse an idle mapping of) the segment of *version* and pin it:
    (segment, pin, payload offset, length, batch offset, batch length); see
    :func:`arrowshm.kernels.pins.pin_version`.

    Raises
    ------
    NotFoundError
        When the segment is gone (retired since the registry was read).
    _Recycled
        When it now holds another version (recycled since).
    """
    shm_name = reg.segment_name(segment_id)
    key = (shm_name, reg.created_ns, reg.creator_pid)
    seg = take_idle(key) or Segment.open(shm_name, writable=True)
    pid, start = identity()
    status, slot, off, n, boff, blen = pin_version(
        seg.words, seg.size, L.SEGMENT_MAGIC, L.FORMAT_VERSION, pid, start, version,
        view.generation, int(reg.words[reg.ew(view.slot, L.E_NAME_HASH)]), schema_fp,
    )
    if status == PIN_OK:
        return seg, ReaderPin(seg, slot, pid, key), off, n, boff, blen
    if status == PIN_STALE:
        release_later(seg)  # recycled, being rewritten or reclaimed: map it afresh
        raise _Recycled()
    if status == PIN_BAD_OFFSETS:
        raise _bad_offsets(seg, view.name, version)
    _check_header(seg, view.name, slot if status == PIN_BAD_FORMAT else None)
    raise AssertionError(f"pin_version returned {status}")  # _check_header raised


def get(name: str, *, version: int | None = None, validate: bool = False) -> pa.Table:
    """The latest (or a retained older) version of dataset *name*, zero-copy.

    Every buffer of the returned table points into shared memory, mapped
    read-only. The table stays valid however long it is held, even after newer
    versions or ``delete``. A repeated ``get`` of an unchanged version returns
    the table this process already mapped.

    Parameters
    ----------
    name : str
    version : int, optional
        A retained version; the latest by default.
    validate : bool, default False
        Run full Arrow validation before returning (for data from untrusted
        writers). Segments created by another user are always validated.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When the dataset or version does not exist (or has expired).
    ConflictError
        When *name* is a stream.
    CorruptSegmentError
        When the segment's bytes are not a valid table.
    AccessDeniedError
        When the segment belongs to another user who did not share it.
    """
    validate_name(name)
    collect()  # the version a previous get superseded (nothing left when wait() ran it)
    namespace = current_namespace()
    reg = get_registry(namespace)
    for attempt in range(_GET_RETRIES):
        view = _dataset_entry(reg, name)
        want, seg_id = _resolve(view, version, namespace)
        cached = _cache.get((namespace, name))
        if cached is not None and cached.version == want and cached.segment_id == seg_id:
            if validate:
                _validate(cached.table, name)
            return cached.table
        try:
            seg, p, off, n, boff, blen = _pin_version(
                reg, seg_id, want, view, cached.schema_fp if cached is not None else 0
            )
        except (NotFoundError, _Recycled):
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
            fp = int(seg.words[L.S_SCHEMA_FP])
        if validate or seg.owner_uid != os.getuid():
            _validate(table, name)
        if version is None or want == view.version:
            _cache_put(namespace, name, want, seg_id, table, fp)
        return table
    raise NotFoundError(
        f"{name!r} kept changing while it was read; try again", name=name
    )


def _read_table(buf: pa.Buffer, name: str, shm_name: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(buf).read_all()
    except _PARSE_ERRORS as exc:
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
    except _PARSE_ERRORS as exc:
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


def _schema_of(reg: Registry, view: EntryView, version: int, seg_id: int) -> pa.Schema:
    cached = _cache.get((reg.namespace, view.name))
    if (
        cached is not None
        and cached.segment_id == seg_id
        and cached.version == version
    ):
        return cached.table.schema
    seg, off, n, word = _open_version(reg, seg_id, version, view)
    try:
        schema = pa.ipc.open_stream(pa.py_buffer(seg.mm).slice(off, n)).schema
    except _PARSE_ERRORS as exc:
        if state_word(seg) != word:
            raise _Recycled() from exc
        raise CorruptSegmentError(f"dataset {view.name!r} has an invalid schema: {exc}",
                                  name=view.name) from exc
    if state_word(seg) != word:  # recycled while the schema was parsed
        raise _Recycled()
    return schema


def _ns_to_dt(ns: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)


def _make_info(
    reg: Registry, name: str, rec: Any, schema: pa.Schema, version: int, segment: str
) -> DatasetInfo:
    current = int(rec[L.R_VERSION])
    n_hist = int(rec[L.R_N_HISTORY])
    ttl = int(rec[L.R_TTL_NS])
    return DatasetInfo(
        name=name,
        version=version,
        num_rows=int(rec[L.R_NUM_ROWS]) if version == current else -1,
        nbytes=int(rec[L.R_DATA_BYTES]) if version == current else -1,
        schema=schema,
        created_at=_ns_to_dt(int(rec[L.R_CREATED_NS])),
        updated_at=_ns_to_dt(int(rec[L.R_UPDATED_NS])),
        ttl=ttl / 1e9 if ttl else None,
        retain=int(rec[L.R_RETAIN]),
        versions=tuple(range(current, current - n_hist, -1)),
        owner_pid=int(rec[L.R_OWNER_PID]),
        namespace=reg.namespace,
        segment=segment,
    )


def _info_for(name: str, version: int | None) -> DatasetInfo:
    namespace = current_namespace()
    reg = get_registry(namespace)
    for _ in range(_GET_RETRIES):
        view = _dataset_entry(reg, name)
        want, seg_id = _resolve(view, version, namespace)
        try:
            schema = _schema_of(reg, view, want, seg_id)
        except (NotFoundError, _Recycled):
            reg.forget(name)
            continue
        info = _make_info(reg, name, view.record, schema, want, reg.segment_name(seg_id))
        if want != view.version:  # an older version: its sizes are in its own header
            try:
                seg, _, n, word = _open_version(reg, seg_id, want, view)
                rows = int(seg.words[L.S_NUM_ROWS])
                if state_word(seg) != word:
                    raise _Recycled()
            except (NotFoundError, _Recycled):
                reg.forget(name)
                continue
            info = dataclasses.replace(info, num_rows=rows, nbytes=n)
        return info
    raise NotFoundError(f"{name!r} kept changing while it was read; try again", name=name)


def info(name: str) -> DatasetInfo:
    """Describe the latest version of dataset *name* without mapping its data.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no dataset has that name.
    ConflictError
        When *name* is a stream.
    """
    validate_name(name)
    return _info_for(name, None)


def list_datasets() -> list[DatasetInfo]:
    """Every dataset of the current namespace, sorted by name.

    The list is a :class:`arrowshm.DatasetList`, a ``list`` that prints as a
    table (and as HTML in Jupyter).

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is invalid.
    """
    reg = get_registry(current_namespace())
    out = []
    for view in reg.entries():
        if view.kind != L.KIND_DATASET or view.version == 0 or _expired(view):
            continue
        seg_id = view.field(L.R_SEGMENT_ID)
        try:
            schema = _schema_of(reg, view, view.version, seg_id)
        except (ArrowShmError, _Recycled):
            continue  # replaced or deleted while listing
        out.append(_make_info(reg, view.name, view.record, schema, view.version,
                              reg.segment_name(seg_id)))
    from ._display import DatasetList

    return DatasetList(sorted(out, key=lambda i: i.name))


def delete(name: str) -> None:
    """Delete dataset (or stream) *name* and free its segments now.

    Tables that processes already hold stay valid until they drop them.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no dataset or stream has that name.
    """
    validate_name(name)
    reg = get_registry(current_namespace())
    view = reg.get_entry(name)
    removed = reg.remove(view.slot, view.generation)
    if removed is None:
        raise NotFoundError(f"{name!r} was deleted concurrently", name=name)
    for sid in set(removed.history()) | {removed.field(L.R_SEGMENT_ID)}:
        if sid:
            reg.unlink_segment(sid)
            _own.pop((reg.namespace, sid), None)  # free the memory now, not at exit
    with _cache_lock:
        _cache.pop((reg.namespace, name), None)


def wait(name: str, *, after_version: int = 0, timeout: float | None = None) -> DatasetInfo:
    """Block until dataset *name* has a version newer than *after_version*.

    Spins for a few microseconds, then sleeps on a futex that every publish of
    the name wakes. If the name does not exist yet, waits for its first put.

    Parameters
    ----------
    name : str
    after_version : int, default 0
        Return as soon as the version is greater than this.
    timeout : float, optional
        Seconds to wait; forever by default.

    Returns
    -------
    DatasetInfo
        The newer version.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    WaitTimeoutError
        When no newer version appears within *timeout*.
    """
    validate_name(name)
    if isinstance(after_version, bool) or not isinstance(after_version, int) or (
        after_version < 0
    ):
        raise InvalidArgumentError(
            f"after_version must be a non-negative int, not {after_version!r}",
            after_version=after_version,
        )
    if timeout is not None and not timeout >= 0:
        raise InvalidArgumentError(f"timeout must be >= 0 seconds, not {timeout!r}",
                                   timeout=timeout)
    reg = get_registry(current_namespace())
    collect()  # release superseded versions now, while there is nothing else to do
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = 3600.0 if deadline is None else deadline - time.monotonic()
        event_seq = reg.event_seq()
        found = reg.cached_lookup(name)
        if found is not None:
            try:
                view = _dataset_entry(reg, name)
            except NotFoundError:
                view = None
            if view is not None and view.version > after_version:
                return info(name)
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


def ref(name: str, *, version: int | None = None) -> Ref:
    """A picklable handle to a version of dataset *name* (the latest by default,
    resolved now, so every worker that receives it reads the same table).

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When the dataset or version does not exist.
    """
    validate_name(name)
    namespace = current_namespace()
    view = _dataset_entry(get_registry(namespace), name)
    want, _ = _resolve(view, version, namespace)
    return Ref(name, want, namespace)
