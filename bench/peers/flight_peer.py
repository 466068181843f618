"""Baseline: Arrow Flight on localhost (``pyarrow.flight``, the main environment).

A server process holds the table in its memory (loaded before timing); a
client process, already connected and warm, does ``do_get`` → ``read_all``.
That call is the whole hand-off, so its time is both the "first get" and the
end-to-end figure; there is no separate put (the server already holds the
table) and no cheap repeated get (every ``do_get`` moves the bytes again).
The server sends the table in record batches of at most 1 Mi rows (~36 MiB),
as a Flight server would; gRPC on 127.0.0.1 only. Both processes are stopped
in a ``finally``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

try:
    from . import _proto
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _proto  # type: ignore[no-redef]

META = {
    "name": "flight",
    "label": "Arrow Flight (localhost)",
    "venv": None,  # the main environment's pyarrow
    "requirements": [],
    "check": "import pyarrow.flight",
    "timeout": 900,
}

CHUNK_ROWS = 1 << 20


class Server(flight.FlightServerBase):
    def __init__(self) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.table: pa.Table | None = None

    def do_action(self, context: Any, action: flight.Action) -> Any:
        if action.type == "load":
            self.table = None
            self.table = _proto.load_table(action.body.to_pybytes().decode())
            return iter([flight.Result(b"ok")])
        raise KeyError(action.type)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        assert self.table is not None
        return flight.GeneratorStream(self.table.schema,
                                      iter(self.table.to_batches(max_chunksize=CHUNK_ROWS)))


def _serve(conn: Any) -> None:
    server = Server()
    conn.send(server.port)
    server.serve()


class FlightStore(_proto.Store):
    def __init__(self, port: int) -> None:
        self.port = port
        self.client: flight.FlightClient | None = None

    def __getstate__(self):  # type: ignore[no-untyped-def]
        return {"port": self.port}

    def __setstate__(self, s):  # type: ignore[no-untyped-def]
        self.port, self.client = s["port"], None

    def connect(self) -> None:
        self.client = flight.connect(f"grpc://127.0.0.1:{self.port}")

    def load(self, path: str) -> None:
        assert self.client is not None
        list(self.client.do_action(flight.Action("load", path.encode())))

    def get(self, handle: Any) -> pa.Table:
        assert self.client is not None
        return self.client.do_get(flight.Ticket(b"table")).read_all()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def main() -> int:
    opts = _proto.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    consumer = None
    try:
        if not parent.poll(60):
            raise RuntimeError("Flight server did not start")
        store = FlightStore(parent.recv())
        store.connect()
        consumer = _proto.PipeConsumer(store)
        warm = os.path.join(opts["workdir"], "flight-warm.arrow")
        tiny = pa.table({"x": list(range(1000))})
        with pa.OSFile(warm, "wb") as f, pa.ipc.new_file(f, tiny.schema) as w:
            w.write_table(tiny)
        store.load(warm)
        for _ in range(3):
            consumer.get(None)
            consumer.release()
        rows = []
        for size, path in opts["tables"]:
            store.load(path)
            gets, nbytes = [], None
            for _ in range(opts["reps"]):
                _t, get_s, _n = consumer.get(None)
                gets.append(get_s)
                consumer.release()
            nbytes = _proto.load_table(path).nbytes
            g = _proto.median(gets)
            rows.append({"size_mib": size, "nbytes": nbytes, "put_s": None, "first_get_s": g,
                         "e2e_s": g, "repeat_get_s": None, "reps": opts["reps"], "gets": gets})
            _proto.log(f"{size} MiB: do_get+read_all {g:.6f}s")
        store.close()
        _proto.emit({"version": "pyarrow " + pa.__version__, "rows": rows})
    finally:
        if consumer is not None:
            consumer.stop()
        server.kill()
        server.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
