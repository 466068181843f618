"""Arrow Flight benchmarks: arrowshm's endpoint against a plain pyarrow.flight server,
and the lag of a mirror. Baselines are measured in the same run.

Run ``python bench/bench_flight.py`` (``--quick`` for a short run). Results go to
``bench/results/flight.json``; the Markdown tables are printed (and copied into
docs/FLIGHT.md by hand).

1. ``do_get`` of a 64 MiB and a 512 MiB table (``bench.common.make_table``:
   int64, float64, utf8) over loopback from ``arrowshm serve --flight`` (the
   table in shared memory, ticket = name + version, token checked by the
   middleware) against a plain ``pyarrow.flight`` server process that holds
   the same table in its own memory and answers ``do_get`` with
   ``RecordBatchStream(table)`` (no authentication). The client reads the
   whole table (``read_all``) each time; the two servers alternate, and each
   figure is the median of the repetitions.
2. Mirror lag: a producer process puts a small table (a timestamp column
   plus ``--lag-rows`` rows) into the remote namespace 10 times a second;
   ``arrowshm mirror`` (a process) mirrors it into a second namespace; this
   process waits on the local copy (``arrowshm.wait``) and records, for each
   local version, the time from the remote ``put`` to the local version being
   visible. Versions the mirror coalesced (several remote puts during one
   fetch) are counted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import arrowshm
from arrowshm.testing import cleanup_namespace, delete_all, unique_namespace
from bench.common import MiB, machine, make_table, median, p99, save

TOKEN = "bench-token"

_PLAIN_SERVER = textwrap.dedent("""
    import sys
    import pyarrow.flight as fl
    sys.path.insert(0, sys.argv[2])
    from bench.common import make_table

    table = make_table(int(sys.argv[1]), seed=7)

    class Plain(fl.FlightServerBase):
        def do_get(self, context, ticket):
            return fl.RecordBatchStream(table)

    server = Plain("grpc://127.0.0.1:0")
    print(server.port, flush=True)
    server.serve()
""")

_PRODUCER = textwrap.dedent("""
    import sys, time
    import numpy as np, pyarrow as pa
    import arrowshm
    rows, hz, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    payload = np.arange(rows, dtype=np.int64)
    period = 1.0 / hz
    t_next = time.monotonic()
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t_next += period
        stamp = np.full(rows, time.time(), dtype=np.float64)
        arrowshm.put("ticker", pa.table({"t_put": stamp, "x": payload}))
        n += 1
        time.sleep(max(0.0, t_next - time.monotonic()))
    print(n, flush=True)
