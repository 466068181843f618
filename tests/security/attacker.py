"""A throwaway second local user and processes run as it: the attacker of the tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def throwaway_user(prefix: str = "ashatk") -> Iterator[pwd.struct_passwd]:
    """A new local user (``useradd``), removed afterwards with whatever it left in
    /dev/shm. Skips the test when users cannot be created (not root, no useradd)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a second user")
    name = f"{prefix}{os.getpid() % 100000}"
    r = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", name],
                       capture_output=True, text=True)
    if r.returncode != 0 and "already exists" not in r.stderr:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        for entry in os.scandir("/dev/shm"):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == pw.pw_uid:
                    os.unlink(entry.path)
        subprocess.run(["userdel", name], capture_output=True)


_PRELUDE = """
import os, sys
import numpy as np, pyarrow as pa
import arrowshm
from arrowshm.testing import isolated_namespace
with isolated_namespace():  # every kernel compiled (or loaded from the cache) as root
    arrowshm.put("w", pa.table({{"a": [1]}})); arrowshm.get("w")
    with arrowshm.StreamWriter("ws", pa.schema([("a", pa.int64())]), capacity_bytes=4096) as w:
        w.write(pa.record_batch([pa.array([1])], names=["a"]))
        with arrowshm.StreamReader("ws") as r:
            b = r.read(timeout=5); del b
    arrowshm.delete("w"); arrowshm.delete("ws"); arrowshm.gc()
os.setgroups([]); os.setgid({gid}); os.setuid({uid})  # from here on: the attacker
assert os.geteuid() == {uid}
"""


def run_as(user: pwd.struct_passwd, code: str, *, env: dict[str, str] | None = None,
           check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Python *code* with *user*'s credentials. The child starts as root and
    imports what it needs first (this interpreter lives under /root, which the user
    cannot read), then drops to the user for good before running *code*."""
    prelude = _PRELUDE.format(uid=user.pw_uid, gid=user.pw_gid)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          env=full_env, cwd="/tmp", capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"attacker process failed ({proc.returncode}):\n{proc.stderr}")
    return proc
