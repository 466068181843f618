"""Single-process semantics of every atomic, for uint64 and uint32 words."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from arrowshm.kernels import (
    atomic_cas,
    atomic_exchange,
    atomic_fetch_add,
    atomic_fetch_sub,
    atomic_load,
    atomic_store,
    cas,
    compiler_barrier,
    cpu_pause,
    exchange,
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
from tests.kernels.helpers import Segment

DTYPES = [np.uint64, np.uint32]


def _max(dtype: Any) -> int:
    return int(np.iinfo(dtype).max)


@pytest.fixture(params=DTYPES, ids=["u64", "u32"])
def words(request: pytest.FixtureRequest) -> np.ndarray[Any, Any]:
    return np.zeros(16, dtype=request.param)


def test_store_then_load_round_trips_the_largest_value(words: np.ndarray[Any, Any]) -> None:
    top = _max(words.dtype)
    atomic_store(words, 3, top)
    assert atomic_load(words, 3) == top
    assert words[3] == top
    assert words[2] == 0 and words[4] == 0  # exactly one element written


def test_wrappers_reject_negative_python_ints_instead_of_guessing(
    words: np.ndarray[Any, Any],
) -> None:
    with pytest.raises(OverflowError):
        atomic_store(words, 0, -1)
    assert words[0] == 0


def test_uint32_wrappers_truncate_wide_values_to_32_bits() -> None:
    a = np.zeros(2, np.uint32)
    atomic_store(a, 0, 2**32 + 5)
    assert a[0] == 5


def test_large_values_work_whatever_was_called_before() -> None:
    """Lazy dispatch would have typed the ints as int64 after the first small call."""
    a = np.zeros(2, np.uint64)
    assert atomic_cas(a, 0, 0, 1) == 0
    assert atomic_cas(a, 0, 1, 2**64 - 1) == 1
    assert atomic_cas(a, 0, 2**64 - 1, 2**64 - 2) == 2**64 - 1
    assert atomic_exchange(a, 0, 3) == 2**64 - 2


def test_cas_succeeds_only_when_expected_matches(words: np.ndarray[Any, Any]) -> None:
    words[5] = 7
    assert atomic_cas(words, 5, 7, 9) == 7  # success returns the old (== expected) value
    assert words[5] == 9
    assert atomic_cas(words, 5, 7, 11) == 9  # failure returns the current value
    assert words[5] == 9  # ... and leaves it alone


def test_cas_compares_all_bits_of_the_word(words: np.ndarray[Any, Any]) -> None:
    top = _max(words.dtype)
    words[0] = top
    assert atomic_cas(words, 0, top - 1, 0) == top
    assert words[0] == top
    assert atomic_cas(words, 0, top, 0) == top
    assert words[0] == 0


def test_fetch_add_returns_the_old_value_and_wraps(words: np.ndarray[Any, Any]) -> None:
    assert atomic_fetch_add(words, 1, 5) == 0
    assert atomic_fetch_add(words, 1, 3) == 5
    assert words[1] == 8
    top = _max(words.dtype)
    words[2] = top
    assert atomic_fetch_add(words, 2, 1) == top
    assert words[2] == 0  # modulo 2**bits, no overflow error
    words[2] = top - 1
    atomic_fetch_add(words, 2, 3)
    assert words[2] == 1


def test_fetch_sub_returns_the_old_value_and_wraps_below_zero(words: np.ndarray[Any, Any]) -> None:
    words[4] = 10
    assert atomic_fetch_sub(words, 4, 4) == 10
    assert words[4] == 6
    words[4] = 0
    assert atomic_fetch_sub(words, 4, 1) == 0
    assert int(words[4]) == _max(words.dtype)


def test_exchange_returns_the_previous_value(words: np.ndarray[Any, Any]) -> None:
    words[6] = 42
    assert atomic_exchange(words, 6, 43) == 42
    assert atomic_exchange(words, 6, 44) == 43
    assert words[6] == 44


def test_uint64_wrappers_accept_values_above_int64_max() -> None:
    a = np.zeros(2, np.uint64)
    big = 2**63 + 5
    atomic_store(a, 0, big)
    assert atomic_load(a, 0) == big
    assert atomic_cas(a, 0, big, big + 1) == big
    assert int(a[0]) == big + 1
    assert atomic_fetch_add(a, 0, np.uint64(2**64 - 1)) == big + 1  # adding -1 modulo 2**64
    assert int(a[0]) == big


def test_uint32_word_does_not_touch_its_neighbours() -> None:
    a = np.zeros(4, np.uint64)
    w32 = a.view(np.uint32)
    atomic_fetch_add(w32, 3, 2**32 - 1)  # high half of a[1]
    assert a[0] == 0
    assert int(a[1]) == (2**32 - 1) << 32


@njit
def _store_into(a: Any) -> None:
    store_release(a, 0, 1)


@njit
def _load_from(a: Any) -> Any:
    return load_acquire(a, 0)


def test_loads_work_on_read_only_views_and_stores_are_rejected() -> None:
    a = np.arange(4, dtype=np.uint64)
    a.flags.writeable = False
    assert atomic_load(a, 2) == 2
    assert _load_from(a) == 0
    with pytest.raises(TypeError):  # no wrapper signature for a read-only array
        atomic_store(a, 2, 9)
    with pytest.raises(TypingError):  # the intrinsic refuses to type it
        _store_into(a)
    assert a[2] == 2


def test_non_word_arrays_are_rejected() -> None:
    with pytest.raises(TypeError):
        atomic_load(np.zeros(4, np.int64), 0)
    with pytest.raises(TypeError):
        atomic_load(np.zeros((2, 2), np.uint64), 0)
    with pytest.raises(TypingError):
        _load_from(np.zeros(4, np.int64))
    with pytest.raises(TypingError):
        _load_from(np.zeros(4, np.float64))


def test_index_may_be_any_integer_type(words: np.ndarray[Any, Any]) -> None:
    atomic_store(words, np.int32(7), 1)
    atomic_store(words, np.uint64(8), 2)
    assert atomic_load(words, np.uint8(7)) == 1
    assert atomic_load(words, np.int64(8)) == 2


@njit(nogil=True)
def _every_intrinsic(a: Any) -> Any:
    """Use each intrinsic once; returns the observed values in an array."""
    out = np.zeros(10, np.int64)
    store_relaxed(a, 0, 3)
    store_seq_cst(a, 1, 4)
    store_release(a, 2, 5)
    fence_release()
    fence_acquire()
    fence_seq_cst()
    compiler_barrier()
    cpu_pause()
    out[0] = load_relaxed(a, 0)
    out[1] = load_seq_cst(a, 1)
    out[2] = load_acquire(a, 2)
    out[3] = cas(a, 0, 3, 30)  # success
    out[4] = cas(a, 0, 3, 31)  # failure: sees 30
    out[5] = fetch_add(a, 1, 6)  # 4 -> 10
    out[6] = fetch_sub(a, 1, 1)  # 10 -> 9
    out[7] = exchange(a, 2, 50)  # 5 -> 50
    out[8] = load_relaxed(a, 1)
    out[9] = load_relaxed(a, 2)
    store_relaxed(a, 3, -1)  # intrinsics cast exactly: the all-ones bit pattern
    return out


def test_every_intrinsic_inside_njit_code(words: np.ndarray[Any, Any]) -> None:
    out = _every_intrinsic(words)
    assert list(out) == [3, 4, 5, 3, 30, 4, 10, 5, 9, 50]
    assert list(words[:3]) == [30, 9, 50]
    assert int(words[3]) == _max(words.dtype)


@njit(nogil=True)
def _hammer(a: Any, n: int) -> None:
    for _ in range(n):
        fetch_add(a, 0, 1)
        cas_loop_increment(a, 8)


@njit(nogil=True)
def cas_loop_increment(a: Any, i: int) -> None:
    while True:
        old = load_relaxed(a, i)
        if cas(a, i, old, old + np.uint64(1)) == old:
            return


@pytest.mark.timeout(60)
def test_concurrent_increments_from_threads_are_never_lost(
    segment: Any,
) -> None:
    seg: Segment = segment(4096)
    a = seg.u64()
    n = 200_000
    _hammer(a, 1)  # compile before the threads start
    a[:] = 0
    threads = [threading.Thread(target=_hammer, args=(a, n)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a[0] == 4 * n  # fetch_add
    assert a[8] == 4 * n  # cas retry loop
