"""Build a table in place in shared memory, then seal it: a put with no copy.

``build`` lays out the Arrow IPC stream of a table of *num_rows* rows in a new
version segment before any data exists: the schema message, the record-batch
metadata and the end-of-stream marker are written for real, and every column
buffer is left as a hole at the exact offset the IPC format puts it. The
producer gets numpy arrays over those holes and fills them however it likes
(numpy, numba, a file read). ``seal`` then fixes the only metadata that depends
on the data — each column's null count, patched in place in the record-batch
metadata — and publishes the version exactly as ``put`` does. Sealing costs
O(columns) plus a popcount of the validity bitmaps, whatever the size.

How the holes are found: the layout pass runs pyarrow's own IPC writer over
placeholder buffers of the right sizes, into a sink that records every write.
pyarrow hands body buffers to the sink as the very ``Buffer`` objects it was
given (no copy), so the sink knows which byte ranges are column buffers and
stores only the metadata around them.

An abandoned builder (an exception in the ``with`` block, garbage collection,
interpreter exit) frees its segment; one whose process is killed is
reclaimed by ``gc`` (its creator is dead and it was never published).
"""

from __future__ import annotations

import atexit
import contextlib
import struct
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._arrow import IPC_OPTIONS, schema_fingerprint
from .._errors import ArrowShmError, CorruptSegmentError, InvalidArgumentError
from .._info import DatasetInfo
from .._names import validate_name
from .._shm import header
from .._shm import layout as L
from .._shm.context import Context
from .._shm.segment import Segment
from .inputs import check_retain, check_ttl
from .put import allocate_segment, publish_version

__all__ = ["TableBuilder", "build"]


@dataclass
class _Column:
    """Where one column's buffers live in the segment (offsets from segment start)."""

    name: str
    type: pa.DataType
    nullable: bool
    validity: tuple[int, int] | None  # (offset, bytes)
    offsets: tuple[int, int] | None  # string/binary value offsets
    data: tuple[int, int]  # fixed-width values, bitmap for bool, or string bytes
    offset_dtype: Any = None


def _value_dtype(t: pa.DataType) -> tuple[np.dtype[Any] | None, int]:
    """(numpy dtype of the value buffer, bytes per value); None for bit-packed bool."""
    if pa.types.is_boolean(t):
        return None, 0
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype()), t.bit_width // 8
    if pa.types.is_temporal(t):
        width = t.bit_width // 8
        return np.dtype(f"<i{width}"), width
    if pa.types.is_fixed_size_binary(t) or pa.types.is_decimal(t):
        width = t.bit_width // 8
        return np.dtype(np.uint8), width
    raise InvalidArgumentError(
        f"build() does not support columns of type {t}: use fixed-width, boolean, "
        "string or binary columns, or put() for other types",
        type=str(t),
    )


def _is_varlen(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t) or pa.types.is_binary(t)
        or pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    )  # fmt: skip


