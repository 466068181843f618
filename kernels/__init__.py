"""Synchronization kernels on shared-memory words (numba only).

This is the lowest layer of arrowshm. It knows nothing of Arrow, segments or
Python objects: every kernel takes 1-D C-contiguous numpy ``uint64`` views of
shared memory (``uint32`` for futex words) plus integers, and returns an
integer: a value, a sequence number, or a negative status code (errno-style;
kernels never raise). Higher layers turn codes into exceptions.

Modules
-------
``atomics``   LLVM atomic loads, stores, CAS, fetch-add, fences and ``pause``
              as numba intrinsics (``@njit`` code only), plus Python-callable
              ``atomic_*`` wrappers for pure-Python callers.
``futex``     shared futex wait/wake and ``CLOCK_MONOTONIC`` through inline
              ``syscall`` (cacheable, no ctypes), and an event count: sleep
              until a 64-bit value exceeds a threshold, wake only if someone
              sleeps.
``seqlock``   single-writer, many-reader records that a reader never sees
              torn and that survive a writer killed mid-write.
``_cache``    a numba cache locator that invalidates every cached kernel
              when any file of this package changes.

Conventions
-----------
* Indices are unchecked inside intrinsics: validate offsets, lengths and
  alignment (8 bytes for ``uint64``, 4 for ``uint32``) in Python when a
  layout is opened. Kernels that take a ``base`` and a length check that the
  record fits and return -22 (``EINVAL``) otherwise.
* Every kernel is ``@njit(nogil=True, cache=True)``: it may spin or sleep
  without holding the GIL, and a new process loads it from the cache.
* Every wait is bounded (see ``futex.MAX_TIMEOUT_NS``).
* Every docstring states the memory ordering of each shared access.

Importing this package loads no numba and compiles nothing: the names below
are resolved on first access (module ``__getattr__``) from ``atomics``,
``futex`` and ``seqlock``, and ``status`` is plain integers, so a caller that
needs only the status table (``arrowshm._errors``, the command line) does not
pay for numba. The cache locator is registered by ``_jit`` — which every
kernel module imports before its first ``@njit`` — because numba binds a
function to its cache locator when ``@njit`` runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    **dict.fromkeys((
        "atomic_cas", "atomic_exchange", "atomic_fetch_add", "atomic_fetch_sub",
        "atomic_load", "atomic_store", "cas", "compiler_barrier", "cpu_pause", "exchange",
        "fence_acquire", "fence_release", "fence_seq_cst", "fetch_add", "fetch_sub",
        "load_acquire", "load_relaxed", "load_seq_cst", "store_relaxed", "store_release",
        "store_seq_cst"), "atomics"),
    **dict.fromkeys((
        "EAGAIN", "EINTR", "ETIMEDOUT", "MAX_TIMEOUT_NS", "WAIT_SLICE_NS",
        "eventcount_notify", "futex_wait", "futex_wake", "monotonic_ns",
        "wait_until_greater"), "futex"),
    **dict.fromkeys((
        "SEQLOCK_EBUSY", "SEQLOCK_EINVAL", "SEQLOCK_EOWNERDEAD", "SEQLOCK_HEADER_WORDS",
        "seqlock_read", "seqlock_read_seq", "seqlock_recover", "seqlock_try_read",
        "seqlock_words", "seqlock_write"), "seqlock"),
}  # fmt: skip
"""Each re-exported name -> the kernel module that defines it."""


def __getattr__(name: str) -> Any:
    """Resolve a re-exported kernel on first access (imports its module, hence numba)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "EAGAIN",
    "EINTR",
    "ETIMEDOUT",
    "MAX_TIMEOUT_NS",
    "SEQLOCK_EBUSY",
    "SEQLOCK_EINVAL",
    "SEQLOCK_EOWNERDEAD",
    "SEQLOCK_HEADER_WORDS",
    "WAIT_SLICE_NS",
    "atomic_cas",
    "atomic_exchange",
    "atomic_fetch_add",
    "atomic_fetch_sub",
    "atomic_load",
    "atomic_store",
    "cas",
    "compiler_barrier",
    "cpu_pause",
    "eventcount_notify",
    "exchange",
    "fence_acquire",
    "fence_release",
    "fence_seq_cst",
    "fetch_add",
    "fetch_sub",
    "futex_wait",
    "futex_wake",
    "load_acquire",
    "load_relaxed",
    "load_seq_cst",
    "monotonic_ns",
    "seqlock_read",
    "seqlock_read_seq",
    "seqlock_recover",
    "seqlock_try_read",
    "seqlock_words",
    "seqlock_write",
    "store_relaxed",
    "store_release",
    "store_seq_cst",
    "wait_until_greater",
]
