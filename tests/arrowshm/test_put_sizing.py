"""What a put computes before it writes: the stream's size, the schema's facts.

A table of one record batch is sized from its schema message and its batch
message (no counting pass); anything else is counted. The size must be exact
for every type: the stream is written into a segment of exactly that size.
The schema message and fingerprint are reused for a schema equal to a recent
one, and only then.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._arrow import IPC_OPTIONS, schema_fingerprint
from arrowshm._datasets import put as P


def _counted(table: pa.Table) -> int:
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as w:
        w.write_table(table)
    return int(sink.size())


TABLES = {
    "int64": lambda: pa.table({"x": [1, 2, 3]}),
    "strings and nulls": lambda: pa.table({"s": ["a", None, "ccc"], "f": [1.0, None, 2.0]}),
    "nested": lambda: pa.table({
        "l": pa.array([[1, 2], [3], None]),
        "st": pa.array([{"a": 1, "b": "x"}, None, {"a": 2, "b": None}]),
    }),
    "sliced": lambda: pa.table({"x": np.arange(1000)}).slice(17, 301),
    "sliced large strings": lambda: pa.table(
        {"x": pa.array(["x" * i for i in range(100)], pa.large_string())}).slice(3, 50),
    "sliced booleans": lambda: pa.table({"b": pa.array([True, False, None] * 11)}).slice(5),
    "decimal": lambda: pa.table({"d": pa.array([1, 2, None], pa.decimal128(10, 2))}),
    "metadata": lambda: pa.table({"x": [1, 2]}, metadata={"k": "v"}),
    "two batches": lambda: pa.Table.from_batches(
        [pa.record_batch({"x": [1]}), pa.record_batch({"x": [2]})]),
    "dictionary": lambda: pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode()}),
    "nested dictionary": lambda: pa.table({"l": pa.array(
        [["a"], ["b", "a"]], pa.list_(pa.dictionary(pa.int8(), pa.string())))}),
    "empty": lambda: pa.table({"x": pa.array([], pa.int64())}),
    "timestamps and binary": lambda: pa.table({
        "ts": pa.array([1, 2], pa.timestamp("ns", tz="UTC")), "bin": pa.array([b"ab", b""])}),
    "union": lambda: pa.table({"u": pa.UnionArray.from_sparse(
        pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])])}),
    "fixed size list": lambda: pa.table(
        {"fsl": pa.FixedSizeListArray.from_arrays(pa.array(range(6)), 2)}),
    "nulls": lambda: pa.table({"n": pa.nulls(5)}),
    "map": lambda: pa.table({"m": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64()))}),
    "no columns": lambda: pa.table({"x": [1, 2]}).drop_columns(["x"]),
}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_the_stream_size_is_exact_and_the_table_round_trips(kind: str) -> None:
    table = TABLES[kind]()
    assert P._stream_bytes(table, P._schema_facts(table.schema)) == _counted(table)
    name = "size/" + kind.replace(" ", "-")
    arrowshm.put(name, table)
    assert arrowshm.get(name).equals(table)
    assert arrowshm.info(name).nbytes == _counted(table)


def test_equal_schemas_share_their_facts_and_different_ones_do_not() -> None:
    a = pa.table({"x": [1]}, metadata={"k": "v"})
    b = pa.table({"x": [2, 3]}, metadata={"k": "v"})
    fa = P._schema_facts(a.schema)
    assert P._schema_facts(b.schema) is fa
    assert fa.fp == schema_fingerprint(a.schema)
    for other in (pa.table({"x": [1]}), pa.table({"x": [1]}, metadata={"k": "w"}),
                  pa.table({"y": [1]}, metadata={"k": "v"}),
                  pa.table({"x": pa.array([1], pa.int32())}, metadata={"k": "v"})):
        facts = P._schema_facts(other.schema)
        assert facts is not fa
        assert facts.fp == schema_fingerprint(other.schema)


def test_schema_metadata_in_another_key_order_is_another_schema() -> None:
    one = pa.schema([("x", pa.int64())], metadata={"a": "1", "b": "2"})
    two = pa.schema([("x", pa.int64())], metadata={"b": "2", "a": "1"})
    assert one.equals(two, check_metadata=True)  # (Arrow's equality ignores the order)
    f1, f2 = P._schema_facts(one), P._schema_facts(two)
    assert f1 is not f2
    assert f2.message.equals(two.serialize()) and f2.fp == schema_fingerprint(two)


def test_puts_of_a_recurring_schema_publish_its_fingerprint(namespace: str) -> None:
    t = pa.table({"x": np.arange(10)})
    for i in range(3):
        arrowshm.put("fp", t.slice(i))
    from arrowshm._shm.registry import registry_of

    view = registry_of(namespace).get_entry("fp")
    assert view.schema_fp == schema_fingerprint(t.schema)


def test_a_stream_or_a_stale_name_lookup_never_lets_a_put_through() -> None:
    schema = pa.schema([("x", pa.int64())])
    arrowshm.put("k", pa.table({"x": [1]}))
    arrowshm.get("k")
    arrowshm.delete("k")
    with arrowshm.StreamWriter("k", schema, capacity_bytes=1 << 16), \
            pytest.raises(arrowshm.ConflictError):
        arrowshm.put("k", pa.table({"x": [2]}))
    arrowshm.delete("k")
    arrowshm.put("k", pa.table({"x": [3]}))
    assert arrowshm.get("k").column(0).to_pylist() == [3]
