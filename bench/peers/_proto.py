"""Measurement protocol shared by the peer drivers (stdlib + pyarrow only).

A driver runs in the peer's own interpreter (often a virtual environment under
bench/.venvs/ with other pyarrow/numpy versions), so this module imports nothing
from arrowshm or bench. The protocol, for each table size:

* ``put``: the producer's call that makes the table available to other
  processes (a new object each repetition, the previous one freed first, so
  the store recycles memory as it would in steady state);
* ``first get``: the consumer's call, in another already-running and warm
  process, that turns the handle into a ``pyarrow.Table``;
* ``end-to-end``: from the producer starting ``put`` to the consumer holding
  the table (``time.perf_counter_ns`` is CLOCK_MONOTONIC, one clock for all
  processes of the host);
* ``repeated get``: the consumer getting the same object again, many times.

pyarrow is imported only where a table is needed. Results go to stdout as
one JSON document on the last line.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def now() -> int:
    return time.perf_counter_ns()


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def load_table(path: str) -> pa.Table:
    """The benchmark table, read into ordinary process memory (not a mapping)."""
    import pyarrow as pa

    with pa.OSFile(path, "rb") as f:
        return pa.ipc.open_file(f).read_all()


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """``--tables SIZE=PATH,...  --reps N  --repeat N  --workdir DIR``."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--tables", default="")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--workdir", required=True)
    p.add_argument("--small", default="", help="ROWS=PATH,...: small-table throughput")
    p.add_argument("--small-n", type=int, default=2000, help="small tables per run")
    a = p.parse_args(argv)
    tables = []
    for item in filter(None, a.tables.split(",")):
        size, path = item.split("=", 1)
        tables.append((int(size), path))
    small = []
    for item in filter(None, a.small.split(",")):
        rows, path = item.split("=", 1)
        small.append((int(rows), path))
    return {"tables": tables, "reps": a.reps, "repeat": a.repeat, "workdir": a.workdir,
            "small": small, "small_n": a.small_n}


