"""Single-producer, multi-consumer ring of Arrow batches (Disruptor style), with pins.

One writer publishes record batches; up to ``max_readers`` readers consume
every batch, each at its own pace. Batches are messages in a circular byte
*arena*; a ring of *descriptors* (one per sequence number) says where.

::

      ring header (hot lines)                reader slot i (512 bytes)
   +-------------------------------+     +------------------------------------+
   | cursor  reclaim  head  closed |     | pid start state read held missed hb|
   | data_futex bytes rows hb      |     | pins_seq pins_n                    |
   +-------------------------------+     | pin spans: (first last v0 v1) x 13 |
   | data_waiters                  |     +------------------------------------+
   | space_futex space_waiters ... |
   +-------------------------------+

   descriptors (n_slots, power of two; seq s lives in slot s % n_slots)

        seq:       reclaim                 read(r1)            cursor
                      |                       |                   |
          +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
          | old | old | rd  | rd  | rd  | rd  | new | new | new |     |
          +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
           reusable |<-- read by r1 (some pinned) -->|<-- unread -->| free
          seq+1 | vstart | length | rows   --->   bytes in the arena

   arena (virtual byte positions grow forever; physical = v % arena_bytes;
   a message never wraps - the writer jumps to the next lap - and the
   writer jumps over bytes that a reader has pinned):

       lap k                      | lap k+1
   [ .. m7 | m8 | PIN(m3) | m9 |  ][ schema m10 | m11 | PIN(m3) skip | m12 ..]
                                                        ^ still held by r1

Cursors are sequence numbers (``uint64``, from 0) that only grow:

* ``cursor`` - batches published; stored (release) after the descriptor and
  the bytes of batch ``cursor - 1``.
* ``reclaim`` - batches below it may be overwritten (their descriptors and,
  unless pinned, their bytes). The writer stores it (seq_cst) *before* it
  looks at the readers; a reader loads it (seq_cst) *after* it announced a
  claim. That store-then-load pair on both sides (Dekker) is what makes
  overwrite mode and late attaching safe.
* per reader ``read`` - the next sequence it will claim.

Pins. A batch a reader returned to Python is *held* until Python frees it
(in any order). The reader publishes the arena bytes of its held batches as
at most :data:`PIN_SPANS` *spans* ``[v0, v1)`` (runs of consecutive held
batches; when there are more runs, the two closest merge, pinning the gap
too). The spans live in the reader's slot under a seqlock (``pins_seq``).
The writer never writes into a pinned span: it jumps over it. So a held
batch costs only its own bytes - the writer keeps lapping the ring around
it - and the writer waits for a release only when pinned bytes leave no
room at all.

Gating. To write batch ``n`` of ``size`` bytes the writer picks the region
``[start, end)`` (at ``head``, or the next lap, or past a pinned span) and
``need``, the oldest batch that must stay intact: the smallest
``m >= n + 1 - n_slots`` whose bytes lie past ``end - arena_bytes``. In
``block`` mode every ACTIVE reader must have ``read >= need`` (nothing unread
is overwritten); in ``overwrite`` mode unread batches go, and a lapped reader
skips ahead, counting what it missed. In both modes pinned bytes are never
overwritten.

Bursts. :func:`ring_try_claim_many` claims ``count`` sequences and one region
for their messages, written back to back, and :func:`ring_publish_many` fills
their descriptors and stores the cursor once. :func:`ring_try_read_many`
claims every published batch from the reader's cursor on (up to a maximum)
whose messages lie back to back in one lap of the arena, and pins them as one
run; :func:`ring_unpin_range` releases such a run at once. One kernel call per
burst instead of per batch, on both sides; the protocol per batch is the same.

Waiting: spin (``pause``) for ``spin_ns``, then sleep on a futex event
counter with a waiter count, so the other side issues a ``FUTEX_WAKE`` only
when someone sleeps (see :func:`ring_notify`). Every wait takes a timeout
and sleeps at most :data:`WAIT_SLICE_NS` at a time.

Layout parameters arrive in a small private ``uint64`` vector ``geo``
(:data:`G_HDR` ...), built and validated in Python when the segment is
opened: the kernels use unchecked indices.

Status codes (negative returns; non-negative returns are sequences, cursors
or slot indices)

================  =====  ===================================================
name              value  meaning
================  =====  ===================================================
``GATED``          -401  readers' unread or pinned batches leave no room
``EMPTY``          -402  no batch to read yet
``CLOSED``         -403  the writer closed the stream and all is read
``FULL``           -404  no free reader slot
``CORRUPT``        -405  a descriptor or cursor is impossible
``NOT_OWNER``      -406  the reader slot does not belong to the given pid
``NOT_HELD``       -407  :func:`ring_unpin` of a sequence no span covers
``TIMEOUT``        -110  the wait timed out (``ETIMEDOUT``)
================  =====  ===================================================
"""

# Kernel bodies are numba code: cursors are np.uint64 / np.int64 scalars where the
# Python-level signatures say int, which numba unifies but mypy cannot.
# mypy: disable-error-code="arg-type, return-value, assignment"

from __future__ import annotations

import numpy as np

from ._jit import U32Array, U64Array, kernel
from .atomics import (
    cas,
    cpu_pause,
    fence_acquire,
    fence_release,
    fence_seq_cst,
    fetch_add,
    fetch_sub,
    load_acquire,
    load_relaxed,
    load_seq_cst,
    store_relaxed,
    store_release,
    store_seq_cst,
)
from .futex import MAX_TIMEOUT_NS, WAIT_SLICE_NS, futex_wait, futex_wake, monotonic_ns
from .status import (
    ETIMEDOUT,
    RING_CLOSED,
    RING_CORRUPT,
    RING_EMPTY,
    RING_FULL,
    RING_GATED,
    RING_NOT_HELD,
    RING_NOT_OWNER,
)

__all__ = [
    "CLOSED",
    "CORRUPT",
    "EMPTY",
    "FULL",
    "GATED",
    "NOT_HELD",
    "NOT_OWNER",
    "TIMEOUT",
    "ring_claim",
    "ring_close",
    "ring_evict",
    "ring_notify",
    "ring_publish",
    "ring_publish_many",
    "ring_read",
    "ring_reader_attach",
    "ring_reader_detach",
    "ring_reader_drain",
    "ring_try_claim",
    "ring_try_claim_many",
    "ring_try_read",
    "ring_try_read_many",
    "ring_try_wait_for",
    "ring_unpin",
    "ring_unpin_range",
    "ring_wait_for",
]

# -- status codes -----------------------------------------------------------------------
GATED = RING_GATED
EMPTY = RING_EMPTY
CLOSED = RING_CLOSED
FULL = RING_FULL
CORRUPT = RING_CORRUPT
NOT_OWNER = RING_NOT_OWNER
NOT_HELD = RING_NOT_HELD
TIMEOUT = ETIMEDOUT

# -- geometry vector (uint64, private to the calling process) ---------------------------
G_HDR = 0  # word index of the ring header (hot lines below)
G_READERS = 1  # word index of reader slot 0
G_MAX_READERS = 2
G_RING = 3  # word index of descriptor 0
G_N_SLOTS = 4  # power of two
G_ARENA_BYTES = 5  # multiple of 8
G_MODE = 6  # MODE_BLOCK / MODE_OVERWRITE
G_WORDS = 8

MODE_BLOCK = 0
MODE_OVERWRITE = 1

