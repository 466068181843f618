"""Domain logic of the control plane, on top of the registry (no FastAPI here).

Everything is read from and written to the namespace's registry, so the
service keeps no state of its own: a restarted service sees exactly what the
data plane holds. The one registry write the data plane had no helper for,
changing the TTL or the retention of a published dataset, is :func:`patch_dataset`:
it rewrites the entry's record through the seqlock with the entry's writer lock
held, exactly as a put publishes.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from arrowshm import _layout as L
from arrowshm._dataset import _expired, info
from arrowshm._dataset import delete as _delete
from arrowshm._errors import ConflictError, InvalidArgumentError, NotFoundError
from arrowshm._names import validate_name
from arrowshm._registry import EntryView, Registry

_UNSET: Any = object()


def ns_to_datetime(ns: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc) if ns else None


def entry_summary(view: EntryView) -> dict[str, Any]:
    """The registry-only description of an entry (no segment is opened)."""
    ttl_ns = view.field(L.R_TTL_NS)
    updated_ns = view.field(L.R_UPDATED_NS)
    n_hist = view.field(L.R_N_HISTORY)
    version = view.version
    return {
        "name": view.name,
        "kind": L.KIND_NAMES.get(view.kind, "unknown"),
        "version": version,
        "num_rows": view.field(L.R_NUM_ROWS),
        "nbytes": view.field(L.R_DATA_BYTES),
        "segment_bytes": view.field(L.R_SEGMENT_BYTES),
        "created_at": ns_to_datetime(view.field(L.R_CREATED_NS)),
        "updated_at": ns_to_datetime(updated_ns),
        "ttl_seconds": ttl_ns / 1e9 if ttl_ns else None,
        "expires_at": ns_to_datetime(updated_ns + ttl_ns) if ttl_ns else None,
        "retain": view.field(L.R_RETAIN),
        "versions": list(range(version, version - n_hist, -1)),
        "owner_pid": view.field(L.R_OWNER_PID),
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
                if view.kind != L.KIND_DATASET or view.version == 0 or _expired(view):
                    continue
                ttl = view.field(L.R_TTL_NS)
                if ttl:
                    next_expiry = min(next_expiry, view.field(L.R_UPDATED_NS) + ttl)
                items.append(_jsonable(entry_summary(view)))
            items.sort(key=lambda d: d["name"])
            body = json.dumps({"data": items, "count": len(items)},
                              separators=(",", ":")).encode()
            cache = _ListCache(seq, items, next_expiry, body)
            self._cache = cache
        return cache


def dataset_entry(reg: Registry, name: str) -> EntryView:
    """The live, unexpired dataset entry *name*.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When no dataset has that name (or it expired).
    ConflictError
        When *name* is a stream.
    """
    validate_name(name)
    view = reg.get_entry(name)
    if view.kind != L.KIND_DATASET:
        raise ConflictError(
            f"{name!r} is a {L.KIND_NAMES.get(view.kind, '?')}, not a dataset: use /v1/streams",
            name=name,
        )
    if view.version == 0 or _expired(view):
        raise NotFoundError(f"{name!r} does not exist (or expired)", name=name)
    return view


def describe_dataset(reg: Registry, name: str) -> dict[str, Any]:
    """Registry fields plus schema and segment of dataset *name*.

    Raises
    ------
    InvalidNameError, NotFoundError, ConflictError
        As :func:`dataset_entry`.
    """
    view = dataset_entry(reg, name)
    out = entry_summary(view)
    di = info(name)  # opens the segment for the schema, in this namespace
    out.update(
        version=di.version,
        num_rows=di.num_rows,
        nbytes=di.nbytes,
        versions=list(di.versions),
        owner_pid=di.owner_pid,
        segment=di.segment,
        schema=[{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in di.schema],
    )
    return out


def patch_dataset(
    reg: Registry, name: str, *, ttl_seconds: float | None = _UNSET, retain: int | None = None
) -> list[int]:
    """Change the TTL and/or the retention of dataset *name*'s current version.

    The TTL counts from the version's ``updated_at`` (as ``put(ttl=)`` does);
    ``ttl_seconds=None`` removes it. Lowering *retain* frees the versions that
    fall out of it. The next ``put`` sets both again from its own arguments.

    Returns
    -------
    list of int
        Segment ids freed by a lower retention.

    Raises
    ------
    InvalidNameError, NotFoundError, ConflictError
        As :func:`dataset_entry`.
    InvalidArgumentError
        When *ttl_seconds* is not positive or *retain* is outside 1..16.
    """
    if ttl_seconds is not _UNSET and ttl_seconds is not None and not ttl_seconds > 0:
        raise InvalidArgumentError("ttl_seconds must be > 0 or null", ttl_seconds=ttl_seconds)
    if retain is not None and not 1 <= retain <= L.MAX_RETAIN:
        raise InvalidArgumentError(f"retain must be 1..{L.MAX_RETAIN}", retain=retain)
    view = dataset_entry(reg, name)
    retired: list[int] = []
    with reg.entry_lock(view.slot):
        rec = reg.read_record(view.slot, view.generation)
        if rec is None or int(rec[L.R_VERSION]) == 0:
            raise NotFoundError(f"{name!r} was deleted concurrently", name=name)
        new = np.array(rec, dtype=np.uint64)
        if ttl_seconds is not _UNSET:
            new[L.R_TTL_NS] = int(ttl_seconds * 1e9) if ttl_seconds else 0
        if retain is not None:
            n = int(new[L.R_N_HISTORY])
            history = [int(x) for x in new[L.R_HISTORY : L.R_HISTORY + n]]
            keep, retired = history[:retain], history[retain:]
            new[L.R_RETAIN] = retain
            new[L.R_N_HISTORY] = len(keep)
            new[L.R_HISTORY : L.R_HISTORY + L.MAX_RETAIN] = 0
            new[L.R_HISTORY : L.R_HISTORY + len(keep)] = keep
        reg.write_record(view.slot, new)
    # the event count moves so that listings and watchers see the change
    reg.notify_entry(view.slot)
    for sid in retired:
        reg.unlink_segment(sid)
    return retired


def delete_entry(reg: Registry, name: str, kind: int) -> None:
    """Delete dataset or stream *name* and free its segments now.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When *name* does not exist.
    ConflictError
        When *name* is of the other kind.
    """
    validate_name(name)
    view = reg.get_entry(name)
    if view.kind != kind:
        raise ConflictError(
            f"{name!r} is a {L.KIND_NAMES.get(view.kind, '?')}, not a {L.KIND_NAMES[kind]}",
            name=name,
        )
    _delete(name)


def quota(reg: Registry) -> dict[str, Any]:
    """The namespace's byte quota and usage."""
    return {"max_bytes": reg.quota, "bytes_used": reg.bytes_used, "namespace": reg.namespace}


def set_quota(reg: Registry, max_bytes: int | None) -> dict[str, Any]:
    """Set (or with None remove) the namespace's byte quota; the data plane enforces it.

    Raises
    ------
    InvalidArgumentError
        When *max_bytes* is not a positive 63-bit integer.
    """
    if max_bytes is not None and not 1 <= max_bytes < 1 << 63:
        raise InvalidArgumentError("max_bytes must be a positive 63-bit integer or null",
                                   max_bytes=max_bytes)
    reg.set_quota(max_bytes)
    return quota(reg)
