"""Mirrors: a remote dataset or stream, served by ``arrowshm serve --flight``,
kept in local shared memory so this host's processes read it at zero copy.

A :class:`Mirror` runs one thread. For a **dataset** it long-polls the remote
with the Flight action ``wait`` ``{"name", "after_version", "timeout"}``; when a
newer version exists it fetches exactly that version with ``do_get`` and only
once every batch has arrived (and the row count matches what the remote
announced) publishes it locally with :func:`arrowshm.put` - a transfer cut
short is thrown away, so a partial version is never published. For a
**stream** it tails the remote stream with ``do_get`` and appends each batch to
a local stream of the same schema.

When the remote goes away the mirror reconnects with exponential backoff
(0.1 s doubling up to ``max_backoff``). Its state - remote and mirrored
versions, version lag, staleness in seconds - is kept in a small JSON status
record under the runtime directory
(``$XDG_RUNTIME_DIR/arrowshm/mirrors/<ns>/`` else
``/tmp/arrowshm-<euid>/mirrors/<ns>/``), one file per mirror, written
atomically (rename) on every change; ``arrowshm mirror --status`` and the
service's ``/metrics`` read it (:func:`mirror_statuses`).

Each level of that directory (``arrowshm``/``arrowshm-<euid>``, ``mirrors``,
``<ns>``) must be a real directory (not a symlink) owned by the effective uid
that neither group nor other may write (:func:`arrowshm._client.check_private_dir`;
the mirror creates them 0700): in /tmp another user could have made them first.
A :class:`Mirror` refuses to start on a directory that fails the check
(:class:`~arrowshm.AccessDeniedError`); :func:`mirror_statuses` ignores it
(no records), and skips any record that is not a regular file of the
effective uid.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from . import _errors
from ._client import check_private_dir, runtime_dir
from ._errors import AccessDeniedError, ArrowShmError, InvalidArgumentError, WaitTimeoutError
from ._info import DatasetInfo
from ._names import current_namespace, validate_name
from ._namespace import Namespace

__all__ = ["Mirror", "MirrorStatus", "mirror", "mirror_statuses", "raise_from_flight"]

_MIN_BACKOFF_S = 0.1


def _flight() -> Any:
    try:
        import pyarrow.flight as fl
    except ImportError as exc:  # pragma: no cover - pyarrow built without Flight
        raise InvalidArgumentError(
            "mirrors need pyarrow with Flight support (pyarrow.flight)") from exc
    return fl


def raise_from_flight(exc: Exception) -> None:
    """Re-raise a Flight error from ``arrowshm serve --flight`` as the arrowshm error
    the server raised (its ``extra_info`` names the class and carries the fields).

    Raises
    ------
    ArrowShmError
        The subclass the server raised, when the error came from arrowshm.
    Exception
        *exc* itself otherwise.
    """
    raw = getattr(exc, "extra_info", b"") or b""
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        cls = getattr(_errors, str(body.get("code")), None)
        if isinstance(cls, type) and issubclass(cls, ArrowShmError):
            fields = body.get("fields") or {}
            raise cls(str(body.get("message", "")),
                      **{str(k): v for k, v in fields.items()}) from exc
    raise exc


def status_dir(namespace: str | None = None) -> Path:
    """Directory of the status records of *namespace*'s mirrors."""
    return runtime_dir() / "mirrors" / (namespace or current_namespace())


def _status_levels(directory: Path) -> list[Path]:
    """The directories of ours that lead to *directory*, outermost first."""
    return [directory.parent.parent, directory.parent, directory]


def _check_status_dir(directory: Path) -> None:
    """Raise AccessDeniedError unless every level of *directory* is private to us."""
    for level in _status_levels(directory):
        check_private_dir(level)