# -- ring header: word offsets from G_HDR ------------------------------------------------
# line 0: written by the writer only, read by every reader
H_CURSOR = 0
H_RECLAIM = 1
H_HEAD = 2  # virtual arena position after the last published message
H_CLOSED = 3  # CLOSED_OPEN / CLOSED_CLOSED / CLOSED_ABORTED
H_DATA_FUTEX = 4  # 32-bit event counter in the low half of the word
H_BYTES = 5
H_ROWS = 6
H_HEARTBEAT = 7  # CLOCK_MONOTONIC ns of the last publish
# line 1: written by sleeping readers
H_DATA_WAITERS = 8
# line 2: the writer's wait for space
H_SPACE_FUTEX = 16
H_SPACE_WAITERS = 17
H_GATED_SINCE = 18  # CLOCK_MONOTONIC ns the writer started waiting; 0 = not waiting
H_GATING_READER = 19  # 1 + slot of the first reader in the writer's way; 0 = none
H_EVICTED = 20  # readers evicted since creation
H_WAITS = 21  # writes that had to wait for space
H_SKIPPED = 22  # arena bytes jumped over because readers pinned them
HEADER_WORDS = 24

CLOSED_OPEN = 0
CLOSED_CLOSED = 1
CLOSED_ABORTED = 2

# -- reader slot: word offsets (512 bytes per reader) -----------------------------------
RD_PID = 0
RD_START = 1
RD_STATE = 2
RD_READ = 3
RD_HELD = 4
RD_MISSED = 5
RD_HEARTBEAT = 6
RD_SINCE = 7  # CLOCK_REALTIME ns the reader attached (for ``info``)
RD_PINS_SEQ = 8  # seqlock over RD_PINS_N and the spans (second cache line)
RD_PINS_N = 9
RD_SPANS = 12  # PIN_SPANS x (first_seq, last_seq, v0, v1)
SPAN_WORDS = 4
PIN_SPANS = 13
SLOT_WORDS = 64

RD_FREE = 0
RD_ACTIVE = 1
RD_DRAINING = 2  # closed by its process but still holding batches

# -- descriptor: word offsets (32 bytes) --------------------------------------------------
D_SEQ = 0  # seq + 1 once published (0 = never written)
D_VSTART = 1  # virtual arena position of the IPC message
D_LENGTH = 2  # message bytes
D_ROWS = 3
DESC_WORDS = 4

# -- out vector (private uint64 array of OUT_WORDS) ---------------------------------------
# claim kernels
O_START = 0  # virtual position where the writer must put the message
O_RESTART = 1  # 1: the message does not follow the previous one (restart the IPC stream)
O_NEED = 2
O_FIRST_GATING = 3
O_N_GATING = 4
O_GATE_KIND = 5  # GATE_UNREAD / GATE_PINNED / GATE_BUSY
# read kernels (``ring_try_read_many``: the whole run of batches claimed)
O_VSTART = 0
O_LENGTH = 1
O_ROWS = 2
O_MISSED = 3
O_READ = 4
O_COUNT = 5  # batches claimed (ring_try_read_many)
O_SCRATCH = 8  # scratch for the pin table while a claim can still be undone
OUT_WORDS = 8 + 2 + PIN_SPANS * SPAN_WORDS + 2

GATE_UNREAD = 1
GATE_PINNED = 2
GATE_BUSY = 3

_SPIN_CHECK = 32  # pauses between clock reads / full re-checks while spinning
_MIN_MESSAGE = np.uint64(8)  # an IPC message is at least its continuation marker and length
_PIN_READ_TRIES = 1 << 12
_WAKE_ALL = 0x7FFFFFFF
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)


# ---------------------------------------------------------------------------------------
# waking
# ---------------------------------------------------------------------------------------


@kernel
def ring_notify(words: U64Array, w32: U32Array, futex_word: int, waiters_word: int) -> int:
    """Wake whoever sleeps on the event counter in ``words[futex_word]`` - if anyone does.

    Call after storing the value a waiter waits for. With nobody asleep this
    costs one fence and one load: no locked increment, no system call.

    **Memory ordering**: ``fence(seq_cst)``, then a seq_cst load of the waiter
    count; only if it is non-zero a seq_cst ``fetch_add`` of the 32-bit event
    counter (low half of ``futex_word``) and ``FUTEX_WAKE`` of all. A waiter
    runs ``f = load(counter); fetch_add(waiters); re-check value (seq_cst);
    futex_wait(counter, f)``. If the notifier's load misses the waiter's
    increment, then in the total order of seq_cst operations the notifier's
    fence precedes the waiter's re-check, so the re-check sees the value
    stored before the fence and the waiter does not sleep. If the load sees
    the increment, the waiter read the counter before the notifier bumps it:
    its ``FUTEX_WAIT`` either fails with ``EAGAIN`` or is queued before the
    wake, which follows the bump. No wake-up is lost.

    Returns the number of processes woken (0 when nobody slept).
    """
    fence_seq_cst()
    if load_seq_cst(words, waiters_word) != _U0:
        fetch_add(w32, 2 * futex_word, np.uint32(1))
        n = futex_wake(w32, 2 * futex_word, _WAKE_ALL)
        return n if n > 0 else 0
    return 0


# ---------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------


@kernel
def _pins_n(words: U64Array, base: int) -> np.uint64:
    # A reader slot's span count, clamped to the table: it is read back from shared
    # memory, and every span index derived from it must stay inside the slot.
    n = load_relaxed(words, base + RD_PINS_N)
    return n if n <= np.uint64(PIN_SPANS) else np.uint64(PIN_SPANS)


@kernel
def _pin_conflict(
    words: U64Array, base: int, start: np.uint64, end: np.uint64, arena: np.uint64, out: U64Array
) -> int:
    # Seqlock-read reader ``base``'s pin spans; for the spans the region [start, end)
    # overlaps (physically, modulo the arena), store in out[O_START] the first position
    # past them. Returns 1 if some span conflicts, 0 if none, -1 if the table stayed
    # busy (its reader is mid-update for too long: maybe dead).
    for _ in range(_PIN_READ_TRIES):
        s1 = load_seq_cst(words, base + RD_PINS_SEQ)
        if s1 & _U1:
            cpu_pause()
            continue
        n = _pins_n(words, base)
        hit = 0
        past = start
        for j in range(np.int64(n)):
            sp = base + RD_SPANS + j * SPAN_WORDS
            v0 = load_relaxed(words, sp + 2)
            v1 = load_relaxed(words, sp + 3)
            # spans lie behind the writer (v1 <= head <= start): copies of [v0, v1) in
            # later laps are [v0 + jA, v1 + jA); the first one that can still reach the
            # region is j = (start - v1) // A + 1; it overlaps iff it starts before end
            if v1 > start or v0 >= v1:
                continue  # torn read (re-checked below) or empty
            jm = (start - v1) // arena + _U1
            if v0 + jm * arena < end:
                hit = 1
                if v1 + jm * arena > past:
                    past = v1 + jm * arena
        fence_acquire()
        if load_relaxed(words, base + RD_PINS_SEQ) == s1:
            if hit:
                out[O_START] = past
            return hit
    return -1


