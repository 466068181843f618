"""A crash-recoverable seqlock over a record of 64-bit words.

One writer (holding an exclusive writer lock managed elsewhere) publishes
fixed-size records; any number of readers copy the record out without
locking and retry if a write overlapped their copy. Readers never write
shared memory, so they cannot block the writer or each other.

Record layout (word offsets from ``base`` in a ``uint64`` view)::

    base + 0                 seq        even: stable; odd: a write is in progress
    base + 1                 stage_tag  seq value the staged copy will publish
    base + 2 .. 2+n          live       the payload readers copy (n words)
    base + 2+n .. 2+2n       staged     the next payload, written first

Write protocol (``seqlock_write``), from ``seq == s`` (even)::

    (1) staged[k] = src[k]                 relaxed stores
    (2) stage_tag = s + 2                  release store
    (3) seq = s + 1   (odd)                release store, then fence(release)
    (4) live[k] = staged[k]                relaxed stores
    (5) seq = s + 2   (even)               release store

Read protocol (``seqlock_try_read``)::

    s1 = seq                               acquire load; odd -> retry
    dst[k] = live[k]                       relaxed loads
    fence(acquire)
    s2 = seq                               relaxed load; s1 != s2 -> retry

Why a reader never returns a torn record: a reader that returns ``s1 == s2
== 2m`` read ``seq`` before and after its copy. If any live store of the
write that makes ``seq`` odd at ``2m+1`` had been observed by the copy, the
release fence after that odd store and the reader's acquire fence before the
re-check force the re-check to see ``2m+1`` or later (fence-fence
synchronisation). And the acquire load of ``s1 == 2m`` makes every live store
of the writes up to ``2m`` visible. So the copy holds exactly the record of
version ``2m``. (Hans Boehm, "Can Seqlocks Get Along With Programming
Language Memory Models?", 2012, uses the same fences.)

Crash recovery: a writer killed at any point leaves one of three states.

* Killed before (3): ``seq`` is even and ``live`` was never touched: the
  record is the old one, intact. ``staged`` may be half written; nobody
  reads it, the next write overwrites it.
* Killed after (3): ``seq`` is odd and ``stage_tag == seq + 1``; ``staged``
  is complete because the release store (2) ordered it before the tag, and
  the tag before ``seq`` (3). Readers see an odd sequence and retry (and
  eventually report busy). :func:`seqlock_recover`, run by whoever takes the
  writer lock from the dead owner, copies ``staged`` into ``live`` and
  publishes ``seq = stage_tag``: the interrupted write completes.
* ``seq`` odd but ``stage_tag != seq + 1``: cannot be produced by this writer
  (the tag is ordered before the odd store); if it is found anyway, the
  live area was not touched by the failed write (its stores all follow the
  odd store and the release fence), so recovery rolls back by making ``seq``
  even again (``seq + 1``).

Status codes (negative; successes are sequence numbers >= 0):

====  ==========================================================
-16   ``EBUSY``: retries or time exhausted (writer active, or dead
      with ``seq`` odd: check the lock owner, then recover)
-22   ``EINVAL``: the record does not fit in ``words``
-130  ``EOWNERDEAD``: ``seqlock_write`` found ``seq`` odd: a previous
      writer died mid-write; call :func:`seqlock_recover` first
====  ==========================================================

Sequence numbers must stay below 2**63 (they are returned as int64): at two
per write that is 146 years at a billion writes per second.
"""

from __future__ import annotations

import numpy as np

from ._jit import U64Array, as_int64, kernel
from .atomics import (
    cpu_pause,
    fence_acquire,
    fence_release,
    load_acquire,
    load_relaxed,
    store_relaxed,
    store_release,
)
from .futex import clamp_timeout, monotonic_ns
from .status import EBUSY, EINVAL, EOWNERDEAD, SEQLOCK_RETRY

__all__ = [
    "SEQLOCK_EBUSY",
    "SEQLOCK_EINVAL",
    "SEQLOCK_EOWNERDEAD",
    "SEQLOCK_HEADER_WORDS",
    "seqlock_read",
    "seqlock_read_seq",
    "seqlock_recover",
    "seqlock_try_read",
    "seqlock_words",
    "seqlock_write",
]

