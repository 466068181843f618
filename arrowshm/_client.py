"""A Python client of the control-plane service (``arrowshm serve``).

The client speaks HTTP over the service's Unix socket (the default) or over
TCP with a bearer token, and re-raises the service's errors as the same
arrowshm exception classes. It is never needed for ``put``/``get``: data does
not travel through the service.

Over the Unix socket the client trusts nothing it has not checked, and sends
no token at all (the service checks the client's uid instead; the token is for
TCP). Before every connection it checks, in this order:

1. for the default socket, that its directory (``$XDG_RUNTIME_DIR/arrowshm``
   else ``/tmp/arrowshm-<euid>``) is a real directory (``lstat``: not a
   symlink) owned by the caller's effective uid that neither group nor other
   may write: otherwise another user could have made it, and put their own
   socket in it;
2. that the socket file (``lstat``) is a socket owned by the expected server
   uid (the caller's own, or ``server_uid``);
3. once connected and before sending a byte, that the process listening is of
   that uid (``SO_PEERCRED``).

Any failure is an :class:`~arrowshm.AccessDeniedError` and nothing is sent.
"""

from __future__ import annotations

import json
import os
import socket as _socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from . import _errors
from ._errors import AccessDeniedError, ArrowShmError, InvalidArgumentError
from ._names import current_namespace

__all__ = ["Client", "check_private_dir", "read_token_file", "runtime_dir"]

_UNSET: Any = object()
_UCRED = struct.Struct("3i")  # pid, uid, gid
TOKEN_FILE_MAX_BYTES = 4096


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/arrowshm``, else ``/tmp/arrowshm-<euid>``: where the service's
    default socket and the mirrors' status records live."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    return Path(runtime) / "arrowshm" if runtime else Path(f"/tmp/arrowshm-{os.geteuid()}")


def _default_socket(namespace: str) -> Path:
    return runtime_dir() / f"{namespace}.sock"


def check_private_dir(directory: Path) -> None:
    """Check that *directory* is a real directory (not a symlink) owned by this
    process's effective uid, which neither group nor other may write.

    Raises
    ------
    AccessDeniedError
        When it is not: another user may have made it, or may add or replace
        files in it.
    FileNotFoundError
        When it does not exist.
    """
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise AccessDeniedError(
            f"{directory} is not a directory (a symlink?): refusing to use it; remove it",
            path=str(directory))
    if st.st_uid != os.geteuid():
        raise AccessDeniedError(
            f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): "
            "another user made it; refusing to use it (remove it, or set XDG_RUNTIME_DIR)",
            path=str(directory), uid=st.st_uid)
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise AccessDeniedError(
            f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}: other users may add "
            f"files to it; refusing to use it (chmod 700 {directory})",
            path=str(directory), mode=stat.S_IMODE(st.st_mode))


def _check_socket_file(path: Path, server_uid: int) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # nothing to trust or distrust: connecting fails as it would have
    if not stat.S_ISSOCK(st.st_mode):
        raise AccessDeniedError(f"{path} is not a socket (a symlink or a file): refusing it",
                                path=str(path))
    if st.st_uid != server_uid:
        raise AccessDeniedError(
            f"the socket {path} belongs to uid {st.st_uid}, not to uid {server_uid}: "
            "refusing to talk to it (give server_uid= for another user's service)",
            path=str(path), uid=st.st_uid)


def _check_peer(sock: _socket.socket, path: str, server_uid: int) -> None:
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _ = _UCRED.unpack(raw)
    if uid != server_uid:
        raise AccessDeniedError(
            f"the process serving {path} (pid {pid}) runs as uid {uid}, not uid "
            f"{server_uid}: refusing to send it anything", path=path, uid=uid, pid=pid)