@kernel
def _try_claim(
    words: U64Array,
    geo: U64Array,
    head: int,
    size: int,
    count: int,
    restart_bytes: int,
    restart: int,
    out: U64Array,
) -> int:
    # ring_try_claim for ``count`` sequences sharing one region of ``size`` bytes: the
    # descriptors of n .. n + count - 1 reuse those of n + count - 1 - n_slots and
    # before, so ``need`` starts at n + count - n_slots (1 <= count <= n_slots)
    hdr = np.int64(geo[G_HDR])
    n = load_relaxed(words, hdr + H_CURSOR)
    n_slots = geo[G_N_SLOTS]
    arena = geo[G_ARENA_BYTES]
    ring = np.int64(geo[G_RING])
    readers = np.int64(geo[G_READERS])
    max_readers = np.int64(geo[G_MAX_READERS])
    block = geo[G_MODE] == MODE_BLOCK
    h = np.uint64(head)
    sz = np.uint64(size)
    start = h
    rs = restart != 0
    cnt = np.uint64(count)
    lo = n + cnt - n_slots if n + cnt > n_slots else _U0
    out[O_N_GATING] = 0
    for _ in range(4 + 4 * max_readers * PIN_SPANS):
        total = sz + (np.uint64(restart_bytes) if rs else _U0)
        off = start % arena
        if off + total > arena:
            start = start - off + arena
            rs = True
            continue
        if start - h >= arena:
            break  # pins cover every place the message could go
        end = start + total
        reclaim = load_relaxed(words, hdr + H_RECLAIM)
        m = reclaim if reclaim > lo else lo
        while m < n:
            d = ring + np.int64(m & (n_slots - _U1)) * DESC_WORDS
            if load_relaxed(words, d + D_VSTART) + arena >= end:
                break
            m += _U1
        need = m
        out[O_NEED] = need
        # block mode checks the readers' cursors before (so a failed attempt does not
        # advance the horizon) and after publishing the horizon (the Dekker re-check
        # that catches a reader attaching concurrently)
        for check in range(2 if block else 1):
            if (check == 1 or not block) and need > reclaim:
                store_seq_cst(words, hdr + H_RECLAIM, need)
            if not block:
                break
            n_gating = 0
            first = -1
            for i in range(max_readers):
                base = readers + i * SLOT_WORDS
                if load_seq_cst(words, base + RD_STATE) != RD_ACTIVE:
                    continue
                if load_seq_cst(words, base + RD_READ) < need:
                    n_gating += 1
                    if first < 0:
                        first = i
            if n_gating > 0:
                out[O_FIRST_GATING] = first
                out[O_N_GATING] = n_gating
                out[O_GATE_KIND] = GATE_UNREAD
                return GATED
        moved = False
        past = start
        for i in range(max_readers):
            base = readers + i * SLOT_WORDS
            if load_seq_cst(words, base + RD_STATE) == RD_FREE:
                continue
            c = _pin_conflict(words, base, start, end, arena, out)
            if c < 0:
                out[O_FIRST_GATING] = i
                out[O_N_GATING] = 1
                out[O_GATE_KIND] = GATE_BUSY
                return GATED
            if c > 0:
                if not moved:
                    out[O_FIRST_GATING] = i
                    out[O_N_GATING] = 0
                moved = True
                out[O_N_GATING] += _U1
                if out[O_START] > past:
                    past = out[O_START]
        if moved:
            start = past
            rs = True
            continue
        out[O_START] = start
        out[O_RESTART] = 1 if (rs or start != h) else 0
        out[O_N_GATING] = 0
        return np.int64(n)
    out[O_GATE_KIND] = GATE_PINNED
    if out[O_N_GATING] == 0:
        out[O_N_GATING] = 1
    return GATED


@kernel
def ring_try_claim(
    words: U64Array,
    geo: U64Array,
    head: int,
    size: int,
    restart_bytes: int,
    restart: int,
    out: U64Array,
) -> int:
    """Try to claim the next sequence and a region for a message of ``size`` bytes.

    The region starts at ``head`` (the end of the previous message) if the
    message fits before the end of the arena and no reader pinned those
    bytes; otherwise at the next lap, or just past the pinned span. A region
    that does not follow the previous message (or ``restart != 0``) also
    holds ``restart_bytes`` in front (the IPC schema message the caller
    writes when it restarts its stream writer there). On success
    ``out[O_START]`` is the region's virtual start, ``out[O_RESTART]`` 1 if
    the caller must restart, ``out[O_NEED]`` the new ``reclaim``; the caller
    writes the bytes and calls :func:`ring_publish`. The writer is
    single-threaded, so nothing else claims in between. When gated,
    ``out[O_FIRST_GATING]``, ``out[O_N_GATING]`` and ``out[O_GATE_KIND]``
    (1 unread, 2 pinned, 3 a pin table stayed busy) say who is in the way.
    ``size + restart_bytes`` must not exceed the arena (checked by the caller).

    **Memory ordering**: the writer's own words (cursor, reclaim, the
    descriptors' ``vstart``) are relaxed loads. ``reclaim`` is stored with
    seq_cst *before* the readers' pin tables are read, and in block mode
    before a second check of their ``read`` cursors (a first check before
    the store keeps a failed attempt from advancing the horizon; the second
    catches a reader that attached meanwhile: it stores ``read`` and then
    loads ``reclaim``, both seq_cst). Readers' ``state`` and ``read`` are
    seq_cst loads; their pin tables are read under their seqlock (seq_cst
    load of ``pins_seq``, relaxed spans, acquire fence, re-check).
    A reader publishes a pin (seq_cst store of the even ``pins_seq``) and
    then loads ``reclaim`` (seq_cst), so in the single total order either the
    writer sees the pin, or the reader sees the new ``reclaim`` and drops the
    claim without touching the batch. In block mode a reader pins a batch
    before it advances ``read`` past it, and the writer reads ``read`` before
    the pins, so a batch is always either unread or visibly pinned.

    Returns the sequence to write (>= 0) or ``GATED`` (-401).
    """
    return _try_claim(words, geo, head, size, 1, restart_bytes, restart, out)


@kernel
def ring_try_claim_many(
    words: U64Array,
    geo: U64Array,
    head: int,
    size: int,
    count: int,
    restart_bytes: int,
    restart: int,
    out: U64Array,
) -> int:
    """:func:`ring_try_claim` for ``count`` batches at once: the next ``count``
    sequences and one region of ``size`` bytes for their messages, back to back.

    As :func:`ring_try_claim` in every other respect (``out`` receives the
    region's start, the restart flag and the new ``reclaim``; a region that
    does not follow the previous message holds ``restart_bytes`` in front).
    The caller writes the messages and calls :func:`ring_publish_many`. It
    must ensure ``1 <= count <= n_slots`` and ``size + restart_bytes <=
    arena_bytes``.

    **Memory ordering**: as :func:`ring_try_claim`; the oldest batch that
    must stay intact is computed for the last of the ``count`` sequences,
    whose descriptor slot is reused last, so every reader check of
    :func:`ring_try_claim` covers all of them.

    Returns the first sequence to write (>= 0) or ``GATED`` (-401).
    """
    return _try_claim(words, geo, head, size, count, restart_bytes, restart, out)


@kernel
def ring_claim(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    head: int,
    size: int,
    restart_bytes: int,
    restart: int,
    spin_ns: int,
    timeout_ns: int,
    out: U64Array,
) -> int:
    """Blocking :func:`ring_try_claim`: wait until readers leave room for the message.

    Spins for ``spin_ns`` (re-trying every few dozen ``pause``), then sleeps
    on the space futex in slices of at most :data:`WAIT_SLICE_NS` until
    ``timeout_ns`` has passed (negative or huge values are clamped to one
    hour). While it waits, ``H_GATED_SINCE`` and ``H_GATING_READER`` tell
    observers (``arrowshm info``) who is in the way.

    **Memory ordering**: as :func:`ring_try_claim` for each attempt. Before
    sleeping the writer reads the space event counter (seq_cst), increments
    the space waiter count (seq_cst) and re-tries the claim (seq_cst loads of
    the reader slots); a reader stores its new ``read`` or pin table and then
    calls :func:`ring_notify`, so no release is missed (see there).

    Returns the sequence (>= 0) or ``TIMEOUT`` (-110) with ``out`` describing
    the gating readers.
    """
    r = ring_try_claim(words, geo, head, size, restart_bytes, restart, out)
    if r != GATED:
        return r
    hdr = np.int64(geo[G_HDR])
    t0 = monotonic_ns()
    store_relaxed(words, hdr + H_GATED_SINCE, np.uint64(t0))
    store_relaxed(words, hdr + H_GATING_READER, out[O_FIRST_GATING] + _U1)
    fetch_add(words, hdr + H_WAITS, _U1)
    spin = np.int64(spin_ns)
    if spin > 0:
        while True:
            for _ in range(_SPIN_CHECK):
                cpu_pause()
            r = ring_try_claim(words, geo, head, size, restart_bytes, restart, out)
            if r != GATED:
                store_relaxed(words, hdr + H_GATED_SINCE, _U0)
                store_relaxed(words, hdr + H_GATING_READER, _U0)
                return r
            if monotonic_ns() - t0 >= spin:
                break
    t = np.int64(timeout_ns)
    if t < 0 or t > MAX_TIMEOUT_NS:
        t = np.int64(MAX_TIMEOUT_NS)
    deadline = t0 + t
    fidx = 2 * (hdr + H_SPACE_FUTEX)
    widx = hdr + H_SPACE_WAITERS
    while True:
        f = load_seq_cst(w32, fidx)
        fetch_add(words, widx, _U1)
        r = ring_try_claim(words, geo, head, size, restart_bytes, restart, out)
        if r != GATED:
            fetch_sub(words, widx, _U1)
            store_relaxed(words, hdr + H_GATED_SINCE, _U0)
            store_relaxed(words, hdr + H_GATING_READER, _U0)
            return r
        store_relaxed(words, hdr + H_GATING_READER, out[O_FIRST_GATING] + _U1)
        remaining = deadline - monotonic_ns()
        if remaining <= 0:
            fetch_sub(words, widx, _U1)
            return TIMEOUT
        if remaining > WAIT_SLICE_NS:
            remaining = np.int64(WAIT_SLICE_NS)
        futex_wait(w32, fidx, f, remaining)
        fetch_sub(words, widx, _U1)


@kernel
def ring_publish(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    seq: int,
    vstart: int,
    length: int,
    rows: int,
    head: int,
    now_ns: int,
) -> int:
    """Publish batch ``seq`` (claimed with :func:`ring_claim`) and wake sleeping readers.

    Fills descriptor ``seq % n_slots`` (``vstart``, ``length``, ``rows``,
    then the stamp ``seq + 1``), advances ``head`` and the statistics, then
    stores ``cursor = seq + 1``.

    **Memory ordering**: a release fence first, so the ``reclaim`` stored by
    the claim is ordered before the descriptor's new contents (a reader that
    reads a reused descriptor and then, after an acquire fence, ``reclaim``
    sees that it was lapped). Descriptor fields and statistics are relaxed
    stores; the stamp and the cursor are release stores, so a reader that
    acquire-loads ``cursor > seq`` sees the descriptor and every byte the
    writer put in the arena before this call (including pyarrow's copy,
    which precedes the call in program order). The wake-up follows
    :func:`ring_notify`.

    Returns the number of readers woken (>= 0).
    """
    fence_release()
    hdr = np.int64(geo[G_HDR])
    s = np.uint64(seq)
    d = np.int64(geo[G_RING]) + np.int64(s & (geo[G_N_SLOTS] - _U1)) * DESC_WORDS
    store_relaxed(words, d + D_VSTART, np.uint64(vstart))
    store_relaxed(words, d + D_LENGTH, np.uint64(length))
    store_relaxed(words, d + D_ROWS, np.uint64(rows))
    store_release(words, d + D_SEQ, s + _U1)
    old_head = load_relaxed(words, hdr + H_HEAD)
    if np.uint64(vstart) > old_head:
        skipped = load_relaxed(words, hdr + H_SKIPPED) + np.uint64(vstart) - old_head
        store_relaxed(words, hdr + H_SKIPPED, skipped)
    store_relaxed(words, hdr + H_HEAD, np.uint64(head))
    store_relaxed(words, hdr + H_BYTES, load_relaxed(words, hdr + H_BYTES) + np.uint64(length))
    store_relaxed(words, hdr + H_ROWS, load_relaxed(words, hdr + H_ROWS) + np.uint64(rows))
    store_relaxed(words, hdr + H_HEARTBEAT, np.uint64(now_ns))
    store_release(words, hdr + H_CURSOR, s + _U1)
    return ring_notify(words, w32, hdr + H_DATA_FUTEX, hdr + H_DATA_WAITERS)


@kernel
def ring_publish_many(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    seq: int,
    count: int,
    vstart: int,
    lengths: U64Array,
    rows: U64Array,
    head: int,
    now_ns: int,
) -> int:
    """Publish batches ``seq .. seq + count - 1`` (claimed with
    :func:`ring_try_claim_many`) and wake sleeping readers once.

    Their messages lie back to back from ``vstart``: batch ``seq + i`` has
    ``lengths[i]`` bytes and ``rows[i]`` rows. Fills each descriptor like
    :func:`ring_publish` (``vstart``, ``length``, ``rows``, then the stamp),
    advances ``head`` and the statistics, then stores ``cursor = seq +
    count`` once.

    **Memory ordering**: as :func:`ring_publish`: a release fence first; the
    descriptor fields and statistics are relaxed stores, every stamp and the
    cursor are release stores, so a reader that acquire-loads ``cursor > seq
    + i`` sees descriptor ``seq + i`` and every byte written before this
    call. The wake-up follows :func:`ring_notify`.

    Returns the number of readers woken (>= 0).
    """
    fence_release()
    hdr = np.int64(geo[G_HDR])
    ring = np.int64(geo[G_RING])
    mask = geo[G_N_SLOTS] - _U1
    s = np.uint64(seq)
    v = np.uint64(vstart)
    nbytes = _U0
    nrows = _U0
    for i in range(count):
        k = s + np.uint64(i)
        d = ring + np.int64(k & mask) * DESC_WORDS
        store_relaxed(words, d + D_VSTART, v)
        store_relaxed(words, d + D_LENGTH, lengths[i])
        store_relaxed(words, d + D_ROWS, rows[i])
        store_release(words, d + D_SEQ, k + _U1)
        v += lengths[i]
        nbytes += lengths[i]
        nrows += rows[i]
    old_head = load_relaxed(words, hdr + H_HEAD)
    if np.uint64(vstart) > old_head:
        skipped = load_relaxed(words, hdr + H_SKIPPED) + np.uint64(vstart) - old_head
        store_relaxed(words, hdr + H_SKIPPED, skipped)
    store_relaxed(words, hdr + H_HEAD, np.uint64(head))
    store_relaxed(words, hdr + H_BYTES, load_relaxed(words, hdr + H_BYTES) + nbytes)
    store_relaxed(words, hdr + H_ROWS, load_relaxed(words, hdr + H_ROWS) + nrows)
    store_relaxed(words, hdr + H_HEARTBEAT, np.uint64(now_ns))
    store_release(words, hdr + H_CURSOR, s + np.uint64(count))
    return ring_notify(words, w32, hdr + H_DATA_FUTEX, hdr + H_DATA_WAITERS)


@kernel
def ring_close(words: U64Array, w32: U32Array, geo: U64Array, flag: int) -> int:
    """End the stream: store ``closed = flag`` (1 closed, 2 aborted) and wake every reader.

    **Memory ordering**: a seq_cst store after every cursor store of the
    writer, so a reader that sees ``closed`` and then re-reads ``cursor``
    knows the final count; the wake follows :func:`ring_notify`.

    Returns the number of readers woken.
    """
    hdr = np.int64(geo[G_HDR])
    store_seq_cst(words, hdr + H_CLOSED, np.uint64(flag))
    return ring_notify(words, w32, hdr + H_DATA_FUTEX, hdr + H_DATA_WAITERS)