SEQLOCK_EBUSY = EBUSY
"""Status: the record stayed odd or kept changing until retries or time ran out."""
SEQLOCK_EINVAL = EINVAL
"""Status: ``base`` or the payload length does not fit in ``words``."""
SEQLOCK_EOWNERDEAD = EOWNERDEAD
"""Status: a write found an odd sequence: recover before writing."""
SEQLOCK_HEADER_WORDS = 2
"""Words before the live payload: ``seq`` and ``stage_tag``."""

_CLOCK_EVERY = 64  # read the (syscall) clock once per this many failed attempts
_RETRY = SEQLOCK_RETRY


def seqlock_words(n: int) -> int:
    """Total words a record with ``n`` payload words occupies (``2 + 2 * n``).

    Plain Python (layout arithmetic). **Memory ordering**: none, it touches no
    shared memory. Returns the word count; no status codes.
    """
    return SEQLOCK_HEADER_WORDS + 2 * n


@kernel
def _fits(words: U64Array, base: int, n: int) -> bool:
    """True if header, live and staged areas of an ``n``-word record fit."""
    return base >= 0 and n >= 0 and base + 2 + 2 * n <= words.shape[0]


@kernel
def _read_once(words: U64Array, base: int, dst: U64Array, n: int) -> int:
    """One read attempt: the even sequence on success, ``_RETRY`` otherwise."""
    s1 = load_acquire(words, base)
    if s1 & np.uint64(1):
        return _RETRY
    live = base + 2
    for k in range(n):
        dst[k] = load_relaxed(words, live + k)
    fence_acquire()
    s2 = load_relaxed(words, base)
    if s1 != s2:
        return _RETRY
    return as_int64(s1)


@kernel
def seqlock_write(words: U64Array, base: int, src: U64Array) -> int:
    """Publish ``src`` (``n = len(src)`` words) as the record at ``words[base]``.

    The caller holds the record's exclusive writer lock. Steps: (1) copy
    ``src`` into the staged area; (2) ``stage_tag = seq + 2``; (3) ``seq =
    seq + 1`` (odd), release fence; (4) copy staged into live; (5) ``seq =
    seq + 2`` (even). See the module docstring for what a crash at each step
    leaves behind.

    **Memory ordering**: the initial load of ``seq`` is relaxed (the writer
    lock's acquire already ordered the previous writer's stores before us).
    Staged and live payload words are relaxed stores. (2) is a release store
    so the staged words are visible before the tag; (3) is a release store (a
    relaxed store would do for readers; release also keeps the tag before
    the odd sequence, so a recoverer seeing ``seq`` odd sees the matching
    tag) followed by a release fence, which keeps every live store (4) after
    the odd sequence; (5) is a release store, so a reader that acquires the
    new even value sees the whole live record.

    Returns the new even sequence (>= 2), -22 ``EINVAL`` if the record does
    not fit in ``words``, or -130 ``EOWNERDEAD`` if ``seq`` is odd (a writer
    died mid-write: call :func:`seqlock_recover` first).
    """
    n = src.shape[0]
    if not _fits(words, base, n):
        return SEQLOCK_EINVAL
    seq = load_relaxed(words, base)
    if seq & np.uint64(1):
        return SEQLOCK_EOWNERDEAD
    live = base + 2
    staged = live + n
    for k in range(n):
        store_relaxed(words, staged + k, src[k])
    store_release(words, base + 1, seq + np.uint64(2))
    store_release(words, base, seq + np.uint64(1))
    fence_release()
    for k in range(n):
        store_relaxed(words, live + k, load_relaxed(words, staged + k))
    store_release(words, base, seq + np.uint64(2))
    return as_int64(seq + np.uint64(2))


@kernel
def seqlock_try_read(words: U64Array, base: int, dst: U64Array, max_retries: int) -> int:
    """Copy the record at ``words[base]`` into ``dst`` (``n = len(dst)``) without blocking.

    Makes one attempt plus up to ``max_retries`` retries, with a ``pause``
    between attempts. An attempt fails if ``seq`` is odd (write in progress)
    or changed during the copy. ``dst`` is scratch until success.

    **Memory ordering**: ``s1`` is an acquire load (everything the writer
    published with the release store of ``s1`` is visible); payload words are
    relaxed loads; an acquire fence then orders them before the relaxed
    re-load ``s2``, so a payload word written by a later write forces ``s2``
    to differ (see the module docstring).

    Returns the record's even sequence (>= 0) with ``dst`` filled, -16
    ``EBUSY`` if every attempt failed (writer active, or dead while odd:
    check the lock owner and call :func:`seqlock_recover`), or -22 ``EINVAL``
    if the record does not fit in ``words``.
    """
    n = dst.shape[0]
    if not _fits(words, base, n):
        return SEQLOCK_EINVAL
    for _ in range(max(max_retries, 0) + 1):
        r = _read_once(words, base, dst, n)
        if r >= 0:
            return r
        cpu_pause()
    return SEQLOCK_EBUSY


