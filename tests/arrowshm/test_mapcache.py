"""Readers keep mappings of released versions for reuse, and the batch locator."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

import arrowshm
from arrowshm._datasets import get as _get
from arrowshm._datasets.get import clear_cache
from arrowshm._proc import identity
from arrowshm._shm import layout as L
from arrowshm._shm import mapcache as _mapcache
from arrowshm._shm.mapcache import flush_releases
from arrowshm._shm.segment import Segment
from tests.helpers import check_stamped, stamped_table


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every segment get maps afresh (the real open still runs)."""
    opened: list[str] = []
    real = Segment.open.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Segment], name: str, *, writable: bool = False,
                 populate: bool = False) -> Segment:
        if not name.endswith("-reg"):
            opened.append(name)
        return real(cls, name, writable=writable, populate=populate)  # type: ignore[no-any-return]

    monkeypatch.setattr(_get.Segment, "open", classmethod(counting))
    return opened


def test_a_version_in_a_segment_read_before_reuses_the_idle_mapping(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _count_opens(monkeypatch)
    first = arrowshm.put("steady", stamped_table(1, 20_000)).segment
    assert check_stamped(arrowshm.get("steady")) == 1
    arrowshm.put("steady", stamped_table(2, 20_000))
    assert check_stamped(arrowshm.get("steady")) == 2  # supersedes version 1
    arrowshm.wait("steady", after_version=1)  # a reader's wait() releases it (if the
    # release thread has not yet)
    assert _mapcache.idle_count() == 1  # its mapping idles
    assert arrowshm.put("steady", stamped_table(3, 20_000)).segment == first  # recycled
    opened.clear()
    assert check_stamped(arrowshm.get("steady")) == 3
    assert opened == []  # no shm_open/mmap: the idle mapping of `first` was reused
    for tag in range(4, 30):  # steady state (a reader waiting between puts): no new mapping
        arrowshm.wait("steady", after_version=tag - 2)
        arrowshm.put("steady", stamped_table(tag, 20_000))
        assert check_stamped(arrowshm.get("steady")) == tag
    assert opened == []


def test_a_superseded_version_is_released_without_another_call(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrowshm.put("idle", stamped_table(1, 5_000))
    arrowshm.get("idle")
    first = arrowshm.info("idle").segment
    arrowshm.put("idle", stamped_table(2, 5_000))
    arrowshm.get("idle")  # supersedes version 1, then this reader calls nothing more
    seg = Segment.open(first)
    pids = lambda: [int(seg.words[L.S_PINS + 2 * k]) for k in range(L.PIN_SLOTS)]  # noqa: E731
    deadline = time.monotonic() + 5
    while os.getpid() in pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.getpid() not in pids()  # the release thread dropped it (within ~0.1 s)


def test_without_the_cache_every_new_version_is_mapped(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_mapcache, "MAX_IDLE", 0)
    opened = _count_opens(monkeypatch)
    for tag in range(1, 6):
        arrowshm.put("nocache", stamped_table(tag, 5_000))
        assert check_stamped(arrowshm.get("nocache")) == tag
    assert len(opened) == 5
    assert _mapcache.idle_count() == 0


def _leave_one_idle_mapping(name: str) -> None:
    """Read two versions, then let a wait() release the first: its mapping idles."""
    for tag in (1, 2):
        arrowshm.put(name, stamped_table(tag, 5_000))
        arrowshm.get(name)
    arrowshm.wait(name, after_version=1)
    assert _mapcache.idle_count() == 1


def test_gc_and_clear_cache_drop_idle_mappings(namespace: str) -> None:
    _leave_one_idle_mapping("g")
    arrowshm.gc()
    assert _mapcache.idle_count() == 0
    arrowshm.put("g", stamped_table(3, 5_000))
    arrowshm.get("g")
    arrowshm.wait("g", after_version=2)
    assert _mapcache.idle_count() >= 1  # version 2's mapping (3's too if recycled from 2)
    clear_cache()
    assert _mapcache.idle_count() == 0


def test_the_idle_cache_is_bounded(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mapcache, "MAX_IDLE", 3)
    monkeypatch.setenv("ARROWSHM_POOL_SEGMENTS", "0")  # no recycling: every version is new
    for k in range(8):
        arrowshm.put(f"b{k}", stamped_table(k + 1, 2_000))
        arrowshm.get(f"b{k}")
    clear_cache()  # nothing held
    for k in range(8):
        arrowshm.get(f"b{k}")
    for k in range(8):  # new versions: each get releases the previous mapping
        arrowshm.put(f"b{k}", stamped_table(k + 11, 2_000))
        assert check_stamped(arrowshm.get(f"b{k}")) == k + 11
    assert _mapcache.idle_count() == 3


_READER = textwrap.dedent(
    """
    import sys
    import arrowshm
    from tests.helpers import check_stamped
    t = arrowshm.get(sys.argv[1])
    print(check_stamped(t), flush=True)
    del t
    arrowshm.put(sys.argv[1] + "-other", arrowshm.get(sys.argv[1]))  # stays busy in arrowshm
    from arrowshm._datasets.get import _cache
    _cache.clear()  # drop the cached table: its mapping goes idle
    print("idle", flush=True)
    sys.stdin.readline()
    """
)


def _maps_inode(pid: int, inode: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return any(len(p) == 6 and int(p[4]) == inode
                   for p in (line.split(maxsplit=5) for line in f))


@pytest.mark.timeout(120)
def test_an_idle_mapping_of_a_deleted_dataset_is_unmapped_within_the_grace(
    namespace: str,
) -> None:
    info = arrowshm.put("gone", stamped_table(5, 40_000))
    inode = os.stat("/dev/shm" + info.segment).st_ino
    env = dict(os.environ, ARROWSHM_MAP_CACHE_S="0.5")
    child = subprocess.Popen([sys.executable, "-c", _READER, "gone"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=os.getcwd())
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "5"
        assert child.stdout.readline().strip() == "idle"
        assert _maps_inode(child.pid, inode)  # kept for reuse
        arrowshm.delete("gone")
        arrowshm.gc(spares=True)  # (deleted, its segment is a spare: free it too)
        assert not os.path.exists("/dev/shm" + info.segment)
        deadline = time.monotonic() + 10
        while _maps_inode(child.pid, inode) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the deleted segment's memory is not held by the idle reader beyond the grace
        assert not _maps_inode(child.pid, inode)
    finally:
        child.kill()
        child.wait()
    arrowshm.delete("gone-other")


def test_single_batch_versions_record_their_batch_and_others_do_not(namespace: str) -> None:
    def header(name: str) -> tuple[int, int, int, int]:
        seg = Segment.open(arrowshm.info(name).segment)
        w = seg.words
        return (int(w[L.S_VERSION]), int(w[L.S_BATCH_VERSION]), int(w[L.S_BATCH_OFFSET]),
                int(w[L.S_BATCH_BYTES]))

    one = stamped_table(1, 1_000)
    version, bversion, boff, blen = header(arrowshm.put("one", one).name)
    assert bversion == version and boff == one.schema.serialize().size and blen > 0
    chunked = pa.concat_tables([stamped_table(2, 500), stamped_table(2, 500)])
    assert chunked.column(0).num_chunks == 2
    arrowshm.put("one", chunked)  # recycles nothing yet, but the words are reset anyway
    assert header("one")[1] == 0
    dictionary = pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode()})
    arrowshm.put("dict", dictionary)
    assert header("dict")[1] == 0
    arrowshm.delete("one")
    arrowshm.delete("dict")


def test_the_fast_read_gives_the_same_table_as_a_full_parse(namespace: str) -> None:
    meta = stamped_table(1, 3_000).replace_schema_metadata({"origin": "test"})
    arrowshm.put("fast", meta)
    arrowshm.get("fast")  # parses the stream: schema now cached
    second = stamped_table(2, 3_000).replace_schema_metadata({"origin": "test"})
    arrowshm.put("fast", second)
    fast = arrowshm.get("fast")
    clear_cache()
    full = arrowshm.get("fast")  # no cached schema: full parse
    assert fast.equals(full) and fast.schema.equals(full.schema, check_metadata=True)
    assert fast.schema.metadata == {b"origin": b"test"}
    # a new schema under the same name: the fingerprint differs, so it is parsed again
    other = pa.table({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"])})
    arrowshm.put("fast", other)
    assert arrowshm.get("fast").equals(other)
    arrowshm.delete("fast")


def test_a_corrupt_batch_on_the_fast_path_is_a_corrupt_segment_error(namespace: str) -> None:
    arrowshm.put("bad", stamped_table(1, 2_000))
    arrowshm.get("bad")  # schema cached
    info = arrowshm.put("bad", stamped_table(2, 2_000))
    seg = Segment.open(info.segment, writable=True)
    at = L.SEGMENT_HEADER_BYTES + int(seg.words[L.S_BATCH_OFFSET])
    seg.mm[at : at + 8] = b"\x00" * 8  # the batch message's continuation marker and length
    with pytest.raises(arrowshm.CorruptSegmentError, match="record batch"):
        arrowshm.get("bad")
    del seg
    arrowshm.delete("bad")


def test_a_forked_child_has_its_own_identity() -> None:
    parent = identity()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = identity()[0] == os.getpid() != parent[0]
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    assert identity() == parent


def test_flush_releases_unmaps_idle_mappings(namespace: str) -> None:
    _leave_one_idle_mapping("f")
    flush_releases()
    assert _mapcache.idle_count() == 0


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_bad_cache_setting_is_a_clear_error_at_import(value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import arrowshm"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, ARROWSHM_MAP_CACHE_S=value), cwd=os.getcwd(),
    )
    assert proc.returncode != 0
    assert "InvalidArgumentError: ARROWSHM_MAP_CACHE_S=" in proc.stderr
    assert "unset it for the default (2)" in proc.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "1e", ""])
def test_every_numeric_tuning_variable_is_read_by_one_validating_parser(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arrowshm._env import env_number
    from arrowshm._shm.registry import registry_capacity

    monkeypatch.setenv("ARROWSHM_REGISTRY_CAPACITY", value)
    if value == "":
        assert env_number("ARROWSHM_REGISTRY_CAPACITY", 7) == 7
        assert registry_capacity() == 4096
        return
    with pytest.raises(arrowshm.InvalidArgumentError, match="ARROWSHM_REGISTRY_CAPACITY="):
        registry_capacity()
    with pytest.raises(ValueError, match="unset it for the default"):
        env_number("ARROWSHM_REGISTRY_CAPACITY", 7)


def test_housekeeping_never_brings_back_a_removed_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the housekeeping thread works on a snapshot of the contexts: one removed meanwhile
    # (arrowshm.testing.cleanup_namespace unlinks everything, then drops the context)
    # must not be trimmed, which would map its registry again, i.e. create a new one
    from arrowshm._shm.context import context, drop_context
    from arrowshm.testing import cleanup_namespace, namespace_objects, unique_namespace

    ns = unique_namespace()
    ctx = context(ns)  # attached, its registry not mapped yet
    drop_context(ns)
    monkeypatch.setattr(_mapcache, "all_contexts", lambda: [ctx])
    monkeypatch.setattr(_mapcache, "_next_housekeeping", 0.0)
    _mapcache._housekeeping()
    assert namespace_objects(ns) == []
    # a context in use is still trimmed
    used = context(ns)
    try:
        assert used.registry is not None
        trimmed: list[str] = []
        monkeypatch.setattr(_mapcache, "all_contexts", lambda: [used])
        monkeypatch.setattr(_mapcache, "_next_housekeeping", 0.0)
        monkeypatch.setattr(_mapcache.pool, "trim", lambda c: trimmed.append(c.namespace))
        _mapcache._housekeeping()
        assert trimmed == [ns]
    finally:
        cleanup_namespace(ns)