@kernel
def ring_evict(
    words: U64Array, w32: U32Array, geo: U64Array, slot: int, dead_pid: int, evictor_pid: int
) -> int:
    """Free reader slot ``slot`` whose owner ``dead_pid`` died (checked by the caller).

    The evictor first takes the slot over (``pid: dead_pid -> evictor_pid``
    by compare-and-swap, so of several evictors exactly one proceeds and a
    slot re-used meanwhile is left alone), marks it FREE (its pins stop
    counting), then empties the pid, and wakes a sleeping writer.

    **Memory ordering**: seq_cst CAS; the FREE state is a seq_cst store that
    precedes the release store of ``pid = 0``: a new reader can claim the
    slot only after it is FREE, so its own ACTIVE store cannot be overwritten.

    Returns 1 if this call evicted the reader, 0 if the slot had changed.
    """
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    dead = np.uint64(dead_pid)
    if cas(words, base + RD_PID, dead, np.uint64(evictor_pid)) != dead:
        return 0
    store_seq_cst(words, base + RD_STATE, np.uint64(RD_FREE))
    store_relaxed(words, base + RD_HELD, _U0)
    store_release(words, base + RD_PID, _U0)
    hdr = np.int64(geo[G_HDR])
    fetch_add(words, hdr + H_EVICTED, _U1)
    ring_notify(words, w32, hdr + H_SPACE_FUTEX, hdr + H_SPACE_WAITERS)
    return 1


# ---------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------


@kernel
def ring_reader_attach(
    words: U64Array, geo: U64Array, pid: int, start: int, now_ns: int, latest: int, out: U64Array,
    since_ns: int = 0,
) -> int:
    """Claim a free reader slot for process ``(pid, start)`` and place its cursor.

    ``latest == 0`` starts at the oldest batch still intact (``reclaim``),
    otherwise at the next batch to be published (``cursor``). ``out[O_READ]``
    receives the start sequence.

    **Memory ordering**: the slot is claimed by a seq_cst CAS of ``pid``
    (0 -> pid); the pin table is emptied; ``read`` is stored with seq_cst,
    then ``state = ACTIVE`` with seq_cst, then ``reclaim`` is loaded with
    seq_cst. The writer stores ``reclaim`` before it loads the slot's state
    (both seq_cst): either it sees the reader ACTIVE with its cursor and
    waits for it (block mode), or the reader sees the new ``reclaim`` and
    moves its cursor past it (looping until ``reclaim`` no longer passes
    it). A batch the reader will claim is therefore never overwritten
    unseen.

    Returns the slot index, or ``FULL`` when no slot is free.
    """
    hdr = np.int64(geo[G_HDR])
    readers = np.int64(geo[G_READERS])
    me = np.uint64(pid)
    for i in range(np.int64(geo[G_MAX_READERS])):
        base = readers + i * SLOT_WORDS
        if load_relaxed(words, base + RD_PID) != _U0:
            continue
        if cas(words, base + RD_PID, _U0, me) != _U0:
            continue
        store_relaxed(words, base + RD_START, np.uint64(start))
        store_relaxed(words, base + RD_HEARTBEAT, np.uint64(now_ns))
        store_relaxed(words, base + RD_SINCE, np.uint64(since_ns))
        store_relaxed(words, base + RD_HELD, _U0)
        store_relaxed(words, base + RD_MISSED, _U0)
        seq = load_relaxed(words, base + RD_PINS_SEQ)
        if seq & _U1:
            seq += _U1  # a dead owner left it odd
        store_relaxed(words, base + RD_PINS_N, _U0)
        store_release(words, base + RD_PINS_SEQ, seq + _U2)
        if latest != 0:
            c = load_seq_cst(words, hdr + H_CURSOR)
        else:
            c = load_seq_cst(words, hdr + H_RECLAIM)
        store_seq_cst(words, base + RD_READ, c)
        store_seq_cst(words, base + RD_STATE, np.uint64(RD_ACTIVE))
        while True:
            r = load_seq_cst(words, hdr + H_RECLAIM)
            if r <= c:
                break
            c = r
            store_seq_cst(words, base + RD_READ, c)
        out[O_READ] = c
        return i
    return FULL


@kernel
def ring_reader_drain(words: U64Array, w32: U32Array, geo: U64Array, slot: int) -> int:
    """Mark a closing reader's slot DRAINING: it reads no more, so the writer
    stops waiting for its unread batches (its pins still count).

    **Memory ordering**: seq_cst store of the state, then :func:`ring_notify`
    of the space futex so a writer waiting on this reader re-checks.

    Returns the number of writers woken (0 or 1).
    """
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    store_seq_cst(words, base + RD_STATE, np.uint64(RD_DRAINING))
    hdr = np.int64(geo[G_HDR])
    return ring_notify(words, w32, hdr + H_SPACE_FUTEX, hdr + H_SPACE_WAITERS)


@kernel
def ring_reader_detach(words: U64Array, w32: U32Array, geo: U64Array, slot: int, pid: int) -> int:
    """Give reader slot ``slot`` back (its owner holds no batch any more).

    **Memory ordering**: ``state = FREE`` (seq_cst) strictly before the
    release store of ``pid = 0``, which is what lets another reader claim the
    slot; then the writer is woken (:func:`ring_notify`).

    Returns 0, or ``NOT_OWNER`` (-6) if the slot is not ``pid``'s (evicted).
    """
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    if load_acquire(words, base + RD_PID) != np.uint64(pid):
        return NOT_OWNER
    store_seq_cst(words, base + RD_STATE, np.uint64(RD_FREE))
    store_relaxed(words, base + RD_HELD, _U0)
    store_release(words, base + RD_PID, _U0)
    hdr = np.int64(geo[G_HDR])
    ring_notify(words, w32, hdr + H_SPACE_FUTEX, hdr + H_SPACE_WAITERS)
    return 0


@kernel
def ring_try_wait_for(words: U64Array, geo: U64Array, seq: int) -> int:
    """Is batch ``seq`` published? Never blocks.

    **Memory ordering**: acquire load of ``cursor``; if it does not pass
    ``seq``, an acquire load of ``closed`` and, if set, a second acquire
    load of ``cursor`` (the writer stores ``closed`` after its last cursor,
    so the second load is final).

    Returns the cursor (> ``seq``) when the batch is available, ``CLOSED``
    (-3) when the stream is closed and ends before ``seq``, ``EMPTY`` (-2)
    otherwise.
    """
    hdr = np.int64(geo[G_HDR])
    s = np.uint64(seq)
    c = load_acquire(words, hdr + H_CURSOR)
    if c > s:
        return np.int64(c)
    if load_acquire(words, hdr + H_CLOSED) != _U0:
        c = load_acquire(words, hdr + H_CURSOR)
        if c > s:
            return np.int64(c)
        return CLOSED
    return EMPTY


@kernel
def _try_wait_for_seq_cst(words: U64Array, geo: U64Array, seq: int) -> int:
    # ring_try_wait_for with seq_cst loads (the re-check before sleeping)
    hdr = np.int64(geo[G_HDR])
    s = np.uint64(seq)
    c = load_seq_cst(words, hdr + H_CURSOR)
    if c > s:
        return np.int64(c)
    if load_seq_cst(words, hdr + H_CLOSED) != _U0:
        c = load_seq_cst(words, hdr + H_CURSOR)
        if c > s:
            return np.int64(c)
        return CLOSED
    return EMPTY


