"""Namespaces as objects: every verb of arrowshm, bound to one namespace.

``arrowshm.Namespace("team")`` is to arrowshm what an ``httpx.Client`` is to
httpx: the same verbs as the module functions, bound to one namespace, safe to
share between threads, usable as a context manager, and independent of the
environment. The module functions (:mod:`arrowshm._api`) act on the namespace
``ARROWSHM_NAMESPACE`` names at each call; nothing in arrowshm ever writes
that variable.

Every ``Namespace`` of one name shares this process's state of it (registry
mapping, own mappings, cached tables: :class:`arrowshm._shm.context.Context`),
looked up at each call, so making one is cheap and a forked child never uses
its parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import pyarrow as pa

from . import _info
from ._datasets import build as _build
from ._datasets import get as _get
from ._datasets import lifecycle as _lifecycle
from ._datasets import put as _put
from ._datasets.entries import dataset_entry, resolve
from ._display import DatasetList
from ._errors import InvalidArgumentError
from ._info import DatasetInfo, GcReport, Ref, StreamInfo, Usage, bind_ref
from ._names import current_namespace, validate_name, validate_namespace
from ._shm import gc as _gc
from ._shm import pool as _pool
from ._shm.context import Context, context
from ._shm.segment import shm_dir_bytes, shm_free_bytes
from ._streams import inspect as _inspect
from ._streams.reader import StreamReader
from ._streams.writer import StreamWriter

__all__ = ["Namespace", "default_namespace"]


class Namespace:
    """One namespace of datasets and streams, with every verb of arrowshm.

    ``Namespace("team").put(...)`` is ``arrowshm.put(...)`` with
    ``ARROWSHM_NAMESPACE=team``, without touching the environment: threads may
    work in different namespaces at once. Objects of the same name share this
    process's state of the namespace, and pickle by name.

    Parameters
    ----------
    name : str, optional
        1-12 characters of ``a-z0-9``; by default the one ``ARROWSHM_NAMESPACE``
        names now (``default`` when unset).

    Raises
    ------
    InvalidNameError
        When *name* is not a valid namespace name.

    Examples
    --------
    >>> with arrowshm.Namespace("team") as ns:                 # doctest: +SKIP
    ...     ns.put("prices", table)
    ...     ns.get("prices").num_rows
    """

    __slots__ = ("_closed", "_name")

    def __init__(self, name: str | None = None) -> None:
        self._name = validate_namespace(current_namespace() if name is None else name)
        self._closed = False

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self._name

    def _use(self) -> Context:
        # looked up at every call, not kept: a forked child gets its own context
        if self._closed:
            raise InvalidArgumentError(
                f"Namespace({self._name!r}) is closed; make a new one", namespace=self._name)
        return context(self._name)

    def _existing(self) -> Context | None:
        """The context of the namespace if it has been made (:meth:`Context.exists`),
        else None: listing a namespace nobody has used yet creates nothing
        (``arrowshm ls`` in the wrong namespace leaves no registry behind)."""
        ctx = self._use()
        return ctx if ctx.exists() else None

    # -- datasets ---------------------------------------------------------------------

    def put(self, name: str, data: Any, *, retain: int = 1,
            ttl: float | None = None) -> DatasetInfo:
        """Publish *data* as the next version of dataset *name* (see :func:`arrowshm.put`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.put`.
        """
        return _put.put(self._use(), name, data, retain=retain, ttl=ttl)

    def get(self, name: str, *, version: int | None = None,
            validate: bool = False) -> pa.Table:
        """The latest (or a retained) version of dataset *name*, zero-copy (see
        :func:`arrowshm.get`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.get`.
        """
        return _get.get(self._use(), name, version=version, validate=validate)

    def info(self, name: str, *, version: int | None = None) -> DatasetInfo:
        """Describe the latest (or a retained) version of dataset *name* (see
        :func:`arrowshm.info`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.info`.
        """
        return _get.info(self._use(), name, version)

    def list_datasets(self) -> DatasetList:
        """Every dataset of the namespace, sorted by name (see
        :func:`arrowshm.list_datasets`).

        Raises
        ------
        ArrowShmError
            When the registry cannot be read.
        """
        ctx = self._existing()
        return DatasetList([] if ctx is None else _get.list_datasets(ctx), usage=self.usage())

    def delete(self, name: str) -> None:
        """Delete dataset or stream *name* and free its segments now (see
        :func:`arrowshm.delete`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.delete`.
        """
        _lifecycle.delete(self._use(), name)

    def wait(self, name: str, *, after_version: int = 0,
             timeout: float | None = None) -> DatasetInfo:
        """Block until dataset *name* has a version newer than *after_version* (see
        :func:`arrowshm.wait`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.wait`.
        """
        return _get.wait(self._use(), name, after_version=after_version, timeout=timeout)

    def ref(self, name: str, *, version: int | None = None) -> Ref:
        """A picklable handle to a version of dataset *name*, carrying this namespace
        (see :func:`arrowshm.ref`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.ref`.
        """
        validate_name(name)
        ctx = self._use()
        want, _ = resolve(dataset_entry(ctx.registry, name), version, self._name)
        return bind_ref(Ref(name, want, self._name), self)

    def build(self, name: str, schema: pa.Schema, num_rows: int, *,
              string_bytes: int | Mapping[str, int] | None = None, retain: int = 1,
              ttl: float | None = None) -> _build.TableBuilder:
        """Allocate the next version of dataset *name* to fill in place (see
        :func:`arrowshm.build`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.build`.
        """
        return _build.build(self._use(), name, schema, num_rows, string_bytes=string_bytes,
                            retain=retain, ttl=ttl)

    def update(self, name: str, *, ttl: Any = _lifecycle.UNSET,
               retain: int | None = None) -> DatasetInfo:
        """Change the TTL and/or the retention of dataset *name*'s current version.

        The TTL counts from the version's ``updated_at``; ``ttl=None`` removes it.
        Versions that fall out of a lower *retain* are freed (or kept for reuse)
        as a put would. The next put sets both again from its own arguments.

        Returns
        -------
        DatasetInfo
            The current version, as changed.

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
        _lifecycle.update(self._use(), name, ttl=ttl, retain=retain)
        return self.info(name)

    def kind(self, name: str) -> str:
        """What *name* is in this namespace: ``"dataset"`` or ``"stream"``.

        Raises
        ------
        InvalidNameError
            When *name* is not a valid name.
        NotFoundError
            When nothing has that name.
        """
        validate_name(name)
        return self._use().registry.get_entry(name).kind_name

    # -- streams ----------------------------------------------------------------------

    def StreamWriter(self, name: str, schema: pa.Schema, **options: Any) -> StreamWriter:
        """The writer of stream *name* in this namespace (see :class:`arrowshm.StreamWriter`).

        Raises
        ------
        ArrowShmError
            As :class:`arrowshm.StreamWriter`.
        """
        self._use()
        return StreamWriter(name, schema, namespace=self, **options)

    def StreamReader(self, name: str, **options: Any) -> StreamReader:
        """A reader of stream *name* in this namespace (see :class:`arrowshm.StreamReader`).

        Raises
        ------
        ArrowShmError
            As :class:`arrowshm.StreamReader`.
        """
        self._use()
        return StreamReader(name, namespace=self, **options)

    def stream_info(self, name: str) -> StreamInfo:
        """Describe stream *name* (see :func:`arrowshm.stream_info`).

        Raises
        ------
        ArrowShmError
            As :func:`arrowshm.stream_info`.
        """
        return _inspect.stream_info(self._use(), name)

    def list_streams(self) -> list[StreamInfo]:
        """Every stream of the namespace, sorted by name (see
        :func:`arrowshm.list_streams`).

        Raises
        ------
        ArrowShmError
            When the registry cannot be read.
        """
        ctx = self._existing()
        return [] if ctx is None else _inspect.list_streams(ctx)

    def evict_reader(self, name: str, reader_id: int) -> None:
        """Free reader slot *reader_id* of stream *name* if its process is dead.

        A live reader is never evicted: the batches it holds would be
        overwritten under it. ``gc()`` evicts every dead reader.

        Raises
        ------
        NotFoundError
            When the stream or an attached reader *reader_id* does not exist.
        ConflictError
            When *name* is a dataset, or the reader's process is alive.
        """
        _inspect.evict_reader(self._use(), name, reader_id)

    # -- the namespace ------------------------------------------------------------------

    def gc(self, *, spares: bool = False) -> GcReport:
        """Reclaim every object of the namespace that nothing live needs (see
        :func:`arrowshm.gc`); with *spares*, free every spare too.

        Raises
        ------
        ArrowShmError
            When the registry cannot be read.
        """
        ctx = self._use()
        report = _gc.collect(ctx, spares=spares)
        report.readers_evicted.extend(_inspect.evict_dead_readers(ctx))
        return report

    def reserve(self, nbytes: int, *, wait: float | None = None) -> None:
        """Keep *nbytes* of pre-faulted spare memory ready for new puts (0 stops).

        A thread of this process creates spares of halving sizes (from *nbytes* / 2
        down to 1 MiB) and refills them as puts claim them, so the first put of a
        new name lands in memory whose pages are already faulted in — in any
        process of the namespace. The reserve counts against the quota and lasts
        while this process lives (``arrowshm serve --reserve SIZE`` keeps one for
        a whole host).

        Parameters
        ----------
        nbytes : int
            Bytes to keep ready; 0 stops the reserve (its spares are then trimmed
            like any others).
        wait : float, optional
            Block up to this many seconds until the reserve is filled.

        Raises
        ------
        InvalidArgumentError
            When *nbytes* is not a non-negative int, or *wait* is negative.
        ConflictError
            When two other live processes already keep a reserve in the namespace
            (the registry records at most two; nothing changes).
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise InvalidArgumentError(f"nbytes must be an int >= 0, not {nbytes!r}",
                                       nbytes=nbytes)
        if wait is not None and not 0 <= wait < float("inf"):
            raise InvalidArgumentError(f"wait must be >= 0 seconds, not {wait!r}", wait=wait)
        _pool.set_reserve(self._use(), nbytes, wait=wait)

    def usage(self) -> Usage:
        """What the namespace holds: live bytes, spares, quota, and the space of its
        directory (/dev/shm, or ``ARROWSHM_DIR``).

        Raises
        ------
        ArrowShmError
            When the registry cannot be read.
        """
        ctx = self._use()
        if not ctx.exists():  # nothing made yet (and nothing made by asking)
            return Usage(namespace=self._name, bytes_used=0, live_bytes=0, spare_bytes=0,
                         spares=0, quota=None, reserve=0,
                         shm_total=shm_dir_bytes(ctx.directory),
                         shm_free=shm_free_bytes(ctx.directory), recycled=0,
                         directory=ctx.directory)
        reg = ctx.registry
        spares = _pool.usage(ctx)
        used = reg.bytes_used
        return Usage(namespace=self._name, bytes_used=used,
                     live_bytes=max(0, used - spares.nbytes), spare_bytes=spares.nbytes,
                     spares=spares.segments, quota=reg.quota,
                     reserve=_pool.reserve_target(ctx),
                     shm_total=shm_dir_bytes(ctx.directory),
                     shm_free=shm_free_bytes(ctx.directory), recycled=reg.stats().recycled,
                     directory=ctx.directory)

    @property
    def quota(self) -> int | None:
        """The namespace's byte quota (None: none), enforced on every put and stream."""
        return self._use().registry.quota

    def set_quota(self, max_bytes: int | None) -> None:
        """Set (or with None remove) the namespace's byte quota.

        Lowering it below the bytes in use deletes nothing; later puts fail
        with ``QuotaExceededError`` until enough is freed.

        Raises
        ------
        InvalidArgumentError
            When *max_bytes* is not None or a positive 63-bit integer.
        """
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
            or not 1 <= max_bytes < 1 << 63
        ):
            raise InvalidArgumentError(
                f"max_bytes must be a positive 63-bit integer or None, not {max_bytes!r}",
                max_bytes=max_bytes)
        self._use().registry.set_quota(max_bytes)

    @property
    def bytes_used(self) -> int:
        """Bytes of every segment of the namespace (what the quota counts)."""
        return self._use().registry.bytes_used

    # -- the object ---------------------------------------------------------------------

    def close(self) -> None:
        """End this object's use (later calls raise ``InvalidArgumentError``).

        Tables, readers and writers it made stay valid, and so do other
        ``Namespace`` objects of the same name. Idempotent.
        """
        self._closed = True

    def __enter__(self) -> Namespace:
        self._use()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Namespace, (self._name,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and other._name == self._name

    def __hash__(self) -> int:
        return hash(("arrowshm.Namespace", self._name))

    def __repr__(self) -> str:
        return f"Namespace({self._name!r})" + (" (closed)" if self._closed else "")


_defaults: dict[str, Namespace] = {}
_defaults_lock = threading.Lock()

# The module functions read ARROWSHM_NAMESPACE at every call, and os.environ.get costs
# ~0.8 µs (a Mapping method, key encoding, value decoding): more than the rest of a
# repeated get. CPython's os.environ keeps the raw values in a dict (every write to
# os.environ updates it) whose lookup costs ~30 ns; the namespace is looked up again
# only when that raw value differs from the last one seen.
try:
    _ENV_DATA: dict[Any, Any] | None = os.environ._data  # type: ignore[attr-defined]
    _ENV_KEY = os.environ.encodekey("ARROWSHM_NAMESPACE")
    _ENV_DECODE = os.environ.decodevalue
except AttributeError:  # (another Python)
    _ENV_DATA = None
_last_default: tuple[Any, Namespace] | None = None  # (raw value, its namespace)


def default_namespace() -> Namespace:
    """The namespace ``ARROWSHM_NAMESPACE`` names now (``default`` when unset), as
    the module functions use it.

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is not 1-12 characters of ``a-z0-9``.
    """
    global _last_default
    data = _ENV_DATA
    if data is None:
        return _default_for(current_namespace())
    raw = data.get(_ENV_KEY)
    last = _last_default
    if last is not None and last[0] == raw:
        return last[1]
    # (decoded from this very raw value, so that the pair stays consistent however
    # other threads change the variable meanwhile)
    ns = _default_for(validate_namespace("default" if raw is None else _ENV_DECODE(raw)))
    _last_default = (raw, ns)
    return ns


def _default_for(name: str) -> Namespace:
    ns = _defaults.get(name)
    if ns is None:
        with _defaults_lock:
            ns = _defaults.get(name)
            if ns is None:
                ns = _defaults[name] = Namespace(name)
    return ns


def _open(name: str) -> Namespace:
    ns = _defaults.get(name)
    return ns if ns is not None else Namespace(name)


_info.use_namespaces(_open)
