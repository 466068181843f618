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
        if op == "release":
            continue
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
        elif op == "spare":  # put a table of *size* MiB, then delete it: a spare of ours
            _, name, size = cmd
            arrowshm.put(name, make_table(size * MiB, seed=size))
            arrowshm.delete(name)
            conn.send(arrowshm.usage().spare_bytes)
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
    return int(size)


def _restore_namespace(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("ARROWSHM_NAMESPACE", None)
    else:
        os.environ["ARROWSHM_NAMESPACE"] = saved


def run(sizes_mib: list[int], reps: int) -> dict[str, Any]:
    import arrowshm

    namespace = "bench" + str(os.getpid() % 10_000_000)
    saved = os.environ.get("ARROWSHM_NAMESPACE")  # (restored at the end: what runs
    os.environ["ARROWSHM_NAMESPACE"] = namespace  # next must not re-create this one)
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
            for _ in range(2):  # steady state: the name's versions already cycle (untimed)
                version = arrowshm.info(name).version if _ else 0
                parent.send(("arrowshm", name, version))
                time.sleep(0.05)
                arrowshm.put(name, table)
                parent.recv()
            for _ in range(reps):
                version = arrowshm.info(name).version
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
        _restore_namespace(saved)
    return {"machine": machine(), "reps": reps, "rows": rows}


# ---------------------------------------------------------------------------------------
# a new name per put (issue 14): cold, with spares (this process's, another's), with a
# reserve (a fresh process's first put), and end-to-end


def _fresh_put(conn: Any, namespace: str, size: int, name: str) -> None:
    """A freshly spawned process: build the table, then time its first put (a new name)."""
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm

    table = make_table(size * MiB, seed=size)
    tiny = make_table(4 << 10, seed=1)
    conn.send("ready")
    conn.recv()
    t0 = time.perf_counter_ns()
    arrowshm.put(name + "-tiny", tiny)  # the process's first put: loads what a put needs
    t1 = time.perf_counter_ns()
    before = arrowshm.usage().recycled
    t2 = time.perf_counter_ns()
    arrowshm.put(name, table)
    t3 = time.perf_counter_ns()
    arrowshm.delete(name + "-tiny")
    conn.send(((t3 - t2) / 1e9, (t1 - t0) / 1e9, arrowshm.usage().recycled > before))
    conn.recv()  # hold on until told (the version stays live while the parent looks)


def run_new_name(sizes_mib: list[int], reps: int, e2e_mib: int | None = 256) -> dict[str, Any]:
    """Put of a new name: the put figures of issue 14's goals, each with its memcpy.

    * ``cold_s``: no spare in the namespace (``gc(spares=True)`` before each put);
    * ``spare_own_s``: the spare comes from a version this process put and deleted;
    * ``spare_other_s``: the spare comes from a version another (running) process put
      and deleted;
    * ``reserve_fresh_s``: this process holds ``reserve(2 x size + 16 MiB)``; a freshly
      spawned process (imports done, table built) puts a 4 KiB table first (its very
      first put, timed apart as ``fresh_first_tiny_put_s``: what a put loads once per
      process), then times its first put of *size*;
    * ``e2e_s`` (at *e2e_mib*): a consumer blocked in ``wait`` on a name that does not
      exist yet, then ``get``; the producer's put lands in a spare of its own.
    """
    import arrowshm

    namespace = "bnew" + str(os.getpid() % 10_000_000)
    saved = os.environ.get("ARROWSHM_NAMESPACE")  # (restored at the end: what runs
    os.environ["ARROWSHM_NAMESPACE"] = namespace  # next must not re-create this one)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    q = ctx.Queue()  # (unused here; kept alive while the consumer starts)
    consumer = ctx.Process(target=_consumer, args=(child, q, namespace), daemon=True)
    consumer.start()
    rows: list[dict[str, Any]] = []
    e2e_row: dict[str, Any] | None = None
    try:
        warm = make_table(64 << 10)
        arrowshm.put("warm", warm)
        parent.send(("arrowshm", "warm", 0))
        parent.recv()
        arrowshm.delete("warm")
        for size in sizes_mib:
            table = make_table(size * MiB, seed=size)
            memcpy = memcpy_seconds(table.nbytes)
            cold, own, other, fresh, fresh_first, recycled = [], [], [], [], [], []
            for r in range(reps):
                arrowshm.gc(spares=True)
                t0 = time.perf_counter_ns()
                arrowshm.put(f"cold/{size}/{r}", table)
                cold.append((time.perf_counter_ns() - t0) / 1e9)
                arrowshm.delete(f"cold/{size}/{r}")  # (a spare of ours for the next case)
                t0 = time.perf_counter_ns()
                arrowshm.put(f"own/{size}/{r}", table)
                own.append((time.perf_counter_ns() - t0) / 1e9)
                arrowshm.delete(f"own/{size}/{r}")
                arrowshm.gc(spares=True)
                parent.send(("spare", f"other-src/{size}/{r}", size))
                parent.recv()
                t0 = time.perf_counter_ns()
                arrowshm.put(f"other/{size}/{r}", table)
                other.append((time.perf_counter_ns() - t0) / 1e9)
                arrowshm.delete(f"other/{size}/{r}")
                arrowshm.gc(spares=True)
                arrowshm.reserve(2 * table.nbytes + (16 << 20), wait=120)
                a, b = ctx.Pipe()
                p = ctx.Process(target=_fresh_put, args=(b, namespace, size, f"fresh/{size}/{r}"),
                                daemon=True)
                p.start()
                try:
                    a.recv()
                    time.sleep(0.2)  # (the fresh process's attach-time threads settle)
                    a.send("go")
                    put_s, first_s, was_spare = a.recv()
                    fresh.append(put_s)
                    fresh_first.append(first_s)
                    recycled.append(was_spare)
                    a.send("done")
                finally:
                    p.join(30)
                arrowshm.reserve(0)
                arrowshm.delete(f"fresh/{size}/{r}")
                arrowshm.gc(spares=True)
            row = {"size_mib": size, "nbytes": table.nbytes, "memcpy_s": memcpy,
                   "cold_s": median(cold), "spare_own_s": median(own),
                   "spare_other_s": median(other), "reserve_fresh_s": median(fresh),
                   "reserve_fresh_recycled": sum(recycled),
                   "fresh_first_tiny_put_s": median(fresh_first), "runs": {
                       "cold": cold, "spare_own": own, "spare_other": other,
                       "reserve_fresh": fresh}}
            for key in ("cold_s", "spare_own_s", "spare_other_s", "reserve_fresh_s"):
                row[key[:-2] + "_x_memcpy"] = row[key] / memcpy
            rows.append(row)
            print(f"{size:>4} MiB new name: memcpy {fmt_time(memcpy)}, cold "
                  f"{fmt_time(row['cold_s'])} ({row['cold_x_memcpy']:.1f}x), own spare "
                  f"{row['spare_own_x_memcpy']:.2f}x, other's spare "
                  f"{row['spare_other_x_memcpy']:.2f}x, reserve/fresh process "
                  f"{row['reserve_fresh_x_memcpy']:.2f}x (spare used {sum(recycled)}/{reps}; "
                  f"its first 4 KiB put {fmt_time(row['fresh_first_tiny_put_s'])})", flush=True)
            del table
        if e2e_mib:
            table = make_table(e2e_mib * MiB, seed=e2e_mib)
            memcpy = memcpy_seconds(table.nbytes)
            e2e: list[float] = []
            e2e_cold: list[float] = []
            for r in range(reps):
                for spare, out in ((False, e2e_cold), (True, e2e)):
                    arrowshm.gc(spares=True)
                    if spare:
                        arrowshm.put("e2e-src", table)
                        arrowshm.delete("e2e-src")
                    name = f"e2e/{'spare' if spare else 'cold'}/{r}"
                    parent.send(("arrowshm", name, 0))
                    time.sleep(0.05)  # the consumer blocks in wait() on a missing name
                    t0 = time.perf_counter_ns()
                    arrowshm.put(name, table)
                    t1, _, _ = parent.recv()
                    out.append((t1 - t0) / 1e9)
                    parent.send(("release",))
                    arrowshm.delete(name)
            e2e_row = {"size_mib": e2e_mib, "nbytes": table.nbytes, "memcpy_s": memcpy,
                       "e2e_s": median(e2e), "e2e_x_memcpy": median(e2e) / memcpy,
                       "e2e_cold_s": median(e2e_cold),
                       "e2e_cold_x_memcpy": median(e2e_cold) / memcpy,
                       "runs": {"spare": e2e, "cold": e2e_cold}}
            print(f"{e2e_mib:>4} MiB new name end-to-end: {fmt_time(e2e_row['e2e_s'])} "
                  f"({e2e_row['e2e_x_memcpy']:.2f}x memcpy) with a spare, "
                  f"{fmt_time(e2e_row['e2e_cold_s'])} ({e2e_row['e2e_cold_x_memcpy']:.1f}x) "
                  "cold", flush=True)
    finally:
        parent.send(("stop",))
        consumer.join(30)
        arrowshm.reserve(0)
        arrowshm.gc(spares=True)
        from arrowshm.testing import cleanup_namespace

        cleanup_namespace(namespace)
        _restore_namespace(saved)
    return {"machine": machine(), "reps": reps, "rows": rows, "e2e": e2e_row}


def markdown_new_name(result: dict[str, Any]) -> str:
    """The new-name results as a Markdown section."""
    lines = [
        "### Put of a new name (`bench_datasets.run_new_name`)",
        "",
        "Ratios to memcpy of the same bytes in the same run; medians of "
        f"{result['reps']} runs. *cold*: no spare in the namespace; *own spare*: this "
        "process put and deleted a version of that size before; *other's spare*: another "
        "process did; *reserve*: this process holds `reserve(2 × size + 16 MiB)` and a freshly "
        "spawned process times its first put of that size (after one 4 KiB put, timed apart: "
        "the first put of a process also loads what a put needs).",
        "",
        "| size | memcpy | cold | own spare | other's spare | reserve, fresh process "
        "| fresh process's first (4 KiB) put |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['size_mib']} MiB | {fmt_time(r['memcpy_s'])} | {fmt_time(r['cold_s'])} "
            f"({r['cold_x_memcpy']:.1f}×) | {fmt_time(r['spare_own_s'])} "
            f"({r['spare_own_x_memcpy']:.2f}×) | {fmt_time(r['spare_other_s'])} "
            f"({r['spare_other_x_memcpy']:.2f}×) | {fmt_time(r['reserve_fresh_s'])} "
            f"({r['reserve_fresh_x_memcpy']:.2f}×, spare used {r['reserve_fresh_recycled']}/"
            f"{result['reps']}) | {fmt_time(r['fresh_first_tiny_put_s'])} |")
    e = result.get("e2e")
    if e:
        lines += ["", f"End-to-end, new name, {e['size_mib']} MiB (put in one process, `wait` "
                  f"on the missing name + `get` in another): {fmt_time(e['e2e_s'])} = "
                  f"{e['e2e_x_memcpy']:.2f}× memcpy with a spare of the producer; "
                  f"{fmt_time(e['e2e_cold_s'])} = {e['e2e_cold_x_memcpy']:.1f}× cold."]
    return "\n".join(lines) + "\n"


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
    p.add_argument("--new-name", default=None, metavar="SIZES",
                   help="only the new-name puts, at these sizes in MiB (e.g. 64,256,512), "
                        "and end-to-end at 256 MiB")
    args = p.parse_args(argv)
    if args.new_name:
        nn = run_new_name([int(x) for x in args.new_name.split(",")], args.reps)
        save("new_name", nn)
        print(markdown_new_name(nn))
        return 0
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