@kernel
def seqlock_read(
    words: U64Array, base: int, dst: U64Array, spin_iters: int, timeout_ns: int
) -> int:
    """Copy the record like :func:`seqlock_try_read`, retrying until a deadline.

    Retries with ``pause`` for ``spin_iters`` attempts, then keeps retrying
    (still pausing: a numba kernel cannot yield to the scheduler) until
    ``timeout_ns`` has elapsed since the call, reading the clock every 64
    attempts. A negative or too large ``timeout_ns`` is clamped to
    :data:`~arrowshm.kernels.futex.MAX_TIMEOUT_NS`; since this burns a core,
    pass a short timeout (the writer holds ``seq`` odd only for a copy of
    ``n`` words unless it died).

    **Memory ordering**: as :func:`seqlock_try_read` for every attempt.

    Returns the record's even sequence (>= 0) with ``dst`` filled, -16
    ``EBUSY`` when the time is up (check whether the writer is dead, then
    :func:`seqlock_recover`), or -22 ``EINVAL`` if the record does not fit.
    """
    n = dst.shape[0]
    if not _fits(words, base, n):
        return SEQLOCK_EINVAL
    for _ in range(spin_iters + 1):
        r = _read_once(words, base, dst, n)
        if r >= 0:
            return r
        cpu_pause()
    t = clamp_timeout(timeout_ns)
    deadline = monotonic_ns() + t
    while True:
        for _ in range(_CLOCK_EVERY):
            r = _read_once(words, base, dst, n)
            if r >= 0:
                return r
            cpu_pause()
        if monotonic_ns() >= deadline:
            return SEQLOCK_EBUSY


@kernel
def seqlock_recover(words: U64Array, base: int, n: int) -> int:
    """Repair the record after its writer died; the caller holds the writer lock.

    If ``seq`` is odd and ``stage_tag == seq + 1``, the dead writer had
    staged a complete record: copy staged into live and publish ``seq =
    stage_tag`` (the interrupted write completes). If ``seq`` is odd without
    a matching tag, make it even again (``seq + 1``) leaving live untouched
    (roll back). If ``seq`` is even, do nothing. Idempotent: a recoverer that
    dies half way leaves a state the next recovery handles.

    **Memory ordering**: ``seq`` and ``stage_tag`` are acquire loads (the
    dead writer's staged stores, released by its tag store, are visible);
    staged-to-live copies are relaxed; the final ``seq`` store is a release
    store, so readers that see it even see the copied record. While ``seq``
    stays odd readers keep retrying, so the copy needs no fence of its own.

    Returns 1 if it completed an interrupted write, 2 if it rolled back an
    odd sequence, 0 if there was nothing to do, -22 ``EINVAL`` if the record
    does not fit in ``words``.
    """
    if not _fits(words, base, n):
        return SEQLOCK_EINVAL
    seq = load_acquire(words, base)
    if not seq & np.uint64(1):
        return 0
    tag = load_acquire(words, base + 1)
    if tag == seq + np.uint64(1):
        live = base + 2
        staged = live + n
        for k in range(n):
            store_relaxed(words, live + k, load_relaxed(words, staged + k))
        store_release(words, base, tag)
        return 1
    store_release(words, base, seq + np.uint64(1))
    return 2


@kernel
def seqlock_read_seq(words: U64Array, base: int) -> int:
    """The record's current sequence, for cheap change detection.

    An odd result means a write is in progress (or its writer died).

    **Memory ordering**: acquire load, so once a caller sees a new even
    sequence a following :func:`seqlock_try_read` cannot return an older
    record.

    Returns the sequence (>= 0) or -22 ``EINVAL`` if ``words[base]`` is out
    of range.
    """
    if base < 0 or base >= words.shape[0]:
        return SEQLOCK_EINVAL
    return as_int64(load_acquire(words, base))
