"""Pins and state transitions of data segments: what makes recycling safe.

A version segment is recycled (rewritten with a later version) instead of
unlinked, because its pages are already faulted in and writing them runs at
memcpy speed. That is only safe once no process can still read it, so:

* A reader **pins** the segment before handing out a table: it claims a slot
  of the segment's pin table with a compare-and-swap (its pid and start
  time), then re-reads the state word and checks that the segment still holds
  the version it wants. The pin is released by the finalizer of the object the
  table's buffers keep alive (:class:`Pin`), i.e. when Python frees the last
  buffer. More readers than slots set a sticky overflow flag: that segment is
  then never recycled.
* A writer **recycles** a pooled segment by moving its state word from POOLED
  to WRITING (CAS) and only then checking the pin table; pins of dead
  processes are cleared. A pin found → back to POOLED, try another.

Both sides do "store, then load the other's word" with sequentially
consistent atomics (Dekker): either the reader sees WRITING and retries from
the registry, or the writer sees the pin and leaves the segment alone.

The state word is ``(epoch << 8) | state`` and every transition bumps the
epoch, so ``gc`` can claim a segment for removal with a CAS from the exact
word it inspected: if anything happened in between (retired, pooled,
recycled, republished), the CAS fails and the segment is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _layout as L
from ._proc import identity, is_alive
from ._segment import Segment, object_stat, unlink
from .kernels.atomics import atomic_cas, atomic_load, atomic_store
from .kernels.pins import unpin

_U64 = np.uint64


def state_word(seg: Segment) -> int:
    """The segment's state word (acquire load)."""
    return int(atomic_load(seg.words, L.S_STATE))


def cas_state(seg: Segment, old_word: int, state: int) -> bool:
    """Move the segment from exactly *old_word* to *state* (epoch + 1)."""
    new = L.next_state(old_word, state)
    return int(atomic_cas(seg.words, L.S_STATE, _U64(old_word), _U64(new))) == old_word


def set_state(seg: Segment, state: int) -> None:
    """Transition by the segment's only possible mutator (its writer)."""
    while not cas_state(seg, state_word(seg), state):
        pass


class Pin:
    """Keeps one pin slot of a segment for as long as Python holds a buffer of it.

    It is the ``base`` of the foreign buffer a table is read from; every
    buffer of that table keeps it alive. When the last one goes, the slot is
    released and the mapping dropped.
    """

    __slots__ = ("__weakref__", "pid", "segment", "slot")

    def __init__(self, segment: Segment, slot: int, pid: int) -> None:
        self.segment = segment
        self.slot = slot
        self.pid = pid

    def release(self) -> None:
        if self.slot >= 0 and self.pid == identity()[0]:  # a forked child does not own it
            unpin(self.segment.words, self.slot, self.pid)
        self.slot = -1

    def __del__(self) -> None:
        try:  # noqa: SIM105 (contextlib may already be torn down at interpreter exit)
            self.release()
        except Exception:  # interpreter shutdown: the mapping may be half torn down
            pass


def pin(seg: Segment, kind: type[Pin] = Pin) -> Pin:
    """Claim a pin slot of *seg* (or set its overflow flag when all are taken);
    the returned object is a *kind*.

    The caller must then check the state word (:func:`state_word`) and the
    version it wanted; on a mismatch it releases the pin and retries.
    """
    pid, start = identity()
    w = seg.words
    for slot in range(L.PIN_SLOTS):
        base = L.S_PINS + slot * L.PIN_WORDS
        if int(w[base]) == 0 and int(atomic_cas(w, base, _U64(0), _U64(pid))) == 0:
            atomic_store(w, base + 1, _U64(start))
            return kind(seg, slot, pid)
    atomic_store(w, L.S_PIN_OVERFLOW, _U64(1))  # seq_cst-ordered before the state check
    return kind(seg, -1, pid)


def unpinned(seg: Segment) -> bool:
    """True if no live process pins *seg* (dead processes' pins are cleared)."""
    w = seg.words
    # a seq_cst read-modify-write (a no-op CAS) orders the scan after the caller's
    # WRITING store on any architecture; the scan itself is one vectorized read
    if int(atomic_cas(w, L.S_PIN_OVERFLOW, _U64(0), _U64(0))):
        return False
    pids = w[L.S_PINS : L.S_PINS + L.PIN_SLOTS * L.PIN_WORDS : L.PIN_WORDS]
    for slot in np.flatnonzero(pids):
        base = L.S_PINS + int(slot) * L.PIN_WORDS
        pid = int(atomic_load(w, base))
        if pid == 0:
            continue
        if is_alive(pid, int(atomic_load(w, base + 1))):
            return False
        atomic_cas(w, base, _U64(pid), _U64(0))  # a dead reader's pin
    return True


def live_pins(seg: Segment) -> list[int]:
    """Pids holding pins on *seg* (for diagnostics)."""
    w = seg.words
    out = []
    for slot in range(L.PIN_SLOTS):
        pid = int(w[L.S_PINS + slot * L.PIN_WORDS])
        if pid and is_alive(pid, int(w[L.S_PINS + slot * L.PIN_WORDS + 1])):
            out.append(pid)
    return out


def reclaim(reg: Any, seg: Segment, seen_word: int | None = None) -> int:
    """Claim *seg* for removal and unlink it; returns the bytes freed (0 if
    someone else changed or removed it first).

    With *seen_word*, the claim succeeds only if the state word is still
    exactly that (gc's check-then-act); otherwise from whatever it is now,
    unless another process is already reclaiming it.
    """
    if seg.size >= L.SEGMENT_HEADER_BYTES:  # (anything smaller is not a segment of ours)
        word = state_word(seg) if seen_word is None else seen_word
        if L.state_of(word) == L.SEG_RECLAIMING or not cas_state(seg, word, L.SEG_RECLAIMING):
            return 0
    st = object_stat(seg.name)
    if st is None or not unlink(seg.name):
        return 0
    reg.release(st.st_size)
    return int(st.st_size)