def _make_status_dir(directory: Path) -> None:
    """Create *directory*'s levels (mode 0700) where missing and check every level.

    Raises
    ------
    AccessDeniedError
        When a level exists and is not a private directory of ours.
    """
    levels = _status_levels(directory)
    levels[0].parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # $XDG_RUNTIME_DIR, /tmp
    for level in levels:
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, 0o700)
        check_private_dir(level)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class MirrorStatus:
    """What a mirror knows of how far behind it is.

    Attributes
    ----------
    local_name, remote_name, remote : str
        Local dataset or stream, its remote name and the remote's Flight URI.
    kind : str
        ``dataset`` or ``stream`` (``unknown`` until the remote answered).
    state : str
        ``connecting``, ``live`` (in sync, waiting for the next version),
        ``fetching``, ``reconnecting`` (the remote is unreachable), ``ended``
        (the remote stream closed), ``stopped`` or ``dead`` (its process is gone).
    remote_version : int
        Newest remote version the mirror has heard of (streams: batches seen).
    mirrored_version : int
        Remote version last published locally (streams: batches written).
    local_version : int
        Local version that holds it.
    synced_at : float
        Unix time at which the mirror was last known to be in sync.
    updated_at : float
        Unix time of this record.
    pid : int
    reconnects : int
    error : str
        The last error, if any.
    """

    local_name: str
    remote_name: str
    remote: str
    kind: str = "unknown"
    state: str = "connecting"
    remote_version: int = 0
    mirrored_version: int = 0
    local_version: int = 0
    synced_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    reconnects: int = 0
    error: str = ""

    @property
    def version_lag(self) -> int:
        """Remote versions not yet published locally."""
        return max(0, self.remote_version - self.mirrored_version)

    @property
    def staleness_s(self) -> float:
        """Seconds since the mirror was last known in sync (0 while live and in sync)."""
        if self.state == "live" and self.version_lag == 0:
            return 0.0
        return max(0.0, time.time() - self.synced_at)

    def summary(self) -> str:
        """One line: state, lag and staleness."""
        return (f"mirror of {self.remote_name} @ {self.remote}: {self.state}, "
                f"lag {self.version_lag} version(s), {self.staleness_s:.1f} s stale")


def mirror_statuses(namespace: str | None = None) -> list[MirrorStatus]:
    """The status records of *namespace*'s mirrors (current namespace by default);
    a mirror whose process is gone shows as ``dead``."""
    out: list[MirrorStatus] = []
    directory = status_dir(namespace)
    try:
        _check_status_dir(directory)
    except (FileNotFoundError, AccessDeniedError):
        return out  # none yet, or made by another user: nothing in it is ours to show
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(_read_own_file(path))
            st = MirrorStatus(**{k: raw[k] for k in MirrorStatus.__dataclass_fields__
                                 if k in raw})
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if not _pid_alive(st.pid) and st.state != "stopped":
            st.state = "dead"
        out.append(st)
    return out


