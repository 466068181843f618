"""Writers killed with SIGKILL during ``put``: never a torn table, never a stuck
name, and nothing left that ``gc`` does not reclaim."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from typing import Any

import pytest

import arrowshm
from arrowshm._shm import layout as L
from arrowshm.testing import data_objects
from tests.helpers import check_stamped, run_python, spare_objects, stamped_table

NAME = "crash/target"


def _writer_forever(namespace: str, seed: int, ready: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(seed)
    tag = seed * 1_000_000
    ready.set()  # imported: from here on the writer does nothing but put
    while True:
        tag += 1
        arrowshm.put(NAME, stamped_table(tag, rng.randrange(1_000, 120_000)), retain=2)


def _reader_until(namespace: str, stop: Any, out: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    checked = torn = 0
    last_version = 0
    errors: list[str] = []
    while not stop.is_set():
        try:
            info_version = arrowshm.info(NAME).version
            table = arrowshm.get(NAME)
        except arrowshm.NotFoundError:
            continue
        try:
            check_stamped(table)
            checked += 1
        except AssertionError as exc:
            torn += 1
            errors.append(str(exc))
        if info_version < last_version:
            errors.append(f"version went back from {last_version} to {info_version}")
        last_version = info_version
        del table
    out.put((checked, torn, errors[:5]))


def _kill_loop(namespace: str, kills: int, max_delay: float) -> tuple[int, int, list[str]]:
    ctx = mp.get_context("spawn")
    arrowshm.put(NAME, stamped_table(1, 1000), retain=2)
    stop = ctx.Event()
    out = ctx.Queue()
    reader = ctx.Process(target=_reader_until, args=(namespace, stop, out))
    reader.start()
    rng = random.Random(1234)
    recovered_after: list[float] = []
    try:
        for k in range(kills):
            ready = ctx.Event()
            w = ctx.Process(target=_writer_forever, args=(namespace, k + 2, ready))
            w.start()
            assert ready.wait(60), "the writer did not start"
            time.sleep(rng.random() * max_delay)  # then killed at a random moment of a put
            os.kill(w.pid or 0, signal.SIGKILL)
            w.join()
            # the name must stay writable: the next writer takes over within ~a second
            t0 = time.monotonic()
            arrowshm.put(NAME, stamped_table(10**9 + k, 500), retain=2)
            recovered_after.append(time.monotonic() - t0)
    finally:
        stop.set()
        result = out.get(timeout=60)
        reader.join(30)
    assert max(recovered_after) < 5.0, recovered_after  # a watchdog, not a performance claim
    return result  # type: ignore[no-any-return]


def _assert_only_live_segments_after_gc(namespace: str) -> None:
    """After one gc: the live versions, plus the spares the table lists (bounded)."""
    report = arrowshm.gc()
    info = arrowshm.info(NAME)
    spares = spare_objects(namespace)
    assert report.spares == len(spares)
    assert len(data_objects(namespace)) == len(info.versions) + len(spares), (
        data_objects(namespace))
    check_stamped(arrowshm.get(NAME))


@pytest.mark.timeout(240)
def test_writer_killed_at_random_moments_never_tears_a_table(namespace: str) -> None:
    checked, torn, errors = _kill_loop(namespace, kills=12, max_delay=0.3)
    assert torn == 0 and errors == [], errors  # FORBIDDEN
    assert checked > 20
    _assert_only_live_segments_after_gc(namespace)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_writer_killed_200_times_never_tears_a_table(namespace: str) -> None:
    checked, torn, errors = _kill_loop(namespace, kills=200, max_delay=0.4)
    print(f"writer killed during put: 200 kills, {checked} tables checked, {torn} torn, "
          f"{arrowshm.info(NAME).version - 201} versions published by killed writers")
    assert torn == 0 and errors == [], errors
    assert checked > 200
    _assert_only_live_segments_after_gc(namespace)


# -- deterministic crash points --------------------------------------------------------------

_CRASH_CHILD = """
import os, signal
import numpy as np
import arrowshm
from arrowshm._datasets import put as _put
from arrowshm._shm import registry as _registry, layout as L
from arrowshm.kernels.atomics import atomic_store
from tests.helpers import stamped_table

point = {point!r}
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
orig_write = _registry.Registry._write

if point == "before_publish":
    _put.publish_version = die
elif point == "holding_lock":
    _registry.Registry._write = die
elif point == "mid_seqlock":
    def half_write(self, slot, record):
        record = record.encode()
        base = self.ew(slot, L.E_SEQLOCK)
        w = self.words
        n = L.RECORD_WORDS
        seq = int(w[base])
        w[base + 2 + n : base + 2 + 2 * n] = record          # staged
        atomic_store(w, base + 1, np.uint64(seq + 2))         # stage_tag
        atomic_store(w, base, np.uint64(seq + 1))             # odd
        w[base + 2 : base + 2 + 3] = record[:3]               # a torn live record
        die()
    _registry.Registry._write = half_write
elif point == "after_seqlock":
    def write_then_die(self, slot, record):
        orig_write(self, slot, record)
        die()
    _registry.Registry._write = write_then_die
arrowshm.put("crash/target", stamped_table(777, 20_000), retain=1)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["before_publish", "holding_lock", "mid_seqlock",
                                   "after_seqlock"])
