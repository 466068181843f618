"""What one process holds for one namespace: its registry mapping and the writable
mappings of segments it published (kept so that reusing them costs no fault).

Every data-plane operation takes a :class:`Context` explicitly; nothing below
the public :class:`arrowshm.Namespace` looks a namespace up from the
environment, so threads working in different namespaces never interfere.
Contexts are made once per namespace per process (:func:`context`) and shared
by every ``Namespace`` object of that name; a forked child starts with none.

A context fixes the namespace's directory (``ARROWSHM_DIR``, default /dev/shm)
when it is made: read and checked once, then handed to the registry, whose
segment locators carry it to every open and create (:mod:`.directory`).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from typing import Protocol

from .._env import env_directory
from .._names import current_namespace, registry_shm_name, validate_namespace
from .directory import (
    NamespaceDirectory,
    check_directory,
    describe,
    marker_name,
    namespace_directory,
)
from .registry import Registry, forget_registry, registry_of
from .segment import Segment, locate, object_stat, path_of

__all__ = [
    "Context",
    "HasName",
    "context",
    "context_of",
    "describe_namespace",
    "drop_context",
    "namespace_dir",
]

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
    directory : str
        Where the namespace's registry and segments are (``ARROWSHM_DIR`` when the
        context was made; /dev/shm by default), canonical.
    registry : Registry
        Mapped on first use.

    Raises
    ------
    InvalidNameError
        When *namespace* is malformed.
    InvalidArgumentError, NotFoundError, AccessDeniedError
        When *directory* (or ``ARROWSHM_DIR``) is not a usable directory (see
        :func:`arrowshm._shm.directory.check_directory`).
    """

    def __init__(self, namespace: str, directory: str | None = None) -> None:
        self.namespace = validate_namespace(namespace)
        self.directory = check_directory(env_directory() if directory is None else directory)
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        # Segments this process published, still mapped writable with their page tables
        # populated, so that making one a spare and rewriting it later costs no
        # faults (remapping 512 MiB costs half a memcpy). Bounded, and pruned one entry
        # per 8 puts: a mapping whose segment another process removed (delete, TTL) would
        # keep its memory alive.
        self._own: collections.OrderedDict[int, Segment] = collections.OrderedDict()
        self._own_puts = 0
        self.dropped = False  # (set by drop_context: background work leaves it alone)

    @property
    def registry(self) -> Registry:
        reg = self._registry
        if reg is None:
            reg = self._registry = registry_of(self.namespace, self.directory)
        return reg

    @property
    def opened_registry(self) -> Registry | None:
        """The registry if this context has mapped it, else None (never opens or
        creates one: for background work, which must not bring back a namespace
        whose objects were just removed)."""
        return None if self.dropped else self._registry

    def exists(self) -> bool:
        """Whether the namespace has been made: its registry is mapped here, or
        something is at its registry's name (in its directory or /dev/shm) or its
        directory marker is. Anything counts, a link or another user's file too, so
        that opening it then says why it is refused; only a namespace nobody made
        is reported as not existing (read-only calls then create nothing)."""
        if self.opened_registry is not None:
            return True
        reg = registry_shm_name(self.namespace)
        names = {locate(self.directory, reg), reg, marker_name(self.namespace)}
        return any(os.path.lexists(path_of(n)) for n in names)

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

    def __repr__(self) -> str:
        return f"<arrowshm context {self.namespace!r} in {self.directory}>"


_contexts: dict[str, Context] = {}
_contexts_lock = threading.Lock()
_on_new: list[Callable[[Context], None]] = []


def on_new_context(fn: Callable[[Context], None]) -> None:
    """Call *fn* with every context made from now on (the housekeeping thread of
    :mod:`arrowshm._shm.mapcache` starts when a process attaches to a namespace)."""
    _on_new.append(fn)


def all_contexts() -> list[Context]:
    """This process's contexts."""
    return list(_contexts.values())


def context(namespace: str) -> Context:
    """This process's context of *namespace* (made on first use).

    Raises
    ------
    InvalidNameError
        When *namespace* is not 1-12 characters of ``a-z0-9``.
    InvalidArgumentError, NotFoundError, AccessDeniedError
        When ``ARROWSHM_DIR`` is not a usable directory.
    """
    ctx = _contexts.get(namespace)
    if ctx is None:
        with _contexts_lock:
            ctx = _contexts.get(namespace)
            if ctx is None:
                ctx = _contexts[namespace] = Context(namespace)
                for fn in _on_new:
                    fn(ctx)
    return ctx


def _forget_all_in_child() -> None:
    # a forked child owns none of its parent's pool or locks: it starts afresh
    global _contexts_lock
    _contexts.clear()
    _contexts_lock = threading.Lock()


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
        ctx = _contexts.pop(namespace, None)
    if ctx is not None:
        ctx.dropped = True
    forget_registry(namespace)


def namespace_dir(namespace: str) -> str:
    """The directory holding *namespace*'s objects, as this process would use it
    (its context's; else where the namespace's /dev/shm marker points; else
    ``ARROWSHM_DIR``). Read only; for ``arrowshm doctor``, listings and tests.
    :func:`describe_namespace` also says whether they agree."""
    ctx = _contexts.get(namespace)
    return ctx.directory if ctx is not None else namespace_directory(namespace)


def describe_namespace(namespace: str) -> NamespaceDirectory:
    """Which directory *namespace* uses, where this process looks for it (its
    context's directory, else ``ARROWSHM_DIR`` read now), whether the two agree
    and whether the directory is usable, with the fix when not: the question
    ``arrowshm doctor`` asks. Read only (no registry is created or mapped).

    Raises
    ------
    InvalidNameError
        When *namespace* is malformed.
    """
    ctx = _contexts.get(namespace)
    return describe(namespace, ctx.directory if ctx is not None else None)
