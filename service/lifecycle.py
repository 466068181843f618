"""Domain logic of the control plane, on top of the library (no FastAPI here).

Everything is read from and written to the namespace through the public API
(:class:`arrowshm.Namespace`) and, for listings that need no segment, the
registry module; the service keeps no state of its own, so a restarted
service sees exactly what the data plane holds.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import arrowshm
from arrowshm._shm.registry import EntryView, Registry

_UNSET: Any = object()


def ns_to_datetime(ns: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc) if ns else None


def entry_summary(view: EntryView) -> dict[str, Any]:
    """The registry-only description of an entry (no segment is opened)."""
    ttl_ns = view.ttl_ns
    updated_ns = view.updated_ns
    version = view.version
    return {
        "name": view.name,
        "kind": view.kind_name,
        "version": version,
        "num_rows": view.num_rows,
        "nbytes": view.data_bytes,
        "segment_bytes": view.segment_bytes,
        "created_at": ns_to_datetime(view.created_ns),
        "updated_at": ns_to_datetime(updated_ns),
        "ttl_seconds": ttl_ns / 1e9 if ttl_ns else None,
        "expires_at": ns_to_datetime(updated_ns + ttl_ns) if ttl_ns else None,
        "retain": view.retain,
        "versions": list(range(version, version - view.n_history, -1)),
        "owner_pid": view.owner_pid,
    }


@dataclass
class _ListCache:
    seq: int
    items: list[dict[str, Any]]
    next_expiry_ns: int
    body: bytes  # the JSON of the whole listing, built once per registry change


def _jsonable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat().replace("+00:00", "Z") if isinstance(v, dt.datetime) else v
            for k, v in item.items()}


class DatasetCatalog:
    """Lists a namespace's datasets, cached per registry event count.

    Every publish, delete and patch bumps the registry's event count, so a
    listing computed at one count stays right until the count moves or a TTL
    in it passes; the cache is derived state only.
    """

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._lock = threading.Lock()
        self._cache: _ListCache | None = None

    def list(self) -> list[dict[str, Any]]:
        """Every live, unexpired dataset as JSON-ready dicts, sorted by name."""
        return self._current().items

    def list_json(self) -> bytes:
        """``{"data": [...], "count": n}`` of the whole listing, encoded."""
        return self._current().body

    def _current(self) -> _ListCache:
        now = time.time_ns()
        seq = self.reg.event_seq()
        cache = self._cache
        if cache is not None and cache.seq == seq and now < cache.next_expiry_ns:
            return cache
        with self._lock:
            items: list[dict[str, Any]] = []
            next_expiry = 1 << 63
            for view in self.reg.entries():
                if view.kind_name != "dataset" or view.version == 0 or view.expired(now):
                    continue
                if view.ttl_ns:
                    next_expiry = min(next_expiry, view.updated_ns + view.ttl_ns)
                items.append(_jsonable(entry_summary(view)))
            items.sort(key=lambda d: d["name"])
            body = json.dumps({"data": items, "count": len(items)},
                              separators=(",", ":")).encode()
            cache = _ListCache(seq, items, next_expiry, body)
            self._cache = cache
        return cache


def describe_dataset(ns: arrowshm.Namespace, reg: Registry, name: str) -> dict[str, Any]:
    """Registry fields plus schema and segment of dataset *name*.

    Raises
    ------
    InvalidNameError, NotFoundError, ConflictError
        As :meth:`arrowshm.Namespace.info`.
    """
    di = ns.info(name)  # validates, checks the kind and expiry, opens the segment's schema
    out = entry_summary(reg.get_entry(name))
    out.update(
        version=di.version,
        num_rows=di.num_rows,
        nbytes=di.nbytes,
        versions=list(di.versions),
        owner_pid=di.owner_pid,
        segment=di.segment,
        schema=[{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in di.schema],
        readers=[{"version": r.version, "pid": r.pid, "command": r.command, "since": r.since,
                  "alive": r.alive} for r in di.readers or ()],
        readers_overflow=list(di.readers_overflow),
    )
    return out


def patch_dataset(ns: arrowshm.Namespace, name: str, *, ttl_seconds: float | None = _UNSET,
                  retain: int | None = None) -> None:
    """Change the TTL and/or the retention of dataset *name*'s current version
    (:meth:`arrowshm.Namespace.update`).

    Raises
    ------
    InvalidNameError, NotFoundError, ConflictError, InvalidArgumentError
        As :meth:`arrowshm.Namespace.update`.
    """
    if ttl_seconds is _UNSET:
        ns.update(name, retain=retain)
    else:
        ns.update(name, ttl=ttl_seconds, retain=retain)


def delete_dataset(ns: arrowshm.Namespace, name: str) -> None:
    """Delete dataset *name* and free its segments now.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When *name* does not exist.
    ConflictError
        When *name* is a stream.
    """
    kind = ns.kind(name)
    if kind != "dataset":  # a stream is not deleted through /v1/datasets
        raise arrowshm.ConflictError(
            f"{name!r} is a {kind}, not a dataset: use /v1/streams", name=name, kind=kind)
    ns.delete(name)


def quota(ns: arrowshm.Namespace) -> dict[str, Any]:
    """The namespace's byte quota and usage: live bytes, spares, reserve, and the
    filesystem of its directory (/dev/shm or ARROWSHM_DIR)."""
    u = ns.usage()
    return {"max_bytes": u.quota, "bytes_used": u.bytes_used, "namespace": ns.name,
            "live_bytes": u.live_bytes, "spare_bytes": u.spare_bytes, "spares": u.spares,
            "reserve": u.reserve, "shm_free": u.shm_free, "shm_total": u.shm_total,
            "directory": u.directory}


def set_quota(ns: arrowshm.Namespace, max_bytes: int | None) -> dict[str, Any]:
    """Set (or with None remove) the namespace's byte quota; the data plane enforces it.

    Raises
    ------
    InvalidArgumentError
        When *max_bytes* is not a positive 63-bit integer.
    """
    ns.set_quota(max_bytes)
    return quota(ns)
