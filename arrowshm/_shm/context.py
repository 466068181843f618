"""What one process holds for one namespace: its registry mapping, its pool of
reusable segments and the writable mappings of segments it published.

Every data-plane operation takes a :class:`Context` explicitly; nothing below
the public :class:`arrowshm.Namespace` looks a namespace up from the
environment, so threads working in different namespaces never interfere.
Contexts are made once per namespace per process (:func:`context`) and shared
by every ``Namespace`` object of that name; a forked child starts with none
(it owns none of its parent's pool).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import multiprocessing.util
import os
import threading
from typing import Protocol

from .._names import current_namespace, validate_namespace
from .pool import SegmentPool
from .registry import Registry, forget_registry, registry_of
from .segment import Segment, object_stat

__all__ = ["Context", "HasName", "context", "context_of", "drop_context"]

_OWN_MAX = 16


class HasName(Protocol):
    """Anything with a namespace name (an :class:`arrowshm.Namespace`)."""

    @property
    def name(self) -> str: ...


class Context:
    """One namespace, as this process sees it.

    Attributes
    ----------
    namespace : str
    registry : Registry
        Mapped on first use.
    pool : SegmentPool
        Retired segments this process may rewrite for a later put.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_namespace(namespace)
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._pool: SegmentPool | None = None
        # Segments this process published, still mapped writable with their page tables
        # populated, so that retiring one into the pool and rewriting it later costs no
        # faults (remapping 512 MiB costs half a memcpy). Bounded, and pruned one entry
        # per 8 puts: a mapping whose segment another process removed (delete, TTL) would
        # keep its memory alive.
        self._own: collections.OrderedDict[int, Segment] = collections.OrderedDict()
        self._own_puts = 0

    @property
    def registry(self) -> Registry:
        reg = self._registry
        if reg is None:
            reg = self._registry = registry_of(self.namespace)
        return reg

    @property
    def pool(self) -> SegmentPool:
        pool = self._pool
        if pool is None:
            reg = self.registry
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = SegmentPool(reg)
        return pool

    # -- the writer's own mappings ----------------------------------------------------

    def remember_own(self, segment_id: int, seg: Segment) -> None:
        """Keep the mapping of a segment this process just published."""
        with self._lock:
            own = self._own
            own[segment_id] = seg
            own.move_to_end(segment_id)
            oldest_id, oldest = next(iter(own.items()))
            self._own_puts += 1
            # (a stat per put would cost more than the rest of the bookkeeping: every 8th)
            if len(own) > _OWN_MAX or (self._own_puts % 8 == 0
                                       and object_stat(oldest.name) is None):
                del own[oldest_id]

    def take_own(self, segment_id: int) -> Segment | None:
        """The kept mapping of *segment_id*, removed from the set (or None)."""
        with self._lock:
            return self._own.pop(segment_id, None)

    def prune_own(self) -> int:
        """Drop mappings of published segments that no longer exist; returns how many."""
        with self._lock:
            gone = [k for k, seg in self._own.items() if object_stat(seg.name) is None]
            for k in gone:
                del self._own[k]
        return len(gone)

    def drain(self) -> int:
        """Free this process's pooled segments; returns how many."""
        return self._pool.drain() if self._pool is not None else 0

    def __repr__(self) -> str:
        return f"<arrowshm context {self.namespace!r}>"


_contexts: dict[str, Context] = {}
_contexts_lock = threading.Lock()
_pid = os.getpid()


def context(namespace: str) -> Context:
    """This process's context of *namespace* (made on first use).

    Raises
    ------
    InvalidNameError
        When *namespace* is not 1-12 characters of ``a-z0-9``.
    """
    ctx = _contexts.get(namespace)
    if ctx is None:
        with _contexts_lock:
            ctx = _contexts.get(namespace)
            if ctx is None:
                ctx = _contexts[namespace] = Context(namespace)
    return ctx


def _forget_all_in_child() -> None:
    # a forked child owns none of its parent's pool or locks: it starts afresh
    global _contexts_lock, _pid
    _contexts.clear()
    _contexts_lock = threading.Lock()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forget_all_in_child)


def context_of(namespace: str | HasName | None) -> Context:
    """The context a public constructor's ``namespace=`` argument names: a
    :class:`arrowshm.Namespace` (or its name), or None for the namespace in force
    (``ARROWSHM_NAMESPACE``, default ``default``, read now).

    Raises
    ------
    InvalidNameError
        When the namespace is not 1-12 characters of ``a-z0-9``.
    """
    if namespace is None:
        return context(current_namespace())
    return context(namespace if isinstance(namespace, str) else namespace.name)


def drop_context(namespace: str) -> None:
    """Forget this process's context (and registry mapping) of *namespace* without
    freeing anything: its objects are being unlinked wholesale (``arrowshm.testing``)."""
    with _contexts_lock:
        _contexts.pop(namespace, None)
    forget_registry(namespace)


def _drain_all() -> None:
    if os.getpid() != _pid:
        return
    for ctx in list(_contexts.values()):
        with contextlib.suppress(Exception):  # exiting: gc reclaims whatever is left
            ctx.drain()


atexit.register(_drain_all)
# multiprocessing children leave through os._exit, which skips atexit: its own
# exit hook runs registered finalizers
_mp_finalizer = multiprocessing.util.Finalize(None, _drain_all, exitpriority=10)
