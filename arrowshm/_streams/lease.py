"""Leases: how a stream reader learns that Python freed a batch it handed out.

A batch a :class:`~arrowshm.StreamReader` returns wraps arena memory in one
``pyarrow.foreign_buffer`` whose *base* is a :class:`Lease`; every buffer of
the batch is a slice of it and keeps it alive. When Python frees the last of
them (the batch, a column kept from it, a numpy view of a column ...), the
lease's ``__del__`` runs and releases the batch.

While held, a batch's arena bytes are *pinned*: the reader's slot lists them
as a few byte spans that the writer jumps over (see
:mod:`arrowshm.kernels.ring`). The unit of holding is a *run*: one batch
(:meth:`StreamReader.read`), or the consecutive batches one
:meth:`StreamReader.read_many` call claimed, whose buffers all share one
lease, so the run is released when the last of them is freed. Releasing a run
shrinks or splits its span through
:func:`~arrowshm.kernels.ring.ring_unpin_range`, which needs the run's
neighbours among the runs still held: :class:`ReleaseLog` keeps them, as a
sorted list of the held runs' first sequences and their ends and byte ranges.

Releases arrive in any order and from any thread, including from the garbage
collector in the middle of a read on the same thread. :class:`ReleaseLog`
therefore never blocks in a finalizer: it appends the sequence to a queue and
applies the queue only if it can take the lock without waiting; whoever holds
the lock applies the queue after releasing it (:meth:`ReleaseLog.drain`), so
no release is ever stranded.
"""

from __future__ import annotations

import bisect
import collections
import threading

import numpy as np
import numpy.typing as npt

from .._shm.segment import Segment
from ..kernels.ring import ring_reader_detach, ring_reader_drain, ring_unpin_range

__all__ = ["Lease", "ReleaseLog"]


class ReleaseLog:
    """Held-batch bookkeeping of one reader slot in this process.

    Attributes
    ----------
    read : int
        Next sequence the reader will claim (mirror of the slot's ``read``).
    held : list of int
        First sequences of the runs claimed and not yet released, ascending.
    spans : dict
        First sequence of a held run -> (its last sequence, first byte, end byte).
    n_held : int
        Batches in the held runs.
    missed : int
        Batches skipped because the writer lapped the reader (overwrite mode).
    """

    __slots__ = (
        "closing",
        "detached",
        "geo",
        "held",
        "lock",
        "missed",
        "n_held",
        "pending",
        "pid",
        "read",
        "segment",
        "slot",
        "spans",
        "w32",
        "words",
    )

    def __init__(
        self,
        segment: Segment,
        geo: npt.NDArray[np.uint64],
        slot: int,
        pid: int,
        start_seq: int,
    ) -> None:
        self.segment = segment  # keeps the mapping alive as long as any lease does
        self.words = segment.words
        self.w32 = segment.w32
        self.geo = geo
        self.slot = slot
        self.pid = pid
        self.read = start_seq
        self.held: list[int] = []
        self.spans: dict[int, tuple[int, int, int]] = {}  # first -> (last, v0, v1)
        self.n_held = 0
        self.missed = 0
        self.lock = threading.Lock()
        self.pending: collections.deque[int] = collections.deque()
        self.closing = False
        self.detached = False

    # -- called with ``lock`` held ----------------------------------------------------

    def add(self, first: int, last: int, v0: int, v1: int) -> None:
        """Record the run ``first .. last`` (bytes ``[v0, v1)``) just claimed."""
        self.held.append(first)  # claims ascend: the list stays sorted
        self.spans[first] = (last, v0, v1)
        self.n_held += last - first + 1

    def _release(self, first: int) -> None:
        held = self.held
        spans = self.spans
        if held and held[0] == first:
            i = 0  # the usual case: the oldest run goes first
        else:
            i = bisect.bisect_left(held, first)
            if i == len(held) or held[i] != first:
                return  # not ours (cannot happen), or already released
        del held[i]
        last, _, _ = spans.pop(first)
        self.n_held -= last - first + 1
        if self.detached:
            return
        if i:
            prev_last, _, prev_v1 = spans[held[i - 1]]
        else:
            prev_last = -1
            prev_v1 = 0
        if i < len(held):
            next_first = held[i]
            next_v0 = spans[next_first][1]
        else:
            next_first = -1
            next_v0 = 0
        ring_unpin_range(self.words, self.w32, self.geo, self.slot, first, last, prev_last,
                         prev_v1, next_first, next_v0, self.n_held)

    def _apply(self) -> None:
        pending = self.pending
        while pending:
            self._release(pending.popleft())
        if self.closing and not self.held and not self.detached:
            self._detach()

    def _detach(self) -> None:
        self.detached = True
        ring_reader_detach(self.words, self.w32, self.geo, self.slot, self.pid)

    # -- any thread, any time -----------------------------------------------------------

    def put(self, first: int) -> None:
        """Release the run starting at *first* (a lease's finalizer). Never blocks."""
        lock = self.lock
        if lock.acquire(blocking=False):
            try:
                self._release(first)
                self._apply()  # (releases queued by finalizers that found the lock taken)
            finally:
                lock.release()
        else:
            self.pending.append(first)
        if self.pending:
            self.drain()

    def drain(self) -> None:
        """Apply queued releases unless another thread holds the lock (it will)."""
        while self.pending:
            if not self.lock.acquire(blocking=False):
                return  # the holder drains after it lets go
            try:
                self._apply()
            finally:
                self.lock.release()

    def close(self) -> None:
        """The reader reads no more: free the slot now, or once the last batch is released."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            self._apply()
            if not self.detached:
                if not self.held:
                    self._detach()
                else:
                    ring_reader_drain(self.words, self.w32, self.geo, self.slot)
        self.drain()


class Lease:
    """Base object of the buffers of a stream batch (or of the batches one
    ``read_many`` call returned): releasing it releases them.

    Users never create one. ``lease.seq`` is the sequence number, in its stream,
    of the (first) batch it holds.
    """

    __slots__ = ("log", "seq")

    def __init__(self, log: ReleaseLog, seq: int) -> None:
        self.log = log
        self.seq = seq

    def __del__(self) -> None:
        # at interpreter shutdown this may fail: the slot is then reclaimed as a dead reader's
        # (try/except, not contextlib.suppress: this runs for every batch, and costs a
        # third as much)
        try:  # noqa: SIM105
            self.log.put(self.seq)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<arrowshm stream lease seq={self.seq}>"
