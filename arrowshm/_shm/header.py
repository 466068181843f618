"""The common data-segment header: every write and check of it, and its state word.

Every data segment (a dataset version or a stream session) starts with a 4 KiB
header (byte layout: :mod:`arrowshm._shm.layout`, docs/FORMAT.md). This module
is the only Python code that writes it; the pins kernel
(:mod:`arrowshm.kernels.pins`) is the only other code that reads it on a hot
path.

Life of a segment, as its state word tells it::

    create ──► WRITING ──seal──► SEALED ──publish──► PUBLISHED ──retire──► POOLED
                  ▲                                      │                   │
                  └────────────── recycle (no live pin) ─┼───────────────────┘
                                                         ▼
                                    RECLAIMING ──► unlinked (gc, delete, eviction)

The state word is ``(epoch << 8) | state`` and every transition bumps the
epoch, so a process that inspected a segment can act on it only if nothing
happened since (a compare-and-swap from the exact word it read: no ABA).

Recycling is safe because of **pins**. A reader claims a slot of the pin table
(its pid and start time) before it hands out a table and re-checks the state
word after; a writer recycling a retired segment moves its state to WRITING
and only then scans the pin table, clearing pins of dead processes. Both
sides store, then load the other's word, with sequentially consistent
atomics (Dekker): either the reader sees WRITING and retries from the
registry, or the writer sees the pin and leaves the segment alone. A pin is
released when Python frees the last buffer of the table (:class:`Pin`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._errors import CorruptSegmentError, FormatVersionError
from .._proc import identity, is_alive
from ..kernels.atomics import atomic_cas, atomic_load, atomic_store
from ..kernels.pins import unpin
from . import layout as L
from .segment import Segment, object_stat, unlink

__all__ = [
    "Pin",
    "PinSlot",
    "SegmentFacts",
    "begin_version",
    "cas_state",
    "check",
    "clear_dead_pins",
    "creator",
    "facts",
    "init_fresh",
    "init_stream",
    "num_rows",
    "pin_table",
    "published_payload",
    "reclaim",
    "schema_fp",
    "seal",
    "set_state",
    "stamp_owner",
    "stamp_published",
    "state_word",
    "take_for_rewrite",
    "unpinned",
]

_U64 = np.uint64


# -- the state word ----------------------------------------------------------------------


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


# -- writing a header ----------------------------------------------------------------------


def _stamp_creator(seg: Segment) -> None:
    """The fields that name this process as the segment's creator."""
    pid, start = identity()
    w = seg.words
    w[L.S_FORMAT_VERSION] = L.FORMAT_VERSION
    w[L.S_CREATOR_PID] = pid
    w[L.S_CREATOR_START] = start
    w[L.S_CREATED_NS] = time.time_ns()
    w[L.S_SEGMENT_BYTES] = seg.size


def init_fresh(seg: Segment) -> None:
    """Header of a new dataset segment, before it is named: WRITING by this process,
    so that the moment it exists ``gc`` can tell whether its creator still lives."""
    _stamp_creator(seg)
    seg.words[L.S_STATE] = L.SEG_WRITING
    seg.words[L.S_MAGIC] = L.SEGMENT_MAGIC


def begin_version(seg: Segment, data_bytes: int, *, fresh: bool) -> None:
    """Prepare a WRITING segment to receive a dataset version of *data_bytes*.

    A fresh one was stamped by :func:`init_fresh`; a recycled one is restamped
    as this process's and forgets its previous life before its state can read
    SEALED again, so that a reader holding a stale registry record never
    matches it.
    """
    w = seg.words
    if not fresh:
        _stamp_creator(seg)
    w[L.S_KIND] = L.KIND_DATASET
    w[L.S_VERSION] = 0
    w[L.S_GENERATION] = 0
    w[L.S_NAME_HASH] = 0
    w[L.S_BATCH_VERSION] = 0
    w[L.S_DATA_OFFSET] = L.SEGMENT_HEADER_BYTES
    w[L.S_DATA_BYTES] = data_bytes


def seal(seg: Segment, num_rows: int, schema_fp: int) -> None:
    """The payload is complete: record its rows and schema, and mark it SEALED."""
    w = seg.words
    w[L.S_NUM_ROWS] = num_rows
    w[L.S_SCHEMA_FP] = schema_fp
    set_state(seg, L.SEG_SEALED)


def stamp_published(seg: Segment, version: int, name_hash: int, generation: int,
                    batch: tuple[int, int] | None = None) -> None:
    """Which version of which entry the segment holds (written under the entry's
    lock, before the registry record that names it). *batch* locates the
    payload's only record-batch message (FORMAT.md, "Batch locator")."""
    w = seg.words
    w[L.S_VERSION] = version
    w[L.S_NAME_HASH] = name_hash
    w[L.S_GENERATION] = generation
    if batch is not None:
        w[L.S_BATCH_OFFSET], w[L.S_BATCH_BYTES] = batch
        w[L.S_BATCH_VERSION] = version


