"""Spares: retired segments any process of the namespace reuses, bounded, visible,
freed first under pressure, never taken while a reader holds them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import arrowshm
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment
from arrowshm.testing import data_objects, pooled_objects
from tests.helpers import check_stamped, stamped_table

ROOT = os.getcwd()


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _recycled(namespace: str) -> int:
    return registry_of(namespace).stats().recycled


@pytest.mark.timeout(120)
def test_a_new_name_in_another_process_reuses_the_spares_another_left(namespace: str) -> None:
    _run("""
        import arrowshm
        from tests.helpers import stamped_table
        for k in range(3):
            arrowshm.put(f"old{k}", stamped_table(k, 100_000))
        for k in range(3):
            arrowshm.delete(f"old{k}")  # three spares, listed in the registry
    """)
    spares = set(pooled_objects(namespace))
    assert len(spares) == 3 and arrowshm.usage().spares == 3
    before = _recycled(namespace)
    infos = [arrowshm.put(f"new{k}", stamped_table(10 + k, 100_000)) for k in range(3)]
    assert {i.segment for i in infos} == spares  # no new segment: the spares were reused
    assert _recycled(namespace) - before == 3
    assert [check_stamped(arrowshm.get(f"new{k}")) for k in range(3)] == [10, 11, 12]
    assert pooled_objects(namespace) == [] and arrowshm.usage().spares == 0


def test_a_spare_is_not_used_for_a_much_smaller_put(namespace: str) -> None:
    arrowshm.put("big", stamped_table(1, 200_000))
    arrowshm.delete("big")
    spare = pooled_objects(namespace)
    info = arrowshm.put("tiny", stamped_table(2, 10))
    assert info.segment not in spare and pooled_objects(namespace) == spare


@pytest.mark.timeout(120)
def test_the_spare_bound_holds(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    one = L.SEGMENT_HEADER_BYTES + arrowshm.put("probe", stamped_table(0, 20_000)).nbytes
    arrowshm.delete("probe")
    arrowshm.gc(spares=True)
    monkeypatch.setenv("ARROWSHM_SPARE_BYTES", str(3 * one))
    for k in range(8):
        arrowshm.put(f"b{k}", stamped_table(k, 20_000))
    for k in range(8):
        arrowshm.delete(f"b{k}")
        assert arrowshm.usage().spare_bytes <= 3 * one
    assert arrowshm.usage().spares == 3
    assert len(data_objects(namespace)) == 3  # the other five were freed, not kept
    monkeypatch.setenv("ARROWSHM_SPARE_BYTES", "0")  # off: a retired segment is freed
    off = arrowshm.put("off", stamped_table(1, 100_000))  # (no spare is large enough)
    arrowshm.delete("off")
    assert off.segment not in pooled_objects(namespace)
    assert arrowshm.usage().spares == 3


@pytest.mark.timeout(120)
def test_idle_spares_are_freed_on_a_timer_without_any_call(namespace: str) -> None:
    env = {"ARROWSHM_SPARE_IDLE_S": "1"}
    out = _run("""
        import time, arrowshm
        from tests.helpers import stamped_table
        arrowshm.put("t", stamped_table(1, 50_000)); arrowshm.delete("t")
        print(arrowshm.usage().spares, flush=True)
        time.sleep(6)          # no arrowshm call: only the housekeeping thread runs
        print(arrowshm.usage().spares, flush=True)
    """, env=env)
    assert out.split() == ["1", "0"]
    assert data_objects(namespace) == []


@pytest.mark.timeout(120)
def test_spares_are_freed_first_when_a_put_needs_the_quota(namespace: str) -> None:
    arrowshm.put("a", stamped_table(1, 50_000))
    arrowshm.put("b", stamped_table(2, 50_000))
    arrowshm.delete("a")
    arrowshm.delete("b")
    reg = registry_of(namespace)
    assert arrowshm.usage().spares == 2
    big = stamped_table(3, 120_000)  # too big for either spare
    need = 2 * L.SEGMENT_HEADER_BYTES + big.nbytes
    reg.set_quota(need + reg.bytes_used // 4)  # room for the put only without the spares
    try:
        info = arrowshm.put("big", big)
        assert info.segment not in pooled_objects(namespace)
        assert arrowshm.usage().spares < 2  # spares went first
        assert check_stamped(arrowshm.get("big")) == 3
    finally:
        reg.set_quota(None)


@pytest.mark.timeout(120)
def test_a_spare_a_reader_holds_is_never_rewritten(namespace: str) -> None:
    arrowshm.put("held", stamped_table(7, 60_000))
    held = arrowshm.get("held")
    segment = arrowshm.info("held").segment
    arrowshm.delete("held")  # a spare now, but pinned by `held`
    assert pooled_objects(namespace) == [segment]
    for k in range(5):
        info = arrowshm.put(f"n{k}", stamped_table(k, 60_000))
        assert info.segment != segment
    assert check_stamped(held) == 7
    del held
    from arrowshm._shm.mapcache import flush_releases

    flush_releases()
    assert arrowshm.put("after", stamped_table(9, 60_000)).segment == segment


@pytest.mark.timeout(120)
def test_gc_of_another_process_frees_spares_of_a_live_one(namespace: str) -> None:
    arrowshm.put("mine", stamped_table(1, 50_000))
    arrowshm.delete("mine")
    assert arrowshm.usage().spares == 1
    out = _run("""
        import arrowshm
        r = arrowshm.gc(spares=True)
        print(r.spares_freed, r.spares, flush=True)
    """)
    assert out.split() == ["1", "0"]
    assert data_objects(namespace) == []


@pytest.mark.timeout(180)
def test_a_reserve_makes_the_first_put_of_a_new_process_land_in_warm_memory(
    namespace: str,
) -> None:
    arrowshm.reserve(16 << 20, wait=60)
    spares = set(pooled_objects(namespace))
    assert len(spares) >= 4  # 8, 4, 2, 1 MiB
    sizes = sorted(Segment.open(n).size for n in spares)
    assert sizes[-1] >= 8 << 20 and sum(sizes) <= (16 << 20) + 4 * L.PAGE
    out = _run("""
        import arrowshm
        from tests.helpers import stamped_table
        print(arrowshm.put("fresh", stamped_table(1, 100_000)).segment, flush=True)
    """)
    assert out.strip() in spares  # a reserve spare, in another process
    deadline = time.monotonic() + 30
    while len(pooled_objects(namespace)) < len(spares) and time.monotonic() < deadline:
        time.sleep(0.1)  # the reserve refills in the background
    assert len(pooled_objects(namespace)) >= len(spares)
    arrowshm.reserve(0)
    arrowshm.delete("fresh")
    assert arrowshm.gc(spares=True).spares == 0


@pytest.mark.timeout(180)
def test_every_process_spares_a_reserve_it_does_not_keep(namespace: str) -> None:
    # the reserve is recorded in the registry: another process whose bound is smaller
    # than the reserve and whose idle timer is short trims none of its spares
    arrowshm.reserve(16 << 20, wait=60)
    spares = set(pooled_objects(namespace))
    assert len(spares) >= 4
    out = _run("""
        import time, arrowshm
        print(arrowshm.usage().reserve, flush=True)  # (attaches: its housekeeping runs)
        time.sleep(5)                                # five idle periods of its own
        print(arrowshm.usage().spares, flush=True)
    """, env={"ARROWSHM_SPARE_IDLE_S": "1", "ARROWSHM_SPARE_BYTES": str(1 << 20)})
    reserve, kept = out.split()
    assert int(reserve) == 16 << 20
    assert int(kept) >= len(spares) and spares <= set(pooled_objects(namespace))
    arrowshm.reserve(0)
    assert arrowshm.usage().reserve == 0
    assert arrowshm.gc(spares=True).spares == 0


@pytest.mark.timeout(180)
def test_a_killed_reserver_stops_counting_and_a_third_reserver_is_refused(
    namespace: str,
) -> None:
    code = textwrap.dedent("""
        import sys, time, arrowshm
        arrowshm.reserve(2 << 20, wait=60)
        print("ready", flush=True)
        time.sleep(120)
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    holders = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env) for _ in range(2)]
    try:
        for p in holders:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        assert arrowshm.usage().reserve == 4 << 20  # both, seen from a third process
        with pytest.raises(arrowshm.ConflictError, match="already has 2 processes"):
            arrowshm.reserve(8 << 20)
        assert arrowshm.usage().reserve == 4 << 20  # refused: nothing changed
        holders[0].kill()  # kill -9: its reserve stops counting at once
        holders[0].wait(timeout=30)
        assert arrowshm.usage().reserve == 2 << 20
        arrowshm.reserve(8 << 20, wait=60)  # its slot is taken over
        assert arrowshm.usage().reserve == (2 << 20) + (8 << 20)
        arrowshm.reserve(0)
    finally:
        for p in holders:
            p.kill()
            p.wait(timeout=30)
            if p.stdout is not None:
                p.stdout.close()
    assert arrowshm.usage().reserve == 0
    assert arrowshm.gc(spares=True).spares == 0


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("puts", [1000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_a_held_table_survives_other_processes_churning_through_spares(
    namespace: str, puts: int
) -> None:
    """One process holds a table whose segment is a spare; two others put new names
    (delete, put again) through the spares. Every byte of the held table stays
    (1,000 puts by default, 10,000 in the slow step)."""
    arrowshm.put("held", stamped_table(42, 30_000))
    held = arrowshm.get("held")
    arrowshm.delete("held")  # its segment: a spare, pinned by `held`
    churn = textwrap.dedent("""
        import sys, arrowshm
        from tests.helpers import stamped_table, check_stamped
        me, n = sys.argv[1], int(sys.argv[2])
        for k in range(n):
            name = f"{me}/{k}"
            arrowshm.put(name, stamped_table(k % 1000, 30_000))
            assert check_stamped(arrowshm.get(name)) == k % 1000
            arrowshm.delete(name)
        print("done", flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", churn, f"w{i}", str(puts // 2)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=ROOT)) for i in range(2)]
    try:
        while any(p.poll() is None for p in procs):
            assert check_stamped(held) == 42  # every byte, while they churn
            time.sleep(0.05)
        assert all(p.returncode == 0 for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert check_stamped(held) == 42
    assert registry_of(namespace).stats().recycled >= puts // 2  # the spares were used
