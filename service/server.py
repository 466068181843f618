"""Running the app: a private Unix socket (peer uid checked) or TCP with a token.

Everything a client can do to the service before its request reaches the app
is bounded here, in the HTTP protocol class (:func:`make_protocol`), because
uvicorn itself has no header-read timeout and counts idle connections like
busy ones:

* a connection must send a whole request head within ``header_timeout``
  seconds of connecting (or of the previous response), and the body within as
  many again; else it gets ``408`` and is closed (a slow client cannot hold a
  descriptor the reaper and Flight need);
* a request head larger than :data:`MAX_HEAD_BYTES` is ``431``;
* a body larger than ``max_body_bytes`` is ``413`` (announced by
  ``Content-Length``) or cut (chunked);
* at most ``max_connections`` connections are open: one more closes the oldest
  connection that has no request in progress (``503``), or itself if every
  connection is busy;
* a WebSocket handshake is ``403``: the service has no WebSocket route, and a
  WebSocket scope would pass the access checks, which are written for HTTP;
* on the Unix socket, a peer whose uid (``SO_PEERCRED``) is not allowed gets
  ``403`` on every request.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import stat
import struct
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

# httptools parses HTTP in C, and this module's limits hook its parser callbacks: the
# pure-Python h11 protocol has none of them, so the service needs httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import arrowshm
from arrowshm import AccessDeniedError, InvalidArgumentError

from . import errors
from .config import Settings
from .flight import FlightSettings, start_flight
from .logs import configure, get_logger, log_event
from .main import create_app, refuse_websocket

_log = get_logger("server")
_UCRED = struct.Struct("3i")  # pid, uid, gid
MAX_HEAD_BYTES = 64 << 10  # request line + headers; httptools itself sets no limit
_STATUS_TEXT = {403: "Forbidden", 408: "Request Timeout", 413: "Content Too Large",
                431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


class _Deny:
    def __init__(self, uid: int) -> None:
        self.uid = uid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        response = errors.error_response(
            403, "AccessDeniedError",
            f"uid {self.uid} may not use this service (started by uid {os.geteuid()}); "
            "allow it with --allow-uid",
            {"uid": self.uid},
        )
        await response(scope, receive, send)


def _answer(status: int, code: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response with the service's JSON error body; it closes the
    connection (the protocol answers with it before any app sees the request)."""
    body = json.dumps({"code": code, "detail": detail, "fields": {}}).encode()
    head = (f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, '')}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def make_protocol(allowed: frozenset[int], *, header_timeout: float = 10.0,
                  max_connections: int = 256,
                  max_body_bytes: int = 1 << 20) -> type[asyncio.Protocol]:
    """An HTTP protocol class that enforces the limits of this module's docstring and
    answers 403 to Unix-socket peers whose uid is neither ours nor in *allowed*.

    Each call makes a new class, whose connection table is that server's.
    """

    class GuardedProtocol(HttpToolsProtocol):
        # open connections, oldest first (dicts keep insertion order)
        opened: ClassVar[dict[GuardedProtocol, None]] = {}
        stats: ClassVar[dict[str, int]] = {"timed_out": 0, "evicted": 0, "refused": 0}

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            self._head_pending = True
            self._head_bytes = 0
            self._body_bytes = 0
            self._refused = False
            self.opened[self] = None
            if len(self.opened) > max_connections:
                self._make_room()
                if self._refused:
                    return
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_UNIX:
                _, uid, _ = peer_credentials(sock)
                if uid != os.geteuid() and uid not in allowed:
                    log_event(_log, "peer denied", uid=uid)
                    self.app: ASGIApp = _Deny(uid)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.opened.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

        # -- limits ---------------------------------------------------------------

        def _busy(self) -> bool:
            """A request of this connection is being answered."""
            return self.cycle is not None and not self.cycle.response_complete

        def _refuse(self, status: int, code: str, detail: str) -> None:
            self._refused = True
            self._disarm()
            if not self.transport.is_closing():
                if not self._busy():  # never interleave bytes with a response in progress
                    self.transport.write(_answer(status, code, detail))
                self.transport.close()

        def _make_room(self) -> None:
            """Over the connection limit: close the oldest connection that has no
            request in progress (a slow or idle one), else this new one."""
            for other in self.opened:
                if other is not self and not other._busy() and not other._refused:
                    self.stats["evicted"] += 1
                    other._refuse(503, "ServiceUnavailable",
                                  f"the service is at its limit of {max_connections} "
                                  "connections; this idle one was closed")
                    self.opened.pop(other, None)
                    return
            self.stats["refused"] += 1
            self.opened.pop(self, None)
            self._refuse(503, "ServiceUnavailable",
                         f"the service is at its limit of {max_connections} connections, "
                         "all busy; retry later")

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._on_deadline)

        def _disarm(self) -> None:
            if getattr(self, "_deadline", None) is not None:
                assert self._deadline is not None
                self._deadline.cancel()
                self._deadline = None

        def _on_deadline(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            self.stats["timed_out"] += 1
            if self._head_pending:
                self._refuse(408, "WaitTimeoutError",
                             f"the request was not received within {header_timeout:g} s")
            else:  # the body is late: the app waits on it, so only cutting is possible
                self._refused = True
                self.transport.close()

        # -- parser callbacks ---------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._head_pending:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._head_pending and self._head_bytes > MAX_HEAD_BYTES and not self._refused:
                self._refuse(431, "InvalidArgumentError",
                             f"the request head exceeds {MAX_HEAD_BYTES} bytes")

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._head_pending = False
            self._head_bytes = 0
            self._body_bytes = 0
            if self._get_upgrade() == b"websocket":
                log_event(_log, "websocket refused", path=self.url.decode("latin-1"))
                self._refuse(403, "AccessDeniedError",
                             "arrowshm serve does not accept WebSocket connections")
                return
            length = dict(self.headers).get(b"content-length", b"")
            if length.isdigit() and int(length) > max_body_bytes:
                self._refuse(413, "InvalidArgumentError",
                             f"the request body of {int(length)} bytes exceeds the limit of "
                             f"{max_body_bytes} (--max-body-bytes)")
                return
            self._arm()  # the body must follow within as long again
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self._refused:
                return
            self._body_bytes += len(body)
            if self._body_bytes > max_body_bytes:  # chunked: no length was announced
                self._refused = True
                self._disarm()
                self.transport.close()
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            self._disarm()  # the answer may take long (an event stream): no deadline
            self._head_pending = True
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self._refused:
                self._arm()  # the next request's head is due within header_timeout

        def _should_upgrade(self) -> bool:
            return False  # never hand the connection to a WebSocket protocol

        def _unsupported_upgrade_warning(self) -> None:
            pass  # a WebSocket upgrade was answered 403 in on_headers_complete

    return GuardedProtocol


def _private_dir(directory: Path) -> None:
    """Refuse a default socket directory that is not a real directory of ours.

    Raises
    ------
    AccessDeniedError
        When it is a symlink or belongs to another user.
    """
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise AccessDeniedError(f"{directory} is not a directory (a symlink?); remove it or "
                                "choose --socket", path=str(directory))
    if st.st_uid != os.geteuid():
        raise AccessDeniedError(f"{directory} belongs to uid {st.st_uid}; choose --socket",
                                path=str(directory), uid=st.st_uid)
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(directory, 0o700)  # ours: make it private again


def _remove_stale_socket(path: Path) -> None:
    """Unlink *path* if it is a socket of ours nobody listens on; refuse anything else.

    Raises
    ------
    InvalidArgumentError
        When *path* is not a socket (a file, a directory, a symlink: never followed,
        never deleted), or a live service listens on it.
    AccessDeniedError
        When the socket belongs to another user.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else
                "a directory" if stat.S_ISDIR(st.st_mode) else "a file")
        raise InvalidArgumentError(
            f"{path} exists and is {kind}, not a socket: refusing to replace it; choose "
            "another --socket (or remove it yourself)", path=str(path))
    if st.st_uid != os.geteuid():
        raise AccessDeniedError(
            f"{path} is a socket of uid {st.st_uid}, not ours: refusing to replace it; "
            "choose another --socket", path=str(path), uid=st.st_uid)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # a stale socket a stopped service of ours left
    else:
        raise InvalidArgumentError(f"a service already listens on {path}", path=str(path))
    finally:
        probe.close()


def bind_unix(path: Path) -> socket.socket:
    """A listening socket at *path*, mode 0600, in a directory of mode 0700 owned by us.

    The default location's directory (named ``arrowshm…``) must be a real
    directory (not a symlink) owned by our effective uid; it is made 0700 if it
    is not. A directory given with ``--socket`` that others may enter is left
    as it is (such as /tmp), with a warning. A file already at *path* is
    replaced only if it is a socket (checked with ``lstat``: a symlink is never
    followed) of our uid that no service answers on.

    Raises
    ------
    AccessDeniedError
        When the directory or an old socket at *path* belongs to another user, or
        the default directory is a symlink.
    InvalidArgumentError
        When a live service already listens at *path*, or *path* is not a socket.
    """
    directory = path.parent
    existed = os.path.lexists(directory)
    runtime_dir = directory.name.startswith("arrowshm")  # the default location's directory
    if not existed:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if runtime_dir:
        _private_dir(directory)
    elif stat.S_IMODE(directory.stat().st_mode) & 0o077:
        if not existed:
            os.chmod(directory, 0o700)
        else:
            # never change the mode of a directory we did not make (such as /tmp): the
            # socket itself is 0600 and every peer's uid is checked
            _log.warning("socket directory %s is open to other users; the socket is 0600 "
                         "and peers are checked, but a private directory is safer", directory)
    _remove_stale_socket(path)
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
    beside the HTTP API in the same process and stops with it. On the Unix
    socket the peer's uid is the credential: the token, if any, is asked for over
    TCP (and by Flight) only, so a client never has to send it over the socket.

    Raises
    ------
    InvalidArgumentError
        When TCP is asked for without a token, or a file is in the socket's way.
    AccessDeniedError
        When the socket's directory or an old socket belongs to another user.
    """
    configure(settings.log_level)
    if settings.is_tcp and not settings.token:
        raise InvalidArgumentError("serving over TCP needs a token: --token-file, "
                                   "ARROWSHM_TOKEN or --token")
    app = create_app(settings if settings.is_tcp else replace(settings, token=None))
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
    protocol = make_protocol(settings.allowed_uids, header_timeout=settings.header_timeout,
                             max_connections=settings.max_connections,
                             max_body_bytes=settings.max_body_bytes)
    config = uvicorn.Config(
        app, http=protocol, ws="none", lifespan="on", log_config=None,
        access_log=False, timeout_graceful_shutdown=3, log_level=settings.log_level.lower(),
    )
    server = _Server(config)
    print(f"arrowshm serve: namespace {settings.namespace!r} listening on {where}", flush=True)
    log_event(_log, "listening", address=where, namespace=settings.namespace,
              header_timeout=settings.header_timeout,
              max_connections=settings.max_connections,
              max_body_bytes=settings.max_body_bytes)
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
