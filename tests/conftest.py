"""Every test runs in its own namespace and fails if it leaks a segment.

At teardown every live dataset and stream of the namespace is deleted through
the public API; any data segment still in /dev/shm after that is referenced by
nothing — a leak (a crash test must reclaim its dead writers' leftovers with
``arrowshm.gc()`` itself; the fixture never runs gc, so it cannot hide a leak).
"""

from __future__ import annotations

import gc as _pygc
import os
import pwd
import shutil
import subprocess
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


@pytest.fixture(scope="session")
def other_user() -> Iterator[tuple[int, int]]:
    """(uid, gid) of a throwaway local user, made with ``useradd`` for this session
    and removed with ``userdel`` after it (tests of what another user cannot do).
    Skips the test when this is not root or ``useradd`` is missing."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to make a second user")
    name = f"ashtest{os.getpid()}"[:31]
    r = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, text=True)
