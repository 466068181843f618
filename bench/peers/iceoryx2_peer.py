"""Stream peer: iceoryx2's Python bindings, round trip of a small message.

Runs in its own virtual environment (bench/.venvs/iceoryx2), started as a
script. Two processes play ping-pong over two publish-subscribe services
(payload: one ``ctypes.c_uint64``), each polling its subscriber in a loop, as
iceoryx2's Python API does without an event service; the same driver also
measures ``multiprocessing.Pipe`` ping-pong between two processes, so both
figures come from one run. ``python -m bench`` runs this only when
bench/results/stream.json (bench/bench_stream.py) has no iceoryx2 figure.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import sys
import time
from typing import Any

try:
    from . import _proto
except ImportError:  # run as a script in the peer's interpreter
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _proto  # type: ignore[no-redef]

META = {
    "name": "iceoryx2",
    "label": "iceoryx2 (Python, polling)",
    "venv": "iceoryx2",
    "requirements": ["iceoryx2"],
    "check": "import iceoryx2",
    "timeout": 300,
    "kind": "stream",
}


def _ports(tag: str, send: str, recv: str) -> tuple[Any, Any, Any]:
    import iceoryx2 as iox2

    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ports = []
    for svc_name in (send, recv):
        svc = (node.service_builder(iox2.ServiceName.new(f"{tag}/{svc_name}"))
               .publish_subscribe(ctypes.c_uint64).open_or_create())
        ports.append(svc)
    pub = ports[0].publisher_builder().create()
    sub = ports[1].subscriber_builder().create()
    return node, pub, sub


def _send(pub: Any, value: int) -> None:
    sample = pub.loan_uninit()
    sample = sample.write_payload(ctypes.c_uint64(value))
    sample.send()


def _recv(sub: Any, deadline: float) -> int:
    while True:
        sample = sub.receive()
        if sample is not None:
            return int(sample.payload().contents.value)
        if time.monotonic() > deadline:
            raise TimeoutError("iceoryx2 pong did not arrive")


def _echo_iox(tag: str, n: int, ready: Any) -> None:
    node, pub, sub = _ports(tag, "pong", "ping")
    ready.send(True)
    for _ in range(n):
        _send(pub, _recv(sub, time.monotonic() + 60))
    ready.recv()
    del pub, sub, node


def _echo_pipe(conn: Any, n: int) -> None:
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def _version() -> str:
    from importlib.metadata import version

    return version("iceoryx2")


def main() -> int:
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    opts = _proto.parse_args()
    n = max(200, opts["repeat"] * 10)
    ctx = mp.get_context("spawn")
    tag = f"ashbench{os.getpid()}"
    node, pub, sub = _ports(tag, "ping", "pong")
    a, b = ctx.Pipe()
    echo = ctx.Process(target=_echo_iox, args=(tag, n + 100, b), daemon=True)
    echo.start()
    try:
        a.recv()
        time.sleep(0.2)  # let the subscribers connect
        times = []
        for i in range(n + 100):
            t0 = time.perf_counter_ns()
            _send(pub, i)
            got = _recv(sub, time.monotonic() + 30)
            t1 = time.perf_counter_ns()
            if got != i:
                raise RuntimeError(f"iceoryx2 echoed {got}, expected {i}")
            if i >= 100:
                times.append((t1 - t0) / 1e9)
        a.send(True)
    finally:
        echo.join(10)
        if echo.is_alive():
            echo.kill()
        del pub, sub, node
    a2, b2 = ctx.Pipe()
    pecho = ctx.Process(target=_echo_pipe, args=(b2, n + 100), daemon=True)
    pecho.start()
    ptimes = []
    try:
        for i in range(n + 100):
            t0 = time.perf_counter_ns()
            a2.send_bytes(b"12345678")
            a2.recv_bytes()
            if i >= 100:
                ptimes.append((time.perf_counter_ns() - t0) / 1e9)
    finally:
        pecho.join(10)
        if pecho.is_alive():
            pecho.kill()
    st = sorted(times)
    sp = sorted(ptimes)
    _proto.emit({"version": "iceoryx2 " + _version(), "kind": "stream",
                 "round_trips": n,
                 "iceoryx2": {"round_trip_median_s": _proto.median(times),
                              "round_trip_p99_s": st[int(0.99 * (len(st) - 1))]},
                 "pipe": {"round_trip_median_s": _proto.median(ptimes),
                          "round_trip_p99_s": sp[int(0.99 * (len(sp) - 1))]}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
