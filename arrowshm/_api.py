"""The module-level API: every verb, on the namespace in force at each call.

Each function here is :class:`arrowshm.Namespace`'s method of the same name,
applied to the namespace ``ARROWSHM_NAMESPACE`` names when it is called
(``default`` when unset). Use a ``Namespace`` object to work in another
namespace without touching the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ._datasets.build import TableBuilder
from ._display import DatasetList
from ._info import DatasetInfo, GcReport, Ref, StreamInfo, Usage
from ._namespace import Namespace, default_namespace

__all__ = [
    "build",
    "delete",
    "gc",
    "get",
    "info",
    "list_datasets",
    "list_streams",
    "put",
    "ref",
    "reserve",
    "stream_info",
    "usage",
    "wait",
]


def put(name: str, data: Any, *, retain: int = 1, ttl: float | None = None) -> DatasetInfo:
    """Publish *data* as the next version of dataset *name*.

    The table is written once, straight into a new shared-memory segment, then
    published atomically: readers see the previous version or this one, never
    a mix. Versions beyond *retain* are freed.

    Parameters
    ----------
    name : str
        1-200 characters of letters, digits and ``. _ - / :``.
    data : pyarrow.Table, RecordBatch, pandas/polars DataFrame, or ``__arrow_c_stream__``
    retain : int, default 1
        How many versions (this one included) stay readable by ``get(version=)``;
        at most 16.
    ttl : float or timedelta, optional
        Seconds after this put at which the dataset expires (``arrowshm gc`` or
        the service then deletes it).

    Returns
    -------
    DatasetInfo
        The version just published.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    InvalidArgumentError
        When *data*, *retain* or *ttl* cannot be used.
    ShmFullError
        When /dev/shm has no room for the table (nothing is created).
    QuotaExceededError
        When the namespace's quota would be exceeded (nothing is created).
    RegistryFullError
        When the namespace's registry has no free entry for a new name.
    ConflictError
        When *name* is a stream.
    """
    return default_namespace().put(name, data, retain=retain, ttl=ttl)


def get(name: str, *, version: int | None = None, validate: bool = False) -> pa.Table:
    """The latest (or a retained older) version of dataset *name*, zero-copy.

    Every buffer of the returned table points into shared memory, mapped
    read-only. The table stays valid however long it is held, even after newer
    versions or ``delete``. A repeated ``get`` of an unchanged version returns
    the table this process already mapped.

    Parameters
    ----------
    name : str
    version : int, optional
        A retained version; the latest by default.
    validate : bool, default False
        Run full Arrow validation before returning (for data from a writer
        you do not trust to produce valid Arrow). Only this user's segments
        are ever read: another user's are refused (``AccessDeniedError``).

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When the dataset or version does not exist (or has expired).
    ConflictError
        When *name* is a stream.
    CorruptSegmentError
        When the segment's bytes are not a valid table.
    AccessDeniedError
        When the namespace's registry or the segment belongs to another user,
        or the registry was made in another PID namespace (container).
    """
    return default_namespace().get(name, version=version, validate=validate)


def info(name: str, *, version: int | None = None) -> DatasetInfo:
    """Describe the latest (or a retained) version of dataset *name* without mapping its data.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no dataset has that name.
    ConflictError
        When *name* is a stream.
    """
    return default_namespace().info(name, version=version)


def list_datasets() -> DatasetList:
    """Every dataset of the current namespace, sorted by name.

    The list is a :class:`arrowshm.DatasetList`, a ``list`` that prints as a
    table (and as HTML in Jupyter).

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is invalid.
    """
    return default_namespace().list_datasets()


def delete(name: str) -> None:
    """Delete dataset (or stream) *name* and free its segments now.

    A dataset's segments become *spares* of the namespace: kept, pages faulted
    in, for the next put of any name by any process, within
    ``ARROWSHM_SPARE_BYTES`` (default an eighth of the namespace's directory's
    filesystem, /dev/shm or ``ARROWSHM_DIR``, at most 1 GiB),
    and freed after ``ARROWSHM_SPARE_IDLE_S`` (30 s) unused, by ``gc``
    (``gc(spares=True)`` frees them all at once), or first when a put needs
    the room. Segments beyond the bound, and a stream's, are freed at once.
    Tables that processes already hold stay valid until they drop them.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no dataset or stream has that name.
    """
    default_namespace().delete(name)


def wait(name: str, *, after_version: int = 0, timeout: float | None = None) -> DatasetInfo:
    """Block until dataset *name* has a version newer than *after_version*.

    Spins for a few microseconds, then sleeps on a futex that every publish of
    the name wakes. If the name does not exist yet, waits for its first put.

    Parameters
    ----------
    name : str
    after_version : int, default 0
        Return as soon as the version is greater than this.
    timeout : float, optional
        Seconds to wait; forever by default.

    Returns
    -------
    DatasetInfo
        The newer version.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    WaitTimeoutError
        When no newer version appears within *timeout*.
    """
    return default_namespace().wait(name, after_version=after_version, timeout=timeout)


def ref(name: str, *, version: int | None = None) -> Ref:
    """A picklable handle to a version of dataset *name* (the latest by default,
    resolved now, so every worker that receives it reads the same table).

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When the dataset or version does not exist.
    """
    return default_namespace().ref(name, version=version)


def build(
    name: str,
    schema: pa.Schema,
    num_rows: int,
    *,
    string_bytes: int | Mapping[str, int] | None = None,
    retain: int = 1,
    ttl: float | None = None,
) -> TableBuilder:
    """Allocate the next version of dataset *name* in shared memory, to fill in place.

    Leaving the ``with`` block seals the builder: the version is published
    atomically, with no copy (see the example below).

    Parameters
    ----------
    name : str
    schema : pyarrow.Schema
        Fixed-width (numeric, temporal, decimal, fixed-size binary), boolean,
        string and binary columns (and their large variants).
    num_rows : int
    string_bytes : int or mapping, optional
        Bytes of value data for each string/binary column (one int for all).
    retain, ttl
        As for :func:`arrowshm.put`.

    Returns
    -------
    TableBuilder

    Raises
    ------
    InvalidNameError
        When *name* is invalid.
    InvalidArgumentError
        For an unsupported column type, a missing ``string_bytes`` or a bad size.
    ShmFullError, QuotaExceededError
        When the segment does not fit (nothing is created).
    ConflictError
        When *name* is a stream.

    Examples
    --------
    >>> schema = pa.schema([("x", pa.float64())])
    >>> with arrowshm.build("m", schema, 1_000_000) as b:
    ...     np.copyto(b["x"], np.random.random(1_000_000))  # straight into shared memory
    """
    return default_namespace().build(name, schema, num_rows, string_bytes=string_bytes,
                                     retain=retain, ttl=ttl)


def stream_info(name: str) -> StreamInfo:
    """Describe stream *name*: schema, capacity, mode, writer, cursors and each reader.

    Raises
    ------
    InvalidNameError
        When *name* is not a valid name.
    NotFoundError
        When no stream has that name.
    ConflictError
        When *name* is a dataset.
    CorruptSegmentError
        When its segment is not a valid stream layout.
    """
    return default_namespace().stream_info(name)


def list_streams() -> list[StreamInfo]:
    """Every stream of the current namespace, sorted by name.

    Each :class:`StreamInfo` describes the writer session, cursors and readers
    (as :func:`stream_info`); streams being created or torn down while listing
    are left out.

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is invalid.
    """
    return default_namespace().list_streams()


def reserve(nbytes: int, *, wait: float | None = None) -> None:
    """Keep *nbytes* of pre-faulted spare memory ready for new puts (0 stops).

    A thread of this process keeps spares of halving sizes (from *nbytes* / 2 down
    to 1 MiB) ready and refills them as puts claim them, so even the first put of
    a new name, by any process of the namespace, lands in memory whose pages are
    already faulted in. The reserve counts against the quota and lasts while this
    process lives; ``arrowshm serve --reserve SIZE`` keeps one for a whole host.

    Parameters
    ----------
    nbytes : int
        Bytes to keep ready; 0 stops the reserve.
    wait : float, optional
        Block up to this many seconds until the reserve is filled.

    Raises
    ------
    InvalidArgumentError
        When *nbytes* is not a non-negative int, or *wait* is negative.
    ConflictError
        When two other live processes already keep a reserve in the namespace.
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is invalid.
    """
    default_namespace().reserve(nbytes, wait=wait)


def usage() -> Usage:
    """What the current namespace holds: live bytes, spares, quota, /dev/shm space.

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is invalid.
    """
    return default_namespace().usage()


def gc(namespace: str | None = None, *, spares: bool = False) -> GcReport:
    """Reclaim every object of the namespace that nothing live needs.

    Removes data segments that no LIVE entry references and no live process is
    writing, deletes datasets whose TTL passed, completes publishes or releases
    locks that killed writers left behind, and evicts stream readers whose
    process died.

    Spares (retired segments kept for reuse, see :func:`reserve`) are kept
    within ``ARROWSHM_SPARE_BYTES`` and freed once idle for
    ``ARROWSHM_SPARE_IDLE_S``; ``spares=True`` frees them all now.

    Parameters
    ----------
    namespace : str, optional
        Defaults to ``ARROWSHM_NAMESPACE``.
    spares : bool, default False
        Free every spare of the namespace too.

    Returns
    -------
    GcReport

    Raises
    ------
    InvalidNameError
        When the namespace is invalid.
    """
    return (default_namespace() if namespace is None else Namespace(namespace)).gc(spares=spares)
