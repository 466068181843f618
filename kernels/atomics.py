"""CPU atomics on shared-memory words, for numba ``@njit`` code.

numba has no API for CPU atomics (numba/numba#2988), so this module emits the
LLVM atomic instructions itself through ``numba.extending.intrinsic`` and
llvmlite's IR builder. Every intrinsic takes ``(a, i, ...)``: ``a`` is a 1-D
``uint64`` or ``uint32`` array that views shared memory, ``i`` an integer
index. The element pointer is computed without wraparound and without bounds
checking (the caller validated the layout when it opened the segment), and
every value argument is cast to the element type exactly, so a Python ``int``
or a ``np.int64`` stored into a ``uint64`` word keeps its bit pattern.

Why atomics even for "plain" words
----------------------------------
Reading or writing a shared word with ordinary indexing (``a[i]``) is a data
race in the language model and the optimizer exploits it: a spin loop on
``a[i]`` compiled to an infinite ``jmp .``, and a seqlock writer's odd store
was deleted (both seen on this project's machines). Relaxed (``monotonic``)
atomics cost the same as a plain ``mov`` on x86-64 but forbid those
transformations, so every access to a
word another process may touch concurrently goes through this module.

Orderings (LLVM names, C11 meaning)
-----------------------------------
================  ===========  ==============================================
kernel            LLVM order   x86-64 code
================  ===========  ==============================================
load_relaxed      monotonic    ``mov``
load_acquire      acquire      ``mov`` (plus a compiler barrier)
load_seq_cst      seq_cst      ``mov``
store_relaxed     monotonic    ``mov``
store_release     release      ``mov`` (plus a compiler barrier)
store_seq_cst     seq_cst      ``xchg``
cas               seq_cst      ``lock cmpxchg``
fetch_add/sub     seq_cst      ``lock xadd``
exchange          seq_cst      ``xchg``
fence_acquire     acquire      nothing (compiler barrier only)
fence_release     release      nothing (compiler barrier only)
fence_seq_cst     seq_cst      ``lock or`` on the stack (or ``mfence``)
compiler_barrier  singlethread nothing
cpu_pause         --           ``pause``
================  ===========  ==============================================

All read-modify-write operations are ``seq_cst``: on x86-64 every locked
instruction is a full barrier anyway, and on aarch64 the cost difference is
small next to the cache-line transfer they imply.

Alignment: each access declares natural alignment (8 bytes for ``uint64``,
4 for ``uint32``). numba types a misaligned ``frombuffer`` view as aligned, so
alignment must be checked in Python when a view is created; a locked
instruction across a cache line is ~10,000x slower and atomicity of a split
plain load is not guaranteed.

Python-callable wrappers
------------------------
Intrinsics only exist inside ``@njit`` code. :func:`atomic_load`,
:func:`atomic_store`, :func:`atomic_cas`, :func:`atomic_fetch_add`,
:func:`atomic_fetch_sub` and :func:`atomic_exchange` are small ``@njit``
kernels that pure-Python code calls on a numpy view (each call costs the
dispatcher overhead, a few hundred nanoseconds). They are compiled eagerly
(loaded from the cache at import) for 1-D C-contiguous ``uint64`` and
``uint32`` arrays (loads also for read-only ones), an ``int64`` index and
values of the element type: any Python ``int`` in ``[0, 2**64)`` works for
``uint64`` words, a negative one raises ``OverflowError``, and for ``uint32``
words a larger value is truncated to 32 bits. (Lazy compilation would type a
Python ``int`` as ``int64`` once such a specialisation exists and then fail
on values >= 2**63 depending on call order.)
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils

from ._jit import Word, WordArray, int_intrinsic, kernel_with_signatures, void_intrinsic

__all__ = [
    "atomic_cas",
    "atomic_exchange",
    "atomic_fetch_add",
    "atomic_fetch_sub",
    "atomic_load",
    "atomic_store",
    "cas",
    "compiler_barrier",
    "cpu_pause",
    "exchange",
    "fence_acquire",
    "fence_release",
    "fence_seq_cst",
    "fetch_add",
    "fetch_sub",
    "load_acquire",
    "load_relaxed",
    "load_seq_cst",
    "store_relaxed",
    "store_release",
    "store_seq_cst",
]

_MACHINE = platform.machine().lower()
_IS_X86_64 = _MACHINE in ("x86_64", "amd64")

_WORD_TYPES = (types.uint64, types.uint32)

_get_item_pointer: Callable[..., Any] = cgutils.get_item_pointer
_get_or_insert_function: Callable[..., Any] = cgutils.get_or_insert_function


# --------------------------------------------------------------------------
# Typing and code generation helpers (compile-time Python, never jitted)
# --------------------------------------------------------------------------


def _is_word_array(a: Any, *, writable: bool) -> bool:
    """True if numba type ``a`` is a 1-D uint64/uint32 array (mutable if asked)."""
    return (
        isinstance(a, types.Array)
        and a.ndim == 1
        and a.dtype in _WORD_TYPES
        and (a.mutable or not writable)
    )


def _is_int(t: Any) -> bool:
    return isinstance(t, types.Integer)


def _element_pointer(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    """LLVM pointer to ``a[i]`` for the first two arguments of an intrinsic."""
    arrty, idxty = sig.args[0], sig.args[1]
    ary = context.make_array(arrty)(context, builder, args[0])
    idx = context.cast(builder, args[1], idxty, types.intp)
    return _get_item_pointer(
        context, builder, arrty, ary, [idx], wraparound=False, boundscheck=False
    )


def _align(arrty: Any) -> int:
    return int(arrty.dtype.bitwidth // 8)


def _value(context: Any, builder: Any, sig: Any, args: Any, k: int) -> Any:
    """Argument ``k`` cast exactly to the array's element type."""
    return context.cast(builder, args[k], sig.args[k], sig.args[0].dtype)


