"""Corrupted registries and segments under AddressSanitizer (slow step): libarrowshm
answers every corruption with a status code, never a crash, an out-of-bounds access
or a hang (tests/clib/fuzz.c does the corrupting)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm.testing import namespace_objects

from .conftest import build, c_compiler

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

_SAN = ("-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
        "-fno-sanitize-recover=undefined")


def _asan_available() -> bool:
    cc = c_compiler()
    if cc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        r = subprocess.run([cc, *_SAN, src, "-o", os.path.join(tmp, "t")], capture_output=True)
        return r.returncode == 0


def test_corruption_fuzz_under_address_sanitizer(namespace: str) -> None:
    if not _asan_available():
        pytest.skip("the C compiler cannot build with -fsanitize=address,undefined")
    drivers = build(_SAN, "asan", cpp=False)
    for v in range(1, 4):
        rows = v * 5000
        arrowshm.put("f", pa.table({"a": np.arange(rows), "s": [str(i) for i in range(rows)]}),
                     retain=3)
    arrowshm.put("g", pa.table({"b": [1.5, 2.5]}))
    copy_ns = f"fz{os.getpid() % 1000000}"
    where = tempfile.mkdtemp(prefix="arrowshm-fuzz-", dir="/dev/shm")
    marker = f"/dev/shm/ash-{copy_ns}-reg.at"
    try:
        for obj in namespace_objects(namespace):  # copies under the other namespace's names
            suffix = obj.rsplit("-", 1)[1]
            shutil.copyfile("/dev/shm" + obj, f"{where}/ash-{copy_ns}-{suffix}")
            os.chmod(f"{where}/ash-{copy_ns}-{suffix}", 0o600)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"ARROWSHM_DIR={os.path.realpath(where)}\n".encode())
        os.close(fd)
        env = {**os.environ, "ARROWSHM_STALL_TIMEOUT_S": "0.005",
               "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1",
               "UBSAN_OPTIONS": "print_stacktrace=1"}
        for seed in (1, 2, 3):
            r = subprocess.run([str(drivers.dir / "fuzz"), where, copy_ns, "f", "1500",
                                str(seed)], capture_output=True, text=True, timeout=600, env=env)
            assert r.returncode == 0, r.stderr[-4000:]
            assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr
            assert "ASH_OK" in r.stdout, r.stdout  # some iterations still read a version
            assert "ASH_ECORRUPT" in r.stdout, r.stdout
    finally:
        shutil.rmtree(where, ignore_errors=True)
        if os.path.exists(marker):
            os.unlink(marker)