class Store:
    """What a peer provides: connect in each process, put, get, free."""

    def connect(self) -> None:
        raise NotImplementedError

    def put(self, table: pa.Table) -> Any:
        raise NotImplementedError

    def get(self, handle: Any) -> pa.Table:
        raise NotImplementedError

    def free(self, handle: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def handle_for(self, tag: int, i: int) -> Any:
        """The handle of small table *i* of run *tag*, known to both sides in advance
        (stores whose objects can be named by the producer, e.g. Plasma's ObjectID)."""
        raise NotImplementedError

    def put_as(self, table: pa.Table, handle: Any) -> None:
        """Put *table* under the pre-agreed *handle* (see :meth:`handle_for`)."""
        raise NotImplementedError

    def get_wait(self, handle: Any) -> pa.Table:
        """The object of *handle*, waiting for it to be created."""
        raise NotImplementedError


def _consumer_main(conn: Any, store: Store) -> None:
    store.connect()
    held: Any = None
    try:
        while True:
            cmd = conn.recv()
            op = cmd[0]
            if op == "stop":
                return
            if op == "release":
                held = None
                conn.send(True)
            elif op == "get":
                held = None
                t0 = now()
                held = store.get(cmd[1])
                t1 = now()
                conn.send((t1, (t1 - t0) / 1e9, held.num_rows))
            elif op == "small":  # get small tables 0..n-1 of run tag as they appear
                _, tag, n = cmd
                held = None
                conn.send("ready")
                rows = 0
                for i in range(n):
                    t = store.get_wait(store.handle_for(tag, i))
                    rows += t.num_rows
                    del t
                conn.send((now(), n, rows))
            elif op == "repeat":
                held = None
                times = []
                for _ in range(cmd[2]):
                    t0 = now()
                    held = store.get(cmd[1])
                    times.append((now() - t0) / 1e9)
                conn.send(median(times))
    finally:
        held = None
        store.close()


class PipeConsumer:
    """The consumer: a spawned process of the same interpreter, driven over a Pipe."""

    def __init__(self, store: Store) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_consumer_main, args=(child, store), daemon=True)
        self.proc.start()

    def get(self, handle: Any) -> tuple[int, float, int]:
        self.conn.send(("get", handle))
        return self.conn.recv()  # type: ignore[no-any-return]

    def repeat(self, handle: Any, n: int) -> float:
        self.conn.send(("repeat", handle, n))
        return self.conn.recv()  # type: ignore[no-any-return]

    def release(self) -> None:
        self.conn.send(("release",))
        self.conn.recv()

    def small_run(self, store: Store, tables: list[pa.Table], n: int,
                  tag: int) -> tuple[int, int, int, int]:
        """Put *n* small tables under pre-agreed handles while the consumer gets each
        one: (t0, t_last_get, received, rows received)."""
        self.conn.send(("small", tag, n))
        assert self.conn.recv() == "ready"
        time.sleep(0.05)
        k = len(tables)
        t0 = now()
        for i in range(n):
            store.put_as(tables[i % k], store.handle_for(tag, i))
        t_end, got, rows = self.conn.recv()
        for i in range(n):
            store.free(store.handle_for(tag, i))
        return t0, t_end, got, rows

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def handoff(store: Store, consumer: Any, opts: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the put / first get / end-to-end / repeated get protocol for each size."""
    import pyarrow as pa

    warm = pa.table({"id": pa.array(range(2000), pa.int64()),
                     "value": pa.array([0.5] * 2000, pa.float64()),
                     "label": pa.array(["x" * 16] * 2000, pa.string())})
    for _ in range(3):
        h = store.put(warm)
        consumer.get(h)
        consumer.release()
        store.free(h)
    rows = []
    for size, path in opts["tables"]:
        table = load_table(path)
        puts, gets, e2e = [], [], []
        for _ in range(opts["reps"]):
            time.sleep(0.02)
            t0 = now()
            h = store.put(table)
            t1 = now()
            t_hold, get_s, n = consumer.get(h)
            if n != table.num_rows:
                raise RuntimeError(f"consumer saw {n} rows, expected {table.num_rows}")
            puts.append((t1 - t0) / 1e9)
            gets.append(get_s)
            e2e.append((t_hold - t0) / 1e9)
            consumer.release()
            store.free(h)
        h = store.put(table)
        repeat_n = opts["repeat"] if size <= 64 else max(20, opts["repeat"] // 4)
        rep = consumer.repeat(h, repeat_n)
        consumer.release()
        store.free(h)
        row = {"size_mib": size, "nbytes": table.nbytes, "put_s": median(puts),
               "first_get_s": median(gets), "e2e_s": median(e2e), "repeat_get_s": rep,
               "reps": opts["reps"], "puts": puts, "gets": gets, "e2es": e2e}
        log(f"{size} MiB: put {row['put_s']:.6f}s first get {row['first_get_s']:.6f}s "
            f"e2e {row['e2e_s']:.6f}s repeated get {rep:.6f}s")
        rows.append(row)
        del table
    return rows


def pid_env() -> dict[str, str]:
    return {"pid": str(os.getpid())}


def load_small(path: str) -> list[pa.Table]:
    """The distinct small tables of one size: the record batches of the file, one table
    each."""
    import pyarrow as pa

    with pa.OSFile(path, "rb") as f:
        r = pa.ipc.open_file(f)
        return [pa.Table.from_batches([r.get_batch(i)]) for i in range(r.num_record_batches)]


def small_tables(store: Store, consumer: Any, opts: dict[str, Any]) -> list[dict[str, Any]]:
    """Small tables per second: the producer puts ``small_n`` distinct tables (cycling
    through the file's), the consumer obtains every one; the rate counts what the
    consumer received, from the producer's first put to the consumer's last get."""
    out = []
    tag = 1
    for rows, path in opts["small"]:
        tables = load_small(path)
        consumer.small_run(store, tables, 200, tag)  # warm up
        tag += 1
        rates = []
        for _ in range(opts["reps"]):
            t0, t_end, got, nrows = consumer.small_run(store, tables, opts["small_n"], tag)
            tag += 1
            if got != opts["small_n"] or nrows != got * rows:
                raise RuntimeError(f"consumer received {got} tables / {nrows} rows of "
                                   f"{opts['small_n']} x {rows}")
            rates.append(got / ((t_end - t0) / 1e9))
        out.append({"rows": rows, "per_s": median(rates), "runs": rates, "n": opts["small_n"]})
        log(f"{rows}-row tables: {median(rates):,.0f}/s")
    return out
