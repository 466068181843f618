"""Reader pins on data segments: claim a pin and check the version in one call.

A dataset ``get`` must pin the segment it reads (so no writer recycles it
under the reader) and then check that the segment still holds the version the
registry named. Done in Python that is some fifteen numpy reads and three
dispatcher calls; done here it is one call, which matters most when the
reader's caches are cold (right after a producer's copy evicted them), where
every touched line of interpreter code and data costs a memory access.

The data-segment header's word indices are defined here, once (below);
``arrowshm._shm.layout`` re-exports them beside the rest of the layout.

Protocol (with the writer's side in ``arrowshm._pin``): the reader claims a
pin slot with a CAS, then loads the state word (seq_cst); a writer recycling
the segment CASes the state word to WRITING and then scans the pin table. One
of the two sees the other (Dekker), so either the reader sees WRITING (or a
changed version) and retries, or the writer sees the pin and leaves the
segment alone.
"""

from __future__ import annotations

from numba import types

from ._jit import U64Array, kernel_with_signatures
from .atomics import cas, load_relaxed, load_seq_cst, store_relaxed, store_release, store_seq_cst
from .status import OK, PIN_BAD_FORMAT, PIN_BAD_OFFSETS, PIN_NOT_A_SEGMENT, PIN_STALE

__all__ = [
    "PIN_BAD_FORMAT",
    "PIN_BAD_OFFSETS",
    "PIN_NOT_A_SEGMENT",
    "PIN_OK",
    "PIN_STALE",
    "pin_version",
    "unpin",
]

# -- the data-segment header (word indices) ----------------------------------------------
# The one definition of these offsets: arrowshm._shm.layout re-exports them with the
# table of docs/FORMAT.md, and arrowshm._shm.header is the only Python code writing them.
SEGMENT_HEADER_BYTES = 4096
S_MAGIC = 0
S_FORMAT_VERSION = 1
S_KIND = 2
S_STATE = 3
S_CREATOR_PID = 4
S_CREATOR_START = 5
S_CREATED_NS = 6
S_SEGMENT_BYTES = 7
S_DATA_OFFSET = 8
S_DATA_BYTES = 9
S_NAME_HASH = 10
S_VERSION = 11
S_NUM_ROWS = 12
S_SCHEMA_FP = 13
S_GENERATION = 14
S_PIN_OVERFLOW = 16  # 1 once a reader found no free pin slot: never recycle
S_RECYCLES = 17  # times this segment was reused for a new version
# where the version's only record-batch message lies in the payload (0 if unknown);
# valid only while S_BATCH_VERSION == S_VERSION
S_BATCH_VERSION = 18
S_BATCH_OFFSET = 19
S_BATCH_BYTES = 20
S_PINS = 128  # pin table: PIN_SLOTS x PIN_WORDS, bytes 1024..3071
PIN_SLOTS = 64
PIN_WORDS = 4  # (pid, start ticks, since: CLOCK_REALTIME ns, reserved 0)

# S_STATE holds (epoch << 8) | state; every transition bumps the epoch
STATE_BITS = 8
STATE_MASK = (1 << STATE_BITS) - 1
SEG_WRITING = 1
SEG_SEALED = 2
SEG_PUBLISHED = 3
SEG_POOLED = 4
SEG_RECLAIMING = 5

# statuses of pin_version (the first element of its result)
# (kernels/status.py): PIN_NOT_A_SEGMENT too small or wrong magic, PIN_BAD_FORMAT another
# format version (the second element says which), PIN_STALE no longer holds that version
# (recycled, being rewritten, ...), PIN_BAD_OFFSETS the payload offsets point outside it
PIN_OK = OK

_A64 = types.Array(types.uint64, 1, "C")
_U = types.uint64
_I = types.int64


@kernel_with_signatures([types.void(_A64, _I, _U)])
def unpin(words: U64Array, slot: int, pid: int) -> None:
    """Release pin *slot* if *pid* still holds it (no-op for slot -1).

    **Memory ordering**: the pid word is read relaxed (only this process
    writes its own pid there), the start-time word cleared relaxed, then the
    pid word by a seq_cst CAS (a writer scanning the table sees the slot free
    only after the start word is cleared).
    """
    if slot < 0:
        return
    base = S_PINS + slot * PIN_WORDS
    if load_relaxed(words, base) != pid:
        return  # not ours (never happens to a caller that pinned it)
    store_relaxed(words, base + 2, 0)
    store_relaxed(words, base + 1, 0)
    cas(words, base, pid, 0)


