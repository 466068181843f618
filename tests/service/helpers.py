"""A real ``arrowshm serve`` subprocess for the service tests."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

_LISTEN_RE = re.compile(r"listening on (\S+)")


class ServeProcess:
    """``arrowshm serve ARGS`` in the current namespace; stopped (SIGTERM, then SIGKILL)
    on exit. ``address`` is what it printed: ``unix:PATH`` or ``http://HOST:PORT``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.args = ["--reaper-interval", "0.2", *args]
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.returncode: int | None = None
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrowshm._cli", "serve", *self.args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=self.env,
        )
        try:
            self._wait_listening()
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                m = _LISTEN_RE.search(line)
                if m:
                    self.address = m.group(1)
                    return
            if self.proc.poll() is not None:
                err = self.logs()
                raise AssertionError(f"arrowshm serve exited {self.proc.returncode}: {err}")
        raise AssertionError("arrowshm serve did not print where it listens")

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self.address.startswith("unix:"):
            return httpx.Client(transport=httpx.HTTPTransport(uds=self.address[5:]),
                                base_url="http://arrowshm", headers=headers, timeout=10)
        return httpx.Client(base_url=self.address, headers=headers, timeout=10)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        with self.http() as c:
            while time.monotonic() < deadline:
                try:
                    if c.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError("arrowshm serve never became healthy")

    @property
    def socket_path(self) -> Path:
        assert self.address.startswith("unix:")
        return Path(self.address[5:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.returncode

    def close(self) -> None:
        self._stderr.close()

    def logs(self) -> str:
        """Everything the service wrote to stderr so far (JSON lines)."""
        self._stderr.seek(0)
        return self._stderr.read()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
