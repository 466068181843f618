"""libarrowshm refuses what it must not use and reports impossible values with clear
status codes, never a crash: another user's registry, an open mode, a link, a
corrupted header or record, an out-of-range length, the wrong directory."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of

from ..helpers import run_python
from ..security.attacker import run_as, throwaway_user
from .conftest import Drivers

pytestmark = pytest.mark.timeout(240)


def run(drivers: Drivers, *args: object, env: dict[str, str] | None = None) -> str:
    r = subprocess.run([str(drivers.c), *map(str, args)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, **(env or {})})
    assert r.returncode in (0, 3), r  # 3: ash_open failed (printed)
    return r.stdout


@contextlib.contextmanager
def poked(path: str, word: int, value: int) -> Iterator[None]:
    """Word *word* of file *path* set to *value* for the block, then restored."""
    mm = np.memmap(path, dtype=np.uint64, mode="r+")
    old = int(mm[word])
    mm[word] = np.uint64(value)
    mm.flush()
    try:
        yield
    finally:
        mm[word] = np.uint64(old)
        mm.flush()
        del mm


def test_another_users_registry_is_refused(drivers: Drivers) -> None:
    with throwaway_user() as user:
        ns = f"atk{os.getpid() % 100000}"
        run_as(user, "arrowshm.put('x', pa.table({'a': [1]}))",
               env={"ARROWSHM_NAMESPACE": ns})
        assert os.stat(f"/dev/shm/ash-{ns}-reg").st_uid == user.pw_uid
        out = run(drivers, "open", ns)
        assert out.startswith("open -4 ASH_EACCES"), out
        assert f"belongs to uid {user.pw_uid}" in out, out


def test_an_open_mode_or_a_link_is_refused(namespace: str, drivers: Drivers) -> None:
    arrowshm.put("t", pa.table({"a": [1, 2]}))
    reg = f"/dev/shm/ash-{namespace}-reg"
    os.chmod(reg, 0o640)
    try:
        out = run(drivers, "open", namespace)
        assert out.startswith("open -4 ASH_EACCES") and "mode 640" in out, out
    finally:
        os.chmod(reg, 0o600)
    other = f"lnk{os.getpid() % 100000}"
    os.symlink(reg, f"/dev/shm/ash-{other}-reg")
    try:
        out = run(drivers, "open", other)
        assert out.startswith("open -4 ASH_EACCES") and "symbolic link" in out, out
    finally:
        os.unlink(f"/dev/shm/ash-{other}-reg")


def test_corrupted_registry_header_gives_clear_codes(namespace: str, drivers: Drivers) -> None:
    arrowshm.put("t", pa.table({"a": [1, 2]}))
    reg = f"/dev/shm/ash-{namespace}-reg"
    cases = [
        (L.H_MAGIC, 0x1234, "open -5 ASH_ECORRUPT"),
        (L.H_FORMAT_VERSION, 3, "open -6 ASH_EFORMAT"),
        (L.H_CAPACITY, 1 << 40, "open -5 ASH_ECORRUPT"),
        (L.H_CAPACITY, 0, "open -5 ASH_ECORRUPT"),
        (L.H_ENTRY_BYTES, 512, "open -5 ASH_ECORRUPT"),
        (L.H_PID_NS, 12345, "open -4 ASH_EACCES"),
        (L.H_BOOT_ID, 7, "open -4 ASH_EACCES"),
    ]
    for word, value, expected in cases:
        with poked(reg, word, value):
            out = run(drivers, "open", namespace)
        assert out.startswith(expected), (word, value, out)
    assert run(drivers, "get", namespace, "t").startswith("get 0 version 1")


def test_corrupted_record_and_segment_give_clear_codes(namespace: str, drivers: Drivers) -> None:
    info = arrowshm.put("t", pa.table({"a": np.arange(1000)}))
    reg = f"/dev/shm/ash-{namespace}-reg"
    seg = "/dev/shm" + info.segment
    slot, _ = registry_of(namespace).lookup("t") or (0, 0)
    rec = registry_of(namespace).ew(slot, L.E_RECORD)
    size = os.stat(seg).st_size
    cases = [
        (reg, rec + L.R_N_HISTORY, 99, "get -5 ASH_ECORRUPT"),
        (reg, rec + L.R_N_HISTORY, 0, "get -5 ASH_ECORRUPT"),
        (reg, rec + L.R_HISTORY, 12345, "get -5 ASH_ECORRUPT"),  # history[0] != segment
        (reg, registry_of(namespace).ew(slot, L.E_KIND), 7, "get -3 ASH_EKIND"),
        (seg, L.S_MAGIC, 0xDEAD, "get -5 ASH_ECORRUPT"),
        (seg, L.S_FORMAT_VERSION, 9, "get -6 ASH_EFORMAT"),
        (seg, L.S_DATA_BYTES, size, "get -5 ASH_ECORRUPT"),  # out-of-range length
        (seg, L.S_DATA_BYTES, (1 << 64) - 1, "get -5 ASH_ECORRUPT"),
        (seg, L.S_DATA_OFFSET, 1 << 62, "get -5 ASH_ECORRUPT"),
        (seg, L.S_DATA_OFFSET, 4097, "get -5 ASH_ECORRUPT"),  # misaligned
        (seg, L.S_DATA_OFFSET, 8, "get -5 ASH_ECORRUPT"),  # inside the header
    ]
    for path, word, value, expected in cases:
        with poked(path, word, value):
            out = run(drivers, "get", namespace, "t")
        assert out.startswith(expected), (path, word, value, out)
        assert "|" in out and len(out.split("|", 1)[1].strip()) > 20, out  # a message
    # a record whose segment holds another version: stale, retried, then EBUSY
    with poked(seg, L.S_VERSION, 77):
        assert run(drivers, "get", namespace, "t").startswith("get -7 ASH_EBUSY")
    # a name too long for its entry: ash_list skips the entry instead of reading past it
    with poked(reg, registry_of(namespace).ew(slot, L.E_NAME_LEN), 5000):
        assert run(drivers, "list", namespace).startswith("list 0")
    assert run(drivers, "get", namespace, "t").startswith("get 0 version 1")


def test_a_truncated_segment_is_refused_not_a_sigbus(namespace: str, drivers: Drivers) -> None:
    info = arrowshm.put("t", pa.table({"a": np.arange(100_000)}))
    seg = "/dev/shm" + info.segment
    size = os.stat(seg).st_size
    os.truncate(seg, 8192)  # (its header says the payload runs far past the end)
    try:
        out = run(drivers, "get", namespace, "t")
        assert out.startswith("get -5 ASH_ECORRUPT"), out
    finally:
        os.truncate(seg, size)


def test_the_namespace_directory_rules_of_the_python_side(
    namespace: str, drivers: Drivers, tmp_path: Path
) -> None:
    pytest.importorskip("arrowshm._shm.directory", reason="ARROWSHM_DIR not in this arrowshm")
    where = tmp_path / "ns"
    where.mkdir(mode=0o700)
    env = {"ARROWSHM_DIR": str(where), "ARROWSHM_NAMESPACE": namespace}
    run_python("import arrowshm, pyarrow as pa; arrowshm.put('d', pa.table({'a': [1, 2, 3]}))",
               env=env)
    try:
        assert run(drivers, "get", namespace, "d", env=env).startswith("get 0 version 1 rows 3")
        out = run(drivers, "get", namespace, "d", env={"ARROWSHM_DIR": ""})
        assert out.startswith("open -14 ASH_EWRONGDIR") and f"ARROWSHM_DIR={where}" in out, out
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        out = run(drivers, "open", namespace, other)
        assert out.startswith("open -14 ASH_EWRONGDIR"), out
        open_dir = tmp_path / "open"
        open_dir.mkdir()
        open_dir.chmod(0o777)
        out = run(drivers, "open", namespace, open_dir)
        assert out.startswith("open -4 ASH_EACCES") and "writable by other users" in out, out
        assert run(drivers, "open", namespace, "relative/dir").startswith("open -9 ASH_EINVAL")
    finally:
        run_python("import arrowshm; from arrowshm.testing import cleanup_namespace\n"
                   "arrowshm.delete('d'); arrowshm.gc(spares=True)\n"
                   f"cleanup_namespace({namespace!r})", env=env)