def _load_codegen(ordering: str) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, sig, args)
        return builder.load_atomic(ptr, ordering, _align(sig.args[0]))

    return codegen


def _store_codegen(ordering: str) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, sig, args)
        val = _value(context, builder, sig, args, 2)
        builder.store_atomic(val, ptr, ordering, _align(sig.args[0]))
        return context.get_dummy_value()

    return codegen


def _rmw_codegen(op: str) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, sig, args)
        val = _value(context, builder, sig, args, 2)
        return builder.atomic_rmw(op, ptr, val, "seq_cst")

    return codegen


def _fence_codegen(ordering: str, scope: str | None = None) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        builder.fence(ordering, scope)
        return context.get_dummy_value()

    return codegen


def _load_sig(a: Any, i: Any) -> Any:
    if _is_word_array(a, writable=False) and _is_int(i):
        return a.dtype(a, i)
    return None


def _store_sig(a: Any, i: Any, v: Any) -> Any:
    if _is_word_array(a, writable=True) and _is_int(i) and _is_int(v):
        return types.void(a, i, v)
    return None


def _rmw_sig(a: Any, i: Any, v: Any) -> Any:
    if _is_word_array(a, writable=True) and _is_int(i) and _is_int(v):
        return a.dtype(a, i, v)
    return None


# --------------------------------------------------------------------------
# Loads
# --------------------------------------------------------------------------


@int_intrinsic
def load_acquire(typingctx: Any, a: Any, i: Any) -> Any:
    """Load ``a[i]`` with acquire ordering; returns the element.

    **Memory ordering**: acquire. No load or store that follows in program
    order can be performed before this load, so everything the thread that
    published the value wrote before its release store (or release fence) is
    visible afterwards. Use it to read a sequence, cursor or flag that guards
    other data. x86-64: a plain ``mov``; the ordering only restrains the
    compiler.

    Works on read-only views. No status codes (cannot fail).
    """
    sig = _load_sig(a, i)
    return None if sig is None else (sig, _load_codegen("acquire"))


