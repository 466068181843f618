"""A real ``arrowshm serve --flight`` subprocess in a namespace of its own."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import IO

import pyarrow as pa
import pyarrow.flight as fl

from arrowshm.testing import cleanup_namespace, data_objects, delete_all, namespace_objects

TOKEN = "flight-s3cret"
_HTTP_RE = re.compile(r"listening on (\S+)")
_FLIGHT_RE = re.compile(r"flight on (\S+)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def auth(token: str = TOKEN, timeout: float | None = 30.0) -> fl.FlightCallOptions:
    return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())],
                                timeout=timeout)


class FlightServe:
    """``arrowshm serve --port 0 --flight grpc://HOST:PORT`` in namespace *namespace*,
    optionally wrapped by *prefix* (e.g. ``ip netns exec NS``); SIGTERM then SIGKILL on exit."""

    def __init__(self, namespace: str, *, host: str = "127.0.0.1", flight_port: int = 0,
                 prefix: Sequence[str] = (), extra: Sequence[str] = (),
                 tls_root: bytes | None = None, start_timeout: float = 60.0) -> None:
        self.namespace = namespace
        self.prefix = list(prefix)
        self.tls_root = tls_root
        self.args = [*prefix, sys.executable, "-m", "arrowshm._cli", "serve",
                     "--reaper-interval", "0.5", "--host", host, "--port", "0",
                     "--token", TOKEN, "--flight", f"grpc://{host}:{flight_port}", *extra]
        self.env = {**os.environ, "ARROWSHM_NAMESPACE": namespace}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.http = ""
        self.location = ""
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)

    def __enter__(self) -> FlightServe:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=self.env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        out = self.proc.stdout

        def pump() -> None:  # a thread: select() cannot see lines TextIO already buffered
            for line in out:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and not self.location:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if m := _HTTP_RE.search(line):
                self.http = m.group(1)
            if m := _FLIGHT_RE.search(line):
                self.location = m.group(1)
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"arrowshm serve exited {self.proc.returncode}: "
                                     f"{self.logs()}")
        if not self.location:
            raise AssertionError("arrowshm serve did not print its Flight location")
        if self.prefix:  # another network namespace: probe from inside it
            code = (f"import time, pyarrow.flight as fl\n"
                    f"c = fl.FlightClient({self.location!r})\n"
                    f"o = fl.FlightCallOptions(headers=[(b'authorization', b'Bearer {TOKEN}')],"
                    f" timeout=5)\n"
                    f"for _ in range(600):\n"
                    f"    try:\n        list(c.list_actions(o)); break\n"
                    f"    except fl.FlightError:\n        time.sleep(0.05)\n"
                    f"else:\n    raise SystemExit(1)\n")
            subprocess.run([*self.prefix, sys.executable, "-c", code], check=True,
                           timeout=self.start_timeout)
            return
        client = self.client()
        try:
            while time.monotonic() < deadline:
                try:
                    list(client.list_actions(auth(timeout=5)))
                    return
                except fl.FlightError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError("the Flight endpoint never answered")

    def client(self) -> fl.FlightClient:
        if self.tls_root is not None:
            return fl.FlightClient(self.location, tls_root_certs=self.tls_root)
        return fl.FlightClient(self.location)

    def kill(self) -> None:
        """SIGKILL: the service dies mid-whatever."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        return self.proc.returncode

    def logs(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._stderr.close()


@contextlib.contextmanager
def in_namespace(namespace: str) -> Iterator[None]:
    """Run a block of this process's arrowshm calls in *namespace*."""
    saved = os.environ.get("ARROWSHM_NAMESPACE")
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ARROWSHM_NAMESPACE", None)
        else:
            os.environ["ARROWSHM_NAMESPACE"] = saved


def clean_remote(namespace: str) -> list[str]:
    """Delete the remote namespace's entries and unlink its objects; returns what was
    still left after the deletes (besides retired segments the dead service pooled)."""
    from arrowshm import gc
    from arrowshm._shm.mapcache import flush_releases

    flush_releases()
    delete_all(namespace)
    with in_namespace(namespace):
        gc()  # segments the stopped service kept pooled for reuse belong to a dead process
    left = data_objects(namespace)
    cleanup_namespace(namespace)
    assert namespace_objects(namespace) == []
    return left




def flight_put(location: str, name: str, table: pa.Table) -> int:
    """Publish *table* as the next version of *name* through the remote's ``do_put``
    (what a producer on another host does); returns the new version."""
    client = fl.FlightClient(location)
    try:
        writer, meta = client.do_put(fl.FlightDescriptor.for_path(name), table.schema, auth())
        writer.write_table(table)
        writer.done_writing()
        answer = json.loads(meta.read().to_pybytes())
        writer.close()
    finally:
        client.close()
    return int(answer["version"])


def put_stamped_in(namespace: str, name: str, tag: int, rows: int) -> None:
    """A separate process puts ``stamped_table(tag, rows)`` into *namespace*: this
    process never switches ARROWSHM_NAMESPACE while a mirror thread of it runs."""
    code = (
        "import sys, numpy as np, pyarrow as pa, arrowshm\n"
        "tag, rows = int(sys.argv[2]), int(sys.argv[3])\n"
        "arrowshm.put(sys.argv[1], pa.table({'tag': np.full(rows, tag, dtype=np.int64),"
        " 'v': np.arange(rows, dtype=np.float64) + tag,"
        " 'tail': np.full(rows, tag, dtype=np.int64)}))\n"
    )
    subprocess.run([sys.executable, "-c", code, name, str(tag), str(rows)], check=True,
                   timeout=120, env={**os.environ, "ARROWSHM_NAMESPACE": namespace})


def pump_lines(stream: IO[str]) -> queue.Queue[str]:
    """A queue that a daemon thread fills with the lines of *stream*."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines
