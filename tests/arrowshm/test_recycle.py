"""Retired segments are reused for later puts, and never while anyone holds them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import arrowshm
from arrowshm._introspect import shm_mappings
from arrowshm._shm import layout as L
from arrowshm._shm.context import context
from arrowshm._shm.mapcache import flush_releases
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment
from arrowshm.testing import data_objects, pooled_objects
from tests.helpers import check_stamped, stamped_table


def _segment_of(name: str) -> str:
    return arrowshm.info(name).segment


def _recycled(namespace: str) -> int:
    return registry_of(namespace).stats().recycled


def test_steady_puts_of_one_size_reuse_a_few_segments(namespace: str) -> None:
    before = _recycled(namespace)
    created = set()
    for tag in range(1, 41):
        created.add(arrowshm.put("steady", stamped_table(tag, 20_000)).segment)
    assert _recycled(namespace) - before >= 30
    assert len(created) <= 4  # a handful of segments, rewritten again and again
    assert check_stamped(arrowshm.get("steady")) == 40


def test_a_held_table_stays_intact_through_many_recycles(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pinned segment stays pooled (never taken) for the whole test; on a loaded
    # machine the 60 puts may outlast the pool's default 30 s idle limit, which would
    # free it (correctly) and leave nothing to inspect at the end
    monkeypatch.setenv("ARROWSHM_SPARE_IDLE_S", "3600")
    arrowshm.put("lap", stamped_table(1, 50_000))
    held = arrowshm.get("lap")
    held_segment = _segment_of("lap")
    column = held.column("v")  # keep a column, drop the table
    del held
    before = _recycled(namespace)
    for tag in range(2, 60):
        arrowshm.put("lap", stamped_table(tag, 50_000))
        arrowshm.get("lap")  # the cache moves on; only `column` pins version 1
    assert _recycled(namespace) - before >= 20  # (releases run on a background thread)
    assert np.array_equal(column.to_numpy(), np.arange(50_000, dtype=np.float64) + 1)
    # version 1's segment was never rewritten while pinned
    seg = Segment.open(held_segment)
    assert int(seg.words[L.S_VERSION]) == 1


def test_a_segment_is_recycled_once_its_last_buffer_is_freed(namespace: str) -> None:
    arrowshm.put("free", stamped_table(1, 10_000))
    t = arrowshm.get("free")
    first = _segment_of("free")
    arrowshm.put("free", stamped_table(2, 10_000))
    arrowshm.get("free")
    assert first in pooled_objects(namespace)
    seg = Segment.open(first)
    pins = [int(seg.words[L.S_PINS + L.PIN_WORDS * k]) for k in range(L.PIN_SLOTS)]
    assert os.getpid() in pins  # `t` pins it
    del t
    flush_releases()  # the superseded cache entry is dropped by a background thread
    pins = [int(seg.words[L.S_PINS + L.PIN_WORDS * k]) for k in range(L.PIN_SLOTS)]
    assert os.getpid() not in pins  # the finalizer released it
    arrowshm.put("free", stamped_table(3, 10_000))
    assert _segment_of("free") == first  # and the next put reused it


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import arrowshm
    from tests.helpers import check_stamped
    t = arrowshm.get(sys.argv[1])
    print(check_stamped(t), flush=True)
    sys.stdin.readline()          # hold the table until told
    print(check_stamped(t), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_a_table_held_by_another_process_survives_recycling(namespace: str) -> None:
    arrowshm.put("shared", stamped_table(7, 40_000))
    held_segment = _segment_of("shared")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, "shared"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ),
                             cwd=os.getcwd())
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "7"
        for tag in range(8, 50):
            assert arrowshm.put("shared", stamped_table(tag, 40_000)).segment != held_segment
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "7"  # still whole in the holder
    finally:
        child.kill()
        child.wait()


@pytest.mark.timeout(120)
def test_pins_of_a_killed_reader_are_reaped(namespace: str) -> None:
    arrowshm.put("dead", stamped_table(1, 20_000))
    held_segment = _segment_of("dead")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, "dead"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ),
                             cwd=os.getcwd())
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "1"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    used = set()
    for tag in range(2, 8):
        used.add(arrowshm.put("dead", stamped_table(tag, 20_000)).segment)
    assert held_segment in used  # the dead reader's pin did not block reuse
    assert check_stamped(arrowshm.get("dead")) == 7


def test_gc_and_delete_leave_nothing_but_live_versions_and_reported_spares(
    namespace: str,
) -> None:
    for tag in range(1, 10):
        arrowshm.put("g", stamped_table(tag, 5_000), retain=2)
    spares = pooled_objects(namespace)
    assert len(spares) >= 1 and len(data_objects(namespace)) == 2 + len(spares)
    report = arrowshm.gc()  # spares within the bound and idle time stay, reported
    assert report.spares == len(spares) and len(data_objects(namespace)) == 2 + report.spares
    arrowshm.delete("g")  # its two live versions become spares too
    assert data_objects(namespace) == pooled_objects(namespace)
    assert arrowshm.gc().spares == len(data_objects(namespace))
    report = arrowshm.gc(spares=True)
    assert report.spares_freed >= 3 and report.spares == 0
    assert data_objects(namespace) == []


def test_spares_count_against_the_quota_and_free_on_gc(namespace: str) -> None:
    reg = registry_of(namespace)
    for tag in range(1, 5):
        arrowshm.put("q", stamped_table(tag, 5_000))
    used_with_spares = reg.bytes_used
    usage = arrowshm.usage()
    assert usage.spares >= 1 and usage.bytes_used == used_with_spares
    assert usage.live_bytes + usage.spare_bytes == used_with_spares
    arrowshm.gc(spares=True)
    assert reg.bytes_used < used_with_spares and arrowshm.usage().spares == 0
    arrowshm.delete("q")
    assert reg.bytes_used == arrowshm.usage().spare_bytes > 0  # the last version, a spare
    arrowshm.gc(spares=True)
    assert reg.bytes_used == 0


def _mapped(inode: int) -> bool:
    """Whether this process maps the object with *inode* (named or unlinked)."""
    with open("/proc/self/maps") as f:
        return any(len(p) == 6 and int(p[4]) == inode
                   for p in (line.split(maxsplit=5) for line in f))


def test_a_producer_unmaps_versions_another_process_deleted(namespace: str) -> None:
    info = arrowshm.put("del", stamped_table(1, 30_000))
    shm_path = "/dev/shm" + info.segment
    inode = os.stat(shm_path).st_ino
    assert _mapped(inode)  # kept mapped for a cheap recycle later
    assert shm_path in {m.path for m in shm_mappings()}  # listed under its name
    proc = subprocess.run([sys.executable, "-c", "import arrowshm; arrowshm.delete('del'); "
                           "arrowshm.gc(spares=True)"], env=dict(os.environ), timeout=60)
    assert proc.returncode == 0  # deleted, and its spare freed, by another process
    arrowshm.gc()
    flush_releases()
    assert not _mapped(inode)  # its memory is not held alive by this process


def test_freeing_spares_in_the_producer_unmaps_at_once(namespace: str) -> None:
    info = arrowshm.put("del2", stamped_table(1, 30_000))
    inode = os.stat("/dev/shm" + info.segment).st_ino
    assert _mapped(inode)
    arrowshm.delete("del2")  # a spare: still mapped here, to be rewritten without faults
    assert info.segment in pooled_objects(namespace) and _mapped(inode)
    arrowshm.gc(spares=True)
    flush_releases()
    assert not _mapped(inode)


def test_a_stale_reader_never_takes_a_sealed_recycled_segment_for_its_old_version(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arrowshm._datasets import get as _get
    from arrowshm._datasets import put as _put
    from arrowshm._datasets.entries import Recycled

    ctx = context(namespace)
    reg = ctx.registry
    arrowshm.put("stale", stamped_table(1, 5_000))
    stale_view = reg.get_entry("stale")  # a reader that read the registry at version 1
    arrowshm.put("stale", stamped_table(2, 5_000))  # version 1's segment goes to the pool
    first_segment = stale_view.segment_id
    seen = []
    original = _put.publish_version

    def check_then_publish(*args: object, **kwargs: object) -> object:
        seg_id = args[3]
        if seg_id == first_segment:  # recycled and SEALED, not yet published
            with pytest.raises(Recycled):  # get's path (the pin kernel)
                _get._pin_version(ctx, first_segment, 1, stale_view, 0)
            with pytest.raises(Recycled):  # info's path
                _get._open_version(ctx, first_segment, 1, stale_view)
            seen.append(seg_id)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_put, "publish_version", check_then_publish)
    arrowshm.put("stale", stamped_table(3, 5_000))
    assert seen == [first_segment]  # the window was really exercised
    assert check_stamped(arrowshm.get("stale")) == 3
