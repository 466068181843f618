"""Who reads what: ``info()`` names the processes holding each retained version, and
``gc()`` releases exactly the pins of a reader killed with SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm import header
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment

ROOT = Path(__file__).resolve().parents[2]

# a reader that gets one version, says so, and holds the table until killed
_HOLDER = """
import sys, time
import arrowshm
t = arrowshm.get(sys.argv[1], version=int(sys.argv[2]))
print(t.num_rows, flush=True)
time.sleep(600)
"""


def _start_holder(name: str, version: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_HOLDER), name,
                             str(version)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the reader holds its table from here on
    assert line.strip() == str(version), line
    return proc


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
    arrowshm.gc()  # the pins of the killed holders


def _put_versions(name: str, n: int) -> None:
    for v in range(1, n + 1):
        arrowshm.put(name, pa.table({"x": list(range(v))}), retain=n)


def test_info_names_each_reader_of_each_version_and_gc_releases_a_killed_ones_pins(
    holders: list[subprocess.Popen[str]],
) -> None:
    name = "who/reads"
    _put_versions(name, 3)
    for version in (1, 2, 3):
        holders.append(_start_holder(name, version))
    info = arrowshm.info(name)
    assert info.readers is not None
    by_pid = {r.pid: r for r in info.readers}
    for version, proc in zip((1, 2, 3), holders, strict=True):
        r = by_pid[proc.pid]
        assert (r.version, r.alive) == (version, True)
        assert r.command is not None and r.command.startswith("python")
        assert r.since is not None
        assert abs((dt.datetime.now(dt.timezone.utc) - r.since).total_seconds()) < 3600
        assert info.readers_of(version) == (r,)
    assert [r.version for r in info.readers] == sorted((r.version for r in info.readers),
                                                       reverse=True)

    victim = holders[1]  # the reader of version 2
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    after = arrowshm.info(name)
    assert after.readers is not None
    dead = [r for r in after.readers if r.pid == victim.pid]
    assert len(dead) == 1 and dead[0].version == 2
    assert dead[0].alive is False and dead[0].command is None
    assert all(r.alive for r in after.readers if r.pid != victim.pid)

    report = arrowshm.gc()
    assert report.pins_released == [f"{name}@2(pid {victim.pid})"]
    # a freed slot has no start time left over: a reader taking it next never shows a
    # dead predecessor's start (which would get its own live pin cleared)
    reg = registry_of(arrowshm.Namespace().name)
    seg = Segment.open(reg.segment_name(reg.get_entry(name).history()[1]))
    slots = seg.words[L.S_PINS : L.S_PINS + L.PIN_SLOTS * L.PIN_WORDS].reshape(-1, L.PIN_WORDS)
    assert all(int(start) == 0 for pid, start, _, _ in slots if int(pid) == 0)
    final = arrowshm.info(name)
    assert final.readers is not None
    assert {(r.version, r.pid) for r in final.readers} == {
        (1, holders[0].pid), (3, holders[2].pid)}
    assert arrowshm.gc().pins_released == []  # nothing left to release


def test_readers_are_looked_up_by_info_only(holders: list[subprocess.Popen[str]]) -> None:
    name = "who/put"
    put_info = arrowshm.put(name, pa.table({"x": [1, 2]}))
    assert put_info.readers is None  # put, wait and list_datasets do not look them up
    assert all(d.readers is None for d in arrowshm.list_datasets())
    assert arrowshm.info(name).readers == ()
    table = arrowshm.get(name)  # this process pins it too
    mine = arrowshm.info(name).readers
    assert mine is not None and [(r.pid, r.version, r.alive) for r in mine] == [
        (os.getpid(), 1, True)]
    del table


def test_pin_table_skips_torn_slots_and_clears_only_dead_pins() -> None:
    name = "who/slots"
    arrowshm.put(name, pa.table({"x": [1]}))
    table = arrowshm.get(name)
    reg = registry_of(arrowshm.Namespace().name)
    seg = Segment.open(reg.segment_name(reg.get_entry(name).segment_id), writable=True)
    pins, overflow = header.pin_table(seg)
    assert [(p.pid, p.alive) for p in pins] == [(os.getpid(), True)] and not overflow
    assert header.clear_dead_pins(seg) == []  # a live pin stays
    assert [p.pid for p in header.pin_table(seg)[0]] == [os.getpid()]
    del table


def test_the_notebook_view_shows_who_reads_which_version() -> None:
    name = "who/html"
    arrowshm.put(name, pa.table({"<html>": [1, 2, 3]}))
    assert "readers" not in arrowshm.put(name, pa.table({"<html>": [1]}))._repr_html_()
    assert "readers: none" in arrowshm.info(name)._repr_html_()
    table = arrowshm.get(name)
    info = arrowshm.info(name)
    html = info._repr_html_()
    assert "&lt;html&gt;" in html and "<html>" not in html
    assert f"<td style=\"text-align:right\">{os.getpid()}</td>" in html
    assert "readers: 1" in html and ">yes<" in html
    assert ", readers 1;" in repr(info)
    assert info.readers is not None
    assert repr(info.readers[0]).startswith(f"<arrowshm.VersionReader v2 pid {os.getpid()} (")
    del table
