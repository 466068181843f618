"""The ``arrowshm`` command, run as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import arrowshm
from tests.helpers import make_table


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("arrowshm") or ""
    cmd = [exe, *args] if exe else [sys.executable, "-m", "arrowshm._cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def test_ls_info_rm_gc_round_trip() -> None:
    out = cli("ls")
    assert out.returncode == 0 and "is empty" in out.stdout
    arrowshm.put("sales/2026", make_table(1234), retain=2)
    arrowshm.put("sales/2026", make_table(1235), retain=2)
    out = cli("ls")
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "KIND", "VERSION", "ROWS", "SIZE", "AGE"]
    assert row.split()[:4] == ["sales/2026", "dataset", "2", "1,235"]
    out = cli("info", "sales/2026")
    assert out.returncode == 0
    assert "version:   2 (retained: 2, 1)" in out.stdout
    assert "label: string" in out.stdout and "rows:      1,235" in out.stdout
    out = cli("gc")
    assert out.returncode == 0 and "reclaimed 0 segment(s)" in out.stdout
    out = cli("rm", "sales/2026")
    assert out.returncode == 0 and "removed sales/2026" in out.stdout
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.info("sales/2026")


@pytest.mark.parametrize("args", [("info", "missing"), ("rm", "missing"), ("info", "bad name")])
def test_errors_exit_non_zero_with_one_line(args: tuple[str, ...]) -> None:
    out = cli(*args)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arrowshm: error: ")


def test_ls_json_is_machine_readable() -> None:
    import json

    arrowshm.put("j", make_table(3))
    rows = json.loads(cli("ls", "--json").stdout)
    assert rows[0]["name"] == "j" and rows[0]["version"] == 1


@pytest.mark.timeout(300)
def test_demo_reads_zero_copy_in_another_process() -> None:
    out = cli("demo", "--size-mb", "20", timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Arrow buffers live in shared memory" in out.stdout
    assert "checksum matches" in out.stdout
    import re

    m = re.search(r"(\d+)/(\d+) Arrow buffers live in shared memory", out.stdout)
    assert m is not None and m.group(1) == m.group(2) and int(m.group(2)) >= 4
    # the second producer is a fresh process whose first put lands in the reserve
    assert re.search(r"fresh producer \(pid \d+\): its first put, of 4 KB, took .* ms .*; "
                     r"then another new name, .* — warm: it landed in the reserve",
                     out.stdout), out.stdout
    assert "cleanup: deleted both datasets and freed" in out.stdout


def test_bench_runs_the_benchmark_command_with_its_arguments() -> None:
    out = cli("bench", "--help")  # forwarded to `python -m bench`, not parsed by arrowshm
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m bench")
    assert "--quick" in out.stdout and "--peers" in out.stdout
    out = cli("bench", "--no-such-option")
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr


def test_listing_a_namespace_nobody_used_creates_nothing(namespace: str) -> None:
    from arrowshm.testing import namespace_objects

    out = cli("ls")
    assert out.returncode == 0, out.stderr
    assert f"namespace {namespace!r} is empty" in out.stdout
    assert len(arrowshm.list_datasets()) == 0 and arrowshm.list_streams() == []
    usage = arrowshm.usage()
    assert (usage.bytes_used, usage.spares, usage.quota) == (0, 0, None)
    assert namespace_objects(namespace) == []  # no registry was made by asking
    arrowshm.put("made", make_table(10))
    assert [d.name for d in arrowshm.list_datasets()] == ["made"]
    assert arrowshm.usage().bytes_used > 0
    arrowshm.delete("made")
