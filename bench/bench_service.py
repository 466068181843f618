"""Load test of the control plane: N concurrent clients over the Unix socket.

Starts ``arrowshm serve`` in a fresh namespace, registers 1,000 small datasets,
then runs 64 concurrent clients (processes x threads, each with its own
keep-alive connection) for 30 s, half on ``GET /v1/datasets`` (the whole
listing) and half on ``GET /v1/datasets/{name}``. Reports requests/s and
latency percentiles per route; writes bench/results/service.json and prints a
Markdown table.

    python bench/bench_service.py [--clients 64] [--duration 30] [--datasets 1000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "service.json"
ROUTES = ("GET /v1/datasets", "GET /v1/datasets/{name}")


def _worker(sock: str, names: list[str], threads: int, duration: float, seed: int,
            out: Any) -> None:
    import httpx

    lat: dict[str, list[float]] = {r: [] for r in ROUTES}
    errors = [0]
    start_at = time.monotonic() + 0.5
    lock = threading.Lock()

    def run(tid: int) -> None:
        rng = random.Random(seed * 1000 + tid)
        mine: dict[str, list[float]] = {r: [] for r in ROUTES}
        bad = 0
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://x",
                          timeout=30) as c:
            c.get("/healthz")
            while time.monotonic() < start_at:
                time.sleep(0.001)
            end = start_at + duration
            while (t0 := time.perf_counter()) and time.monotonic() < end:
                if rng.random() < 0.5:
                    route, path = ROUTES[0], "/v1/datasets"
                else:
                    route, path = ROUTES[1], f"/v1/datasets/{rng.choice(names)}"
                r = c.get(path)
                mine[route].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    bad += 1
        with lock:
            for k, v in mine.items():
                lat[k].extend(v)
            errors[0] += bad

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(({k: np.asarray(v) for k, v in lat.items()}, errors[0]))


def _start_server(sock: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "arrowshm._cli", "serve", "--socket", sock, "--log-level",
         "warning"], stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.2)[0] and re.search(
                "listening on", proc.stdout.readline()):
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"arrowshm serve exited with {proc.returncode}")
    raise SystemExit("arrowshm serve did not start")


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q) * 1e3) if len(a) else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--processes", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--datasets", type=int, default=1000)
    args = ap.parse_args()

    import pyarrow as pa

    import arrowshm
    from arrowshm.testing import isolated_namespace

    with isolated_namespace(os.environ.get("ARROWSHM_BENCH_NAMESPACE")) as ns, \
            tempfile.TemporaryDirectory() as tmp:
        names = [f"bench/{i // 100}/ds{i:04d}" for i in range(args.datasets)]
        t = pa.table({"x": np.arange(100, dtype=np.int64), "y": np.arange(100.0)})
        for n in names:
            arrowshm.put(n, t)
        sock = str(Path(tmp) / "svc.sock")
        server = _start_server(sock, {**os.environ, "ARROWSHM_NAMESPACE": ns})
        try:
            per = [args.clients // args.processes] * args.processes
            for i in range(args.clients % args.processes):
                per[i] += 1
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            procs = [ctx.Process(target=_worker, args=(sock, names, k, args.duration, i, q))
                     for i, k in enumerate(per) if k]
            for p in procs:
                p.start()
            parts = [q.get(timeout=args.duration + 120) for _ in procs]
            for p in procs:
                p.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
        lat = {r: np.concatenate([p[0][r] for p in parts]) for r in ROUTES}
        errors = sum(p[1] for p in parts)
        everything = np.concatenate(list(lat.values()))

    rows = []
    for route, a in [*lat.items(), ("all", everything)]:
        rows.append({
            "route": route, "requests": len(a), "rps": len(a) / args.duration,
            "p50_ms": _pct(a, 50), "p90_ms": _pct(a, 90), "p99_ms": _pct(a, 99),
            "max_ms": float(a.max() * 1e3) if len(a) else float("nan"),
        })
    result = {
        "benchmark": "service", "clients": args.clients, "processes": args.processes,
        "duration_s": args.duration, "datasets": args.datasets, "errors": errors,
        "goal_p99_ms": 20.0, "p99_ms": rows[-1]["p99_ms"], "rps": rows[-1]["rps"],
        "routes": rows, "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "machine": platform.machine()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"### arrowshm serve: {args.clients} clients over UDS, {args.duration:g} s, "
          f"{args.datasets} datasets ({os.cpu_count()} CPUs)\n")
    print("| route | requests | req/s | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['route']} | {r['requests']:,} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} |")
    verdict = "meets" if result["p99_ms"] < 20 else "misses"
    print(f"\np99 {result['p99_ms']:.1f} ms {verdict} the 20 ms goal; errors: {errors}. "
          f"Results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
