"""Running the app: a private Unix socket (peer uid checked) or TCP with a token."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import stat
import struct
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # httptools (uvicorn[standard]) parses HTTP in C; h11 is the pure-Python fallback
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # pragma: no cover
    _BaseProtocol = H11Protocol  # type: ignore[assignment,misc]

import arrowshm
from arrowshm import AccessDeniedError, InvalidArgumentError

from . import errors
from .config import Settings
from .flight import FlightSettings, start_flight
from .logs import configure, get_logger, log_event
from .main import create_app

_log = get_logger("server")
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


class _Deny:
    def __init__(self, uid: int) -> None:
        self.uid = uid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = errors.error_response(
            403, "AccessDeniedError",
            f"uid {self.uid} may not use this service (started by uid {os.getuid()}); "
            "allow it with --allow-uid",
            {"uid": self.uid},
        )
        await response(scope, receive, send)


def make_protocol(allowed: frozenset[int]) -> type[asyncio.Protocol]:
    """An HTTP protocol class that answers 403 to peers whose uid is not allowed."""

    class PeerCheckedProtocol(_BaseProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is None or sock.family != socket.AF_UNIX:
                return
            _, uid, _ = peer_credentials(sock)
            if uid != os.getuid() and uid not in allowed:
                log_event(_log, "peer denied", uid=uid)
                self.app: ASGIApp = _Deny(uid)

    return PeerCheckedProtocol


def bind_unix(path: Path) -> socket.socket:
    """A listening socket at *path*, mode 0600, in a directory of mode 0700 owned by us.

    Raises
    ------
    AccessDeniedError
        When the directory belongs to another user or is open to others.
    InvalidArgumentError
        When a live service already listens at *path*.
    """
    directory = path.parent
    existed = directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    runtime_dir = directory.name.startswith("arrowshm")  # the default location's directory
    if runtime_dir and st.st_uid != os.getuid():
        raise AccessDeniedError(f"{directory} belongs to uid {st.st_uid}; choose --socket",
                                path=str(directory))
    if stat.S_IMODE(st.st_mode) & 0o077:
        if runtime_dir or not existed:
            os.chmod(directory, 0o700)
        else:
            # never change the mode of a directory we did not make (such as /tmp): the
            # socket itself is 0600 and every peer's uid is checked
            _log.warning("socket directory %s is open to other users; the socket is 0600 "
                         "and peers are checked, but a private directory is safer", directory)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket of a stopped service
        else:
            raise InvalidArgumentError(f"a service already listens on {path}", path=str(path))
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(1024)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, but SIGTERM/SIGINT end it with exit status 0 (no re-raise)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)

    def _on_signal(self, sig: int, frame: Any) -> None:
        log_event(_log, "signal received", signal=signal.Signals(sig).name)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def serve(settings: Settings, flight: FlightSettings | None = None) -> int:
    """Run the service until SIGTERM or SIGINT; returns the exit status.

    With *flight*, an Arrow Flight endpoint (:mod:`arrowshm.service.flight`) runs
    beside the HTTP API in the same process and stops with it.

    Raises
    ------
    InvalidArgumentError
        When TCP is asked for without a token.
    """
    configure(settings.log_level)
    if settings.is_tcp and not settings.token:
        raise InvalidArgumentError("serving over TCP needs a token: --token or ARROWSHM_TOKEN")
    app = create_app(settings)
    path: Path | None = None
    if settings.is_tcp:
        assert settings.port is not None
        sock = bind_tcp(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    else:
        path = settings.uds_path
        sock = bind_unix(path)
        where = f"unix:{path}"
    config = uvicorn.Config(
        app, http=make_protocol(settings.allowed_uids), lifespan="on", log_config=None,
        access_log=False, timeout_graceful_shutdown=3, log_level=settings.log_level.lower(),
    )
    server = _Server(config)
    print(f"arrowshm serve: namespace {settings.namespace!r} listening on {where}", flush=True)
    log_event(_log, "listening", address=where, namespace=settings.namespace)
    flight_server = None
    try:
        if flight is not None:
            flight_server = start_flight(flight, arrowshm.Namespace(settings.namespace))
            print(f"arrowshm serve: namespace {settings.namespace!r} flight on "
                  f"{flight_server.location}", flush=True)
        server.run(sockets=[sock])
    finally:
        if flight_server is not None:
            flight_server.stop()
        sock.close()
        if path is not None:
            try:
                path.unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
    log_event(_log, "exited", namespace=settings.namespace)
    return 0 if server.started else 1
