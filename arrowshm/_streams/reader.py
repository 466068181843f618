"""A reader of a stream: every batch, in order, without copying.

A reader claims a slot of the stream's current session, then claims batches
one at a time through :func:`arrowshm.kernels.ring.ring_try_read` (or every
batch available, up to a maximum, through
:func:`~arrowshm.kernels.ring.ring_try_read_many`). It wraps each message's
bytes (or the run's) in ``pyarrow.foreign_buffer(address, length,
base=lease)`` and decodes it with ``pyarrow.ipc.read_record_batch``: every
buffer of the batch points into the arena, and the batch's
:class:`~arrowshm._streams.lease.Lease` tells the ring when Python has freed
it (the batches of one run share one lease).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, cast

import numpy as np
import pyarrow as pa

from .._arrow import PARSE_ERRORS
from .._errors import (
    ConflictError,
    CorruptSegmentError,
    InvalidArgumentError,
    NotFoundError,
    StreamClosedError,
    WaitTimeoutError,
)
from .._names import validate_name
from .._proc import identity, is_alive
from .._shm import layout as L
from .._shm.context import HasName, context_of
from .._shm.registry import Registry, kind_conflict
from .._shm.segment import Segment
from ..kernels import ring as K
from .geometry import Geometry, closed_state, parse, reader_facts, session_facts
from .lease import Lease, ReleaseLog
from .waits import DEFAULT_SPIN_US, WAIT_SLICE_S, deadline_of, spin_ns

__all__ = ["StreamReader"]

_OPEN_RETRIES = 64

# hot-path aliases (module globals are cheaper than attribute chains)
_try_read = K.ring_try_read
_try_read_many = K.ring_try_read_many
_monotonic_ns = time.monotonic_ns
_foreign_buffer = pa.foreign_buffer
_read_record_batch = pa.ipc.read_record_batch
_open_messages = pa.ipc.MessageReader.open_stream

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
        Run full Arrow validation on every batch before returning it (for a
        writer you do not trust to produce valid Arrow; only this user's
        streams are ever read). An invalid batch raises ``CorruptSegmentError``.
    namespace : str or Namespace, optional
        The namespace of the stream; ``ARROWSHM_NAMESPACE`` (read now) by
        default. ``Namespace.StreamReader`` passes its own.

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
        spin_us: float = DEFAULT_SPIN_US,
        validate: bool = False,
        namespace: str | HasName | None = None,
    ) -> None:
        self._closed = True
        validate_name(name)
        if start not in ("earliest", "latest"):
            raise InvalidArgumentError(f"start must be 'earliest' or 'latest', not {start!r}",
                                       start=start)
        until = deadline_of(open_timeout, "open_timeout")
        self._spin = spin_ns(spin_us)
        self.name = name
        self._reg = reg = context_of(namespace).registry
        geom = _open_current(reg, name, until)
        self._geom = geom
        self._schema = geom.schema()
        seg = geom.seg
        self._words = seg.words
        self._w32 = seg.w32
        self._geo = geom.geo
        self._arena_addr = seg.address + geom.arena_offset
        self._arena_bytes = geom.arena_bytes
        # full Arrow validation of every batch before handing it out, when asked (the
        # segment is this user's own: Segment.open refuses any other user's)
        self._validate = bool(validate)
        facts = session_facts(seg)
        self._writer = (facts.writer_pid, facts.writer_start)
        self.session = facts.session
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
                                            time.monotonic_ns(), int(latest), self._out,
                                            time.time_ns()))
            if slot >= 0:
                return slot
            # full: reclaim the slots of readers that died
            for i in range(g.max_readers):
                f = reader_facts(g, i)
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
        """Batches returned by this reader whose place in the ring is still held:
        not freed yet (or, of a :meth:`read_many` call, not all freed yet)."""
        return self._log.n_held

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
                log.add(seq, seq, vstart, vstart + length)
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
            except PARSE_ERRORS as exc:
                raise CorruptSegmentError(
                    f"stream {self.name!r}: batch {seq} is not a valid Arrow IPC message: "
                    f"{exc}", name=self.name, seq=seq,
                ) from exc  # fmt: skip
            return batch
        return self._status(seq)

    def _try_many(self, max_batches: int) -> Any:
        """A list of batches (one run, see :meth:`read_many`), ``_EMPTY`` or ``_END``
        without waiting (raises on errors)."""
        log = self._log
        out = self._out
        lock = log.lock
        lock.acquire()
        try:
            if log.closing:  # closed by another thread: the slot may be someone else's now
                return _END
            seq = _try_read_many(self._words, self._geo, log.slot, max_batches,
                                 _monotonic_ns(), out)
            missed = out.item(K.O_MISSED)
            if missed:
                log.missed += missed
            log.read = out.item(K.O_READ)
            if seq >= 0:
                count = out.item(K.O_COUNT)
                vstart = out.item(K.O_VSTART)
                length = out.item(K.O_LENGTH)
                log.add(seq, seq + count - 1, vstart, vstart + length)
        finally:
            lock.release()
        if log.pending:
            log.drain()
        if seq >= 0:
            # one buffer over the run's messages, back to back: every batch's buffers are
            # slices of it, so the run is released when the last of them is freed
            buf = _foreign_buffer(self._arena_addr + vstart % self._arena_bytes, length,
                                  base=Lease(log, seq))
            schema = self._schema
            try:
                if count == 1:
                    batches = [_read_record_batch(buf, schema)]
                else:
                    batches = [_read_record_batch(m, schema) for m in _open_messages(buf)]
                    if len(batches) != count:
                        raise ValueError(f"{len(batches)} messages where the ring has {count}")
                if self._validate:
                    for b in batches:
                        b.validate(full=True)
            except PARSE_ERRORS as exc:
                raise CorruptSegmentError(
                    f"stream {self.name!r}: batches {seq}..{seq + count - 1} are not valid "
                    f"Arrow IPC messages: {exc}", name=self.name, seq=seq,
                ) from exc  # fmt: skip
            return batches
        return self._status(seq)

    def _status(self, seq: int) -> Any:
        """``_EMPTY`` or ``_END`` for a claim's status (raises on the others)."""
        if seq == K.EMPTY:
            return _EMPTY
        if seq == K.CLOSED:
            if closed_state(self._words) == L.STREAM_ABORTED:
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
        closed = closed_state(self._words)
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
        got = self._wait(self._try, timeout)
        return None if got is _END else got

    def read_many(self, max_batches: int = 256,
                  timeout: float | None = None) -> list[pa.RecordBatch]:
        """The next batches, as many as are there now (up to *max_batches*), waiting
        for the first if needed; ``[]`` at the end of the stream.

        One kernel call claims the whole run of batches available (those the
        writer put back to back in the ring: a run may end before
        *max_batches* though more batches are published; the next call returns
        them), and the batches are decoded from one buffer over the run: much
        cheaper per batch than :meth:`read` for small batches. The batches of
        one call share their hold on the ring: their place is released when
        the last of them is freed (or detached, see the class docstring).

        Parameters
        ----------
        max_batches : int, default 256
            Most batches to return (>= 1).
        timeout : float, optional
            Seconds to wait for the first batch; forever by default. ``0`` only
            checks.

        Returns
        -------
        list of pyarrow.RecordBatch
            At least one batch, in order; empty only at the end of the stream.

        Raises
        ------
        WaitTimeoutError
            When no batch arrived within *timeout* (also ``TimeoutError``).
        StreamClosedError
            When the writer died (SIGKILL, crash) without closing the stream
            and everything it published has been read.
        InvalidArgumentError
            When this reader is closed, *max_batches* is not an int >= 1, or
            *timeout* is negative.
        CorruptSegmentError
            When a batch in the stream is not valid Arrow data.
        """
        if isinstance(max_batches, bool) or not isinstance(max_batches, int) or (
            max_batches < 1
        ):
            raise InvalidArgumentError(
                f"max_batches must be an int >= 1, not {max_batches!r}",
                max_batches=max_batches,
            )
        self._check_open()
        if self._ended:
            return []
        got = self._try_many(max_batches)
        if got is _EMPTY:
            got = self._wait(lambda: self._try_many(max_batches), timeout)
        return [] if got is _END else cast(list[pa.RecordBatch], got)

    def _wait(self, attempt: Callable[[], Any], timeout: float | None) -> Any:
        """Wait for the next publish and retry *attempt* until it gets something:
        its result, or ``_END``."""
        deadline = deadline_of(timeout)
        spin = self._spin
        while True:
            now = time.monotonic()
            wait = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, deadline - now)
            status = K.TIMEOUT
            if wait > 0:
                status = int(K.ring_wait_for(self._words, self._w32, self._geo, self._log.read,
                                             spin, int(wait * 1e9)))
                spin = 0
            if self._closed:
                return _END
            got = attempt()
            if got is not _EMPTY:
                return got
            if status == K.TIMEOUT:
                if self._writer_gone():
                    got = attempt()  # a last publish may have raced the check
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
        import asyncio  # (here: a reader that never awaits does not import it)

        self._check_open()
        if self._ended:
            return None
        deadline = deadline_of(timeout)
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
            wait = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, deadline - now)
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
        self._check_open()
        return pa.RecordBatchReader.from_batches(self._schema, iter(self)).__arrow_c_stream__(
            requested_schema)

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


def _open_current(reg: Registry, name: str, until: float | None) -> Geometry:
    """Map the current session's segment of stream *name* (writable: readers own cursors)."""
    for attempt in range(1 << 30):
        try:
            view = reg.get_entry(name)
        except NotFoundError:
            view = None
        if view is not None:
            if view.kind != L.KIND_STREAM:
                raise kind_conflict(name, view.kind, L.KIND_STREAM)
            seg_id = view.segment_id
            if seg_id:
                try:
                    seg = Segment.open(reg.segment_name(seg_id), writable=True)
                except NotFoundError:
                    reg.forget(name)  # replaced by a new session meanwhile: look again
                    if attempt < _OPEN_RETRIES:
                        continue
                else:
                    return parse(seg)
        now = time.monotonic()
        if until is None or now >= until:
            raise NotFoundError(
                f"stream {name!r} does not exist in namespace {reg.namespace!r}; start its "
                "StreamWriter first, or pass open_timeout= to wait for it",
                name=name,
                namespace=reg.namespace,
            )
        seq = reg.event_seq()
        reg.forget(name)
        reg.wait_event(seq, min(0.05, until - now))
    raise AssertionError("unreachable")

