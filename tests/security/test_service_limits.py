"""Attack 7 and 8(f): slow, greedy and WebSocket clients of ``arrowshm serve``.

Every test starts a real service process and talks to it over real loopback
sockets; every loop is bounded and every socket is closed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..service.helpers import ServeProcess
from .helpers import wait_for

TOKEN = "limits-token"
PARTIAL_HEAD = b"GET /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # never finished


def _host_port(srv: ServeProcess) -> tuple[str, int]:
    host, port = srv.address.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@contextlib.contextmanager
def _slow_clients(srv: ServeProcess, n: int) -> Iterator[list[socket.socket]]:
    """*n* connections that each send part of a request head, then stall."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(_host_port(srv), timeout=10)
            s.sendall(PARTIAL_HEAD)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the service closed *s* (EOF or reset; an answer first is fine)."""
    try:
        while select.select([s], [], [], 0)[0]:
            if not s.recv(65536):
                return True
    except OSError:
        return True
    return False


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _serve(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
    return ServeProcess("--host", "127.0.0.1", "--port", "0", *args,
                        env={"ARROWSHM_TOKEN": TOKEN, **(env or {})})


@pytest.mark.timeout(180)
def test_300_slow_clients_neither_block_a_request_nor_stay_after_the_header_timeout() -> None:
    with _serve(env={"ARROWSHM_HEADER_TIMEOUT_S": "3"}) as srv:
        assert srv.proc is not None
        idle_fds = _open_fds(srv.proc.pid)
        with _slow_clients(srv, 300) as socks, srv.http(TOKEN) as c:
            # a normal authenticated request is served while 300 clients hang
            r = c.get("/v1/datasets")
            assert r.status_code == 200 and r.json()["count"] == 0
            # and every slow client is disconnected after the header timeout
            pending = list(socks)

            def all_closed() -> bool:
                pending[:] = [s for s in pending if not _closed_by_peer(s)]
                return not pending

            assert wait_for(all_closed, timeout=90), f"{len(pending)} slow clients still held"
            # the descriptors went back: the reaper and Flight can have them
            assert wait_for(lambda: _open_fds(srv.proc.pid) <= idle_fds + 4, timeout=30)
            assert c.get("/v1/datasets").status_code == 200
        logs = srv.logs()
    assert '"event": "listening"' in logs


@pytest.mark.timeout(120)
def test_a_slow_client_gets_408_and_is_closed() -> None:
    with _serve("--header-timeout", "1") as srv, \
            socket.create_connection(_host_port(srv), timeout=30) as s:
        s.sendall(PARTIAL_HEAD)
        answer = b""
        while chunk := s.recv(65536):  # until the service closes the connection
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ")
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["code"] == "WaitTimeoutError" and "1 s" in body["detail"]


@pytest.mark.timeout(120)
def test_past_the_connection_limit_the_oldest_idle_connections_make_room() -> None:
    with _serve("--max-connections", "50", "--header-timeout", "120") as srv, \
            _slow_clients(srv, 100) as socks, srv.http(TOKEN) as c:
        # 50 of the slow ones were closed to make room; the service holds at most 50
        assert wait_for(lambda: sum(_closed_by_peer(s) for s in socks[:50]) == 50)
        assert not any(_closed_by_peer(s) for s in socks[51:])
        r = c.get("/v1/datasets")  # one more, served: it closes the oldest slow one
        assert r.status_code == 200
        assert wait_for(lambda: _closed_by_peer(socks[50]))


@pytest.mark.timeout(120)
def test_request_bodies_and_heads_are_capped() -> None:
    with _serve("--max-body-bytes", "1024") as srv, srv.http(TOKEN) as c:
        r = c.put("/v1/quota", content=b"x" * 2048,
                  headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "InvalidArgumentError"
        assert "1024" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(64):
                yield b" " * 1024

        with pytest.raises(httpx.TransportError):  # cut before the body is all read
            c.put("/v1/quota", content=chunks(), headers={"content-type": "application/json"})
        # a request head larger than 64 KiB is refused, not buffered
        with socket.create_connection(_host_port(srv), timeout=30) as s:
            s.sendall(b"GET /v1/datasets HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):
                for _ in range(200):
                    s.sendall(b"X-Filler: " + b"y" * 1000 + b"\r\n")
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 431 ")
        # a request within the limits is served
        ok = c.put("/v1/quota", json={"max_bytes": 1 << 30})
        assert ok.status_code == 200, ok.text
        assert c.put("/v1/quota", json={"max_bytes": None}).status_code == 200


_HANDSHAKE = (b"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n{extra}\r\n")


def _handshake(connect: socket.socket, path: str, extra: bytes = b"") -> bytes:
    connect.sendall(_HANDSHAKE.replace(b"{path}", path.encode()).replace(b"{extra}", extra))
    answer = b""
    while chunk := connect.recv(65536):  # the service closes the connection
        answer += chunk
    return answer


def _assert_refused(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert b"101" not in answer.split(b"\r\n", 1)[0]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "AccessDeniedError" and "WebSocket" in body["detail"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["/healthz", "/v1/events", "/v1/datasets"])
def test_websocket_handshakes_are_refused_over_tcp(path: str) -> None:
    with _serve() as srv:
        for extra in (b"", f"Authorization: Bearer {TOKEN}\r\n".encode()):
            with socket.create_connection(_host_port(srv), timeout=30) as s:
                _assert_refused(_handshake(s, path, extra))
        assert '"event": "websocket refused"' in srv.logs()


@pytest.mark.timeout(120)
def test_websocket_handshakes_are_refused_on_the_unix_socket(tmp_path: Path) -> None:
    with ServeProcess("--socket", str(tmp_path / "run" / "svc.sock")) as srv:
        for path in ("/healthz", "/v1/events"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(str(srv.socket_path))
                _assert_refused(_handshake(s, path))


@pytest.mark.timeout(120)
def test_a_websocket_scope_is_refused_by_the_app_itself() -> None:
    """Under a server that does speak WebSocket (uvicorn with the websockets package,
    running the app factory), the app itself refuses every WebSocket scope, token or
    not, before the router or the token check could let it through."""
    websockets = pytest.importorskip("websockets")
    import subprocess
    import sys

    from ..flight.helpers import free_port

    port = free_port()
    env = {**os.environ, "ARROWSHM_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "arrowshm.service.main:app_factory",
         "--host", "127.0.0.1", "--port", str(port), "--ws", "websockets"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert wait_for(lambda: _healthy(port), timeout=60)
        from websockets.sync.client import connect

        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            with pytest.raises(websockets.exceptions.InvalidStatus) as err:
                connect(f"ws://127.0.0.1:{port}/v1/events", additional_headers=headers,
                        open_timeout=30)
            # refused before it was accepted, saying why
            assert err.value.response.status_code == 403
            body = json.loads(err.value.response.body)
            assert body["code"] == "AccessDeniedError" and "WebSocket" in body["detail"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.1)
        return False
