"""Reader pins on data segments: claim a pin and check the version in one call.

A dataset ``get`` must pin the segment it reads (so no writer recycles it
under the reader) and then check that the segment still holds the version the
registry named. Done in Python that is some fifteen numpy reads and three
dispatcher calls; done here it is one call, which matters most when the
reader's caches are cold (right after a producer's copy evicted them), where
every touched line of interpreter code and data costs a memory access.

The kernels know the few data-segment header words they touch (below);
``arrowshm._layout`` defines the layout and a test asserts the two agree.

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

__all__ = [
    "PIN_BAD_FORMAT",
    "PIN_BAD_OFFSETS",
    "PIN_NOT_A_SEGMENT",
    "PIN_OK",
    "PIN_STALE",
    "pin_version",
    "unpin",
]

# data segment header (word indices), mirrored from arrowshm._layout
_MAGIC = 0
_FORMAT_VERSION = 1
_STATE = 3
_DATA_OFFSET = 8
_DATA_BYTES = 9
_NAME_HASH = 10
_VERSION = 11
_SCHEMA_FP = 13
_GENERATION = 14
_PIN_OVERFLOW = 16
_BATCH_VERSION = 18
_BATCH_OFFSET = 19
_BATCH_BYTES = 20
_PINS = 128
_PIN_SLOTS = 64
_PIN_WORDS = 2
_HEADER_BYTES = 4096
_STATE_MASK = 0xFF
_SEALED = 2
_PUBLISHED = 3

# statuses of pin_version (the first element of its result)
PIN_OK = 0
PIN_NOT_A_SEGMENT = -1  # too small or wrong magic
PIN_BAD_FORMAT = -2  # another format version (the second element says which)
PIN_STALE = -3  # no longer holds that version (recycled, being rewritten, ...)
PIN_BAD_OFFSETS = -4  # the payload offsets point outside the segment

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
    base = _PINS + slot * _PIN_WORDS
    if load_relaxed(words, base) != pid:
        return  # not ours (never happens to a caller that pinned it)
    store_relaxed(words, base + 1, 0)
    cas(words, base, pid, 0)


_RESULT = types.UniTuple(_I, 6)  # type: ignore[no-untyped-call]


@kernel_with_signatures([_RESULT(_A64, _I, _U, _U, _U, _U, _U, _U, _U, _U)])
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
) -> tuple[int, int, int, int, int, int]:
    """Pin the segment *words* and check it holds *version* of the entry with
    *generation* and *name_hash*.

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
    state load below acquires); pin claim is a seq_cst CAS, its start time a
    release store; the overflow flag a seq_cst store; the state word a
    seq_cst load after the claim (the reader's half of the Dekker pair).
    """
    n_words = seg_bytes // 8
    if n_words < _HEADER_BYTES // 8 or load_relaxed(words, _MAGIC) != magic:
        return PIN_NOT_A_SEGMENT, -1, 0, 0, 0, 0
    found = load_relaxed(words, _FORMAT_VERSION)
    if found != format_version:
        return PIN_BAD_FORMAT, int(found & 0x7FFFFFFFFFFFFFFF), 0, 0, 0, 0
    slot = -1
    for s in range(_PIN_SLOTS):
        base = _PINS + s * _PIN_WORDS
        if load_relaxed(words, base) == 0 and cas(words, base, 0, pid) == 0:
            store_release(words, base + 1, start)
            slot = s
            break
    if slot < 0:
        store_seq_cst(words, _PIN_OVERFLOW, 1)
    state = load_seq_cst(words, _STATE)
    st = state & _STATE_MASK
    if (
        (st != _SEALED and st != _PUBLISHED)
        or load_relaxed(words, _VERSION) != version
        or load_relaxed(words, _GENERATION) != generation
        or load_relaxed(words, _NAME_HASH) != name_hash
    ):
        unpin(words, slot, pid)
        return PIN_STALE, -1, 0, 0, 0, 0
    off = load_relaxed(words, _DATA_OFFSET)
    n = load_relaxed(words, _DATA_BYTES)
    if off < _HEADER_BYTES or off > seg_bytes or n > seg_bytes - off:
        unpin(words, slot, pid)
        return PIN_BAD_OFFSETS, -1, 0, 0, 0, 0
    boff = load_relaxed(words, _BATCH_OFFSET)
    blen = load_relaxed(words, _BATCH_BYTES)
    if (
        load_relaxed(words, _BATCH_VERSION) != version
        or load_relaxed(words, _SCHEMA_FP) != schema_fp
        or blen == 0
        or boff > n
        or blen > n - boff
    ):
        boff = 0
        blen = 0
    return PIN_OK, slot, int(off), int(n), int(boff), int(blen)
