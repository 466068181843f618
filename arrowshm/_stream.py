"""Streams: bounded rings of Arrow record batches, one writer, many readers, zero-copy.

A stream is a registry entry of kind ``KIND_STREAM`` whose record points at
one shared-memory segment per *writer session*: the common 4 KiB data-segment
header, a stream header (geometry, writer identity, the ring's cursors and
futex words), the schema as an Arrow IPC schema message, a table of reader
slots (a cursor line and a pin table each), a ring of batch descriptors and a data arena
(byte layout: :mod:`arrowshm._layout`, docs/FORMAT.md; synchronization:
:mod:`arrowshm.kernels.ring`).

Data path
---------
The writer serializes each batch once, straight into the arena, as an Arrow
IPC record-batch message (a ``pyarrow.ipc`` stream writer on a
``FixedSizeBufferWriter`` over the arena; the schema message it emits at the
start of each lap is never read). A reader wraps the message's bytes in
``pyarrow.foreign_buffer(address, length, base=lease)`` and decodes it with
``pyarrow.ipc.read_record_batch``: every buffer of the batch points into the
arena, and the batch's :class:`~arrowshm._lease.Lease` tells the ring when
Python has freed it.

Sessions
--------
A writer creates a new segment and publishes it as the next *session* of the
name (``R_VERSION``); readers attach to the current session. ``close()`` ends
a session: readers drain it and then see the end. A new writer may then
reopen the name (a new session, possibly with another schema or capacity);
the previous segment is unlinked at once and stays mapped for the readers
still draining it.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from . import _layout as L
from ._errors import (
    ArrowShmError,
    ConflictError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    NotFoundError,
    SchemaMismatchError,
    StreamClosedError,
    WaitTimeoutError,
    WriterExistsError,
)
from ._lease import Lease, ReleaseLog
from ._names import current_namespace, validate_name
from ._proc import identity, is_alive
from ._registry import EntryView, Registry, get_registry
from ._segment import Segment
from .kernels import atomic_load, atomic_store
from .kernels import ring as K

__all__ = [
    "ReaderInfo",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "evict_reader",
    "stream_info",
    "stream_summary",
]

_U64 = np.uint64
_MODES = {"block": L.STREAM_BLOCK, "overwrite": L.STREAM_OVERWRITE}
_MIN_CAPACITY = 4096
_MAX_CAPACITY = 1 << 40
_MAX_READERS = 1024
_MAX_SLOTS = 1 << 20
_DEFAULT_SPIN_US = 50.0
_WAIT_SLICE_S = 0.25  # longest kernel wait between liveness checks / closed checks
_OPEN_RETRIES = 64

# hot-path aliases (module globals are cheaper than attribute chains)
_try_claim = K.ring_try_claim
_publish = K.ring_publish
_try_read = K.ring_try_read
_message_size = pa.ipc.get_record_batch_size
_monotonic_ns = time.monotonic_ns
_foreign_buffer = pa.foreign_buffer
_read_record_batch = pa.ipc.read_record_batch


# --------------------------------------------------------------------------------------
# segment geometry


@dataclass
class _Geometry:
    """A stream segment's validated layout, and the kernels' geometry vector."""

    seg: Segment
    mode: int
    n_slots: int
    max_readers: int
    arena_bytes: int
    schema_bytes: int
    readers_offset: int
    ring_offset: int
    arena_offset: int
    geo: npt.NDArray[np.uint64] = field(repr=False)

    @property
    def words(self) -> npt.NDArray[np.uint64]:
        return self.seg.words

    def schema(self) -> pa.Schema:
        at = L.STREAM_SCHEMA_OFFSET
        raw = bytes(self.seg.mm[at : at + self.schema_bytes])
        try:
            return pa.ipc.read_schema(pa.py_buffer(raw))
        # any parse failure (ArrowNotImplementedError for an impossible bit width,
        # ArrowKeyError, a name that is not UTF-8, …) means corrupt bytes
        except (pa.ArrowException, OSError, EOFError, ValueError, KeyError,
                UnicodeDecodeError) as exc:
            raise CorruptSegmentError(
                f"{self.seg.name} holds no valid Arrow schema: {exc}", shm_name=self.seg.name
            ) from exc

    def slot_word(self, slot: int, field_: int) -> int:
        return self.readers_offset // 8 + slot * (L.SLOT_BYTES // 8) + field_


def _geo_vector(mode: int, n_slots: int, max_readers: int, arena_bytes: int,
                readers_off: int, ring_off: int) -> npt.NDArray[np.uint64]:
    geo = np.zeros(K.G_WORDS, dtype=np.uint64)
    geo[K.G_HDR] = L.ST_RING_HEADER
    geo[K.G_READERS] = readers_off // 8
    geo[K.G_MAX_READERS] = max_readers
    geo[K.G_RING] = ring_off // 8
    geo[K.G_N_SLOTS] = n_slots
    geo[K.G_ARENA_BYTES] = arena_bytes
    geo[K.G_MODE] = mode
    return geo


def _parse(seg: Segment) -> _Geometry:
    """Validate a stream segment's header (the kernels trust these offsets).

    Raises
    ------
    CorruptSegmentError
        When the header is not a consistent stream layout.
    FormatVersionError
        When it was written by an incompatible format version.
    """
    w = seg.words

    def bad(why: str) -> CorruptSegmentError:
        return CorruptSegmentError(
            f"{seg.name} is not a valid arrowshm stream ({why}); delete the stream "
            "(`arrowshm rm NAME`) and recreate it",
            shm_name=seg.name,
        )

    if seg.size < L.STREAM_SCHEMA_OFFSET or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
        raise bad("bad segment magic")
    version = int(w[L.S_FORMAT_VERSION])
    if version != L.FORMAT_VERSION:
        raise FormatVersionError(
            f"{seg.name} has format version {version}, this arrowshm reads {L.FORMAT_VERSION}",
            found=version, expected=L.FORMAT_VERSION,
        )  # fmt: skip
    if int(w[L.S_KIND]) != L.KIND_STREAM:
        raise bad("not a stream segment")
    if int(atomic_load(w, L.ST_MAGIC)) != L.STREAM_MAGIC:
        raise bad("bad stream magic")
    mode = int(w[L.ST_MODE])
    n_slots = int(w[L.ST_N_SLOTS])
    max_readers = int(w[L.ST_MAX_READERS])
    arena = int(w[L.ST_ARENA_BYTES])
    schema_bytes = int(w[L.ST_SCHEMA_BYTES])
    if mode not in L.STREAM_MODE_NAMES:
        raise bad(f"mode {mode}")
    if n_slots < 2 or n_slots > _MAX_SLOTS or n_slots & (n_slots - 1):
        raise bad(f"{n_slots} slots")
    if not 1 <= max_readers <= _MAX_READERS:
        raise bad(f"{max_readers} readers")
    if arena < 8 or arena % 8 or arena > _MAX_CAPACITY or not 0 < schema_bytes < 1 << 24:
        raise bad("arena or schema size")
    readers, ring, arena_off, total = L.stream_layout(schema_bytes, max_readers, n_slots, arena)
    if (
        int(w[L.ST_READERS_OFFSET]) != readers
        or int(w[L.ST_RING_OFFSET]) != ring
        or int(w[L.ST_ARENA_OFFSET]) != arena_off
        or int(w[L.ST_SCHEMA_OFFSET]) != L.STREAM_SCHEMA_OFFSET
        or int(w[L.ST_SLOT_BYTES]) != L.SLOT_BYTES
        or int(w[L.ST_DESC_BYTES]) != L.DESC_BYTES
        or seg.size < total
    ):
        raise bad("inconsistent offsets")
    geo = _geo_vector(mode, n_slots, max_readers, arena, readers, ring)
    return _Geometry(seg, mode, n_slots, max_readers, arena, schema_bytes, readers, ring,
                     arena_off, geo)


def _has_dictionary(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return True
    return any(_has_dictionary(t.field(i).type) for i in range(getattr(t, "num_fields", 0)))


def _check_kind(reg: Registry, slot: int, name: str) -> None:
    actual = int(reg.words[reg.ew(slot, L.E_KIND)])
    if actual != L.KIND_STREAM:
        raise ConflictError(
            f"{name!r} is a {L.KIND_NAMES.get(actual, '?')}, not a stream: use another name, "
            "or delete it first (`arrowshm rm`)",
            name=name,
            kind=L.KIND_NAMES.get(actual, "?"),
        )


def _deadline(timeout: float | None, what: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise InvalidArgumentError(f"{what} must be None or >= 0 seconds, not {timeout!r}",
                                   timeout=timeout)
    return time.monotonic() + timeout


def _spin_ns(spin_us: float) -> int:
    if isinstance(spin_us, bool) or not isinstance(spin_us, (int, float)) or not spin_us >= 0:
        raise InvalidArgumentError(f"spin_us must be >= 0, not {spin_us!r}", spin_us=spin_us)
    return int(spin_us * 1000)


def _reader_facts(g: _Geometry, slot: int) -> dict[str, int]:
    """A reader slot's words (plain loads: for messages and introspection only)."""
    w = g.words
    n_spans = min(int(w[g.slot_word(slot, L.RD_PINS_N)]), L.PIN_SPANS)
    pinned = 0
    for j in range(n_spans):
        sp = g.slot_word(slot, L.RD_SPANS + j * L.SPAN_WORDS)
        pinned += max(0, int(w[sp + 3]) - int(w[sp + 2]))
    return {
        "reader_id": slot,
        "pid": int(w[g.slot_word(slot, L.RD_PID)]),
        "start": int(w[g.slot_word(slot, L.RD_START)]),
        "state": int(w[g.slot_word(slot, L.RD_STATE)]),
        "read": int(w[g.slot_word(slot, L.RD_READ)]),
        "held": int(w[g.slot_word(slot, L.RD_HELD)]),
        "missed": int(w[g.slot_word(slot, L.RD_MISSED)]),
        "heartbeat": int(w[g.slot_word(slot, L.RD_HEARTBEAT)]),
        "pinned_bytes": pinned,
    }


