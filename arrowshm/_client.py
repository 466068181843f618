"""A Python client of the control-plane service (``arrowshm serve``).

The client speaks HTTP over the service's Unix socket (the default) or over
TCP with a bearer token, and re-raises the service's errors as the same
arrowshm exception classes. It is never needed for ``put``/``get``: data does
not travel through the service.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from . import _errors
from ._errors import AccessDeniedError, ArrowShmError
from ._names import current_namespace

__all__ = ["Client"]

_UNSET: Any = object()


def _default_socket(namespace: str) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) / "arrowshm" if runtime else Path(f"/tmp/arrowshm-{os.getuid()}")
    return base / f"{namespace}.sock"


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
        Bearer token (default ``ARROWSHM_TOKEN``); needed over TCP.
    timeout : float, default 10
        Seconds per request.

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
    ) -> None:
        import httpx

        token = token if token is not None else os.environ.get("ARROWSHM_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url is not None:
            self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
            self.address = url
        else:
            path = Path(socket) if socket is not None else _default_socket(current_namespace())
            transport = httpx.HTTPTransport(uds=str(path))
            self._http = httpx.Client(transport=transport, base_url="http://arrowshm",
                                      headers=headers, timeout=timeout)
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
        """``DELETE /v1/streams/{name}/readers/{reader_id}``.

        Raises
        ------
        NotFoundError
            When the stream or reader does not exist.
        """
        self._request("DELETE", f"/v1/streams/{self._name(name)}/readers/{int(reader_id)}")

    def quota(self) -> dict[str, Any]:
        """``GET /v1/quota``: ``{"max_bytes", "bytes_used", "namespace"}``."""
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

    def gc(self) -> dict[str, Any]:
        """``POST /v1/gc``: run the reaper now; returns what it reclaimed."""
        result: dict[str, Any] = self._request("POST", "/v1/gc")
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
