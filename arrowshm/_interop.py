"""The Python data ecosystem on top of shared-memory tables.

What copies and what does not, when a table from :func:`arrowshm.get` (whose
buffers live in shared memory) is handed to another library:

============================================  ===========================================
call                                          copies?
============================================  ===========================================
``pl.from_arrow(table)``                      no for numeric, boolean, temporal columns;
                                              strings are converted to polars' string views
``duckdb.sql("... FROM table")``              no: DuckDB scans the Arrow buffers in place
``table.column("x").to_numpy()``              no (primitive type, no nulls)
``table.to_pandas()``                         **yes**: pandas consolidates columns into blocks
``to_pandas(table)`` (this module)            no for numeric columns without nulls
``to_pandas(table, arrow_dtypes=True)``       no for any column (``pd.ArrowDtype`` columns)
============================================  ===========================================

A :class:`arrowshm.StreamReader` exports ``__arrow_c_stream__``, so anything
that accepts an Arrow stream (``pa.table``, ``pl.from_arrow``, DuckDB) can
consume a live stream to its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from ._errors import InvalidArgumentError
from ._streams.reader import StreamReader

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["record_batch_reader", "to_pandas"]


def to_pandas(data: pa.Table | pa.RecordBatch, *, arrow_dtypes: bool = False) -> pd.DataFrame:
    """A pandas DataFrame over *data* that copies as little as pandas allows.

    ``Table.to_pandas()`` with its defaults consolidates columns of one dtype
    into 2-D blocks, which copies every numeric column out of shared memory.
    This calls it with ``split_blocks=True`` (one block per column), so numeric
    columns without nulls stay views of the shared buffers.

    Parameters
    ----------
    data : pyarrow.Table or pyarrow.RecordBatch
        Typically the result of :func:`arrowshm.get`.
    arrow_dtypes : bool, default False
        Back every column by its Arrow array (``pandas.ArrowDtype``): nothing is
        copied, including strings and columns with nulls, at the price of
        Arrow-backed dtypes (``int64[pyarrow]``) instead of numpy ones.

    Returns
    -------
    pandas.DataFrame
        Its zero-copy columns are read-only views of the shared memory, valid
        for as long as the DataFrame lives (the mapping stays alive with it).

    Raises
    ------
    InvalidArgumentError
        When *data* is not a pyarrow Table or RecordBatch.
    ImportError
        When pandas is not installed.
    """
    if not isinstance(data, pa.Table | pa.RecordBatch):
        raise InvalidArgumentError(
            f"to_pandas() takes a pyarrow.Table or RecordBatch, not {type(data).__name__}",
            type=type(data).__name__,
        )
    if arrow_dtypes:
        import pandas as pd

        frame: pd.DataFrame = data.to_pandas(types_mapper=pd.ArrowDtype)
    else:
        frame = data.to_pandas(split_blocks=True)
    return frame


def record_batch_reader(reader: StreamReader) -> pa.RecordBatchReader:
    """A ``pyarrow.RecordBatchReader`` that yields *reader*'s batches, zero-copy,
    until the writer closes the stream.

    Each batch holds its place in the stream's ring while the consumer keeps
    it (see :class:`arrowshm.StreamReader`), so feed it to consumers that
    aggregate or copy as they go (``pa.table(...)`` keeps every batch, and with
    it ring space, until the table is dropped).

    Parameters
    ----------
    reader : StreamReader
        An open reader; it is read from, not closed.

    Returns
    -------
    pyarrow.RecordBatchReader

    Raises
    ------
    InvalidArgumentError
        When *reader* is closed.
    """
    if reader.closed:
        raise InvalidArgumentError(f"stream reader {reader.name!r} is closed", name=reader.name)
    return pa.RecordBatchReader.from_batches(reader.schema, iter(reader))
