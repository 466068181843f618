"""The plain records arrowshm hands back: datasets, refs, streams, readers, gc reports.

Nothing here touches shared memory: the data plane fills these in, and
:mod:`arrowshm._display` (which imports this module, never the reverse) gives
them their one-line and notebook faces (``repr``, ``_repr_html_``).

A :class:`Ref` carries the :class:`arrowshm.Namespace` it belongs to. This
module only knows that object through the small :class:`NamespaceLike`
protocol; :mod:`arrowshm._namespace` registers how a namespace is opened by
name (:func:`use_namespaces`), for refs built from a plain string or
unpickled in another process.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._units import human_bytes

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DatasetInfo",
    "GcReport",
    "NamespaceLike",
    "ReaderInfo",
    "Ref",
    "StreamInfo",
    "Usage",
    "VersionReader",
    "use_namespaces",
]


class NamespaceLike(Protocol):
    """What a :class:`Ref` needs of the namespace it belongs to."""

    @property
    def name(self) -> str: ...

    def get(self, name: str, *, version: int | None = None,
            validate: bool = False) -> pa.Table: ...

    def info(self, name: str, *, version: int | None = None) -> DatasetInfo: ...


_open_namespace: Callable[[str], NamespaceLike] | None = None


def use_namespaces(opener: Callable[[str], NamespaceLike]) -> None:
    """Register how a namespace is opened from its name (``arrowshm.Namespace``)."""
    global _open_namespace
    _open_namespace = opener


def _namespace(name: str) -> NamespaceLike:
    if _open_namespace is None:  # pragma: no cover - arrowshm/__init__ registers it
        raise RuntimeError("import arrowshm before using a Ref")
    return _open_namespace(name)


@dataclass(frozen=True)
class Ref:
    """A picklable handle to one version of a dataset (a few dozen bytes pickled).

    Pass it to ``multiprocessing`` or ``concurrent.futures`` workers instead of
    a table; ``ref.get()`` maps the version zero-copy in the worker. A ref
    carries its namespace: it reads there whatever namespace the worker's
    environment names.

    Attributes
    ----------
    name : str
    version : int
    namespace : str
        The namespace's name.
    """

    name: str
    version: int
    namespace: str = "default"

    @property
    def ns(self) -> NamespaceLike:
        """The :class:`arrowshm.Namespace` this ref reads from."""
        ns: NamespaceLike | None = self.__dict__.get("_ns")
        if ns is None:
            ns = _namespace(self.namespace)
            object.__setattr__(self, "_ns", ns)
        return ns

    def get(self, *, validate: bool = False) -> pa.Table:
        """The table of this version (see :func:`arrowshm.get`).

        Raises
        ------
        NotFoundError
            When the dataset or this version no longer exists.
        """
        return self.ns.get(self.name, version=self.version, validate=validate)

    def info(self) -> DatasetInfo:
        """:class:`DatasetInfo` of this version.

        Raises
        ------
        NotFoundError
            When the dataset or this version no longer exists.
        """
        return self.ns.info(self.name, version=self.version)

    def __getstate__(self) -> dict[str, Any]:
        # pickle the namespace by name only (a Namespace pickles by name anyway)
        return {"name": self.name, "version": self.version, "namespace": self.namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


def bind_ref(ref: Ref, ns: NamespaceLike) -> Ref:
    """*ref*, carrying the namespace object *ns* it was made by."""
    object.__setattr__(ref, "_ns", ns)
    return ref


@dataclass(frozen=True)
class VersionReader:
    """A process that holds a table of one version of a dataset (a *pin* on it).

    Every table ``get`` hands out pins its version's segment until Python frees
    the table's last buffer; a pinned segment is never recycled for another
    version. Pins are what count across processes, so they are what is listed:
    a mapping without a pin (a process's idle mapping kept for its next
    ``get``, at most ``ARROWSHM_MAP_CACHE_S`` seconds) holds nothing back.

    Attributes
    ----------
    version : int
        The dataset version it holds.
    pid : int
        Its process id (of this PID namespace: a registry refuses processes of
        another).
    command : str or None
        Its command name (``/proc/<pid>/comm``), None when it cannot be read
        (the process is gone, or ``/proc`` hides it).
    since : datetime.datetime or None
        When it took the pin (UTC); None while the pin is being taken.
    alive : bool
        Whether the process still exists (pid and start time). A dead
        process's pins keep the version from being recycled until ``gc()``
        (or the next writer that wants the segment) releases them.
    """

    version: int
    pid: int
    command: str | None
    since: _dt.datetime | None
    alive: bool


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows of one dataset version.

    Attributes
    ----------
    name : str
    version : int
        1 for the first put of the name, +1 for each put.
    num_rows : int
    nbytes : int
        Bytes of the Arrow IPC payload of this version.
    schema : pyarrow.Schema
    created_at, updated_at : datetime.datetime
        When the name was first put, and when this version was published (UTC).
    ttl : float or None
        Seconds after ``updated_at`` at which the dataset expires.
    retain : int
        How many versions are kept.
    versions : tuple of int
        The retained versions, newest first.
    owner_pid : int
        Process that published this version.
    namespace : str
    segment : str
        The POSIX shared-memory name of this version (``/ash-…``), or its file's
        absolute path when the namespace lives outside /dev/shm (``ARROWSHM_DIR``).
    readers : tuple of VersionReader, or None
        The processes holding a table of any retained version (the pins of
        each retained version's segment, newest version first). Filled by
        :func:`arrowshm.info`; None where it was not looked up (what ``put``,
        ``wait`` and ``list_datasets`` return).
    readers_overflow : tuple of int
        Retained versions read by more processes than their pin table lists
        (64): ``readers`` names only the first 64 of those.
    """

    name: str
    version: int
    num_rows: int
    nbytes: int
    schema: pa.Schema = field(repr=False)
    created_at: _dt.datetime
    updated_at: _dt.datetime
    ttl: float | None = None
    retain: int = 1
    versions: tuple[int, ...] = ()
    owner_pid: int = 0
    namespace: str = "default"
    segment: str = ""
    readers: tuple[VersionReader, ...] | None = field(default=None, repr=False)
    readers_overflow: tuple[int, ...] = field(default=(), repr=False)

    def readers_of(self, version: int) -> tuple[VersionReader, ...]:
        """The :attr:`readers` of *version* (empty when none, or not looked up)."""
        return tuple(r for r in self.readers or () if r.version == version)

    @property
    def ref(self) -> Ref:
        """A picklable handle to exactly this version."""
        return Ref(self.name, self.version, self.namespace)

    @property
    def expires_at(self) -> _dt.datetime | None:
        """When the dataset expires (``updated_at + ttl``), or None without a TTL."""
        if self.ttl is None:
            return None
        return self.updated_at + _dt.timedelta(seconds=self.ttl)


