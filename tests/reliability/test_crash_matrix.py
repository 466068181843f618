"""Crash matrix: real SIGKILL at randomized moments, then: no torn read, no lost
committed version, no writer stalled beyond the eviction timeout, and after
``gc`` nothing of the namespace left in /dev/shm but live entries.

Writer-killed-during-put lives in tests/stress/test_crash_put.py (12 kills by
default, 200 slow); this file covers the other scenarios of issue #6. Each
scenario prints its counts (``-s`` shows them; docs/RELIABILITY.md has a run's).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import arrowshm
from arrowshm import stream_info
from arrowshm._shm.registry import registry_of
from arrowshm.testing import data_objects
from tests.helpers import check_stamped, spare_objects, stamped_table
from tests.reliability._util import check_seq_batch, ctx, seq_batch
from tests.stress.test_crash_put import _reader_until

STREAM = "crash/stream"
DATASET = "crash/target"  # the name tests.stress.test_crash_put's reader reads


def _live_segment_count(namespace: str) -> int:
    """Segments the live registry entries reference (current + retained versions)."""
    reg = registry_of(namespace)
    n = 0
    for view in reg.entries():
        n += len(view.history()) if view.kind == 1 else 1
    return n


def _unreferenced(namespace: str) -> list[tuple[str, bool, str]]:
    """(name, initialized, description) of every data segment no live entry references."""
    from arrowshm._proc import is_alive
    from arrowshm._shm import layout as L
    from arrowshm._shm.segment import object_stat

    reg = registry_of(namespace)
    referenced = {reg.segment_name(sid) for v in reg.entries()
                  for sid in (v.history() if v.kind == 1 else [v.segment_id])}
    referenced |= set(spare_objects(namespace))  # listed spares: kept, reusable
    out = []
    for name in data_objects(namespace):
        if name in referenced:
            continue
        st = object_stat(name)
        size = st.st_size if st else 0
        w = np.fromfile("/dev/shm" + name, dtype=np.uint64,
                        count=min(size, L.SEGMENT_HEADER_BYTES) // 8)
        if len(w) * 8 < L.SEGMENT_HEADER_BYTES or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
            out.append((name, False, f"{name} uninitialized, {size} bytes"))
            continue
        pid, start = int(w[L.S_CREATOR_PID]), int(w[L.S_CREATOR_START])
        out.append((name, True, f"{name} state={L.state_of(int(w[L.S_STATE]))} creator={pid} "
                    f"alive={is_alive(pid, start)} version={int(w[L.S_VERSION])}"))
    return out


def _assert_gc_leaves_only_live(namespace: str) -> dict[str, int]:
    """One gc, then only live segments may remain: a segment is named only once
    its creator stamped it (Segment.create builds it unnamed), so whatever a
    killed writer left is attributable to a dead process and reclaimed at once,
    with no grace period to wait out."""
    report = arrowshm.gc()
    left = _unreferenced(namespace)
    assert left == [], ([d for *_, d in left], report)
    spares = spare_objects(namespace)
    assert report.spares == len(spares)
    assert len(data_objects(namespace)) == _live_segment_count(namespace) + len(spares), report
    from arrowshm._shm import layout as L
    from arrowshm._shm.segment import object_stat

    counted = int(registry_of(namespace).words[L.H_BYTES_USED])
    actual = sum(st.st_size for n in data_objects(namespace) if (st := object_stat(n)))
    # gc gives back what dead creators reserved; a kill inside one of the few-µs windows
    # documented in Registry.reserve_for_creation may leave the counter high, never low
    assert counted >= actual, (counted, actual)
    return {"gc_reclaimed": len(report.segments), "gc_recovered": len(report.recovered),
            "quota_recovered": report.quota_recovered,
            "bytes_used_counter_minus_actual": counted - actual}


# -- 1. writer killed during a stream write --------------------------------------------------

def _stream_writer_forever(namespace: str, ready: Any, seed: int) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(seed)
    w = arrowshm.StreamWriter(STREAM, seq_batch(0, 1).schema, capacity_bytes=256 << 10,
                              evict_after=0.5, spin_us=0)
    ready.set()
    seq = 0
    while True:
        w.write(seq_batch(seq, rng.randrange(1, 3000)), timeout=60)
        seq += 1


def _stream_writer_kills(namespace: str, kills: int) -> dict[str, int]:
    rng = random.Random(42)
    counts = {"kills": 0, "batches_checked": 0, "writer_death_seen": 0, "corrupt": 0}
    for k in range(kills):
        ready = ctx().Event()
        w = ctx().Process(target=_stream_writer_forever, args=(namespace, ready, k))
        w.start()
        assert ready.wait(60), "writer did not start"
        r = arrowshm.StreamReader(STREAM, spin_us=0)
        expect = -1  # earliest batch still in the ring; contiguous from there on
        n_read = 0
        n_before_kill = rng.randrange(0, 150)
        killed = False
        try:
            while True:
                if not killed and n_read >= n_before_kill:
                    time.sleep(rng.random() * 0.01)
                    os.kill(w.pid or 0, signal.SIGKILL)
                    w.join()
                    killed = True
                try:
                    b = r.read(timeout=30)
                except arrowshm.StreamClosedError:
                    counts["writer_death_seen"] += 1
                    break
                assert b is not None, "a killed writer must not look like a clean close"
                try:
                    seq = check_seq_batch(b)
                    assert expect in (-1, seq), f"lost or reordered batch: {seq} after {expect}"
                except AssertionError:
                    counts["corrupt"] += 1
                    raise
                expect = seq + 1
                n_read += 1
                counts["batches_checked"] += 1
                del b
        finally:
            if not killed:
                os.kill(w.pid or 0, signal.SIGKILL)
                w.join()
            r.close()
        counts["kills"] += 1
    return counts


@pytest.mark.timeout(180)
def test_stream_writer_killed_while_writing(namespace: str) -> None:
    counts = _stream_writer_kills(namespace, kills=10)
    print("stream writer killed:", counts)
    assert counts["writer_death_seen"] == counts["kills"] == 10
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_stream_writer_killed_200_times(namespace: str) -> None:
    counts = _stream_writer_kills(namespace, kills=200)
    print("stream writer killed:", counts)
    assert counts["writer_death_seen"] == counts["kills"] == 200
    print("gc:", _assert_gc_leaves_only_live(namespace))


# -- 2. reader killed while holding batches ----------------------------------------------------

def _holding_reader(namespace: str, ready: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    held = []
    with arrowshm.StreamReader(STREAM, start="latest", spin_us=0) as r:
        ready.set()
        while True:
            b = r.read(timeout=60)
            if b is None:
                break
            check_seq_batch(b)
            held.append(b)  # never released: the ring fills up behind this reader


def _reader_kills(namespace: str, kills: int) -> dict[str, int]:
    rng = random.Random(7)
    counts = {"kills": 0, "writes": 0, "write_timeouts": 0, "evicted": 0}
    evict_after = 0.5
    with arrowshm.StreamWriter(STREAM, seq_batch(0, 1).schema, capacity_bytes=64 << 10,
                               evict_after=evict_after, spin_us=0) as w:
        seq = 0
        for _ in range(kills):
            ready = ctx().Event()
            p = ctx().Process(target=_holding_reader, args=(namespace, ready))
            p.start()
            assert ready.wait(60)
            delay = rng.random() * 0.3
            threading.Timer(delay, os.kill, (p.pid, signal.SIGKILL)).start()
            # writes fill the ring and block on the holding reader until it dies and is
            # evicted; then 4 rings' worth more must go through
            deadline_writes = None
            n = 0
            while deadline_writes is None or n < deadline_writes:
                try:
                    w.write(seq_batch(seq, 500), timeout=15 + delay)  # watchdog: 30x evict_after
                except arrowshm.WaitTimeoutError:
                    counts["write_timeouts"] += 1
                    raise
                seq += 1
                n += 1
                counts["writes"] += 1
                if deadline_writes is None and p.exitcode is not None:
                    deadline_writes = n + 4 * (64 << 10) // 12_000
            p.join()
            assert p.exitcode == -signal.SIGKILL
            counts["kills"] += 1
        counts["evicted"] = stream_info(STREAM).evicted
    return counts


@pytest.mark.timeout(180)
def test_reader_killed_while_holding_batches_never_stalls_the_writer(namespace: str) -> None:
    counts = _reader_kills(namespace, kills=10)
    print("reader killed holding batches:", counts)
    assert counts["write_timeouts"] == 0 and counts["kills"] == 10
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reader_killed_200_times_never_stalls_the_writer(namespace: str) -> None:
    counts = _reader_kills(namespace, kills=200)
    print("reader killed holding batches:", counts)
    assert counts["write_timeouts"] == 0 and counts["kills"] == 200
    print("gc:", _assert_gc_leaves_only_live(namespace))


# -- 2b. processes killed while claiming (and listing) spares -------------------------------

_CLAIM_SIZES = (20_000, 25_000, 30_000)  # close enough that spares fit the next puts


def _claimer(namespace: str, seed: int, ready: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(seed)
    ready.set()
    k = 0
    while True:  # new names only: every put claims a spare or creates; every delete lists
        k += 1
        name = f"claim/{seed}/{k}"
        arrowshm.put(name, stamped_table(k, rng.choice(_CLAIM_SIZES)))
        arrowshm.delete(name)


def _claimer_kills(namespace: str, kills: int) -> dict[str, int]:
    rng = random.Random(7)
    arrowshm.put("claim/held", stamped_table(4242, 30_000))
    held = arrowshm.get("claim/held")
    arrowshm.delete("claim/held")  # a spare, pinned by `held`: never claimable
    recycled0 = registry_of(namespace).stats().recycled
    procs: list[Any] = []
    try:
        procs = [_start_when_ready(_claimer, namespace, 100 + i) for i in range(2)]
        for k in range(kills):
            time.sleep(rng.random() * 0.08)
            i = rng.randrange(2)
            os.kill(procs[i].pid, signal.SIGKILL)
            procs[i].join()
            assert check_stamped(held) == 4242
            procs[i] = _start_when_ready(_claimer, namespace, 200 + k)
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
    assert check_stamped(held) == 4242  # every byte of the pinned spare, after all kills
    recycled = registry_of(namespace).stats().recycled - recycled0
    assert recycled > kills, "the claimers hardly claimed: the scenario did not run"
    del held
    return {"kills": kills, "spares_claimed": recycled}


@pytest.mark.timeout(300)
def test_processes_killed_while_claiming_spares_lose_and_leak_nothing(namespace: str) -> None:
    counts = _claimer_kills(namespace, kills=12)
    print("claimers killed:", counts)
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_processes_killed_while_claiming_spares_200_times(namespace: str) -> None:
    counts = _claimer_kills(namespace, kills=200)
    print("claimers killed:", counts)
    print("gc:", _assert_gc_leaves_only_live(namespace))


# -- 3. two writers racing on one name -------------------------------------------------------

def _start_when_ready(target: Any, *args: Any) -> Any:
    """Start *target(*args, ready)* in a new process and return once it has imported
    everything (it sets *ready* right before its put loop), so that a kill that
    follows lands in its work, not in its interpreter's start-up."""
    ready = ctx().Event()
    p = ctx().Process(target=target, args=(*args, ready))
    p.start()
    assert ready.wait(60), "the writer process did not start"
    return p


