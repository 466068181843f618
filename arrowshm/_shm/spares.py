"""The spare table: retired dataset segments any process of the namespace may reuse.

A *spare* is a dataset segment that no registry entry references any more (a
version that fell out of retention, a deleted or expired dataset) kept, pages
already faulted in, so that the next put of *any* name by *any* process of
the user writes into warm memory instead of fresh pages. The table lives in
the registry header (docs/FORMAT.md, "Spares"): 24 slots of five words,
``state``, ``owner start``, ``segment id``, ``bytes``, ``since``. Beside it,
the reserve table records which processes keep a *reserve* of pre-faulted
spares and how many bytes (:class:`ReserveTable`), so that every process's
housekeeping spares those ladders, not only the reserving process's own.

Slot states (the ``state`` word):

* ``EMPTY`` (0): free.
* ``READY``: lists a POOLED segment; any process may claim it.
* ``BUSY | pid``: a process is listing or claiming it (its start time in word
  1); nobody else touches the slot. A process that dies while its slot is
  BUSY leaves it to :func:`recover`, which completes or undoes the step from
  the segment's own state word: a spare is never lost and never listed twice.

Every transition of ``state`` is a compare-and-swap; a slot's other words are
written only by its BUSY owner, before its release store of ``READY`` (or its
clearing them, before ``EMPTY``). This module only keeps the table; what a
listed segment may become is :mod:`arrowshm._shm.pool`'s business.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._proc import identity, is_alive
from ..kernels.atomics import atomic_cas, atomic_load, atomic_store
from . import layout as L

__all__ = ["ReserveTable", "SpareSlot", "SpareTable"]

_U64 = np.uint64
_PID_MASK = (1 << 62) - 1


@dataclass(frozen=True)
class SpareSlot:
    """A snapshot of one slot (plain loads: re-checked by the CAS that acts on it)."""

    index: int
    state: int
    segment_id: int
    nbytes: int
    since_ns: int

    @property
    def ready(self) -> bool:
        return self.state == L.SPARE_READY

    @property
    def busy_pid(self) -> int:
        """The pid of the process operating on the slot, or 0."""
        return self.state & _PID_MASK if self.state & L.SPARE_BUSY else 0


class SpareTable:
    """The spare slots of one registry's header words."""

    def __init__(self, words: npt.NDArray[np.uint64]) -> None:
        self.words = words

    @staticmethod
    def _base(index: int) -> int:
        return L.H_SPARES + index * L.SPARE_WORDS

    def slots(self) -> list[SpareSlot]:
        """Every non-empty slot, from one plain copy of the table (120 words: 0.5 µs
        instead of 15 µs of single atomic loads, on every put's path). Each word is
        read whole (aligned 8-byte loads do not tear on x86-64) but the copy is no
        consistent snapshot: every decision taken on it is checked again by the CAS
        that acts on a slot, and a claimed spare by its segment's own state word and
        size (:func:`arrowshm._shm.pool.take`)."""
        n = L.SPARE_SLOTS * L.SPARE_WORDS
        table = self.words[L.H_SPARES : L.H_SPARES + n].copy().reshape(
            L.SPARE_SLOTS, L.SPARE_WORDS)
        used = table[:, 0].nonzero()[0]
        return [SpareSlot(i, row[0], row[2], row[3], row[4])
                for i, row in zip(used.tolist(), table[used].tolist(), strict=True)]

    def ready(self) -> list[SpareSlot]:
        """Slots listing a claimable spare."""
        return [s for s in self.slots() if s.ready]

    def listed(self) -> set[int]:
        """Segment ids the table lists (ready, or being listed or claimed)."""
        return {s.segment_id for s in self.slots() if s.segment_id}

    def _busy(self) -> int:
        return L.SPARE_BUSY | identity()[0]

    def begin_insert(self, segment_id: int, nbytes: int) -> int | None:
        """Take an empty slot for *segment_id* (BUSY by this process); its index, or
        None when the table is full. Finish with :meth:`end_insert` or :meth:`clear`."""
        w = self.words
        me = self._busy()
        for i in range(L.SPARE_SLOTS):
            b = self._base(i)
            if int(w[b]) == L.SPARE_EMPTY and int(
                atomic_cas(w, b, _U64(L.SPARE_EMPTY), _U64(me))
            ) == L.SPARE_EMPTY:
                atomic_store(w, b + 1, identity()[1])
                atomic_store(w, b + 2, segment_id)
                atomic_store(w, b + 3, nbytes)
                atomic_store(w, b + 4, time.time_ns())
                return i
        return None

    def end_insert(self, index: int) -> None:
        """List the slot this process filled (release: its words are complete)."""
        atomic_store(self.words, self._base(index), _U64(L.SPARE_READY))

    def claim(self, slot: SpareSlot) -> bool:
        """Take a READY slot (BUSY by this process); False if another process was first.
        Finish with :meth:`clear` (claimed) or :meth:`put_back`."""
        b = self._base(slot.index)
        me = self._busy()
        if int(atomic_cas(self.words, b, _U64(L.SPARE_READY), _U64(me))) != L.SPARE_READY:
            return False
        if int(self.words[b + 2]) != slot.segment_id:  # relisted meanwhile: not the one seen
            self.put_back(slot.index)
            return False
        atomic_store(self.words, b + 1, identity()[1])
        return True

    def put_back(self, index: int) -> None:
        """List again a slot this process claimed but did not use."""
        atomic_store(self.words, self._base(index), _U64(L.SPARE_READY))

    def clear(self, index: int) -> None:
        """Empty a slot this process holds BUSY (its words first, the state last)."""
        b = self._base(index)
        for k in (4, 3, 2, 1):
            atomic_store(self.words, b + k, _U64(0))
        atomic_store(self.words, b, _U64(L.SPARE_EMPTY))

    def take_over(self, slot: SpareSlot) -> bool:
        """Take a slot a dead process left BUSY (a CAS from its exact state word);
        False if its owner lives or another process took it first."""
        pid = slot.busy_pid
        b = self._base(slot.index)
        if not pid or is_alive(pid, int(atomic_load(self.words, b + 1))):
            return False
        me = self._busy()
        if int(atomic_cas(self.words, b, _U64(slot.state), _U64(me))) != slot.state:
            return False
        atomic_store(self.words, b + 1, identity()[1])
        return True

    def since(self, index: int) -> int:
        return int(self.words[self._base(index) + 4])

    def touch(self, index: int) -> None:
        """Restart a BUSY slot's idle clock (a spare reserved anew)."""
        atomic_store(self.words, self._base(index) + 4, time.time_ns())


