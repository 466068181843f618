"""Small messages: 100- and 1,000-row tables and 1 KiB stream batches, against
``multiprocessing.Queue`` measured in the same run.

Run ``python -m bench.bench_small`` (``--quick`` for a short run). Results go to
``bench/results/small.json`` and ``bench/results/small.md``; the Markdown table is
also printed.

What is measured (two processes pinned to the two cores when there are two; the
parent produces, a spawned child consumes; timestamps cross processes through
``time.perf_counter_ns``, CLOCK_MONOTONIC):

1. **put + get of a small table** (100 and 1,000 rows of ``bench.common.make_table``:
   int64, float64 and a 16-character utf8 column; 64 distinct tables of each size,
   cycled, so that nothing is cached per object). The producer ``put``\\ s one name
   ``n`` times as fast as it can; the consumer loops ``wait(name,
   after_version=last)`` + ``get(name)`` and counts every *new* table it obtains
   (a version it already held is not counted). A dataset holds the latest
   version, so a consumer slower than the producer skips versions: the figure is
   the rate at which the consumer obtains distinct versions, from the producer's
   first put to the consumer obtaining the last version, i.e. min(producer rate,
   consumer rate). The producer's own put rate and the share of versions the
   consumer skipped are reported beside it.
   The same tables go through ``multiprocessing.Queue`` (pickled by the queue):
   the producer ``put``\\ s ``n`` tables, the consumer ``get``\\ s all ``n``; the rate
   is ``n`` over the time from the first put to the last get.
2. **the same small tables through a stream** (each table one record batch): the
   writer writes ``n`` of them, the reader obtains every one; one at a time
   (``write`` / iteration) and in bursts (``write_many`` of 64 / ``read_many(256)``).
   Nothing is skipped here: the figure is tables received per second.
3. **1 KiB record batches through a stream** (128 int64 rows, as
   ``bench_stream``): the writer writes ``n`` batches, the reader reads all of them
   and drops each; one batch at a time (``write`` / iteration) and in bursts
   (``write_many`` of 64 batches / ``read_many(256)``). The same batches go
   through ``multiprocessing.Queue`` one at a time and, for reference, as lists
   of 64 distinct batch objects (a list of one object repeated would be pickled
   once). Rates are batches over the time from the first write to the last read.
4. **repeated get** of an unchanged version in the consumer process:
   ``arrowshm.get(name)`` (the module function, which reads
   ``ARROWSHM_NAMESPACE`` at each call), median per call over 20,000 calls.

Every figure is the median over repetitions; the ratios are taken between
medians of the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import RESULTS, machine, make_table

CTX = mp.get_context("spawn")
ROWS = (100, 1000)
KIB = pa.record_batch({"x": pa.array(np.arange(128, dtype=np.int64))})
BURST = 64
READ_MAX = 256


VARIANTS = 64


def _table(rows: int, seed: int = 0) -> pa.Table:
    """One record batch of *rows* rows (make_table: 36 bytes a row)."""
    return make_table(rows * 36, seed=rows * 1000 + seed).combine_chunks()


def small_tables(rows: int) -> list[pa.Table]:
    """The distinct tables of *rows* rows every small-table figure cycles through."""
    return [_table(rows, i) for i in range(VARIANTS)]


def write_small_file(rows: int, path: Path) -> Path:
    """The distinct tables of *rows* rows as an Arrow IPC file of one batch per table,
    for the peers (``bench.peers._proto.load_small``)."""
    tables = small_tables(rows)
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, tables[0].schema) as w:
        for t in tables:
            w.write_table(t)
    return path


def pin(cpu: int) -> str:
    n = os.cpu_count() or 1
    if n < 2 or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu % n})
    return f"pinned to CPU {cpu % n}"


# ---------------------------------------------------------------------------------------
# the consumer process


def _consumer(conn: Any, q: Any, namespace: str) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm

    pin(1)
    ns = arrowshm.Namespace(namespace)
    while True:
        cmd = conn.recv()
        op = cmd[0]
        if op == "stop":
            return
        if op == "tables":
            _, name, last, final = cmd
            prev: Any = None
            consumed = 0
            conn.send("ready")
            while last < final:
                info = ns.wait(name, after_version=last, timeout=120)
                t = ns.get(name)
                if t is not prev:
                    consumed += 1
                    prev = t
                last = info.version
            conn.send((time.perf_counter_ns(), consumed))
            del prev, t
        elif op == "queue":
            n = cmd[1]
            conn.send("ready")
            for _ in range(n):
                t = q.get()
                del t
            conn.send((time.perf_counter_ns(), n))
        elif op == "queue_lists":
            n = cmd[1]
            conn.send("ready")
            got = 0
            while got < n:
                lst = q.get()
                got += len(lst)
                del lst
            conn.send((time.perf_counter_ns(), got))
        elif op == "stream":
            _, name, many = cmd
            got = 0
            with ns.StreamReader(name, open_timeout=60) as r:
                conn.send("ready")
                if many:
                    while True:
                        bs = r.read_many(READ_MAX)
                        if not bs:
                            break
                        got += len(bs)
                        del bs
                else:
                    for b in r:
                        got += 1
                        del b
            conn.send((time.perf_counter_ns(), got))
        elif op == "repeat":
            _, name, n = cmd
            t = arrowshm.get(name)
            get = arrowshm.get
            for _ in range(1000):
                get(name)
            runs = []
            for _ in range(5):
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    get(name)
                runs.append((time.perf_counter_ns() - t0) / n / 1e3)
            conn.send(statistics.median(runs))
            del t


# ---------------------------------------------------------------------------------------
# one measurement each: producer side (this process)


def _tables_arrowshm(ns: Any, conn: Any, name: str, tables: list[pa.Table],
                     n: int) -> dict[str, float]:
    try:
        last = ns.info(name).version
    except Exception:
        last = 0
    conn.send(("tables", name, last, last + n))
    assert conn.recv() == "ready"
    time.sleep(0.05)  # let the consumer block in wait()
    put = ns.put
    k = len(tables)
    t0 = time.perf_counter_ns()
    for i in range(n):
        put(name, tables[i % k])
    t_put = time.perf_counter_ns()
    t_end, consumed = conn.recv()
    return {"consumed_per_s": consumed / ((t_end - t0) / 1e9),
            "puts_per_s": n / ((t_put - t0) / 1e9), "skipped": 1 - consumed / n}


def _queue(conn: Any, q: Any, items: list[Any], n: int) -> float:
    """*n* items (cycling through *items*) one at a time through the queue."""
    conn.send(("queue", n))
    assert conn.recv() == "ready"
    time.sleep(0.05)
    k = len(items)
    put = q.put
    t0 = time.perf_counter_ns()
    for i in range(n):
        put(items[i % k])
    t_end, got = conn.recv()
    assert got == n
    return float(n / ((t_end - t0) / 1e9))


def _queue_lists(conn: Any, q: Any, items: list[Any], n: int) -> float:
    """*n* items through the queue as lists of BURST distinct objects."""
    n = (n // BURST) * BURST
    conn.send(("queue_lists", n))
    assert conn.recv() == "ready"
    time.sleep(0.05)
    burst = list(items[:BURST])
    t0 = time.perf_counter_ns()
    for _ in range(n // BURST):
        q.put(burst)
    t_end, got = conn.recv()
    assert got == n
    return float(n / ((t_end - t0) / 1e9))


def _stream_arrowshm(ns: Any, conn: Any, batches: list[pa.RecordBatch], n: int,
                     many: bool) -> float:
    """*n* batches (cycling through *batches*) through a stream; the reader counts every
    batch it receives."""
    name = f"small-{'many' if many else 'one'}"
    k = len(batches)
    with ns.StreamWriter(name, batches[0].schema, capacity_bytes=64 << 20,
                         delete_on_close=True) as w:
        conn.send(("stream", name, many))
        assert conn.recv() == "ready"
        t0 = time.perf_counter_ns()
        if many:
            burst = [batches[i % k] for i in range(BURST)]
            write_many = w.write_many
            for _ in range(n // BURST):
                write_many(burst)
        else:
            write = w.write
            for i in range(n):
                write(batches[i % k])
    t_end, got = conn.recv()
    sent = (n // BURST) * BURST if many else n
    assert got == sent, (got, sent)
    return float(sent / ((t_end - t0) / 1e9))


# ---------------------------------------------------------------------------------------


def _counts(quick: bool) -> dict[str, int]:
    if quick:
        return {"tab": 1000, "tab_q": 600, "tab_stream": 6400, "kib": 32_000, "kib_q": 6000}
    return {"tab": 4000, "tab_q": 3000, "tab_stream": 32_000, "kib": 200_000, "kib_q": 40_000}


def run(quick: bool, reps: int, rows_list: tuple[int, ...] = ROWS) -> dict[str, Any]:
    """Every small-message figure, arrowshm and ``multiprocessing.Queue`` in one run."""
    import arrowshm
    from arrowshm.testing import cleanup_namespace

    namespace = "small" + str(os.getpid() % 10_000_000)
    ns = arrowshm.Namespace(namespace)
    c = _counts(quick)
    med = statistics.median
    pinning = pin(0)
    parent, child = CTX.Pipe()
    q = CTX.Queue(maxsize=1000)
    consumer = CTX.Process(target=_consumer, args=(child, q, namespace), daemon=True)
    consumer.start()
    res: dict[str, Any] = {"machine": machine(), "repetitions": reps, "counts": c,
                           "processes": f"producer {pinning}, consumer on CPU 1",
                           "load_average_at_start": os.getloadavg()}
    try:
        tables = {}
        for rows in rows_list:
            variants = small_tables(rows)
            batches = [t.to_batches()[0] for t in variants]
            name = f"small/{rows}"
            _tables_arrowshm(ns, parent, name, variants, 300)  # warm both processes up
            _queue(parent, q, variants, 100)
            _stream_arrowshm(ns, parent, batches, 2 * BURST * 10, False)
            _stream_arrowshm(ns, parent, batches, 2 * BURST * 10, True)
            a, qq, one, many = [], [], [], []
            for _ in range(reps):  # interleaved: load changes hit every figure alike
                a.append(_tables_arrowshm(ns, parent, name, variants, c["tab"]))
                qq.append(_queue(parent, q, variants, c["tab_q"]))
                one.append(_stream_arrowshm(ns, parent, batches, c["tab_stream"], False))
                many.append(_stream_arrowshm(ns, parent, batches, c["tab_stream"], True))
            rate, queue = med(r["consumed_per_s"] for r in a), med(qq)
            tables[str(rows)] = {
                "rows": rows, "table_bytes": variants[0].nbytes,
                "ipc_message_bytes": pa.ipc.get_record_batch_size(batches[0]),
                "queue_per_s": queue,
                "put_get_per_s": rate, "put_get_ratio": rate / queue,
                "puts_per_s": med(r["puts_per_s"] for r in a),
                "put_get_skipped": med(r["skipped"] for r in a),
                "stream_one_per_s": med(one), "stream_one_ratio": med(one) / queue,
                "stream_many_per_s": med(many), "stream_many_ratio": med(many) / queue,
                "runs": {"put_get": a, "queue": qq, "stream_one": one, "stream_many": many},
            }
            t = tables[str(rows)]
            print(f"  {rows} rows: Queue {queue:,.0f}/s; put+get {rate:,.0f}/s "
                  f"({t['put_get_ratio']:.1f}x), stream {t['stream_one_per_s']:,.0f}/s "
                  f"({t['stream_one_ratio']:.1f}x), stream bursts {t['stream_many_per_s']:,.0f}/s "
                  f"({t['stream_many_ratio']:.1f}x)", file=sys.stderr, flush=True)
            if rows == rows_list[0]:
                parent.send(("repeat", name, 20_000))
                res["repeated_get_us"] = parent.recv()
                print(f"  repeated get {res['repeated_get_us']:.2f} us", file=sys.stderr)
            ns.delete(name)
        res["tables"] = tables

        kib = [KIB.slice(0, KIB.num_rows) for _ in range(BURST)]  # distinct objects
        _stream_arrowshm(ns, parent, kib, 20_000, False)  # warm up
        _queue(parent, q, kib, 2000)
        one, many, q_one, q_lists = [], [], [], []
        for _ in range(reps):
            one.append(_stream_arrowshm(ns, parent, kib, c["kib"], False))
            many.append(_stream_arrowshm(ns, parent, kib, c["kib"], True))
            q_one.append(_queue(parent, q, kib, c["kib_q"]))
            q_lists.append(_queue_lists(parent, q, kib, c["kib_q"]))
        qo = med(q_one)
        res["stream_1kib"] = {
            "batch_bytes": KIB.nbytes, "ipc_message_bytes": pa.ipc.get_record_batch_size(KIB),
            "burst": BURST, "read_max": READ_MAX,
            "arrowshm_one_per_s": med(one), "arrowshm_many_per_s": med(many),
            "queue_one_per_s": qo, "queue_lists_per_s": med(q_lists),
            "ratio_one_vs_queue": med(one) / qo,
            "ratio_many_vs_queue": med(many) / qo,
            "ratio_many_vs_queue_lists": med(many) / med(q_lists),
            "runs_arrowshm_one": one, "runs_arrowshm_many": many, "runs_queue_one": q_one,
            "runs_queue_lists": q_lists,
        }
        s = res["stream_1kib"]
        print(f"  stream 1 KiB: one {s['arrowshm_one_per_s']:,.0f}/s, many "
              f"{s['arrowshm_many_per_s']:,.0f}/s, Queue {qo:,.0f}/s, Queue lists "
              f"{s['queue_lists_per_s']:,.0f}/s", file=sys.stderr, flush=True)
    finally:
        parent.send(("stop",))
        consumer.join(30)
        cleanup_namespace(namespace)
    res["load_average_at_end"] = os.getloadavg()
    return res


def markdown(res: dict[str, Any], peers: dict[str, Any] | None = None) -> str:
    """The small-message results as Markdown; *peers*: {label: {rows: per_s}} of the
    same run (Plasma, Ray)."""
    m = res["machine"]
    lines = [
        "## Small messages (`python -m bench.bench_small`)",
        "",
        f"{m['date']}, commit `{m['commit']}`, {m['cpu']} ({m['cores']} cores), Python "
        f"{m['python']}, pyarrow {m['pyarrow']}, numba {m['numba']}; medians of "
        f"{res['repetitions']} runs; {res['processes']}; load average "
        f"{res['load_average_at_start'][0]:.1f} at start, "
        f"{res.get('load_average_at_end', [0.0])[0]:.1f} at the end. Ratios are to "
        "`multiprocessing.Queue` carrying the same tables one at a time, measured in the "
        "same run; every rate counts what the consumer received.",
        "",
        "| tables per second received by another process | " + " | ".join(
            f"{int(r):,} rows ({t['table_bytes']:,} B)" for r, t in res["tables"].items())
        + " |",
        "|---|" + "---:|" * len(res["tables"]),
    ]

    def row(label: str, key: str, ratio: str | None) -> str:
        cells = []
        for t in res["tables"].values():
            cell = f"{t[key]:,.0f}/s"
            if ratio:
                cell += f" ({t[ratio]:.1f}×)"
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    lines.append(row("`multiprocessing.Queue` (pickle), one table per `put`", "queue_per_s", None))
    lines.append(row("arrowshm `put` + `wait`/`get`, one name, distinct versions obtained",
                     "put_get_per_s", "put_get_ratio"))
    lines.append(row("arrowshm stream, `write` + iteration, each table one batch",
                     "stream_one_per_s", "stream_one_ratio"))
    lines.append(row(f"arrowshm stream, `write_many({BURST})` + `read_many({READ_MAX})`",
                     "stream_many_per_s", "stream_many_ratio"))
    for label, rates in (peers or {}).items():
        cells = []
        for r, t in res["tables"].items():
            v = rates.get(int(r))
            cells.append("—" if v is None else f"{v:,.0f}/s ({v / t['queue_per_s']:.1f}×)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("For the put + get row the producer's own rate was " + ", ".join(
        f"{t['puts_per_s']:,.0f} puts/s ({int(r):,} rows; the consumer skipped "
        f"{t['put_get_skipped']:.0%} of the versions: a dataset holds the latest version)"
        for r, t in res["tables"].items()) + ".")
    s = res["stream_1kib"]
    lines += [
        "",
        "| 1 KiB record batches (128 int64 rows) | arrowshm | `multiprocessing.Queue` | ratio |",
        "|---|---:|---:|---:|",
        f"| `write` + iteration vs one batch per `put` | {s['arrowshm_one_per_s']:,.0f}/s | "
        f"{s['queue_one_per_s']:,.0f}/s | {s['ratio_one_vs_queue']:.1f}× |",
        f"| `write_many({BURST})` + `read_many({READ_MAX})` vs one batch per `put` | "
        f"{s['arrowshm_many_per_s']:,.0f}/s | {s['queue_one_per_s']:,.0f}/s | "
        f"{s['ratio_many_vs_queue']:.1f}× |",
        f"| same, vs lists of {BURST} distinct batches per `put` | "
        f"{s['arrowshm_many_per_s']:,.0f}/s | {s['queue_lists_per_s']:,.0f}/s | "
        f"{s['ratio_many_vs_queue_lists']:.1f}× |",
        "",
        f"Repeated `arrowshm.get` of an unchanged version (consumer process, median of 5 × "
        f"20,000 calls): {res['repeated_get_us']:.2f} µs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages and repetitions")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default="small", help="results file stem under bench/results")
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    res = run(args.quick, reps)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.out}.json"
    path.write_text(json.dumps(res, indent=1, default=str) + "\n")
    md = markdown(res)
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    where = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"saved {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