@kernel
def ring_wait_for(
    words: U64Array, w32: U32Array, geo: U64Array, seq: int, spin_ns: int, timeout_ns: int
) -> int:
    """Blocking :func:`ring_try_wait_for`: wait until batch ``seq`` is published or the end.

    Spins (``pause``, acquire loads of ``cursor``) for ``spin_ns``, then
    sleeps on the data futex in slices of at most :data:`WAIT_SLICE_NS`
    until ``timeout_ns`` (negative or huge: one hour). It only waits; the
    batch is claimed with :func:`ring_try_read`, so a caller may wait without
    holding any lock its releases need.

    **Memory ordering**: spin loads are acquire. Before sleeping: seq_cst
    load of the data event counter, seq_cst increment of the data waiter
    count, seq_cst re-check of ``cursor`` and ``closed``; the writer stores
    ``cursor`` (release) or ``closed`` (seq_cst) and then runs
    :func:`ring_notify`, so no publish is missed.

    Returns the cursor (> ``seq``), ``CLOSED`` (-3) or ``TIMEOUT`` (-110).
    """
    r = ring_try_wait_for(words, geo, seq)
    if r != EMPTY:
        return r
    hdr = np.int64(geo[G_HDR])
    s = np.uint64(seq)
    t0 = monotonic_ns()
    spin = np.int64(spin_ns)
    if spin > 0:
        while True:
            for _ in range(_SPIN_CHECK):
                cpu_pause()
                c = load_acquire(words, hdr + H_CURSOR)
                if c > s:
                    return np.int64(c)
            r = ring_try_wait_for(words, geo, seq)
            if r != EMPTY:
                return r
            if monotonic_ns() - t0 >= spin:
                break
    t = np.int64(timeout_ns)
    if t < 0 or t > MAX_TIMEOUT_NS:
        t = np.int64(MAX_TIMEOUT_NS)
    deadline = t0 + t
    fidx = 2 * (hdr + H_DATA_FUTEX)
    widx = hdr + H_DATA_WAITERS
    while True:
        f = load_seq_cst(w32, fidx)
        fetch_add(words, widx, _U1)
        r = _try_wait_for_seq_cst(words, geo, seq)
        if r != EMPTY:
            fetch_sub(words, widx, _U1)
            return r
        remaining = deadline - monotonic_ns()
        if remaining <= 0:
            fetch_sub(words, widx, _U1)
            return TIMEOUT
        if remaining > WAIT_SLICE_NS:
            remaining = np.int64(WAIT_SLICE_NS)
        futex_wait(w32, fidx, f, remaining)
        fetch_sub(words, widx, _U1)


@kernel
def _pins_begin(words: U64Array, base: int) -> np.uint64:
    # open the reader's own pin-table seqlock (odd); returns the even value it had
    s = load_relaxed(words, base + RD_PINS_SEQ)
    store_relaxed(words, base + RD_PINS_SEQ, s + _U1)
    fence_release()
    return s


@kernel
def _pins_end(words: U64Array, base: int, s: np.uint64) -> None:
    # close the seqlock (even); seq_cst: the Dekker store of a claim
    store_seq_cst(words, base + RD_PINS_SEQ, s + _U2)


@kernel
def _pin_add(
    words: U64Array, base: int, seq: np.uint64, last_seq: np.uint64, v0: np.uint64,
    v1: np.uint64,
) -> None:
    # Add the run of held batches `seq` .. `last_seq` (bytes [v0, v1)), the newest held,
    # to the pin spans (caller holds the seqlock). Extends the last span when it ends at
    # seq - 1; else appends; with no room, first merges the two spans closest in
    # sequence numbers.
    n = np.int64(_pins_n(words, base))
    if n > 0:
        last = base + RD_SPANS + (n - 1) * SPAN_WORDS
        if load_relaxed(words, last + 1) + _U1 == seq:
            store_relaxed(words, last + 1, last_seq)
            store_relaxed(words, last + 3, v1)
            return
    if n >= PIN_SPANS:
        best = 0
        best_gap = np.uint64(0xFFFFFFFFFFFFFFFF)
        for j in range(n - 1):
            a = base + RD_SPANS + j * SPAN_WORDS
            gap = load_relaxed(words, a + SPAN_WORDS) - load_relaxed(words, a + 1)
            if gap < best_gap:
                best_gap = gap
                best = j
        a = base + RD_SPANS + best * SPAN_WORDS
        b = a + SPAN_WORDS
        store_relaxed(words, a + 1, load_relaxed(words, b + 1))
        store_relaxed(words, a + 3, load_relaxed(words, b + 3))
        for j in range(best + 1, n - 1):
            dst = base + RD_SPANS + j * SPAN_WORDS
            for w in range(SPAN_WORDS):
                store_relaxed(words, dst + w, load_relaxed(words, dst + SPAN_WORDS + w))
        n -= 1
    sp = base + RD_SPANS + n * SPAN_WORDS
    store_relaxed(words, sp, seq)
    store_relaxed(words, sp + 1, last_seq)
    store_relaxed(words, sp + 2, v0)
    store_relaxed(words, sp + 3, v1)
    store_relaxed(words, base + RD_PINS_N, np.uint64(n + 1))


@kernel
def ring_try_read(words: U64Array, geo: U64Array, slot: int, now_ns: int, out: U64Array) -> int:
    """Claim and pin the reader's next batch if it is published. Never blocks.

    The slot's ``read`` cursor is the sequence claimed. In overwrite mode the
    writer may have passed it (the reader was lapped): the reader then jumps
    to ``reclaim``, adds the skipped batches to ``missed`` (also in
    ``out[O_MISSED]``), and claims from there. On success the batch's bytes
    are added to the reader's pin spans (see the module docstring) and
    ``out`` receives the descriptor (``O_VSTART``, ``O_LENGTH``,
    ``O_ROWS``); ``out[O_READ]`` is the slot's ``read`` after the call.

    **Memory ordering**: acquire load of ``cursor`` (makes the descriptor and
    the arena bytes of published batches visible), acquire load of the
    descriptor's stamp, relaxed loads of its fields, then an acquire fence.
    The pin is published under the slot's seqlock, closed by a seq_cst
    store; then ``read = seq + 1`` is stored with seq_cst. Block mode: the
    writer never reuses a batch an ACTIVE reader has not read, and reads
    ``read`` before pins, so the batch stays intact. Overwrite mode: a
    seq_cst load of ``reclaim`` follows (the reader half of the Dekker pair
    in :func:`ring_try_claim`); if ``reclaim <= seq`` the writer will see
    the pin before it reuses the bytes, and the descriptor read before the
    fence was not yet reused (the writer stores ``reclaim`` and a release
    fence before it rewrites a descriptor). Otherwise the pin table is
    restored from ``out``'s scratch words and the reader skips ahead.

    Bounds: whatever the shared words hold, a returned batch lies inside the
    arena (``length <= arena``, ``vstart % arena + length <= arena``, at least
    one IPC message header long), and the pin spans indexed are clamped to
    the slot's table.

    Returns the claimed sequence (>= 0), ``EMPTY``, ``CLOSED`` or ``CORRUPT``
    (the descriptor holds another sequence, or bytes outside the arena: a bug,
    a foreign writer or corrupt memory; nothing is pinned).
    """
    hdr = np.int64(geo[G_HDR])
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    overwrite = geo[G_MODE] == MODE_OVERWRITE
    k = load_relaxed(words, base + RD_READ)
    out[O_MISSED] = _U0
    out[O_READ] = k
    c = load_acquire(words, hdr + H_CURSOR)
    if c <= k:
        if load_acquire(words, hdr + H_CLOSED) == _U0:
            return EMPTY
        c = load_acquire(words, hdr + H_CURSOR)
        if c <= k:
            return CLOSED
    missed = _U0
    ring = np.int64(geo[G_RING])
    mask = geo[G_N_SLOTS] - _U1
    while True:
        if overwrite:
            r = load_seq_cst(words, hdr + H_RECLAIM)
            if r > k:  # lapped before we even looked: batches k .. r-1 may be gone
                missed += r - k
                k = r
                store_seq_cst(words, base + RD_READ, k)
                if k >= c:
                    c = load_acquire(words, hdr + H_CURSOR)
                    if k >= c:
                        break
                continue
        d = ring + np.int64(k & mask) * DESC_WORDS
        stamp = load_acquire(words, d + D_SEQ)
        vstart = load_relaxed(words, d + D_VSTART)
        length = load_relaxed(words, d + D_LENGTH)
        rows = load_relaxed(words, d + D_ROWS)
        fence_acquire()
        # the descriptor's bytes must lie inside the arena (a message never wraps):
        # whatever the shared words say, the caller maps exactly [vstart, vstart+length)
        arena = geo[G_ARENA_BYTES]
        if (stamp != k + _U1 or length < _MIN_MESSAGE or length > arena
                or vstart % arena > arena - length):
            if overwrite and load_seq_cst(words, hdr + H_RECLAIM) > k:
                continue  # reused under us: the lapped path above handles it
            return CORRUPT
        if overwrite:  # back up the pin table: the claim may have to be undone
            n = _pins_n(words, base)
            out[O_SCRATCH] = n
            for w in range(PIN_SPANS * SPAN_WORDS):
                out[O_SCRATCH + 1 + w] = load_relaxed(words, base + RD_SPANS + w)
        s = _pins_begin(words, base)
        _pin_add(words, base, k, k, vstart, vstart + length)
        _pins_end(words, base, s)
        store_seq_cst(words, base + RD_READ, k + _U1)
        if overwrite and load_seq_cst(words, hdr + H_RECLAIM) > k:
            # the writer reclaimed the batch before it could see the pin: undo, skip
            s = _pins_begin(words, base)
            store_relaxed(words, base + RD_PINS_N, out[O_SCRATCH])
            for w in range(PIN_SPANS * SPAN_WORDS):
                store_relaxed(words, base + RD_SPANS + w, out[O_SCRATCH + 1 + w])
            _pins_end(words, base, s)
            continue
        out[O_VSTART] = vstart
        out[O_LENGTH] = length
        out[O_ROWS] = rows
        out[O_READ] = k + _U1
        out[O_MISSED] = missed
        if missed != _U0:
            store_relaxed(words, base + RD_MISSED, load_relaxed(words, base + RD_MISSED) + missed)
        store_relaxed(words, base + RD_HELD, load_relaxed(words, base + RD_HELD) + _U1)
        store_relaxed(words, base + RD_HEARTBEAT, np.uint64(now_ns))
        return np.int64(k)
    # lapped up to the cursor: nothing left to read right now
    store_relaxed(words, base + RD_MISSED, load_relaxed(words, base + RD_MISSED) + missed)
    out[O_MISSED] = missed
    out[O_READ] = k
    return EMPTY