class ReserveTable:
    """The reserve slots of one registry's header words: ``pid``, ``start``, ``bytes``.

    A process claims a free slot, or one whose process is dead, by a compare-and-swap
    of ``pid``, then stores ``start`` and (release) ``bytes``; it changes only its
    own slot's ``bytes`` after that and frees the slot by storing ``bytes`` = 0, then
    ``pid`` = 0. Readers load ``pid``, ``start`` and ``bytes`` (acquire) and count a
    slot only while its process lives: a reserving process that is killed stops
    counting at once, and its slot is taken over by the next reserver.
    """

    def __init__(self, words: npt.NDArray[np.uint64]) -> None:
        self.words = words

    @staticmethod
    def _base(index: int) -> int:
        return L.H_RESERVES + index * L.RESERVE_WORDS

    def _live(self, index: int) -> tuple[int, int, int] | None:
        """(pid, start, bytes) of a slot whose process lives, else None."""
        b = self._base(index)
        pid = int(atomic_load(self.words, b))
        if pid == 0:
            return None
        start = int(atomic_load(self.words, b + 1))
        nbytes = int(atomic_load(self.words, b + 2))
        return (pid, start, nbytes) if is_alive(pid, start) else None

    def live(self) -> list[tuple[int, int]]:
        """(pid, bytes) of each live reserving process (this one included)."""
        return [(live[0], live[2]) for i in range(L.RESERVE_SLOTS)
                if (live := self._live(i)) is not None and live[2] > 0]

    def set(self, nbytes: int) -> bool:
        """Record this process's reserve of *nbytes* (0 removes it); False when every
        slot belongs to another live process."""
        pid, start = identity()
        w = self.words
        for i in range(L.RESERVE_SLOTS):  # our own slot first
            b = self._base(i)
            if int(atomic_load(w, b)) == pid and int(atomic_load(w, b + 1)) == start:
                if nbytes:
                    atomic_store(w, b + 2, _U64(nbytes))
                else:
                    atomic_store(w, b + 2, _U64(0))
                    atomic_store(w, b + 1, _U64(0))
                    atomic_store(w, b, _U64(0))
                return True
        if not nbytes:
            return True
        for i in range(L.RESERVE_SLOTS):
            b = self._base(i)
            seen = int(atomic_load(w, b))
            if seen and self._live(i) is not None:
                continue
            if int(atomic_cas(w, b, _U64(seen), _U64(pid))) != seen:
                continue  # another process was first
            atomic_store(w, b + 1, _U64(start))
            atomic_store(w, b + 2, _U64(nbytes))  # release: the slot is complete
            return True
        return False
