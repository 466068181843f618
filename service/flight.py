"""The Arrow Flight endpoint of ``arrowshm serve --flight URI`` (no FastAPI here).

Remote hosts reach the namespace's datasets and streams through standard Arrow
Flight (``pyarrow.flight``):

=================  ==========================================================
RPC                what it does
=================  ==========================================================
``list_flights``   one ``FlightInfo`` per live dataset and stream
``get_flight_info``  describes one: schema, rows, bytes, version (descriptor
                   path ``[name]``)
``do_get``         ticket ``{"kind": "dataset", "name", "version"}``: that
                   version, streamed straight from the shared-memory mapping;
                   ``{"kind": "stream", "name", "start", "open_timeout"}``: tails
                   the stream live until its writer closes it
``do_put``         descriptor path ``[name]`` or command ``{"name", "kind",
                   "retain", "ttl", "capacity_bytes", "mode"}``: a remote
                   producer's batches become a new dataset version (published
                   only once every batch arrived; at most ``max_put_bytes``, and
                   within the namespace quota, both counted as batches arrive) or
                   are appended to a stream
``do_action``      ``wait`` ``{"name", "after_version", "timeout"}`` (a
                   long-poll; the mirror's way to follow versions) and
                   ``info`` ``{"name"}``; both answer one JSON result
=================  ==========================================================

Tickets, commands, action bodies and results are UTF-8 JSON. Every call needs
``authorization: Bearer <token>`` (the HTTP API's token), checked in constant
time by a server middleware; TLS is used when a certificate and key are given
(URI scheme ``grpc+tls``). Errors cross as Flight errors whose ``extra_info`` is
``{"code": <arrowshm exception class>, "message", "fields"}``, so a client
re-raises the same class (:func:`arrowshm.raise_from_flight`).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.flight as fl

import arrowshm
from arrowshm import (
    AccessDeniedError,
    ArrowShmError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    QuotaExceededError,
    WaitTimeoutError,
)

from .config import DEFAULT_FLIGHT_MAX_PUT_BYTES as DEFAULT_MAX_PUT_BYTES
from .logs import get_logger, log_event

_log = get_logger("flight")
MAX_WAIT_S = 60.0  # longest single long-poll a client may ask for
_SLICE_S = 0.25  # blocking calls wake this often to notice a shutdown or a cancel


@dataclass(frozen=True)
class FlightSettings:
    """Where and how the Flight endpoint listens.

    Attributes
    ----------
    uri : str
        ``grpc://HOST:PORT`` or ``grpc+tls://HOST:PORT`` (port 0 picks a free one).
    token : str
        Bearer token every call must carry (the HTTP API's).
    tls_cert, tls_key : Path or None
        PEM certificate chain and private key; both or neither (TLS needs both).
    max_put_bytes : int
        Largest dataset upload (``do_put``) in bytes of Arrow buffers, default 1 GiB:
        an upload is held in memory until it is complete, and one past this size is
        refused as it arrives.
    """

    uri: str
    token: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_put_bytes: int = DEFAULT_MAX_PUT_BYTES

    def __post_init__(self) -> None:
        if (isinstance(self.max_put_bytes, bool) or not isinstance(self.max_put_bytes, int)
                or self.max_put_bytes <= 0):
            raise InvalidArgumentError(
                f"--flight-max-put-bytes must be a positive integer, not {self.max_put_bytes!r}")
        parsed = urlparse(self.uri)
        if parsed.scheme not in ("grpc", "grpc+tcp", "grpc+tls") or not parsed.hostname:
            raise InvalidArgumentError(
                f"--flight wants grpc://HOST:PORT or grpc+tls://HOST:PORT, not {self.uri!r}",
                uri=self.uri,
            )
        if not self.token:
            raise InvalidArgumentError("the Flight endpoint needs a token: --token or "
                                       "ARROWSHM_TOKEN")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgumentError("TLS needs both --flight-tls-cert and --flight-tls-key")
        if self.tls and self.tls_cert is None:
            raise InvalidArgumentError(f"{self.uri} asks for TLS: give --flight-tls-cert and "
                                       "--flight-tls-key")

    @property
    def tls(self) -> bool:
        return urlparse(self.uri).scheme == "grpc+tls" or self.tls_cert is not None


def flight_error(exc: BaseException) -> fl.FlightError:
    """The Flight error that carries *exc* to a client (class name, message, fields)."""
    if isinstance(exc, fl.FlightError):
        return exc
    if isinstance(exc, ArrowShmError):
        fields = {k: v for k, v in vars(exc).items() if k != "message"}
        body = {"code": type(exc).__name__, "message": exc.message, "fields": fields}
        extra = json.dumps(body, default=str).encode()
        if isinstance(exc, WaitTimeoutError):
            return fl.FlightTimedOutError(exc.message, extra_info=extra)
        if isinstance(exc, AccessDeniedError):
            return fl.FlightUnauthorizedError(exc.message, extra_info=extra)
        return fl.FlightServerError(exc.message, extra_info=extra)
    body = {"code": type(exc).__name__, "message": str(exc), "fields": {}}
    return fl.FlightInternalError(str(exc), extra_info=json.dumps(body).encode())


class _BearerMiddlewareFactory(fl.ServerMiddlewareFactory):  # type: ignore[misc]
    """Rejects every call without ``authorization: Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        values = headers.get("authorization") or headers.get("Authorization") or []
        got = values[0] if values else b""
        if isinstance(got, str):
            got = got.encode()
        if not hmac.compare_digest(got, self.expected):
            raise fl.FlightUnauthenticatedError(
                "this Flight endpoint needs `authorization: Bearer <token>` "
                "(the token of arrowshm serve)")
        return None


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgumentError(f"{what} must be a JSON object")
    return obj


def _name_of(descriptor: fl.FlightDescriptor) -> tuple[str, dict[str, Any]]:
    """(name, options) of a path descriptor ``[name]`` or a JSON command."""
    if descriptor.descriptor_type == fl.DescriptorType.PATH:
        parts = [p.decode() if isinstance(p, bytes) else p for p in descriptor.path]
        name, opts = "/".join(parts), {}
    else:
        opts = _load_json(descriptor.command, "the descriptor command")
        raw = opts.get("name")
        if not isinstance(raw, str):
            raise InvalidArgumentError("the descriptor command needs a string \"name\"")
        name = raw
    return name, opts


def _int_option(opts: dict[str, Any], key: str, default: int) -> int:
    value = opts.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{key!r} must be an integer, not {value!r}")
    return value


def _dataset_info_dict(i: arrowshm.DatasetInfo) -> dict[str, Any]:
    out = {"name": i.name, "kind": "dataset", "version": i.version, "num_rows": i.num_rows,
           "nbytes": i.nbytes, "updated_at": i.updated_at.timestamp(),
           "versions": list(i.versions)}
    if i.readers is not None:  # looked up by info(): the processes reading each version
        out["readers"] = [{"version": r.version, "pid": r.pid, "command": r.command,
                           "since": r.since.timestamp() if r.since else None,
                           "alive": r.alive} for r in i.readers]
    return out


class ArrowShmFlightServer(fl.FlightServerBase):  # type: ignore[misc]
    """A Flight server over the datasets and streams of one namespace.

    It listens from construction on; :meth:`stop` ends it, first waking every
    long-poll and stream tail so that shutdown does not wait for them.

    Parameters
    ----------
    settings : FlightSettings
    ns : arrowshm.Namespace
        The namespace served.

    Raises
    ------
    InvalidArgumentError
        When a TLS file cannot be read.
    """

    def __init__(self, settings: FlightSettings, ns: arrowshm.Namespace) -> None:
        tls: list[tuple[bytes, bytes]] = []
        if settings.tls_cert is not None and settings.tls_key is not None:
            try:
                tls = [(settings.tls_cert.read_bytes(), settings.tls_key.read_bytes())]
            except OSError as exc:
                raise InvalidArgumentError(f"cannot read a TLS file: {exc}") from None
        uri = settings.uri
        if tls and uri.startswith("grpc://"):
            uri = "grpc+tls://" + uri[len("grpc://"):]
        self._stopping = threading.Event()
        self.settings = settings
        self.ns = ns
        self.namespace = ns.name
        self.calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()
        super().__init__(uri, tls_certificates=tls,
                         middleware={"auth": _BearerMiddlewareFactory(settings.token)})
        host = urlparse(uri).hostname or "127.0.0.1"
        scheme = "grpc+tls" if tls else "grpc"
        self.location = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{self.port}"

    # -- helpers --------------------------------------------------------------------

    def _count(self, rpc: str) -> None:
        with self._calls_lock:
            self.calls[rpc] = self.calls.get(rpc, 0) + 1

    def _alive(self, context: Any) -> bool:
        return not self._stopping.is_set() and not context.is_cancelled()

    def _ticket(self, body: dict[str, Any]) -> fl.Ticket:
        return fl.Ticket(json.dumps(body).encode())

    def _dataset_flight(self, name: str) -> fl.FlightInfo:
        i = self.ns.info(name)
        ticket = self._ticket({"kind": "dataset", "name": name, "version": i.version})
        meta = json.dumps(_dataset_info_dict(i)).encode()
        return fl.FlightInfo(i.schema, fl.FlightDescriptor.for_path(name),
                             [fl.FlightEndpoint(ticket, [])], i.num_rows, i.nbytes,
                             app_metadata=meta)

    def _stream_flight(self, name: str) -> fl.FlightInfo:
        s = self.ns.stream_info(name)
        ticket = self._ticket({"kind": "stream", "name": name, "start": "earliest"})
        meta = json.dumps({"name": name, "kind": "stream", "version": s.session,
                           "cursor": s.cursor, "state": s.state, "mode": s.mode,
                           "rows_written": s.rows_written}).encode()
        return fl.FlightInfo(s.schema, fl.FlightDescriptor.for_path(name),
                             [fl.FlightEndpoint(ticket, [])], -1, -1, app_metadata=meta)

    def _flight_for(self, name: str) -> fl.FlightInfo:
        try:
            return self._dataset_flight(name)
        except ConflictError:  # a stream
            return self._stream_flight(name)

    # -- RPCs -----------------------------------------------------------------------

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[fl.FlightInfo]:
        self._count("list_flights")
        names = sorted([d.name for d in self.ns.list_datasets()]
                       + [s.name for s in self.ns.list_streams()])
        for name in names:
            try:
                yield self._flight_for(name)
            except ArrowShmError:  # deleted or being torn down meanwhile: skip it
                continue

    def get_flight_info(self, context: Any, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        self._count("get_flight_info")
        try:
            name, _ = _name_of(descriptor)
            return self._flight_for(name)
        except Exception as exc:
            raise flight_error(exc) from None

    def do_get(self, context: Any, ticket: fl.Ticket) -> fl.FlightDataStream:
        self._count("do_get")
        try:
            body = _load_json(ticket.ticket, "the ticket")
            name = body.get("name")
            if not isinstance(name, str):
                raise InvalidArgumentError("the ticket needs a string \"name\"")
            if body.get("kind", "dataset") == "stream":
                wait_s = body.get("open_timeout", 0)
                if not isinstance(wait_s, (int, float)) or not 0 <= wait_s <= MAX_WAIT_S:
                    raise InvalidArgumentError(f"open_timeout must be 0..{MAX_WAIT_S} seconds")
                return self._tail(context, name, str(body.get("start", "earliest")),
                                  float(wait_s))
            version = body.get("version")
            if version is not None and not isinstance(version, int):
                raise InvalidArgumentError("the ticket's \"version\" must be an integer")
            # zero-copy: the table's buffers are the shared-memory mapping itself
            table = self.ns.get(name, version=version)
            return fl.RecordBatchStream(table)
        except Exception as exc:
            raise flight_error(exc) from None

    def _tail(self, context: Any, name: str, start: str,
              open_timeout: float) -> fl.FlightDataStream:
        reader = self.ns.StreamReader(name, start=start, open_timeout=open_timeout)

        def batches() -> Iterator[pa.RecordBatch]:
            with reader:
                while self._alive(context):
                    try:
                        batch = reader.read(timeout=_SLICE_S)
                    except WaitTimeoutError:
                        continue
                    if batch is None:
                        return
                    yield batch
                if self._stopping.is_set():  # cut, not ended: the client must not take it as EOS
                    raise fl.FlightUnavailableError("arrowshm serve is stopping")

        return fl.GeneratorStream(reader.schema, batches())

    def do_put(self, context: Any, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        self._count("do_put")
        try:
            name, opts = _name_of(descriptor)
            kind = opts.get("kind", "dataset")
            if kind == "stream":
                self._put_stream(name, opts, reader, writer)
                return
            if kind != "dataset":
                raise InvalidArgumentError(f"kind must be \"dataset\" or \"stream\", not {kind!r}")
            table = self._receive(name, reader)  # whole first: never publish a partial one
            info = self.ns.put(name, table, retain=_int_option(opts, "retain", 1),
                               ttl=opts.get("ttl"))
            writer.write(pa.py_buffer(json.dumps(_dataset_info_dict(info)).encode()))
            log_event(_log, "flight put", name=name, version=info.version, rows=info.num_rows)
        except Exception as exc:
            raise flight_error(exc) from None

    def _receive(self, name: str, reader: fl.MetadataRecordBatchReader) -> pa.Table:
        """Every batch of a dataset upload, counted as it arrives: past the endpoint's
        cap or the namespace quota's headroom the upload is refused at once, before
        more of it is held in memory (at most the cap plus one batch is).

        pyarrow offers no way to write batches of unknown count and size straight
        into a shared-memory segment (``build`` needs the row count first), so the
        upload is held in this process until it is whole.
        """
        limit = self.settings.max_put_bytes
        quota = self.ns.quota
        batches: list[pa.RecordBatch] = []
        received = 0
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if chunk.data is None:
                continue
            received += chunk.data.get_total_buffer_size()
            if received > limit:
                raise InvalidArgumentError(
                    f"the upload of {name!r} exceeds this endpoint's limit of {limit} bytes "
                    f"(--flight-max-put-bytes) after {received} bytes; nothing was published",
                    name=name, limit=limit, received=received)
            if quota is not None:
                used = self.ns.bytes_used
                if used + received > quota:
                    raise QuotaExceededError(
                        f"the upload of {name!r} would exceed the namespace's byte quota "
                        f"({used} of {quota} bytes used, {received} received so far); "
                        "nothing was published", name=name, limit=quota, used=used,
                        requested=received)
            batches.append(chunk.data)
        return pa.Table.from_batches(batches, schema=reader.schema)

    def _put_stream(self, name: str, opts: dict[str, Any], reader: fl.MetadataRecordBatchReader,
                    writer: fl.FlightMetadataWriter) -> None:
        kwargs: dict[str, Any] = {"mode": str(opts.get("mode", "block"))}
        if "capacity_bytes" in opts:
            kwargs["capacity_bytes"] = _int_option(opts, "capacity_bytes", 0)
        n = 0
        with self.ns.StreamWriter(name, reader.schema, **kwargs) as w:
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                if chunk.data is not None:
                    w.write(chunk.data)
                    n += 1
        writer.write(pa.py_buffer(json.dumps({"name": name, "kind": "stream",
                                              "batches": n}).encode()))

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [
            ("wait", "long-poll: {name, after_version, timeout} -> the newer version's info, "
                     "or {timeout: true, version: current}"),
            ("info", "{name} -> the dataset's or stream's info"),
        ]

    def do_action(self, context: Any, action: fl.Action) -> Iterator[bytes]:
        self._count(f"action:{action.type}")
        try:
            body = _load_json(action.body.to_pybytes() if action.body else b"{}",
                              "the action body")
            name = body.get("name")
            if not isinstance(name, str):
                raise InvalidArgumentError("the action needs a string \"name\"")
            if action.type == "wait":
                result = self._wait(context, name, body)
            elif action.type == "info":
                info = self._flight_for(name)
                result = json.loads(info.app_metadata or b"{}")
            else:
                raise InvalidArgumentError(f"unknown action {action.type!r}; see list_actions")
        except Exception as exc:
            raise flight_error(exc) from None
        return iter([json.dumps(result).encode()])

    def _wait(self, context: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
        after = body.get("after_version", 0)
        timeout = body.get("timeout", 10.0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidArgumentError("after_version must be a non-negative integer")
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidArgumentError("timeout must be a number of seconds >= 0")
        deadline = time.monotonic() + min(float(timeout), MAX_WAIT_S)
        while True:
            remaining = deadline - time.monotonic()
            try:
                info = self.ns.wait(name, after_version=after,
                                     timeout=max(0.0, min(remaining, _SLICE_S)))
                return _dataset_info_dict(info)
            except WaitTimeoutError:
                pass
            if remaining <= 0 or not self._alive(context):
                break
        try:
            current = self.ns.info(name).version
        except NotFoundError:
            current = 0
        return {"name": name, "timeout": True, "version": current}

    def stop(self) -> None:
        """Wake every long-poll and stream tail, then shut the server down."""
        self._stopping.set()
        self.shutdown()


def start_flight(settings: FlightSettings, ns: arrowshm.Namespace) -> ArrowShmFlightServer:
    """Start the Flight endpoint for namespace *ns*; it serves in gRPC threads.

    Raises
    ------
    InvalidArgumentError
        When a TLS file cannot be read.
    OSError
        When the address cannot be bound (pyarrow raises an ``ArrowException``).
    """
    server = ArrowShmFlightServer(settings, ns)
    log_event(_log, "flight listening", location=server.location,
              namespace=server.namespace, tls=settings.tls)
    return server