@int_intrinsic
def load_relaxed(typingctx: Any, a: Any, i: Any) -> Any:
    """Load ``a[i]`` atomically with no ordering (LLVM ``monotonic``); returns it.

    **Memory ordering**: relaxed. The load is indivisible (never a mix of two
    stores) and is not hoisted out of loops or merged with other loads, but it
    orders nothing else. Use it for payload words whose consistency is
    validated separately (seqlock) and for a re-check that an acquire fence
    already orders.

    Works on read-only views. No status codes.
    """
    sig = _load_sig(a, i)
    return None if sig is None else (sig, _load_codegen("monotonic"))


@int_intrinsic
def load_seq_cst(typingctx: Any, a: Any, i: Any) -> Any:
    """Load ``a[i]`` with sequentially consistent ordering; returns it.

    **Memory ordering**: seq_cst. An acquire load that also takes part in the
    single total order of all seq_cst operations: it cannot be reordered
    before an earlier seq_cst store or read-modify-write of this thread. This
    is what the store-then-load (Dekker) half of a waiter count handshake
    needs (:func:`arrowshm.kernels.futex.eventcount_notify`). x86-64: a plain
    ``mov`` (the preceding seq_cst store is the ``xchg``).

    Works on read-only views. No status codes.
    """
    sig = _load_sig(a, i)
    return None if sig is None else (sig, _load_codegen("seq_cst"))


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


