"""Futex waits, wakes, a monotonic clock and an event count, callable from numba.

Blocking without a GIL and without ctypes
-----------------------------------------
A kernel that calls a ctypes function cannot be cached by numba ("dynamic
globals"), so every new process would recompile it. The system calls here are
emitted instead as inline assembly by numba intrinsics:

* x86-64: ``syscall`` with the number in ``rax`` and arguments in ``rdi``,
  ``rsi``, ``rdx``, ``r10``, ``r8``, ``r9``; the result comes back in ``rax``;
  the instruction clobbers ``rcx`` and ``r11``.
* aarch64: ``svc #0`` with the number in ``x8`` and arguments in ``x0``-``x5``;
  the result comes back in ``x0``. (Written to the Linux ABI but untested:
  the test machine is x86-64, and llvmlite registers only the native asm
  parser, so even cross-compiling the aarch64 asm is impossible there.)

Both are declared with a ``memory`` clobber, so the compiler assumes the call
reads and writes any memory: no shared-word access moves across a system call.
Importing this module on another architecture or OS raises ``ImportError``.

LLVM aborts the whole process when it meets non-empty inline assembly and no
assembly parser is registered, so this module calls
``llvmlite.binding.initialize_native_asmparser()`` at import (llvmlite 0.50
still exposes it; the former ``llvmlite.binding.initialize()`` now raises and
is not needed). Machine code loaded from numba's cache does not need it, but
a cache miss compiles, so the call is unconditional.

The raw system call returns ``-errno`` on failure; kernels pass these values
through as status codes:

========  ==========  ==============================================
code      errno       meaning
========  ==========  ==============================================
0                     woken (or spurious wake-up: re-check the word)
-4        EINTR       interrupted by a signal handler
-11       EAGAIN      the word did not hold ``expected``
-110      ETIMEDOUT   the timeout elapsed
-14, -22  EFAULT,     bad address / misaligned word (caller bug)
          EINVAL
========  ==========  ==============================================

Every wait is bounded: a negative timeout, or one above
:data:`MAX_TIMEOUT_NS` (one hour), is clamped to :data:`MAX_TIMEOUT_NS`. An
unbounded wait on a word whose notifier crashed would hang forever.

Event count
-----------
:func:`wait_until_greater` and :func:`eventcount_notify` let a consumer sleep
until a 64-bit value (a cursor or version in shared memory) exceeds a
threshold, and let the producer skip the wake-up system call when nobody
sleeps. Three shared words take part:

``words[value_idx]``    the 64-bit value (written by the producer, then notify)
``words[waiters_idx]``  how many waiters may be asleep or about to sleep
``w32[futex_idx]``      a 32-bit event counter bumped by every notify; waiters
                        sleep on it (futex words are 32-bit)

``words`` and ``w32`` are a ``uint64`` and a ``uint32`` view of the same
mapping in real use; ``futex_idx`` counts 32-bit units.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils

from ._jit import U32Array, U64Array, Word, as_int64, int_intrinsic, kernel
from .atomics import (
    cpu_pause,
    fence_seq_cst,
    fetch_add,
    fetch_sub,
    load_acquire,
    load_seq_cst,
)
from .status import EAGAIN, EINTR, ETIMEDOUT

__all__ = [
    "EAGAIN",
    "EINTR",
    "ETIMEDOUT",
    "MAX_TIMEOUT_NS",
    "WAIT_SLICE_NS",
    "clamp_timeout",
    "eventcount_notify",
    "futex_wait",
    "futex_wake",
    "monotonic_ns",
    "wait_until_greater",
]

# statuses (see kernels/status.py): EINTR the wait was interrupted by a signal handler,
# EAGAIN the futex word did not hold the expected value, ETIMEDOUT the timeout elapsed

MAX_TIMEOUT_NS = 3_600_000_000_000
"""Longest wait any kernel performs (one hour); larger or negative timeouts are clamped."""

WAIT_SLICE_NS = 1_000_000_000
"""Longest single futex sleep inside :func:`wait_until_greater` (one second).

