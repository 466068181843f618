"""Stream benchmarks against the alternatives, baselines measured in the same run.

Run ``python bench/bench_stream.py`` (``--quick`` for a short run). Results go to
``bench/results/stream.json`` and a Markdown table is printed.

1. Round trip of a 1-row record batch between two processes (ping over one
   stream, pong back over another), against ``multiprocessing.Pipe`` sending
   the same batch, and against iceoryx2's Python publish/subscribe (polling)
   carrying the batch as Arrow IPC bytes - and carrying raw bytes, for
   reference - when ``import iceoryx2`` works.
2. One-way throughput of 1 KiB record batches (128 int64 rows) against
   ``multiprocessing.Queue``: one batch at a time (``write`` / iteration), and in
   bursts (``write_many`` of 64 / ``read_many(256)``).
3. One-way throughput of 4 MiB record batches against ``memcpy`` of the same
   bytes into already-faulted memory.

The two processes are pinned to the two cores (``os.sched_setaffinity``)
when the machine has at least two. The consumer of (2) and (3) receives each
batch and drops it: a stream batch is a zero-copy view, so it touches only
the batch's metadata, while Pipe and Queue consumers unpickle full copies.
Each figure is the median over repetitions; round trips also report p99.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import arrowshm
from arrowshm.testing import isolated_namespace

CTX = mp.get_context("spawn")
RESULTS = Path(__file__).resolve().parent / "results" / "stream.json"
ONE_ROW = pa.record_batch({"x": pa.array([1], pa.int64()), "y": pa.array([0.5])})
KIB = pa.record_batch({"x": pa.array(np.arange(128, dtype=np.int64))})
MIB4 = pa.record_batch({"x": pa.array(np.arange(512 * 1024, dtype=np.int64))})


def pin(cpu: int) -> str:
    n = os.cpu_count() or 1
    if n < 2 or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu % n})
    return f"pinned to CPU {cpu % n}"


def summarize(samples_ns: list[int]) -> tuple[float, float]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return float(np.median(a)), float(np.percentile(a, 99))


# ---------------------------------------------------------------------------------------
# round trips


def _echo_stream(namespace: str, q: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    pin(1)
    with arrowshm.StreamWriter("pong", ONE_ROW.schema, capacity_bytes=1 << 20) as w, \
            arrowshm.StreamReader("ping", open_timeout=60) as r:
        q.put("ready")
        for b in r:
            w.write(b)
            del b


def rtt_stream(n: int, warmup: int) -> list[int]:
    with isolated_namespace() as ns:
        q = CTX.Queue()
        w = arrowshm.StreamWriter("ping", ONE_ROW.schema, capacity_bytes=1 << 20)
        p = CTX.Process(target=_echo_stream, args=(ns, q), daemon=True)
        p.start()
        assert q.get(timeout=60) == "ready"
        r = arrowshm.StreamReader("pong", open_timeout=60)
        out = []
        clock = time.perf_counter_ns
        for i in range(n + warmup):
            t0 = clock()
            w.write(ONE_ROW)
            b = r.read()
            t1 = clock()
            del b
            if i >= warmup:
                out.append(t1 - t0)
        w.close()
        assert r.read(timeout=30) is None
        r.close()
        p.join(30)
    return out


def _echo_pipe(conn: Any) -> None:
    pin(1)
    while True:
        b = conn.recv()
        if b is None:
            break
        conn.send(b)


def rtt_pipe(n: int, warmup: int) -> list[int]:
    a, b = CTX.Pipe()
    p = CTX.Process(target=_echo_pipe, args=(b,), daemon=True)
    p.start()
    out = []
    clock = time.perf_counter_ns
    for i in range(n + warmup):
        t0 = clock()
        a.send(ONE_ROW)
        got = a.recv()
        t1 = clock()
        del got
        if i >= warmup:
            out.append(t1 - t0)
    a.send(None)
    p.join(30)
    return out


def _iox_ports(node: Any, tx: str, rx: str) -> tuple[Any, Any]:
    import iceoryx2 as iox2

    def service(name: str) -> Any:
        return (node.service_builder(iox2.ServiceName.new(name))
                .publish_subscribe(iox2.Slice[ctypes.c_uint8]).open_or_create())

    pub = service(tx).publisher_builder().initial_max_slice_len(4096).create()
    sub = service(rx).subscriber_builder().create()
    return pub, sub


def _iox_send(pub: Any, data: pa.Buffer) -> None:
    sample = pub.loan_slice_uninit(data.size)
    ctypes.memmove(sample.payload().as_ptr(), data.address, data.size)
    sample.assume_init().send()


def _iox_recv(sub: Any) -> Any:
    while True:
        s = sub.receive()
        if s is not None:
            return s


def _echo_iox(tag: str, arrow: bool, q: Any) -> None:
    import iceoryx2 as iox2

    pin(1)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    pub, sub = _iox_ports(node, f"{tag}-pong", f"{tag}-ping")
    q.put("ready")
    schema = ONE_ROW.schema
    while True:
        s = _iox_recv(sub)
        payload = s.payload()
        if payload.len() == 1:
            break
        buf = pa.py_buffer(payload.as_memory_view())
        if arrow:
            b = pa.ipc.read_record_batch(buf, schema)
            _iox_send(pub, b.serialize())
            del b
        else:
            _iox_send(pub, buf)
        del s, payload, buf


def rtt_iceoryx2(n: int, warmup: int, arrow: bool) -> list[int]:
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    tag = f"ashbench{os.getpid()}{'a' if arrow else 'r'}{time.monotonic_ns()}"
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    pub, sub = _iox_ports(node, f"{tag}-ping", f"{tag}-pong")
    q = CTX.Queue()
    p = CTX.Process(target=_echo_iox, args=(tag, arrow, q), daemon=True)
    p.start()
    assert q.get(timeout=60) == "ready"
    time.sleep(0.2)  # let the ports connect
    raw = ONE_ROW.serialize()
    schema = ONE_ROW.schema
    out = []
    clock = time.perf_counter_ns
    for i in range(n + warmup):
        t0 = clock()
        _iox_send(pub, ONE_ROW.serialize() if arrow else raw)
        s = _iox_recv(sub)
        if arrow:
            b = pa.ipc.read_record_batch(pa.py_buffer(s.payload().as_memory_view()), schema)
            del b
        t1 = clock()
        del s
        if i >= warmup:
            out.append(t1 - t0)
    _iox_send(pub, pa.py_buffer(b"x"))
    p.join(30)
    return out


# ---------------------------------------------------------------------------------------
# throughput


BURST = 64


def _drain_stream(namespace: str, q: Any, many: bool = False) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    pin(1)
    with arrowshm.StreamReader("tp", open_timeout=60) as r:
        q.put("ready")
        n = 0
        nbytes = 0
        if many:
            while True:
                run = r.read_many(256)
                if not run:
                    break
                n += len(run)
                nbytes += sum(b.num_rows for b in run)
                del run
        else:
            for b in r:
                n += 1
                nbytes += b.num_rows
                del b
        q.put((time.perf_counter(), n, nbytes))


def tp_stream(batch: pa.RecordBatch, n: int, capacity: int, many: bool = False) -> float:
    """Batches per second from the first write to the reader's last batch (with
    *many*: write_many of BURST batches, read_many)."""
    with isolated_namespace() as ns:
        q = CTX.Queue()
        with arrowshm.StreamWriter("tp", batch.schema, capacity_bytes=capacity,
                                   delete_on_close=True) as w:
            p = CTX.Process(target=_drain_stream, args=(ns, q, many), daemon=True)
            p.start()
            assert q.get(timeout=60) == "ready"
            t0 = time.perf_counter()
            if many:
                burst = [batch] * BURST
                n = n // BURST * BURST
                for _ in range(n // BURST):
                    w.write_many(burst)
            else:
                for _ in range(n):
                    w.write(batch)
        t1, got, _ = q.get(timeout=300)
        p.join(30)
        assert got == n
    return n / (t1 - t0)


def _drain_queue(q: Any, done: Any, n: int) -> None:
    pin(1)
    for _ in range(n):
        b = q.get()
        del b
    done.put(time.perf_counter())


def tp_queue(batch: pa.RecordBatch, n: int) -> float:
    q = CTX.Queue(maxsize=10_000)
    done = CTX.Queue()
    p = CTX.Process(target=_drain_queue, args=(q, done, n + 1), daemon=True)
    p.start()
    q.put(batch)  # the consumer has started once this is taken
    while not q.empty():
        time.sleep(0.01)
    t0 = time.perf_counter()
    for _ in range(n):
        q.put(batch)
    t1 = done.get(timeout=600)
    p.join(30)
    return n / (t1 - t0)


def memcpy_gbps(nbytes: int, reps: int = 50) -> float:
    src = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    dst[:] = 1  # faulted in, like a reused arena
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return nbytes / statistics.median(times) / 1e9


# ---------------------------------------------------------------------------------------


def have_iceoryx2() -> str | None:
    try:
        import iceoryx2  # noqa: F401
    except ImportError as exc:
        return f"iceoryx2 not installed ({exc}); `pip install iceoryx2` to include it"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)
    quick = args.quick
    reps = args.reps or (2 if quick else 5)
    n_rtt, warm = (3000, 300) if quick else (20_000, 2000)
    n_kib, n_kib_q = (40_000, 10_000) if quick else (200_000, 40_000)
    n_big = 50 if quick else 200
    pinning = pin(0)
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "pyarrow": pa.__version__,
                    "processes": pinning + " (parent), CPU 1 (child)"},
        "repetitions": reps,
        "load_average_at_start": os.getloadavg(),
    }
    notes: list[str] = []

    def rtt(label: str, fn: Any, *a: Any) -> dict[str, float]:
        meds, p99s = [], []
        for _ in range(reps):
            m, p = summarize(fn(*a))
            meds.append(m)
            p99s.append(p)
        out = {"median_us": statistics.median(meds), "p99_us": statistics.median(p99s),
               "runs_median_us": meds}
        print(f"  {label}: median {out['median_us']:.2f} us, p99 {out['p99_us']:.2f} us",
              file=sys.stderr)
        return out

    print("round trips ...", file=sys.stderr)
    r_stream = rtt("arrowshm", rtt_stream, n_rtt, warm)
    r_pipe = rtt("Pipe", rtt_pipe, n_rtt // 4, warm // 4)
    res["round_trip_1_row"] = {"arrowshm": r_stream, "pipe": r_pipe,
                               "ratio_vs_pipe": r_stream["median_us"] / r_pipe["median_us"]}
    why = have_iceoryx2()
    if why is None:
        r_iox = rtt("iceoryx2 (Arrow IPC bytes)", rtt_iceoryx2, n_rtt, warm, True)
        r_iox_raw = rtt("iceoryx2 (raw bytes)", rtt_iceoryx2, n_rtt, warm, False)
        res["round_trip_1_row"].update({
            "iceoryx2_arrow": r_iox, "iceoryx2_raw_bytes": r_iox_raw,
            "ratio_vs_iceoryx2_arrow": r_stream["median_us"] / r_iox["median_us"],
        })
    else:
        notes.append(why)
        res["round_trip_1_row"]["iceoryx2"] = None
        print(f"!! ICEORYX2 ABSENT from this stream table: {why}", file=sys.stderr, flush=True)

    print("1 KiB throughput ...", file=sys.stderr)
    s = [tp_stream(KIB, n_kib, 64 << 20) for _ in range(reps)]
    sm = ([tp_stream(KIB, n_kib, 64 << 20, many=True) for _ in range(reps)]
          if hasattr(arrowshm.StreamWriter, "write_many") else [])
    qq = [tp_queue(KIB, n_kib_q) for _ in range(reps)]
    res["throughput_1kib"] = {
        "batch_bytes": int(KIB.nbytes), "ipc_message_bytes": pa.ipc.get_record_batch_size(KIB),
        "arrowshm_batches_per_s": statistics.median(s), "queue_batches_per_s":
        statistics.median(qq), "ratio": statistics.median(s) / statistics.median(qq),
        "runs_arrowshm": s, "runs_queue": qq,
        "burst": BURST,
        "arrowshm_bursts_batches_per_s": statistics.median(sm) if sm else None,
        "ratio_bursts": statistics.median(sm) / statistics.median(qq) if sm else None,
        "runs_arrowshm_bursts": sm,
    }

    print("4 MiB throughput ...", file=sys.stderr)
    big = [tp_stream(MIB4, n_big, 64 << 20) * MIB4.nbytes / 1e9 for _ in range(reps)]
    mc = [memcpy_gbps(MIB4.nbytes) for _ in range(reps)]
    res["throughput_4mib"] = {
        "batch_bytes": int(MIB4.nbytes), "arrowshm_gb_per_s": statistics.median(big),
        "memcpy_gb_per_s": statistics.median(mc),
        "ratio": statistics.median(big) / statistics.median(mc),
        "runs_arrowshm": big, "runs_memcpy": mc,
    }
    res["load_average_at_end"] = os.getloadavg()
    res["notes"] = notes
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")

    rt = res["round_trip_1_row"]
    rows = [
        ("1-row batch round trip, median", f"{rt['arrowshm']['median_us']:.1f} us",
         f"Pipe {rt['pipe']['median_us']:.1f} us", f"{rt['ratio_vs_pipe']:.2f}x", "<= 0.25x"),
        ("1-row batch round trip, p99", f"{rt['arrowshm']['p99_us']:.1f} us",
         f"Pipe {rt['pipe']['p99_us']:.1f} us",
         f"{rt['arrowshm']['p99_us'] / rt['pipe']['p99_us']:.2f}x", ""),
    ]
    if rt.get("iceoryx2_arrow"):
        ia, ir = rt["iceoryx2_arrow"], rt["iceoryx2_raw_bytes"]
        rows.append(("1-row batch round trip vs iceoryx2", f"{rt['arrowshm']['median_us']:.1f} us",
                     f"iceoryx2 {ia['median_us']:.1f} us (Arrow IPC); {ir['median_us']:.1f} us "
                     "(raw bytes)", f"{rt['ratio_vs_iceoryx2_arrow']:.2f}x", "< 1x"))
    t1 = res["throughput_1kib"]
    rows.append(("1 KiB batches one way", f"{t1['arrowshm_batches_per_s'] / 1e3:.0f} k/s",
                 f"Queue {t1['queue_batches_per_s'] / 1e3:.1f} k/s", f"{t1['ratio']:.1f}x",
                 ">= 20x"))
    if t1["arrowshm_bursts_batches_per_s"]:
        rows.append((f"1 KiB batches one way, write_many({BURST}) / read_many",
                     f"{t1['arrowshm_bursts_batches_per_s'] / 1e3:.0f} k/s",
                     f"Queue {t1['queue_batches_per_s'] / 1e3:.1f} k/s (one per put)",
                     f"{t1['ratio_bursts']:.1f}x", ">= 20x"))
    t4 = res["throughput_4mib"]
    rows.append(("4 MiB batches one way", f"{t4['arrowshm_gb_per_s']:.2f} GB/s",
                 f"memcpy {t4['memcpy_gb_per_s']:.2f} GB/s", f"{t4['ratio']:.2f}x", ">= 0.5x"))
    print("| benchmark | arrowshm | baseline (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    where = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    load = res["load_average_at_start"][0]
    print(f"\n{reps} repetitions, medians; processes {pinning} (parent) / CPU 1 (child); "
          f"load average {load:.1f} at start; results in {where}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
