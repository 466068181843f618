"""A stream segment's geometry: its header after the common one, validated.

The stream header (docs/FORMAT.md, "Stream segment") says where the schema,
the reader slots, the descriptor ring and the arena lie. A writer writes it
once, before the segment is named (:func:`init_segment`); every opener
validates it (:func:`parse`) before any kernel trusts an offset, and builds
the small ``geo`` vector the ring kernels take instead of re-reading it.
This module is the only code that reads or writes stream-header words
(``ST_*``) outside the ring kernels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .._errors import CorruptSegmentError
from .._proc import identity
from .._shm import header
from .._shm import layout as L
from .._shm.segment import Segment
from ..kernels import atomic_load, atomic_store
from ..kernels import ring as K

__all__ = [
    "Geometry",
    "SessionFacts",
    "closed_state",
    "cursor",
    "has_dictionary",
    "init_segment",
    "mark_closed",
    "parse",
    "reader_facts",
    "session_facts",
    "set_session",
]

_U64 = np.uint64
MAX_CAPACITY = 1 << 40
MAX_READERS = 1024
MAX_SLOTS = 1 << 20


@dataclass
class Geometry:
    """A stream segment's validated layout, and the kernels' geometry vector."""

    seg: Segment
    mode: int
    n_slots: int
    max_readers: int
    arena_bytes: int
    schema_bytes: int
    readers_offset: int
    ring_offset: int
    arena_offset: int
    geo: npt.NDArray[np.uint64] = field(repr=False)

    @property
    def words(self) -> npt.NDArray[np.uint64]:
        return self.seg.words

    def schema(self) -> pa.Schema:
        at = L.STREAM_SCHEMA_OFFSET
        raw = bytes(self.seg.mm[at : at + self.schema_bytes])
        try:
            return pa.ipc.read_schema(pa.py_buffer(raw))
        # any parse failure (ArrowNotImplementedError for an impossible bit width,
        # ArrowKeyError, a name that is not UTF-8, …) means corrupt bytes
        except (pa.ArrowException, OSError, EOFError, ValueError, KeyError,
                UnicodeDecodeError) as exc:
            raise CorruptSegmentError(
                f"{self.seg.name} holds no valid Arrow schema: {exc}", shm_name=self.seg.name
            ) from exc

    def slot_word(self, slot: int, field_: int) -> int:
        return self.readers_offset // 8 + slot * (L.SLOT_BYTES // 8) + field_


def geo_vector(mode: int, n_slots: int, max_readers: int, arena_bytes: int,
                readers_off: int, ring_off: int) -> npt.NDArray[np.uint64]:
    geo = np.zeros(K.G_WORDS, dtype=np.uint64)
    geo[K.G_HDR] = L.ST_RING_HEADER
    geo[K.G_READERS] = readers_off // 8
    geo[K.G_MAX_READERS] = max_readers
    geo[K.G_RING] = ring_off // 8
    geo[K.G_N_SLOTS] = n_slots
    geo[K.G_ARENA_BYTES] = arena_bytes
    geo[K.G_MODE] = mode
    return geo


def parse(seg: Segment) -> Geometry:
    """Validate a stream segment's header (the kernels trust these offsets).

    Raises
    ------
    CorruptSegmentError
        When the header is not a consistent stream layout.
    FormatVersionError
        When it was written by an incompatible format version.
    """
    w = seg.words

    def bad(why: str) -> CorruptSegmentError:
        return CorruptSegmentError(
            f"{seg.name} is not a valid arrowshm stream ({why}); delete the stream "
            "(`arrowshm rm NAME`) and recreate it",
            shm_name=seg.name,
        )

    if seg.size < L.STREAM_SCHEMA_OFFSET:
        raise bad("too small")
    seen = header.facts(seg)
    if seen is None:
        raise bad("bad segment magic")
    header.check(seg, "a stream segment")  # the format version
    if seen.kind != L.KIND_STREAM:
        raise bad("not a stream segment")
    if int(atomic_load(w, L.ST_MAGIC)) != L.STREAM_MAGIC:
        raise bad("bad stream magic")
    mode = int(w[L.ST_MODE])
    n_slots = int(w[L.ST_N_SLOTS])
    max_readers = int(w[L.ST_MAX_READERS])
    arena = int(w[L.ST_ARENA_BYTES])
    schema_bytes = int(w[L.ST_SCHEMA_BYTES])
    if mode not in L.STREAM_MODE_NAMES:
        raise bad(f"mode {mode}")
    if n_slots < 2 or n_slots > MAX_SLOTS or n_slots & (n_slots - 1):
        raise bad(f"{n_slots} slots")
    if not 1 <= max_readers <= MAX_READERS:
        raise bad(f"{max_readers} readers")
    if arena < 8 or arena % 8 or arena > MAX_CAPACITY or not 0 < schema_bytes < 1 << 24:
        raise bad("arena or schema size")
    readers, ring, arena_off, total = L.stream_layout(schema_bytes, max_readers, n_slots, arena)
    if (
        int(w[L.ST_READERS_OFFSET]) != readers
        or int(w[L.ST_RING_OFFSET]) != ring
        or int(w[L.ST_ARENA_OFFSET]) != arena_off
        or int(w[L.ST_SCHEMA_OFFSET]) != L.STREAM_SCHEMA_OFFSET
        or int(w[L.ST_SLOT_BYTES]) != L.SLOT_BYTES
        or int(w[L.ST_DESC_BYTES]) != L.DESC_BYTES
        or seg.size < total
    ):
        raise bad("inconsistent offsets")
    geo = geo_vector(mode, n_slots, max_readers, arena, readers, ring)
    return Geometry(seg, mode, n_slots, max_readers, arena, schema_bytes, readers, ring,
                     arena_off, geo)


def has_dictionary(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return True
    return any(has_dictionary(t.field(i).type) for i in range(getattr(t, "num_fields", 0)))


def reader_facts(g: Geometry, slot: int) -> dict[str, int]:
    """A reader slot's words (plain loads: for messages and introspection only)."""
    w = g.words
    n_spans = min(int(w[g.slot_word(slot, L.RD_PINS_N)]), L.PIN_SPANS)
    pinned = 0
    for j in range(n_spans):
        sp = g.slot_word(slot, L.RD_SPANS + j * L.SPAN_WORDS)
        pinned += max(0, int(w[sp + 3]) - int(w[sp + 2]))
    return {
        "reader_id": slot,
        "pid": int(w[g.slot_word(slot, L.RD_PID)]),
        "start": int(w[g.slot_word(slot, L.RD_START)]),
        "state": int(w[g.slot_word(slot, L.RD_STATE)]),
        "read": int(w[g.slot_word(slot, L.RD_READ)]),
        "held": int(w[g.slot_word(slot, L.RD_HELD)]),
        "missed": int(w[g.slot_word(slot, L.RD_MISSED)]),
        "heartbeat": int(w[g.slot_word(slot, L.RD_HEARTBEAT)]),
        "pinned_bytes": pinned,
    }



