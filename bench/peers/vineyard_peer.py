"""Peer: Vineyard, an in-memory immutable data manager (pip ``vineyard``).

Runs in its own virtual environment (bench/.venvs/vineyard), started as a
script: it launches the bundled ``vineyardd`` (``--meta=local``, RPC off so
nothing listens beyond the Unix socket in the work directory, 2 GiB), a
producer (this process) and a consumer process, and prints JSON timings. The
daemon is always stopped in a ``finally``.

put = ``client.put(table)``; get = ``client.get(object_id)`` → ``pyarrow.Table``
(Vineyard hands back utf8 columns as ``large_string``).
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
    "name": "vineyard",
    "label": "Vineyard",
    "venv": "vineyard",
    "requirements": ["vineyard"],
    "check": "import vineyard",
    "timeout": 900,
}


class VineyardStore(_proto.Store):
    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.client = None

    def __getstate__(self):  # type: ignore[no-untyped-def]
        return {"sock": self.sock}

    def __setstate__(self, s):  # type: ignore[no-untyped-def]
        self.sock, self.client = s["sock"], None

    def connect(self) -> None:
        import vineyard

        self.vineyard = vineyard
        self.client = vineyard.connect(self.sock)

    def put(self, table: pa.Table) -> int:
        return int(self.client.put(table))

    def get(self, handle: int) -> pa.Table:
        return self.client.get(self.vineyard.ObjectID(handle))

    def free(self, handle: int) -> None:
        self.client.delete(self.vineyard.ObjectID(handle), deep=True)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def main() -> int:
    import vineyard

    opts = _proto.parse_args()
    sock = os.path.join(opts["workdir"], "vineyard.sock")
    exe = os.path.join(os.path.dirname(vineyard.__file__), "bdist", "vineyardd")
    logf = open(os.path.join(opts["workdir"], "vineyardd.log"), "wb")  # noqa: SIM115
    daemon = subprocess.Popen([exe, f"--socket={sock}", "--size=2Gi", "--meta=local",
                               "--rpc=false"], stdout=logf, stderr=subprocess.STDOUT)
    consumer = None
    try:
        for _ in range(400):
            if os.path.exists(sock) or daemon.poll() is not None:
                break
            time.sleep(0.05)
        if daemon.poll() is not None:
            raise RuntimeError(f"vineyardd exited with {daemon.returncode}")
        store = VineyardStore(sock)
        store.connect()
        consumer = _proto.PipeConsumer(store)
        rows = _proto.handoff(store, consumer, opts)
        _proto.emit({"version": "vineyard " + vineyard.__version__, "rows": rows})
    finally:
        if consumer is not None:
            consumer.stop()
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        logf.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