""")


class _Service:
    """``arrowshm serve --flight`` on loopback in *namespace*."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.proc: subprocess.Popen[str] | None = None
        self.location = ""
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)

    def start(self) -> _Service:
        env = {**os.environ, "ARROWSHM_NAMESPACE": self.namespace}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrowshm._cli", "serve", "--port", "0", "--token", TOKEN,
             "--flight", "grpc://127.0.0.1:0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self._err, text=True, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "flight on " in line:
                self.location = line.split("flight on ", 1)[1].strip()
                return self
            if not line and self.proc.poll() is not None:
                break
        self._err.seek(0)
        raise RuntimeError(f"arrowshm serve did not start: {self._err.read()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _options(token: str | None) -> fl.FlightCallOptions:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return fl.FlightCallOptions(headers=headers)


def _timed_get(client: fl.FlightClient, ticket: fl.Ticket, token: str | None,
               rows: int) -> float:
    t0 = time.perf_counter()
    table = client.do_get(ticket, _options(token)).read_all()
    dt = time.perf_counter() - t0
    assert table.num_rows == rows, (table.num_rows, rows)
    del table
    return dt


def bench_do_get(size_mib: int, reps: int, namespace: str, svc: _Service) -> dict[str, Any]:
    """do_get throughput of arrowshm's endpoint and of a plain server, same table."""
    table = make_table(size_mib * MiB, seed=7)
    nbytes, rows = table.nbytes, table.num_rows
    with _in_ns(namespace):
        info = arrowshm.put(f"bench/{size_mib}", table)
    del table
    repo = str(Path(__file__).resolve().parent.parent)
    plain = subprocess.Popen([sys.executable, "-c", _PLAIN_SERVER, str(size_mib * MiB), repo],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert plain.stdout is not None
        port = int(plain.stdout.readline())
        ours = fl.FlightClient(svc.location)
        theirs = fl.FlightClient(f"grpc://127.0.0.1:{port}")
        ticket = fl.Ticket(f'{{"kind": "dataset", "name": "bench/{size_mib}", '
                           f'"version": {info.version}}}'.encode())
        plain_ticket = fl.Ticket(b"t")
        _timed_get(ours, ticket, TOKEN, rows)  # warm both: connections, page faults
        _timed_get(theirs, plain_ticket, None, rows)
        t_ours: list[float] = []
        t_plain: list[float] = []
        for _ in range(reps):
            t_ours.append(_timed_get(ours, ticket, TOKEN, rows))
            t_plain.append(_timed_get(theirs, plain_ticket, None, rows))
        ours.close()
        theirs.close()
    finally:
        plain.kill()
        plain.wait()
    ours_gbs = nbytes / median(t_ours) / 1e9
    plain_gbs = nbytes / median(t_plain) / 1e9
    return {"size_mib": size_mib, "nbytes": nbytes, "rows": rows, "reps": reps,
            "arrowshm_s": t_ours, "plain_s": t_plain,
            "arrowshm_gb_s": ours_gbs, "plain_gb_s": plain_gbs, "ratio": ours_gbs / plain_gbs}


class _in_ns:
    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.saved: str | None = None

    def __enter__(self) -> None:
        self.saved = os.environ.get("ARROWSHM_NAMESPACE")
        os.environ["ARROWSHM_NAMESPACE"] = self.ns

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop("ARROWSHM_NAMESPACE", None)
        else:
            os.environ["ARROWSHM_NAMESPACE"] = self.saved


def bench_mirror_lag(remote_ns: str, local_ns: str, svc: _Service, rows: int, hz: float,
                     seconds: float) -> dict[str, Any]:
    """Lag from a remote put to the local mirror version, at *hz* puts a second."""
    env = {**os.environ, "ARROWSHM_TOKEN": TOKEN}
    mirror = subprocess.Popen(
        [sys.executable, "-m", "arrowshm._cli", "mirror", svc.location, "ticker", "--as",
         "ticker", "--poll", "2"], env={**env, "ARROWSHM_NAMESPACE": local_ns},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lags: list[float] = []
    seen = 0
    try:
        producer = subprocess.Popen(
            [sys.executable, "-c", _PRODUCER, str(rows), str(hz), str(seconds)],
            env={**env, "ARROWSHM_NAMESPACE": remote_ns}, stdout=subprocess.PIPE, text=True)
        with _in_ns(local_ns):
            version = 0
            end = time.monotonic() + seconds + 30
            while time.monotonic() < end:
                try:
                    info = arrowshm.wait("ticker", after_version=version, timeout=2.0)
                except arrowshm.WaitTimeoutError:
                    if producer.poll() is not None:
                        break
                    continue
                now = time.time()
                version = info.version
                t_put = float(arrowshm.get("ticker", version=None).column("t_put")[0].as_py())
                lags.append(now - t_put)
                seen += 1
        assert producer.stdout is not None
        published = int(producer.stdout.read().strip() or 0)
        producer.wait()
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(30)
    lags = lags[1:]  # the first local version may predate the mirror's start
    return {"rows": rows, "hz": hz, "seconds": seconds, "remote_versions": published,
            "local_versions": seen, "lag_median_s": median(lags), "lag_p99_s": p99(lags),
            "lag_max_s": max(lags), "lags_s": lags}


def markdown(res: dict[str, Any]) -> str:
    lines = ["| table | arrowshm Flight (GB/s) | plain pyarrow.flight (GB/s) | ratio |",
             "|---|---:|---:|---:|"]
    for r in res["do_get"]:
        lines.append(f"| {r['size_mib']} MiB ({r['rows']:,} rows) | {r['arrowshm_gb_s']:.2f} | "
                     f"{r['plain_gb_s']:.2f} | {r['ratio']:.2f}x |")
    m = res["mirror_lag"]
    lines += ["", "| mirror of a dataset put 10x/s | value |", "|---|---:|",
              f"| rows per version | {m['rows']:,} |",
              f"| remote versions / local versions | {m['remote_versions']} / "
              f"{m['local_versions']} |",
              f"| lag median | {m['lag_median_s'] * 1e3:.1f} ms |",
              f"| lag p99 | {m['lag_p99_s'] * 1e3:.1f} ms |",
              f"| lag max | {m['lag_max_s'] * 1e3:.1f} ms |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, shorter lag run")
    p.add_argument("--sizes", default="64,512", help="table sizes in MiB (default 64,512)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 7; quick 3)")
    p.add_argument("--lag-rows", type=int, default=10_000, help="rows per mirrored version")
    args = p.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    remote_ns, local_ns = unique_namespace("bfr"), unique_namespace("bfl")
    svc = _Service(remote_ns).start()
    try:
        res: dict[str, Any] = {"machine": machine(), "pyarrow": pa.__version__,
                               "do_get": [], "mirror_lag": {}}
        for size in (int(s) for s in args.sizes.split(",")):
            r = bench_do_get(size, reps, remote_ns, svc)
            print(f"do_get {size} MiB: arrowshm {r['arrowshm_gb_s']:.2f} GB/s, plain "
                  f"{r['plain_gb_s']:.2f} GB/s, ratio {r['ratio']:.2f}", flush=True)
            res["do_get"].append(r)
            with _in_ns(remote_ns):
                arrowshm.delete(f"bench/{size}")
        res["mirror_lag"] = bench_mirror_lag(remote_ns, local_ns, svc, args.lag_rows, 10.0,
                                             5.0 if args.quick else 20.0)
    finally:
        svc.stop()
        for ns in (remote_ns, local_ns):
            delete_all(ns)
            cleanup_namespace(ns)
    path = save("flight", res)
    print(markdown(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
