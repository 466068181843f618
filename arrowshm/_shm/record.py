"""The registry record, typed: what writers build and readers see of an entry.

docs/FORMAT.md ("Record") is the byte layout; :class:`Record` encodes it and
:class:`EntryView` reads it. Only :class:`arrowshm._shm.registry.Registry`
writes record words, through the seqlock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .._errors import ConflictError, InvalidArgumentError
from . import layout as L

__all__ = ["EntryView", "Published", "Record", "RegistryStats", "kind_conflict",
           "retain_history"]


@dataclass(frozen=True)
class Record:
    """A registry record as its writers build it (docs/FORMAT.md, "Record").

    The only way record words get written is :meth:`Registry.publish`,
    :meth:`Registry.update` and :meth:`Registry.claim`, which encode one of these.
    """

    version: int = 0
    segment_id: int = 0
    segment_bytes: int = 0
    data_bytes: int = 0
    num_rows: int = 0
    schema_fp: int = 0
    created_ns: int = 0
    updated_ns: int = 0
    ttl_ns: int = 0
    retain: int = 1
    owner_pid: int = 0
    owner_start: int = 0
    flags: int = 0
    history: tuple[int, ...] = field(default=())

    @property
    def n_history(self) -> int:
        return len(self.history)

    def encode(self) -> npt.NDArray[np.uint64]:
        """The record's words."""
        if len(self.history) > L.MAX_RETAIN:
            raise InvalidArgumentError(f"a record keeps at most {L.MAX_RETAIN} versions")
        rec = np.zeros(L.RECORD_WORDS, dtype=np.uint64)
        rec[L.R_VERSION] = self.version
        rec[L.R_SEGMENT_ID] = self.segment_id
        rec[L.R_SEGMENT_BYTES] = self.segment_bytes
        rec[L.R_DATA_BYTES] = self.data_bytes
        rec[L.R_NUM_ROWS] = self.num_rows
        rec[L.R_SCHEMA_FP] = self.schema_fp
        rec[L.R_CREATED_NS] = self.created_ns
        rec[L.R_UPDATED_NS] = self.updated_ns
        rec[L.R_TTL_NS] = self.ttl_ns
        rec[L.R_RETAIN] = self.retain
        rec[L.R_OWNER_PID] = self.owner_pid
        rec[L.R_OWNER_START] = self.owner_start
        rec[L.R_FLAGS] = self.flags
        rec[L.R_N_HISTORY] = len(self.history)
        rec[L.R_HISTORY : L.R_HISTORY + len(self.history)] = self.history
        return rec


def retain_history(history: Sequence[int], retain: int) -> tuple[tuple[int, ...], list[int]]:
    """Split segment ids, newest first, into the *retain* newest kept and the rest,
    which fell out of retention (the one rule, for a put and for a retention change)."""
    return tuple(history[:retain]), list(history[retain:])


@dataclass(frozen=True)
class EntryView:
    """A consistent snapshot of one registry entry: its identity and its record.

    The record's fields are properties that read the snapshot's words (a get
    reads two of forty, so the words are not decoded up front).
    """

    slot: int
    generation: int
    kind: int
    name: str
    words: npt.NDArray[np.uint64] = field(repr=False)

    def _w(self, index: int) -> int:
        return int(self.words[index])

    @property
    def kind_name(self) -> str:
        """``"dataset"`` or ``"stream"``."""
        return L.KIND_NAMES.get(self.kind, "unknown")

    @property
    def version(self) -> int:
        """Dataset version (stream: writer session); 0 until the first publish."""
        return int(self.words[L.R_VERSION])

    @property
    def segment_id(self) -> int:
        return int(self.words[L.R_SEGMENT_ID])

    @property
    def segment_bytes(self) -> int:
        return self._w(L.R_SEGMENT_BYTES)

    @property
    def data_bytes(self) -> int:
        return self._w(L.R_DATA_BYTES)

    @property
    def num_rows(self) -> int:
        return self._w(L.R_NUM_ROWS)

    @property
    def schema_fp(self) -> int:
        return self._w(L.R_SCHEMA_FP)

    @property
    def created_ns(self) -> int:
        return self._w(L.R_CREATED_NS)

    @property
    def updated_ns(self) -> int:
        return self._w(L.R_UPDATED_NS)

    @property
    def ttl_ns(self) -> int:
        return self._w(L.R_TTL_NS)

    @property
    def retain(self) -> int:
        return self._w(L.R_RETAIN)

    @property
    def owner_pid(self) -> int:
        return self._w(L.R_OWNER_PID)

    @property
    def owner_start(self) -> int:
        return self._w(L.R_OWNER_START)

    @property
    def flags(self) -> int:
        return self._w(L.R_FLAGS)

    @property
    def closed(self) -> bool:
        """A stream whose writer closed it."""
        return bool(self._w(L.R_FLAGS) & L.R_FLAG_CLOSED)

    @property
    def n_history(self) -> int:
        return min(self._w(L.R_N_HISTORY), L.MAX_RETAIN)

    def history(self) -> list[int]:
        """Segment ids of the retained versions, newest first."""
        n = min(int(self.words[L.R_N_HISTORY]), L.MAX_RETAIN)
        return [int(x) for x in self.words[L.R_HISTORY : L.R_HISTORY + n]]

    def segments(self) -> set[int]:
        """Every segment id the entry references (current and retained)."""
        ids = set(self.history())
        ids.add(self.segment_id)
        ids.discard(0)
        return ids

    def expired(self, now_ns: int | None = None) -> bool:
        """True when the entry has a TTL and it passed."""
        ttl = self._w(L.R_TTL_NS)
        if not ttl:
            return False
        return (time.time_ns() if now_ns is None else now_ns) > self._w(L.R_UPDATED_NS) + ttl

    def record(self) -> Record:
        """The snapshot's record, decoded (for writers deriving the next one)."""
        return Record(
            version=self.version, segment_id=self.segment_id,
            segment_bytes=self.segment_bytes, data_bytes=self.data_bytes,
            num_rows=self.num_rows, schema_fp=self.schema_fp, created_ns=self.created_ns,
            updated_ns=self.updated_ns, ttl_ns=self.ttl_ns, retain=self.retain,
            owner_pid=self.owner_pid, owner_start=self.owner_start, flags=self.flags,
            history=tuple(self.history()),
        )  # fmt: skip


@dataclass(frozen=True)
class Published:
    """What :meth:`Registry.publish` did: the entry, its previous and its new record."""

    slot: int
    generation: int
    previous: EntryView
    record: Record


@dataclass(frozen=True)
class RegistryStats:
    """The counters a registry keeps (``/metrics``)."""

    puts: int
    deletes: int
    reaped: int
    live_entries: int
    recycled: int
    capacity: int
    bytes_used: int
    quota_bytes: int
    events: int


def kind_conflict(name: str, actual: int, wanted: int) -> ConflictError:
    """The error for *name* being of kind *actual* where *wanted* was expected."""
    a = L.KIND_NAMES.get(actual, "?")
    return ConflictError(
        f"{name!r} is a {a}, not a {L.KIND_NAMES.get(wanted, '?')}: use another name, or "
        "delete it first (`arrowshm rm`)",
        name=name,
        kind=a,
    )


