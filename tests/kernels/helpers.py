"""Shared-memory segments and child-process bodies for the kernel tests.

Everything a spawned child runs lives here (not in a test module, and never
in ``__main__``) so that the "spawn" start method can import it. The njit
loops are deliberately *not* cached: they inline the kernels, and a cache
keyed on this file alone would keep running stale kernel code after a kernel
changes (the very problem ``arrowshm.kernels._cache`` solves for the
package itself).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import posix_ipc
from numba import njit

from arrowshm.kernels import (
    atomic_fetch_add,
    atomic_load,
    atomic_store,
    eventcount_notify,
    futex_wait,
    load_relaxed,
    seqlock_read_seq,
    seqlock_try_read,
    seqlock_write,
    wait_until_greater,
)

SHM_PREFIX = "/ash-ktest-"
"""Every segment a kernel test creates starts with this (the fixture checks leaks)."""

_U64 = np.uint64
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


# --------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------


@dataclass
class Segment:
    """A mapped POSIX shared-memory segment (the creator must unlink it)."""

    name: str
    size: int
    mm: mmap.mmap

    def u64(self) -> np.ndarray[Any, np.dtype[np.uint64]]:
        return np.frombuffer(self.mm, dtype=np.uint64)

    def u32(self) -> np.ndarray[Any, np.dtype[np.uint32]]:
        return np.frombuffer(self.mm, dtype=np.uint32)

    def unlink(self) -> None:
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_shared_memory(self.name)


def new_segment_name() -> str:
    return f"{SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}"


def create_segment(size: int) -> Segment:
    """Create and map a fresh 0600 segment of ``size`` bytes (zero-filled)."""
    name = new_segment_name()
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
    try:
        mm = mmap.mmap(shm.fd, size)
    except BaseException:
        shm.unlink()
        raise
    finally:
        shm.close_fd()
    return Segment(name, size, mm)


def attach_segment(name: str) -> Segment:
    """Map an existing segment read-write (children use this)."""
    shm = posix_ipc.SharedMemory(name)
    try:
        mm = mmap.mmap(shm.fd, shm.size)
    finally:
        shm.close_fd()
    return Segment(name, len(mm), mm)


def task_state(pid: int, tid: int | None = None) -> str:
    """Scheduler state letter of a task from /proc ('R', 'S', 'T', ...)."""
    path = f"/proc/{pid}/task/{tid if tid is not None else pid}/stat"
    with open(path) as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2]


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every millisecond; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.001)


# --------------------------------------------------------------------------
# Self-checking seqlock payloads
# --------------------------------------------------------------------------


@njit(nogil=True)
def fill_payload(dst: Any, counter: Any) -> None:
    """Word 0 = counter, word k = a mix of (counter, k) that differs for every counter."""
    c = np.uint64(counter)
    dst[0] = c
    for k in range(1, dst.shape[0]):
        dst[k] = c * _K1 + np.uint64(k) * _K2


@njit(nogil=True)
def payload_ok(buf: Any) -> bool:
    """True if every word agrees with the counter in word 0 (no mix of versions)."""
    c = buf[0]
    for k in range(1, buf.shape[0]):  # noqa: SIM110 - a plain loop compiles best in numba
        if buf[k] != c * _K1 + np.uint64(k) * _K2:
            return False
    return True


# Control words of a stress segment (uint64 indices).
STOP = 0
READY = 1
RESULTS = 8  # per child: RESULTS + 8 * child .. (reads, torn, versions, busy, regressions)
RECORD_BASE = 64  # the seqlock record, on its own cache lines


@njit(nogil=True)
def _writer_loop(words: Any, base: int, n: int, first_counter: int) -> Any:
    src = np.empty(n, np.uint64)
    counter = np.uint64(first_counter)
    while load_relaxed(words, STOP) == 0:
        fill_payload(src, counter)
        if seqlock_write(words, base, src) < 0:
            return -1
        counter += np.uint64(1)
    return np.int64(counter)


@njit(nogil=True)
def _reader_loop(words: Any, base: int, n: int, out: int, raw: bool) -> None:
    dst = np.empty(n, np.uint64)
    reads = np.uint64(0)
    torn = np.uint64(0)
    versions = np.uint64(0)
    busy = np.uint64(0)
    regressions = np.uint64(0)
    last = np.uint64(0)
    while load_relaxed(words, STOP) == 0:
        if raw:
            # FORBIDDEN-on-purpose variant: no sequence validation at all.
            for k in range(n):
                dst[k] = load_relaxed(words, base + 2 + k)
        elif seqlock_try_read(words, base, dst, 64) < 0:
            busy += np.uint64(1)
            continue
        reads += np.uint64(1)
        if not payload_ok(dst):
            torn += np.uint64(1)
        elif dst[0] != last:
            if dst[0] < last:
                regressions += np.uint64(1)
            versions += np.uint64(1)
            last = dst[0]
    words[out + 0] = reads
    words[out + 1] = torn
    words[out + 2] = versions
    words[out + 3] = busy
    words[out + 4] = regressions


def _warm_up() -> None:
    """Compile the loops before the timed window (stop flag already set)."""
    w = np.zeros(RECORD_BASE + 2 + 2 * 4, np.uint64)
    w[STOP] = 1
    _writer_loop(w, RECORD_BASE, 4, 1)
    _reader_loop(w, RECORD_BASE, 4, RESULTS, False)
    _reader_loop(w, RECORD_BASE, 4, RESULTS, True)


def stress_writer(name: str, n: int) -> None:
    """Child: publish self-checking records until STOP."""
    seg = attach_segment(name)
    words = seg.u64()
    _warm_up()
    atomic_fetch_add(words, READY, 1)
    _writer_loop(words, RECORD_BASE, n, 2)


def stress_reader(name: str, n: int, index: int, raw: bool) -> None:
    """Child: read the record until STOP, counting reads and torn reads."""
    seg = attach_segment(name)
    words = seg.u64()
    _warm_up()
    atomic_fetch_add(words, READY, 1)
    _reader_loop(words, RECORD_BASE, n, RESULTS + 8 * index, raw)


def killable_writer(name: str, n: int) -> None:
    """Child: continue the record's counter (payload counter == seq / 2) until STOP.

    Writes as fast as it can so that a SIGKILL lands anywhere in the protocol.
    """
    seg = attach_segment(name)
    words = seg.u64()
    _warm_up()
    first = seqlock_read_seq(words, RECORD_BASE) // 2 + 1
    atomic_fetch_add(words, READY, 1)
    _writer_loop(words, RECORD_BASE, n, first)


# --------------------------------------------------------------------------
# Futex / event count children
# --------------------------------------------------------------------------

# uint64 indices of an event-count segment
EC_VALUE = 0
EC_WAITERS = 8
EC_FUTEX32 = 32  # in uint32 units: byte 128, its own cache line
EC_RESULT = 24
EC_DONE = 25
EC_READY = 26
EC_ECHO = 40  # the echo direction of the ping-pong test
EC_ECHO_WAITERS = 48
EC_ECHO_FUTEX32 = 112  # byte 448


def eventcount_waiter(name: str, threshold: int, spin_iters: int, timeout_ns: int) -> None:
    """Child: wait_until_greater on the segment; store the result and a done flag."""
    seg = attach_segment(name)
    words, w32 = seg.u64(), seg.u32()
    # Warm up (compile) on private memory where the value is already satisfied.
    scratch = np.zeros(64, np.uint64)
    scratch[EC_VALUE] = 1
    wait_until_greater(scratch, EC_VALUE, 0, scratch.view(np.uint32), EC_FUTEX32, EC_WAITERS, 0, 0)
    atomic_store(words, EC_READY, 1)
    r = wait_until_greater(
        words, EC_VALUE, threshold, w32, EC_FUTEX32, EC_WAITERS, spin_iters, timeout_ns
    )
    atomic_store(words, EC_RESULT, r % 2**64)
    atomic_store(words, EC_DONE, 1)


def eventcount_echo(name: str, rounds: int, timeout_ns: int) -> None:
    """Child: for k = 1..rounds wait until VALUE >= k, then publish ECHO = k and notify.

    Stores the last round completed (or the failing status) in RESULT.
    """
    seg = attach_segment(name)
    words, w32 = seg.u64(), seg.u32()
    scratch = np.zeros(128, np.uint64)
    scratch[EC_VALUE] = 1
    s32 = scratch.view(np.uint32)
    wait_until_greater(scratch, EC_VALUE, 0, s32, EC_FUTEX32, EC_WAITERS, 0, 0)
    eventcount_notify(scratch, EC_ECHO_WAITERS, s32, EC_ECHO_FUTEX32)
    atomic_store(words, EC_READY, 1)
    result = rounds
    for k in range(1, rounds + 1):
        r = wait_until_greater(words, EC_VALUE, k - 1, w32, EC_FUTEX32, EC_WAITERS, 0, timeout_ns)
        if r != k:
            result = r
            break
        atomic_store(words, EC_ECHO, k)
        eventcount_notify(words, EC_ECHO_WAITERS, w32, EC_ECHO_FUTEX32)
    atomic_store(words, EC_RESULT, result % 2**64)
    atomic_store(words, EC_DONE, 1)


def futex_sleeper_with_signal_handler(name: str, timeout_ns: int) -> None:
    """Child: futex_wait on a matching word with a Python SIGUSR1 handler installed."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    seg = attach_segment(name)
    words, w32 = seg.u64(), seg.u32()
    scratch = np.zeros(2, np.uint32)
    futex_wait(scratch, 0, 1, 0)  # compile (returns EAGAIN at once)
    atomic_store(words, EC_READY, 1)
    r = futex_wait(w32, EC_FUTEX32, 0, timeout_ns)
    atomic_store(words, EC_RESULT, r % 2**64)
    atomic_store(words, EC_DONE, 1)


def as_signed(v: int) -> int:
    """Interpret a uint64 word read back from shared memory as int64.

    Children store int64 statuses as ``r % 2**64`` (the wrappers take unsigned values).
    """
    return int(np.array([v], dtype=np.uint64).view(np.int64)[0])


def done(words: np.ndarray[Any, np.dtype[np.uint64]]) -> bool:
    return bool(atomic_load(words, EC_DONE) == 1)