@kernel
def ring_try_read_many(
    words: U64Array, geo: U64Array, slot: int, max_n: int, now_ns: int, out: U64Array
) -> int:
    """Claim and pin up to ``max_n`` of the reader's next batches, as one run. Never blocks.

    :func:`ring_try_read` for a burst: from the slot's ``read`` cursor on, it
    claims every published batch (at most ``max_n``, at least 1) whose message
    starts where the previous one ends, within one lap of the arena, so the
    run's bytes ``[v0, v0 + length)`` are one contiguous piece of the arena
    holding the consecutive messages (a writer restart, a jump or a new lap
    ends the run; the next call starts another). The run is added to the
    reader's pin spans as one entry (see the module docstring) and released
    with :func:`ring_unpin_range`. On success ``out`` receives ``O_VSTART``
    (``v0``), ``O_LENGTH`` (the run's bytes), ``O_ROWS`` (its rows),
    ``O_COUNT`` (batches claimed), ``O_MISSED`` and ``O_READ`` as
    :func:`ring_try_read`. Lapping in overwrite mode is handled as there.

    **Memory ordering**: as :func:`ring_try_read`: acquire load of ``cursor``;
    for each batch an acquire load of its descriptor's stamp and relaxed loads
    of its fields, then one acquire fence; the run's pin under the slot's
    seqlock (closed with a seq_cst store), then ``read = seq + count``
    (seq_cst). In overwrite mode the seq_cst load of ``reclaim`` that follows
    covers the whole run: a writer reuses a descriptor or the bytes of batch
    ``seq + i`` only after storing ``reclaim > seq + i >= seq``, so either this
    load sees that (and the claim is undone) or the writer sees the pin. In
    block mode the writer reuses nothing an ACTIVE reader has not read.

    Bounds: the run lies inside the arena (``v0 % arena + length <= arena``)
    and each message is at least an IPC message header long.

    Returns the first sequence claimed (>= 0), ``EMPTY``, ``CLOSED`` or
    ``CORRUPT`` (the first descriptor holds another sequence or bytes outside
    the arena; nothing is pinned).
    """
    hdr = np.int64(geo[G_HDR])
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    overwrite = geo[G_MODE] == MODE_OVERWRITE
    k = load_relaxed(words, base + RD_READ)
    out[O_MISSED] = _U0
    out[O_COUNT] = _U0
    out[O_READ] = k
    c = load_acquire(words, hdr + H_CURSOR)
    if c <= k:
        if load_acquire(words, hdr + H_CLOSED) == _U0:
            return EMPTY
        c = load_acquire(words, hdr + H_CURSOR)
        if c <= k:
            return CLOSED
    missed = _U0
    ring = np.int64(geo[G_RING])
    mask = geo[G_N_SLOTS] - _U1
    arena = geo[G_ARENA_BYTES]
    most = np.uint64(max_n) if max_n > 1 else _U1
    while True:
        if overwrite:
            r = load_seq_cst(words, hdr + H_RECLAIM)
            if r > k:  # lapped before we even looked: batches k .. r-1 may be gone
                missed += r - k
                k = r
                store_seq_cst(words, base + RD_READ, k)
                if k >= c:
                    c = load_acquire(words, hdr + H_CURSOR)
                    if k >= c:
                        break
                continue
        d = ring + np.int64(k & mask) * DESC_WORDS
        stamp = load_acquire(words, d + D_SEQ)
        v0 = load_relaxed(words, d + D_VSTART)
        total = load_relaxed(words, d + D_LENGTH)
        rows = load_relaxed(words, d + D_ROWS)
        if (stamp != k + _U1 or total < _MIN_MESSAGE or total > arena
                or v0 % arena > arena - total):
            fence_acquire()
            if overwrite and load_seq_cst(words, hdr + H_RECLAIM) > k:
                continue  # reused under us: the lapped path above handles it
            return CORRUPT
        room = arena - v0 % arena - total  # bytes after the run, up to the lap's end
        n = _U1
        avail = c - k
        while n < avail and n < most:
            e = ring + np.int64((k + n) & mask) * DESC_WORDS
            if load_acquire(words, e + D_SEQ) != k + n + _U1:
                break
            length = load_relaxed(words, e + D_LENGTH)
            if (load_relaxed(words, e + D_VSTART) != v0 + total or length < _MIN_MESSAGE
                    or length > room):
                break
            total += length
            room -= length
            rows += load_relaxed(words, e + D_ROWS)
            n += _U1
        fence_acquire()
        if overwrite:  # back up the pin table: the claim may have to be undone
            pn = _pins_n(words, base)
            out[O_SCRATCH] = pn
            for w in range(PIN_SPANS * SPAN_WORDS):
                out[O_SCRATCH + 1 + w] = load_relaxed(words, base + RD_SPANS + w)
        s = _pins_begin(words, base)
        _pin_add(words, base, k, k + n - _U1, v0, v0 + total)
        _pins_end(words, base, s)
        store_seq_cst(words, base + RD_READ, k + n)
        if overwrite and load_seq_cst(words, hdr + H_RECLAIM) > k:
            # the writer reclaimed the first batch before it could see the pin: undo, skip
            s = _pins_begin(words, base)
            store_relaxed(words, base + RD_PINS_N, out[O_SCRATCH])
            for w in range(PIN_SPANS * SPAN_WORDS):
                store_relaxed(words, base + RD_SPANS + w, out[O_SCRATCH + 1 + w])
            _pins_end(words, base, s)
            continue
        out[O_VSTART] = v0
        out[O_LENGTH] = total
        out[O_ROWS] = rows
        out[O_COUNT] = n
        out[O_READ] = k + n
        out[O_MISSED] = missed
        if missed != _U0:
            store_relaxed(words, base + RD_MISSED, load_relaxed(words, base + RD_MISSED) + missed)
        store_relaxed(words, base + RD_HELD, load_relaxed(words, base + RD_HELD) + n)
        store_relaxed(words, base + RD_HEARTBEAT, np.uint64(now_ns))
        return np.int64(k)
    # lapped up to the cursor: nothing left to read right now
    store_relaxed(words, base + RD_MISSED, load_relaxed(words, base + RD_MISSED) + missed)
    out[O_MISSED] = missed
    out[O_READ] = k
    return EMPTY