class _RecordingSink:
    """A write-only file that records the layout of an IPC stream without
    storing the column buffers it is given."""

    def __init__(self, body: dict[int, str]) -> None:
        self.pos = 0
        self.chunks: list[tuple[int, bytes]] = []  # metadata and padding, to write for real
        self.holes: dict[str, list[tuple[int, int]]] = {}  # column -> [(offset, bytes)]
        self._body = body  # buffer address -> column name
        self.closed = False

    def write(self, data: Any) -> int:
        n = len(memoryview(data)) if not isinstance(data, pa.Buffer) else data.size
        column = self._body.get(data.address) if isinstance(data, pa.Buffer) else None
        if column is not None:
            self.holes.setdefault(column, []).append((self.pos, n))
        elif n:
            self.chunks.append((self.pos, bytes(data)))
        self.pos += n
        return n

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _plan(
    schema: pa.Schema, num_rows: int, string_bytes: Mapping[str, int]
) -> tuple[_RecordingSink, list[_Column], list[int]]:
    """Run the IPC writer over placeholders; returns the recording, the columns
    (offsets relative to the stream) and the null counts written."""
    arrays = []
    body: dict[int, str] = {}
    keep: list[pa.Buffer] = []  # placeholders stay alive while their addresses are keys
    null_counts = []
    bitmap_bytes = (num_rows + 7) // 8
    for k, field in enumerate(schema):
        t = field.type
        validity = None
        # a distinctive placeholder null count (patched at seal): lets seal find
        # the FieldNode vector in the metadata and keeps the bitmap in the layout
        nc = min(num_rows, k + 1) if field.nullable else 0
        if field.nullable and num_rows:
            validity = pa.allocate_buffer(bitmap_bytes)
            body[validity.address] = field.name
            keep.append(validity)
        if _is_varlen(t):
            if field.name not in string_bytes:
                raise InvalidArgumentError(
                    f"column {field.name!r} is {t}: give its data size with "
                    f"string_bytes={{{field.name!r}: nbytes}} (or one int for all)",
                    column=field.name,
                )
            nbytes = string_bytes[field.name]
            large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
            odt = np.dtype(np.int64 if large else np.int32)
            if not large and nbytes >= 2**31:
                raise InvalidArgumentError(
                    f"column {field.name!r}: {nbytes} bytes need a large_string/large_binary "
                    "column (32-bit offsets stop at 2 GiB)",
                    column=field.name,
                )
            offsets = np.zeros(num_rows + 1, dtype=odt)
            offsets[-1] = nbytes  # the writer reads the first and last offset only
            obuf = pa.py_buffer(offsets)
            dbuf = pa.allocate_buffer(max(nbytes, 1))
            if nbytes == 0:
                dbuf = dbuf.slice(0, 0)
            body[obuf.address] = field.name
            body[dbuf.address] = field.name
            keep += [obuf, dbuf]
            arr = pa.Array.from_buffers(t, num_rows, [validity, obuf, dbuf], null_count=nc)
        else:
            dtype, width = _value_dtype(t)
            size = bitmap_bytes if dtype is None else num_rows * width
            dbuf = pa.allocate_buffer(max(size, 1)).slice(0, size)
            body[dbuf.address] = field.name
            keep.append(dbuf)
            arr = pa.Array.from_buffers(t, num_rows, [validity, dbuf], null_count=nc)
        arrays.append(arr)
        null_counts.append(nc)
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    sink = _RecordingSink(body)
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema, options=IPC_OPTIONS) as w:
        w.write_batch(batch)
    columns = []
    for field in schema:
        holes = sink.holes.get(field.name, [])
        it = iter(holes)
        empty = (0, 0)  # a zero-length buffer is never written, so it has no hole
        validity_hole = next(it, empty) if field.nullable and num_rows else None
        if _is_varlen(field.type):
            offs, data = next(it, empty), next(it, empty)
            large = pa.types.is_large_string(field.type) or pa.types.is_large_binary(field.type)
            columns.append(_Column(field.name, field.type, field.nullable, validity_hole, offs,
                                   data, np.dtype(np.int64 if large else np.int32)))
        else:
            columns.append(_Column(field.name, field.type, field.nullable, validity_hole, None,
                                   next(it, empty)))
    del keep
    return sink, columns, null_counts


def _find_field_nodes(meta: bytes, num_rows: int, null_counts: list[int]) -> int:
    """Offset in *meta* of the record batch's FieldNode vector (length, null_count)."""
    pattern = struct.pack("<I", len(null_counts)) + b"".join(
        struct.pack("<qq", num_rows, nc) for nc in null_counts
    )
    at = meta.find(pattern)
    if at < 0 or meta.find(pattern, at + 1) >= 0:
        raise ArrowShmError("could not locate the field nodes in the IPC metadata")
    return at + 4


_open_builders: weakref.WeakSet[TableBuilder] = weakref.WeakSet()


