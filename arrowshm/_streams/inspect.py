"""Streams as operators see them: ``stream_info``, listing, evicting dead readers."""

from __future__ import annotations

import time

from .._errors import ArrowShmError, ConflictError, NotFoundError
from .._info import ReaderInfo, StreamInfo
from .._names import validate_name
from .._proc import identity, is_alive
from .._shm import layout as L
from .._shm.context import Context
from .._shm.registry import EntryView, kind_conflict
from .._shm.segment import Segment
from ..kernels import ring as K
from .geometry import Geometry, parse, reader_facts, session_facts

__all__ = ["evict_dead_readers", "evict_reader", "list_streams", "stream_info"]

_OPEN_RETRIES = 64


def _info_from(ctx: Context, view: EntryView, geom: Geometry) -> StreamInfo:
    now = time.monotonic_ns()
    facts = session_facts(geom.seg)
    readers = []
    for i in range(geom.max_readers):
        f = reader_facts(geom, i)
        if f["state"] == L.RD_FREE or not f["pid"]:
            continue
        readers.append(ReaderInfo(
            reader_id=i, pid=f["pid"], alive=is_alive(f["pid"], f["start"]),
            state=L.RD_STATE_NAMES.get(f["state"], "?"), cursor=f["read"],
            pinned_bytes=f["pinned_bytes"], lag=max(0, facts.cursor - f["read"]),
            held_batches=f["held"],
            missed=f["missed"], idle_s=max(0.0, (now - f["heartbeat"]) / 1e9),
        ))  # fmt: skip
    alive = is_alive(facts.writer_pid, facts.writer_start)
    state = {L.STREAM_CLOSED: "closed", L.STREAM_ABORTED: "aborted"}.get(
        facts.closed, "open" if alive else "writer dead"
    )
    gated = facts.gated_since
    return StreamInfo(
        name=view.name,
        namespace=ctx.namespace,
        session=facts.session,
        schema=geom.schema(),
        mode=L.STREAM_MODE_NAMES[geom.mode],
        capacity_bytes=geom.arena_bytes,
        slots=geom.n_slots,
        max_readers=geom.max_readers,
        writer_pid=facts.writer_pid,
        writer_alive=alive,
        closed=facts.closed != L.STREAM_OPEN,
        state=state,
        cursor=facts.cursor,
        reclaim=facts.reclaim,
        bytes_written=facts.bytes,
        rows_written=facts.rows,
        writer_waiting_s=max(0.0, (now - gated) / 1e9) if gated else 0.0,
        evicted=facts.evicted,
        readers=readers,
        segment=geom.seg.name,
    )


def _open_view(ctx: Context, view: EntryView, *, writable: bool = False) -> Geometry:
    if not view.segment_id:
        raise NotFoundError(f"stream {view.name!r} is being created", name=view.name)
    return parse(Segment.open(ctx.registry.segment_name(view.segment_id), writable=writable))


def _stream_entry(ctx: Context, name: str) -> EntryView:
    view = ctx.registry.get_entry(name)
    if view.kind != L.KIND_STREAM:
        raise kind_conflict(name, view.kind, L.KIND_STREAM)
    return view


def stream_info(ctx: Context, name: str) -> StreamInfo:
    """Describe stream *name* (see :func:`arrowshm.stream_info`)."""
    validate_name(name)
    reg = ctx.registry
    for _ in range(_OPEN_RETRIES):
        view = _stream_entry(ctx, name)
        try:
            return _info_from(ctx, view, _open_view(ctx, view))
        except NotFoundError:
            reg.forget(name)
            time.sleep(0.001)
    raise NotFoundError(f"stream {name!r} kept changing while it was read", name=name)


def list_streams(ctx: Context) -> list[StreamInfo]:
    """Every stream of the namespace whose segment can be read, sorted by name."""
    out = []
    for view in ctx.registry.entries():
        if view.kind != L.KIND_STREAM:
            continue
        try:
            out.append(_info_from(ctx, view, _open_view(ctx, view)))
        except ArrowShmError:
            continue  # being created, replaced or deleted while listing, or corrupt
    return sorted(out, key=lambda i: i.name)


def evict_reader(ctx: Context, name: str, reader_id: int) -> None:
    """Free reader slot *reader_id* of stream *name* if its process is dead (see
    :meth:`arrowshm.Namespace.evict_reader`)."""
    validate_name(name)
    view = _stream_entry(ctx, name)
    geom = _open_view(ctx, view, writable=True)
    if not (isinstance(reader_id, int) and 0 <= reader_id < geom.max_readers):
        raise NotFoundError(f"stream {name!r} has no reader {reader_id!r}", name=name,
                            reader_id=reader_id)
    f = reader_facts(geom, reader_id)
    if not f["pid"] or f["state"] == L.RD_FREE:
        raise NotFoundError(f"stream {name!r} has no reader {reader_id}", name=name,
                            reader_id=reader_id)
    if is_alive(f["pid"], f["start"]):
        raise ConflictError(
            f"reader {reader_id} of stream {name!r} (pid {f['pid']}) is alive; only dead "
            "readers are evicted (stop the process to free its batches)",
            name=name, reader_id=reader_id, pid=f["pid"],
        )  # fmt: skip
    K.ring_evict(geom.words, geom.seg.w32, geom.geo, reader_id, f["pid"], identity()[0])


def evict_dead_readers(ctx: Context) -> list[str]:
    """Evict every reader whose process died, in every stream of the namespace, so
    that no crashed reader stalls a writer; returns ``stream#slot(pid N)`` of each."""
    evicted = []
    me = identity()[0]
    for view in list(ctx.registry.entries()):
        if view.kind != L.KIND_STREAM:
            continue
        try:
            geom = _open_view(ctx, view, writable=True)
        except ArrowShmError:
            continue  # a stream being created or torn down (or corrupt: not ours to fix)
        for i in range(geom.max_readers):
            f = reader_facts(geom, i)
            if f["state"] == L.RD_FREE or not f["pid"] or is_alive(f["pid"], f["start"]):
                continue
            if K.ring_evict(geom.words, geom.seg.w32, geom.geo, i, f["pid"], me):
                evicted.append(f"{view.name}#{i}(pid {f['pid']})")
    return evicted