def _checked_unix_transport(path: Path, server_uid: int, directory: Path | None) -> Any:
    """An httpx transport over the Unix socket *path* that checks, before each new
    connection sends a byte, the directory (*directory*, for the default socket),
    the socket file and the listening process's uid (see the module docstring)."""
    import httpcore
    import httpx

    class PeerCheckedBackend(httpcore.SyncBackend):
        def connect_unix_socket(self, path: str, timeout: float | None = None,
                                socket_options: Any = None) -> Any:
            if directory is not None and os.path.lexists(directory):
                check_private_dir(directory)  # (a missing one: connecting fails as before)
            _check_socket_file(Path(path), server_uid)
            stream = super().connect_unix_socket(path, timeout, socket_options)
            try:
                _check_peer(stream.get_extra_info("socket"), path, server_uid)
            except BaseException:
                stream.close()
                raise
            return stream

    transport = httpx.HTTPTransport(uds=str(path))
    # httpx builds its pool without a way to pass a network backend: rebuild it with one
    transport._pool = httpcore.ConnectionPool(uds=str(path),
                                              network_backend=PeerCheckedBackend())
    return transport


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The bearer token kept in file *path* (surrounding whitespace stripped).

    The file must be a regular file owned by this process's effective uid and
    grant nothing to group or other (mode 0600 or 0400). ``arrowshm serve
    --token-file`` reads its file by the same rules.

    Raises
    ------
    AccessDeniedError
        When the file belongs to another user or is open to group or other.
    InvalidArgumentError
        When it cannot be read, is not a regular file, is larger than 4 KiB, or
        holds no token (empty, or several lines).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot open the token file {path}: {exc.strerror}",
                                   path=str(path)) from None
    try:
        st = os.fstat(fd)  # of the file opened, so that nothing can swap it after the check
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgumentError(f"the token file {path} is not a regular file",
                                       path=str(path))
        if st.st_uid != os.geteuid():
            raise AccessDeniedError(
                f"the token file {path} belongs to uid {st.st_uid}, not to you "
                f"(uid {os.geteuid()})", path=str(path), uid=st.st_uid)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise AccessDeniedError(
                f"the token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: other "
                f"users may read or change it; chmod 600 {path}",
                path=str(path), mode=stat.S_IMODE(st.st_mode))
        if st.st_size > TOKEN_FILE_MAX_BYTES:
            raise InvalidArgumentError(
                f"the token file {path} holds {st.st_size} bytes; a token is at most "
                f"{TOKEN_FILE_MAX_BYTES}", path=str(path))
        raw = os.read(fd, TOKEN_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        token = raw.decode().strip()
    except UnicodeDecodeError:
        token = ""
    if not token or "\n" in token or "\r" in token:
        raise InvalidArgumentError(
            f"the token file {path} must hold the token alone, on one line", path=str(path))
    return token


def _error_class(code: str) -> type[ArrowShmError]:
    if code == "Unauthorized":
        return AccessDeniedError
    cls = getattr(_errors, code, None)
    if isinstance(cls, type) and issubclass(cls, ArrowShmError):
        return cls
    return ArrowShmError


class Client:
    """HTTP client of ``arrowshm serve``.

    Parameters
    ----------
    socket : str or Path, optional
        The service's Unix socket; by default the one ``arrowshm serve`` uses for
        the current namespace.
    url : str, optional
        ``http://host:port`` of a TCP service instead of a socket.
    token : str, optional
        Bearer token (default ``ARROWSHM_TOKEN``), sent over TCP only: over the
        Unix socket the service checks the client's uid and no token is ever sent.
    timeout : float, default 10
        Seconds per request.
    server_uid : int, optional
        The uid the service on the Unix socket must run as (checked with
        ``SO_PEERCRED`` before anything is sent); default: this process's
        effective uid. Give the service account's uid to use a service another
        user runs with ``--allow-uid``.

    Raises
    ------
    AccessDeniedError
        From a request over the Unix socket, when the socket's directory, the socket
        or the process serving it belongs to another user than expected (nothing
        is sent then).

    Examples
    --------
    >>> with arrowshm.Client() as c:  # doctest: +SKIP
    ...     c.set_quota(8 << 30)
    ...     [d["name"] for d in c.list_datasets()]
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        server_uid: int | None = None,
    ) -> None:
        import httpx

        if url is not None:
            token = token if token is not None else os.environ.get("ARROWSHM_TOKEN") or None
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
            self.address = url
        else:
            # the token is for TCP: whoever is at the other end of a socket gets no secret
            path = _default_socket(current_namespace()) if socket is None else Path(socket)
            transport = _checked_unix_transport(
                path, os.geteuid() if server_uid is None else server_uid,
                path.parent if socket is None else None)
            self._http = httpx.Client(transport=transport, base_url="http://arrowshm",
                                      timeout=timeout)
            self.address = f"unix:{path}"

    # -- plumbing ----------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _raise_for(self, response: Any) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
            code, detail = str(body["code"]), str(body["detail"])
            fields = body.get("fields") or {}
        except (ValueError, KeyError, TypeError):
            code, detail, fields = "ArrowShmError", response.text, {}
        fields = {k: v for k, v in fields.items() if k not in ("message", "fields")}
        raise _error_class(code)(detail, status_code=response.status_code, **fields)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        self._raise_for(response)
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @staticmethod
    def _name(name: str) -> str:
        return quote(name, safe="/:")

    # -- routes --------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self._request("GET", "/healthz")
        return result

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return str(self._request("GET", "/metrics"))

    def list_datasets(self) -> list[dict[str, Any]]:
        """``GET /v1/datasets``: every dataset, sorted by name.

        Raises
        ------
        AccessDeniedError
            When the token or the peer uid is refused.
        """
        result: list[dict[str, Any]] = self._request("GET", "/v1/datasets")["data"]
        return result

    def dataset(self, name: str) -> dict[str, Any]:
        """``GET /v1/datasets/{name}``.

        Raises
        ------
        NotFoundError
            When no dataset has that name.
        InvalidNameError
            When the name is malformed.
        """
        result: dict[str, Any] = self._request("GET", f"/v1/datasets/{self._name(name)}")
        return result

    def patch_dataset(self, name: str, *, ttl_seconds: float | None = _UNSET,
                      retain: int | None = None) -> dict[str, Any]:
        """``PATCH /v1/datasets/{name}``: change TTL (None removes it) or retention.

        Raises
        ------
        NotFoundError
            When no dataset has that name.
        InvalidArgumentError
            When a value is out of range.
        """
        body: dict[str, Any] = {}
        if ttl_seconds is not _UNSET:
            body["ttl_seconds"] = ttl_seconds
        if retain is not None:
            body["retain"] = retain
        result: dict[str, Any] = self._request("PATCH", f"/v1/datasets/{self._name(name)}",
                                               json=body)
        return result

    def delete_dataset(self, name: str) -> None:
        """``DELETE /v1/datasets/{name}``.

        Raises
        ------
        NotFoundError
            When no dataset has that name.
        """
        self._request("DELETE", f"/v1/datasets/{self._name(name)}")

    def list_streams(self) -> list[dict[str, Any]]:
        """``GET /v1/streams``."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/streams")["data"]
        return result

    def stream(self, name: str) -> dict[str, Any]:
        """``GET /v1/streams/{name}``.

        Raises
        ------
        NotFoundError
            When no stream has that name.
        """
        result: dict[str, Any] = self._request("GET", f"/v1/streams/{self._name(name)}")
        return result

    def delete_stream(self, name: str) -> None:
        """``DELETE /v1/streams/{name}``.

        Raises
        ------
        NotFoundError
            When no stream has that name.
        """
        self._request("DELETE", f"/v1/streams/{self._name(name)}")

    def evict_reader(self, name: str, reader_id: int) -> None:
        """``POST /v1/streams/{name}/readers/{reader_id}/evict``: free a dead reader's slot.

        Raises
        ------
        NotFoundError
            When the stream or reader does not exist.
        ConflictError
            When the reader's process is alive.
        """
        self._request("POST",
                      f"/v1/streams/{self._name(name)}/readers/{int(reader_id)}/evict")

    def quota(self) -> dict[str, Any]:
        """``GET /v1/quota``: ``{"max_bytes", "bytes_used", "namespace"}`` and, of the
        bytes used, ``live_bytes`` and ``spare_bytes``/``spares``, plus the service's
        ``reserve`` and ``shm_free``/``shm_total``."""
        result: dict[str, Any] = self._request("GET", "/v1/quota")
        return result

    def set_quota(self, max_bytes: int | None) -> dict[str, Any]:
        """``PUT /v1/quota``; None removes the quota.

        Raises
        ------
        InvalidArgumentError
            When *max_bytes* is not a positive integer.
        """
        result: dict[str, Any] = self._request("PUT", "/v1/quota", json={"max_bytes": max_bytes})
        return result

    def gc(self, *, spares: bool = False) -> dict[str, Any]:
        """``POST /v1/gc``: run the reaper now (with *spares*, freeing every spare too);
        returns what it reclaimed, ``pins_released`` and the spares kept."""
        result: dict[str, Any] = self._request(
            "POST", "/v1/gc", json={"spares": True} if spares else None)
        return result

    def events(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """``GET /v1/events``: yield each event (``name``, ``version``, ``kind``) as it comes.

        Raises
        ------
        AccessDeniedError
            When the token or the peer uid is refused.
        """
        import httpx

        t = httpx.Timeout(self._http.timeout.connect, read=timeout)
        with self._http.stream("GET", "/v1/events", timeout=t) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])