The event count never misses a wake-up from a live notifier; the slice bounds
the extra latency if a notifier dies between updating the value and waking.
"""

_FUTEX_WAIT = 0  # shared (no FUTEX_PRIVATE_FLAG): the word lives in a shared mapping
_FUTEX_WAKE = 1
_CLOCK_MONOTONIC = 1
_NS_PER_S = 1_000_000_000
_WAKE_ALL = 0x7FFFFFFF

if not sys.platform.startswith("linux"):
    raise ImportError(f"arrowshm.kernels.futex needs Linux futexes; this is {sys.platform!r}")

_MACHINE = platform.machine().lower()
if _MACHINE in ("x86_64", "amd64"):
    _SYS_FUTEX, _SYS_CLOCK_GETTIME = 202, 228
    _ASM = "syscall"
    _CONSTRAINTS = (
        "={rax},{rax},{rdi},{rsi},{rdx},{r10},{r8},{r9},"
        "~{rcx},~{r11},~{memory},~{dirflag},~{fpsr},~{flags}"
    )
elif _MACHINE in ("aarch64", "arm64"):
    _SYS_FUTEX, _SYS_CLOCK_GETTIME = 98, 113
    _ASM = "svc #0"
    _CONSTRAINTS = "={x0},{x8},{x0},{x1},{x2},{x3},{x4},{x5},~{memory},~{cc}"
else:
    raise ImportError(
        f"arrowshm.kernels.futex supports x86-64 and aarch64 Linux; this machine is {_MACHINE!r}"
    )

# Without a registered asm parser, LLVM aborts (SIGABRT) on the first
# non-empty inline asm it compiles. Registering it twice is harmless.
llvm.initialize_native_asmparser()


# --------------------------------------------------------------------------
# Code generation helpers (compile-time Python)
# --------------------------------------------------------------------------

_get_item_pointer: Callable[..., Any] = cgutils.get_item_pointer
_alloca_once: Callable[..., Any] = cgutils.alloca_once

_I64 = ir.IntType(64)
_TIMESPEC = ir.LiteralStructType([_I64, _I64])  # struct timespec {time_t; long} on LP64


def _syscall(builder: Any, number: int, args: list[Any]) -> Any:
    """Emit a raw 6-argument Linux system call; returns ``rax``/``x0`` (i64)."""
    operands = [ir.Constant(_I64, number), *args]
    operands += [ir.Constant(_I64, 0)] * (7 - len(operands))
    fnty = ir.FunctionType(_I64, [_I64] * 7)
    return builder.asm(fnty, _ASM, _CONSTRAINTS, operands, side_effect=True)


def _word_address(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    """``&a[i]`` as an i64, for the first two (array, index) arguments."""
    arrty, idxty = sig.args[0], sig.args[1]
    ary = context.make_array(arrty)(context, builder, args[0])
    idx = context.cast(builder, args[1], idxty, types.intp)
    ptr = _get_item_pointer(
        context, builder, arrty, ary, [idx], wraparound=False, boundscheck=False
    )
    return builder.ptrtoint(ptr, _I64)


def _is_u32_array(a: Any) -> bool:
    return isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.uint32 and a.mutable


# --------------------------------------------------------------------------
# Raw system calls (intrinsics, @njit only)
# --------------------------------------------------------------------------


@int_intrinsic
def _sys_futex_wait(typingctx: Any, a: Any, i: Any, expected: Any, timeout_ns: Any) -> Any:
    """``futex(&a[i], FUTEX_WAIT, expected, &{timeout_ns}, 0, 0)``; returns 0 or -errno.

    ``timeout_ns`` must be in ``[0, MAX_TIMEOUT_NS]`` (the wrapper clamps it).
    The ``timespec`` lives in a stack slot of the calling kernel.
    """
    if not (
        _is_u32_array(a)
        and isinstance(i, types.Integer)
        and isinstance(expected, types.Integer)
        and isinstance(timeout_ns, types.Integer)
    ):
        return None
    sig = types.int64(a, i, expected, timeout_ns)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        addr = _word_address(context, builder, sig, args)
        val32 = context.cast(builder, args[2], sig.args[2], types.uint32)
        val = builder.zext(val32, _I64)
        t = context.cast(builder, args[3], sig.args[3], types.int64)
        ts = _alloca_once(builder, _TIMESPEC)
        billion = ir.Constant(_I64, _NS_PER_S)
        zero = ir.Constant(ir.IntType(32), 0)
        builder.store(builder.sdiv(t, billion), builder.gep(ts, [zero, zero]))
        one = ir.Constant(ir.IntType(32), 1)
        builder.store(builder.srem(t, billion), builder.gep(ts, [zero, one]))
        ts_addr = builder.ptrtoint(ts, _I64)
        return _syscall(builder, _SYS_FUTEX, [addr, ir.Constant(_I64, _FUTEX_WAIT), val, ts_addr])

    return sig, codegen


@int_intrinsic
def _sys_futex_wake(typingctx: Any, a: Any, i: Any, count: Any) -> Any:
    """``futex(&a[i], FUTEX_WAKE, count)``; returns the number woken or -errno."""
    if not (_is_u32_array(a) and isinstance(i, types.Integer) and isinstance(count, types.Integer)):
        return None
    sig = types.int64(a, i, count)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        addr = _word_address(context, builder, sig, args)
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        return _syscall(builder, _SYS_FUTEX, [addr, ir.Constant(_I64, _FUTEX_WAKE), n])

    return sig, codegen


@int_intrinsic
def _sys_clock_monotonic(typingctx: Any) -> Any:
    """``clock_gettime(CLOCK_MONOTONIC)`` in nanoseconds, or -errno (never in practice)."""
    sig = types.int64()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ts = _alloca_once(builder, _TIMESPEC)
        clock = ir.Constant(_I64, _CLOCK_MONOTONIC)
        ret = _syscall(builder, _SYS_CLOCK_GETTIME, [clock, builder.ptrtoint(ts, _I64)])
        zero = ir.Constant(ir.IntType(32), 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(ir.IntType(32), 1)]))
        ns = builder.add(builder.mul(sec, ir.Constant(_I64, _NS_PER_S)), nsec)
        failed = builder.icmp_signed("<", ret, ir.Constant(_I64, 0))
        return builder.select(failed, ret, ns)

    return sig, codegen


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------


@kernel
def clamp_timeout(timeout_ns: int) -> int:
    """``timeout_ns`` as int64, with negative or too large values mapped to the maximum.

    **Memory ordering**: none, it touches no shared memory.

    Returns a value in ``[0, MAX_TIMEOUT_NS]``; no status codes.
    """
    t = as_int64(timeout_ns)
    if t < 0 or t > MAX_TIMEOUT_NS:
        return as_int64(MAX_TIMEOUT_NS)
    return t


@kernel
def monotonic_ns() -> int:
    """``CLOCK_MONOTONIC`` in nanoseconds (same clock as ``time.monotonic_ns``).

    A raw ``clock_gettime`` system call (no vDSO from inside a kernel), so it
    costs a few hundred nanoseconds: kernels read it only between sleeps or
    every few dozen spin iterations.

    **Memory ordering**: none on shared memory; as a system call with a memory
    clobber it is also a compiler barrier.

    Returns the time (>= 0); a negative errno is impossible for this clock.
    """
    return _sys_clock_monotonic()


@kernel
def futex_wait(w32: U32Array, i: int, expected: int, timeout_ns: int) -> int:
    """Sleep while ``w32[i] == expected`` (shared ``FUTEX_WAIT``), for at most ``timeout_ns``.

    The kernel compares the word and queues the caller atomically with respect
    to :func:`futex_wake` on the same address, so a wake issued after the word
    changed cannot be lost. ``timeout_ns`` is relative; a negative value or one
    above :data:`MAX_TIMEOUT_NS` is clamped to :data:`MAX_TIMEOUT_NS` (no
    infinite waits), so a long wait may end with -110 early: callers loop on
    their own deadline. Wake-ups can be spurious: always re-check the
    condition.

    **Memory ordering**: the kernel's comparison is a full barrier with
    respect to the caller's earlier accesses (Linux issues ``smp_mb()`` in
    ``futex_wait_setup``). No ordering is promised on return: re-read the
    shared state with acquire (or seq_cst) loads.

    Returns 0 (woken, possibly spuriously), -11 ``EAGAIN`` (the word did not
    hold ``expected``), -110 ``ETIMEDOUT``, -4 ``EINTR`` (a signal handler
    ran), or another -errno for a caller bug (-14 bad address, -22 misaligned
    word).
    """
    t = clamp_timeout(timeout_ns)
    return _sys_futex_wait(w32, i, expected, t)


@kernel
def futex_wake(w32: U32Array, i: int, count: int) -> int:
    """Wake up to ``count`` waiters sleeping on ``w32[i]`` (shared ``FUTEX_WAKE``).

    ``count`` is clamped to ``[0, 0x7fffffff]``; pass ``0x7fffffff`` to wake
    all.

    **Memory ordering**: the system call is a full barrier for the caller;
    change the word (or the state it stands for) *before* waking, so a waiter
    that has not yet slept sees the change (its ``FUTEX_WAIT`` returns
    ``EAGAIN``).

    Returns the number of waiters woken (>= 0), or -errno (-14 bad address,
    -22 misaligned word).
    """
    n = as_int64(count)
    if n < 0:
        n = as_int64(0)
    elif n > _WAKE_ALL:
        n = as_int64(_WAKE_ALL)
    return _sys_futex_wake(w32, i, n)


@kernel
def eventcount_notify(words: U64Array, waiters_idx: int, w32: U32Array, futex_idx: int) -> int:
    """Announce that the guarded value changed; wake sleepers only if there are any.

    Call it after storing the new value (any store ordering). Steps:
    a full fence, ``fetch_add(w32[futex_idx], 1)``, then
    ``load_seq_cst(words[waiters_idx])``, and only if that is non-zero
    ``futex_wake(w32, futex_idx, all)``. With nobody asleep it costs two
    locked instructions and no system call.

    **Memory ordering**: a seq_cst fence first, so the caller's value store
    is ordered before the waiter-count load even in the C++ model where the
    value store was only a release (or relaxed) store: see
    :func:`wait_until_greater` for the proof that no wake-up is missed. The
    event-counter increment is a seq_cst read-modify-write and the
    waiter-count load is seq_cst. x86-64: ``lock or``, ``lock xadd``,
    ``mov``.

    Returns the number of waiters woken (0 when nobody slept: no system call)
    or -errno from the wake (-14, -22: bad futex word).
    """
    fence_seq_cst()
    fetch_add(w32, futex_idx, 1)
    if load_seq_cst(words, waiters_idx) != 0:
        return futex_wake(w32, futex_idx, _WAKE_ALL)
    return 0


@kernel
def wait_until_greater(
    words: U64Array,
    value_idx: int,
    threshold: Word,
    w32: U32Array,
    futex_idx: int,
    waiters_idx: int,
    spin_iters: int,
    timeout_ns: int,
) -> int:
    """Wait until ``words[value_idx] > threshold``; return the value or -110.

    Values and ``threshold`` are compared as signed 64-bit integers: values
    must stay below 2**63 (cursors and versions do), and a negative threshold
    is satisfied by any value.

    1. Spin ``spin_iters`` times: acquire-load the value, ``pause``.
    2. Until the deadline (``monotonic_ns() + timeout_ns``; a negative or
       too large timeout is clamped to :data:`MAX_TIMEOUT_NS`): read the
       event counter ``f = w32[futex_idx]`` (seq_cst), increment the waiter
       count (seq_cst), re-check the value (seq_cst); if satisfied, decrement
       the waiter count and return; else ``futex_wait(w32, futex_idx, f,
       min(remaining, WAIT_SLICE_NS))`` and decrement the waiter count.
       Interruptions (``EINTR``) and spurious wake-ups just loop.

    **Memory ordering**: the spin loads are acquire, so when the value is
    seen everything the producer wrote before publishing it is visible. In
    the blocking phase the counter read, the waiter increment and the value
    re-check are seq_cst; the notifier (:func:`eventcount_notify`) runs
    ``[value store]; fence(seq_cst); fetch_add(f); load(waiters)``.

    *No missed wake-up.* Suppose the waiter W goes to sleep with ``f == F``
    and the notifier N (of a value that satisfies W) does not wake it.

    - If N's ``load(waiters)`` did not see W's increment, then in the single
      total order S of seq_cst operations ``fence_N < load_N(waiters) <
      inc_W(waiters) < load_W(value)``. N's value store is sequenced before
      ``fence_N``, and a seq_cst load ordered after a seq_cst fence in S
      observes every store sequenced before that fence: W's re-check sees
      the new value and W returns instead of sleeping. Contradiction.
    - Otherwise N saw the waiter and calls ``futex_wake`` after its
      ``fetch_add(f)``. If W read ``f`` after that increment, the value
      store (before the increment) is visible to W's later seq_cst re-check
      (release/acquire through ``f``): W returns. If W read ``f`` before the
      increment, W's ``FUTEX_WAIT(f == F)`` either runs its in-kernel
      comparison after the increment (returns ``EAGAIN``, W loops and
      re-checks) or before it, in which case W is already queued on the
      futex when N's wake (which follows the increment) scans the queue
      under the same hash-bucket lock, and W is woken.

    The 32-bit counter could only alias (ABA) after 2**32 notifies between
    W's read of ``f`` and its sleep. A waiter killed while asleep leaves the
    waiter count too high: later notifies then make a harmless wake call.

    Returns the value (>= 0) once it exceeds ``threshold``, or -110
    ``ETIMEDOUT``. The value is returned even if it was found only at the
    last check after the deadline.
    """
    thr = as_int64(threshold)
    v = as_int64(load_acquire(words, value_idx))
    if v > thr:
        return v
    for _ in range(spin_iters):
        cpu_pause()
        v = as_int64(load_acquire(words, value_idx))
        if v > thr:
            return v
    t = clamp_timeout(timeout_ns)
    deadline = monotonic_ns() + t
    one = np.uint64(1)
    while True:
        f = load_seq_cst(w32, futex_idx)
        fetch_add(words, waiters_idx, one)
        v = as_int64(load_seq_cst(words, value_idx))
        if v > thr:
            fetch_sub(words, waiters_idx, one)
            return v
        remaining = deadline - monotonic_ns()
        if remaining <= 0:
            fetch_sub(words, waiters_idx, one)
            return ETIMEDOUT
        if remaining > WAIT_SLICE_NS:
            remaining = as_int64(WAIT_SLICE_NS)
        futex_wait(w32, futex_idx, f, remaining)
        fetch_sub(words, waiters_idx, one)
