"""Every offset of docs/FORMAT.md, asserted like a #[repr(C)] struct."""

from __future__ import annotations

import re
from pathlib import Path

from arrowshm._shm import layout as L

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def test_magic_and_version() -> None:
    assert L.FORMAT_VERSION == 2
    assert L.REGISTRY_MAGIC.to_bytes(8, "little") == b"ASHREG\x00\x01"
    assert L.SEGMENT_MAGIC.to_bytes(8, "little") == b"ASHSEG\x00\x01"
    assert "format version 2" in DOC.read_text()


def test_registry_header_offsets() -> None:
    expected = {
        "H_MAGIC": 0, "H_FORMAT_VERSION": 8, "H_HEADER_BYTES": 16, "H_CAPACITY": 24,
        "H_ENTRY_BYTES": 32, "H_CREATED_NS": 40, "H_INIT_PID": 48, "H_INIT_START": 56,
        "H_STRUCT_LOCK": 64, "H_STRUCT_LOCK_START": 72, "H_PID_NS": 80, "H_BOOT_ID": 96,
        "H_ID_KEY": 112, "H_NEXT_SEGMENT_ID": 128, "H_BYTES_USED": 192,
        "H_QUOTA_BYTES": 200, "H_EVENT_SEQ": 256, "H_EVENT_WAITERS": 264,
        "H_EVENT_FUTEX": 272, "H_STAT_PUTS": 320, "H_STAT_DELETES": 328,
        "H_STAT_REAPED": 336, "H_LIVE_ENTRIES": 344, "H_STAT_RECYCLED": 352,
        "H_RESERVATIONS": 1024, "H_SPARES": 3072, "H_RESERVES": 4032,
    }  # fmt: skip
    for name, offset in expected.items():
        assert getattr(L, name) * 8 == offset, name
    assert L.REGISTRY_HEADER_BYTES == 4096
    assert L.RESERVATION_SLOTS * L.RESERVATION_WORDS * 8 == 2048  # bytes 1024..3071
    assert (L.H_RESERVATIONS + L.RESERVATION_SLOTS * L.RESERVATION_WORDS) * 8 <= 3072
    assert L.SPARE_SLOTS * L.SPARE_WORDS * 8 == 960  # spares: bytes 3072..4031
    assert (L.H_SPARES + L.SPARE_SLOTS * L.SPARE_WORDS) * 8 <= 4096
    assert (L.SPARE_EMPTY, L.SPARE_READY, L.SPARE_BUSY) == (0, 1 << 62, 1 << 63)
    assert L.RESERVE_SLOTS * L.RESERVE_WORDS * 8 == 64  # reserves: bytes 4032..4095
    assert L.H_RESERVES == L.H_SPARES + L.SPARE_SLOTS * L.SPARE_WORDS
    assert (L.H_RESERVES + L.RESERVE_SLOTS * L.RESERVE_WORDS) * 8 == 4096
    # hot words do not share cache lines
    lines = {L.H_STRUCT_LOCK * 8 // 64, L.H_NEXT_SEGMENT_ID * 8 // 64,
             L.H_BYTES_USED * 8 // 64, L.H_EVENT_SEQ * 8 // 64}
    assert len(lines) == 4


def test_registry_entry_offsets() -> None:
    expected = {
        "E_STATE": 0, "E_GENERATION": 8, "E_NAME_HASH": 16, "E_KIND": 24, "E_NAME_LEN": 32,
        "E_LOCK": 64, "E_LOCK_START": 72, "E_LOCK_NS": 80, "E_NOTIFY_FUTEX": 88,
        "E_NOTIFY_WAITERS": 96, "E_NAME": 128, "E_SEQLOCK": 336, "E_RECORD": 352,
        "E_STAGED": 672,
    }  # fmt: skip
    for name, offset in expected.items():
        assert getattr(L, name) * 8 == offset, name
    assert L.ENTRY_BYTES == 1024 and L.ENTRY_WORDS == 128
    assert L.NAME_WORDS * 8 >= 200 and L.E_NAME + L.NAME_WORDS <= L.E_SEQLOCK
    assert L.E_STAGED + L.RECORD_WORDS <= L.ENTRY_WORDS
    assert L.R_HISTORY + L.MAX_RETAIN <= L.RECORD_WORDS
    assert L.entry_word(2, L.E_LOCK) == 4096 // 8 + 2 * 128 + 8


def test_record_words() -> None:
    names = ["R_VERSION", "R_SEGMENT_ID", "R_SEGMENT_BYTES", "R_DATA_BYTES", "R_NUM_ROWS",
             "R_SCHEMA_FP", "R_CREATED_NS", "R_UPDATED_NS", "R_TTL_NS", "R_RETAIN",
             "R_OWNER_PID", "R_OWNER_START", "R_FLAGS", "R_TOTAL_BYTES", "R_N_HISTORY"]
    for word, name in enumerate(names):
        assert getattr(L, name) == word, name
    assert L.R_HISTORY == 16 and L.MAX_RETAIN == 16


def test_segment_header_offsets() -> None:
    names = ["S_MAGIC", "S_FORMAT_VERSION", "S_KIND", "S_STATE", "S_CREATOR_PID",
             "S_CREATOR_START", "S_CREATED_NS", "S_SEGMENT_BYTES", "S_DATA_OFFSET",
             "S_DATA_BYTES", "S_NAME_HASH", "S_VERSION", "S_NUM_ROWS", "S_SCHEMA_FP",
             "S_GENERATION"]
    for word, name in enumerate(names):
        assert getattr(L, name) * 8 == word * 8, name
    assert L.SEGMENT_HEADER_BYTES == 4096
    assert L.S_PIN_OVERFLOW * 8 == 128 and L.S_RECYCLES * 8 == 136
    assert (L.S_BATCH_VERSION * 8, L.S_BATCH_OFFSET * 8, L.S_BATCH_BYTES * 8) == (144, 152, 160)
    assert L.S_PINS * 8 == 1024 and L.PIN_SLOTS == 64 and L.PIN_WORDS == 4  # 1024..3071
    assert (L.S_PINS + L.PIN_SLOTS * L.PIN_WORDS) * 8 <= L.SEGMENT_HEADER_BYTES


def test_the_header_words_are_defined_once_by_the_pins_kernel() -> None:
    """The layout re-exports the pins kernel's header words; it declares none itself."""
    from arrowshm.kernels import pins as K

    names = [n for n in dir(K) if n.startswith("S_") or n.startswith("SEG_")]
    names += ["PIN_SLOTS", "PIN_WORDS", "SEGMENT_HEADER_BYTES", "STATE_BITS", "STATE_MASK"]
    assert len(names) >= 25
    for name in names:
        assert getattr(L, name) == getattr(K, name), name
    source = (Path(L.__file__)).read_text()
    for name in names:  # each is taken from the kernel, never re-declared with a number
        assert f"{name} = _pins.{name}" in source, name


def test_segment_state_word() -> None:
    assert (L.SEG_WRITING, L.SEG_SEALED, L.SEG_PUBLISHED, L.SEG_POOLED, L.SEG_RECLAIMING) == (
        1, 2, 3, 4, 5)
    w = L.next_state(L.SEG_PUBLISHED, L.SEG_POOLED)
    assert L.state_of(w) == L.SEG_POOLED and w >> L.STATE_BITS == 1
    assert L.state_of(L.next_state(w, L.SEG_WRITING)) == L.SEG_WRITING
    assert L.next_state(w, L.SEG_WRITING) >> 8 == 2


def test_the_document_lists_the_same_offsets() -> None:
    text = DOC.read_text()
    section = text.split("### Entry")[1].split("###")[0]
    rows = dict(re.findall(r"\|\s*(\d+)\s*\|\s*(\w+)\s*\|", section))
    assert rows["336"] == "seq" and rows["352"] == "record" and rows["672"] == "staged"
    assert rows["64"] == "lock" and rows["128"] == "name"
    header = text.split("### Header")[1].split("###")[0]
    hrows = dict(re.findall(r"\|\s*(\d+)\s*\|\s*(\w+)\s*\|", header))
    assert hrows["192"] == "bytes_used" and hrows["256"] == "event_seq"
    assert hrows["352"] == "stat_recycled"
    assert "| 3072 + 40·j | spare[j].state |" in header
    assert "| 3104 + 40·j | spare[j].since |" in header


def test_segment_ids_follow_the_documented_keyed_mix() -> None:
    from arrowshm._shm.registry import _mix

    m = (1 << 64) - 1

    def documented(n: int, key: int) -> int:
        z = (n ^ key) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    key = 0x1234_5678_9ABC_DEF1
    ids = [_mix(n, key) for n in range(1, 20_001)]
    assert ids == [documented(n, key) for n in range(1, 20_001)]
    assert len(set(ids)) == len(ids)  # never repeats
    assert ids[:3] != [1, 2, 3]       # not the counter
    text = DOC.read_text()
    assert "0xBF58476D1CE4E5B9" in text and "0x94D049BB133111EB" in text
