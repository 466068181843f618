"""Datasets in one process and across real processes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing as mp
import os
import pickle
import time

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._datasets.get import clear_cache
from arrowshm._introspect import buffers_in_shm
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment
from arrowshm.testing import data_objects, namespace_objects, pooled_objects
from tests.helpers import make_table, run_python


def test_put_then_get_round_trips_the_table() -> None:
    t = make_table(1000)
    info = arrowshm.put("t", t)
    assert info.version == 1 and info.num_rows == 1000 and info.name == "t"
    assert info.schema == t.schema and info.nbytes > 0
    got = arrowshm.get("t")
    assert got.equals(t)


def test_versions_increase_by_one_and_get_returns_the_latest() -> None:
    for i in range(1, 5):
        assert arrowshm.put("v", make_table(10, seed=i)).version == i
    assert arrowshm.get("v").equals(make_table(10, seed=4))
    assert arrowshm.info("v").version == 4


def test_get_is_zero_copy_in_this_process(namespace: str) -> None:
    arrowshm.put("z", make_table(5000))
    inside, total, where = buffers_in_shm(arrowshm.get("z"))
    assert total >= 4 and inside == total
    assert all(w.startswith(f"/dev/shm/ash-{namespace}-") for w in where)


def test_get_is_zero_copy_in_another_process() -> None:
    arrowshm.put("remote", make_table(200_000))
    out = run_python(
        """
        import arrowshm
        from arrowshm._introspect import buffers_in_shm
        t = arrowshm.get("remote")
        inside, total, where = buffers_in_shm(t)
        print(inside, total, t.num_rows, t.column("id")[199999].as_py())
        """
    ).stdout.split()
    inside, total, rows, last = map(int, out)
    assert inside == total and total >= 4
    assert rows == 200_000 and last == 199_999


def test_info_and_list_describe_datasets(namespace: str) -> None:
    arrowshm.put("b", make_table(3), ttl=60)
    arrowshm.put("a", make_table(7), retain=2)
    arrowshm.put("a", make_table(8), retain=2)
    infos = arrowshm.list_datasets()
    assert [i.name for i in infos] == ["a", "b"]
    a = infos[0]
    assert a.version == 2 and a.num_rows == 8 and a.versions == (2, 1) and a.retain == 2
    assert a.owner_pid == os.getpid() and a.namespace == namespace
    assert a.created_at <= a.updated_at
    b = arrowshm.info("b")
    assert b.ttl == 60 and b.expires_at is not None
    assert "<table>" in b._repr_html_()


def test_missing_names_and_versions_raise_not_found() -> None:
    with pytest.raises(arrowshm.NotFoundError) as exc:
        arrowshm.get("nope")
    assert isinstance(exc.value, KeyError)
    assert "arrowshm ls" in str(exc.value)
    arrowshm.put("one", make_table(2))
    with pytest.raises(arrowshm.NotFoundError, match=r"versions 1\.\.1 are retained"):
        arrowshm.get("one", version=2)
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.get("one", version=0)


def test_retention_keeps_older_versions_readable(namespace: str) -> None:
    for i in range(1, 6):
        arrowshm.put("r", make_table(10, seed=i), retain=3)
    for v in (5, 4, 3):
        assert arrowshm.get("r", version=v).equals(make_table(10, seed=v))
    with pytest.raises(arrowshm.NotFoundError) as exc:
        arrowshm.get("r", version=2)
    assert exc.value.retained == (5, 4, 3)  # type: ignore[attr-defined]
    # older segments were freed, or kept as spares of the namespace
    assert len(data_objects(namespace)) - len(pooled_objects(namespace)) == 3
    assert arrowshm.ref("r", version=4).get().equals(make_table(10, seed=4))


def test_a_held_table_stays_intact_after_newer_versions_and_delete(namespace: str) -> None:
    arrowshm.put("h", make_table(50_000, seed=1))
    held = arrowshm.get("h")
    expected = make_table(50_000, seed=1)
    for i in range(2, 6):
        arrowshm.put("h", make_table(50_000, seed=i))
    arrowshm.delete("h")
    arrowshm.gc(spares=True)  # the spares it left are freed too
    assert data_objects(namespace) == []  # unlinked, yet still mapped here
    assert held.equals(expected)
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.get("h")


def test_delete_frees_every_segment_and_the_name_can_be_reused(namespace: str) -> None:
    for i in range(3):
        arrowshm.put("d", make_table(10, seed=i), retain=3)
    assert len(data_objects(namespace)) == 3
    arrowshm.delete("d")
    assert data_objects(namespace) == pooled_objects(namespace)  # spares only
    assert arrowshm.gc(spares=True).spares == 0 and data_objects(namespace) == []
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.delete("d")
    assert arrowshm.put("d", make_table(1)).version == 1


@pytest.mark.parametrize("kind", ["batch", "pandas", "polars", "c_stream", "reader"])
def test_put_accepts_batches_dataframes_and_arrow_streams(kind: str) -> None:
    t = make_table(100)
    data: object
    if kind == "batch":
        data = t.to_batches()[0]
    elif kind == "pandas":
        data = t.to_pandas()
    elif kind == "polars":
        import polars as pl

        data = pl.from_arrow(t)
    elif kind == "reader":
        data = pa.RecordBatchReader.from_batches(t.schema, t.to_batches())
    else:

        class Exporter:
            def __arrow_c_stream__(self, requested_schema: object = None) -> object:
                return t.__arrow_c_stream__(requested_schema)

        data = Exporter()
    arrowshm.put("in", data)
    got = arrowshm.get("in")
    assert got.num_rows == 100
    assert got.column("id").to_pylist() == t.column("id").to_pylist()


def test_unsupported_input_is_rejected_and_creates_nothing(namespace: str) -> None:
    with pytest.raises(arrowshm.InvalidArgumentError, match="cannot put"):
        arrowshm.put("bad", [1, 2, 3])
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.put("bad", make_table(1), retain=0)
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.put("bad", make_table(1), ttl=-1)
    assert data_objects(namespace) == []
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.info("bad")


def test_repeated_get_of_an_unchanged_version_reuses_the_mapping() -> None:
    arrowshm.put("c", make_table(10))
    first = arrowshm.get("c")
    assert arrowshm.get("c") is first
    arrowshm.put("c", make_table(11))
    second = arrowshm.get("c")
    assert second is not first and second.num_rows == 11


def test_ttl_expires_a_dataset_and_gc_removes_it(namespace: str) -> None:
    arrowshm.put("ttl", make_table(5), ttl=0.2)
    assert arrowshm.get("ttl").num_rows == 5
    time.sleep(0.3)
    with pytest.raises(arrowshm.NotFoundError, match="expired"):
        arrowshm.get("ttl")
    report = arrowshm.gc()
    assert report.expired == ["ttl"]
    assert data_objects(namespace) == pooled_objects(namespace)  # a spare, reported
    assert report.spares == len(data_objects(namespace))


def test_wait_times_out_with_wait_timeout_error() -> None:
    arrowshm.put("w", make_table(1))
    t0 = time.monotonic()
    with pytest.raises(arrowshm.WaitTimeoutError) as exc:
        arrowshm.wait("w", after_version=1, timeout=0.2)
    assert isinstance(exc.value, TimeoutError)
    assert time.monotonic() - t0 >= 0.2
    assert arrowshm.wait("w", after_version=0, timeout=0).version == 1


def _put_later(name: str, namespace: str, delay: float, n: int) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm as a

    for i in range(n):
        time.sleep(delay)
        a.put(name, make_table(3, seed=i))


@pytest.mark.timeout(60)
def test_wait_wakes_when_another_process_puts(namespace: str) -> None:
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_put_later, args=("later", namespace, 0.3, 2))
    p.start()
    try:
        first = arrowshm.wait("later", timeout=30)  # the name does not exist yet
        assert first.version >= 1
        second = arrowshm.wait("later", after_version=1, timeout=30)
        assert second.version == 2
    finally:
        p.join(30)
    assert p.exitcode == 0


def _put_many(name: str, namespace: str, n: int) -> list[int]:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm as a

    return [a.put(name, make_table(5, seed=i)).version for i in range(n)]


@pytest.mark.timeout(120)
def test_concurrent_puts_from_processes_get_distinct_increasing_versions(namespace: str) -> None:
    ctx = mp.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        results = list(pool.map(_put_many, ["race"] * 4, [namespace] * 4, [25] * 4))
    versions = [v for r in results for v in r]
    assert sorted(versions) == list(range(1, 101))
    for r in results:
        assert r == sorted(r)
    assert arrowshm.info("race").version == 100
    assert len(data_objects(namespace)) - len(pooled_objects(namespace)) == 1


def test_ref_pickles_to_a_few_bytes_and_resolves_the_version() -> None:
    arrowshm.put("p", make_table(1000), retain=2)
    r = arrowshm.ref("p")
    blob = pickle.dumps(r)
    assert len(blob) < 120
    arrowshm.put("p", make_table(5), retain=2)
    assert pickle.loads(blob).get().num_rows == 1000  # still version 1
    assert arrowshm.ref("p").version == 2


def _sum_ids(r: arrowshm.Ref) -> int:
    return int(np.sum(r.get().column("id").to_numpy()))


def _double(r: arrowshm.Ref) -> arrowshm.Ref:
    t = r.get()
    out = pa.table({"id": pa.compute.multiply(t.column("id"), 2)})
    return arrowshm.put(f"{r.name}-x2", out).ref


@pytest.mark.timeout(120)
def test_refs_cross_multiprocessing_and_futures_workers() -> None:
    arrowshm.put("work", make_table(10_000))
    r = arrowshm.ref("work")
    expected = int(np.arange(10_000).sum())
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(_sum_ids, [r, r]) == [expected, expected]
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        out_ref = ex.submit(_double, r).result()
    assert isinstance(out_ref, arrowshm.Ref)
    assert int(np.sum(out_ref.get().column("id").to_numpy())) == 2 * expected


def test_quota_rejects_a_put_and_creates_nothing(namespace: str) -> None:
    reg = registry_of(namespace)
    reg.set_quota(200_000)
    try:
        arrowshm.put("small", make_table(100))
        before = namespace_objects(namespace)
        with pytest.raises(arrowshm.QuotaExceededError) as exc:
            arrowshm.put("big", make_table(100_000))
        assert exc.value.limit == 200_000  # type: ignore[attr-defined]
        assert namespace_objects(namespace) == before
        with pytest.raises(arrowshm.NotFoundError):
            arrowshm.info("big")
        used = reg.bytes_used
        arrowshm.delete("small")
        assert arrowshm.usage().live_bytes < used  # its segment: a spare now
        arrowshm.gc(spares=True)
        assert reg.bytes_used < used
    finally:
        reg.set_quota(None)


def test_a_full_registry_raises_registry_full_error(monkeypatch: pytest.MonkeyPatch,
                                                    namespace: str) -> None:
    monkeypatch.setenv("ARROWSHM_REGISTRY_CAPACITY", "4")
    for i in range(4):
        arrowshm.put(f"n{i}", make_table(1))
    with pytest.raises(arrowshm.RegistryFullError, match="full"):
        arrowshm.put("n4", make_table(1))
    assert len(data_objects(namespace)) == 4
    arrowshm.delete("n0")
    arrowshm.put("n4", make_table(1))  # a deleted entry is reused
    assert arrowshm.get("n4").num_rows == 1
    for i in range(1, 5):
        arrowshm.get(f"n{i}")


def test_corrupt_or_foreign_headers_raise_clear_errors() -> None:
    seg = Segment.open(arrowshm.put("c", make_table(10)).segment, writable=True)
    seg.words[L.S_FORMAT_VERSION] = 99
    clear_cache()
    with pytest.raises(arrowshm.FormatVersionError, match="format version 99"):
        arrowshm.get("c")
    seg.words[L.S_MAGIC] = 12345
    with pytest.raises(arrowshm.CorruptSegmentError, match="not an arrowshm segment"):
        arrowshm.get("c")
    arrowshm.delete("c")


def test_corrupt_payload_is_caught_by_validation(namespace: str) -> None:
    arrowshm.put("p", pa.table({"s": ["a", "bb", "ccc"] * 100}))
    info = arrowshm.info("p")
    seg = Segment.open(info.segment, writable=True)
    payload = np.frombuffer(seg.mm, dtype=np.uint8)[L.SEGMENT_HEADER_BYTES:]
    raw = payload.tobytes()
    # corrupt the utf8 offsets: find the body after the schema and scramble it
    body_at = raw.rfind(b"\x00\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00")
    assert body_at > 0
    payload[body_at : body_at + 64] = 0xFF
    clear_cache()
    with pytest.raises(arrowshm.CorruptSegmentError):
        arrowshm.get("p", validate=True)
    arrowshm.delete("p")


def test_stale_registry_format_is_rejected(namespace: str) -> None:
    reg = registry_of(namespace)
    reg.words[L.H_FORMAT_VERSION] = 7
    try:
        out = run_python(
            """
            import arrowshm
            try:
                arrowshm.list_datasets()
            except arrowshm.FormatVersionError as e:
                print("ok", e)
            """
        ).stdout
        assert out.startswith("ok") and "format version 7" in out
    finally:
        reg.words[L.H_FORMAT_VERSION] = L.FORMAT_VERSION