@kernel
def ring_read(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    slot: int,
    spin_ns: int,
    timeout_ns: int,
    out: U64Array,
) -> int:
    """Blocking :func:`ring_try_read`: wait for the reader's next batch, claim and pin it.

    For callers that do their own bookkeeping in one thread (kernel tests,
    tools); the Python reader waits with :func:`ring_wait_for` and claims
    with :func:`ring_try_read` separately so that it never waits while
    holding a lock its releases need. ``out[O_MISSED]`` accumulates over the
    retries.

    **Memory ordering**: as :func:`ring_wait_for` and :func:`ring_try_read`.

    Returns the claimed sequence, ``CLOSED``, ``CORRUPT`` or ``TIMEOUT``.
    """
    t = np.int64(timeout_ns)
    if t < 0 or t > MAX_TIMEOUT_NS:
        t = np.int64(MAX_TIMEOUT_NS)
    deadline = monotonic_ns() + t
    missed = _U0
    spin = np.int64(spin_ns)
    while True:
        r = ring_try_read(words, geo, slot, monotonic_ns(), out)
        missed += out[O_MISSED]
        if r != EMPTY:
            out[O_MISSED] = missed
            return r
        remaining = deadline - monotonic_ns()
        if remaining <= 0:
            out[O_MISSED] = missed
            return TIMEOUT
        w = ring_wait_for(words, w32, geo, np.int64(out[O_READ]), spin, remaining)
        if w == TIMEOUT:
            out[O_MISSED] = missed
            return TIMEOUT


@kernel
def ring_unpin(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    slot: int,
    seq: int,
    prev_seq: int,
    prev_v1: int,
    next_seq: int,
    next_v0: int,
    held: int,
) -> int:
    """Release held batch ``seq`` of reader ``slot``: shrink or split its pin span.

    The caller (the reader's process, serialized by its own lock) passes the
    neighbours of ``seq`` among the batches it still holds: ``prev_seq``
    (with the end ``prev_v1`` of its bytes) and ``next_seq`` (with its start
    ``next_v0``), -1 when there is none, and ``held``, the number it holds
    after this release. The span containing ``seq`` is removed (it pinned
    only ``seq``), starts at ``next_seq`` or ends at ``prev_seq`` (``seq`` was
    an end), or splits in two around ``seq`` if a span is free (otherwise it
    keeps pinning the gap until an end is released). Releases may come in any
    order. (:func:`ring_unpin_range` of the run ``seq .. seq``.)

    **Memory ordering**: the pin table changes under the slot's seqlock
    (relaxed stores between an odd store + release fence and a seq_cst even
    store), so the writer sees either the old or the new table; the reader's
    last accesses to the batch's bytes precede the seqlock's release, so the
    writer reuses them only afterwards. Then :func:`ring_notify` of the
    space futex.

    Returns 0, or ``NOT_HELD`` (-407) if no span contains ``seq``.
    """
    return ring_unpin_range(words, w32, geo, slot, seq, seq, prev_seq, prev_v1, next_seq,
                            next_v0, held)


@kernel
def ring_unpin_range(
    words: U64Array,
    w32: U32Array,
    geo: U64Array,
    slot: int,
    first: int,
    last: int,
    prev_seq: int,
    prev_v1: int,
    next_seq: int,
    next_v0: int,
    held: int,
) -> int:
    """Release the held run ``first .. last`` of reader ``slot`` (claimed together
    by :func:`ring_try_read_many`, or one batch): shrink or split its pin span.

    As :func:`ring_unpin` with a run in place of one batch: the caller passes
    the last sequence ``prev_seq`` (and end ``prev_v1``) of the held batches
    before the run, the first ``next_seq`` (and start ``next_v0``) of those
    after it (-1 when there are none), and ``held``, the batches it holds
    after this release. A run is always inside one span (it was pinned as one
    entry, and spans only ever merge or split between runs): the span is
    removed, trimmed at the end the run was, or split around it if a span is
    free (otherwise it keeps pinning the run's bytes until an end goes).

    **Memory ordering**: as :func:`ring_unpin`: the pin table changes under
    the slot's seqlock (an odd store and a release fence, relaxed stores, a
    seq_cst even store), so the writer reads the old table or the new one and
    reuses the run's bytes only after the reader's last access to them; then
    :func:`ring_notify` of the space futex.

    Returns 0, or ``NOT_HELD`` (-407) if no span contains the whole run.
    """
    base = np.int64(geo[G_READERS]) + np.int64(slot) * SLOT_WORDS
    s0 = np.uint64(first)
    s1 = np.uint64(last)
    n = np.int64(_pins_n(words, base))
    found = -1
    for j in range(n):
        sp = base + RD_SPANS + j * SPAN_WORDS
        if load_relaxed(words, sp) <= s0 and s1 <= load_relaxed(words, sp + 1):
            found = j
            break
    if found < 0 or s1 < s0:
        return NOT_HELD
    sp = base + RD_SPANS + found * SPAN_WORDS
    span_first = load_relaxed(words, sp)
    span_last = load_relaxed(words, sp + 1)
    sq = _pins_begin(words, base)
    if span_first == s0 and span_last == s1:
        for j in range(found, n - 1):
            dst = base + RD_SPANS + j * SPAN_WORDS
            for w in range(SPAN_WORDS):
                store_relaxed(words, dst + w, load_relaxed(words, dst + SPAN_WORDS + w))
        store_relaxed(words, base + RD_PINS_N, np.uint64(n - 1))
    elif span_first == s0:
        store_relaxed(words, sp, np.uint64(next_seq))
        store_relaxed(words, sp + 2, np.uint64(next_v0))
    elif span_last == s1:
        store_relaxed(words, sp + 1, np.uint64(prev_seq))
        store_relaxed(words, sp + 3, np.uint64(prev_v1))
    elif n < PIN_SPANS:
        for j in range(n - 1, found, -1):
            src = base + RD_SPANS + j * SPAN_WORDS
            for w in range(SPAN_WORDS):
                store_relaxed(words, src + SPAN_WORDS + w, load_relaxed(words, src + w))
        nx = sp + SPAN_WORDS
        store_relaxed(words, nx, np.uint64(next_seq))
        store_relaxed(words, nx + 1, span_last)
        store_relaxed(words, nx + 2, np.uint64(next_v0))
        store_relaxed(words, nx + 3, load_relaxed(words, sp + 3))
        store_relaxed(words, sp + 1, np.uint64(prev_seq))
        store_relaxed(words, sp + 3, np.uint64(prev_v1))
        store_relaxed(words, base + RD_PINS_N, np.uint64(n + 1))
    _pins_end(words, base, sq)
    store_relaxed(words, base + RD_HELD, np.uint64(held))
    hdr = np.int64(geo[G_HDR])
    ring_notify(words, w32, hdr + H_SPACE_FUTEX, hdr + H_SPACE_WAITERS)
    return 0