@dataclass(frozen=True, repr=False)
class ReaderInfo:
    """One attached reader of a stream, as seen from shared memory.

    Attributes
    ----------
    reader_id : int
        Its slot in the stream.
    pid : int
    alive : bool
        Whether its process still exists (pid and start time).
    state : str
        ``active`` or ``draining`` (closed, still holding batches).
    cursor : int
        Sequence of the next batch it will read.
    pinned_bytes : int
        Arena bytes its held batches pin (the writer writes around them).
    lag : int
        Published batches it has not read yet.
    held_batches : int
        Batches it returned that its process has not freed.
    missed : int
        Batches it lost to overwrite mode.
    idle_s : float
        Seconds since it last read.
    """

    reader_id: int
    pid: int
    alive: bool
    state: str
    cursor: int
    pinned_bytes: int
    lag: int
    held_batches: int
    missed: int
    idle_s: float

    @property
    def held(self) -> int:
        """Same as :attr:`held_batches`."""
        return self.held_batches


@dataclass(frozen=True, repr=False)
class StreamInfo:
    """What a stream's segment says about it (``arrowshm info NAME``).

    Attributes
    ----------
    name, namespace : str
    session : int
        Writer sessions so far (a reopen after close starts a new one).
    schema : pyarrow.Schema
    mode : str
        ``block`` or ``overwrite``.
    capacity_bytes : int
        Bytes of the data arena.
    slots : int
        Most batches the ring holds.
    max_readers : int
    writer_pid : int
    writer_alive : bool
    closed : bool
        The writer closed the session (or it was aborted).
    state : str
        ``open``, ``closed``, ``aborted`` or ``writer dead``.
    cursor : int
        Batches published in this session.
    reclaim : int
        Oldest batch that may still be in the ring.
    bytes_written, rows_written : int
    writer_waiting_s : float
        How long the writer has been blocked for space (0: not blocked).
    evicted : int
        Dead readers evicted so far.
    readers : list of ReaderInfo
    segment : str
    """

    name: str
    namespace: str
    session: int
    schema: pa.Schema = field(repr=False)
    mode: str = "block"
    capacity_bytes: int = 0
    slots: int = 0
    max_readers: int = 0
    writer_pid: int = 0
    writer_alive: bool = False
    closed: bool = False
    state: str = "open"
    cursor: int = 0
    reclaim: int = 0
    bytes_written: int = 0
    rows_written: int = 0
    writer_waiting_s: float = 0.0
    evicted: int = 0
    readers: list[ReaderInfo] = field(default_factory=list)
    segment: str = ""

    def describe(self) -> str:
        """Multi-line text for ``arrowshm info``."""
        lines = [
            f"name:      {self.name}",
            f"namespace: {self.namespace}",
            "kind:      stream",
            f"session:   {self.session}",
            f"mode:      {self.mode}",
            f"capacity:  {human_bytes(self.capacity_bytes)} ({self.capacity_bytes:,} bytes), "
            f"{self.slots:,} slots, up to {self.max_readers} readers",
            f"writer:    pid {self.writer_pid} ({self.state})"
            + (f", blocked for {self.writer_waiting_s:.1f} s" if self.writer_waiting_s else ""),
            f"cursor:    {self.cursor:,} batches published, oldest in ring {self.reclaim:,}",
            f"written:   {self.rows_written:,} rows, {human_bytes(self.bytes_written)}",
            f"evicted:   {self.evicted} dead reader(s)",
            f"segment:   {self.segment}",
            "schema:",
        ]
        lines += ["  " + line for line in str(self.schema).splitlines()]
        if not self.readers:
            lines.append("readers:   none")
        else:
            lines.append(f"readers:   {len(self.readers)}")
            lines.append("  ID  PID       STATE     CURSOR      LAG  HELD  MISSED  IDLE")
            for r in self.readers:
                state = r.state if r.alive else "dead"
                lines.append(
                    f"  {r.reader_id:<3} {r.pid:<9} {state:<9} {r.cursor:>8,} {r.lag:>8,} "
                    f"{r.held_batches:>5} {r.missed:>7,}  {r.idle_s:.1f}s"
                )
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for ``arrowshm ls``: state, readers, max lag, held batches."""
        n = len(self.readers)
        lag = max((r.lag for r in self.readers), default=0)
        held = sum(r.held_batches for r in self.readers)
        text = f"{self.state}, {n} reader{'s' if n != 1 else ''}"
        if n:
            text += f", lag max {lag:,}, {held} held"
        missed = sum(r.missed for r in self.readers)
        if missed:
            text += f", {missed:,} missed"
        return text


@dataclass(frozen=True)
class Usage:
    """What a namespace holds in shared memory (``Namespace.usage()``).

    Attributes
    ----------
    namespace : str
    bytes_used : int
        Bytes of every segment of the namespace: what its quota counts.
    live_bytes : int
        Of those, the bytes of live datasets and streams (and puts in progress).
    spare_bytes, spares : int
        Of those, the bytes and count of spares: retired segments kept, pages
        faulted in, for the next put of any name; reclaimable at any time
        (``gc(spares=True)``) and given back first when a put needs room.
    quota : int or None
        The namespace's byte quota.
    reserve : int
        Bytes of spares the namespace's reserving processes keep ready
        (``reserve()``, ``arrowshm serve --reserve``; every process sees them).
    shm_total, shm_free : int
        Size and free bytes of the filesystem holding the segments.
    recycled : int
        Puts of the namespace that reused a spare instead of fresh pages (since
        the registry was created).
    directory : str
        The directory holding the namespace's registry and segments
        (``ARROWSHM_DIR``; ``/dev/shm`` by default).
    """

    namespace: str
    bytes_used: int
    live_bytes: int
    spare_bytes: int
    spares: int
    quota: int | None
    reserve: int
    shm_total: int
    shm_free: int
    recycled: int
    directory: str = "/dev/shm"


@dataclass
class GcReport:
    """What a garbage collection reclaimed.

    Attributes
    ----------
    segments : list of str
        Shared-memory objects removed.
    bytes_freed : int
    expired : list of str
        Datasets deleted because their TTL passed.
    recovered : list of str
        Entries whose dead writer left a lock or a half-done publish behind.
    kept : int
        Unreferenced segments kept because a live process is still writing them.
    pooled : int
        Always 0 (there is no per-process pool any more: see *spares_freed*).
    spares_freed : int
        Spares freed (idle too long, beyond the bound, or all with ``spares=True``).
    spares, spare_bytes : int
        Spares kept (reusable by the next put of any name), and their bytes.
    quota_recovered : int
        Quota bytes given back that killed creators had reserved for segments
        they never named.
    readers_evicted : list of str
        Stream readers whose process died, evicted (``stream#reader(pid N)``).
    pins_released : list of str
        Pins of dead processes on dataset versions, released
        (``name@version(pid N)``): they kept the version's segment from being
        recycled.
    skipped : list of str
        Objects with the namespace's prefix that are not regular files of this
        user (links, other users' files): never touched, reported for an operator.
    """

    segments: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    expired: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    kept: int = 0
    pooled: int = 0
    quota_recovered: int = 0
    readers_evicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    spares_freed: int = 0
    spares: int = 0
    spare_bytes: int = 0
    pins_released: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Objects reclaimed in all."""
        return (len(self.segments) + len(self.expired) + len(self.recovered) + self.pooled
                + len(self.readers_evicted) + self.spares_freed)
