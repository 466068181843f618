"""Every test runs in its own namespace and fails if it leaks a segment.

At teardown every live dataset and stream of the namespace is deleted through
the public API; any data segment still in /dev/shm after that is referenced by
nothing — a leak (a crash test must reclaim its dead writers' leftovers with
``arrowshm.gc()`` itself; the fixture never runs gc, so it cannot hide a leak).
"""

from __future__ import annotations

import gc as _pygc
from collections.abc import Iterator

import pytest

from arrowshm._shm.mapcache import flush_releases
from arrowshm.testing import data_objects, delete_all, isolated_namespace


@pytest.fixture(autouse=True)
def namespace() -> Iterator[str]:
    with isolated_namespace() as ns:
        yield ns
        flush_releases()
        _pygc.collect()
        delete_all(ns)
        leaked = data_objects(ns)
        if leaked:
            pytest.fail(f"test leaked shared-memory objects of namespace {ns}: {leaked}")
