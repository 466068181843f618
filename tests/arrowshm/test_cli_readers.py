"""The operator's view on the command line: readers of each version (``ls``, ``info``,
``gc``), the namespace's memory line and spares (``ls``, ``gc --spares``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import arrowshm
from tests.arrowshm.test_cli import cli
from tests.helpers import make_table

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = """
import sys, time
import arrowshm
t = arrowshm.get(sys.argv[1], version=int(sys.argv[2]))
print("holding", flush=True)
time.sleep(600)
"""


def _holder(name: str, version: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_HOLDER), name,
                             str(version)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_ls_and_info_show_who_reads_which_version_and_gc_unpins_the_dead() -> None:
    arrowshm.put("r", make_table(10), retain=2)
    arrowshm.put("r", make_table(11), retain=2)
    holders = [_holder("r", 1), _holder("r", 2)]
    try:
        out = cli("ls")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["NAME", "KIND", "VERSION", "ROWS", "SIZE", "AGE",
                                    "READERS", "DETAIL"]
        assert lines[1].split()[:4] == ["r", "dataset", "2", "11"]
        assert lines[1].split()[-1] == "2"  # READERS (DETAIL is empty)
        assert lines[-1].startswith("memory: ") and "spare" in lines[-1]
        assert json.loads(cli("ls", "--json").stdout)[0]["readers"] == "2"

        out = cli("info", "r")
        assert out.returncode == 0, out.stderr
        assert "readers:   2 " in out.stdout
        rows = {int(line.split()[1]): line.split() for line in out.stdout.splitlines()
                if line.startswith("  ") and line.split()[0].isdigit()}
        assert rows[holders[0].pid][0] == "1" and rows[holders[1].pid][0] == "2"
        assert rows[holders[0].pid][2].startswith("python") and rows[holders[0].pid][-1] == "yes"
        assert out.stdout.splitlines()[-1].startswith("memory: ")

        os.kill(holders[0].pid, signal.SIGKILL)
        holders[0].wait(timeout=30)
        out = cli("info", "r")
        dead = [line.split() for line in out.stdout.splitlines()
                if line.split()[1:2] == [str(holders[0].pid)]]
        assert dead == [["1", str(holders[0].pid), "?", dead[0][3], "ago", "DEAD"]]
        assert "readers:   2 (1 dead)" in out.stdout
        out = cli("gc")
        assert out.returncode == 0, out.stderr
        assert f"unpinned r@1(pid {holders[0].pid})" in out.stdout
        assert "1 dead pin(s) released" in out.stdout
        assert arrowshm.info("r").readers_of(1) == ()
    finally:
        for p in holders:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    arrowshm.gc()


def test_gc_spares_frees_the_spares_that_a_plain_gc_keeps() -> None:
    arrowshm.put("s", make_table(5000))
    arrowshm.delete("s")  # its segment becomes a spare of the namespace
    assert arrowshm.usage().spares == 1
    out = cli("gc")
    assert out.returncode == 0, out.stderr
    assert "spares kept: 1," in out.stdout and "gc --spares" in out.stdout
    assert arrowshm.usage().spares == 1
    out = cli("ls")
    assert "is empty" in out.stdout and "1 spare " in out.stdout
    out = cli("gc", "--spares")
    assert out.returncode == 0, out.stderr
    assert "and 1 spare(s)" in out.stdout and "spares kept: 0, 0 B" in out.stdout
    assert arrowshm.usage().spares == 0
