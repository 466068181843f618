"""Streams as the control plane sees them (no FastAPI here).

Stream entries are listed from the registry with the generic fields; reader
details (pid, cursor, lag, held batches) come from
:meth:`arrowshm.Namespace.stream_info`.
"""

from __future__ import annotations

from typing import Any

import arrowshm
from arrowshm._shm.registry import EntryView, Registry

from .lifecycle import entry_summary


def stream_summary(view: EntryView) -> dict[str, Any]:
    out = entry_summary(view)
    for key in ("ttl_seconds", "expires_at", "retain", "versions"):
        out.pop(key, None)
    out["batches_written"] = view.version
    return out


def list_streams(reg: Registry) -> list[dict[str, Any]]:
    """Every stream entry of the namespace, by name."""
    return sorted(
        (stream_summary(v) for v in reg.entries() if v.kind_name == "stream"),
        key=lambda d: d["name"],
    )


def _check_stream(ns: arrowshm.Namespace, name: str) -> None:
    kind = ns.kind(name)
    if kind != "stream":
        raise arrowshm.ConflictError(
            f"{name!r} is a {kind}, not a stream: use /v1/datasets", name=name, kind=kind)


def describe_stream(ns: arrowshm.Namespace, reg: Registry, name: str) -> dict[str, Any]:
    """Registry fields of stream *name*, plus its readers, mode, capacity and writer when
    its segment can be read (a stream being created has none yet).

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When no stream has that name.
    ConflictError
        When *name* is a dataset.
    """
    _check_stream(ns, name)
    out = stream_summary(reg.get_entry(name))
    out.update(readers=None, details_available=False)
    try:
        info = ns.stream_info(name)
    except arrowshm.ArrowShmError:  # being created or torn down: the registry view
        return out
    out.update(
        readers=[{"reader_id": r.reader_id, "pid": r.pid, "cursor": r.cursor, "lag": r.lag,
                  "held_batches": r.held_batches, "alive": r.alive, "missed": r.missed}
                 for r in info.readers],
        details_available=True, capacity_bytes=info.capacity_bytes, mode=info.mode,
        writer_pid=info.writer_pid, closed=info.closed, cursor=info.cursor, state=info.state,
    )
    return out


def delete_stream(ns: arrowshm.Namespace, name: str) -> None:
    """Delete stream *name* and free its segment.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When no stream has that name.
    ConflictError
        When *name* is a dataset.
    """
    _check_stream(ns, name)  # a dataset is not deleted through /v1/streams
    ns.delete(name)
