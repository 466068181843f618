"""StreamWriter.write_many and StreamReader.read_many: bursts with one kernel call a side.

The batches are the self-checking ones of tests/arrowshm/test_stream.py. A run
that ``read_many`` returns shares one hold on the ring: it is released when
the last of its batches is freed.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm import stream_info
from arrowshm._introspect import buffers_in_shm
from tests.arrowshm.test_stream import SCHEMA, check, stamped

CTX = mp.get_context("spawn")


def _reader(**kw: Any) -> arrowshm.StreamReader:
    return arrowshm.StreamReader("b", **kw)


def test_write_many_then_read_many_round_trips_in_order() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 20, delete_on_close=True) as w, \
            _reader() as r:
        w.write_many([stamped(i) for i in range(50)])
        w.write_many([pa.Table.from_batches([stamped(50), stamped(51)]), stamped(52)])
        w.write(stamped(53))
        got: list[int] = []
        while len(got) < 54:
            run = r.read_many(16)
            assert 1 <= len(run) <= 16
            got += [check(b) for b in run]
        assert got == list(range(54))
        assert w.batches_written == 54
        w.close()
        assert r.read_many() == [] and r.read() is None and r.read_many() == []


def test_a_run_is_one_zero_copy_hold_released_with_its_last_batch() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 20, delete_on_close=True) as w, \
            _reader() as r:
        w.write_many([stamped(i, rows=100) for i in range(8)])
        run = r.read_many(100)
        assert len(run) == 8 and r.held == 8 and r.position == 8
        for b in run:
            inside, total, where = buffers_in_shm(b)
            assert inside == total == 4 and where == {f"/dev/shm{w._seg.name}"}
        kept = run[3]
        del run, b
        gc.collect()
        assert r.held == 8  # one batch of the run keeps the run
        assert stream_info("b").readers[0].pinned_bytes > 0
        copy = arrowshm.StreamReader.detach(kept)
        del kept
        gc.collect()
        assert r.held == 0 and stream_info("b").readers[0].pinned_bytes == 0
        assert copy.column(0).to_pylist() == [3] * 100


def test_runs_and_single_batches_release_in_any_order() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 16, slots=64,
                               delete_on_close=True) as w, _reader() as r:
        w.write_many([stamped(i) for i in range(12)])
        held: list[Any] = [r.read(), r.read_many(3), r.read(), r.read_many(4), r.read_many(10)]
        assert r.held == 12
        for k in (3, 0, 4, 1, 2):
            held[k] = None
            gc.collect()
            assert r.held == sum(1 if isinstance(h, pa.RecordBatch) else len(h)
                                 for h in held if h is not None)
        assert stream_info("b").readers[0].pinned_bytes == 0
        for i in range(12, 400):  # the ring is free again: many laps
            w.write_many([stamped(i)], timeout=5)
            assert [check(b) for b in r.read_many(5, timeout=5)] == [i]


def test_read_many_waits_for_the_first_batch_and_times_out() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 16, delete_on_close=True) as w, \
            _reader(spin_us=0) as r:
        with pytest.raises(arrowshm.WaitTimeoutError):
            r.read_many(4, timeout=0.05)
        threading.Timer(0.1, lambda: w.write_many([stamped(0), stamped(1)])).start()
        assert [check(b) for b in r.read_many(4, timeout=10)] == [0, 1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_read_many_refuses_a_bad_maximum(bad: Any) -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 16, delete_on_close=True), \
            _reader() as r, pytest.raises(arrowshm.InvalidArgumentError):
        r.read_many(bad)


def test_write_many_checks_every_batch_before_writing_any() -> None:
    other = pa.record_batch({"x": [1]})
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 16, delete_on_close=True) as w, \
            _reader() as r:
        with pytest.raises(arrowshm.SchemaMismatchError):
            w.write_many([stamped(0), other])
        big = stamped(1, rows=20_000)
        with pytest.raises(arrowshm.InvalidArgumentError, match="capacity_bytes"):
            w.write_many([stamped(0), big])
        with pytest.raises(arrowshm.InvalidArgumentError):
            w.write_many([stamped(0), "not a batch"])  # type: ignore[list-item]
        with pytest.raises(arrowshm.InvalidArgumentError):
            w.write_many([stamped(0)], timeout=-1)
        assert w.batches_written == 0
        with pytest.raises(arrowshm.WaitTimeoutError):
            r.read_many(timeout=0)
        w.write_many([])
        w.close()
        with pytest.raises(arrowshm.StreamClosedError):
            w.write_many([stamped(0)])


def test_write_many_waits_for_room_and_names_the_reader_in_the_way() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 14, slots=16,
                               delete_on_close=True) as w, _reader(spin_us=0) as r:
        with pytest.raises(arrowshm.WaitTimeoutError) as err:
            w.write_many([stamped(i) for i in range(100)], timeout=0.3)
        assert err.value.reader_pids == [os.getpid()]  # type: ignore[attr-defined]
        written = w.batches_written
        assert 0 < written < 100
        got = [check(b) for _ in range(written) for b in [r.read(timeout=5)]]
        assert got == list(range(written))  # what was written is whole and in order

        def drain() -> None:
            n = written
            while n < written + 2000:
                n += len([check(b) for b in r.read_many(7, timeout=30)])

        t = threading.Thread(target=drain)
        t.start()
        w.write_many([stamped(i) for i in range(written, written + 2000)], timeout=60)
        t.join(60)
        assert not t.is_alive()


def test_read_many_validates_when_asked() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 16, delete_on_close=True) as w, \
            _reader(validate=True) as r:
        w.write_many([stamped(i) for i in range(5)])
        assert [check(b) for b in r.read_many()] == list(range(5))


def test_overwrite_mode_counts_what_a_lapped_read_many_missed() -> None:
    with arrowshm.StreamWriter("b", SCHEMA, capacity_bytes=1 << 14, slots=16,
                               mode="overwrite", delete_on_close=True) as w, _reader() as r:
        for i in range(0, 200, 10):
            w.write_many([stamped(k) for k in range(i, i + 10)], timeout=5)
        got = []
        while True:
            run = r.read_many(64, timeout=0)
            got += [check(b) for b in run]
            if got and got[-1] == 199:
                break
        assert got == sorted(got) and r.missed == 200 - len(got) > 0


def test_write_many_of_many_small_batches_crosses_laps_intact() -> None:
    batches = [pa.record_batch({"x": np.arange(i, i + 16)}) for i in range(3000)]
    with arrowshm.StreamWriter("b", batches[0].schema, capacity_bytes=1 << 16,
                               delete_on_close=True) as w, _reader() as r:
        out: list[int] = []

        def drain() -> None:
            while len(out) < 3000:
                out.extend(int(b.column(0)[0].as_py()) for b in r.read_many(300, timeout=30))

        t = threading.Thread(target=drain)
        t.start()
        for i in range(0, 3000, 500):
            w.write_many(batches[i : i + 500], timeout=60)
        t.join(60)
        assert out == list(range(3000))
        assert w._head > 5 * w.capacity_bytes  # several laps


def _burst_writer_then_die(namespace: str, q: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    w = arrowshm.StreamWriter("bdead", SCHEMA, capacity_bytes=1 << 16)
    w.write_many([stamped(i) for i in range(5)])
    q.put(os.getpid())
    threading.Event().wait(120)


@pytest.mark.timeout(120)
def test_read_many_of_a_killed_writer_drains_then_raises(namespace: str) -> None:
    q = CTX.Queue()
    p = CTX.Process(target=_burst_writer_then_die, args=(namespace, q), daemon=True)
    p.start()
    pid = q.get(timeout=60)
    with arrowshm.StreamReader("bdead", open_timeout=60) as r:
        os.kill(pid, signal.SIGKILL)
        p.join(30)
        got = [check(b) for b in r.read_many(100)]
        while len(got) < 5:
            got += [check(b) for b in r.read_many(100, timeout=10)]
        assert got == list(range(5))
        with pytest.raises(arrowshm.StreamClosedError):
            r.read_many()
    arrowshm.delete("bdead")
