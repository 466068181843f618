"""A dataset's registry entry as readers use it: the live entry of a name, which
segment holds a wanted version, and the :class:`~arrowshm.DatasetInfo` of it."""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

import pyarrow as pa

from .._errors import InvalidArgumentError, NotFoundError
from .._info import DatasetInfo
from .._shm import layout as L
from .._shm.registry import EntryView, Registry, kind_conflict

__all__ = ["Recycled", "RecordFields", "dataset_entry", "make_info", "resolve"]


class Recycled(Exception):
    """The segment no longer holds the version the registry pointed at (retired and
    rewritten, or being reclaimed): read the registry again."""


class RecordFields(Protocol):
    """The record fields a :class:`DatasetInfo` is made of (a registry
    :class:`~arrowshm._shm.registry.Record` or :class:`EntryView`)."""

    @property
    def version(self) -> int: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def data_bytes(self) -> int: ...
    @property
    def created_ns(self) -> int: ...
    @property
    def updated_ns(self) -> int: ...
    @property
    def ttl_ns(self) -> int: ...
    @property
    def retain(self) -> int: ...
    @property
    def owner_pid(self) -> int: ...
    @property
    def n_history(self) -> int: ...


def dataset_entry(reg: Registry, name: str) -> EntryView:
    """The live, unexpired dataset entry *name*.

    Raises
    ------
    NotFoundError
        When no entry has that name, or its TTL passed.
    ConflictError
        When *name* is a stream.
    """
    view = reg.get_entry(name)
    if view.kind != L.KIND_DATASET:
        raise kind_conflict(name, view.kind, L.KIND_DATASET)
    if view.expired():
        raise NotFoundError(f"{name!r} expired (its ttl passed) and is being removed", name=name)
    return view


def resolve(view: EntryView, version: int | None, namespace: str) -> tuple[int, int]:
    """(version, segment id) of the wanted version of a dataset entry (the latest
    when *version* is None).

    Raises
    ------
    NotFoundError
        When the entry has no version yet, or *version* is not retained.
    InvalidArgumentError
        When *version* is not a positive int.
    """
    current = view.version
    if current == 0:
        raise NotFoundError(f"{view.name!r} has no version yet", name=view.name)
    if version is None:
        return current, view.segment_id
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgumentError(f"version must be a positive int, not {version!r}",
                                   version=version)
    hist = view.history()
    k = current - version
    if 0 <= k < len(hist):
        return version, hist[k]
    lo = current - len(hist) + 1
    raise NotFoundError(
        f"{view.name!r} version {version} does not exist in namespace {namespace!r}: "
        f"versions {lo}..{current} are retained (put with a larger retain= to keep more)",
        name=view.name,
        version=version,
        retained=tuple(range(current, lo - 1, -1)),
    )


def _ns_to_dt(ns: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)


def make_info(namespace: str, name: str, rec: RecordFields, schema: pa.Schema, version: int,
              segment: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of *version* of *name* from its entry's record (rows
    and bytes are the current version's; -1 for an older one, whose sizes are in
    its own segment)."""
    current = rec.version
    ttl = rec.ttl_ns
    return DatasetInfo(
        name=name,
        version=version,
        num_rows=rec.num_rows if version == current else -1,
        nbytes=rec.data_bytes if version == current else -1,
        schema=schema,
        created_at=_ns_to_dt(rec.created_ns),
        updated_at=_ns_to_dt(rec.updated_ns),
        ttl=ttl / 1e9 if ttl else None,
        retain=rec.retain,
        versions=tuple(range(current, current - rec.n_history, -1)),
        owner_pid=rec.owner_pid,
        namespace=namespace,
        segment=segment,
    )