def test_writer_killed_at_each_crash_point_leaves_a_whole_table(point: str,
                                                                namespace: str) -> None:
    arrowshm.put(NAME, stamped_table(5, 10_000), retain=1)
    proc = run_python(_CRASH_CHILD.format(point=point), check=False,
                      env={"PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    table = arrowshm.get(NAME)
    tag = check_stamped(table)
    expected = 777 if point in ("mid_seqlock", "after_seqlock") else 5
    assert tag == expected
    # the name is writable again at once, and the version sequence continues
    info = arrowshm.put(NAME, stamped_table(9, 100), retain=1)
    assert info.version == (3 if expected == 777 else 2)
    assert check_stamped(arrowshm.get(NAME)) == 9
    report = arrowshm.gc()
    assert report.segments, "the dead writer's leftover segment must be reclaimed"
    assert len(data_objects(namespace)) == 1 + len(spare_objects(namespace))


# -- quota bytes of creators killed before naming their segment ------------------------------

_KILLED_CREATING = """
import os, signal
import arrowshm
from arrowshm._shm import header
from arrowshm._streams import writer
from tests.helpers import stamped_table

what = {what!r}
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if what == "dataset":
    header.init_fresh = die          # inside Segment.create's init: reserved, not named
    arrowshm.put("creating", stamped_table(1, 20_000))
else:
    writer.init_segment = die
    arrowshm.StreamWriter("creating-stream", stamped_table(1, 10).schema, capacity_bytes=256 << 10)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["dataset", "stream"])
def test_quota_reserved_by_a_creator_killed_before_naming_is_given_back(
    what: str, namespace: str
) -> None:
    from arrowshm._shm.registry import registry_of

    reg = registry_of(namespace)
    arrowshm.put("kept", stamped_table(5, 1_000))
    used_before = reg.bytes_used
    big = stamped_table(6, 100_000)
    arrowshm.put("big", big)
    big_bytes = reg.bytes_used - used_before
    arrowshm.delete("big")
    reg.set_quota(used_before + big_bytes)  # exactly room for "big"
    try:
        for _ in range(3):
            proc = run_python(_KILLED_CREATING.format(what=what), check=False,
                              env={"PYTHONPATH": os.getcwd()})
            assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert data_objects(namespace) == [arrowshm.info("kept").segment]  # nothing named
        leaked = reg.bytes_used - used_before
        assert leaked > 0  # the dead creators' reservations still count ...
        with pytest.raises(arrowshm.QuotaExceededError):
            arrowshm.put("big", big)
        report = arrowshm.gc()
        assert report.quota_recovered == leaked  # ... until gc gives them back
        assert reg.bytes_used == used_before
        arrowshm.put("big", big)  # the whole quota is usable again
    finally:
        reg.set_quota(None)


_KILLED_AFTER_CLAIM = """
import os, signal
import arrowshm
from arrowshm._shm import registry as _registry
from tests.helpers import stamped_table

claim = _registry.Registry.claim
def claim_then_die(self, *a, **k):  # claimed the name, then killed before publishing
    claim(self, *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
_registry.Registry.claim = claim_then_die
arrowshm.put("never/published", stamped_table(3, 1_000))
"""


@pytest.mark.timeout(120)
def test_a_name_claimed_by_a_writer_killed_before_its_first_version_is_removed_by_gc(
    namespace: str,
) -> None:
    from arrowshm._shm.registry import registry_of

    proc = run_python(_KILLED_AFTER_CLAIM, check=False, env={"PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    reg = registry_of(namespace)
    assert reg.lookup("never/published") is not None  # claimed, holding no version
    with pytest.raises(arrowshm.NotFoundError, match="no version yet"):
        arrowshm.get("never/published")
    live_before = reg.words[L.H_LIVE_ENTRIES]
    report = arrowshm.gc()
    assert "never/published" in report.recovered
    assert reg.lookup("never/published") is None
    assert reg.words[L.H_LIVE_ENTRIES] == live_before - 1
    assert arrowshm.put("never/published", stamped_table(4, 10)).version == 1
    # a live writer's fresh claim is never taken for abandoned
    arrowshm.put("alive", stamped_table(5, 10))
    assert "alive" not in arrowshm.gc().recovered


@pytest.mark.timeout(60)
def test_a_reservation_a_killed_gc_was_clearing_is_taken_over(namespace: str) -> None:
    """gc locks a dead creator's reservation slot with its own pid before clearing it;
    a gc (or reaper) killed right then must not strand those bytes forever."""
    import subprocess
    import sys

    from arrowshm._shm.registry import _RESERVATION_LOCKED, registry_of

    arrowshm.put("x", stamped_table(1, 10))
    reg = registry_of(namespace)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: a gc killed while holding the slot's lock
    base = L.H_RESERVATIONS + (L.RESERVATION_SLOTS - 1) * L.RESERVATION_WORDS
    used = reg.bytes_used
    reg.reserve(123_456)
    reg.words[base + 2] = 123_456
    reg.words[base + 1] = 1
    reg.words[base] = _RESERVATION_LOCKED | dead_pid
    report = arrowshm.gc()
    assert report.quota_recovered == 123_456
    assert reg.bytes_used == used
    assert int(reg.words[base]) == 0  # the slot is free again