def init_segment(seg: Segment, *, mode: int, schema_msg: bytes, schema_fp: int,
                 max_readers: int, n_slots: int, arena: int, evict_ns: int) -> None:
    """Write a new stream segment's headers, before it is named: the common header
    (WRITING, by this process), then the stream header, its magic last (release),
    so whoever can open the segment sees a complete layout."""
    readers_off, ring_off, arena_off, _ = L.stream_layout(len(schema_msg), max_readers,
                                                          n_slots, arena)
    header.init_stream(seg, arena_off, arena, schema_fp)
    pid, start = identity()
    w = seg.words
    w[L.ST_MODE] = mode
    w[L.ST_N_SLOTS] = n_slots
    w[L.ST_MAX_READERS] = max_readers
    w[L.ST_ARENA_BYTES] = arena
    w[L.ST_SCHEMA_BYTES] = len(schema_msg)
    w[L.ST_EVICT_NS] = evict_ns
    w[L.ST_SCHEMA_OFFSET] = L.STREAM_SCHEMA_OFFSET
    w[L.ST_READERS_OFFSET] = readers_off
    w[L.ST_RING_OFFSET] = ring_off
    w[L.ST_ARENA_OFFSET] = arena_off
    w[L.ST_SLOT_BYTES] = L.SLOT_BYTES
    w[L.ST_DESC_BYTES] = L.DESC_BYTES
    w[L.ST_WRITER_PID] = pid
    w[L.ST_WRITER_START] = start
    w[L.ST_OPENED_NS] = time.time_ns()
    seg.mm[L.STREAM_SCHEMA_OFFSET : L.STREAM_SCHEMA_OFFSET + len(schema_msg)] = schema_msg
    atomic_store(w, L.ST_MAGIC, _U64(L.STREAM_MAGIC))  # release: header complete


def set_session(seg: Segment, session: int) -> None:
    """The writer session this segment serves (written before the record names it)."""
    seg.words[L.ST_SESSION] = session


def mark_closed(seg: Segment) -> None:
    """Record when the writer closed the session (the ring kernel sets the flag)."""
    seg.words[L.ST_CLOSED_NS] = time.time_ns()


def closed_state(words: npt.NDArray[np.uint64]) -> int:
    """``STREAM_OPEN``, ``STREAM_CLOSED`` or ``STREAM_ABORTED`` (acquire load)."""
    return int(atomic_load(words, L.ST_CLOSED))


def cursor(words: npt.NDArray[np.uint64]) -> int:
    """Batches published in the session (plain load: for reports)."""
    return int(words[L.ST_CURSOR])


@dataclass(frozen=True)
class SessionFacts:
    """The stream header's counters and identity, for ``stream_info``."""

    session: int
    writer_pid: int
    writer_start: int
    closed: int
    cursor: int
    reclaim: int
    bytes: int
    rows: int
    gated_since: int
    evicted: int


def session_facts(seg: Segment) -> SessionFacts:
    """What the stream header says of the session (plain loads: for reports)."""
    w = seg.words
    return SessionFacts(
        session=int(w[L.ST_SESSION]), writer_pid=int(w[L.ST_WRITER_PID]),
        writer_start=int(w[L.ST_WRITER_START]), closed=closed_state(w),
        cursor=int(w[L.ST_CURSOR]), reclaim=int(w[L.ST_RECLAIM]), bytes=int(w[L.ST_BYTES]),
        rows=int(w[L.ST_ROWS]), gated_since=int(w[L.ST_GATED_SINCE]),
        evicted=int(w[L.ST_EVICTED]),
    )  # fmt: skip
