"""Leases: how a stream reader learns that Python freed a batch it handed out.

A batch a :class:`~arrowshm.StreamReader` returns wraps arena memory in one
``pyarrow.foreign_buffer`` whose *base* is a :class:`Lease`; every buffer of
the batch is a slice of it and keeps it alive. When Python frees the last of
them (the batch, a column kept from it, a numpy view of a column ...), the
lease's ``__del__`` runs and releases the batch's sequence.

Releases arrive in any order and from any thread, including from the garbage
collector in the middle of a read on the same thread. :class:`ReleaseLog`
therefore never blocks in a finalizer: it appends the sequence to a queue and
applies the queue only if it can take the lock without waiting; whoever holds
the lock applies the queue after releasing it (:meth:`ReleaseLog.drain`), so
no release is ever stranded. Applying a release clears the sequence's held
flag and advances the reader's release cursor over the contiguous run of
released sequences; the new cursor goes to shared memory through
:func:`arrowshm.kernels.ring.ring_release`, which wakes the writer if it is
waiting for that space.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .kernels.ring import ring_reader_detach, ring_reader_drain, ring_release

if TYPE_CHECKING:
    from ._segment import Segment

__all__ = ["Lease", "ReleaseLog"]


class ReleaseLog:
    """Held-batch bookkeeping of one reader slot in this process.

    Attributes
    ----------
    read : int
        Next sequence the reader will claim (mirror of the slot's ``read``).
    release : int
        Every sequence below it is released (mirror of the slot's ``release``).
    held : int
        Batches claimed and not yet released.
    missed : int
        Batches skipped because the writer lapped the reader (overwrite mode).
    """

    __slots__ = (
        "closing",
        "detached",
        "flags",
        "geo",
        "held",
        "lock",
        "mask",
        "missed",
        "pending",
        "pid",
        "read",
        "release",
        "segment",
        "slot",
        "w32",
        "words",
    )

    def __init__(
        self,
        segment: Segment,
        geo: npt.NDArray[np.uint64],
        slot: int,
        n_slots: int,
        pid: int,
        start_seq: int,
    ) -> None:
        self.segment = segment  # keeps the mapping alive as long as any lease does
        self.words = segment.words
        self.w32 = segment.w32
        self.geo = geo
        self.slot = slot
        self.pid = pid
        self.mask = n_slots - 1
        self.flags = bytearray(n_slots)  # 1 = claimed and not released, by seq % n_slots
        self.read = start_seq
        self.release = start_seq
        self.held = 0
        self.missed = 0
        self.lock = threading.Lock()
        self.pending: collections.deque[int] = collections.deque()
        self.closing = False
        self.detached = False

    # -- called with ``lock`` held ----------------------------------------------------

    def claimed(self, seq: int, read: int, release: int, missed: int) -> None:
        """Record the outcome of a claim kernel call (*seq* < 0: nothing claimed)."""
        self.read = read
        self.release = release
        self.missed += missed
        if seq >= 0:
            self.flags[seq & self.mask] = 1
            self.held += 1

    def _apply(self) -> None:
        moved = False
        pending = self.pending
        flags = self.flags
        mask = self.mask
        while pending:
            seq = pending.popleft()
            flags[seq & mask] = 0
            self.held -= 1
            if seq == self.release:
                moved = True
        if moved:
            rel = self.release
            read = self.read
            while rel < read and not flags[rel & mask]:
                rel += 1
            self.release = rel
        if self.detached:
            return
        if moved:
            ring_release(self.words, self.w32, self.geo, self.slot, self.release, self.held)
        if self.closing and self.held == 0:
            self._detach()

    def _detach(self) -> None:
        self.detached = True
        ring_reader_detach(self.words, self.w32, self.geo, self.slot, self.pid)

    # -- any thread, any time -----------------------------------------------------------

    def put(self, seq: int) -> None:
        """Release *seq* (a lease's finalizer). Never blocks."""
        self.pending.append(seq)
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
                if self.held == 0:
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
        try:
            self.log.put(self.seq)
        except Exception:  # interpreter shutdown: the slot is reclaimed as a dead reader's
            pass

    def __repr__(self) -> str:
        return f"<arrowshm stream lease seq={self.seq}>"
