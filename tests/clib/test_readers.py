"""libarrowshm (C) and arrowshm.hpp (C++) readers against a Python writer: real
processes, real shared memory, real ``kill -9``.

A torn read is FORBIDDEN however rare: every read a C or C++ process reports must
checksum-match a version this process published, and versions never go backwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm import layout as L

from .conftest import Drivers

pytestmark = pytest.mark.timeout(240)


def table_of(version: int, rows: int) -> pa.Table:
    """Column "v" holds the version in every row (the C++ reader checks it)."""
    return pa.table({
        "v": np.full(rows, version, dtype=np.int64),
        "x": np.arange(rows, dtype=np.float64) * version,
        "s": pa.array([f"r{version}-{i % 97}" for i in range(rows)]),
    })


def payload_crc(info: arrowshm.DatasetInfo) -> int:
    """crc32 of the version's Arrow IPC stream as it lies in its segment (only this
    process writes the name, so the current version cannot change under the read)."""
    with open("/dev/shm" + info.segment, "rb") as f:
        head = f.read(L.SEGMENT_HEADER_BYTES)
        off = int.from_bytes(head[64:72], "little")
        n = int.from_bytes(head[72:80], "little")
        f.seek(off)
        return zlib.crc32(f.read(n))


def start(cmd: list[str | Path | int]) -> subprocess.Popen[str]:
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out.splitlines()


def check_reads(lines: list[str], published: dict[int, int]) -> int:
    """Every ``V version crc`` line matches what was published; returns the reads."""
    seen = [line.split() for line in lines if line.startswith("V ")]
    assert seen, lines
    versions = [int(v) for _, v, _ in seen]
    assert versions == sorted(versions), "a version went backwards"
    torn = [(v, c) for _, v, c in seen if published.get(int(v)) != int(c)]
    assert torn == [], f"torn or unknown reads: {torn[:5]}"
    done = lines[-1].split()
    assert done[0] == "done", lines[-3:]
    stats = dict(zip(done[1::2], map(int, done[2::2]), strict=True))
    assert stats["backwards"] == 0
    assert stats.get("torn", 0) == 0
    assert stats.get("outside", 0) == 0, "a C++ buffer lies outside the mapping (a copy)"
    return stats["reads"]


def test_c_and_cpp_readers_see_only_published_versions_while_python_puts(
    namespace: str, drivers: Drivers, cpp_driver: Path
) -> None:
    final = 300
    published = {1: payload_crc(arrowshm.put("t", table_of(1, 500)))}  # (makes the registry)
    readers = [start([drivers.c, "read", namespace, "t", final]),
               start([cpp_driver, "read", namespace, "t", final])]
    for v in range(2, final + 1):
        # sizes vary, so retired segments become spares that later puts of other sizes reuse
        info = arrowshm.put("t", table_of(v, 500 + (v % 5) * 1500))
        assert info.version == v
        published[v] = payload_crc(info)
    c_reads = check_reads(finish(readers[0]), published)
    cpp_reads = check_reads(finish(readers[1]), published)
    assert c_reads >= 1 and cpp_reads >= 1


def _held(proc: subprocess.Popen[str], n: int) -> tuple[list[list[str]], int]:
    assert proc.stdout is not None
    held = [proc.stdout.readline().split() for _ in range(n)]
    pid_line = proc.stdout.readline().split()
    assert pid_line[0] == "pid", (held, pid_line)
    return held, int(pid_line[1])


def _ask(proc: subprocess.Popen[str], n: int) -> list[list[str]]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("check\n")
    proc.stdin.flush()
    return [proc.stdout.readline().split() for _ in range(n)]


@pytest.mark.parametrize("end", ["exit", "sigkill"])
def test_cpp_table_keeps_its_bytes_through_1000_puts_and_spare_churn(
    namespace: str, cpp_driver: Path, end: str
) -> None:
    arrowshm.put("churned", table_of(1, 4000))
    arrowshm.put("static", table_of(1, 3000))
    proc = subprocess.Popen([str(cpp_driver), "hold", namespace, "churned", "static"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held, pid = _held(proc, 2)
        assert [h[1] for h in held] == ["churned", "static"]
        assert all(h[4] == "1" for h in held), "a buffer lies outside the mapping"
        crcs = [h[3] for h in held]
        readers = arrowshm.info("static").readers or ()
        assert pid in [r.pid for r in readers if r.alive], "the C++ pin is not listed"
        for i in range(2, 1002):
            # same sizes as the held version: its segment would be the best fit to recycle
            arrowshm.put("churned", table_of(i, 4000))
            if i % 10 == 0:  # new names, deleted: their segments become spares, reused
                arrowshm.put(f"spare{i}", table_of(i, 4000 + (i % 3) * 1000))
                arrowshm.delete(f"spare{i}")
        assert arrowshm.info("churned").version == 1001
        answers = _ask(proc, 2)
        assert [a[1] for a in answers] == crcs, "a held table's bytes changed"
        assert all(a[2] == "1" for a in answers)
        if end == "exit":
            assert proc.stdin is not None
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            assert proc.stdout is not None and proc.stdout.readline().strip() == "released"
            proc.wait(30)
            assert proc.returncode == 0
            assert pid not in [r.pid for r in arrowshm.info("static").readers or ()]
            report = arrowshm.gc()
            assert not [p for p in report.pins_released if f"pid {pid})" in p]
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            readers = arrowshm.info("static").readers or ()
            assert [r.alive for r in readers if r.pid == pid] == [False]
            report = arrowshm.gc()
            assert f"static@1(pid {pid})" in report.pins_released
            assert pid not in [r.pid for r in arrowshm.info("static").readers or ()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    arrowshm.gc()


def test_c_reader_blocked_in_ash_wait_wakes_on_a_python_put(
    namespace: str, drivers: Drivers
) -> None:
    arrowshm.put("w", table_of(1, 10))
    for name, after in (("w", 1), ("later", 0)):  # a name that exists, one that does not yet
        proc = start([drivers.c, "wait", namespace, name, after, 60_000])
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        time.sleep(0.3)  # (let it reach the futex; a put before that is found all the same)
        assert proc.poll() is None, "ash_wait returned before the put"
        arrowshm.put(name, table_of(after + 1, 10))
        lines = finish(proc, timeout=60)
        assert lines[-1].split()[:3] == ["woke", "0", str(after + 1)], lines


def test_c_reader_get_of_versions_list_and_wrong_kind(namespace: str, drivers: Drivers) -> None:
    for v in (1, 2, 3):
        arrowshm.put("r", table_of(v, 100), retain=2)
    with arrowshm.StreamWriter("st", pa.schema([("a", pa.int64())]), capacity_bytes=1 << 16):
        def run(*args: object) -> str:
            r = subprocess.run([str(drivers.c), *map(str, args)], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r
            return r.stdout

        assert run("get", namespace, "r", 2).startswith("get 0 version 2 rows 100")
        assert run("get", namespace, "r").startswith("get 0 version 3 ")
        assert run("get", namespace, "r", 1).startswith("get -2 ASH_ENOVERSION")
        assert run("get", namespace, "st").startswith("get -3 ASH_EKIND")
        assert run("get", namespace, "nothere").startswith("get -1 ASH_ENOTFOUND")
        assert run("get", namespace, "bad..//name").startswith("get -9 ASH_EINVAL")
        listed = run("list", namespace).splitlines()
        assert listed[0] == "list 2"
        assert sorted(listed[1:]) == ["E r 1 3 100", "E st 2 1 0"]
    arrowshm.delete("st")


def test_a_fork_child_cannot_use_or_release_its_parents_pins(
    namespace: str, drivers: Drivers
) -> None:
    arrowshm.put("f", table_of(1, 1000))
    proc = subprocess.Popen([str(drivers.c), "fork", namespace, "f"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().split() == ["child", "get", "-12", "own", "0"]
        holding = proc.stdout.readline().split()
        assert holding[:2] == ["parent", "holding"]
        readers = arrowshm.info("f").readers or ()
        assert int(holding[2]) in [r.pid for r in readers if r.alive], "the child released it"
        for v in range(2, 50):  # the held segment must not be recycled meanwhile
            arrowshm.put("f", table_of(v, 1000))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["parent", "crc", "same"]
        proc.wait(30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_cpp_exports_through_the_arrow_c_stream_interface_zero_copy(
    namespace: str, cpp_driver: Path
) -> None:
    arrowshm.put("s", table_of(1, 5000))
    r = subprocess.run([str(cpp_driver), "stream", namespace, "s"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r
    assert r.stdout.split() == ["stream", "rows", "5000", "inside", "1"], r.stdout
