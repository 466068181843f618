"""Streams as the control plane sees them (no FastAPI here).

Stream entries are listed from the registry with the generic fields. Reader
details (pid, cursor, lag, held batches) come from ``arrowshm._stream`` when
that module is present; the service degrades to the registry view otherwise.
"""

from __future__ import annotations

import importlib
from typing import Any

from arrowshm import _layout as L
from arrowshm._errors import ConflictError, InvalidArgumentError
from arrowshm._names import validate_name
from arrowshm._registry import EntryView, Registry

from .lifecycle import delete_entry, entry_summary


def _stream_module() -> Any | None:
    try:
        return importlib.import_module("arrowshm._stream")
    except ImportError:
        return None


def stream_summary(view: EntryView) -> dict[str, Any]:
    out = entry_summary(view)
    out.pop("ttl_seconds", None)
    out.pop("expires_at", None)
    out.pop("retain", None)
    out.pop("versions", None)
    out["batches_written"] = view.version
    return out


def list_streams(reg: Registry) -> list[dict[str, Any]]:
    """Every stream entry of the namespace, by name."""
    return sorted(
        (stream_summary(v) for v in reg.entries() if v.kind == L.KIND_STREAM),
        key=lambda d: d["name"],
    )


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def reader_details(details: Any) -> list[dict[str, Any]]:
    """Normalize the readers of a ``stream_info`` result to plain dicts."""
    readers = _attr(details, "readers", default=()) or ()
    out = []
    for i, r in enumerate(readers):
        out.append({
            "reader_id": int(_attr(r, "reader_id", "slot", "id", "index", default=i)),
            "pid": _attr(r, "pid"),
            "cursor": _attr(r, "cursor", "position"),
            "lag": _attr(r, "lag"),
            "held_batches": _attr(r, "held_batches", "held", "leases"),
            "alive": _attr(r, "alive", "live"),
        })
    return out


def describe_stream(reg: Registry, name: str) -> dict[str, Any]:
    """Registry fields of stream *name*, plus readers when the stream module is available.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When no stream has that name.
    ConflictError
        When *name* is a dataset.
    """
    validate_name(name)
    view = reg.get_entry(name)
    if view.kind != L.KIND_STREAM:
        raise ConflictError(f"{name!r} is a dataset, not a stream: use /v1/datasets", name=name)
    out = stream_summary(view)
    out["readers"] = None
    out["details_available"] = False
    mod = _stream_module()
    info_fn = getattr(mod, "stream_info", None) if mod is not None else None
    if info_fn is not None:
        try:
            details = info_fn(name)
        except Exception:  # a stream being torn down: keep the registry view
            details = None
        if details is not None:
            out["readers"] = reader_details(details)
            out["details_available"] = True
            for key in ("capacity_bytes", "mode", "writer_pid", "closed"):
                value = _attr(details, key)
                if value is not None:
                    out[key] = value
    return out


def delete_stream(reg: Registry, name: str) -> None:
    """Delete stream *name* (see :func:`lifecycle.delete_entry`)."""
    delete_entry(reg, name, L.KIND_STREAM)


class EvictUnavailableError(InvalidArgumentError):
    """Raised when the stream module offers no reader eviction yet."""


def evict_reader(reg: Registry, name: str, reader_id: int) -> None:
    """Evict reader *reader_id* of stream *name*, freeing what it held.

    Raises
    ------
    NotFoundError
        When the stream or the reader does not exist.
    ConflictError
        When *name* is a dataset.
    EvictUnavailableError
        When ``arrowshm._stream`` has no ``evict_reader`` function.
    """
    describe_stream(reg, name)  # existence and kind checks
    mod = _stream_module()
    fn = getattr(mod, "evict_reader", None) if mod is not None else None
    if fn is None:
        raise EvictUnavailableError(
            "this arrowshm has no stream reader eviction (arrowshm._stream.evict_reader)",
            name=name,
            reader_id=reader_id,
        )
    fn(name, reader_id)