def init_stream(seg: Segment, data_offset: int, data_bytes: int, schema_fp: int) -> None:
    """Common header of a new stream segment (WRITING until the registry
    references it); the stream header after it is the streams' to write."""
    _stamp_creator(seg)
    w = seg.words
    w[L.S_KIND] = L.KIND_STREAM
    w[L.S_STATE] = L.SEG_WRITING
    w[L.S_DATA_OFFSET] = data_offset
    w[L.S_DATA_BYTES] = data_bytes
    w[L.S_SCHEMA_FP] = schema_fp
    atomic_store(w, L.S_MAGIC, _U64(L.SEGMENT_MAGIC))


def stamp_owner(seg: Segment) -> None:
    """Name this process as the owner of a segment it keeps for reuse (gc judges a
    POOLED segment by this owner; written before the state says POOLED)."""
    pid, start = identity()
    seg.words[L.S_CREATOR_PID] = pid
    seg.words[L.S_CREATOR_START] = start


def take_for_rewrite(seg: Segment, word: int) -> bool:
    """Claim a POOLED segment whose state word was *word* for a new version: True
    when it is now WRITING and no live process pins it; otherwise it is left (or
    put back) POOLED."""
    if not cas_state(seg, word, L.SEG_WRITING):
        return False
    if unpinned(seg):  # checked after WRITING is visible: see the module docstring
        seg.words[L.S_RECYCLES] = int(seg.words[L.S_RECYCLES]) + 1
        return True
    cas_state(seg, state_word(seg), L.SEG_POOLED)  # a reader holds it
    return False


# -- reading a header ----------------------------------------------------------------------


def check(seg: Segment, what: str, format_found: int | None = None) -> None:
    """Raise unless *seg* is a data segment of this format version (*what* names
    it in the message, e.g. ``"dataset 'x'"``).

    Raises
    ------
    CorruptSegmentError
        When it is too small or has no segment magic.
    FormatVersionError
        When it was written with another format version.
    """
    w = seg.words
    if seg.size < L.SEGMENT_HEADER_BYTES or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
        raise CorruptSegmentError(
            f"{seg.name} ({what}) is not an arrowshm segment; delete it and put it again",
            shm_name=seg.name,
        )
    found = int(w[L.S_FORMAT_VERSION]) if format_found is None else format_found
    if found != L.FORMAT_VERSION:
        raise FormatVersionError(
            f"{seg.name} was written with format version {found}; this arrowshm reads "
            f"{L.FORMAT_VERSION}: read it with the arrowshm that wrote it",
            found=found,
            expected=L.FORMAT_VERSION,
        )


def published_payload(seg: Segment, version: int, generation: int,
                      name_hash: int) -> tuple[int, int, int] | None:
    """(payload offset, length, state word) when *seg* holds exactly *version* of the
    entry of *generation* and *name_hash*, sealed or published; None when it holds
    something else now (recycled, being rewritten or reclaimed). Unpinned: the
    caller re-reads the state word after using the payload.

    Raises
    ------
    CorruptSegmentError
        When the header's payload offsets point outside the segment.
    """
    w = seg.words
    word = state_word(seg)
    if (
        # SEALED too: a writer killed right after publishing never marked it PUBLISHED
        L.state_of(word) not in (L.SEG_SEALED, L.SEG_PUBLISHED)
        or int(w[L.S_VERSION]) != version
        or int(w[L.S_GENERATION]) != generation
        or int(w[L.S_NAME_HASH]) != name_hash
    ):
        return None
    off, n = int(w[L.S_DATA_OFFSET]), int(w[L.S_DATA_BYTES])
    if off < L.SEGMENT_HEADER_BYTES or off > seg.size or n > seg.size - off:
        raise CorruptSegmentError(
            f"{seg.name} has impossible payload offsets in its header; delete its "
            "dataset and put it again", shm_name=seg.name,
        )
    return off, n, word


def num_rows(seg: Segment) -> int:
    """Rows of the version *seg* holds (read it with :func:`published_payload`)."""
    return int(seg.words[L.S_NUM_ROWS])


def schema_fp(seg: Segment) -> int:
    """Schema fingerprint of what *seg* holds."""
    return int(seg.words[L.S_SCHEMA_FP])


def creator(seg: Segment) -> tuple[int, int]:
    """(pid, start ticks) of the process that created, or last rewrote, *seg*."""
    return int(seg.words[L.S_CREATOR_PID]), int(seg.words[L.S_CREATOR_START])


@dataclass(frozen=True)
class SegmentFacts:
    """What ``gc`` needs to know of a segment, read in one place."""

    word: int  # the state word (acquire), for a later compare-and-swap
    state: int
    kind: int
    creator_pid: int
    creator_start: int

    @property
    def creator_alive(self) -> bool:
        return is_alive(self.creator_pid, self.creator_start)