def _read_own_file(path: Path) -> str:
    """The text of *path* if it is a regular file of our effective uid (never through
    a symlink); OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise PermissionError(f"{path} is not a file of ours")
        return os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)


class _Partial(Exception):
    """A transfer ended short of what the remote announced."""


class Mirror:
    """Keeps remote dataset or stream *name* of a Flight endpoint in local shared memory.

    Parameters
    ----------
    uri : str
        ``grpc://HOST:PORT`` (or ``grpc+tls://``) of ``arrowshm serve --flight``.
    name : str
        The remote dataset or stream.
    local_name : str, optional
        Local name (default: *name*), in the current namespace.
    token : str, optional
        The remote service's token (default ``$ARROWSHM_TOKEN``).
    tls_root_certs : bytes, optional
        PEM roots that sign the remote's certificate (``grpc+tls``).
    kind : {"auto", "dataset", "stream"}, default "auto"
        ``auto`` asks the remote; a name it does not know yet is a dataset.
    retain : int, default 1
        Local versions kept (``put(retain=)``).
    poll_timeout : float, default 5
        Seconds of one long-poll.
    max_backoff : float, default 5
        Longest pause between reconnection attempts.
    namespace : str or Namespace, optional
        The local namespace to mirror into; ``ARROWSHM_NAMESPACE`` (read now) by
        default. The mirror keeps it for its whole life, whatever the
        environment says later.

    Raises
    ------
    InvalidNameError
        When *name* or *local_name* is not a valid name.
    InvalidArgumentError
        When *kind* or a number is out of range, or pyarrow lacks Flight.
    AccessDeniedError
        When the status directory (see the module docstring) exists but is not a
        private directory of this user: another user may have made it.
    """

    def __init__(self, uri: str, name: str, *, local_name: str | None = None,
                 token: str | None = None, tls_root_certs: bytes | None = None,
                 kind: str = "auto", retain: int = 1, poll_timeout: float = 5.0,
                 max_backoff: float = 5.0, namespace: str | Namespace | None = None) -> None:
        validate_name(name)
        local_name = local_name or name
        validate_name(local_name)
        if kind not in ("auto", "dataset", "stream"):
            raise InvalidArgumentError(f"kind must be auto, dataset or stream, not {kind!r}")
        if not poll_timeout > 0 or not max_backoff > 0:
            raise InvalidArgumentError("poll_timeout and max_backoff must be > 0 seconds")
        self._fl = _flight()
        self.uri = uri
        self.name = name
        self.local_name = local_name
        self.ns = namespace if isinstance(namespace, Namespace) else Namespace(namespace)
        self.namespace = self.ns.name
        self.kind = kind
        self.retain = retain
        self.poll_timeout = float(poll_timeout)
        self.max_backoff = float(max_backoff)
        token = token if token is not None else os.environ.get("ARROWSHM_TOKEN")
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self._headers = headers
        self._tls_root_certs = tls_root_certs
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._status = MirrorStatus(local_name, name, uri)
        self._status_path = status_dir(self.namespace) / (quote(local_name, safe="") + ".json")
        _make_status_dir(self._status_path.parent)  # refuses a directory another user made
        self.versions_published = 0

    # -- status ---------------------------------------------------------------------

    @property
    def status(self) -> MirrorStatus:
        """A snapshot of the mirror's state."""
        with self._changed:
            return MirrorStatus(**asdict(self._status))

    def _update(self, **changes: Any) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(self._status, k, v)
            st = self._status
            if st.state == "live" and st.version_lag == 0:
                st.synced_at = time.time()
            st.updated_at = time.time()
            self._write_status(st)
            self._changed.notify_all()

    def _write_status(self, st: MirrorStatus) -> None:
        try:
            # checked again at every write: the directory may have been removed meanwhile
            _make_status_dir(self._status_path.parent)
            tmp = self._status_path.with_suffix(f".{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # a leftover of ours: the directory is private
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(asdict(st)))
            os.replace(tmp, self._status_path)
        except OSError:  # the status record is advisory; never stop mirroring for it
            pass

    # -- Flight ---------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            kwargs: dict[str, Any] = {}
            if self._tls_root_certs is not None:
                kwargs["tls_root_certs"] = self._tls_root_certs
            self._client = self._fl.FlightClient(self.uri, **kwargs)
        return self._client

    def _options(self, timeout: float | None) -> Any:
        return self._fl.FlightCallOptions(headers=self._headers, timeout=timeout)

    def _disconnect(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def _action(self, kind: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        client = self._connect()
        action = self._fl.Action(kind, json.dumps(body).encode())
        try:
            results = list(client.do_action(action, self._options(timeout)))
        except self._fl.FlightError as exc:
            raise_from_flight(exc)
        out: dict[str, Any] = json.loads(results[0].body.to_pybytes()) if results else {}
        return out

    def _resolve_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        try:
            meta = self._action("info", {"name": self.name}, timeout=30)
        except _errors.NotFoundError:
            return "dataset"
        return "stream" if meta.get("kind") == "stream" else "dataset"

    # -- the loops ------------------------------------------------------------------

    def _sync_dataset_once(self) -> None:
        st = self._status
        res = self._action("wait", {"name": self.name, "after_version": st.mirrored_version,
                                    "timeout": self.poll_timeout},
                           timeout=self.poll_timeout + 30)
        version = int(res.get("version", 0))
        if res.get("timeout"):
            if 0 < version < st.mirrored_version:
                # the remote started over (a new namespace or a re-created name)
                self._update(mirrored_version=0, remote_version=version, state="fetching")
            else:
                self._update(remote_version=version, state="live", error="")
            return
        self._update(remote_version=max(version, st.remote_version), state="fetching",
                     error="")
        ticket = self._fl.Ticket(json.dumps({"kind": "dataset", "name": self.name,
                                             "version": version}).encode())
        client = self._connect()
        try:
            reader = client.do_get(ticket, self._options(None))
            table = reader.read_all()  # the whole version, or an exception
        except self._fl.FlightError as exc:
            try:
                raise_from_flight(exc)
            except _errors.NotFoundError:
                return  # retired while we asked for it: the next wait finds the newer one
        expected = int(res.get("num_rows", -1))
        if expected >= 0 and table.num_rows != expected:
            raise _Partial(f"got {table.num_rows} of {expected} rows of version {version}")
        local = self.ns.put(self.local_name, table, retain=self.retain)
        del table
        self.versions_published += 1
        self._update(mirrored_version=version, local_version=local.version,
                     state="live" if version >= self._status.remote_version else "fetching")

    def _sync_stream(self, start: str) -> bool:
        """Tail the remote stream into the local one; True when the remote stream ended."""
        client = self._connect()
        ticket = self._fl.Ticket(json.dumps({"kind": "stream", "name": self.name,
                                             "start": start}).encode())
        try:
            reader = client.do_get(ticket, self._options(None))
            schema = reader.schema
        except self._fl.FlightError as exc:
            raise_from_flight(exc)
        self._update(state="live", error="")
        with self.ns.StreamWriter(self.local_name, schema) as w:
            while not self._stop.is_set():
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return True
                if chunk.data is None:
                    continue
                w.write(chunk.data)
                n = self._status.mirrored_version + 1
                self._update(remote_version=n, mirrored_version=n, local_version=n)
        return False

    def run(self) -> None:
        """Mirror until :meth:`stop` (blocking); reconnects with backoff on errors.

        Raises
        ------
        InvalidArgumentError
            When the remote rejects the request itself (bad name, bad token).
        """
        backoff = _MIN_BACKOFF_S
        started_stream = False
        fl = self._fl
        retry = (fl.FlightError, pa.ArrowException, OSError, _Partial, ArrowShmError)
        self._update(state="connecting")
        try:
            while not self._stop.is_set():
                try:
                    if self._status.kind == "unknown":
                        self._update(kind=self._resolve_kind())
                    if self._status.kind == "stream":
                        ended = self._sync_stream("latest" if started_stream else "earliest")
                        started_stream = True
                        if ended:
                            self._update(state="ended")
                            return
                    else:
                        self._sync_dataset_once()
                    backoff = _MIN_BACKOFF_S
                except fl.FlightUnauthenticatedError as exc:
                    self._update(state="reconnecting", error=f"unauthenticated: {exc}")
                    self._disconnect()
                    self._stop.wait(self.max_backoff)
                except (_errors.InvalidNameError, WaitTimeoutError) as exc:
                    self._update(error=str(exc))
                except retry as exc:
                    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self._update(state="reconnecting", error=first_line,
                                 reconnects=self._status.reconnects + 1)
                    self._disconnect()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._disconnect()
            self._update(state="stopped")
            with contextlib.suppress(OSError):
                self._status_path.unlink()
            with contextlib.suppress(OSError):  # the namespace's directory, once empty
                self._status_path.parent.rmdir()

    def start(self) -> Mirror:
        """Run the mirror in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, daemon=True,
                                            name=f"arrowshm-mirror-{self.local_name}")
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop mirroring and wait for the thread (at most the current long-poll,
        plus a transfer in progress, which is then thrown away)."""
        self._stop.set()
        self._disconnect()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, version: int | None = None, *, timeout: float = 30.0) -> MirrorStatus:
        """Block until remote *version* (the newest known by default) is mirrored.

        Raises
        ------
        WaitTimeoutError
            When it is not within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                st = self._status
                want = st.remote_version if version is None else version
                if want > 0 and st.mirrored_version >= want and (
                    version is not None or st.state == "live"
                ):
                    return MirrorStatus(**asdict(st))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeoutError(
                        f"mirror of {self.name!r} did not reach version {want} within "
                        f"{timeout} s ({st.state}; {st.error})", name=self.name, timeout=timeout)
                self._changed.wait(min(remaining, 0.25))

    def local_info(self) -> DatasetInfo:
        """The local dataset's info.

        Raises
        ------
        NotFoundError
            When nothing has been mirrored yet.
        """
        return self.ns.info(self.local_name)

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mirror({self.uri!r}, {self.name!r} -> {self.local_name!r}: {self.status.state})"


def mirror(uri: str, name: str, *, local_name: str | None = None, token: str | None = None,
           tls_root_certs: bytes | None = None, kind: str = "auto", retain: int = 1,
           poll_timeout: float = 5.0, namespace: str | Namespace | None = None) -> Mirror:
    """Start mirroring remote *name* of ``arrowshm serve --flight`` at *uri* into local
    shared memory; returns the running :class:`Mirror` (``stop()`` it, or use it in a
    ``with`` block).

    Parameters
    ----------
    uri, name, local_name, token, tls_root_certs, kind, retain, poll_timeout, namespace
        As for :class:`Mirror`.

    Returns
    -------
    Mirror

    Raises
    ------
    InvalidNameError
        When *name* or *local_name* is not a valid name.
    InvalidArgumentError
        When an argument is out of range, or pyarrow lacks Flight.
    """
    return Mirror(uri, name, local_name=local_name, token=token, tls_root_certs=tls_root_certs,
                  kind=kind, retain=retain, poll_timeout=poll_timeout,
                  namespace=namespace).start()
