"""pandas, polars, DuckDB and process pools on top of shared-memory tables.

Zero-copy claims are checked the only way that cannot be fooled by a cache:
the consumer's buffer addresses must lie inside this process's mappings of
/dev/shm (``arrowshm._introspect``), or — for DuckDB, whose buffers we cannot
see — the process's anonymous memory must not grow by the table's size.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import arrowshm
from arrowshm._introspect import buffers_in_shm, shm_mappings
from tests.helpers import make_table, run_python

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")


def _in_shm(address: int) -> bool:
    return any(m.start <= address < m.end for m in shm_mappings())


def _rss_anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _put_in_child(name: str, rows: int) -> None:
    """The producer is another process, so nothing of the table is in our heap."""
    run_python(f"""
        import numpy as np, pyarrow as pa, arrowshm
        n = {rows}
        arrowshm.put({name!r}, pa.table({{
            "x": np.arange(n, dtype=np.int64),
            "f": np.arange(n, dtype=np.float64) * 0.5,
            "s": pa.array([str(i % 97) for i in range(min(n, 1000))] * (n // 1000)),
        }}))
    """)


# -- put accepts the ecosystem's frames -------------------------------------------------------


class _CStreamOnly:
    """Exports nothing but ``__arrow_c_stream__`` (like nanoarrow or a Rust library)."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._table.__arrow_c_stream__(requested_schema)


def test_put_accepts_pandas_polars_duckdb_and_c_stream_exporters() -> None:
    table = make_table(1000)
    con = duckdb.connect()
    arrowshm.put("pandas", table.to_pandas())
    arrowshm.put("polars", pl.from_arrow(table))
    con.register("src", table)
    arrowshm.put("duckdb", con.sql("SELECT * FROM src ORDER BY id"))
    arrowshm.put("capsule", _CStreamOnly(table))
    for name in ["pandas", "polars", "duckdb", "capsule"]:
        got = arrowshm.get(name)
        assert got.num_rows == 1000, name
        assert got.column("id").to_pylist() == table.column("id").to_pylist(), name
        assert got.column("label").to_pylist() == table.column("label").to_pylist(), name
    con.close()


# -- consumers read without copying -----------------------------------------------------------


@pytest.mark.timeout(120)
def test_polars_from_arrow_keeps_numeric_columns_in_shared_memory() -> None:
    _put_in_child("frame", 100_000)
    table = arrowshm.get("frame")
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    # the polars column's own memory, seen through a zero-copy numpy view
    x = df["x"].to_numpy()
    assert x.flags.owndata is False
    assert _in_shm(x.ctypes.data)
    assert _in_shm(df["f"].to_numpy().ctypes.data)
    # and exported back: the same shared buffer, not a polars copy
    back = df.to_arrow()
    assert back.column("x").chunks[0].buffers()[1].address == (
        table.column("x").chunks[0].buffers()[1].address
    )
    assert int(df["x"].sum()) == 100_000 * 99_999 // 2


@pytest.mark.timeout(180)
def test_duckdb_queries_the_shared_table_without_copying_it() -> None:
    rows = 16_000_000  # 128 MB per numeric column
    _put_in_child("big", rows)
    shared = arrowshm.get("big")
    numeric_bytes = shared.column("x").nbytes + shared.column("f").nbytes
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.sql("SELECT count(*) FROM (SELECT 1 AS a)").fetchall()  # warm the engine up
    before = _rss_anon_bytes()
    # DuckDB finds the local variable `shared` by name and scans its Arrow buffers
    result = con.sql("SELECT sum(x), sum(f), count(*) FROM shared").fetchall()[0]
    grown = _rss_anon_bytes() - before
    assert result == (rows * (rows - 1) // 2, 0.5 * rows * (rows - 1) // 2, rows)
    # a copy of the scanned columns would add 256 MB of private memory
    assert grown < numeric_bytes // 4, f"DuckDB grew private memory by {grown:,} bytes"
    inside, total, _ = buffers_in_shm(shared)
    assert inside == total
    con.close()


def test_pandas_default_conversion_copies_and_to_pandas_does_not() -> None:
    _put_in_child("pdf", 10_000)
    table = arrowshm.get("pdf")
    # what the docs say: the default to_pandas consolidates blocks, i.e. copies
    plain = table.to_pandas()
    assert not _in_shm(plain["x"].to_numpy().ctypes.data)
    df = arrowshm.to_pandas(table)
    assert _in_shm(df["x"].to_numpy().ctypes.data)
    assert _in_shm(df["f"].to_numpy().ctypes.data)
    assert df["x"].sum() == plain["x"].sum()
    arrow_backed = arrowshm.to_pandas(table, arrow_dtypes=True)
    strings = arrow_backed["s"].array._pa_array  # the Arrow array behind the column
    assert all(_in_shm(b.address) for c in strings.chunks for b in c.buffers() if b is not None)
    assert arrow_backed["s"].tolist() == table.column("s").to_pylist()


def test_to_pandas_rejects_what_is_not_arrow() -> None:
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.to_pandas({"x": [1]})  # type: ignore[arg-type]


# -- streams export __arrow_c_stream__ --------------------------------------------------------


_STREAM_WRITER = """
import time, numpy as np, pyarrow as pa, arrowshm
from arrowshm import stream_info
s = pa.schema([("i", pa.int64())])
with arrowshm.StreamWriter("live", s, capacity_bytes=1 << 20) as w:
    deadline = time.monotonic() + 60
    while len(stream_info("live").readers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    for k in range(20):
        w.write(pa.record_batch([pa.array(np.arange(k * 100, k * 100 + 100))], schema=s))
"""


@pytest.mark.timeout(120)
def test_a_stream_reader_is_an_arrow_c_stream_for_pyarrow_and_duckdb() -> None:
    writer = subprocess.Popen([sys.executable, "-c", _STREAM_WRITER], env=dict(os.environ))
    try:
        with arrowshm.StreamReader("live", open_timeout=60) as r1, \
                arrowshm.StreamReader("live", open_timeout=60) as r2:  # noqa: F841
            rbr = pa.RecordBatchReader.from_stream(r1)
            assert rbr.schema == pa.schema([("i", pa.int64())])
            first = rbr.read_next_batch()
            inside, total, _ = buffers_in_shm(first)
            assert inside == total  # a view of the ring, not a copy
            rest = rbr.read_all()
            assert first.num_rows + rest.num_rows == 2000
            del first, rest, rbr
            con = duckdb.connect()
            assert con.sql("SELECT sum(i), count(*) FROM r2").fetchall()[0] == (
                2000 * 1999 // 2, 2000)
            con.close()
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


# -- process pools hand Refs, never tables ----------------------------------------------------


def _double(ref: arrowshm.Ref) -> arrowshm.Ref:
    table = ref.get()
    out = table.set_column(0, "id", pc.multiply(table.column("id"), 2))
    return arrowshm.put(f"{ref.name}.doubled", out).ref


@pytest.mark.timeout(180)
def test_pool_workers_receive_a_ref_and_return_a_ref() -> None:
    refs = [arrowshm.put(f"part/{i}", make_table(50_000, seed=i)).ref for i in range(4)]
    for r in refs:
        assert len(pickle.dumps(r)) < 200  # what crosses the pipe: a name and a version
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_double, refs, timeout=150))
    for i, r in enumerate(results):
        assert isinstance(r, arrowshm.Ref)
        assert r.name == f"part/{i}.doubled" and r.version == 1
        got = r.get()
        want = make_table(50_000, seed=i).column("id").to_numpy() * 2
        assert np.array_equal(got.column("id").to_numpy(), want)
        assert got.column("label").equals(make_table(50_000, seed=i).column("label"))
