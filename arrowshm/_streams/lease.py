"""Leases: how a stream reader learns that Python freed a batch it handed out.

A batch a :class:`~arrowshm.StreamReader` returns wraps arena memory in one
``pyarrow.foreign_buffer`` whose *base* is a :class:`Lease`; every buffer of
the batch is a slice of it and keeps it alive. When Python frees the last of
them (the batch, a column kept from it, a numpy view of a column ...), the
lease's ``__del__`` runs and releases the batch.

While held, a batch's arena bytes are *pinned*: the reader's slot lists them
as a few byte spans that the writer jumps over (see
:mod:`arrowshm.kernels.ring`). Releasing a batch shrinks or splits its span
through :func:`~arrowshm.kernels.ring.ring_unpin`, which needs the batch's
neighbours among the batches still held: :class:`ReleaseLog` keeps them, as
a sorted list of held sequences and their byte ranges.

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
import contextlib
import threading

import numpy as np
import numpy.typing as npt

from .._shm.segment import Segment
from ..kernels.ring import ring_reader_detach, ring_reader_drain, ring_unpin

__all__ = ["Lease", "ReleaseLog"]


class ReleaseLog:
    """Held-batch bookkeeping of one reader slot in this process.

    Attributes
    ----------
    read : int
        Next sequence the reader will claim (mirror of the slot's ``read``).
    held : list of int
        Sequences claimed and not yet released, ascending.
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
        self.spans: dict[int, tuple[int, int]] = {}  # seq -> (v0, v1) of held batches
        self.missed = 0
        self.lock = threading.Lock()
        self.pending: collections.deque[int] = collections.deque()
        self.closing = False
        self.detached = False

    # -- called with ``lock`` held ----------------------------------------------------

    def _apply(self) -> None:
        pending = self.pending
        held = self.held
        spans = self.spans
        while pending:
            seq = pending.popleft()
            if held and held[0] == seq:
                i = 0  # the usual case: the oldest batch goes first
            else:
                i = bisect.bisect_left(held, seq)
                if i == len(held) or held[i] != seq:
                    continue  # not ours (cannot happen), or already released
            del held[i]
            del spans[seq]
            if self.detached:
                continue
            if i:
                prev_seq = held[i - 1]
                prev_v1 = spans[prev_seq][1]
            else:
                prev_seq = -1
                prev_v1 = 0
            if i < len(held):
                next_seq = held[i]
                next_v0 = spans[next_seq][0]
            else:
                next_seq = -1
                next_v0 = 0
            ring_unpin(self.words, self.w32, self.geo, self.slot, seq, prev_seq, prev_v1,
                       next_seq, next_v0, len(held))
        if self.closing and not held and not self.detached:
            self._detach()

    def _detach(self) -> None:
        self.detached = True
        ring_reader_detach(self.words, self.w32, self.geo, self.slot, self.pid)

    # -- any thread, any time -----------------------------------------------------------

    def put(self, seq: int) -> None:
        """Release *seq* (a lease's finalizer). Never blocks."""
        self.pending.append(seq)
        if self.lock.acquire(blocking=False):
            try:
                self._apply()
            finally:
                self.lock.release()
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
    """Base object of a stream batch's buffers; releasing it releases the batch.

    Users never create one. ``lease.seq`` is the batch's sequence number in
    its stream.
    """

    __slots__ = ("log", "seq")

    def __init__(self, log: ReleaseLog, seq: int) -> None:
        self.log = log
        self.seq = seq

    def __del__(self) -> None:
        # at interpreter shutdown this may fail: the slot is then reclaimed as a dead reader's
        with contextlib.suppress(Exception):
            self.log.put(self.seq)

    def __repr__(self) -> str:
        return f"<arrowshm stream lease seq={self.seq}>"
