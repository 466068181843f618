"""Settings of ``arrowshm serve``, read from ``ARROWSHM_*`` environment variables
and overridden by command-line options.

The service may import only the public ``arrowshm`` package, so the numeric
variables are read here by :func:`env_number`, which mirrors the rules of the
library's own parser (``arrowshm/_env.py``) exactly: finite, non-negative, and
greater than zero where zero makes no sense. ``tests/security/test_env.py``
feeds both parsers the same table of inputs. The token file is read by
:func:`read_token_file`, which mirrors ``arrowshm._client.read_token_file``
(the mirror command's) the same way.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import arrowshm
from arrowshm import AccessDeniedError, InvalidArgumentError

DEFAULT_REAPER_INTERVAL_S = 2.0
# a whole request head must arrive within this many seconds of the connection (or of
# the previous response), and its body within as many more: slow clients cannot hold
# descriptors that the reaper and Flight need
DEFAULT_HEADER_TIMEOUT_S = 10.0
# concurrent connections (Unix socket and TCP); far below the usual 1024-descriptor limit
DEFAULT_MAX_CONNECTIONS = 256
# the API's request bodies are small JSON objects (PATCH, PUT /v1/quota)
DEFAULT_MAX_BODY_BYTES = 1 << 20
# a Flight do_put of a dataset is held in memory until it has fully arrived
DEFAULT_FLIGHT_MAX_PUT_BYTES = 1 << 30
TOKEN_FILE_MAX_BYTES = 4096


def default_socket_path(namespace: str) -> Path:
    """``$XDG_RUNTIME_DIR/arrowshm/<ns>.sock``, else ``/tmp/arrowshm-<uid>/<ns>.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) / "arrowshm" if runtime else Path(f"/tmp/arrowshm-{os.geteuid()}")
    return base / f"{namespace}.sock"


def check_number(what: str, value: float, *, positive: bool = False) -> float:
    """*value* if it is finite and non-negative (greater than zero with *positive*).

    Raises
    ------
    InvalidArgumentError
        Otherwise (``nan`` and ``inf`` included).
    """
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise InvalidArgumentError(
            f"{what} must be {'a finite number > 0' if positive else 'a finite number >= 0'},"
            f" not {value!r}", value=value)
    return value


