"""Byte quota accounting on the registry header (docs/FORMAT.md, "Quota accounting").

``bytes_used`` counts every named data segment plus the in-flight
*reservations* of creators whose segment is not named yet; every step is
ordered so that a crash can leave the counter high by one reservation, never
low. :class:`QuotaAccount` is the part of the :class:`Registry` that does it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .._errors import QuotaExceededError
from .._proc import identity, is_alive
from ..kernels.atomics import atomic_cas, atomic_load, atomic_store
from ..kernels.registry import QUOTA_EXCEEDED, counter_release, quota_reserve
from . import layout as L

__all__ = ["QuotaAccount", "Reservation"]

_U64 = np.uint64


_RESERVATION_LOCKED = 1 << 63  # | pid of a gc clearing the slot (never a pid alone)


def _free_reservation(w: npt.NDArray[np.uint64], base: int) -> None:
    """Clear a reservation slot, its pid last: a free slot's start and bytes are 0."""
    atomic_store(w, base + 2, _U64(0))
    atomic_store(w, base + 1, _U64(0))
    atomic_store(w, base, _U64(0))


class Reservation:
    """Quota bytes reserved for one segment being created (see
    :meth:`QuotaAccount.reserve_for_creation`)."""

    __slots__ = ("nbytes", "reg", "slot")

    def __init__(self, reg: QuotaAccount, slot: int, nbytes: int) -> None:
        self.reg = reg
        self.slot = slot
        self.nbytes = nbytes

    def settle(self) -> None:
        """The segment is about to be named and will account for the bytes itself."""
        if self.slot >= 0:
            _free_reservation(self.reg.words, L.H_RESERVATIONS + self.slot * L.RESERVATION_WORDS)
            self.slot = -1

    def cancel(self) -> None:
        """The segment was not created: give the bytes back (slot first, so that a
        crash in between leaves the counter high, never low)."""
        self.settle()
        self.reg.release(self.nbytes)


class QuotaAccount:
    """Quota bytes of a namespace, kept in its registry's header words."""

    namespace: str
    words: npt.NDArray[np.uint64]

    def reserve(self, nbytes: int) -> None:
        """Account *nbytes* against the namespace quota.

        Raises
        ------
        QuotaExceededError
            When the quota would be exceeded; nothing is reserved.
        """
        if quota_reserve(self.words, L.H_BYTES_USED, L.H_QUOTA_BYTES, _U64(nbytes)) == (
            QUOTA_EXCEEDED
        ):
            limit = int(self.words[L.H_QUOTA_BYTES])
            used = int(self.words[L.H_BYTES_USED])
            raise QuotaExceededError(
                f"writing {nbytes:,} bytes would take namespace {self.namespace!r} past its "
                f"quota of {limit:,} bytes ({used:,} in use): delete datasets, lower "
                "retention, or raise the quota (PUT /v1/quota)",
                limit=limit,
                used=used,
                requested=nbytes,
            )

    def release(self, nbytes: int) -> None:
        counter_release(self.words, L.H_BYTES_USED, _U64(nbytes))

    def reserve_for_creation(self, nbytes: int) -> Reservation:
        """Reserve *nbytes* of quota for a segment about to be created, recorded
        in the header's reservation table under this process until
        :meth:`Reservation.settle` (called right before the segment is named;
        from then on the segment itself accounts for its bytes). A creator
        killed in between leaves a reservation of a dead process, which
        :meth:`recover_reservations` gives back.

        Each step is ordered so that a crash can only ever leave the counter
        too high by one reservation (between the quota add and the record of
        its size, or between settling and naming: a few instructions), never
        too low.

        Raises
        ------
        QuotaExceededError
            When the quota would be exceeded; nothing is reserved.
        """
        pid, start = identity()
        w = self.words
        slot = -1
        for i in range(L.RESERVATION_SLOTS):
            base = L.H_RESERVATIONS + i * L.RESERVATION_WORDS
            # a free slot's start and bytes are 0 (every releaser clears them first),
            # so until the start is stored gc judges the claimer by its pid alone
            if int(w[base]) == 0 and int(atomic_cas(w, base, _U64(0), _U64(pid))) == 0:
                atomic_store(w, base + 1, _U64(start))
                slot = i
                break
        res = Reservation(self, slot, nbytes)
        try:
            self.reserve(nbytes)
        except BaseException:
            res.settle()
            raise
        if slot >= 0:  # (a full table: untracked, as if it had one)
            atomic_store(w, L.H_RESERVATIONS + slot * L.RESERVATION_WORDS + 2, _U64(nbytes))
        return res

    def _dead_reservations(self) -> Iterator[tuple[int, int]]:
        """(slot base, state word) of each reservation whose creator is dead, or whose
        clearing gc is dead."""
        w = self.words
        for i in range(L.RESERVATION_SLOTS):
            base = L.H_RESERVATIONS + i * L.RESERVATION_WORDS
            word = int(atomic_load(w, base))
            if word == 0:
                continue
            if word & _RESERVATION_LOCKED:  # a gc is clearing it: unless that gc died
                if is_alive(word & ~_RESERVATION_LOCKED, 0):
                    continue
            elif is_alive(word, int(atomic_load(w, base + 1))):
                continue
            yield base, word

    def dead_reservation_bytes(self) -> int:
        """Quota bytes reserved by creators that died before naming their segment
        (read-only: :meth:`recover_reservations` gives them back)."""
        return sum(int(atomic_load(self.words, base + 2))
                   for base, _ in self._dead_reservations())

    def recover_reservations(self) -> int:
        """Give back the quota bytes of creators that died before naming their
        segment; returns the bytes released."""
        w = self.words
        freed = 0
        for base, word in self._dead_reservations():
            # lock the slot with our pid (one gc wins; a dead locker's lock is taken over),
            # clear it, then give the bytes back
            mine = _RESERVATION_LOCKED | os.getpid()
            if int(atomic_cas(w, base, _U64(word), _U64(mine))) != word:
                continue
            nbytes = int(atomic_load(w, base + 2))  # final: its writer is dead
            _free_reservation(w, base)
            self.release(nbytes)
            freed += nbytes
        return freed

    @property
    def quota(self) -> int | None:
        q = int(atomic_load(self.words, L.H_QUOTA_BYTES))
        return q or None

    def set_quota(self, max_bytes: int | None) -> None:
        atomic_store(self.words, L.H_QUOTA_BYTES, _U64(max_bytes or 0))

    @property
    def bytes_used(self) -> int:
        return int(atomic_load(self.words, L.H_BYTES_USED))