@void_intrinsic
def store_release(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Store ``v`` (cast to the element type) into ``a[i]`` with release ordering.

    **Memory ordering**: release. No load or store that precedes it in program
    order can be performed after it, so a thread that acquire-loads the stored
    value sees everything written before. Use it to publish a sequence,
    cursor or flag after writing the data it guards. x86-64: a plain ``mov``.

    Requires a writable view. No status codes.
    """
    sig = _store_sig(a, i, v)
    return None if sig is None else (sig, _store_codegen("release"))


@void_intrinsic
def store_relaxed(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Store ``v`` into ``a[i]`` atomically with no ordering (LLVM ``monotonic``).

    **Memory ordering**: relaxed. Indivisible and never elided or merged, but
    it orders nothing: publish with a later release store or after a release
    fence. Use it for payload words.

    Requires a writable view. No status codes.
    """
    sig = _store_sig(a, i, v)
    return None if sig is None else (sig, _store_codegen("monotonic"))


@void_intrinsic
def store_seq_cst(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Store ``v`` into ``a[i]`` with sequentially consistent ordering.

    **Memory ordering**: seq_cst. A release store that is also in the single
    total order of seq_cst operations, so a later seq_cst load of another word
    by this thread cannot be performed before it (store-load order, which
    release alone does not give). x86-64: ``xchg`` (implicitly locked).

    Requires a writable view. No status codes.
    """
    sig = _store_sig(a, i, v)
    return None if sig is None else (sig, _store_codegen("seq_cst"))


# --------------------------------------------------------------------------
# Read-modify-write
# --------------------------------------------------------------------------


@int_intrinsic
def cas(typingctx: Any, a: Any, i: Any, expected: Any, desired: Any) -> Any:
    """Compare-and-swap ``a[i]``: if it equals ``expected`` store ``desired``.

    Returns the value ``a[i]`` held before the operation (the "old" value);
    the swap happened if and only if ``old == expected`` (compare after
    casting ``expected`` to the element type, e.g. with ``np.uint64``).

    **Memory ordering**: seq_cst on success and on failure (LLVM ``cmpxchg``
    seq_cst/seq_cst). A successful CAS both acquires what the previous owner
    released and releases this thread's earlier writes; a failed one is still
    an acquire load of the current value. x86-64: ``lock cmpxchg``.

    Requires a writable view. No status codes (the old value is the result).
    """
    if not (
        _is_word_array(a, writable=True) and _is_int(i) and _is_int(expected) and _is_int(desired)
    ):
        return None
    sig = a.dtype(a, i, expected, desired)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, sig, args)
        cmp = _value(context, builder, sig, args, 2)
        new = _value(context, builder, sig, args, 3)
        pair = builder.cmpxchg(ptr, cmp, new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen


@int_intrinsic
def fetch_add(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Atomically add ``v`` to ``a[i]`` (wrapping modulo 2**bits); return the old value.

    **Memory ordering**: seq_cst read-modify-write (acquire + release, and in
    the total order of seq_cst operations). x86-64: ``lock xadd``.

    Requires a writable view. No status codes.
    """
    sig = _rmw_sig(a, i, v)
    return None if sig is None else (sig, _rmw_codegen("add"))


@int_intrinsic
def fetch_sub(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Atomically subtract ``v`` from ``a[i]`` (wrapping); return the old value.

    **Memory ordering**: seq_cst read-modify-write, as :func:`fetch_add`.
    x86-64: ``lock xadd`` of the negated value (or ``lock sub`` when the
    result is unused).

    Requires a writable view. No status codes.
    """
    sig = _rmw_sig(a, i, v)
    return None if sig is None else (sig, _rmw_codegen("sub"))


@int_intrinsic
def exchange(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
    """Atomically store ``v`` into ``a[i]`` and return the previous value.

    **Memory ordering**: seq_cst read-modify-write. x86-64: ``xchg``.

    Requires a writable view. No status codes.
    """
    sig = _rmw_sig(a, i, v)
    return None if sig is None else (sig, _rmw_codegen("xchg"))


# --------------------------------------------------------------------------
# Fences and CPU hints
# --------------------------------------------------------------------------


@void_intrinsic
def fence_acquire(typingctx: Any) -> Any:
    """Acquire fence.

    **Memory ordering**: loads before the fence are ordered before every load
    and store after it. Pairs a *relaxed* load with the acquire semantics it
    needs after the fact (seqlock reader: relaxed payload loads, then this
    fence, then the re-check of the sequence). x86-64: no instruction; it only
    stops the compiler from moving later accesses up.

    No status codes.
    """
    return types.void(), _fence_codegen("acquire")


@void_intrinsic
def fence_release(typingctx: Any) -> Any:
    """Release fence.

    **Memory ordering**: every load and store before the fence is ordered
    before every store after it. Seqlock writer: the odd sequence store, then
    this fence, then relaxed payload stores, so no payload store becomes
    visible while readers can still see the old even sequence. x86-64: no
    instruction (stores are not reordered with older stores on x86).

    No status codes.
    """
    return types.void(), _fence_codegen("release")


@void_intrinsic
def fence_seq_cst(typingctx: Any) -> Any:
    """Sequentially consistent (full) fence.

    **Memory ordering**: orders every earlier load and store before every later
    one, including store-then-load, and takes part in the total order of
    seq_cst operations. x86-64: ``lock or`` on the stack (or ``mfence``).

    No status codes.
    """
    return types.void(), _fence_codegen("seq_cst")


@void_intrinsic
def compiler_barrier(typingctx: Any) -> Any:
    """Compiler-only barrier (LLVM ``fence syncscope("singlethread") seq_cst``).

    **Memory ordering**: none between threads or processes: it emits no
    instruction and only forbids the compiler from moving memory accesses
    across it (like ``asm volatile("" ::: "memory")`` in C).

    No status codes.
    """
    return types.void(), _fence_codegen("seq_cst", "singlethread")


@void_intrinsic
def cpu_pause(typingctx: Any) -> Any:
    """Spin-loop hint: ``pause`` on x86-64 (LLVM ``llvm.x86.sse2.pause``).

    ``pause`` tells the core it is in a spin-wait loop: it frees execution
    resources for the sibling hyper-thread, saves power and avoids the
    memory-order mis-speculation penalty when the awaited line changes. On
    other architectures this is a compiler barrier only (no instruction):
    correct, merely a less polite spin.

    **Memory ordering**: none (it also acts as a compiler barrier, so a spin
    loop around it re-reads memory only through the atomic loads it contains).

    No status codes.
    """

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if _IS_X86_64:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = _get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        builder.fence("seq_cst", "singlethread")
        return context.get_dummy_value()

    return types.void(), codegen


# --------------------------------------------------------------------------
# Python-callable wrappers
# --------------------------------------------------------------------------

# Compiled eagerly for these types only (see _jit.kernel_with_signatures):
# 1-D C-contiguous uint64/uint32 arrays, an int64 index, and values of the
# element type. Python ints in [0, 2**64) convert to uint64; a negative int
# raises OverflowError; for uint32 words larger values are truncated (cast).
_A64 = types.Array(types.uint64, 1, "C")
_A32 = types.Array(types.uint32, 1, "C")
_A64_RO = types.Array(types.uint64, 1, "C", readonly=True)
_A32_RO = types.Array(types.uint32, 1, "C", readonly=True)
_I = types.int64
_U64, _U32 = types.uint64, types.uint32

_LOAD_SIGS = [_U64(_A64, _I), _U32(_A32, _I), _U64(_A64_RO, _I), _U32(_A32_RO, _I)]
_STORE_SIGS = [types.void(_A64, _I, _U64), types.void(_A32, _I, _U32)]
_RMW_SIGS = [_U64(_A64, _I, _U64), _U32(_A32, _I, _U32)]
_CAS_SIGS = [_U64(_A64, _I, _U64, _U64), _U32(_A32, _I, _U32, _U32)]


@kernel_with_signatures(_LOAD_SIGS)
def atomic_load(a: WordArray, i: int) -> int:
    """Acquire-load ``a[i]`` from Python; returns the value as an ``int``.

    **Memory ordering**: acquire (see :func:`load_acquire`).

    No status codes.
    """
    return load_acquire(a, i)


@kernel_with_signatures(_STORE_SIGS)
def atomic_store(a: WordArray, i: int, v: Word) -> None:
    """Release-store ``v`` into ``a[i]`` from Python (``v`` cast to the element type).

    **Memory ordering**: release (see :func:`store_release`).

    No status codes.
    """
    store_release(a, i, v)


@kernel_with_signatures(_CAS_SIGS)
def atomic_cas(a: WordArray, i: int, expected: Word, desired: Word) -> int:
    """Compare-and-swap ``a[i]`` from Python; returns the old value.

    The swap happened iff the result equals ``expected`` (modulo the element
    width).

    **Memory ordering**: seq_cst on success and failure (see :func:`cas`).

    No status codes.
    """
    return cas(a, i, expected, desired)


@kernel_with_signatures(_RMW_SIGS)
def atomic_fetch_add(a: WordArray, i: int, v: Word) -> int:
    """Atomically add ``v`` to ``a[i]`` (wrapping) from Python; returns the old value.

    **Memory ordering**: seq_cst read-modify-write (see :func:`fetch_add`).

    No status codes.
    """
    return fetch_add(a, i, v)


@kernel_with_signatures(_RMW_SIGS)
def atomic_fetch_sub(a: WordArray, i: int, v: Word) -> int:
    """Atomically subtract ``v`` from ``a[i]`` (wrapping); returns the old value.

    **Memory ordering**: seq_cst read-modify-write (see :func:`fetch_sub`).

    No status codes.
    """
    return fetch_sub(a, i, v)


@kernel_with_signatures(_RMW_SIGS)
def atomic_exchange(a: WordArray, i: int, v: Word) -> int:
    """Atomically replace ``a[i]`` by ``v`` from Python; returns the old value.

    **Memory ordering**: seq_cst read-modify-write (see :func:`exchange`).

    No status codes.
    """
    return exchange(a, i, v)