# --------------------------------------------------------------------------------------
# writer


class StreamWriter:
    """The single writer of stream *name*: appends record batches to a bounded ring.

    Creating a writer creates (or reopens, after a previous writer closed it
    or died) the stream, stores *schema* once, and publishes the stream in the
    namespace's registry. Each :meth:`write` copies the batch once into the
    stream's shared-memory arena as an Arrow IPC message; readers get it
    without a copy.

    Parameters
    ----------
    name : str
        1-200 characters of letters, digits and ``. _ - / :``.
    schema : pyarrow.Schema
        Schema of every batch; dictionary-encoded fields are not supported.
    capacity_bytes : int, default 64 MiB
        Size of the data arena (rounded up to 4 KiB). A batch's IPC message
        must fit in it.
    mode : {"block", "overwrite"}, default "block"
        ``block``: :meth:`write` waits while unread or held batches fill the
        ring. ``overwrite``: it never waits for *unread* batches - a lapped
        reader skips ahead and counts what it missed. In both modes a batch
        a reader still *holds* is never overwritten: the writer waits for it.
    max_readers : int, default 16
        Readers that can be attached at once.
    slots : int, optional
        Most batches the ring holds at once (a power of two); by default
        ``capacity_bytes / 2048`` bounded to 16 .. 65536.
    evict_after : float, default 2.0
        Longest time a reader whose process died (e.g. SIGKILL) can stall a
        blocked writer: while it waits, the writer checks the liveness (pid
        and start time) of the attached readers at least this often (every
        quarter second at most) and evicts the dead ones. While writing
        freely it also checks every ``evict_after`` seconds, so dead readers
        do not keep pinning ring space.
    spin_us : float, default 50
        Microseconds a blocked write spins before it sleeps on a futex. A
        spinner needs a core of its own; use 0 on a busy machine.
    delete_on_close : bool, default False
        Delete the stream from the registry when the writer closes (attached
        readers still drain it; new readers no longer find it).
    prefault : bool, default True
        Fault the arena's pages in when the stream is created (about 0.8 ms
        per MiB, once), so that the first lap of writes runs at copy speed.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    InvalidArgumentError
        When *schema*, *capacity_bytes*, *mode*, *max_readers*, *slots*,
        *evict_after* or *spin_us* cannot be used.
    ConflictError
        When *name* is a dataset.
    WriterExistsError
        When a live writer has the stream open.
    ShmFullError
        When /dev/shm has no room for the stream (nothing is created).
    QuotaExceededError
        When the namespace's quota would be exceeded (nothing is created).
    RegistryFullError
        When the namespace's registry has no free entry.

    Examples
    --------
    >>> schema = pa.schema([("x", pa.int64())])
    >>> with arrowshm.StreamWriter("ticks", schema) as w:        # doctest: +SKIP
    ...     w.write(pa.record_batch([pa.array([1, 2, 3])], schema=schema))
    """

    def __init__(
        self,
        name: str,
        schema: pa.Schema,
        *,
        capacity_bytes: int = 64 << 20,
        mode: str = "block",
        max_readers: int = 16,
        slots: int | None = None,
        evict_after: float = 2.0,
        spin_us: float = _DEFAULT_SPIN_US,
        delete_on_close: bool = False,
        prefault: bool = True,
    ) -> None:
        self._closed = True  # until fully opened (so __del__ does nothing on failure)
        validate_name(name)
        schema = self._check_schema(schema)
        capacity = self._check_int("capacity_bytes", capacity_bytes, _MIN_CAPACITY, _MAX_CAPACITY)
        arena = L.align(capacity, L.PAGE)
        if mode not in _MODES:
            raise InvalidArgumentError(
                f"mode must be 'block' or 'overwrite', not {mode!r}", mode=mode
            )
        max_readers = self._check_int("max_readers", max_readers, 1, _MAX_READERS)
        if slots is None:
            n_slots = 1 << max(4, min(16, (arena // 2048).bit_length() - 1))
        else:
            n_slots = self._check_int("slots", slots, 2, _MAX_SLOTS)
            if n_slots & (n_slots - 1):
                raise InvalidArgumentError(f"slots must be a power of two, not {slots}",
                                           slots=slots)
        if isinstance(evict_after, bool) or not isinstance(evict_after, (int, float)) or not (
            evict_after > 0
        ):
            raise InvalidArgumentError(
                f"evict_after must be > 0 seconds, not {evict_after!r}", evict_after=evict_after
            )
        self._spin = _spin_ns(spin_us)
        self.name = name
        self._schema = schema
        self._mode = _MODES[mode]
        self._evict_after = float(evict_after)
        self._delete_on_close = bool(delete_on_close)
        self._lock = threading.Lock()
        self._out = np.zeros(K.OUT_WORDS, dtype=np.uint64)

        schema_msg = schema.serialize().to_pybytes()
        self._schema_len = _ipc_schema_len(schema)
        readers_off, ring_off, arena_off, seg_bytes = L.stream_layout(
            len(schema_msg), max_readers, n_slots, arena
        )
        existing = None
        self._reg = reg = get_registry(current_namespace())
        found = reg.lookup(name)
        if found is not None:
            _check_kind(reg, found[0], name)
            existing = reg.read_record(*found)
            if existing is not None:
                _refuse_live_writer(name, existing)
        res = reg.reserve_for_creation(seg_bytes)

        def init(seg: Segment) -> None:  # before it is named: a killed creator leaves nothing
            self._init_segment(seg, schema_msg, max_readers, n_slots, arena, readers_off,
                               ring_off, arena_off, schema)
            res.settle()

        try:
            seg_id = reg.new_segment_id()
            seg = Segment.create(reg.segment_name(seg_id), seg_bytes, init=init)
        except BaseException:
            res.cancel()
            raise
        published = False
        try:
            self._geom = _parse(seg)
            slot, gen, session, old_seg = _publish_session(
                reg, name, seg, seg_id, seg_bytes, arena, schema
            )
            published = True
        finally:
            if not published:
                reg.unlink_segment(seg_id)
        self._seg = seg
        self._seg_id = seg_id
        self._slot, self._gen = slot, gen
        self.session = session
        self._words = seg.words
        self._w32 = seg.w32
        self._geo = self._geom.geo
        self._arena_bytes = arena
        self._arena_view = memoryview(seg.mm)[arena_off : arena_off + arena]
        if prefault:
            self._prefault(seg, arena_off, arena)
        self._head = 0  # virtual byte after the last published message
        self._sink: Any = None
        self._ipc: Any = None
        self._sink_base = 0  # virtual position of the sink's first byte
        self._rows = 0
        self._pid = identity()[0]
        self._writes = 0
        self._next_reap = time.monotonic() + self._evict_after
        self._closed = False
        if old_seg:
            _retire_segment(reg, old_seg)

    # -- construction helpers --------------------------------------------------------------

    @staticmethod
    def _check_int(what: str, value: object, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            lo <= int(value) <= hi
        ):
            raise InvalidArgumentError(f"{what} must be an int from {lo:,} to {hi:,}, "
                                       f"not {value!r}", **{what: value})
        return int(value)

    @staticmethod
    def _check_schema(schema: object) -> pa.Schema:
        if not isinstance(schema, pa.Schema):
            try:
                schema = pa.schema(schema)
            except (TypeError, ValueError, pa.ArrowException) as exc:
                raise InvalidArgumentError(
                    f"schema must be a pyarrow.Schema, not {type(schema).__name__}",
                    type=type(schema).__name__,
                ) from exc
        assert isinstance(schema, pa.Schema)
        for f in schema:
            if _has_dictionary(f.type):
                raise InvalidArgumentError(
                    f"field {f.name!r} is dictionary-encoded ({f.type}); streams do not carry "
                    "dictionaries: decode it first (pyarrow.compute.cast to the value type)",
                    field=f.name,
                )
        return schema

    def _init_segment(self, seg: Segment, schema_msg: bytes, max_readers: int, n_slots: int,
                      arena: int, readers_off: int, ring_off: int, arena_off: int,
                      schema: pa.Schema) -> None:
        from ._dataset import schema_fingerprint, stamp_creator

        pid, start = identity()
        stamp_creator(seg)
        w = seg.words
        w[L.S_KIND] = L.KIND_STREAM
        w[L.S_STATE] = L.SEG_WRITING
        w[L.S_DATA_OFFSET] = arena_off
        w[L.S_DATA_BYTES] = arena
        w[L.S_SCHEMA_FP] = schema_fingerprint(schema)
        atomic_store(w, L.S_MAGIC, _U64(L.SEGMENT_MAGIC))
        w[L.ST_MODE] = self._mode
        w[L.ST_N_SLOTS] = n_slots
        w[L.ST_MAX_READERS] = max_readers
        w[L.ST_ARENA_BYTES] = arena
        w[L.ST_SCHEMA_BYTES] = len(schema_msg)
        w[L.ST_EVICT_NS] = int(self._evict_after * 1e9)
        w[L.ST_SCHEMA_OFFSET] = L.STREAM_SCHEMA_OFFSET
        w[L.ST_READERS_OFFSET] = readers_off
        w[L.ST_RING_OFFSET] = ring_off
        w[L.ST_ARENA_OFFSET] = arena_off
        w[L.ST_SLOT_BYTES] = L.SLOT_BYTES
        w[L.ST_DESC_BYTES] = L.DESC_BYTES
        w[L.ST_WRITER_PID] = pid
        w[L.ST_WRITER_START] = start
        w[L.ST_OPENED_NS] = time.time_ns()
        seg.mm[L.STREAM_SCHEMA_OFFSET : L.STREAM_SCHEMA_OFFSET + len(schema_msg)] = schema_msg
        atomic_store(w, L.ST_MAGIC, _U64(L.STREAM_MAGIC))  # release: header complete

    @staticmethod
    def _prefault(seg: Segment, offset: int, length: int) -> None:
        # fresh tmpfs pages cost microseconds each on first touch (NOTES.md): fault the
        # arena in once now (~0.8 ms per MiB) rather than inside the first lap of writes.
        # Python 3.11's mmap module lacks the constant; Linux >= 5.14 has the advice.
        advice = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else None)
        if advice is None:
            return
        start = offset - offset % L.PAGE
        with contextlib.suppress(OSError):
            seg.mm.madvise(advice, start, length + offset - start)

    # -- public API -----------------------------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        """The stream's schema (every batch written must have it)."""
        return self._schema

    @property
    def mode(self) -> str:
        """``"block"`` or ``"overwrite"``."""
        return L.STREAM_MODE_NAMES[self._mode]

    @property
    def capacity_bytes(self) -> int:
        """Bytes of the data arena."""
        return self._arena_bytes

    @property
    def slots(self) -> int:
        """Most batches the ring holds at once."""
        return self._geom.n_slots

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    @property
    def batches_written(self) -> int:
        """Batches published in this writer session."""
        return int(self._words[L.ST_CURSOR])

    def write(self, batch: pa.RecordBatch | pa.Table, timeout: float | None = None) -> None:
        """Append *batch* to the stream (one copy, into shared memory).

        Blocks while the ring is full (``block`` mode: unread or held
        batches; ``overwrite`` mode: held batches only). Readers whose
        process died are evicted while the writer waits (see *evict_after*).

        Parameters
        ----------
        batch : pyarrow.RecordBatch or pyarrow.Table
            A table is written batch by batch.
        timeout : float, optional
            Seconds to wait for space; forever by default. ``0`` never waits.

        Raises
        ------
        StreamClosedError
            When this writer was closed.
        SchemaMismatchError
            When the batch's schema differs from the stream's.
        InvalidArgumentError
            When *batch* is not a RecordBatch/Table, its IPC message is larger
            than the arena, or *timeout* is negative.
        WaitTimeoutError
            When readers kept the space needed for *timeout* seconds; the
            message, ``err.readers`` and ``err.reader_pids`` name them. Also
            a ``TimeoutError``.
        CorruptSegmentError
            When the message written differs from its computed size (a bug).
        """
        if not isinstance(batch, pa.RecordBatch):
            if isinstance(batch, pa.Table):
                self._write_table(batch, timeout)
                return
            raise InvalidArgumentError(
                f"write() takes a pyarrow.RecordBatch or Table, not {type(batch).__name__}",
                type=type(batch).__name__,
            )
        if timeout is not None:
            _deadline(timeout)  # validates
        with self._lock:
            self._write_one(batch, timeout, None)

    def _write_table(self, table: pa.Table, timeout: float | None) -> None:
        deadline = _deadline(timeout)
        with self._lock:
            for b in table.to_batches():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._write_one(b, left, deadline)

    def _write_one(self, batch: pa.RecordBatch, timeout: float | None,
                   deadline: float | None) -> None:
        # the hot path: keep it lean (locals, one kernel call per side of the copy)
        if self._closed:
            raise StreamClosedError(f"stream {self.name!r} writer is closed", name=self.name)
        schema = self._schema
        if not batch.schema.equals(schema):
            raise self._mismatch(batch)
        size = _message_size(batch)
        arena = self._arena_bytes
        schema_len = self._schema_len
        if size + schema_len > arena:
            raise InvalidArgumentError(
                f"a batch of {batch.num_rows:,} rows needs {size + schema_len:,} bytes "
                f"but stream {self.name!r} has capacity_bytes={arena:,}: write "
                "smaller batches (RecordBatch.slice) or recreate the stream with a larger "
                "capacity",
                name=self.name, needed=size + schema_len, capacity=arena,
            )  # fmt: skip
        out = self._out
        head = self._head
        # the current IPC stream ends at the end of the arena: a message that starts
        # exactly there goes into a new one at offset 0 of the next lap
        restart = self._ipc is None or head % arena == 0
        seq = _try_claim(self._words, self._geo, head, size, schema_len, restart, out)
        if seq < 0:
            seq = self._claim(size, restart, timeout, deadline)
        start = out.item(K.O_START)
        end = start + size
        try:
            if out.item(K.O_RESTART):
                end += schema_len
                self._ipc = None
                self._sink = pa.FixedSizeBufferWriter(
                    pa.py_buffer(self._arena_view[start % arena :])
                )
                self._ipc = pa.ipc.new_stream(self._sink, schema)
                self._sink_base = start
            self._ipc.write_batch(batch)
            written_end = self._sink_base + self._sink.tell()
        except BaseException:
            self._ipc = None  # its state is unknown: restart the IPC stream next time
            raise
        if written_end != end:
            self._ipc = None
            raise CorruptSegmentError(
                f"stream {self.name!r}: an IPC message took {written_end - start:,} bytes, "
                f"{end - start:,} expected; please report this arrowshm bug",
                name=self.name,
            )
        rows = batch.num_rows
        _publish(self._words, self._w32, self._geo, seq, end - size, size, rows, end,
                 _monotonic_ns())
        self._head = end
        self._rows += rows
        self._writes += 1
        if not self._writes & 63 and time.monotonic() >= self._next_reap:
            # dead readers that are not in the way still pin bytes and hold a slot:
            # check now and then, not only when blocked
            self._next_reap = time.monotonic() + self._evict_after
            self._evict_dead()

    def _mismatch(self, batch: pa.RecordBatch) -> SchemaMismatchError:
        return SchemaMismatchError(
            f"batch schema does not match stream {self.name!r}:\n  stream: "
            + str(self._schema).replace("\n", ", ")
            + "\n  batch:  "
            + str(batch.schema).replace("\n", ", "),
            name=self.name,
            expected=str(self._schema),
            got=str(batch.schema),
        )

    def _claim(self, size: int, restart: bool, timeout: float | None,
               deadline: float | None) -> int:
        out = self._out
        rs = int(restart)
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        check = min(max(self._evict_after / 4, 0.001), _WAIT_SLICE_S)
        spin = self._spin
        while True:
            if self._evict_dead():
                seq = int(K.ring_try_claim(self._words, self._geo, self._head, size,
                                           self._schema_len, rs, out))
                if seq >= 0:
                    return seq
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self._timeout_error(out, timeout)
            wait = check if deadline is None else min(check, deadline - now)
            seq = int(K.ring_claim(self._words, self._w32, self._geo, self._head, size,
                                   self._schema_len, rs, spin, int(wait * 1e9), out))
            spin = 0
            if seq >= 0:
                return seq

    def _in_the_way(self, out: npt.NDArray[np.uint64]) -> list[dict[str, int]]:
        """Readers that keep the writer from the space it needs (after a GATED claim)."""
        g = self._geom
        need = int(out[K.O_NEED])
        kind = int(out[K.O_GATE_KIND])
        found = []
        for i in range(g.max_readers):
            f = _reader_facts(g, i)
            if f["state"] == L.RD_FREE or not f["pid"]:
                continue
            unread = kind == K.GATE_UNREAD and f["state"] == L.RD_ACTIVE and f["read"] < need
            if unread or (kind != K.GATE_UNREAD and f["held"]) or (
                kind == K.GATE_BUSY and i == int(out[K.O_FIRST_GATING])
            ):
                found.append(f)
        return found

    def _evict_dead(self) -> bool:
        """Evict attached readers whose process is gone; True if any."""
        evicted = False
        g = self._geom
        for i in range(g.max_readers):
            f = _reader_facts(g, i)
            if f["state"] != L.RD_FREE and f["pid"] and not is_alive(f["pid"], f["start"]):
                evicted |= bool(K.ring_evict(self._words, self._w32, self._geo, i, f["pid"],
                                             self._pid))
        return evicted

    def _timeout_error(self, out: npt.NDArray[np.uint64],
                       timeout: float | None) -> WaitTimeoutError:
        cursor = int(self._words[L.ST_CURSOR])
        readers = []
        parts = []
        for f in self._in_the_way(out):
            unread = max(0, cursor - f["read"])
            readers.append({"reader_id": f["reader_id"], "pid": f["pid"], "held": f["held"],
                            "unread": unread, "pinned_bytes": f["pinned_bytes"]})
            what = []
            if unread and self._mode == L.STREAM_BLOCK and f["state"] == L.RD_ACTIVE:
                what.append(f"has {unread} unread batch(es)")
            if f["held"]:
                what.append(f"holds {f['held']} batch(es) ({f['pinned_bytes']:,} bytes)")
            parts.append(f"reader {f['reader_id']} (pid {f['pid']}) "
                         + " and ".join(what or ["is in the way"]))
        who = "; ".join(parts) or "a reader"
        return WaitTimeoutError(
            f"write to stream {self.name!r} timed out after {timeout} s: no room in the ring: "
            f"{who}. Readers must read their batches and drop them; a reader that keeps "
            "batches for long should detach them (StreamReader.detach)",
            name=self.name,
            timeout=timeout,
            readers=readers,
            reader_pids=[r["pid"] for r in readers],
        )

    def close(self) -> None:
        """End the stream: readers drain what is left, then see the end.

        Idempotent. With ``delete_on_close`` the stream is also deleted from
        the registry.

        Raises
        ------
        WaitTimeoutError
            When the registry entry's lock is held by a live, stuck process.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ipc = None
            self._sink = None
            w = self._words
            w[L.ST_CLOSED_NS] = time.time_ns()
            K.ring_close(w, self._w32, self._geo, L.STREAM_CLOSED)
        reg = self._reg
        still_ours = False
        with reg.entry_lock(self._slot):
            rec = reg.read_record(self._slot, self._gen)
            if rec is not None and int(rec[L.R_SEGMENT_ID]) == self._seg_id:
                still_ours = True
                rec = rec.copy()
                rec[L.R_FLAGS] = int(rec[L.R_FLAGS]) | L.R_FLAG_CLOSED
                rec[L.R_UPDATED_NS] = time.time_ns()
                rec[L.R_NUM_ROWS] = self._rows
                reg.write_record(self._slot, rec)
        reg.notify_entry(self._slot)
        if self._delete_on_close and still_ours:
            removed = reg.remove(self._slot, self._gen)
            if removed is not None and removed.field(L.R_SEGMENT_ID) == self._seg_id:
                reg.unlink_segment(self._seg_id)

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<arrowshm.StreamWriter {getattr(self, 'name', '?')!r} {state} "
                f"mode={L.STREAM_MODE_NAMES.get(getattr(self, '_mode', 0))}>")


def _ipc_schema_len(schema: pa.Schema) -> int:
    """Bytes the IPC stream writer emits for the schema before its first batch."""
    empty = pa.RecordBatch.from_arrays(
        [pa.array([], type=f.type) for f in schema], schema=schema
    )
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_batch(empty)
    eos = 8
    return int(sink.size()) - int(pa.ipc.get_record_batch_size(empty)) - eos


def _refuse_live_writer(name: str, rec: npt.NDArray[np.uint64]) -> None:
    if (
        int(rec[L.R_SEGMENT_ID])
        and not int(rec[L.R_FLAGS]) & L.R_FLAG_CLOSED
        and is_alive(int(rec[L.R_OWNER_PID]), int(rec[L.R_OWNER_START]))
    ):
        pid = int(rec[L.R_OWNER_PID])
        raise WriterExistsError(
            f"stream {name!r} already has a live writer (pid {pid}); a stream has one writer "
            "at a time: close that writer first, or write to another name",
            name=name,
            pid=pid,
        )


def _publish_session(reg: Registry, name: str, seg: Segment, seg_id: int, seg_bytes: int,
                     arena: int, schema: pa.Schema) -> tuple[int, int, int, int]:
    """Make *seg* the stream's current session; returns (slot, generation, session,
    previous segment id or 0)."""
    pid, start = identity()
    fp = int(seg.words[L.S_SCHEMA_FP])
    for _ in range(100):
        slot, gen = reg.claim(name, L.KIND_STREAM)
        _check_kind(reg, slot, name)
        with reg.entry_lock(slot):
            old = reg.read_record(slot, gen)
            if old is None:  # deleted between claim and lock
                reg.forget(name)
                continue
            _refuse_live_writer(name, old)
            session = int(old[L.R_VERSION]) + 1
            now = time.time_ns()
            rec = np.zeros(L.RECORD_WORDS, dtype=np.uint64)
            rec[L.R_VERSION] = session
            rec[L.R_SEGMENT_ID] = seg_id
            rec[L.R_SEGMENT_BYTES] = seg_bytes
            rec[L.R_DATA_BYTES] = arena
            rec[L.R_SCHEMA_FP] = fp
            rec[L.R_CREATED_NS] = int(old[L.R_CREATED_NS]) or now
            rec[L.R_UPDATED_NS] = now
            rec[L.R_RETAIN] = 1
            rec[L.R_OWNER_PID] = pid
            rec[L.R_OWNER_START] = start
            w = seg.words
            w[L.S_VERSION] = session
            w[L.ST_SESSION] = session
            w[L.S_NAME_HASH] = int(reg.words[reg.ew(slot, L.E_NAME_HASH)])
            w[L.S_GENERATION] = gen
            reg.write_record(slot, rec)
            # only now: PUBLISHED + unreferenced means "retired" to gc
            cur = int(atomic_load(w, L.S_STATE))
            atomic_store(w, L.S_STATE, _U64(L.next_state(cur, L.SEG_PUBLISHED)))
        reg.notify_entry(slot)
        return slot, gen, session, int(old[L.R_SEGMENT_ID])
    raise ConflictError(f"{name!r} kept being deleted while it was opened", name=name)


def _retire_segment(reg: Registry, seg_id: int) -> None:
    """Previous session's segment: mark it aborted if its writer never closed it
    (its readers then get an error instead of waiting), then unlink it."""
    try:
        seg = Segment.open(reg.segment_name(seg_id), writable=True)
        g = _parse(seg)
        if int(atomic_load(seg.words, L.ST_CLOSED)) == L.STREAM_OPEN:
            K.ring_close(seg.words, seg.w32, g.geo, L.STREAM_ABORTED)
    except ArrowShmError:
        pass
    reg.unlink_segment(seg_id)


# --------------------------------------------------------------------------------------
# reader

_EMPTY = object()
_END = object()


class StreamReader:
    """One reader of stream *name*: every batch, in order, without copying.

    Attaching takes a reader slot of the stream; :meth:`close` (or leaving
    the ``with`` block) gives it back. Batches returned by :meth:`read` and
    iteration are zero-copy views of the stream's shared memory: each one
    *holds* its place in the ring until Python frees every buffer of it (the
    batch, any column or array taken from it, any numpy view). A held batch
    is never overwritten, so it stays valid for as long as you keep it: the
    writer writes around its bytes and keeps lapping the ring. Held bytes are
    ring capacity, though: when what readers hold leaves no room, the writer
    waits for a release (and its ``write(timeout=)`` eventually raises,
    naming this reader).

    **Keeping batches for long: detach them.** A detached batch is a copy in
    ordinary process memory and holds nothing in the ring::

        kept = StreamReader.detach(batch)   # pa.ipc.read_record_batch(batch.serialize(), ...)
        del batch                           # drop every view of the original

    (numpy users can also keep ``batch.column(i).to_numpy().copy()``.) A
    table built with ``pa.Table.from_batches`` or a pandas frame converted
    zero-copy still points into the stream.

    Parameters
    ----------
    name : str
        The stream.
    start : {"earliest", "latest"}, default "earliest"
        ``earliest``: begin with the oldest batch still in the ring;
        ``latest``: only batches published after attaching.
    open_timeout : float, default 0
        Seconds to wait for the stream to be created (by a writer that has not
        started yet); 0 fails at once.
    spin_us : float, default 50
        Microseconds a read spins on the ring before sleeping on a futex
        (lowest latency while a core is free; 0 on a busy machine).
    validate : bool, default False
        Run full Arrow validation on every batch before returning it (for
        streams written by untrusted processes); always on when the stream's
        segment belongs to another user. An invalid batch raises
        ``CorruptSegmentError``.

    Attributes
    ----------
    missed : int
        Batches this reader lost because an ``overwrite``-mode writer lapped it.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    InvalidArgumentError
        When *start*, *open_timeout* or *spin_us* is invalid.
    NotFoundError
        When no stream has that name (within *open_timeout*).
    ConflictError
        When *name* is a dataset, or the stream has ``max_readers`` readers
        attached already.
    CorruptSegmentError
        When the stream's segment is not a valid stream layout.

    Examples
    --------
    >>> with arrowshm.StreamReader("ticks") as r:                 # doctest: +SKIP
    ...     for batch in r:
    ...         total += pc.sum(batch["x"]).as_py()
    """

    def __init__(
        self,
        name: str,
        *,
        start: str = "earliest",
        open_timeout: float = 0.0,
        spin_us: float = _DEFAULT_SPIN_US,
        validate: bool = False,
    ) -> None:
        self._closed = True
        validate_name(name)
        if start not in ("earliest", "latest"):
            raise InvalidArgumentError(f"start must be 'earliest' or 'latest', not {start!r}",
                                       start=start)
        deadline = _deadline(open_timeout, "open_timeout")
        self._spin = _spin_ns(spin_us)
        self.name = name
        self._reg = reg = get_registry(current_namespace())
        geom = _open_current(reg, name, deadline)
        self._geom = geom
        self._schema = geom.schema()
        seg = geom.seg
        self._words = seg.words
        self._w32 = seg.w32
        self._geo = geom.geo
        self._arena_addr = seg.address + geom.arena_offset
        self._arena_bytes = geom.arena_bytes
        # untrusted input: full Arrow validation of every batch before handing it out,
        # asked for, or always for a stream another user writes
        self._validate = bool(validate) or seg.owner_uid != os.getuid()
        self._writer = (int(seg.words[L.ST_WRITER_PID]), int(seg.words[L.ST_WRITER_START]))
        self.session = int(seg.words[L.ST_SESSION])
        self._out = np.zeros(K.OUT_WORDS, dtype=np.uint64)
        pid, pstart = identity()
        slot = self._attach(pid, pstart, start == "latest")
        self._log = ReleaseLog(seg, self._geo, slot, pid, int(self._out[K.O_READ]))
        self.reader_id = slot
        self._ended = False
        self._closed = False

    def _attach(self, pid: int, pstart: int, latest: bool) -> int:
        g = self._geom
        for _ in range(2):
            slot = int(K.ring_reader_attach(self._words, self._geo, pid, pstart,
                                            time.monotonic_ns(), int(latest), self._out))
            if slot >= 0:
                return slot
            # full: reclaim the slots of readers that died
            for i in range(g.max_readers):
                f = _reader_facts(g, i)
                if f["pid"] and not is_alive(f["pid"], f["start"]):
                    K.ring_evict(self._words, self._w32, self._geo, i, f["pid"], pid)
        raise ConflictError(
            f"stream {self.name!r} already has {g.max_readers} readers (max_readers): close "
            "a reader, or recreate the stream with a larger max_readers",
            name=self.name,
            max_readers=g.max_readers,
        )

    # -- properties -------------------------------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        """The stream's schema, available before any batch arrives."""
        return self._schema

    @property
    def missed(self) -> int:
        """Batches lost to an ``overwrite``-mode writer lapping this reader."""
        return self._log.missed

    @property
    def held(self) -> int:
        """Batches returned by this reader that Python has not freed yet."""
        return len(self._log.held)

    @property
    def position(self) -> int:
        """Sequence number of the next batch this reader will return."""
        return self._log.read

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def mode(self) -> str:
        """The stream's mode, ``"block"`` or ``"overwrite"``."""
        return L.STREAM_MODE_NAMES[self._geom.mode]

    # -- reading --------------------------------------------------------------------------

    def _try(self) -> Any:
        """A batch, ``_EMPTY`` or ``_END`` without waiting (raises on errors)."""
        log = self._log
        out = self._out
        lock = log.lock
        lock.acquire()
        try:
            if log.closing:  # closed by another thread: the slot may be someone else's now
                return _END
            seq = _try_read(self._words, self._geo, log.slot, _monotonic_ns(), out)
            missed = out.item(K.O_MISSED)
            if missed:
                log.missed += missed
            log.read = out.item(K.O_READ)
            if seq >= 0:
                vstart = out.item(K.O_VSTART)
                length = out.item(K.O_LENGTH)
                log.held.append(seq)  # claims ascend: the list stays sorted
                log.spans[seq] = (vstart, vstart + length)
        finally:
            lock.release()
        if log.pending:
            log.drain()
        if seq >= 0:
            buf = _foreign_buffer(self._arena_addr + vstart % self._arena_bytes, length,
                                  base=Lease(log, seq))
            try:
                batch = _read_record_batch(buf, self._schema)
                if self._validate:
                    batch.validate(full=True)
            except (pa.ArrowException, OSError, EOFError, ValueError, KeyError,
                    UnicodeDecodeError) as exc:
                raise CorruptSegmentError(
                    f"stream {self.name!r}: batch {seq} is not a valid Arrow IPC message: "
                    f"{exc}", name=self.name, seq=seq,
                ) from exc  # fmt: skip
            return batch
        if seq == K.EMPTY:
            return _EMPTY
        if seq == K.CLOSED:
            if int(atomic_load(self._words, L.ST_CLOSED)) == L.STREAM_ABORTED:
                raise self._writer_died()
            self._ended = True
            return _END
        raise CorruptSegmentError(
            f"stream {self.name!r}: the ring's descriptor does not match its cursor "
            f"(status {seq}); delete and recreate the stream",
            name=self.name,
        )

    def _writer_died(self) -> StreamClosedError:
        pid = self._writer[0]
        return StreamClosedError(
            f"the writer of stream {self.name!r} (pid {pid}) died without closing it; every "
            "batch it published has been read. Open a new StreamWriter to restart the "
            "stream, and a new reader",
            name=self.name,
            writer_pid=pid,
        )

    def _writer_gone(self) -> bool:
        """True when the writer died (or a new session aborted this one) without closing."""
        closed = int(atomic_load(self._words, L.ST_CLOSED))
        if closed == L.STREAM_ABORTED:
            return True
        return closed == L.STREAM_OPEN and not is_alive(*self._writer)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(f"reader of stream {self.name!r} is closed",
                                       name=self.name)

    def read(self, timeout: float | None = None) -> pa.RecordBatch | None:
        """The next batch, waiting for it if needed; None at the end of the stream.

        The end comes after the writer closed the stream and this reader
        returned every batch published before. The batch is a zero-copy view
        that holds its place in the ring until Python frees it (see the class
        docstring on detaching).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; forever by default. ``0`` only checks.

        Returns
        -------
        pyarrow.RecordBatch or None

        Raises
        ------
        WaitTimeoutError
            When no batch arrived within *timeout* (also ``TimeoutError``).
        StreamClosedError
            When the writer died (SIGKILL, crash) without closing the stream
            and everything it published has been read.
        InvalidArgumentError
            When this reader is closed, or *timeout* is negative.
        CorruptSegmentError
            When a batch in the stream is not valid Arrow data.
        """
        self._check_open()
        if self._ended:
            return None
        got = self._try()
        if got is _END:
            return None
        if got is not _EMPTY:
            return got
        deadline = _deadline(timeout)
        spin = self._spin
        while True:
            now = time.monotonic()
            wait = _WAIT_SLICE_S if deadline is None else min(_WAIT_SLICE_S, deadline - now)
            status = K.TIMEOUT
            if wait > 0:
                status = int(K.ring_wait_for(self._words, self._w32, self._geo, self._log.read,
                                             spin, int(wait * 1e9)))
                spin = 0
            if self._closed:
                return None
            got = self._try()
            if got is _END:
                return None
            if got is not _EMPTY:
                return got
            if status == K.TIMEOUT:
                if self._writer_gone():
                    got = self._try()  # a last publish may have raced the check
                    if got is _END:
                        return None
                    if got is not _EMPTY:
                        return got
                    raise self._writer_died()
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeoutError(
                        f"no batch on stream {self.name!r} within {timeout} s",
                        name=self.name,
                        timeout=timeout,
                    )

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        batch = self.read()
        if batch is None:
            raise StopIteration
        return batch

    # -- asyncio ----------------------------------------------------------------------------

    async def aread(self, timeout: float | None = None) -> pa.RecordBatch | None:
        """:meth:`read` for asyncio: waits without blocking the event loop.

        Polls the ring between event-loop turns for about ``spin_us``, then
        waits for the next publish in a worker thread (in slices of 0.25 s,
        so a cancelled task leaves nothing blocked for long). Batches are
        claimed on the event loop's thread, so cancelling never loses one.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; forever by default.

        Returns
        -------
        pyarrow.RecordBatch or None
            None at the end of the stream.

        Raises
        ------
        WaitTimeoutError
            When no batch arrived within *timeout*.
        StreamClosedError
            When the writer died without closing the stream.
        InvalidArgumentError
            When this reader is closed, or *timeout* is negative.
        CorruptSegmentError
            When a batch in the stream is not valid Arrow data.
        """
        self._check_open()
        if self._ended:
            return None
        deadline = _deadline(timeout)
        got = self._try()
        if got is _END:
            return None
        if got is not _EMPTY:
            return got
        poll_until = time.monotonic_ns() + self._spin
        while time.monotonic_ns() < poll_until:
            await asyncio.sleep(0)
            if self._closed:
                return None
            if K.ring_try_wait_for(self._words, self._geo, self._log.read) != K.EMPTY:
                got = self._try()
                if got is _END:
                    return None
                if got is not _EMPTY:
                    return got
        while True:
            now = time.monotonic()
            wait = _WAIT_SLICE_S if deadline is None else min(_WAIT_SLICE_S, deadline - now)
            status = K.TIMEOUT
            if wait > 0:
                status = await asyncio.to_thread(
                    K.ring_wait_for, self._words, self._w32, self._geo, self._log.read, 0,
                    int(wait * 1e9),
                )
            if self._closed:
                return None
            got = self._try()
            if got is _END:
                return None
            if got is not _EMPTY:
                return got
            if status == K.TIMEOUT:
                if self._writer_gone():
                    got = self._try()
                    if got is _END:
                        return None
                    if got is not _EMPTY:
                        return got
                    raise self._writer_died()
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeoutError(
                        f"no batch on stream {self.name!r} within {timeout} s",
                        name=self.name,
                        timeout=timeout,
                    )

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        return self

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """Export the rest of the stream through the Arrow PyCapsule protocol.

        ``pa.table(reader)``, ``pl.from_arrow(reader)`` or a DuckDB query over
        the reader consume batches, zero-copy, until the writer closes.

        Raises
        ------
        InvalidArgumentError
            When this reader is closed.
        """
        from ._interop import export_stream

        return export_stream(self, requested_schema)

    async def __anext__(self) -> pa.RecordBatch:
        batch = await self.aread()
        if batch is None:
            raise StopAsyncIteration
        return batch

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Detach from the stream. Idempotent.

        Batches already returned stay valid: the reader slot is kept (it no
        longer holds back the writer for unread batches) until Python frees
        the last of them.
        """
        if self._closed:
            return
        self._closed = True
        self._log.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    @staticmethod
    def detach(batch: pa.RecordBatch) -> pa.RecordBatch:
        """A copy of *batch* in ordinary process memory.

        The copy holds nothing in the stream; drop the original (and every
        column or array taken from it) to release its place in the ring.

        Raises
        ------
        InvalidArgumentError
            When *batch* is not a ``pyarrow.RecordBatch``.
        """
        if not isinstance(batch, pa.RecordBatch):
            raise InvalidArgumentError(
                f"detach() takes a pyarrow.RecordBatch, not {type(batch).__name__}",
                type=type(batch).__name__,
            )
        return pa.ipc.read_record_batch(batch.serialize(), batch.schema)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<arrowshm.StreamReader {getattr(self, 'name', '?')!r} {state} "
                f"reader_id={getattr(self, 'reader_id', '?')}>")


def _open_current(reg: Registry, name: str, deadline: float | None) -> _Geometry:
    """Map the current session's segment of stream *name* (writable: readers own cursors)."""
    for attempt in range(1 << 30):
        try:
            view = reg.get_entry(name)
        except NotFoundError:
            view = None
        if view is not None:
            if view.kind != L.KIND_STREAM:
                raise ConflictError(
                    f"{name!r} is a {L.KIND_NAMES.get(view.kind, '?')}, not a stream: use "
                    "arrowshm.get() for datasets",
                    name=name,
                    kind=L.KIND_NAMES.get(view.kind, "?"),
                )
            seg_id = view.field(L.R_SEGMENT_ID)
            if seg_id:
                try:
                    seg = Segment.open(reg.segment_name(seg_id), writable=True)
                except NotFoundError:
                    reg.forget(name)  # replaced by a new session meanwhile: look again
                    if attempt < _OPEN_RETRIES:
                        continue
                else:
                    return _parse(seg)
        now = time.monotonic()
        if deadline is None or now >= deadline:
            raise NotFoundError(
                f"stream {name!r} does not exist in namespace {reg.namespace!r}; start its "
                "StreamWriter first, or pass open_timeout= to wait for it",
                name=name,
                namespace=reg.namespace,
            )
        seq = reg.event_seq()
        reg.forget(name)
        reg.wait_event(seq, min(0.05, deadline - now))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------
# introspection: `arrowshm ls`, `arrowshm info`, the service


@dataclass(frozen=True, repr=False)
class ReaderInfo:
    """One attached reader of a stream, as seen from shared memory.

    Attributes
    ----------
    reader_id : int
        Its slot in the stream.
    pid : int
    alive : bool
        Whether its process still exists (pid and start time).
    state : str
        ``active`` or ``draining`` (closed, still holding batches).
    cursor : int
        Sequence of the next batch it will read.
    pinned_bytes : int
        Arena bytes its held batches pin (the writer writes around them).
    lag : int
        Published batches it has not read yet.
    held_batches : int
        Batches it returned that its process has not freed.
    missed : int
        Batches it lost to overwrite mode.
    idle_s : float
        Seconds since it last read.
    """

    reader_id: int
    pid: int
    alive: bool
    state: str
    cursor: int
    pinned_bytes: int
    lag: int
    held_batches: int
    missed: int
    idle_s: float

    @property
    def held(self) -> int:
        """Same as :attr:`held_batches`."""
        return self.held_batches

    def __repr__(self) -> str:
        from ._display import reader_info_repr

        return reader_info_repr(self)

    def _repr_html_(self) -> str:
        from ._display import reader_info_html

        return reader_info_html(self)


@dataclass(frozen=True, repr=False)
class StreamInfo:
    """What a stream's segment says about it (``arrowshm info NAME``).

    Attributes
    ----------
    name, namespace : str
    session : int
        Writer sessions so far (a reopen after close starts a new one).
    schema : pyarrow.Schema
    mode : str
        ``block`` or ``overwrite``.
    capacity_bytes : int
        Bytes of the data arena.
    slots : int
        Most batches the ring holds.
    max_readers : int
    writer_pid : int
    writer_alive : bool
    closed : bool
        The writer closed the session (or it was aborted).
    state : str
        ``open``, ``closed``, ``aborted`` or ``writer dead``.
    cursor : int
        Batches published in this session.
    reclaim : int
        Oldest batch that may still be in the ring.
    bytes_written, rows_written : int
    writer_waiting_s : float
        How long the writer has been blocked for space (0: not blocked).
    evicted : int
        Dead readers evicted so far.
    readers : list of ReaderInfo
    segment : str
    """

    name: str
    namespace: str
    session: int
    schema: pa.Schema = field(repr=False)
    mode: str = "block"
    capacity_bytes: int = 0
    slots: int = 0
    max_readers: int = 0
    writer_pid: int = 0
    writer_alive: bool = False
    closed: bool = False
    state: str = "open"
    cursor: int = 0
    reclaim: int = 0
    bytes_written: int = 0
    rows_written: int = 0
    writer_waiting_s: float = 0.0
    evicted: int = 0
    readers: list[ReaderInfo] = field(default_factory=list)
    segment: str = ""

    def __repr__(self) -> str:
        from ._display import stream_info_repr

        return stream_info_repr(self)

    def _repr_html_(self) -> str:
        from ._display import stream_info_html

        return stream_info_html(self)

    def describe(self) -> str:
        """Multi-line text for ``arrowshm info``."""
        from ._display import human_bytes

        lines = [
            f"name:      {self.name}",
            f"namespace: {self.namespace}",
            "kind:      stream",
            f"session:   {self.session}",
            f"mode:      {self.mode}",
            f"capacity:  {human_bytes(self.capacity_bytes)} ({self.capacity_bytes:,} bytes), "
            f"{self.slots:,} slots, up to {self.max_readers} readers",
            f"writer:    pid {self.writer_pid} ({self.state})"
            + (f", blocked for {self.writer_waiting_s:.1f} s" if self.writer_waiting_s else ""),
            f"cursor:    {self.cursor:,} batches published, oldest in ring {self.reclaim:,}",
            f"written:   {self.rows_written:,} rows, {human_bytes(self.bytes_written)}",
            f"evicted:   {self.evicted} dead reader(s)",
            f"segment:   {self.segment}",
            "schema:",
        ]
        lines += ["  " + line for line in str(self.schema).splitlines()]
        if not self.readers:
            lines.append("readers:   none")
        else:
            lines.append(f"readers:   {len(self.readers)}")
            lines.append("  ID  PID       STATE     CURSOR      LAG  HELD  MISSED  IDLE")
            for r in self.readers:
                state = r.state if r.alive else "dead"
                lines.append(
                    f"  {r.reader_id:<3} {r.pid:<9} {state:<9} {r.cursor:>8,} {r.lag:>8,} "
                    f"{r.held_batches:>5} {r.missed:>7,}  {r.idle_s:.1f}s"
                )
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for ``arrowshm ls``: state, readers, max lag, held batches."""
        n = len(self.readers)
        lag = max((r.lag for r in self.readers), default=0)
        held = sum(r.held_batches for r in self.readers)
        text = f"{self.state}, {n} reader{'s' if n != 1 else ''}"
        if n:
            text += f", lag max {lag:,}, {held} held"
        missed = sum(r.missed for r in self.readers)
        if missed:
            text += f", {missed:,} missed"
        return text


def _info_from(reg: Registry, view: EntryView, geom: _Geometry) -> StreamInfo:
    w = geom.words
    now = time.monotonic_ns()
    cursor = int(w[L.ST_CURSOR])
    readers = []
    for i in range(geom.max_readers):
        f = _reader_facts(geom, i)
        if f["state"] == L.RD_FREE or not f["pid"]:
            continue
        readers.append(ReaderInfo(
            reader_id=i, pid=f["pid"], alive=is_alive(f["pid"], f["start"]),
            state=L.RD_STATE_NAMES.get(f["state"], "?"), cursor=f["read"],
            pinned_bytes=f["pinned_bytes"], lag=max(0, cursor - f["read"]),
            held_batches=f["held"],
            missed=f["missed"], idle_s=max(0.0, (now - f["heartbeat"]) / 1e9),
        ))  # fmt: skip
    wpid, wstart = int(w[L.ST_WRITER_PID]), int(w[L.ST_WRITER_START])
    alive = is_alive(wpid, wstart)
    closed_flag = int(w[L.ST_CLOSED])
    state = {L.STREAM_CLOSED: "closed", L.STREAM_ABORTED: "aborted"}.get(
        closed_flag, "open" if alive else "writer dead"
    )
    gated = int(w[L.ST_GATED_SINCE])
    return StreamInfo(
        name=view.name,
        namespace=reg.namespace,
        session=int(w[L.ST_SESSION]),
        schema=geom.schema(),
        mode=L.STREAM_MODE_NAMES[geom.mode],
        capacity_bytes=geom.arena_bytes,
        slots=geom.n_slots,
        max_readers=geom.max_readers,
        writer_pid=wpid,
        writer_alive=alive,
        closed=closed_flag != L.STREAM_OPEN,
        state=state,
        cursor=cursor,
        reclaim=int(w[L.ST_RECLAIM]),
        bytes_written=int(w[L.ST_BYTES]),
        rows_written=int(w[L.ST_ROWS]),
        writer_waiting_s=max(0.0, (now - gated) / 1e9) if gated else 0.0,
        evicted=int(w[L.ST_EVICTED]),
        readers=readers,
        segment=geom.seg.name,
    )


def _open_view(reg: Registry, view: EntryView) -> _Geometry:
    seg_id = view.field(L.R_SEGMENT_ID)
    if not seg_id:
        raise NotFoundError(f"stream {view.name!r} is being created", name=view.name)
    return _parse(Segment.open(reg.segment_name(seg_id)))


def stream_info(name: str) -> StreamInfo:
    """Describe stream *name*: schema, capacity, mode, writer, cursors and each reader.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no stream has that name.
    ConflictError
        When *name* is a dataset.
    CorruptSegmentError
        When its segment is not a valid stream layout.
    """
    validate_name(name)
    reg = get_registry(current_namespace())
    for _ in range(_OPEN_RETRIES):
        view = reg.get_entry(name)
        if view.kind != L.KIND_STREAM:
            raise ConflictError(f"{name!r} is a {L.KIND_NAMES.get(view.kind, '?')}, not a "
                                "stream", name=name)
        try:
            return _info_from(reg, view, _open_view(reg, view))
        except NotFoundError:
            reg.forget(name)
            time.sleep(0.001)
    raise NotFoundError(f"stream {name!r} kept changing while it was read", name=name)


def stream_summary(reg: Registry, view: EntryView) -> str:
    """Short detail string of a stream entry for ``arrowshm ls``
    (e.g. ``"open, 3 readers, lag max 12, 2 held"``).

    Raises
    ------
    NotFoundError
        When the stream's segment is gone (being replaced or deleted).
    CorruptSegmentError
        When its segment is not a valid stream layout.
    """
    return _info_from(reg, view, _open_view(reg, view)).summary()


def evict_reader(name: str, reader_id: int) -> None:
    """Free reader slot *reader_id* of stream *name* if its process is dead.

    A live reader is never evicted: the batches it holds would be overwritten
    under it.

    Raises
    ------
    NotFoundError
        When the stream or an attached reader *reader_id* does not exist.
    ConflictError
        When *name* is a dataset, or the reader's process is alive.
    """
    validate_name(name)
    reg = get_registry(current_namespace())
    view = reg.get_entry(name)
    if view.kind != L.KIND_STREAM:
        raise ConflictError(f"{name!r} is not a stream", name=name)
    seg_id = view.field(L.R_SEGMENT_ID)
    if not seg_id:
        raise NotFoundError(f"stream {name!r} is being created", name=name)
    geom = _parse(Segment.open(reg.segment_name(seg_id), writable=True))
    if not (isinstance(reader_id, int) and 0 <= reader_id < geom.max_readers):
        raise NotFoundError(f"stream {name!r} has no reader {reader_id!r}", name=name,
                            reader_id=reader_id)
    f = _reader_facts(geom, reader_id)
    if not f["pid"] or f["state"] == L.RD_FREE:
        raise NotFoundError(f"stream {name!r} has no reader {reader_id}", name=name,
                            reader_id=reader_id)
    if is_alive(f["pid"], f["start"]):
        raise ConflictError(
            f"reader {reader_id} of stream {name!r} (pid {f['pid']}) is alive; only dead "
            "readers are evicted (stop the process to free its batches)",
            name=name, reader_id=reader_id, pid=f["pid"],
        )  # fmt: skip
    K.ring_evict(geom.words, geom.seg.w32, geom.geo, reader_id, f["pid"], identity()[0])