_RESULT = types.UniTuple(_I, 6)  # type: ignore[no-untyped-call]


@kernel_with_signatures([_RESULT(_A64, _I, _U, _U, _U, _U, _U, _U, _U, _U, _U)])
def pin_version(
    words: U64Array,
    seg_bytes: int,
    magic: int,
    format_version: int,
    pid: int,
    start: int,
    version: int,
    generation: int,
    name_hash: int,
    schema_fp: int,
    now_ns: int,
) -> tuple[int, int, int, int, int, int]:
    """Pin the segment *words* and check it holds *version* of the entry with
    *generation* and *name_hash*; the pin records *now_ns* (CLOCK_REALTIME) as
    the time it was taken, for ``info``'s list of readers.

    Returns ``(status, slot, data_offset, data_bytes, batch_offset,
    batch_bytes)``. With ``PIN_OK`` the caller holds pin *slot* (-1: the table
    was full and the overflow flag is set, which keeps the segment from ever
    being recycled) and must release it with :func:`unpin`. Every other status
    leaves no pin behind. ``batch_offset``/``batch_bytes`` locate the version's
    only record-batch message (relative to the payload) when the writer
    recorded one for this very version and its schema fingerprint equals
    *schema_fp*; otherwise they are 0.

    **Memory ordering**: magic, format and payload words are read relaxed
    (written before the state word's release/seq_cst transitions that the
    state load below acquires); pin claim is a seq_cst CAS, its time a relaxed
    store and its start time a release store (a scanner reads start, then
    time); the overflow flag a seq_cst store; the state word a seq_cst load
    after the claim (the reader's half of the Dekker pair).
    """
    n_words = seg_bytes // 8
    if n_words < SEGMENT_HEADER_BYTES // 8 or load_relaxed(words, S_MAGIC) != magic:
        return PIN_NOT_A_SEGMENT, -1, 0, 0, 0, 0
    found = load_relaxed(words, S_FORMAT_VERSION)
    if found != format_version:
        return PIN_BAD_FORMAT, int(found & 0x7FFFFFFFFFFFFFFF), 0, 0, 0, 0
    slot = -1
    for s in range(PIN_SLOTS):
        base = S_PINS + s * PIN_WORDS
        if load_relaxed(words, base) == 0 and cas(words, base, 0, pid) == 0:
            store_relaxed(words, base + 2, now_ns)
            store_release(words, base + 1, start)
            slot = s
            break
    if slot < 0:
        store_seq_cst(words, S_PIN_OVERFLOW, 1)
    state = load_seq_cst(words, S_STATE)
    st = state & STATE_MASK
    if (
        (st != SEG_SEALED and st != SEG_PUBLISHED)
        or load_relaxed(words, S_VERSION) != version
        or load_relaxed(words, S_GENERATION) != generation
        or load_relaxed(words, S_NAME_HASH) != name_hash
    ):
        unpin(words, slot, pid)
        return PIN_STALE, -1, 0, 0, 0, 0
    off = load_relaxed(words, S_DATA_OFFSET)
    n = load_relaxed(words, S_DATA_BYTES)
    if off < SEGMENT_HEADER_BYTES or off > seg_bytes or n > seg_bytes - off:
        unpin(words, slot, pid)
        return PIN_BAD_OFFSETS, -1, 0, 0, 0, 0
    boff = load_relaxed(words, S_BATCH_OFFSET)
    blen = load_relaxed(words, S_BATCH_BYTES)
    if (
        load_relaxed(words, S_BATCH_VERSION) != version
        or load_relaxed(words, S_SCHEMA_FP) != schema_fp
        or blen == 0
        or boff > n
        or blen > n - boff
    ):
        boff = 0
        blen = 0
    return PIN_OK, slot, int(off), int(n), int(boff), int(blen)
