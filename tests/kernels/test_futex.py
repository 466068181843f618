"""Futex wait/wake, the monotonic clock and the event count, in threads and processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest
from numba import njit

from arrowshm.kernels import (
    EAGAIN,
    EINTR,
    ETIMEDOUT,
    MAX_TIMEOUT_NS,
    atomic_load,
    atomic_store,
    eventcount_notify,
    futex_wait,
    futex_wake,
    monotonic_ns,
    wait_until_greater,
)
from arrowshm.kernels.futex import clamp_timeout
from tests.kernels import helpers as H
from tests.kernels.conftest import Children

MS = 1_000_000


def _event_words() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    words = np.zeros(64, np.uint64)
    return words, words.view(np.uint32)


# --------------------------------------------------------------------------
# Clock
# --------------------------------------------------------------------------


def test_monotonic_ns_is_clock_monotonic() -> None:
    before = time.monotonic_ns()
    ours = monotonic_ns()
    after = time.monotonic_ns()
    assert before <= ours <= after


@njit(nogil=True)
def _clock_never_goes_back(n: int) -> bool:
    last = monotonic_ns()
    for _ in range(n):
        now = monotonic_ns()
        if now < last:
            return False
        last = now
    return True


def test_monotonic_ns_never_decreases_inside_a_kernel() -> None:
    assert _clock_never_goes_back(100_000)


def test_timeouts_are_clamped_never_infinite() -> None:
    assert clamp_timeout(5) == 5
    assert clamp_timeout(0) == 0
    assert clamp_timeout(-1) == MAX_TIMEOUT_NS
    assert clamp_timeout(MAX_TIMEOUT_NS + 1) == MAX_TIMEOUT_NS


# --------------------------------------------------------------------------
# Raw futex
# --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_futex_wait_times_out_when_nobody_wakes() -> None:
    w = np.zeros(4, np.uint32)
    futex_wait(w, 0, 1, 0)  # compile
    t0 = time.monotonic_ns()
    assert futex_wait(w, 0, 0, 20 * MS) == ETIMEDOUT
    assert time.monotonic_ns() - t0 >= 20 * MS


@pytest.mark.timeout(30)
def test_futex_wait_returns_eagain_when_the_word_differs() -> None:
    w = np.zeros(4, np.uint32)
    w[1] = 5
    assert futex_wait(w, 1, 4, 5_000 * MS) == EAGAIN
    assert futex_wait(w, 1, 5 + 2**32, 0) == ETIMEDOUT  # expected is truncated to 32 bits


def test_futex_wake_with_no_waiters_wakes_nobody() -> None:
    w = np.zeros(4, np.uint32)
    assert futex_wake(w, 0, 1) == 0
    assert futex_wake(w, 0, 2**40) == 0  # count clamped, not an error


@pytest.mark.timeout(30)
def test_futex_wake_wakes_a_thread_sleeping_on_the_word() -> None:
    w = np.zeros(4, np.uint32)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(futex_wait(w, 2, 0, 10_000 * MS)))
    t.start()
    woken = 0
    deadline = time.monotonic() + 10
    while woken == 0 and time.monotonic() < deadline:  # until it is queued
        woken = futex_wake(w, 2, 1)
        time.sleep(0.001)
    t.join(10)
    assert woken == 1
    assert result == [0]


@pytest.mark.timeout(60)
def test_futex_wait_reports_eintr_when_a_signal_handler_runs(
    segment: Any, children: Children
) -> None:
    seg = segment(4096)
    words = seg.u64()
    proc = children.start(H.futex_sleeper_with_signal_handler, seg.name, 20_000 * MS)
    H.wait_for(lambda: atomic_load(words, H.EC_READY) == 1, 30, "child ready")
    assert proc.pid is not None
    deadline = time.monotonic() + 15
    while not H.done(words) and proc.is_alive() and time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGUSR1)  # repeated: the first may land before the sleep
        time.sleep(0.02)
    proc.join(10)
    assert H.as_signed(atomic_load(words, H.EC_RESULT)) == EINTR
    assert proc.exitcode == 0


# --------------------------------------------------------------------------
# Event count, single thread
# --------------------------------------------------------------------------


def test_wait_until_greater_returns_at_once_when_already_satisfied() -> None:
    words, w32 = _event_words()
    words[H.EC_VALUE] = 7
    assert wait_until_greater(words, H.EC_VALUE, 6, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0) == 7
    assert wait_until_greater(words, H.EC_VALUE, -1, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0) == 7
    words[H.EC_VALUE] = 0
    assert wait_until_greater(words, H.EC_VALUE, -1, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0) == 0
    assert words[H.EC_WAITERS] == 0


@pytest.mark.timeout(30)
def test_wait_until_greater_times_out_when_the_value_stays_put() -> None:
    words, w32 = _event_words()
    words[H.EC_VALUE] = 7
    wait_until_greater(words, H.EC_VALUE, 0, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0)  # compile
    t0 = time.monotonic_ns()
    r = wait_until_greater(words, H.EC_VALUE, 7, w32, H.EC_FUTEX32, H.EC_WAITERS, 1000, 30 * MS)
    assert r == ETIMEDOUT
    assert time.monotonic_ns() - t0 >= 30 * MS
    assert words[H.EC_WAITERS] == 0  # the waiter count is restored
    assert wait_until_greater(words, H.EC_VALUE, 7, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0) == (
        ETIMEDOUT
    )


def test_notify_without_sleepers_makes_no_wake_and_bumps_the_event_counter() -> None:
    words, w32 = _event_words()
    assert eventcount_notify(words, H.EC_WAITERS, w32, H.EC_FUTEX32) == 0
    assert eventcount_notify(words, H.EC_WAITERS, w32, H.EC_FUTEX32) == 0
    assert w32[H.EC_FUTEX32] == 2


# --------------------------------------------------------------------------
# Event count, woken by another thread / process
# --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_wait_until_greater_is_woken_by_a_notify_from_another_thread() -> None:
    words, w32 = _event_words()
    wait_until_greater(words, H.EC_VALUE, -1, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 0)  # compile
    result: list[int] = []
    tid: list[int] = []

    def waiter() -> None:
        tid.append(threading.get_native_id())
        result.append(
            wait_until_greater(
                words, H.EC_VALUE, 10, w32, H.EC_FUTEX32, H.EC_WAITERS, 0, 20_000 * MS
            )
        )

    t = threading.Thread(target=waiter)
    t.start()
    # Asleep in the futex: registered as a waiter and not runnable.
    H.wait_for(
        lambda: atomic_load(words, H.EC_WAITERS) == 1 and H.task_state(os.getpid(), tid[0]) == "S",
        10,
        "waiter asleep",
    )
    atomic_store(words, H.EC_VALUE, 11)
    woken = eventcount_notify(words, H.EC_WAITERS, w32, H.EC_FUTEX32)
    t.join(10)
    assert woken == 1  # a real futex wake, not a timeout or a spin
    assert result == [11]
    assert words[H.EC_WAITERS] == 0


@pytest.mark.timeout(90)
def test_wait_until_greater_is_woken_by_a_notify_from_another_process(
    segment: Any, children: Children
) -> None:
    seg = segment(4096)
    words, w32 = seg.u64(), seg.u32()
    proc = children.start(H.eventcount_waiter, seg.name, 100, 0, 20_000 * MS)
    assert proc.pid is not None
    pid = proc.pid
    H.wait_for(
        lambda: atomic_load(words, H.EC_WAITERS) == 1 and H.task_state(pid) == "S",
        60,
        "child asleep in the futex",
    )
    atomic_store(words, H.EC_VALUE, 101)
    woken = eventcount_notify(words, H.EC_WAITERS, w32, H.EC_FUTEX32)
    H.wait_for(lambda: H.done(words), 15, "child result")
    proc.join(10)
    assert woken == 1
    assert H.as_signed(atomic_load(words, H.EC_RESULT)) == 101
    assert atomic_load(words, H.EC_WAITERS) == 0
    assert proc.exitcode == 0


@pytest.mark.timeout(90)
def test_many_notifies_never_leave_a_waiter_behind(segment: Any, children: Children) -> None:
    """Ping-pong across processes with no spinning, so every round sleeps in the futex.

    Each wait has a timeout shorter than the internal 1 s sleep slice, so a
    lost wake-up (on either side) surfaces as ETIMEDOUT instead of a delay.
    """
    seg = segment(4096)
    words, w32 = seg.u64(), seg.u32()
    rounds = 2000
    proc = children.start(H.eventcount_echo, seg.name, rounds, 900 * MS)
    H.wait_for(lambda: atomic_load(words, H.EC_READY) == 1, 60, "child ready")
    woken = 0
    for k in range(1, rounds + 1):
        atomic_store(words, H.EC_VALUE, k)
        woken += eventcount_notify(words, H.EC_WAITERS, w32, H.EC_FUTEX32)
        r = wait_until_greater(
            words, H.EC_ECHO, k - 1, w32, H.EC_ECHO_FUTEX32, H.EC_ECHO_WAITERS, 0, 900 * MS
        )
        assert r == k, f"round {k}: {r}"
    H.wait_for(lambda: H.done(words), 15, "child result")
    proc.join(10)
    assert H.as_signed(atomic_load(words, H.EC_RESULT)) == rounds
    assert proc.exitcode == 0
    # the futex path was really taken, many times (how often the child is already asleep
    # when the parent notifies depends on scheduling: 680 of 2,000 rounds in one CI run)
    assert woken > rounds // 10
