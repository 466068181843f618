"""Seqlock semantics, crash recovery, and cross-process torn-read stress.

Outcome classes (jcstress style): a read that returns a record mixing two
versions is FORBIDDEN however rare; a read that reports EBUSY while a write
is in flight is ACCEPTABLE.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import numpy as np
import pytest

from arrowshm.kernels import (
    SEQLOCK_EBUSY,
    SEQLOCK_EINVAL,
    SEQLOCK_EOWNERDEAD,
    atomic_load,
    atomic_store,
    seqlock_read,
    seqlock_read_seq,
    seqlock_recover,
    seqlock_try_read,
    seqlock_words,
    seqlock_write,
)
from tests.kernels import helpers as H
from tests.kernels.conftest import Children

MS = 1_000_000
N = 8
BASE = 3  # deliberately not 0: offsets must be honoured


def _record(n: int = N) -> np.ndarray[Any, Any]:
    return np.zeros(BASE + seqlock_words(n) + 5, np.uint64)


def _payload(counter: int, n: int = N) -> np.ndarray[Any, Any]:
    p = np.empty(n, np.uint64)
    H.fill_payload(p, counter)
    return p


def _live(words: np.ndarray[Any, Any], n: int = N) -> np.ndarray[Any, Any]:
    return words[BASE + 2 : BASE + 2 + n]


def _staged(words: np.ndarray[Any, Any], n: int = N) -> np.ndarray[Any, Any]:
    return words[BASE + 2 + n : BASE + 2 + 2 * n]


# --------------------------------------------------------------------------
# Single process
# --------------------------------------------------------------------------


def test_layout_is_header_live_staged() -> None:
    assert seqlock_words(N) == 2 + 2 * N
    words = _record()
    assert seqlock_write(words, BASE, _payload(1)) == 2
    assert words[BASE] == 2  # seq
    assert words[BASE + 1] == 2  # stage_tag of the completed write
    assert np.array_equal(_live(words), _payload(1))
    assert np.array_equal(_staged(words), _payload(1))
    assert words[:BASE].sum() == 0 and words[BASE + seqlock_words(N) :].sum() == 0


def test_write_then_read_round_trips_and_bumps_seq_by_two() -> None:
    words = _record()
    dst = np.zeros(N, np.uint64)
    assert seqlock_try_read(words, BASE, dst, 0) == 0  # initial empty record, even
    for k in range(1, 5):
        assert seqlock_write(words, BASE, _payload(k)) == 2 * k
        assert seqlock_read_seq(words, BASE) == 2 * k
        assert seqlock_try_read(words, BASE, dst, 0) == 2 * k
        assert np.array_equal(dst, _payload(k))
        dst[:] = 0
        assert seqlock_read(words, BASE, dst, 10, 1 * MS) == 2 * k
        assert np.array_equal(dst, _payload(k))


def test_readers_report_busy_while_seq_is_odd() -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))
    words[BASE] = 3  # a writer in the middle of its copy
    dst = np.zeros(N, np.uint64)
    assert seqlock_try_read(words, BASE, dst, 100) == SEQLOCK_EBUSY
    t0 = time.monotonic_ns()
    assert seqlock_read(words, BASE, dst, 100, 20 * MS) == SEQLOCK_EBUSY
    assert time.monotonic_ns() - t0 >= 20 * MS
    assert seqlock_read_seq(words, BASE) == 3


def test_write_refuses_an_odd_sequence_until_recovered() -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))
    words[BASE] = 3
    assert seqlock_write(words, BASE, _payload(2)) == SEQLOCK_EOWNERDEAD
    assert words[BASE] == 3 and np.array_equal(_live(words), _payload(1))


def test_records_that_do_not_fit_are_rejected_not_overrun() -> None:
    words = _record()
    src = np.zeros(N, np.uint64)
    end = len(words) - seqlock_words(N)  # last base that fits
    assert seqlock_write(words, end, src) == 2
    assert seqlock_write(words, end + 1, src) == SEQLOCK_EINVAL
    assert seqlock_write(words, -1, src) == SEQLOCK_EINVAL
    assert seqlock_try_read(words, end + 1, src, 0) == SEQLOCK_EINVAL
    assert seqlock_read(words, end + 1, src, 0, 0) == SEQLOCK_EINVAL
    assert seqlock_recover(words, end + 1, N) == SEQLOCK_EINVAL
    assert seqlock_recover(words, BASE, -1) == SEQLOCK_EINVAL
    assert seqlock_read_seq(words, len(words)) == SEQLOCK_EINVAL
    assert seqlock_read_seq(words, -1) == SEQLOCK_EINVAL


def test_recover_does_nothing_on_an_even_sequence() -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))
    before = words.copy()
    assert seqlock_recover(words, BASE, N) == 0
    assert np.array_equal(words, before)


def _crash_after_odd_store(words: np.ndarray[Any, Any], counter: int, copied: int) -> int:
    """Replay steps (1)-(3) of a write and ``copied`` words of step (4); returns old seq."""
    seq = int(words[BASE])
    _staged(words)[:] = _payload(counter)
    words[BASE + 1] = seq + 2
    words[BASE] = seq + 1
    _live(words)[:copied] = _payload(counter)[:copied]
    return seq


@pytest.mark.parametrize("copied", [0, N // 2, N])
def test_recover_completes_a_write_interrupted_after_the_odd_store(copied: int) -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))
    old = _crash_after_odd_store(words, 2, copied)
    dst = np.zeros(N, np.uint64)
    assert seqlock_try_read(words, BASE, dst, 10) == SEQLOCK_EBUSY  # never a torn record
    assert seqlock_recover(words, BASE, N) == 1
    assert seqlock_try_read(words, BASE, dst, 0) == old + 2
    assert np.array_equal(dst, _payload(2))
    assert seqlock_recover(words, BASE, N) == 0  # idempotent
    assert seqlock_write(words, BASE, _payload(3)) == old + 4


def test_recover_rolls_back_an_odd_sequence_without_a_matching_stage() -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))  # seq 2, tag 2
    _staged(words)[:] = 12345  # garbage staging that must not be published
    words[BASE] = 3  # odd, but tag (2) != seq + 1
    assert seqlock_recover(words, BASE, N) == 2
    dst = np.zeros(N, np.uint64)
    assert seqlock_try_read(words, BASE, dst, 0) == 4
    assert np.array_equal(dst, _payload(1))  # live untouched
    assert seqlock_write(words, BASE, _payload(2)) == 6


def test_a_writer_killed_between_staging_and_the_odd_store_leaves_the_old_record() -> None:
    words = _record()
    seqlock_write(words, BASE, _payload(1))
    _staged(words)[:] = _payload(2)
    words[BASE + 1] = 4  # step (2) done, step (3) never happened
    assert seqlock_recover(words, BASE, N) == 0
    dst = np.zeros(N, np.uint64)
    assert seqlock_try_read(words, BASE, dst, 0) == 2
    assert np.array_equal(dst, _payload(1))
    assert seqlock_write(words, BASE, _payload(3)) == 4


# --------------------------------------------------------------------------
# Cross-process
# --------------------------------------------------------------------------


def _stress_segment(segment: Any, n: int) -> H.Segment:
    seg: H.Segment = segment(8 * (H.RECORD_BASE + seqlock_words(n)) + 4096)
    words = seg.u64()
    assert seqlock_write(words, H.RECORD_BASE, _payload(1, n)) == 2
    return seg


def _run_stress(
    segment: Any, children: Children, n: int, readers: int, raw: bool, seconds: float
) -> list[dict[str, int]]:
    seg = _stress_segment(segment, n)
    words = seg.u64()
    children.start(H.stress_writer, seg.name, n)
    for r in range(readers):
        children.start(H.stress_reader, seg.name, n, r, raw)
    H.wait_for(lambda: atomic_load(words, H.READY) == readers + 1, 60, "children ready")
    time.sleep(seconds)
    atomic_store(words, H.STOP, 1)
    for proc in children.procs:
        proc.join(30)
        assert proc.exitcode == 0
    keys = ["reads", "torn", "versions", "busy", "regressions"]
    results = []
    for r in range(readers):
        out = H.RESULTS + 8 * r
        results.append({k: int(words[out + j]) for j, k in enumerate(keys)})
    results.append({"writes": int(seqlock_read_seq(words, H.RECORD_BASE)) // 2})
    return results


@pytest.mark.timeout(120)
def test_readers_in_other_processes_never_see_a_torn_record(
    segment: Any, children: Children
) -> None:
    results = _run_stress(segment, children, n=16, readers=2, raw=False, seconds=3.0)
    print("seqlock stress:", results)
    *per_reader, writer = results
    assert writer["writes"] > 10_000
    for res in per_reader:
        assert res["torn"] == 0  # FORBIDDEN
        assert res["regressions"] == 0  # FORBIDDEN: a reader went back in time
        assert res["reads"] > 100_000  # the test actually read...
        assert res["versions"] > 1_000  # ...while the record kept changing


@pytest.mark.timeout(120)
def test_the_stress_test_detects_tears_when_readers_skip_the_sequence_check(
    segment: Any, children: Children
) -> None:
    """Control: the same readers without seqlock validation must see tears."""
    results = _run_stress(segment, children, n=256, readers=2, raw=True, seconds=1.5)
    print("raw (unvalidated) stress:", results)
    *per_reader, _ = results
    assert sum(res["torn"] for res in per_reader) > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", ["odd", "even"])
def test_a_writer_killed_anywhere_leaves_a_recoverable_untorn_record(
    segment: Any, children: Children, window: str
) -> None:
    """SIGSTOP the writer until seq has the wanted parity, then SIGKILL it there."""
    n = 512
    seg = _stress_segment(segment, n)
    words = seg.u64()
    proc = children.start(H.killable_writer, seg.name, n)
    H.wait_for(lambda: atomic_load(words, H.READY) == 1, 60, "writer ready")
    assert proc.pid is not None
    pid = proc.pid
    rng = random.Random(1234)
    killed_seq = -1
    for _ in range(2000):
        time.sleep(rng.uniform(0, 0.002))
        os.kill(pid, signal.SIGSTOP)
        H.wait_for(lambda: H.task_state(pid) == "T", 10, "writer stopped")
        seq = int(words[H.RECORD_BASE])
        if seq > 2 and (seq % 2 == 1) == (window == "odd"):
            os.kill(pid, signal.SIGKILL)
            killed_seq = seq
            break
        os.kill(pid, signal.SIGCONT)
    proc.join(10)
    assert killed_seq > 0, "never caught the writer in the wanted window"
    assert proc.exitcode == -signal.SIGKILL

    dst = np.zeros(n, np.uint64)
    if window == "odd":
        assert seqlock_try_read(words, H.RECORD_BASE, dst, 100) == SEQLOCK_EBUSY
        assert seqlock_recover(words, H.RECORD_BASE, n) == 1
        expected = killed_seq + 1  # the interrupted write completed
    else:
        assert seqlock_recover(words, H.RECORD_BASE, n) == 0
        expected = killed_seq
    assert seqlock_try_read(words, H.RECORD_BASE, dst, 0) == expected
    assert H.payload_ok(dst)
    assert int(dst[0]) == expected // 2  # the record of exactly that version
    assert seqlock_write(words, H.RECORD_BASE, _payload(expected // 2 + 1, n)) == expected + 2
