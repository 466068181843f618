"""Child-process bodies for the registry-entry stamp stress (spawned children import
them from here, never from a test module or ``__main__``).

The segment holds control words and one registry-entry-like block: state,
generation and, at :data:`~arrowshm.kernels.registry.ENTRY_SEQ`, a seqlock over
a record whose word 0 is a counter (``tests.kernels.helpers.fill_payload``). The
writer publishes record after record through the seqlock, and every so often
deletes the entry and claims it again the way the registry does (DELETED; then
CLAIMED, generation + 1, a record, the generation again, LIVE). Every record
write takes the next counter, so the record of sequence ``s`` holds counter
``FIRST + s / 2 - 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from arrowshm.kernels import (
    atomic_fetch_add,
    load_acquire,
    load_relaxed,
    seqlock_try_read,
    seqlock_write,
    store_release,
)
from arrowshm.kernels.registry import (
    ENTRY_GENERATION,
    ENTRY_SEQ,
    ENTRY_STATE,
    registry_entry_stamp,
)
from tests.kernels.helpers import STOP, attach_segment, fill_payload, payload_ok

READY = 1
RESULTS = 8  # per reader: RESULTS + 8 * index .. (checks, bad, later_seen, stale)
ENTRY = 128  # the entry's first word (its own cache lines)
N = 12  # record words
FIRST = 1  # the counter of the first record
LIVE = np.uint64(2)
CLAIMED = np.uint64(1)
DELETED = np.uint64(3)


@njit(nogil=True)
def _writer_loop(words: Any, reclaim_every: int) -> Any:
    src = np.empty(N, np.uint64)
    base = ENTRY + ENTRY_SEQ
    counter = np.uint64(FIRST) + load_relaxed(words, base) // np.uint64(2)
    writes = 0
    while load_relaxed(words, STOP) == 0:
        writes += 1
        if reclaim_every and writes % reclaim_every == 0:
            store_release(words, ENTRY + ENTRY_STATE, DELETED)
            gen = load_relaxed(words, ENTRY + ENTRY_GENERATION) + np.uint64(1)
            store_release(words, ENTRY + ENTRY_STATE, CLAIMED)
            store_release(words, ENTRY + ENTRY_GENERATION, gen)
            fill_payload(src, counter)
            if seqlock_write(words, base, src) < 0:
                return -1
            counter += np.uint64(1)
            store_release(words, ENTRY + ENTRY_GENERATION, gen)
            store_release(words, ENTRY + ENTRY_STATE, LIVE)
            continue
        fill_payload(src, counter)
        if seqlock_write(words, base, src) < 0:
            return -1
        counter += np.uint64(1)
    return np.int64(counter)


@njit(nogil=True)
def _reader_loop(words: Any, out: int, stamp_before: bool) -> None:
    """Take a stamp, read the record, take another: equal stamps must come with
    exactly that stamp's record. Then read the live counter word (acquire), as
    ``wait`` does, and take a stamp: it must not be older than that word's write."""
    dst = np.empty(N, np.uint64)
    base = ENTRY + ENTRY_SEQ
    checks = np.uint64(0)
    bad = np.uint64(0)
    later = np.uint64(0)
    stale = np.uint64(0)
    while load_relaxed(words, STOP) == 0:
        gen = load_acquire(words, ENTRY + ENTRY_GENERATION)
        s0 = registry_entry_stamp(words, ENTRY, gen)
        r = seqlock_try_read(words, base, dst, 64)
        s2 = registry_entry_stamp(words, ENTRY, gen)
        if not stamp_before:  # FORBIDDEN-on-purpose variant: a stamp taken after the read only
            s0 = s2
        if s0 >= 0 and s0 == s2:
            checks += np.uint64(1)
            if (r != s0 or not payload_ok(dst)
                    or dst[0] != np.uint64(FIRST) + np.uint64(s0) // np.uint64(2) - np.uint64(1)):
                bad += np.uint64(1)
        # a counter seen in the live record (mid-write or not) orders every later stamp
        v = load_acquire(words, base + 2)
        s = registry_entry_stamp(words, ENTRY, gen)
        if s >= 0:
            later += np.uint64(1)
            if np.uint64(s) < np.uint64(2) * (v - np.uint64(FIRST) + np.uint64(1)):
                stale += np.uint64(1)
    words[out + 0] = checks
    words[out + 1] = bad
    words[out + 2] = later
    words[out + 3] = stale


def _warm_up() -> None:
    w = np.zeros(ENTRY + ENTRY_SEQ + 2 + 2 * N + 8, np.uint64)
    w[STOP] = 1
    _writer_loop(w, 0)
    _reader_loop(w, RESULTS, True)
    _reader_loop(w, RESULTS, False)


def stamp_writer(name: str, reclaim_every: int) -> None:
    """Child: publish records (and re-claim the entry now and then) until STOP."""
    seg = attach_segment(name)
    words = seg.u64()
    _warm_up()
    atomic_fetch_add(words, READY, 1)
    _writer_loop(words, reclaim_every)


def stamp_reader(name: str, index: int, stamp_before: bool) -> None:
    """Child: check stamps against records until STOP."""
    seg = attach_segment(name)
    words = seg.u64()
    _warm_up()
    atomic_fetch_add(words, READY, 1)
    _reader_loop(words, RESULTS + 8 * index, stamp_before)
