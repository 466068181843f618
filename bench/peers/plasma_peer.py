"""Peer: Plasma, the shared-memory object store of pyarrow <= 11.

Runs in its own virtual environment (bench/.venvs/plasma: ``pyarrow==11.*``,
``numpy<2``), started as a script: it launches ``plasma_store`` (2 GB, socket
in the work directory), a producer (this process) and a consumer process, and
prints JSON timings. The store is always stopped in a ``finally``.

put = create + Arrow IPC written into the object's buffer + seal; get =
``get_buffers`` + reading the IPC stream (zero-copy) into a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow as pa

try:
    from . import _proto
except ImportError:  # run as a script in the peer's interpreter
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _proto  # type: ignore[no-redef]

META = {
    "name": "plasma",
    "label": "Plasma (pyarrow 11)",
    "venv": "plasma",
    "requirements": ["pyarrow==11.*", "numpy<2"],
    "check": "import pyarrow.plasma",
    "timeout": 900,
    "small": True,
}


class PlasmaStore(_proto.Store):
    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.client = None

    def __getstate__(self):  # type: ignore[no-untyped-def]
        return {"sock": self.sock}

    def __setstate__(self, s):  # type: ignore[no-untyped-def]
        self.sock, self.client = s["sock"], None

    def connect(self) -> None:
        import pyarrow.plasma as plasma

        self.plasma = plasma
        self.client = plasma.connect(self.sock)

    def put(self, table: pa.Table) -> bytes:
        sink = pa.MockOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        oid = self.plasma.ObjectID(os.urandom(20))
        buf = self.client.create(oid, sink.size())
        with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buf), table.schema) as w:
            w.write_table(table)
        del buf
        self.client.seal(oid)
        return oid.binary()

    def get(self, handle: bytes) -> pa.Table:
        [buf] = self.client.get_buffers([self.plasma.ObjectID(handle)])
        return pa.ipc.open_stream(buf).read_all()

    def free(self, handle: bytes) -> None:
        self.client.delete([self.plasma.ObjectID(handle)])

    def handle_for(self, tag: int, i: int) -> bytes:
        return b"small" + tag.to_bytes(5, "little") + i.to_bytes(10, "little")

    def put_as(self, table: pa.Table, handle: bytes) -> None:
        sink = pa.MockOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        oid = self.plasma.ObjectID(handle)
        buf = self.client.create(oid, sink.size())
        with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buf), table.schema) as w:
            w.write_table(table)
        del buf
        self.client.seal(oid)

    def get_wait(self, handle: bytes) -> pa.Table:
        # get_buffers blocks until the object is sealed (timeout_ms=-1)
        [buf] = self.client.get_buffers([self.plasma.ObjectID(handle)], timeout_ms=-1)
        return pa.ipc.open_stream(buf).read_all()

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()


def main() -> int:
    opts = _proto.parse_args()
    sock = os.path.join(opts["workdir"], "plasma.sock")
    exe = os.path.join(os.path.dirname(sys.executable), "plasma_store")
    daemon = subprocess.Popen([exe, "-m", str(2_000_000_000), "-s", sock],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    consumer = None
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        store = PlasmaStore(sock)
        store.connect()
        consumer = _proto.PipeConsumer(store)
        rows = _proto.handoff(store, consumer, opts)
        small = _proto.small_tables(store, consumer, opts) if opts["small"] else []
        _proto.emit({"version": "pyarrow " + pa.__version__, "rows": rows, "small": small})
    finally:
        if consumer is not None:
            consumer.stop()
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
