"""pin_version / unpin: claim a reader pin and check the version in one call."""

from __future__ import annotations

import numpy as np
import pytest

from arrowshm._shm import layout as L
from arrowshm.kernels import pins as K

PID, START, NOW = 4242, 777, 1_700_000_000_123_456_789
MAGIC, FMT = L.SEGMENT_MAGIC, L.FORMAT_VERSION
VERSION, GEN, NAME_HASH, FP = 5, 3, 0xDEADBEEF12345678, 0xFEEDFACECAFEBEEF
SIZE = 64 << 10


def _segment(state: int = L.SEG_PUBLISHED) -> np.ndarray:
    w = np.zeros(SIZE // 8, dtype=np.uint64)
    w[L.S_MAGIC], w[L.S_FORMAT_VERSION] = MAGIC, FMT
    w[L.S_STATE] = (7 << L.STATE_BITS) | state
    w[L.S_VERSION], w[L.S_GENERATION], w[L.S_NAME_HASH] = VERSION, GEN, NAME_HASH
    w[L.S_DATA_OFFSET], w[L.S_DATA_BYTES] = L.SEGMENT_HEADER_BYTES, 10_000
    w[L.S_SCHEMA_FP] = FP
    w[L.S_BATCH_VERSION], w[L.S_BATCH_OFFSET], w[L.S_BATCH_BYTES] = VERSION, 200, 9_000
    return w


def _pin(w: np.ndarray, *, version: int = VERSION, fp: int = FP) -> tuple[int, ...]:
    return K.pin_version(w, SIZE, MAGIC, FMT, PID, START, version, GEN, NAME_HASH, fp, NOW)


def _pins_held(w: np.ndarray) -> list[tuple[int, int]]:
    return [(int(w[L.S_PINS + L.PIN_WORDS * s]), int(w[L.S_PINS + L.PIN_WORDS * s + 1]))
            for s in range(L.PIN_SLOTS) if w[L.S_PINS + L.PIN_WORDS * s]]


@pytest.mark.parametrize("state", [L.SEG_SEALED, L.SEG_PUBLISHED])
def test_pins_a_matching_version_and_locates_its_batch(state: int) -> None:
    w = _segment(state)
    status, slot, off, n, boff, blen = _pin(w)
    assert (status, slot, off, n, boff, blen) == (K.PIN_OK, 0, 4096, 10_000, 200, 9_000)
    assert _pins_held(w) == [(PID, START)]
    assert int(w[L.S_PINS + 2]) == NOW  # since when
    K.unpin(w, slot, PID)
    assert _pins_held(w) == []
    assert int(w[L.S_PINS + 2]) == 0


def test_a_second_pin_takes_the_next_slot_and_a_full_table_sets_overflow() -> None:
    w = _segment()
    assert _pin(w)[1] == 0 and _pin(w)[1] == 1
    for s in range(2, L.PIN_SLOTS):
        w[L.S_PINS + L.PIN_WORDS * s] = 1
    status, slot, *_ = _pin(w)
    assert (status, slot) == (K.PIN_OK, -1)
    assert int(w[L.S_PIN_OVERFLOW]) == 1
    K.unpin(w, -1, PID)  # no-op


def test_unpin_leaves_a_slot_another_process_holds() -> None:
    w = _segment()
    w[L.S_PINS], w[L.S_PINS + 1] = 99, 1
    K.unpin(w, 0, PID)
    assert _pins_held(w) == [(99, 1)]


@pytest.mark.parametrize(
    "change",
    ["version", "generation", "name_hash", "writing", "pooled", "reclaiming"],
)
def test_any_mismatch_is_stale_and_leaves_no_pin(change: str) -> None:
    w = _segment()
    if change == "version":
        w[L.S_VERSION] = VERSION + 1
    elif change == "generation":
        w[L.S_GENERATION] = GEN + 1
    elif change == "name_hash":
        w[L.S_NAME_HASH] = 1
    else:
        state = {"writing": L.SEG_WRITING, "pooled": L.SEG_POOLED,
                 "reclaiming": L.SEG_RECLAIMING}[change]
        w[L.S_STATE] = (9 << L.STATE_BITS) | state
    assert _pin(w)[0] == K.PIN_STALE
    assert _pins_held(w) == []


def test_bad_magic_size_format_and_offsets() -> None:
    w = _segment()
    w[L.S_MAGIC] = 1
    assert _pin(w)[0] == K.PIN_NOT_A_SEGMENT
    small = _segment()[: 1024 // 8].copy()
    assert K.pin_version(small, 1024, MAGIC, FMT, PID, START, VERSION, GEN, NAME_HASH,
                         FP, NOW)[0] == K.PIN_NOT_A_SEGMENT
    w = _segment()
    w[L.S_FORMAT_VERSION] = FMT + 1
    assert _pin(w)[:2] == (K.PIN_BAD_FORMAT, FMT + 1)
    for off, n in [(100, 10), (4096, SIZE), (SIZE + 8, 0), (2**63, 2**63)]:
        w = _segment()
        w[L.S_DATA_OFFSET], w[L.S_DATA_BYTES] = off, n
        assert _pin(w)[0] == K.PIN_BAD_OFFSETS
        assert _pins_held(w) == []


@pytest.mark.parametrize(
    "change", ["stale_batch_version", "other_schema", "no_batch", "beyond_payload", "huge"]
)
def test_the_batch_locator_is_used_only_when_it_is_this_versions_and_in_bounds(
    change: str,
) -> None:
    w = _segment()
    fp = FP
    if change == "stale_batch_version":
        w[L.S_BATCH_VERSION] = VERSION - 1  # a recycled segment's previous life
    elif change == "other_schema":
        fp = FP ^ 1
    elif change == "no_batch":
        w[L.S_BATCH_BYTES] = 0
    elif change == "beyond_payload":
        w[L.S_BATCH_OFFSET], w[L.S_BATCH_BYTES] = 9_000, 1_001
    else:
        w[L.S_BATCH_OFFSET], w[L.S_BATCH_BYTES] = 2**63, 2**63
    status, slot, off, n, boff, blen = _pin(w, fp=fp)
    assert (status, off, n, boff, blen) == (K.PIN_OK, 4096, 10_000, 0, 0)
    K.unpin(w, slot, PID)
