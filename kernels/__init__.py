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

The cache locator is registered here, before any kernel module is imported,
because numba binds a function to its cache locator when ``@njit`` runs.
"""

from ._cache import install_cache_locator

install_cache_locator()

from .atomics import (  # noqa: E402
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
from .futex import (  # noqa: E402
    EAGAIN,
    EINTR,
    ETIMEDOUT,
    MAX_TIMEOUT_NS,
    WAIT_SLICE_NS,
    eventcount_notify,
    futex_wait,
    futex_wake,
    monotonic_ns,
    wait_until_greater,
)
from .seqlock import (  # noqa: E402
    SEQLOCK_EBUSY,
    SEQLOCK_EINVAL,
    SEQLOCK_EOWNERDEAD,
    SEQLOCK_HEADER_WORDS,
    seqlock_read,
    seqlock_read_seq,
    seqlock_recover,
    seqlock_try_read,
    seqlock_words,
    seqlock_write,
)

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
