"""The stream segment's byte layout: _layout.py, kernels/ring.py and a real segment agree."""

from __future__ import annotations

import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm import layout as L
from arrowshm._shm.segment import Segment
from arrowshm.kernels import ring as K


def test_stream_header_byte_offsets() -> None:
    expected = {
        "ST_MAGIC": 4096, "ST_MODE": 4104, "ST_N_SLOTS": 4112, "ST_MAX_READERS": 4120,
        "ST_ARENA_BYTES": 4128, "ST_SCHEMA_BYTES": 4136, "ST_SESSION": 4144,
        "ST_EVICT_NS": 4152, "ST_SCHEMA_OFFSET": 4160, "ST_READERS_OFFSET": 4168,
        "ST_RING_OFFSET": 4176, "ST_ARENA_OFFSET": 4184, "ST_SLOT_BYTES": 4192,
        "ST_DESC_BYTES": 4200, "ST_WRITER_PID": 4224, "ST_WRITER_START": 4232,
        "ST_OPENED_NS": 4240, "ST_CLOSED_NS": 4248, "ST_CURSOR": 4288, "ST_RECLAIM": 4296,
        "ST_HEAD": 4304, "ST_CLOSED": 4312, "ST_DATA_FUTEX": 4320, "ST_BYTES": 4328,
        "ST_ROWS": 4336, "ST_HEARTBEAT": 4344, "ST_DATA_WAITERS": 4352,
        "ST_SPACE_FUTEX": 4416, "ST_SPACE_WAITERS": 4424, "ST_GATED_SINCE": 4432,
        "ST_GATING_READER": 4440, "ST_EVICTED": 4448, "ST_WAITS": 4456, "ST_SKIPPED": 4464,
    }  # fmt: skip
    for name, offset in expected.items():
        assert getattr(L, name) * 8 == offset, name
    assert L.STREAM_HEADER_OFFSET == L.SEGMENT_HEADER_BYTES == 4096
    assert L.STREAM_SCHEMA_OFFSET == 4608
    assert L.ST_SKIPPED * 8 < L.STREAM_SCHEMA_OFFSET


def test_ring_header_words_match_the_kernels() -> None:
    pairs = {
        "ST_CURSOR": "H_CURSOR", "ST_RECLAIM": "H_RECLAIM", "ST_HEAD": "H_HEAD",
        "ST_CLOSED": "H_CLOSED", "ST_DATA_FUTEX": "H_DATA_FUTEX", "ST_BYTES": "H_BYTES",
        "ST_ROWS": "H_ROWS", "ST_HEARTBEAT": "H_HEARTBEAT", "ST_DATA_WAITERS": "H_DATA_WAITERS",
        "ST_SPACE_FUTEX": "H_SPACE_FUTEX", "ST_SPACE_WAITERS": "H_SPACE_WAITERS",
        "ST_GATED_SINCE": "H_GATED_SINCE", "ST_GATING_READER": "H_GATING_READER",
        "ST_EVICTED": "H_EVICTED", "ST_WAITS": "H_WAITS", "ST_SKIPPED": "H_SKIPPED",
    }  # fmt: skip
    for st, h in pairs.items():
        assert getattr(L, st) == L.ST_RING_HEADER + getattr(K, h), st
    assert L.ST_RING_HEADER * 8 % 64 == 0
    assert L.ST_DATA_WAITERS * 8 % 64 == 0 and L.ST_SPACE_FUTEX * 8 % 64 == 0


