"""Kernels of the per-namespace registry: open-addressing lookup of a name, finding a
free slot, and atomic quota reservation.

The registry is a hash table of fixed-size entries in one shared segment. A
name hashes (blake2b-64, computed in Python) to a home slot; lookups probe
linearly from there and stop at the first EMPTY slot. Deleted entries become
DELETED tombstones so probe chains stay intact. Inserts and deletes are
serialized by a lock in the registry header (taken in Python), so at most one
process changes the *set* of names at a time; lookups never lock.

The name of a slot is guarded by its ``generation`` word, which the claimer
bumps (release) *before* rewriting the name and stores again after, so a lookup
that read a name while it changed sees a different generation and retries:
the generation is a seqlock for the name.

All functions take the registry's ``uint64`` view and explicit word offsets,
and return integers; none raises. The one exception is
:func:`registry_entry_stamp`, a reader's cheapest question about an entry: its
three words' offsets from the entry's first word are :data:`ENTRY_STATE`,
:data:`ENTRY_GENERATION` and :data:`ENTRY_SEQ` (docs/FORMAT.md, "Entry";
``tests/arrowshm/test_layout.py`` asserts they match ``arrowshm._shm.layout``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._jit import U64Array, as_int64, kernel
from .atomics import cas, fence_acquire, load_acquire, load_relaxed
from .status import EBUSY, EINVAL, REGISTRY_FULL
from .status import NOT_FOUND as NOT_FOUND
from .status import QUOTA_EXCEEDED as QUOTA_EXCEEDED

FULL = REGISTRY_FULL

# word offsets from an entry's first word (docs/FORMAT.md, "Entry": state at byte 0,
# generation at 8, the record's seqlock sequence at 336)
ENTRY_STATE = 0
ENTRY_GENERATION = 1
ENTRY_SEQ = 42

_STATE_EMPTY = 0
_STATE_LIVE = 2
_STATE_DELETED = 3


@kernel
def registry_find(
    words: npt.NDArray[np.uint64],
    entries_word: int,
    entry_words: int,
    capacity: int,
    state_off: int,
    gen_off: int,
    hash_off: int,
    len_off: int,
    name_off: int,
    key_hash: np.uint64,
    key_name: npt.NDArray[np.uint64],
    key_len: int,
    out_gen: npt.NDArray[np.uint64],
) -> int:
    """Find the LIVE entry named *key_name*; return its slot or ``NOT_FOUND``.

    ``out_gen[0]`` receives the generation the name was matched under; callers
    use it to detect that the slot was deleted and reused since.

    Memory ordering
    ---------------
    ``generation`` and ``state`` are acquire loads, so the name words read
    after them (relaxed loads) are at least as new as the claim that published
    them; an acquire fence then orders those reads before the second, relaxed
    load of ``generation``. If the two generations differ the slot changed
    under the lookup and it is probed again. Returns -1 when an EMPTY slot or
    the whole table has been probed.
    """
    n_words = (key_len + 7) // 8
    home = np.int64(key_hash % np.uint64(capacity))
    probes = 0
    while probes < capacity:
        slot = (home + probes) % capacity
        base = entries_word + slot * entry_words
        g1 = load_acquire(words, base + gen_off)
        state = load_acquire(words, base + state_off)
        if state == _STATE_EMPTY:
            return NOT_FOUND
        match = False
        if (
            state == _STATE_LIVE
            and load_relaxed(words, base + hash_off) == key_hash
            and load_relaxed(words, base + len_off) == np.uint64(key_len)
        ):
            match = True
            for k in range(n_words):
                if load_relaxed(words, base + name_off + k) != key_name[k]:
                    match = False
                    break
        fence_acquire()
        g2 = load_relaxed(words, base + gen_off)
        if g1 != g2:
            continue  # the slot changed while it was compared: look again
        if match:
            out_gen[0] = g1
            return int(slot)
        probes += 1
    return NOT_FOUND


@kernel
def registry_find_free(
    words: npt.NDArray[np.uint64],
    entries_word: int,
    entry_words: int,
    capacity: int,
    state_off: int,
    key_hash: np.uint64,
) -> int:
    """First EMPTY or DELETED slot on *key_hash*'s probe chain, or ``REGISTRY_FULL``.

    Caller holds the registry's structure lock, so no other process claims
    concurrently. Memory ordering: acquire loads of ``state``.
    """
    home = np.int64(key_hash % np.uint64(capacity))
    for probes in range(capacity):
        slot = (home + probes) % capacity
        state = load_acquire(words, entries_word + slot * entry_words + state_off)
        if state == _STATE_EMPTY or state == _STATE_DELETED:  # noqa: SIM109 (numba-friendly)
            return int(slot)
    return FULL


@kernel
def quota_reserve(
    words: npt.NDArray[np.uint64], used_idx: int, quota_idx: int, nbytes: np.uint64
) -> int:
    """Atomically add *nbytes* to ``words[used_idx]`` unless that would pass the
    quota in ``words[quota_idx]`` (0 = no quota). Returns 0, or
    ``QUOTA_EXCEEDED`` and changes nothing.

    Memory ordering: a CAS loop (seq_cst) on the used counter; the quota is
    an acquire load re-read on every attempt, so a quota lowered concurrently
    applies to every reservation that commits after it.
    """
    while True:
        used = load_acquire(words, used_idx)
        quota = load_acquire(words, quota_idx)
        new = used + nbytes
        if quota != np.uint64(0) and new > quota:
            return QUOTA_EXCEEDED
        if cas(words, used_idx, used, new) == used:
            return 0


@kernel
def counter_release(words: npt.NDArray[np.uint64], used_idx: int, nbytes: np.uint64) -> int:
    """Subtract *nbytes* from ``words[used_idx]``, clamping at zero (a counter
    repaired by gc must never wrap). Returns 0. Memory ordering: CAS loop."""
    while True:
        used = load_acquire(words, used_idx)
        new = used - nbytes if used > nbytes else np.uint64(0)
        if cas(words, used_idx, used, new) == used:
            return 0


@kernel
def registry_entry_stamp(words: U64Array, entry: int, generation: int) -> int:
    """The sequence of the record of the entry at word ``entry``, if the entry is
    LIVE under ``generation``: a stamp that changes whenever the entry does.

    Every write of the record (a publish, a TTL or retention change) moves the
    seqlock sequence by 2; a delete makes the entry DELETED; a later claim of the
    slot bumps the generation. So a reader that took a stamp together with a
    record (one stamp before and an equal one after reading it) and later gets
    the same stamp back knows that the record is still the one it read: the
    one-call test of a repeated ``get``.

    **Memory ordering**: acquire loads of ``generation``, ``state``, the
    sequence and ``generation`` again. The generation is stored (release)
    before and after a claim rewrites the slot and the state is LIVE only
    between them, so equal generations around a LIVE state mean that entry
    incarnation was live when the state was read; the sequence only grows, so
    the stamp returned was current at that moment or just after (the call is
    linearizable at the state load). A waiter that saw a record word of a later
    write (acquire) sees at least that write's odd sequence here: the writer
    makes the sequence odd and issues a release fence before it stores a
    record word.

    Returns the even sequence (>= 0); ``NOT_FOUND`` (-201) when the entry is not
    LIVE or holds another generation; ``EBUSY`` (-16) while a write is in
    progress (odd sequence); ``EINVAL`` (-22) when the entry lies outside
    ``words``.
    """
    if entry < 0 or entry + ENTRY_SEQ >= words.shape[0]:
        return EINVAL
    g1 = load_acquire(words, entry + ENTRY_GENERATION)
    state = load_acquire(words, entry + ENTRY_STATE)
    seq = load_acquire(words, entry + ENTRY_SEQ)
    g2 = load_acquire(words, entry + ENTRY_GENERATION)
    if g1 != g2 or g1 != np.uint64(generation) or state != np.uint64(_STATE_LIVE):
        return NOT_FOUND
    if seq & np.uint64(1):
        return EBUSY
    return as_int64(seq)