class TableBuilder:
    """A table being built in place in a new version's shared-memory segment.

    Get writable numpy views with ``b[column]`` (values), ``b.offsets(column)`` and
    ``b.data(column)`` (string/binary), ``b.validity(column)`` (bitmap), fill
    them, then :meth:`seal` (or leave the ``with`` block) to publish.

    Buffers follow the Arrow format: a bool column's ``b[column]`` is its
    bit-packed bitmap (``np.packbits(values, bitorder="little")``); validity
    bitmaps start all-valid (clear bit *i* to make row *i* null); string
    offsets start at 0 and the last one may stay below ``string_bytes``;
    fixed-size binary and decimal columns are ``(num_rows, byte_width)`` uint8.
    """

    def __init__(self, ctx: Context, name: str, schema: pa.Schema, num_rows: int,
                 string_bytes: Mapping[str, int], retain: int, ttl_ns: int) -> None:
        self._ctx = ctx
        self.name = name
        self.schema = schema
        self.num_rows = num_rows
        self._retain = retain
        self._ttl_ns = ttl_ns
        sink, columns, null_counts = _plan(schema, num_rows, string_bytes)
        self._stream_bytes = sink.pos
        seg_bytes = L.SEGMENT_HEADER_BYTES + sink.pos
        self._seg_id, self._seg, fresh = allocate_segment(ctx, seg_bytes)
        self._done = False
        try:
            base = L.SEGMENT_HEADER_BYTES
            header.begin_version(self._seg, sink.pos, fresh=fresh)
            mm = self._seg.mm
            meta_at = None
            for pos, chunk in sink.chunks:
                mm[base + pos : base + pos + len(chunk)] = chunk
                if meta_at is None and len(null_counts) and pos > 0:
                    with contextlib.suppress(ArrowShmError):
                        meta_at = base + pos + _find_field_nodes(chunk, num_rows, null_counts)
            if num_rows and null_counts and meta_at is None:
                raise ArrowShmError("could not locate the field nodes in the IPC metadata")
            self._nodes_at = meta_at
            self._columns = {c.name: c for c in columns}
            self._order = [c.name for c in columns]
            self._views: list[np.ndarray[Any, Any]] = []
            raw = np.frombuffer(mm, dtype=np.uint8)
            for c in columns:  # (a recycled segment holds an older version's bytes)
                if c.validity is not None:
                    off, n = c.validity
                    raw[base + off : base + off + n] = 0xFF  # all valid to begin with
                if c.offsets is not None:
                    off, n = c.offsets
                    raw[base + off : base + off + n] = 0  # all strings empty
            del raw
            self._base = base
        except BaseException:
            self._abandon()
            raise
        _open_builders.add(self)

    # -- views ------------------------------------------------------------------

    def _column(self, column: str) -> _Column:
        self._check_open()
        try:
            return self._columns[column]
        except KeyError:
            raise InvalidArgumentError(
                f"no column {column!r}; columns are {self._order}", column=column
            ) from None

    def _view(self, where: tuple[int, int], dtype: Any, shape: Any = None) -> npt.NDArray[Any]:
        off, n = where
        arr = np.frombuffer(self._seg.mm, dtype=np.uint8, count=n, offset=self._base + off)
        arr = arr.view(dtype)
        if shape is not None:
            arr = arr.reshape(shape)
        self._views.append(arr)
        return arr

    def __getitem__(self, column: str) -> npt.NDArray[Any]:
        """Writable view of *column*'s values (its bitmap for bool columns).

        Raises
        ------
        InvalidArgumentError
            For an unknown column, or a string/binary column (use ``offsets``/``data``).
        """
        c = self._column(column)
        if c.offsets is not None:
            raise InvalidArgumentError(
                f"column {column!r} is {c.type}: fill b.offsets({column!r}) and "
                f"b.data({column!r})",
                column=column,
            )
        dtype, width = _value_dtype(c.type)
        if dtype is None:
            return self._view((c.data[0], (self.num_rows + 7) // 8), np.uint8)
        if dtype == np.uint8 and width > 1:
            return self._view((c.data[0], self.num_rows * width), np.uint8,
                              (self.num_rows, width))
        return self._view((c.data[0], self.num_rows * width), dtype)

    def offsets(self, column: str) -> npt.NDArray[Any]:
        """Writable view of a string/binary column's ``num_rows + 1`` offsets.

        Raises
        ------
        InvalidArgumentError
            When *column* is not a string/binary column.
        """
        c = self._column(column)
        if c.offsets is None:
            raise InvalidArgumentError(f"column {column!r} has no offsets", column=column)
        return self._view((c.offsets[0], (self.num_rows + 1) * c.offset_dtype.itemsize),
                          c.offset_dtype)

    def data(self, column: str) -> npt.NDArray[np.uint8]:
        """Writable view of a string/binary column's value bytes (``string_bytes`` long).

        Raises
        ------
        InvalidArgumentError
            When *column* is not a string/binary column.
        """
        c = self._column(column)
        if c.offsets is None:
            raise InvalidArgumentError(f"column {column!r} has no value bytes", column=column)
        return self._view(c.data, np.uint8)

    def validity(self, column: str) -> npt.NDArray[np.uint8]:
        """Writable validity bitmap of a nullable column (bit *i* set = row *i* valid).

        Raises
        ------
        InvalidArgumentError
            When *column* is not nullable in the schema.
        """
        c = self._column(column)
        if c.validity is None:
            raise InvalidArgumentError(
                f"column {column!r} is not nullable in the schema (or the table is empty)",
                column=column,
            )
        return self._view(c.validity, np.uint8)

    def set_strings(self, column: str, values: Any) -> None:
        """Fill a string/binary column from a sequence or Arrow array (a convenience
        that copies the values once).

        Raises
        ------
        InvalidArgumentError
            When the values do not fit in ``string_bytes`` or their count differs.
        """
        c = self._column(column)
        arr = pa.array(values, type=c.type) if not isinstance(values, pa.Array) else values
        if len(arr) != self.num_rows:
            raise InvalidArgumentError(
                f"{len(arr)} values for {self.num_rows} rows", column=column)
        arr = arr.cast(c.type)
        _, obuf, dbuf = arr.buffers()
        src_off = np.frombuffer(obuf, dtype=c.offset_dtype)[arr.offset: arr.offset + len(arr) + 1]
        first = int(src_off[0])
        used = int(src_off[-1]) - first
        if used > c.data[1]:
            raise InvalidArgumentError(
                f"column {column!r} needs {used} bytes, string_bytes gave {c.data[1]}",
                column=column, needed=used)
        self.offsets(column)[:] = src_off - first
        if used:
            self.data(column)[:used] = np.frombuffer(dbuf, dtype=np.uint8)[first: first + used]
        if arr.null_count and c.validity is not None:
            bitmap = arr.buffers()[0]
            if bitmap is not None:
                bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
                packed = np.packbits(bits[arr.offset: arr.offset + len(arr)], bitorder="little")
                self.validity(column)[: len(packed)] = packed

    # -- sealing -----------------------------------------------------------------

    def seal(self) -> DatasetInfo:
        """Publish the table as the next version of the name, without copying it.

        Raises
        ------
        CorruptSegmentError
            When a string column's offsets are out of range (the version is not
            published and the builder stays open to fix them).
        ConflictError
            When the name became a stream meanwhile.
        """
        self._check_open()
        w_nodes = None
        base = self._base
        null_counts = []
        for name in self._order:
            c = self._columns[name]
            if c.offsets is not None:
                offs = self.offsets(name)
                if offs[0] != 0 or offs[-1] > c.data[1] or offs[-1] < 0:
                    raise CorruptSegmentError(
                        f"column {name!r}: offsets must start at 0 and end within "
                        f"string_bytes={c.data[1]} (got {int(offs[0])}..{int(offs[-1])})",
                        column=name,
                    )
            if c.validity is not None:
                bitmap = pa.foreign_buffer(self._seg.address + base + c.validity[0],
                                           c.validity[1], base=self._seg)
                valid = pa.Array.from_buffers(pa.bool_(), self.num_rows, [None, bitmap])
                null_counts.append(self.num_rows - valid.true_count)
            else:
                null_counts.append(0)
        if self._nodes_at is not None:
            w_nodes = np.frombuffer(self._seg.mm, dtype="<i8", count=2 * len(null_counts),
                                    offset=self._nodes_at)
            w_nodes[1::2] = null_counts
        for v in self._views:  # the published version is immutable from here on
            v.flags.writeable = False
        seg = self._seg
        fp = schema_fingerprint(self.schema)
        header.seal(seg, self.num_rows, fp)
        info = publish_version(self._ctx, self.name, seg, self._seg_id, self._stream_bytes,
                               self.num_rows, fp, self._retain, self._ttl_ns, self.schema)
        self._done = True
        self._views.clear()
        _open_builders.discard(self)
        return info

    def abort(self) -> None:
        """Give up: free the segment; nothing is published."""
        if not self._done:
            self._abandon()

    def _abandon(self) -> None:
        self._done = True
        for v in getattr(self, "_views", []):
            v.flags.writeable = False
        self._ctx.registry.free(self._seg)
        _open_builders.discard(self)

    def _check_open(self) -> None:
        if self._done:
            raise InvalidArgumentError(
                f"the builder of {self.name!r} is sealed or aborted; start a new build()",
                name=self.name,
            )

    def __enter__(self) -> TableBuilder:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._done:
            return
        if exc_type is None:
            self.seal()
        else:
            self._abandon()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            try:  # noqa: SIM105 (contextlib may be gone at interpreter exit)
                self._abandon()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "done" if self._done else "open"
        return f"<TableBuilder {self.name!r} {self.num_rows:,} rows, {state}>"


@atexit.register
def _abandon_open_builders() -> None:
    for b in list(_open_builders):
        b.abort()


def build(
    ctx: Context,
    name: str,
    schema: pa.Schema,
    num_rows: int,
    *,
    string_bytes: int | Mapping[str, int] | None = None,
    retain: int = 1,
    ttl: float | None = None,
) -> TableBuilder:
    """Allocate the next version of dataset *name* to fill in place (see
    :func:`arrowshm.build`)."""
    validate_name(name)
    if not isinstance(schema, pa.Schema):
        raise InvalidArgumentError(f"schema must be a pyarrow.Schema, not {type(schema).__name__}")
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 0:
        raise InvalidArgumentError(f"num_rows must be an int >= 0, not {num_rows!r}")
    retain = check_retain(retain)
    ttl_ns = check_ttl(ttl)
    varlen = [f.name for f in schema if _is_varlen(f.type)]
    if isinstance(string_bytes, int):
        sizes = dict.fromkeys(varlen, string_bytes)
    else:
        sizes = dict(string_bytes or {})
    for col, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError(f"string_bytes[{col!r}] must be an int >= 0, not {n!r}")
    for f in schema:  # reject unsupported types before allocating anything
        if not _is_varlen(f.type):
            _value_dtype(f.type)
    if len(set(schema.names)) != len(schema.names):
        raise InvalidArgumentError("build() needs unique column names")
    reg = ctx.registry
    existing = reg.lookup(name)
    if existing is not None:
        reg.check_kind(existing[0], name, L.KIND_DATASET)
    return TableBuilder(ctx, name, schema, num_rows, sizes, retain, ttl_ns)


def _segment_of(builder: TableBuilder) -> Segment:
    """The builder's segment (tests)."""
    return builder._seg
