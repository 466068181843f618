"""Datasets: put, first get, repeated get and end-to-end hand-off, against the baselines.

For tables of 1 MiB, 64 MiB and 512 MiB (int64, float64, utf8 columns), in one
run and on one table per size:

* memcpy of the same bytes into already-touched memory (the floor);
* arrowshm ``put`` (repeated on the same name), ``get`` of a new version in
  another process (that process already running and warm), repeated ``get``,
  and end-to-end: from the producer starting ``put`` to the consumer holding
  the table;
* pickle over ``multiprocessing.Queue`` (end-to-end);
* naive posix_ipc + Arrow IPC into a new segment, opened by the consumer
  (end-to-end).

Timestamps cross processes through ``time.perf_counter_ns`` (CLOCK_MONOTONIC on
Linux, the same clock in every process). Medians over repetitions.

Usage: ``python -m bench.bench_datasets [--quick] [--sizes 1,64,512] [--reps N]``
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import time
from typing import Any

import posix_ipc
import pyarrow as pa

from bench.common import MiB, fmt_time, machine, make_table, median, memcpy_seconds, save


def _consumer(conn: Any, q: Any, namespace: str) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm

    held: Any = None
    while True:
        cmd = conn.recv()
        op = cmd[0]
        if op == "stop":
            return
        held = None
        if op == "arrowshm":
            _, name, after = cmd
            arrowshm.wait(name, after_version=after, timeout=600)
            t0 = time.perf_counter_ns()
            held = arrowshm.get(name)
            t1 = time.perf_counter_ns()
            conn.send((t1, (t1 - t0) / 1e9, held.num_rows))
        elif op == "repeat":
            _, name, n = cmd
            times = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                held = arrowshm.get(name)
                times.append((time.perf_counter_ns() - t0) / 1e9)
            conn.send(median(times))
        elif op == "queue":
            held = q.get()
            conn.send((time.perf_counter_ns(), 0.0, held.num_rows))
        elif op == "naive":
            _, shm_name, size = cmd
            shm = posix_ipc.SharedMemory(shm_name)
            mm = mmap.mmap(shm.fd, size)
            shm.close_fd()
            held = pa.ipc.open_stream(pa.py_buffer(mm)).read_all()
            conn.send((time.perf_counter_ns(), 0.0, held.num_rows))


def _naive_put(table: pa.Table, shm_name: str) -> int:
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    size = sink.size()
    shm = posix_ipc.SharedMemory(shm_name, posix_ipc.O_CREX, size=size)
    mm = mmap.mmap(shm.fd, size)
    shm.close_fd()
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(pa.py_buffer(mm)), table.schema) as w:
        w.write_table(table)
    del w
    return size


def run(sizes_mib: list[int], reps: int) -> dict[str, Any]:
    import arrowshm

    namespace = "bench" + str(os.getpid() % 10_000_000)
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    q = ctx.Queue()
    consumer = ctx.Process(target=_consumer, args=(child, q, namespace), daemon=True)
    consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        # warm both processes up (imports, numba cache) on a tiny dataset
        warm = make_table(64 << 10)
        for _ in range(3):
            v = arrowshm.put("warm", warm).version
            parent.send(("arrowshm", "warm", v - 1))
            parent.recv()
        arrowshm.delete("warm")
        for size in sizes_mib:
            table = make_table(size * MiB, seed=size)
            nbytes = table.nbytes
            memcpy = memcpy_seconds(nbytes)
            name = f"bench/{size}mib"
            puts, e2e, first_get = [], [], []
            for _ in range(reps):
                version = arrowshm.info(name).version if _ else 0
                parent.send(("arrowshm", name, version))
                time.sleep(0.05)  # let the consumer go to sleep in wait()
                t0 = time.perf_counter_ns()
                arrowshm.put(name, table)
                t_put = time.perf_counter_ns()
                t1, get_s, _rows = parent.recv()
                puts.append((t_put - t0) / 1e9)
                e2e.append((t1 - t0) / 1e9)
                first_get.append(get_s)
            parent.send(("repeat", name, 200))
            repeat = parent.recv()
            arrowshm.delete(name)
            pickle_e2e = []
            for _ in range(reps):
                parent.send(("queue",))
                time.sleep(0.05)
                t0 = time.perf_counter_ns()
                q.put(table)
                t1, _, _ = parent.recv()
                pickle_e2e.append((t1 - t0) / 1e9)
            naive_e2e = []
            for r in range(reps):
                shm_name = f"/ash-{namespace}-naive{r}"
                t0 = time.perf_counter_ns()
                seg_size = _naive_put(table, shm_name)
                parent.send(("naive", shm_name, seg_size))
                t1, _, _ = parent.recv()
                naive_e2e.append((t1 - t0) / 1e9)
                posix_ipc.unlink_shared_memory(shm_name)
            row = {
                "size_mib": size,
                "nbytes": nbytes,
                "memcpy_s": memcpy,
                "put_s": median(puts),
                "put_gbps": nbytes / median(puts) / 1e9,
                "first_get_s": median(first_get),
                "repeat_get_s": repeat,
                "e2e_s": median(e2e),
                "pickle_queue_e2e_s": median(pickle_e2e),
                "naive_shm_e2e_s": median(naive_e2e),
            }
            for key in ("put_s", "e2e_s", "pickle_queue_e2e_s", "naive_shm_e2e_s"):
                row[key[:-2] + "_x_memcpy"] = row[key] / memcpy
            rows.append(row)
            print(_row_line(row), flush=True)
    finally:
        parent.send(("stop",))
        consumer.join(30)
        arrowshm.gc()
        from arrowshm.testing import cleanup_namespace

        cleanup_namespace(namespace)
    return {"machine": machine(), "reps": reps, "rows": rows}


def _row_line(r: dict[str, Any]) -> str:
    return (f"{r['size_mib']:>4} MiB: memcpy {fmt_time(r['memcpy_s'])}, put {fmt_time(r['put_s'])} "
            f"({r['put_gbps']:.2f} GB/s, {r['put_x_memcpy']:.1f}x), first get "
            f"{fmt_time(r['first_get_s'])}, repeated get {fmt_time(r['repeat_get_s'])}, "
            f"e2e {fmt_time(r['e2e_s'])} ({r['e2e_x_memcpy']:.1f}x); pickle+Queue "
            f"{r['pickle_queue_e2e_x_memcpy']:.1f}x; naive shm {r['naive_shm_e2e_x_memcpy']:.1f}x")


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown section for docs/PERFORMANCE.md."""
    m = result["machine"]
    lines = [
        "## Datasets: put, get, end-to-end (`python -m bench.bench_datasets`)",
        "",
        f"{m['date']}, commit `{m['commit']}`, {m['cpu']} ({m['cores']} cores), Linux "
        f"{m['kernel']}, Python {m['python']}, pyarrow {m['pyarrow']}, numpy {m['numpy']}, "
        f"numba {m['numba']}; medians of {result['reps']} runs. Ratios are to memcpy of the "
        "same bytes into already-touched memory, measured in the same run.",
        "",
        "| size | memcpy | put | put GB/s | put ×memcpy | first get (other process) "
        "| repeated get | end-to-end | e2e ×memcpy | pickle+Queue ×memcpy "
        "| naive shm+IPC ×memcpy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['size_mib']} MiB | {fmt_time(r['memcpy_s'])} | {fmt_time(r['put_s'])} | "
            f"{r['put_gbps']:.2f} | {r['put_x_memcpy']:.1f}× | {fmt_time(r['first_get_s'])} | "
            f"{fmt_time(r['repeat_get_s'])} | {fmt_time(r['e2e_s'])} | "
            f"{r['e2e_x_memcpy']:.1f}× | {r['pickle_queue_e2e_x_memcpy']:.1f}× | "
            f"{r['naive_shm_e2e_x_memcpy']:.1f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,64,512", help="table sizes in MiB")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 and 64 MiB, 3 repetitions")
    args = p.parse_args(argv)
    sizes = [1, 64] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 3 if args.quick else args.reps
    result = run(sizes, reps)
    path = save("datasets", result)
    md = markdown(result)
    (path.parent / "datasets.md").write_text(md)
    print()
    print(md)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
