"""Helpers for users' own tests: isolated namespaces that leave nothing behind.

>>> from arrowshm.testing import isolated_namespace
>>> with isolated_namespace() as ns:
...     ...  # arrowshm calls here use namespace `ns`; its objects are removed after

A pytest fixture in a ``conftest.py``::

    @pytest.fixture(autouse=True)
    def _arrowshm_ns():
        with isolated_namespace(check_leaks=True) as ns:
            yield ns
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ._datasets.get import clear_cache
from ._errors import ArrowShmError
from ._names import SHM_PREFIX, registry_shm_name, validate_namespace
from ._namespace import Namespace
from ._shm import header
from ._shm import layout as L
from ._shm.context import context, drop_context, namespace_dir
from ._shm.directory import marker_name, remove_marker
from ._shm.segment import SHM_DIR, Segment, list_names, locate, object_stat, unlink

__all__ = [
    "cleanup_namespace",
    "data_objects",
    "delete_all",
    "isolated_namespace",
    "namespace_objects",
    "pooled_objects",
    "unique_namespace",
]


def unique_namespace(prefix: str = "t") -> str:
    """A fresh namespace name (``prefix`` + random base-16 digits, 12 characters)."""
    return validate_namespace((prefix + secrets.token_hex(6))[:12])


def namespace_objects(namespace: str) -> list[str]:
    """Every object of *namespace* currently in its directory (/dev/shm, or where
    ``ARROWSHM_DIR`` placed it), and its /dev/shm marker if it lives elsewhere:
    POSIX names (``/ash-…``) in /dev/shm, absolute paths elsewhere."""
    directory = namespace_dir(namespace)
    names = list_names(f"{SHM_PREFIX}{namespace}-", directory)
    if directory != SHM_DIR and object_stat(marker_name(namespace)) is not None:
        names.append(marker_name(namespace))
    return names


def data_objects(namespace: str) -> list[str]:
    """Objects of *namespace* other than its registry (and its directory marker)."""
    skip = {registry_shm_name(namespace), marker_name(namespace),
            locate(namespace_dir(namespace), registry_shm_name(namespace))}
    return [n for n in namespace_objects(namespace) if n not in skip]


def delete_all(namespace: str) -> list[str]:
    """Delete every live dataset and stream of *namespace* through the public API,
    and free the namespace's spares."""
    registry = locate(namespace_dir(namespace), registry_shm_name(namespace))
    if registry not in namespace_objects(namespace):
        return []
    ns = Namespace(namespace)
    names = [view.name for view in context(namespace).registry.entries()]
    for name in names:
        with suppress(KeyError):
            ns.delete(name)
    ns.gc(spares=True)  # spares, and what killed processes of a test left
    return names


def pooled_objects(namespace: str) -> list[str]:
    """Objects of *namespace* that are spares (retired segments kept for reuse: state
    POOLED)."""
    out = []
    for name in data_objects(namespace):
        try:
            seg = Segment.open(name)
        except ArrowShmError:
            continue
        seen = header.facts(seg)
        if seen is not None and seen.state == L.SEG_POOLED:
            out.append(name)
    return out


def cleanup_namespace(namespace: str) -> list[str]:
    """Unlink every object of *namespace* (registry and directory marker included);
    returns their names."""
    names = namespace_objects(namespace)  # (before the context that knows where goes)
    drop_context(namespace)
    for name in names:
        if name == marker_name(namespace):
            remove_marker(namespace)
        else:
            unlink(name)
    clear_cache()
    return names


class LeakError(AssertionError):
    """Raised by :func:`isolated_namespace` when objects outlive the block."""


@contextmanager
def isolated_namespace(
    namespace: str | None = None, *, check_leaks: bool = False
) -> Iterator[str]:
    """Run a block with ``ARROWSHM_NAMESPACE`` set to a fresh namespace.

    On exit every object of the namespace is unlinked. With *check_leaks*,
    objects other than the registry that are still there when the block ends
    (after ``gc`` has had a chance to reclaim dead processes' leftovers, which
    the block must call itself) raise :class:`LeakError`.

    Raises
    ------
    LeakError
        With *check_leaks*, when data segments remain after the block.
    """
    ns = validate_namespace(namespace) if namespace else unique_namespace()
    saved = os.environ.get("ARROWSHM_NAMESPACE")
    os.environ["ARROWSHM_NAMESPACE"] = ns
    leaked: list[str] = []
    try:
        yield ns
    finally:
        if saved is None:
            os.environ.pop("ARROWSHM_NAMESPACE", None)
        else:
            os.environ["ARROWSHM_NAMESPACE"] = saved
        if check_leaks:
            leaked = data_objects(ns)
        cleanup_namespace(ns)
    if leaked:
        raise LeakError(f"namespace {ns!r} leaked shared-memory objects: {leaked}")