def env_number(name: str, default: float, *, positive: bool = False) -> float:
    """The finite, non-negative number in environment variable *name*, or *default*
    when it is unset or blank (the rules of ``arrowshm._env.env_number``).

    Raises
    ------
    InvalidArgumentError
        When the variable holds anything but a finite non-negative number (``nan``
        and ``inf`` included), or zero where *positive* asks for more.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        what = "a finite number > 0" if positive else "a finite non-negative number"
        raise InvalidArgumentError(
            f"{name}={raw!r} is not {what}; unset it for the default ({default:g})",
            variable=name,
            value=raw,
        )
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?)([KMGT]?)(?:I?B)?")


def parse_size(text: str, what: str = "size") -> int:
    """Bytes of a human size: ``1048576``, ``512K``, ``512M``, ``2G``, ``1.5G``, ``1T``
    (binary units, case-insensitive, optional ``B``/``iB`` suffix: ``512MiB``).

    Raises
    ------
    InvalidArgumentError
        When *text* is not such a size, or is 2**63 bytes or more.
    """
    m = _SIZE.fullmatch(text.strip().upper().replace(" ", ""))
    value = float(m[1]) * _SIZE_UNITS[m[2]] if m else math.nan
    if not (math.isfinite(value) and 0 <= value < 1 << 63):
        raise InvalidArgumentError(
            f"{what} {text!r} is not a size: give bytes or a number with K, M, G or T "
            "(powers of 1024), e.g. 512M or 2G", value=text)
    return int(value)


def _env_uids(name: str) -> frozenset[int]:
    raw = os.environ.get(name, "").strip()
    try:
        return frozenset(int(x) for x in raw.replace(",", " ").split()) if raw else frozenset()
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not a list of uids",
                                   variable=name, value=raw) from None


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The bearer token kept in file *path* (surrounding whitespace stripped).

    The file must be a regular file owned by this process's effective uid and
    grant nothing to group or other (mode 0600 or 0400), as ssh demands of a
    private key: a token another user can read or replace is no secret.

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


@dataclass(frozen=True)
class Settings:
    """Configuration of one service instance (one namespace).

    Attributes
    ----------
    namespace : str
        The arrowshm namespace served (``ARROWSHM_NAMESPACE``).
    socket_path : Path or None
        Unix socket to listen on; ``None`` with *port* set means TCP.
    host, port : str, int or None
        TCP address (``--host/--port``); loopback by default.
    token : str or None
        Bearer token required over TCP on every route but ``/healthz``
        (``ARROWSHM_TOKEN`` or ``--token-file``); mandatory over TCP. On the Unix
        socket the peer's uid is the credential and no token is asked for.
    allowed_uids : frozenset of int
        Peer uids besides the service's own that may use the Unix socket
        (``ARROWSHM_ALLOWED_UIDS``, comma separated).
    reaper_interval : float
        Seconds between reaper runs (``ARROWSHM_REAPER_INTERVAL``, default 2); 0 disables
        the schedule (the reaper still runs once at start).
    log_level : str
    header_timeout : float
        Seconds a connection has to deliver a request's head (request line and
        headers), counted from the connection or the previous response, and then
        as many again for its body (``ARROWSHM_HEADER_TIMEOUT_S``, default 10, > 0).
    max_connections : int
        Connections served at once (``ARROWSHM_MAX_CONNECTIONS``, default 256, > 0).
    max_body_bytes : int
        Largest request body (``ARROWSHM_MAX_BODY_BYTES``, default 1 MiB, > 0).
    flight_max_put_bytes : int
        Largest Flight ``do_put`` of a dataset (``ARROWSHM_FLIGHT_MAX_PUT_BYTES``,
        default 1 GiB, > 0).
    reserve : int
        Bytes of pre-faulted spares the service keeps ready for the whole
        namespace while it runs (``--reserve SIZE`` / ``ARROWSHM_SERVE_RESERVE``,
        e.g. ``2G``; default 0: none), through
        :meth:`arrowshm.Namespace.reserve`.
    """

    namespace: str = field(default_factory=lambda: arrowshm.Namespace().name)
    socket_path: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    token: str | None = None
    allowed_uids: frozenset[int] = frozenset()
    reaper_interval: float = DEFAULT_REAPER_INTERVAL_S
    log_level: str = "info"
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    flight_max_put_bytes: int = DEFAULT_FLIGHT_MAX_PUT_BYTES
    reserve: int = 0

    def __post_init__(self) -> None:
        arrowshm.Namespace(self.namespace)  # validates the name
        check_number("reaper_interval", self.reaper_interval)
        check_number("header_timeout", self.header_timeout, positive=True)
        for what in ("max_connections", "max_body_bytes", "flight_max_put_bytes"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentError(f"{what} must be an integer, not {value!r}")
            check_number(what, value, positive=True)
        if isinstance(self.reserve, bool) or not isinstance(self.reserve, int) or not (
            0 <= self.reserve < 1 << 63
        ):
            raise InvalidArgumentError(f"reserve must be an integer >= 0, not {self.reserve!r}")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ARROWSHM_*`` variables; keyword arguments that are not
        None override them.

        Raises
        ------
        InvalidNameError
            When ``ARROWSHM_NAMESPACE`` is invalid.
        InvalidArgumentError
            When a numeric variable is not a finite number in its range.
        """
        values: dict[str, object] = {
            "namespace": arrowshm.Namespace().name,
            "token": os.environ.get("ARROWSHM_TOKEN") or None,
            "allowed_uids": _env_uids("ARROWSHM_ALLOWED_UIDS"),
            "reaper_interval": env_number("ARROWSHM_REAPER_INTERVAL",
                                          DEFAULT_REAPER_INTERVAL_S),
            "log_level": os.environ.get("ARROWSHM_LOG_LEVEL", "info"),
            "header_timeout": env_number("ARROWSHM_HEADER_TIMEOUT_S",
                                         DEFAULT_HEADER_TIMEOUT_S, positive=True),
            "max_connections": int(env_number("ARROWSHM_MAX_CONNECTIONS",
                                              DEFAULT_MAX_CONNECTIONS, positive=True)),
            "max_body_bytes": int(env_number("ARROWSHM_MAX_BODY_BYTES",
                                             DEFAULT_MAX_BODY_BYTES, positive=True)),
            "flight_max_put_bytes": int(env_number("ARROWSHM_FLIGHT_MAX_PUT_BYTES",
                                                   DEFAULT_FLIGHT_MAX_PUT_BYTES,
                                                   positive=True)),
            "reserve": parse_size(os.environ.get("ARROWSHM_SERVE_RESERVE", "").strip() or "0",
                                  "ARROWSHM_SERVE_RESERVE"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_tcp(self) -> bool:
        return self.port is not None

    @property
    def uds_path(self) -> Path:
        """The Unix socket path in force (the default one when none was given)."""
        return self.socket_path or default_socket_path(self.namespace)
