"""The end of a version's life: retirement, retention and TTL changes, deletion.

A version falls out of retention when a put publishes a newer one or when its
retention is lowered (``PATCH /v1/datasets/{name}``); both go through
:func:`retire`, which keeps the segment for reuse or frees it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._errors import NotFoundError
from .._names import validate_name
from .._shm import pool
from .._shm.context import Context
from .._shm.gc import drop_entry
from .._shm.registry import EntryView, Record, retain_history
from .entries import dataset_entry
from .get import forget_table
from .inputs import check_retain, check_ttl

__all__ = ["UNSET", "delete", "retire", "update"]

UNSET: object = object()


def retire(ctx: Context, segment_ids: list[int]) -> None:
    """Versions that fell out of retention: their segments become spares of the
    namespace (:mod:`arrowshm._shm.pool`), or are freed."""
    for segment_id in segment_ids:
        pool.retire(ctx, segment_id)


def update(ctx: Context, name: str, *, ttl: object = UNSET, retain: int | None = None) -> None:
    """Change the TTL and/or the retention of dataset *name*'s current version.

    The TTL counts from the version's ``updated_at`` (as ``put(ttl=)`` does);
    ``ttl=None`` removes it. Versions that fall out of a lower retention are
    retired. The next put sets both again from its own arguments.

    Raises
    ------
    InvalidNameError
        When *name* is malformed.
    NotFoundError
        When no dataset has that name (or it expired).
    ConflictError
        When *name* is a stream.
    InvalidArgumentError
        When *ttl* is not a positive number of seconds or None, or *retain*
        is outside 1..16.
    """
    validate_name(name)
    ttl_ns = None if ttl is UNSET else check_ttl(ttl)
    if retain is not None:
        retain = check_retain(retain)
    reg = ctx.registry
    view = dataset_entry(reg, name)
    if view.version == 0:
        raise NotFoundError(f"{name!r} has no version yet", name=name)
    retired: list[int] = []

    def change(old: EntryView) -> Record:
        rec = old.record()
        fields: dict[str, Any] = {}
        if ttl_ns is not None:
            fields["ttl_ns"] = ttl_ns
        if retain is not None:
            keep, retired[:] = retain_history(rec.history, retain)
            fields.update(retain=retain, history=keep)
        return dataclasses.replace(rec, **fields)

    if reg.update(view.slot, view.generation, change) is None:
        raise NotFoundError(f"{name!r} was deleted concurrently", name=name)
    retire(ctx, retired)


def delete(ctx: Context, name: str) -> None:
    """Delete dataset (or stream) *name* and free its segments now.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no dataset or stream has that name.
    """
    validate_name(name)
    view = ctx.registry.get_entry(name)
    if drop_entry(ctx, view.slot, view.generation) is None:
        raise NotFoundError(f"{name!r} was deleted concurrently", name=name)
    forget_table(ctx, name)

