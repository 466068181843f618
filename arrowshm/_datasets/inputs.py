"""What a put or a build accepts: data converted to a table, options checked."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pyarrow as pa

from .._errors import InvalidArgumentError
from .._shm import layout as L

__all__ = ["check_retain", "check_ttl", "to_table"]


def to_table(data: Any) -> pa.Table:
    """Turn any supported input into a ``pyarrow.Table`` (zero-copy where the
    source allows it).

    Raises
    ------
    InvalidArgumentError
        When *data* is of no supported type.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if module == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    if hasattr(data, "to_arrow_table"):  # DuckDB relations
        return data.to_arrow_table()
    raise InvalidArgumentError(
        f"cannot put a {type(data).__module__}.{type(data).__name__}: pass a pyarrow Table "
        "or RecordBatch, a pandas or polars DataFrame, or an object exporting "
        "__arrow_c_stream__",
        type=type(data).__name__,
    )


def check_retain(retain: object) -> int:
    """*retain* if it is an int from 1 to 16.

    Raises
    ------
    InvalidArgumentError
        Otherwise.
    """
    if isinstance(retain, bool) or not isinstance(retain, int) or not (
        1 <= retain <= L.MAX_RETAIN
    ):
        raise InvalidArgumentError(
            f"retain must be an int from 1 to {L.MAX_RETAIN}, not {retain!r}", retain=retain
        )
    return retain


def check_ttl(ttl: object) -> int:
    """A TTL in seconds (or a timedelta) as ns; 0 for None (no TTL).

    Raises
    ------
    InvalidArgumentError
        When *ttl* is not a positive, finite number of seconds.
    """
    if ttl is None:
        return 0
    if isinstance(ttl, _dt.timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < 1e10:
        raise InvalidArgumentError(
            f"ttl must be a positive number of seconds (or a timedelta), not {ttl!r}", ttl=ttl
        )
    return int(ttl * 1e9)
