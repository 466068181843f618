"""Streams across real processes on real shared memory (issue #3, section 7).

Every batch is *stamped*: each value derives from its sequence number, so a
reader can tell a lost, duplicated, reordered or torn batch. Child processes
are spawned (never forked: the parent ran numba) and run the module-level
functions below; each cross-process test has a watchdog timeout.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import signal
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import arrowshm
from arrowshm import stream_info
from arrowshm._introspect import buffers_in_shm
from arrowshm._shm import layout as L

SCHEMA = pa.schema([("seq", pa.int64()), ("v", pa.float64()), ("s", pa.string())])
CTX = mp.get_context("spawn")


def stamped(i: int, rows: int | None = None) -> pa.RecordBatch:
    """Batch *i*: every value derives from *i* (see :func:`check`)."""
    n = 1 + (i * 7) % 61 if rows is None else rows
    seq = np.full(n, i, dtype=np.int64)
    v = np.arange(n, dtype=np.float64) + i
    s = pc.binary_join_element_wise(pa.array(np.full(n, i).astype(str)),
                                    pc.cast(pa.array(np.arange(n)), pa.string()), ":")
    return pa.record_batch([pa.array(seq), pa.array(v), s], schema=SCHEMA)


def check(batch: pa.RecordBatch) -> int:
    """The sequence number of a stamped batch; AssertionError if it is torn."""
    seq = batch.column(0).to_numpy()
    assert len(seq) > 0, "empty batch"
    i = int(seq[0])
    n = 1 + (i * 7) % 61
    assert len(seq) == n, f"batch {i}: {len(seq)} rows, {n} expected"
    assert (seq == i).all(), f"batch {i}: mixed seq column"
    assert (batch.column(1).to_numpy() == np.arange(n) + i).all(), f"batch {i}: torn v"
    assert batch.column(2).to_pylist() == [f"{i}:{k}" for k in range(n)], f"batch {i}: torn s"
    return i


# ----------------------------------------------------------------------------------------
# child process bodies (module level: the "spawn" start method imports them)


def _reader(name: str, q: Any, go: Any = None, keep_first: bool = False,
            hold: bool = False, start: str = "earliest", use_async: bool = False) -> None:
    """Read stream *name* to its end, checking every batch; report through *q*.

    With *go*: wait for it before reading - or, with *hold*, keep every batch
    read until *go* is set, then drop them all and read on.
    """
    try:
        with arrowshm.StreamReader(name, start=start, open_timeout=60, spin_us=0) as r:
            q.put(("attached", os.getpid(), r.schema.names))
            if go is not None and not hold:
                assert go.wait(120), "never told to go"
            seqs: list[int] = []
            errors: list[str] = []
            kept: Any = None
            ticks = 0

            def take(b: pa.RecordBatch) -> None:
                nonlocal kept
                try:
                    seqs.append(check(b))
                except AssertionError as exc:
                    errors.append(str(exc))
                if keep_first and kept is None:
                    kept = (seqs[-1], b.column(1), b.column(2).to_pylist())

            if hold:
                held = []
                while not go.is_set():
                    try:
                        b = r.read(timeout=0.02)
                    except arrowshm.WaitTimeoutError:
                        continue
                    if b is not None:
                        take(b)
                        held.append(b)
                        del b
                q.put(("held", len(held)))
                del held
            if use_async:
                async def main() -> None:
                    nonlocal ticks
                    stop = False

                    async def ticker() -> None:
                        nonlocal ticks
                        while not stop:
                            ticks += 1
                            await asyncio.sleep(0.001)

                    t = asyncio.create_task(ticker())
                    async for b in r:
                        take(b)
                    stop = True
                    await t

                asyncio.run(main())
            else:
                for b in r:
                    take(b)
            kept_ok = None
            if kept is not None:
                i, col, strings = kept
                gc.collect()
                kept_ok = bool(
                    (col.to_numpy() == np.arange(1 + (i * 7) % 61) + i).all()
                    and strings == [f"{i}:{k}" for k in range(1 + (i * 7) % 61)]
                )
            q.put(("done", seqs, errors, r.missed, kept_ok, ticks))
    except BaseException as exc:  # report, never hang the parent
        q.put(("error", repr(exc)))


def _holder(name: str, q: Any, n: int) -> None:
    """Read *n* batches, keep them, report, then wait to be killed."""
    r = arrowshm.StreamReader(name, open_timeout=60, spin_us=0)
    kept = [r.read(timeout=60) for _ in range(n)]
    q.put(("holding", os.getpid(), len(kept)))
    time.sleep(600)


def _writer_then_hang(name: str, q: Any, n: int) -> None:
    w = arrowshm.StreamWriter(name, SCHEMA, capacity_bytes=1 << 16)
    for i in range(n):
        w.write(stamped(i))
    q.put(("written", os.getpid()))
    time.sleep(600)


def _second_writer(name: str, q: Any) -> None:
    try:
        arrowshm.StreamWriter(name, SCHEMA)
        q.put("opened")
    except arrowshm.WriterExistsError as exc:
        q.put(("exists", exc.pid))  # type: ignore[attr-defined]


def _schema_peek(name: str, q: Any) -> None:
    with arrowshm.StreamReader(name, open_timeout=60) as r:
        q.put((r.schema.names, str(r.schema.field("v").type), r.position))


# ----------------------------------------------------------------------------------------
# helpers


def wait_for_readers(name: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(stream_info(name).readers) >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{n} readers never attached to {name!r}")


def get(q: Any, kind: str, timeout: float = 60) -> tuple[Any, ...]:
    msg = q.get(timeout=timeout)
    assert msg[0] == kind, msg
    return tuple(msg)


def start(target: Any, *args: Any) -> Any:
    p = CTX.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def finish(*procs: Any) -> None:
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join(10)


# ----------------------------------------------------------------------------------------
# delivery


@pytest.mark.timeout(120)
def test_two_reader_processes_get_every_batch_in_order_and_whole() -> None:
    n = 3000
    q1, q2 = CTX.Queue(), CTX.Queue()
    with arrowshm.StreamWriter("deliver", SCHEMA, capacity_bytes=1 << 16, slots=64,
                               delete_on_close=True) as w:
        p1 = start(_reader, "deliver", q1)
        p2 = start(_reader, "deliver", q2)
        get(q1, "attached")
        get(q2, "attached")
        for i in range(n):
            w.write(stamped(i), timeout=60)
        laps = w._head / w.capacity_bytes
    for q in (q1, q2):
        _, seqs, errors, missed, _, _ = get(q, "done")
        assert errors == [] and missed == 0
        assert seqs == list(range(n))
    finish(p1, p2)
    assert laps > 10


def test_batches_are_zero_copy_views_of_the_arena(namespace: str) -> None:
    with arrowshm.StreamWriter("zc", SCHEMA, capacity_bytes=1 << 20, delete_on_close=True) as w, \
            arrowshm.StreamReader("zc") as r:
        w.write(stamped(5, rows=1000))
        b = r.read(timeout=5)
        assert b is not None and b.num_rows == 1000
        inside, total, where = buffers_in_shm(b)
        assert total == 4 and inside == total
        assert where == {f"/dev/shm{w._seg.name}"}
        copy = arrowshm.StreamReader.detach(b)
        assert copy.equals(b)
        assert buffers_in_shm(copy)[0] == 0
        assert r.held == 1
        del b
        gc.collect()
        assert r.held == 0


def test_table_and_batch_round_trip_many_types() -> None:
    t = pa.table({
        "i": pa.array([1, None, 3], pa.int32()),
        "l": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
        "st": pa.array([{"a": 1, "b": "x"}, None, {"a": 3, "b": None}]),
        "ts": pa.array([0, 1, 2], pa.timestamp("ns")),
        "b": pa.array([True, False, None]),
        "bin": pa.array([b"x", b"", None]),
        "sv": pa.array(["a", "bb", None], pa.string_view()),
        "m": pa.array([[("k", 1)], [], None], pa.map_(pa.string(), pa.int64())),
        "dec": pa.array([Decimal("1.00"), None, Decimal("-3.25")], pa.decimal128(10, 2)),
    })
    with arrowshm.StreamWriter("types", t.schema, capacity_bytes=1 << 16,
                               delete_on_close=True) as w, arrowshm.StreamReader("types") as r:
        for k in range(200):  # lap a few times, sliced batches too
            w.write(t.slice(k % 3))
            got = r.read(timeout=5)
            assert got is not None and got.equals(t.slice(k % 3).to_batches()[0])


# ----------------------------------------------------------------------------------------
# back-pressure


@pytest.mark.timeout(120)
def test_block_mode_write_times_out_naming_the_reader_then_resumes() -> None:
    q = CTX.Queue()
    go = CTX.Event()
    with arrowshm.StreamWriter("bp", SCHEMA, capacity_bytes=1 << 20, slots=8,
                               delete_on_close=True) as w:
        p = start(_reader, "bp", q, go)
        _, pid, _ = get(q, "attached")
        for i in range(8):
            w.write(stamped(i), timeout=5)
        with pytest.raises(arrowshm.WaitTimeoutError) as err:
            w.write(stamped(8), timeout=0.3)
        assert isinstance(err.value, TimeoutError)
        assert err.value.reader_pids == [pid]  # type: ignore[attr-defined]
        assert f"pid {pid}" in str(err.value) and "unread" in str(err.value)
        info = stream_info("bp")
        assert info.readers[0].lag == 8
        go.set()
        for i in range(8, 40):
            w.write(stamped(i), timeout=30)
    _, seqs, errors, missed, _, _ = get(q, "done")
    assert seqs == list(range(40)) and errors == [] and missed == 0
    finish(p)


@pytest.mark.parametrize("mode", ["block", "overwrite"])
@pytest.mark.timeout(120)
def test_held_batches_block_the_writer_in_both_modes_until_released(mode: str) -> None:
    q = CTX.Queue()
    go = CTX.Event()
    n = 400 if mode == "block" else 20_000  # overwrite laps the reader until its pins fill up
    with arrowshm.StreamWriter("held", SCHEMA, capacity_bytes=1 << 16, slots=256, mode=mode,
                               delete_on_close=True) as w:
        p = start(_reader, "held", q, go, False, True)
        _, pid, _ = get(q, "attached")
        written = 0
        with pytest.raises(arrowshm.WaitTimeoutError) as err:
            for i in range(n):  # the reader reads all and keeps all: pins fill the arena
                w.write(stamped(i), timeout=1)
                written += 1
        assert isinstance(err.value, TimeoutError)
        assert err.value.reader_pids == [pid]  # type: ignore[attr-defined]
        assert f"reader 0 (pid {pid}) holds" in str(err.value)
        assert 0 < written < n
        assert stream_info("held").readers[0].held_batches > 0
        go.set()
        get(q, "held")
        for i in range(written, n):
            w.write(stamped(i), timeout=30)
    _, seqs, errors, missed, _, _ = get(q, "done")
    assert errors == []
    assert seqs == sorted(set(seqs)) and seqs[-1] == n - 1
    assert len(seqs) + missed == n
    if mode == "block":
        assert missed == 0
    finish(p)


def test_a_held_batch_is_written_around_not_waited_for() -> None:
    with arrowshm.StreamWriter("around", SCHEMA, capacity_bytes=1 << 16, slots=16,
                               delete_on_close=True) as w, arrowshm.StreamReader("around") as r:
        w.write(stamped(0))
        kept = r.read(timeout=1)
        for i in range(1, 2000):
            w.write(stamped(i), timeout=5)  # never waits for the kept batch
            assert check(r.read(timeout=5)) == i  # type: ignore[arg-type]
        assert w._head / w.capacity_bytes > 20
        assert check(kept) == 0  # type: ignore[arg-type]
        assert stream_info("around").readers[0].held_batches == 1


# ----------------------------------------------------------------------------------------
# lifetime: a kept column survives the writer lapping the ring


@pytest.mark.parametrize("mode", ["block", "overwrite"])
@pytest.mark.timeout(120)
def test_a_kept_column_is_unchanged_after_the_writer_laps_the_ring_many_times(mode: str) -> None:
    q = CTX.Queue()
    n = 2500
    with arrowshm.StreamWriter("keep", SCHEMA, capacity_bytes=1 << 16, slots=64, mode=mode,
                               delete_on_close=True) as w:
        p = start(_reader, "keep", q, None, True)
        get(q, "attached")
        for i in range(n):
            w.write(stamped(i), timeout=60)
        laps = w._head / w.capacity_bytes
    _, seqs, errors, missed, kept_ok, _ = get(q, "done")
    assert kept_ok is True
    assert errors == []
    assert laps > 20
    assert len(seqs) + missed == n
    finish(p)


# ----------------------------------------------------------------------------------------
# overwrite mode


@pytest.mark.timeout(120)
def test_overwrite_mode_missed_count_adds_up() -> None:
    q = CTX.Queue()
    go = CTX.Event()
    n = 500
    with arrowshm.StreamWriter("ovw", SCHEMA, capacity_bytes=1 << 16, slots=32,
                               mode="overwrite", delete_on_close=True) as w:
        p = start(_reader, "ovw", q, go)
        get(q, "attached")
        for i in range(n):
            w.write(stamped(i), timeout=0)  # never waits: the reader is not reading
        go.set()
        for i in range(n, 2 * n):
            w.write(stamped(i), timeout=10)
    _, seqs, errors, missed, _, _ = get(q, "done")
    assert errors == []
    assert missed > 0
    assert seqs == sorted(set(seqs))
    assert len(seqs) + missed == 2 * n
    assert seqs[-1] == 2 * n - 1
    finish(p)


def test_overwrite_missed_in_process_matches_the_gaps() -> None:
    with arrowshm.StreamWriter("gaps", SCHEMA, capacity_bytes=1 << 16, slots=16,
                               mode="overwrite", delete_on_close=True) as w, \
            arrowshm.StreamReader("gaps") as r:
        got = []
        for i in range(300):
            w.write(stamped(i), timeout=0)
            if i % 37 == 0:
                while (b := r.read(timeout=0.01) if stream_info("gaps").readers[0].lag
                       else None) is not None:
                    got.append(check(b))
        w.close()
        got += [check(b) for b in r]
        gaps = sum(b - a - 1 for a, b in zip([-1, *got], got, strict=False))
        assert r.missed == gaps > 0
        assert got[-1] == 299


# ----------------------------------------------------------------------------------------
# crashes


@pytest.mark.timeout(120)
def test_a_killed_reader_is_evicted_and_the_writer_resumes() -> None:
    q = CTX.Queue()
    with arrowshm.StreamWriter("kill", SCHEMA, capacity_bytes=1 << 16, slots=8,
                               evict_after=0.5, delete_on_close=True) as w:
        p = start(_holder, "kill", q, 3)
        wait_for_readers("kill", 1)
        for i in range(3):
            w.write(stamped(i), timeout=10)
        _, pid, _ = get(q, "holding")  # it holds 3 batches and reads no more
        i = 3
        with pytest.raises(arrowshm.WaitTimeoutError) as err:
            while True:
                w.write(stamped(i), timeout=0.2)
                i += 1
        assert err.value.reader_pids == [pid]  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
        p.join(30)
        w.write(stamped(i), timeout=30)  # evicted within evict_after, then resumes
        info = stream_info("kill")
        assert info.evicted == 1 and info.readers == []
        for k in range(i + 1, i + 100):
            w.write(stamped(k), timeout=10)


@pytest.mark.timeout(120)
def test_readers_of_a_killed_writer_get_an_error_not_a_hang() -> None:
    q = CTX.Queue()
    p = start(_writer_then_hang, "wkill", q, 5)
    r = arrowshm.StreamReader("wkill", open_timeout=60)
    _, pid = get(q, "written")
    got = [check(r.read(timeout=10)) for _ in range(5)]  # type: ignore[arg-type]
    assert got == list(range(5))
    os.kill(pid, signal.SIGKILL)
    p.join(30)
    with pytest.raises(arrowshm.StreamClosedError) as err:
        r.read()  # no timeout: the dead writer is detected by pid
    assert err.value.writer_pid == pid  # type: ignore[attr-defined]
    assert stream_info("wkill").state == "writer dead"
    # a new writer may take the name over; the old session is aborted and unlinked
    with arrowshm.StreamWriter("wkill", SCHEMA, delete_on_close=True) as w2:
        assert w2.session == 2
        with pytest.raises(arrowshm.StreamClosedError):
            r.read(timeout=5)
    r.close()
    arrowshm.gc()


# ----------------------------------------------------------------------------------------
# lifecycle


def test_end_of_stream_after_close_then_read_returns_none() -> None:
    with arrowshm.StreamWriter("end", SCHEMA, delete_on_close=True) as w, \
            arrowshm.StreamReader("end") as r:
        for i in range(10):
            w.write(stamped(i))
        w.close()
        assert [check(b) for b in r] == list(range(10))
        assert r.read() is None and r.read(timeout=0) is None
        assert list(r) == []
        with pytest.raises(arrowshm.StreamClosedError):
            w.write(stamped(10))


def test_late_reader_of_a_closed_stream_drains_then_ends() -> None:
    w = arrowshm.StreamWriter("late", SCHEMA, capacity_bytes=1 << 16, slots=16)
    for i in range(40):
        w.write(stamped(i), timeout=0)
    w.close()
    with arrowshm.StreamReader("late") as r:  # earliest = oldest still in the ring
        got = [check(b) for b in r]
    assert got == list(range(40 - len(got), 40)) and 0 < len(got) <= 16
    with arrowshm.StreamReader("late", start="latest") as r:
        assert r.read() is None
    arrowshm.delete("late")


def test_latest_skips_what_was_published_before_attaching() -> None:
    with arrowshm.StreamWriter("lt", SCHEMA, delete_on_close=True) as w:
        w.write(stamped(0))
        with arrowshm.StreamReader("lt", start="latest") as r:
            assert r.position == 1
            with pytest.raises(arrowshm.WaitTimeoutError):
                r.read(timeout=0.05)
            w.write(stamped(1))
            assert check(r.read(timeout=1)) == 1  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_a_second_live_writer_is_refused_and_a_closed_stream_reopens() -> None:
    w = arrowshm.StreamWriter("one", SCHEMA)
    with pytest.raises(arrowshm.WriterExistsError):
        arrowshm.StreamWriter("one", SCHEMA)
    q = CTX.Queue()
    p = start(_second_writer, "one", q)
    assert q.get(timeout=60) == ("exists", os.getpid())
    finish(p)
    r = arrowshm.StreamReader("one")
    w.write(stamped(0))
    w.close()
    other = pa.schema([("x", pa.int8())])
    with arrowshm.StreamWriter("one", other, delete_on_close=True) as w2:
        assert w2.session == 2
        with arrowshm.StreamReader("one") as r2:
            assert r2.schema == other
        # the old session's reader drains it, then ends
        assert check(r.read(timeout=1)) == 0  # type: ignore[arg-type]
        assert r.read(timeout=1) is None
    r.close()


def test_schema_mismatch_is_refused_and_the_schema_is_readable_before_any_batch() -> None:
    with arrowshm.StreamWriter("sch", SCHEMA, delete_on_close=True) as w:
        q = CTX.Queue()
        p = start(_schema_peek, "sch", q)
        names, vtype, position = q.get(timeout=60)
        assert names == ["seq", "v", "s"] and vtype == "double" and position == 0
        finish(p)
        bad = pa.record_batch([pa.array([1])], names=["seq"])
        with pytest.raises(arrowshm.SchemaMismatchError) as err:
            w.write(bad)
        assert isinstance(err.value, ValueError)
        with pytest.raises(arrowshm.SchemaMismatchError):
            w.write(stamped(0).cast(pa.schema([("seq", pa.int32()), ("v", pa.float64()),
                                               ("s", pa.string())])))
        assert w.batches_written == 0
        w.write(stamped(0).replace_schema_metadata({"k": "v"}))  # metadata is not the schema


def test_kind_conflicts_and_missing_streams() -> None:
    arrowshm.put("ds", pa.table({"x": [1]}))
    with pytest.raises(arrowshm.ConflictError):
        arrowshm.StreamWriter("ds", SCHEMA)
    with pytest.raises(arrowshm.ConflictError):
        arrowshm.StreamReader("ds")
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.StreamReader("nope")
    with arrowshm.StreamWriter("st", SCHEMA, delete_on_close=True):
        with pytest.raises(arrowshm.ConflictError):
            arrowshm.put("st", pa.table({"x": [1]}))
        with pytest.raises(arrowshm.ConflictError):
            stream_info("ds")
    arrowshm.delete("ds")


def test_invalid_arguments_are_refused_and_nothing_is_created(namespace: str) -> None:
    from arrowshm.testing import data_objects

    bad: list[dict[str, Any]] = [
        {"mode": "drop"}, {"capacity_bytes": 10}, {"max_readers": 0}, {"slots": 3},
        {"evict_after": 0}, {"spin_us": -1},
    ]
    for kwargs in bad:
        with pytest.raises(arrowshm.InvalidArgumentError):
            arrowshm.StreamWriter("bad", SCHEMA, **kwargs)
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.StreamWriter("bad", pa.schema([("d", pa.dictionary(pa.int8(), pa.string()))]))
    with pytest.raises(arrowshm.InvalidNameError):
        arrowshm.StreamWriter("../x", SCHEMA)
    with pytest.raises(arrowshm.InvalidArgumentError):
        arrowshm.StreamReader("bad", start="middle")
    assert data_objects(namespace) == []
    with arrowshm.StreamWriter("small", SCHEMA, capacity_bytes=4096, delete_on_close=True) as w:
        with pytest.raises(arrowshm.InvalidArgumentError):
            w.write(pa.record_batch([pa.array(np.zeros(1000, np.int64)),
                                     pa.array(np.zeros(1000)), pa.array(["x"] * 1000)],
                                    schema=SCHEMA))
        with pytest.raises(arrowshm.InvalidArgumentError):
            w.write("not a batch")  # type: ignore[arg-type]


def test_max_readers_is_enforced_and_a_closed_reader_frees_its_slot() -> None:
    with arrowshm.StreamWriter("max", SCHEMA, max_readers=2, delete_on_close=True):
        r1 = arrowshm.StreamReader("max")
        r2 = arrowshm.StreamReader("max")
        with pytest.raises(arrowshm.ConflictError):
            arrowshm.StreamReader("max")
        r1.close()
        r3 = arrowshm.StreamReader("max")
        assert r3.reader_id == r1.reader_id
        r2.close()
        r3.close()


def test_a_closed_reader_keeps_its_batches_valid_until_they_are_freed() -> None:
    with arrowshm.StreamWriter("drain", SCHEMA, capacity_bytes=1 << 16, slots=8,
                               delete_on_close=True) as w:
        r = arrowshm.StreamReader("drain")
        for i in range(8):
            w.write(stamped(i))
        kept = [r.read(timeout=1) for _ in range(2)]
        r.close()  # 6 unread no longer hold the writer back; the 2 held still pin
        for i in range(8, 200):
            w.write(stamped(i), timeout=5)
        assert [check(b) for b in kept] == [0, 1]  # type: ignore[arg-type]
        assert stream_info("drain").readers[0].state == "draining"
        del kept
        gc.collect()
        assert stream_info("drain").readers == []


def test_out_of_order_releases_free_the_space() -> None:
    with arrowshm.StreamWriter("ooo", SCHEMA, capacity_bytes=1 << 16, slots=64,
                               delete_on_close=True) as w, arrowshm.StreamReader("ooo") as r:
        for i in range(10):
            w.write(stamped(i))
        got = [r.read(timeout=1) for _ in range(10)]
        for k in (3, 7, 0, 9, 5, 1, 8, 2, 6, 4):
            got[k] = None
            assert r.held == sum(b is not None for b in got)
        assert stream_info("ooo").readers[0].pinned_bytes == 0
        for i in range(10, 500):
            w.write(stamped(i), timeout=5)
            assert check(r.read(timeout=5)) == i  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# asyncio


@pytest.mark.timeout(120)
def test_an_asyncio_reader_in_another_process_gets_everything_without_blocking_its_loop() -> (
    None
):
    q = CTX.Queue()
    with arrowshm.StreamWriter("aio", SCHEMA, capacity_bytes=1 << 16, slots=32,
                               delete_on_close=True) as w:
        p = start(_reader, "aio", q, None, False, 0, "earliest", True)
        get(q, "attached")
        for i in range(300):
            w.write(stamped(i), timeout=30)
            if i % 50 == 0:
                time.sleep(0.05)  # make the reader wait (in a thread, not on its loop)
    _, seqs, errors, missed, _, ticks = get(q, "done")
    assert seqs == list(range(300)) and errors == [] and missed == 0
    assert ticks > 10  # the event loop kept running while the reader waited
    finish(p)


def test_aread_times_out_and_returns_none_at_the_end() -> None:
    async def main() -> None:
        with arrowshm.StreamWriter("aend", SCHEMA, delete_on_close=True) as w, \
                arrowshm.StreamReader("aend") as r:
            with pytest.raises(arrowshm.WaitTimeoutError):
                await r.aread(timeout=0.05)
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, w.write, stamped(3))
            assert check(await r.aread(timeout=10)) == 3  # type: ignore[arg-type]
            loop.call_later(0.05, w.close)
            assert await r.aread(timeout=10) is None
            assert [b async for b in r] == []

    asyncio.run(main())


# ----------------------------------------------------------------------------------------
# introspection


def test_ls_and_info_show_streams_with_readers_lag_and_held(capsys: Any) -> None:
    from arrowshm._cli import main

    with arrowshm.StreamWriter("obs", SCHEMA, delete_on_close=True) as w, \
            arrowshm.StreamReader("obs") as r:
        for i in range(5):
            w.write(stamped(i))
        kept = r.read(timeout=1)
        assert main(["ls"]) == 0
        out = capsys.readouterr().out
        assert "obs" in out and "stream" in out and "open, 1 reader, lag max 4, 1 held" in out
        assert main(["info", "obs"]) == 0
        out = capsys.readouterr().out
        assert "mode:      block" in out and "seq: int64" in out
        assert f"pid {os.getpid()}" in out and "readers:   1" in out
        info = stream_info("obs")
        assert (info.cursor, info.readers[0].cursor, info.readers[0].lag) == (5, 1, 4)
        assert info.readers[0].held_batches == 1 and info.readers[0].alive
        assert info.writer_alive and not info.closed and info.mode == "block"
        del kept
    assert L.KIND_STREAM == 2


def test_a_message_that_ends_exactly_at_the_end_of_the_arena_is_followed_by_a_new_lap() -> None:
    schema = pa.schema([("x", pa.int64())])
    with arrowshm.StreamWriter("edge", schema, capacity_bytes=8192, slots=64,
                               delete_on_close=True) as w, arrowshm.StreamReader("edge") as r:
        fixed = pa.ipc.get_record_batch_size(pa.record_batch([pa.array([0])], schema=schema)) - 8
        rows = (8192 - w._schema_len - fixed) // 8
        first = pa.record_batch([pa.array(np.arange(rows))], schema=schema)
        w.write(first)
        assert w._head == 8192  # exactly one lap
        got = r.read(timeout=1)
        assert got is not None and got.equals(first)
        del got
        for k in range(20):
            w.write(pa.record_batch([pa.array([k])], schema=schema), timeout=5)
        values = [r.read(timeout=1).column(0)[0].as_py() for _ in range(20)]  # type: ignore[union-attr]
        assert values == list(range(20))


@pytest.mark.timeout(60)
def test_closing_a_reader_ends_a_read_blocked_in_another_thread() -> None:
    import threading

    with arrowshm.StreamWriter("thr", SCHEMA, delete_on_close=True):
        r = arrowshm.StreamReader("thr")
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(r.read()), daemon=True)
        t.start()
        time.sleep(0.05)
        r.close()
        t.join(10)
        assert got == [None]
        with pytest.raises(arrowshm.InvalidArgumentError):
            r.read()


def test_two_threads_share_a_reader_and_split_the_batches() -> None:
    import threading

    with arrowshm.StreamWriter("split", SCHEMA, capacity_bytes=1 << 20, slots=1024,
                               delete_on_close=True) as w, arrowshm.StreamReader("split") as r:
        seen: list[list[int]] = [[], []]

        def work(k: int) -> None:
            for b in r:
                seen[k].append(check(b))

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in (0, 1)]
        for t in threads:
            t.start()
        for i in range(500):
            w.write(stamped(i), timeout=10)
        w.close()
        for t in threads:
            t.join(30)
        assert sorted(seen[0] + seen[1]) == list(range(500))
        assert seen[0] == sorted(seen[0]) and seen[1] == sorted(seen[1])
