"""Build a table in place, then seal: published with no copy, or nothing at all."""

from __future__ import annotations

import gc
import signal

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._datasets.build import _segment_of
from arrowshm._introspect import buffers_in_shm, shm_mappings
from arrowshm.testing import data_objects
from tests.helpers import run_python

SCHEMA = pa.schema(
    [
        ("id", pa.int64(), False),
        ("x", pa.float64()),
        ("flag", pa.bool_()),
        ("ts", pa.timestamp("us")),
        ("name", pa.string()),
        ("blob", pa.large_binary()),
        ("code", pa.binary(3)),
        ("small", pa.int8()),
    ]
)


def _fill(b: arrowshm.TableBuilder, n: int) -> None:
    b["id"][:] = np.arange(n)
    b["x"][:] = np.arange(n) * 0.5
    b["flag"][:] = np.packbits(np.arange(n) % 2 == 0, bitorder="little")
    b["ts"][:] = np.arange(n) * 1_000_000
    b.set_strings("name", [f"row{i}" if i % 5 else None for i in range(n)])
    b.set_strings("blob", [bytes([i % 256]) * (i % 4) for i in range(n)])
    b["code"][:] = np.frombuffer(b"abc" * n, dtype=np.uint8).reshape(n, 3)
    b["small"][:] = (np.arange(n) % 100).astype(np.int8)
    validity = b.validity("x")
    validity[0] &= np.uint8(0b11111110)  # row 0 of x is null


def test_build_then_seal_round_trips_every_supported_type() -> None:
    n = 1000
    with arrowshm.build("built", SCHEMA, n, string_bytes={"name": 8 * n, "blob": 4 * n}) as b:
        _fill(b, n)
    t = arrowshm.get("built")
    t.validate(full=True)
    assert t.num_rows == n and t.schema == SCHEMA
    assert t.column("id").to_pylist() == list(range(n))
    assert t.column("x").null_count == 1 and t.column("x")[0].as_py() is None
    assert t.column("x")[3].as_py() == 1.5
    assert t.column("flag").to_pylist()[:3] == [True, False, True]
    assert t.column("name").null_count == n // 5
    assert t.column("name")[7].as_py() == "row7"
    assert t.column("blob")[6].as_py() == b"\x06\x06"
    assert t.column("code")[2].as_py() == b"abc"
    assert t.column("flag").null_count == 0  # all valid: the count was patched to 0
    assert arrowshm.info("built").num_rows == n


def test_the_published_table_is_the_built_memory_not_a_copy() -> None:
    n = 100_000
    b = arrowshm.build("nocopy", pa.schema([("v", pa.float64(), False)]), n)
    v = b["v"]
    v[:] = np.arange(n)
    seg = _segment_of(b)
    offset_in_segment = v.ctypes.data - seg.address
    b.seal()
    t = arrowshm.get("nocopy")
    inside, total, where = buffers_in_shm(t)
    assert inside == total
    (path,) = where
    start = next(m.start for m in shm_mappings() if m.path == path)
    assert t.column("v").chunks[0].buffers()[1].address - start == offset_in_segment
    assert not v.flags.writeable  # the published version is read-only from here on


def test_an_exception_in_the_block_publishes_nothing_and_frees_the_segment(
    namespace: str,
) -> None:
    with pytest.raises(RuntimeError), arrowshm.build("boom", SCHEMA, 10,
                                                     string_bytes=100) as b:
        b["id"][:] = 1
        raise RuntimeError("producer failed")
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.get("boom")
    assert data_objects(namespace) == []


def test_a_forgotten_builder_is_freed_when_collected(namespace: str) -> None:
    b = arrowshm.build("lost", SCHEMA, 10, string_bytes=100)
    assert len(data_objects(namespace)) == 1
    del b
    gc.collect()
    assert data_objects(namespace) == []
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.info("lost")


@pytest.mark.timeout(120)
def test_a_builder_killed_with_sigkill_publishes_nothing_and_gc_reclaims_it(
    namespace: str,
) -> None:
    arrowshm.put("k", pa.table({"id": pa.array([7], pa.int64())}))
    proc = run_python(
        """
        import os, signal
        import numpy as np, pyarrow as pa
        import arrowshm
        b = arrowshm.build("k", pa.schema([("id", pa.int64())]), 1_000_000)
        b["id"][:] = 1
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    assert arrowshm.get("k").column("id").to_pylist() == [7]  # untouched
    assert len(data_objects(namespace)) == 2
    report = arrowshm.gc()
    assert len(report.segments) == 1
    assert len(data_objects(namespace)) == 1


def test_bad_offsets_are_refused_at_seal_and_can_be_fixed() -> None:
    b = arrowshm.build("offs", pa.schema([("s", pa.string(), False)]), 2, string_bytes=4)
    b.offsets("s")[:] = [0, 2, 9]  # past string_bytes
    with pytest.raises(arrowshm.CorruptSegmentError, match="string_bytes=4"):
        b.seal()
    b.offsets("s")[:] = [0, 2, 4]
    b.data("s")[:] = np.frombuffer(b"abcd", dtype=np.uint8)
    b.seal()
    assert arrowshm.get("offs").column("s").to_pylist() == ["ab", "cd"]
    with pytest.raises(arrowshm.InvalidArgumentError, match="sealed"):
        b["s"]


def test_bad_arguments_create_nothing(namespace: str) -> None:
    with pytest.raises(arrowshm.InvalidArgumentError, match="does not support"):
        arrowshm.build("bad", pa.schema([("l", pa.list_(pa.int64()))]), 3)
    with pytest.raises(arrowshm.InvalidArgumentError, match="string_bytes"):
        arrowshm.build("bad", pa.schema([("s", pa.string())]), 3)
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.build("bad", pa.schema([("x", pa.int64())]), -1)
    with pytest.raises(arrowshm.InvalidNameError):
        arrowshm.build("", pa.schema([("x", pa.int64())]), 1)
    b = arrowshm.build("ok", pa.schema([("x", pa.int64(), False)]), 1)
    with pytest.raises(arrowshm.InvalidArgumentError, match="no column"):
        b["nope"]
    with pytest.raises(arrowshm.InvalidArgumentError, match="not nullable"):
        b.validity("x")
    b.abort()
    assert data_objects(namespace) == []


def test_an_empty_table_can_be_built() -> None:
    with arrowshm.build("empty", SCHEMA, 0, string_bytes=0):
        pass
    t = arrowshm.get("empty")
    assert t.num_rows == 0 and t.schema == SCHEMA


def test_built_versions_are_read_zero_copy_by_another_process() -> None:
    n = 50_000
    for version in (1, 2):
        with arrowshm.build("shared", pa.schema([("v", pa.int64(), False)]), n) as b:
            b["v"][:] = np.arange(n) * version
    out = run_python(
        """
        import arrowshm
        from arrowshm._introspect import buffers_in_shm
        t = arrowshm.get("shared")
        inside, total, _ = buffers_in_shm(t)
        print(inside == total, arrowshm.info("shared").version, t.column("v")[-1].as_py())
        """
    ).stdout.split()
    assert out == ["True", "2", str((n - 1) * 2)]