def _racing_writer(namespace: str, seed: int, log_path: str, ready: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    tag = seed * 1_000_000
    ready.set()
    while True:
        tag += 1
        info = arrowshm.put(DATASET, stamped_table(tag, rng.randrange(100, 60_000)), retain=4)
        os.write(fd, f"{info.version} {tag}\n".encode())  # committed: put returned


def _race_kills(namespace: str, kills: int, logdir: Path) -> dict[str, int]:
    rng = random.Random(99)
    arrowshm.put(DATASET, stamped_table(1, 1000), retain=4)
    stop, out = ctx().Event(), ctx().Queue()
    reader = ctx().Process(target=_reader_until, args=(namespace, stop, out))
    reader.start()
    seed = 10
    procs: list[Any] = []

    def spawn() -> Any:
        nonlocal seed
        seed += 1
        return _start_when_ready(_racing_writer, namespace, seed, str(logdir / f"w{seed}.log"))

    try:
        procs = [spawn(), spawn()]
        for _ in range(kills):
            time.sleep(0.1 + rng.random() * 0.4)
            i = rng.randrange(2)
            os.kill(procs[i].pid, signal.SIGKILL)
            procs[i].join()
            procs[i] = spawn()
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        stop.set()
        checked, torn, errors = out.get(timeout=60)
        reader.join(30)
    committed: list[tuple[int, int]] = []
    for f in logdir.glob("w*.log"):
        for line in f.read_text().splitlines():
            v, tag = line.split()
            committed.append((int(v), int(tag)))
    versions = [v for v, _ in committed]
    assert len(versions) == len(set(versions)), "two puts committed the same version"
    info = arrowshm.put(DATASET, stamped_table(7, 100), retain=4)  # the name is still writable
    assert info.version > max(versions)
    lost = 0
    for v, tag in committed:
        # still retained: must be exactly what that put wrote
        if v > info.version - 4 and check_stamped(arrowshm.get(DATASET, version=v)) != tag:
            lost += 1
    assert torn == 0 and errors == [], errors
    return {"kills": kills, "committed_puts": len(committed), "reads_checked": checked,
            "torn": torn, "lost": lost}


@pytest.mark.timeout(180)
def test_two_writers_racing_on_one_name_killed_at_random(namespace: str,
                                                         tmp_path: Path) -> None:
    counts = _race_kills(namespace, kills=10, logdir=tmp_path)
    print("two writers racing:", counts)
    assert counts["lost"] == 0 and counts["committed_puts"] > 0
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_writers_racing_killed_200_times(namespace: str, tmp_path: Path) -> None:
    counts = _race_kills(namespace, kills=200, logdir=tmp_path)
    print("two writers racing:", counts)
    assert counts["lost"] == 0 and counts["committed_puts"] > 50
    print("gc:", _assert_gc_leaves_only_live(namespace))


# -- 4. the service killed while reaping -----------------------------------------------------

def _putter_forever(namespace: str, seed: int, ready: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    tag = seed * 1000
    ready.set()
    while True:
        tag += 1
        arrowshm.put(f"garbage/{seed % 3}", stamped_table(tag, 200_000), retain=1)


def _service_rounds(namespace: str, kills: int, top: Path, rng: random.Random,
                    counts: dict[str, int]) -> None:
    from tests.service.helpers import ServeProcess

    for k in range(kills):
        # leave work for the reaper: a writer killed mid-put, an expiring TTL dataset
        p = _start_when_ready(_putter_forever, namespace, k)
        time.sleep(rng.random() * 0.2)
        os.kill(p.pid or 0, signal.SIGKILL)
        p.join()
        counts["garbage_writers_killed"] += 1
        arrowshm.put(f"ttl/{k % 4}", stamped_table(k, 100), ttl=0.001)
        srv = ServeProcess("--socket", str(top / f"s{k}.sock"), "--reaper-interval", "0.01")
        with srv:
            time.sleep(rng.random() * 0.3)
            assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
        srv.close()
        counts["kills"] += 1
        assert check_stamped(arrowshm.get("kept")) == 4242


def _service_kills(namespace: str, kills: int) -> dict[str, int]:

    rng = random.Random(5)
    arrowshm.put("kept", stamped_table(4242, 50_000), retain=1)
    top = Path(tempfile.mkdtemp(prefix="ashrel-"))
    counts = {"kills": 0, "garbage_writers_killed": 0}
    try:
        _service_rounds(namespace, kills, top, rng, counts)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    report = arrowshm.gc()
    counts["gc_segments_after"] = len(report.segments)
    counts["gc_recovered_after"] = len(report.recovered)
    assert check_stamped(arrowshm.get("kept")) == 4242
    for v in registry_of(namespace).entries():
        if v.name.startswith("garbage/"):
            check_stamped(arrowshm.get(v.name))  # whatever was published is whole
    return counts


@pytest.mark.timeout(180)
def test_service_killed_while_reaping(namespace: str) -> None:
    counts = _service_kills(namespace, kills=4)
    print("service killed while reaping:", counts)
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_service_killed_200_times_while_reaping(namespace: str) -> None:
    counts = _service_kills(namespace, kills=200)
    print("service killed while reaping:", counts)
    print("gc:", _assert_gc_leaves_only_live(namespace))


@pytest.mark.timeout(60)
def test_an_empty_object_left_by_a_killed_writer_is_reclaimed(namespace: str) -> None:
    import posix_ipc

    arrowshm.put("x", stamped_table(1, 10))
    reg = registry_of(namespace)
    name = reg.segment_name(reg.new_segment_id())
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600).close_fd()  # killed here
    os.utime("/dev/shm" + name, (0, 0))  # far older than gc's 60 s grace
    try:
        assert name in arrowshm.gc().segments
    finally:
        if os.path.exists("/dev/shm" + name):
            os.unlink("/dev/shm" + name)