def facts(seg: Segment) -> SegmentFacts | None:
    """The header facts of *seg*, or None when it is not a segment of ours."""
    w = seg.words
    if seg.size < L.SEGMENT_HEADER_BYTES or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
        return None
    word = state_word(seg)
    return SegmentFacts(word, L.state_of(word), int(w[L.S_KIND]), int(w[L.S_CREATOR_PID]),
                        int(w[L.S_CREATOR_START]))


# -- pins ------------------------------------------------------------------------------------


class Pin:
    """Keeps one pin slot of a segment for as long as Python holds a buffer of it.

    It is the ``base`` of the foreign buffer a table is read from; every
    buffer of that table keeps it alive. When the last one goes, the slot is
    released.
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
        start = int(atomic_load(w, base + 1))
        if is_alive(pid, start) or not _clear_pin(w, base, pid, start):
            return False
    return True


def _clear_pin(w: np.ndarray, base: int, pid: int, start: int) -> bool:
    """Release the pin at word *base* of dead process *pid* seen with *start*: True
    when it is free now (or taken by someone else since).

    The start word is cleared first, by a compare-and-swap from the value that
    judged the process dead, and only then the pid word: a slot whose pid is 0
    always has a start of 0 (:func:`arrowshm.kernels.pins.unpin` clears in the
    same order), so a reader taking the slot next never shows, between its pid
    and its start stores, a dead predecessor's start time that would get its
    live pin cleared. Of two processes clearing the same pin, only the one that
    wins the start word goes on.
    """
    if start and int(atomic_cas(w, base + 1, _U64(start), _U64(0))) != start:
        return int(atomic_load(w, base)) != pid  # someone else cleared it meanwhile
    atomic_cas(w, base, _U64(pid), _U64(0))
    return True


@dataclass(frozen=True)
class PinSlot:
    """One taken slot of a segment's pin table, as :func:`pin_table` read it."""

    slot: int
    pid: int
    start: int  # clock ticks since boot; 0 while the pin is being taken
    since_ns: int  # CLOCK_REALTIME ns the pin was taken; 0 while it is being taken

    @property
    def alive(self) -> bool:
        return is_alive(self.pid, self.start)


def pin_table(seg: Segment) -> tuple[list[PinSlot], bool]:
    """The taken pin slots of *seg* and whether its overflow flag is set (more
    readers than slots: those beyond the table are not listed).

    Each slot is read with acquire loads in the order its writer publishes it
    (pid, then start time, then time; :func:`arrowshm.kernels.pins.pin_version`)
    and kept only if its pid word still holds the same pid afterwards; a slot
    being taken or released at that instant may be missed or show a start
    time of 0. Nothing read here is trusted further than a pid: liveness is
    judged against ``/proc``.
    """
    w = seg.words
    if seg.size < L.SEGMENT_HEADER_BYTES:  # the pin table lies inside the header
        return [], False
    pids = w[L.S_PINS : L.S_PINS + L.PIN_SLOTS * L.PIN_WORDS : L.PIN_WORDS]
    out = []
    for slot in np.flatnonzero(pids):
        base = L.S_PINS + int(slot) * L.PIN_WORDS
        pid = int(atomic_load(w, base))
        if pid == 0 or pid >= 1 << 31:  # free, or no pid a kernel hands out
            continue
        start = int(atomic_load(w, base + 1))
        since = int(atomic_load(w, base + 2))
        if int(atomic_load(w, base)) != pid:
            continue  # released (or released and taken again) while read
        out.append(PinSlot(int(slot), pid, start, since))
    return out, bool(int(atomic_load(w, L.S_PIN_OVERFLOW)))


def clear_dead_pins(seg: Segment) -> list[PinSlot]:
    """Release every pin of *seg* held by a process that no longer exists; returns
    the pins released. Each is cleared as :func:`unpinned` clears one (start word,
    then pid word, each by compare-and-swap), so a slot taken again meanwhile is
    left alone and two processes clearing at once count each pin once."""
    if seg.size < L.SEGMENT_HEADER_BYTES:
        return []
    w = seg.words
    cleared = []
    for p in pin_table(seg)[0]:
        if p.alive:
            continue
        base = L.S_PINS + p.slot * L.PIN_WORDS
        if p.start and int(atomic_cas(w, base + 1, _U64(p.start), _U64(0))) != p.start:
            continue  # cleared (and perhaps taken again) by another process meanwhile
        if int(atomic_cas(w, base, _U64(p.pid), _U64(0))) == p.pid:
            cleared.append(p)
    return cleared


def reclaim(seg: Segment, seen_word: int | None = None) -> int:
    """Claim *seg* for removal and unlink it; returns the bytes its object held
    (0 if someone else changed or removed it first). The caller gives the bytes
    back to the namespace's quota.

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
    return int(st.st_size)
