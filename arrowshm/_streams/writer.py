"""The writer of a stream: one per stream at a time, appending record batches.

A writer creates a new segment and publishes it as the next *session* of the
name (the registry record's version); readers attach to the current session.
``close()`` ends a session: readers drain it and then see the end. A new
writer may then reopen the name (a new session, possibly with another schema
or capacity); the previous segment is unlinked at once and stays mapped for
the readers still draining it.

Data path: each batch is serialized once, straight into the arena, as an Arrow
IPC record-batch message (a ``pyarrow.ipc`` stream writer on a
``FixedSizeBufferWriter`` over the arena; the schema message it emits at the
start of each lap is never read), then published with one kernel call
(:func:`arrowshm.kernels.ring.ring_publish`). :meth:`StreamWriter.write_many`
claims the room of a burst of batches with one kernel call
(:func:`~arrowshm.kernels.ring.ring_try_claim_many`), writes their messages
back to back and publishes them with one more
(:func:`~arrowshm.kernels.ring.ring_publish_many`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._arrow import schema_fingerprint
from .._errors import (
    ArrowShmError,
    CorruptSegmentError,
    InvalidArgumentError,
    SchemaMismatchError,
    StreamClosedError,
    WaitTimeoutError,
    WriterExistsError,
)
from .._names import validate_name
from .._proc import identity, is_alive
from .._shm import header, pool
from .._shm import layout as L
from .._shm.context import Context, HasName, context_of
from .._shm.gc import drop_entry
from .._shm.registry import EntryView, Record
from .._shm.segment import Segment
from ..kernels import ring as K
from .geometry import (
    MAX_CAPACITY,
    MAX_READERS,
    MAX_SLOTS,
    closed_state,
    cursor,
    has_dictionary,
    init_segment,
    mark_closed,
    parse,
    reader_facts,
    set_session,
)
from .waits import DEFAULT_SPIN_US, WAIT_SLICE_S, deadline_of, spin_ns

__all__ = ["StreamWriter"]

_U64 = np.uint64
_MODES = {"block": L.STREAM_BLOCK, "overwrite": L.STREAM_OVERWRITE}
_MIN_CAPACITY = 4096
# a burst of write_many: at most this many batches, a quarter of the ring's slots and
# a quarter of the arena, so that it finds room as easily as single writes do
_MAX_BURST = 256

# hot-path aliases (module globals are cheaper than attribute chains)
_try_claim = K.ring_try_claim
_try_claim_many = K.ring_try_claim_many
_publish = K.ring_publish
_publish_many = K.ring_publish_many
_message_size = pa.ipc.get_record_batch_size
_monotonic_ns = time.monotonic_ns


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
    namespace : str or Namespace, optional
        The namespace of the stream; ``ARROWSHM_NAMESPACE`` (read now) by
        default. ``Namespace.StreamWriter`` passes its own.

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
        spin_us: float = DEFAULT_SPIN_US,
        delete_on_close: bool = False,
        prefault: bool = True,
        namespace: str | HasName | None = None,
    ) -> None:
        self._closed = True  # until fully opened (so __del__ does nothing on failure)
        validate_name(name)
        ctx = context_of(namespace)
        schema = self._check_schema(schema)
        capacity = self._check_int("capacity_bytes", capacity_bytes, _MIN_CAPACITY, MAX_CAPACITY)
        arena = L.align(capacity, L.PAGE)
        if mode not in _MODES:
            raise InvalidArgumentError(
                f"mode must be 'block' or 'overwrite', not {mode!r}", mode=mode
            )
        max_readers = self._check_int("max_readers", max_readers, 1, MAX_READERS)
        if slots is None:
            n_slots = 1 << max(4, min(16, (arena // 2048).bit_length() - 1))
        else:
            n_slots = self._check_int("slots", slots, 2, MAX_SLOTS)
            if n_slots & (n_slots - 1):
                raise InvalidArgumentError(f"slots must be a power of two, not {slots}",
                                           slots=slots)
        if isinstance(evict_after, bool) or not isinstance(evict_after, (int, float)) or not (
            evict_after > 0
        ):
            raise InvalidArgumentError(
                f"evict_after must be > 0 seconds, not {evict_after!r}", evict_after=evict_after
            )
        self._spin = spin_ns(spin_us)
        self.name = name
        self._schema = schema
        self._mode = _MODES[mode]
        self._evict_after = float(evict_after)
        self._delete_on_close = bool(delete_on_close)
        self._lock = threading.Lock()
        self._out = np.zeros(K.OUT_WORDS, dtype=np.uint64)

        schema_msg = schema.serialize().to_pybytes()
        self._schema_len = _ipc_schema_len(schema)
        seg_bytes = L.stream_layout(len(schema_msg), max_readers, n_slots, arena)[3]
        self._ctx = ctx
        self._reg = reg = ctx.registry
        found = reg.lookup(name)
        if found is not None:
            reg.check_kind(found[0], name, L.KIND_STREAM)
            words = reg.read_record(*found)
            if words is not None:
                _refuse_live_writer(name, EntryView(*found, L.KIND_STREAM, name, words))
        def init(seg: Segment) -> None:  # before it is named: a killed creator leaves nothing
            init_segment(seg, mode=self._mode, schema_msg=schema_msg,
                         schema_fp=schema_fingerprint(schema), max_readers=max_readers,
                         n_slots=n_slots, arena=arena, evict_ns=int(self._evict_after * 1e9))

        seg_id, seg = pool.create(ctx, seg_bytes, init)  # (spares go first if room is short)
        published = False
        try:
            self._geom = parse(seg)
            slot, gen, session, old_seg = _publish_session(ctx, name, seg, seg_id, arena)
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
        arena_off = self._geom.arena_offset
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
        self._burst_count = max(1, min(_MAX_BURST, self._geom.n_slots // 4))
        self._burst_bytes = max(0, arena - self._schema_len) // 4
        self._next_reap = time.monotonic() + self._evict_after
        self._closed = False
        if old_seg:
            _retire_segment(ctx, old_seg)

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
            if has_dictionary(f.type):
                raise InvalidArgumentError(
                    f"field {f.name!r} is dictionary-encoded ({f.type}); streams do not carry "
                    "dictionaries: decode it first (pyarrow.compute.cast to the value type)",
                    field=f.name,
                )
        return schema

    @staticmethod
    def _prefault(seg: Segment, offset: int, length: int) -> None:
        # fresh tmpfs pages cost 2-3 µs each on first touch (measured here): fault the
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
        return cursor(self._words)

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
            deadline_of(timeout)  # validates
        with self._lock:
            self._write_one(batch, timeout, None)

    def _write_table(self, table: pa.Table, timeout: float | None) -> None:
        deadline = deadline_of(timeout)
        with self._lock:
            for b in table.to_batches():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._write_one(b, left, deadline)

    def write_many(self, batches: Iterable[pa.RecordBatch | pa.Table],
                   timeout: float | None = None) -> None:
        """Append several batches, in order, with one ring claim and one publish per burst.

        The same as :meth:`write` of each batch in turn (a table counts as its
        batches), only cheaper: batches go in bursts of up to a quarter of the
        ring's slots and of its arena, each written back to back after one
        claim of room for all of them and published with one kernel call, so
        readers see a burst at once. A burst that finds no room now is cut
        short, down to one batch, which waits as :meth:`write` does. Every
        batch is checked before the first is written: a mismatching or too
        large batch writes nothing.

        Parameters
        ----------
        batches : iterable of pyarrow.RecordBatch or pyarrow.Table
        timeout : float, optional
            Seconds to wait for space, for the whole call; forever by default.
            ``0`` never waits.

        Raises
        ------
        StreamClosedError
            When this writer was closed.
        SchemaMismatchError
            When a batch's schema differs from the stream's (nothing is written).
        InvalidArgumentError
            When an item is not a RecordBatch/Table, a batch's IPC message is
            larger than the arena (nothing is written), or *timeout* is negative.
        WaitTimeoutError
            When readers kept the space needed for *timeout* seconds; the
            batches before the one that waited have been written. Also a
            ``TimeoutError``.
        CorruptSegmentError
            When a message written differs from its computed size (a bug).
        """
        items: list[pa.RecordBatch] = []
        for b in batches:
            if isinstance(b, pa.RecordBatch):
                items.append(b)
            elif isinstance(b, pa.Table):
                items.extend(b.to_batches())
            else:
                raise InvalidArgumentError(
                    "write_many() takes pyarrow.RecordBatch or Table items, not "
                    f"{type(b).__name__}", type=type(b).__name__,
                )
        deadline = deadline_of(timeout)
        with self._lock:
            if self._closed:
                raise StreamClosedError(f"stream {self.name!r} writer is closed",
                                        name=self.name)
            schema = self._schema
            sizes = []
            limit = self._arena_bytes - self._schema_len
            for b in items:
                if not b.schema.equals(schema):
                    raise self._mismatch(b)
                size = _message_size(b)
                if size > limit:
                    self._check_size(b, size)
                sizes.append(size)
            i = 0
            n = len(items)
            most = self._burst_count
            while i < n:
                total = sizes[i]
                j = i + 1
                while j < n and j - i < most and total + sizes[j] <= self._burst_bytes:
                    total += sizes[j]
                    j += 1
                if j - i > 1 and self._write_burst(items, sizes, i, j, total):
                    i = j
                    most = self._burst_count
                    continue
                if most > 1 and j - i > 1:
                    most = (j - i) // 2  # no room for all of them now: try fewer
                    continue
                # one batch, waiting as write() does
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._write_one(items[i], left, deadline)
                i += 1
                most = self._burst_count

    def _check_size(self, batch: pa.RecordBatch, size: int) -> None:
        arena = self._arena_bytes
        if size + self._schema_len > arena:
            raise InvalidArgumentError(
                f"a batch of {batch.num_rows:,} rows needs {size + self._schema_len:,} bytes "
                f"but stream {self.name!r} has capacity_bytes={arena:,}: write "
                "smaller batches (RecordBatch.slice) or recreate the stream with a larger "
                "capacity",
                name=self.name, needed=size + self._schema_len, capacity=arena,
            )  # fmt: skip

    def _write_burst(self, items: list[pa.RecordBatch], sizes: list[int], i: int, j: int,
                     total: int) -> bool:
        """Write and publish batches ``items[i:j]`` (*total* message bytes) as one burst,
        if the ring has room for them now; False (nothing written) if not."""
        count = j - i
        arena = self._arena_bytes
        schema_len = self._schema_len
        head = self._head
        out = self._out
        restart = self._ipc is None or head % arena == 0
        seq = _try_claim_many(self._words, self._geo, head, total, count, schema_len, restart,
                              out)
        if seq < 0:
            return False
        start = out.item(K.O_START)
        first = start
        try:
            if out.item(K.O_RESTART):
                first += schema_len
                self._ipc = None
                self._sink = pa.FixedSizeBufferWriter(
                    pa.py_buffer(self._arena_view[start % arena :])
                )
                self._ipc = pa.ipc.new_stream(self._sink, self._schema)
                self._sink_base = start
            write = self._ipc.write_batch
            burst = items[i:j]
            for b in burst:
                write(b)
            written_end = self._sink_base + self._sink.tell()
        except BaseException:
            self._ipc = None  # its state is unknown: restart the IPC stream next time
            raise
        end = first + total
        if written_end != end:  # (the sizes come from the same IPC code as the writes)
            self._ipc = None
            raise CorruptSegmentError(
                f"stream {self.name!r}: {count} IPC messages took {written_end - first:,} "
                f"bytes, {total:,} expected; please report this arrowshm bug",
                name=self.name,
            )
        row_counts = [b.num_rows for b in burst]
        _publish_many(self._words, self._w32, self._geo, seq, count, first,
                      np.array(sizes[i:j], dtype=np.uint64),
                      np.array(row_counts, dtype=np.uint64), end, _monotonic_ns())
        self._head = end
        self._rows += sum(row_counts)
        writes = self._writes
        self._writes = writes + count
        if (writes & ~63) != (self._writes & ~63):
            self._maybe_evict()
        return True

    def _maybe_evict(self) -> None:
        if time.monotonic() >= self._next_reap:
            # dead readers that are not in the way still pin bytes and hold a slot:
            # check now and then, not only when blocked
            self._next_reap = time.monotonic() + self._evict_after
            self._evict_dead()

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
            self._check_size(batch, size)
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
        if not self._writes & 63:
            self._maybe_evict()

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
        check = min(max(self._evict_after / 4, 0.001), WAIT_SLICE_S)
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
            f = reader_facts(g, i)
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
            f = reader_facts(g, i)
            if f["state"] != L.RD_FREE and f["pid"] and not is_alive(f["pid"], f["start"]):
                evicted |= bool(K.ring_evict(self._words, self._w32, self._geo, i, f["pid"],
                                             self._pid))
        return evicted

    def _timeout_error(self, out: npt.NDArray[np.uint64],
                       timeout: float | None) -> WaitTimeoutError:
        published = cursor(self._words)
        readers = []
        parts = []
        for f in self._in_the_way(out):
            unread = max(0, published - f["read"])
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
            mark_closed(self._seg)
            K.ring_close(self._words, self._w32, self._geo, L.STREAM_CLOSED)
        reg = self._reg
        rows = self._rows

        def closed(view: EntryView) -> Record:
            if view.segment_id != self._seg_id:
                raise _NotOurs()
            return dataclasses.replace(view.record(), flags=view.flags | L.R_FLAG_CLOSED,
                                       updated_ns=time.time_ns(), num_rows=rows)

        try:
            still_ours = reg.update(self._slot, self._gen, closed) is not None
        except _NotOurs:  # a later session replaced this one
            still_ours = False
        if self._delete_on_close and still_ours:
            drop_entry(self._ctx, self._slot, self._gen)

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


class _NotOurs(Exception):
    """The stream's record names another session's segment now."""


def _refuse_live_writer(name: str, view: EntryView) -> None:
    if view.segment_id and not view.closed and is_alive(view.owner_pid, view.owner_start):
        pid = view.owner_pid
        raise WriterExistsError(
            f"stream {name!r} already has a live writer (pid {pid}); a stream has one writer "
            "at a time: close that writer first, or write to another name",
            name=name,
            pid=pid,
        )


def _publish_session(ctx: Context, name: str, seg: Segment, seg_id: int,
                     arena: int) -> tuple[int, int, int, int]:
    """Make *seg* the stream's current session; returns (slot, generation, session,
    previous segment id or 0)."""
    pid, start = identity()
    fp = header.schema_fp(seg)

    def make(old: EntryView, name_hash: int) -> Record:
        _refuse_live_writer(name, old)
        session = old.version + 1
        header.stamp_published(seg, session, name_hash, old.generation)
        set_session(seg, session)
        now = time.time_ns()
        return Record(version=session, segment_id=seg_id, segment_bytes=seg.size,
                      data_bytes=arena, schema_fp=fp, created_ns=old.created_ns or now,
                      updated_ns=now, retain=1, owner_pid=pid, owner_start=start)

    # only once the record names it: PUBLISHED + unreferenced means "retired" to gc
    done = ctx.registry.publish(name, L.KIND_STREAM, make,
                                then=lambda: header.set_state(seg, L.SEG_PUBLISHED))
    return done.slot, done.generation, done.record.version, done.previous.segment_id


def _retire_segment(ctx: Context, seg_id: int) -> None:
    """Previous session's segment: mark it aborted if its writer never closed it
    (its readers then get an error instead of waiting), then unlink it."""
    reg = ctx.registry
    try:
        seg = Segment.open(reg.segment_name(seg_id), writable=True)
        g = parse(seg)
        if closed_state(seg.words) == L.STREAM_OPEN:
            K.ring_close(seg.words, seg.w32, g.geo, L.STREAM_ABORTED)
    except ArrowShmError:
        pass
    reg.unlink_segment(seg_id)