def test_reader_slot_and_descriptor_words_match_the_kernels() -> None:
    for name in ("RD_PID", "RD_START", "RD_STATE", "RD_READ", "RD_HELD", "RD_MISSED",
                 "RD_HEARTBEAT", "RD_PINS_SEQ", "RD_PINS_N", "RD_SPANS", "SPAN_WORDS",
                 "PIN_SPANS", "RD_FREE", "RD_ACTIVE", "RD_DRAINING"):
        assert getattr(L, name) == getattr(K, name), name
    assert L.SLOT_BYTES == K.SLOT_WORDS * 8 == 512
    assert L.RD_READ * 8 == 24 and L.RD_PINS_SEQ * 8 == 64 and L.RD_SPANS * 8 == 96
    assert L.DESC_BYTES == K.DESC_WORDS * 8 == 32
    assert (L.DESC_SEQ, L.DESC_VSTART, L.DESC_LENGTH, L.DESC_ROWS) == (
        K.D_SEQ, K.D_VSTART, K.D_LENGTH, K.D_ROWS)
    assert (L.STREAM_BLOCK, L.STREAM_OVERWRITE) == (K.MODE_BLOCK, K.MODE_OVERWRITE)
    assert (L.STREAM_OPEN, L.STREAM_CLOSED, L.STREAM_ABORTED) == (
        K.CLOSED_OPEN, K.CLOSED_CLOSED, K.CLOSED_ABORTED)


@pytest.mark.parametrize("schema_bytes,max_readers,n_slots,arena", [
    (100, 1, 2, 4096), (337, 16, 1024, 1 << 20), (4000, 1024, 1 << 16, 64 << 20),
])  # fmt: skip
def test_stream_layout_aligns_every_region(schema_bytes: int, max_readers: int, n_slots: int,
                                           arena: int) -> None:
    readers, ring, arena_off, total = L.stream_layout(schema_bytes, max_readers, n_slots, arena)
    assert readers >= L.STREAM_SCHEMA_OFFSET + schema_bytes and readers % 64 == 0
    assert ring >= readers + max_readers * L.SLOT_BYTES and ring % 64 == 0
    assert arena_off >= ring + n_slots * L.DESC_BYTES and arena_off % 4096 == 0
    assert total == arena_off + arena


def test_a_real_stream_segment_has_the_documented_header() -> None:
    schema = pa.schema([("x", pa.int64())])
    with arrowshm.StreamWriter("layout", schema, capacity_bytes=1 << 16, max_readers=3,
                               slots=32, mode="overwrite", delete_on_close=True) as w:
        seg = Segment.open(w._seg.name)
        v = seg.words
        assert int(v[L.S_MAGIC]) == L.SEGMENT_MAGIC and int(v[L.S_KIND]) == L.KIND_STREAM
        assert L.state_of(int(v[L.S_STATE])) == L.SEG_PUBLISHED
        assert int(v[L.ST_MAGIC]) == L.STREAM_MAGIC
        assert int(v[L.ST_MODE]) == L.STREAM_OVERWRITE
        assert (int(v[L.ST_N_SLOTS]), int(v[L.ST_MAX_READERS])) == (32, 3)
        assert int(v[L.ST_ARENA_BYTES]) == 1 << 16 == int(v[L.S_DATA_BYTES])
        schema_len = int(v[L.ST_SCHEMA_BYTES])
        raw = seg.mm[L.STREAM_SCHEMA_OFFSET : L.STREAM_SCHEMA_OFFSET + schema_len]
        assert pa.ipc.read_schema(pa.py_buffer(raw)) == schema
        readers, ring, arena, total = L.stream_layout(schema_len, 3, 32, 1 << 16)
        assert int(v[L.ST_READERS_OFFSET]) == readers and int(v[L.ST_RING_OFFSET]) == ring
        assert int(v[L.ST_ARENA_OFFSET]) == arena == int(v[L.S_DATA_OFFSET])
        assert seg.size == total
        w.write(pa.record_batch([pa.array([1, 2])], schema=schema))
        assert int(v[L.ST_CURSOR]) == 1 and int(v[L.ST_ROWS]) == 2
        d = ring // 8
        assert int(v[d + L.DESC_SEQ]) == 1 and int(v[d + L.DESC_ROWS]) == 2
        assert arena <= arena + int(v[d + L.DESC_VSTART]) < total
        del v, raw
