"""The ring's burst kernels: a writer claims and publishes several batches with one
call each, a reader claims every contiguous batch available with one call and
releases the run at once.

Single-process, on the word layout of tests/kernels/test_ring.py; the
cross-process data path with bursts is stressed in tests/stress/test_ring_stress.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from arrowshm.kernels import ring as K
from tests.kernels.test_ring import Ring

U64 = np.uint64


def write_many(r: Ring, sizes: list[int], restart_bytes: int = 0, restart: int = 0) -> int:
    """Claim + publish a burst of messages of *sizes*; returns the first seq or a status."""
    seq = int(K.ring_try_claim_many(r.words, r.geo, r.head, sum(sizes), len(sizes),
                                    restart_bytes, restart, r.out))
    if seq < 0:
        return seq
    start = int(r.out[K.O_START])
    first = start + (restart_bytes if r.out[K.O_RESTART] else 0)
    end = first + sum(sizes)
    K.ring_publish_many(r.words, r.w32, r.geo, seq, len(sizes), first,
                        np.array(sizes, dtype=U64), np.arange(1, len(sizes) + 1, dtype=U64),
                        end, 0)
    r.head = end
    return seq


def read_many(r: Ring, i: int, most: int) -> tuple[int, int, int, int, int]:
    """(first seq or status, count, v0, length, rows)."""
    seq = int(K.ring_try_read_many(r.words, r.geo, i, most, 0, r.out))
    return (seq, int(r.out[K.O_COUNT]), int(r.out[K.O_VSTART]), int(r.out[K.O_LENGTH]),
            int(r.out[K.O_ROWS]))


def desc(r: Ring, seq: int) -> tuple[int, int, int, int]:
    d = r.ring + (seq % int(r.geo[K.G_N_SLOTS])) * K.DESC_WORDS
    return tuple(int(x) for x in r.words[d : d + 4])  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# writer


def test_a_burst_is_published_back_to_back_with_one_cursor_store() -> None:
    r = Ring(n_slots=16, arena=1000)
    assert write_many(r, [10, 20, 30]) == 0
    assert [desc(r, s) for s in range(3)] == [(1, 0, 10, 1), (2, 10, 20, 2), (3, 30, 30, 3)]
    assert (r.h(K.H_CURSOR), r.h(K.H_HEAD), r.h(K.H_BYTES), r.h(K.H_ROWS)) == (3, 60, 60, 6)
    assert write_many(r, [8] * 4) == 3
    assert r.h(K.H_CURSOR) == 7 and desc(r, 6) == (7, 84, 8, 4)


def test_a_burst_with_a_restart_starts_after_the_schema_bytes() -> None:
    r = Ring(n_slots=16, arena=100)
    assert write_many(r, [10, 10], restart_bytes=7, restart=1) == 0
    assert desc(r, 0)[1] == 7 and desc(r, 1)[1] == 17 and r.head == 27
    assert write_many(r, [30, 30, 30], restart_bytes=7) == 2  # 27 + 90 > 100: next lap
    assert r.out[K.O_RESTART] == 1 and desc(r, 2)[1] == 107 and r.head == 197
    assert r.h(K.H_SKIPPED) == 7 + 80  # (the schema bytes, and the rest of the first lap)


def test_a_burst_needs_room_for_all_its_sequences_and_bytes() -> None:
    r = Ring(n_slots=8, arena=1000)
    r.attach()
    assert write_many(r, [10] * 6) == 0
    assert write_many(r, [10] * 3) == K.GATED  # 9 sequences unread in 8 slots
    assert r.out[K.O_GATE_KIND] == K.GATE_UNREAD
    assert write_many(r, [10] * 2) == 6
    r2 = Ring(n_slots=64, arena=100)
    r2.attach()
    assert write_many(r2, [20] * 4) == 0
    assert write_many(r2, [15, 15]) == K.GATED  # 30 bytes where 20 are free before unread
    assert write_many(r2, [10, 10]) == 4


def test_the_single_claim_is_the_burst_of_one() -> None:
    a, b = Ring(n_slots=8, arena=100), Ring(n_slots=8, arena=100)
    for size in (30, 30, 50, 10, 90):
        seq_a = int(K.ring_try_claim(a.words, a.geo, a.head, size, 5, 0, a.out))
        seq_b = int(K.ring_try_claim_many(b.words, b.geo, b.head, size, 1, 5, 0, b.out))
        assert seq_a == seq_b and (a.out == b.out).all()
        end = int(a.out[K.O_START]) + size + (5 if a.out[K.O_RESTART] else 0)
        for r in (a, b):
            K.ring_publish(r.words, r.w32, r.geo, seq_a, end - size, size, 1, end, 0)
            r.head = end


# ------------------------------------------------------------------------------------------
# reader


def test_a_reader_claims_every_contiguous_batch_as_one_run() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    for _ in range(5):
        r.try_write(10)
    write_many(r, [20, 20])
    assert read_many(r, 0, 100) == (0, 7, 0, 90, 5 + 3)
    assert r.spans(0) == [(0, 6, 0, 90)]
    assert r.slot(0, K.RD_HELD) == 7 and r.slot(0, K.RD_READ) == 7
    assert read_many(r, 0, 100)[0] == K.EMPTY


def test_max_batches_bounds_the_run() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    write_many(r, [10] * 10)
    assert read_many(r, 0, 4)[:4] == (0, 4, 0, 40)
    assert read_many(r, 0, 0)[:2] == (4, 1)  # (at least one)
    assert read_many(r, 0, 100)[:4] == (5, 5, 50, 50)
    assert r.spans(0) == [(0, 9, 0, 100)]  # consecutive runs extend one span


def test_a_run_ends_where_the_messages_stop_being_contiguous() -> None:
    r = Ring(n_slots=64, arena=100)
    r.attach()
    assert write_many(r, [20, 20], restart_bytes=5, restart=1) == 0  # [5, 45)
    assert write_many(r, [20], restart_bytes=5, restart=1) == 2  # a restart: [50, 70)
    assert read_many(r, 0, 100)[:4] == (0, 2, 5, 40)
    assert read_many(r, 0, 100)[:4] == (2, 1, 50, 20)
    runs = [(0, 1, 5, 45), (2, 2, 50, 70)]
    _unpin(r, runs, 0)
    _unpin(r, runs, 0)
    assert write_many(r, [20, 20], restart_bytes=5) == 3  # the next lap: [105, 145)
    assert write_many(r, [20]) == 5  # right after: [145, 165)
    assert read_many(r, 0, 100)[:4] == (3, 3, 105, 60)


def test_a_run_never_crosses_the_end_of_the_arena() -> None:
    # descriptors that claim contiguity across the lap's end (no writer makes them)
    r = Ring(n_slots=8, arena=100)
    r.attach()
    for s, (v, n) in enumerate([(60, 20), (80, 20), (100, 20)]):
        d = r.ring + s * K.DESC_WORDS
        r.words[d : d + 4] = [s + 1, v, n, 1]
    r.words[r.HDR + K.H_CURSOR] = 3
    assert read_many(r, 0, 100)[:4] == (0, 2, 60, 40)
    assert read_many(r, 0, 100)[:4] == (2, 1, 100, 20)


def test_a_corrupt_first_descriptor_pins_nothing() -> None:
    r = Ring(n_slots=8, arena=100)
    r.attach()
    write_many(r, [10, 10])
    r.words[r.ring + K.D_SEQ] = 99
    assert read_many(r, 0, 10)[0] == K.CORRUPT
    assert r.spans(0) == [] and r.slot(0, K.RD_READ) == 0
    r.words[r.ring + K.D_SEQ] = 1
    r.words[r.ring + K.D_LENGTH] = 1000  # longer than the arena
    assert read_many(r, 0, 10)[0] == K.CORRUPT


def test_a_later_bad_descriptor_just_ends_the_run() -> None:
    r = Ring(n_slots=8, arena=100)
    r.attach()
    write_many(r, [10, 10, 10])
    r.words[r.ring + 2 * K.DESC_WORDS + K.D_LENGTH] = 4  # shorter than any IPC message
    assert read_many(r, 0, 10)[:2] == (0, 2)


def test_end_of_stream_after_the_last_run() -> None:
    r = Ring(n_slots=8, arena=100)
    r.attach()
    write_many(r, [10, 10])
    K.ring_close(r.words, r.w32, r.geo, K.CLOSED_CLOSED)
    assert read_many(r, 0, 10)[:2] == (0, 2)
    assert read_many(r, 0, 10)[0] == K.CLOSED


def test_overwrite_mode_laps_a_reader_before_its_run() -> None:
    r = Ring(n_slots=4, arena=10_000, mode=K.MODE_OVERWRITE)
    r.attach()
    for _ in range(10):
        write_many(r, [8])
    seq, count, _, _, _ = read_many(r, 0, 10)
    assert (seq, count) == (6, 4) and int(r.out[K.O_MISSED]) == 6
    assert r.slot(0, K.RD_MISSED) == 6


def test_overwrite_run_is_undone_when_the_writer_reclaims_its_first_batch() -> None:
    r = Ring(n_slots=4, arena=10_000, mode=K.MODE_OVERWRITE)
    r.attach()
    write_many(r, [8] * 4)
    r.words[r.HDR + K.H_RECLAIM] = 2  # the writer's horizon passed batches 0 and 1
    seq, count, v0, length, _ = read_many(r, 0, 10)
    assert (seq, count, v0, length) == (2, 2, 16, 16) and int(r.out[K.O_MISSED]) == 2
    assert r.spans(0) == [(2, 3, 16, 32)]


# ------------------------------------------------------------------------------------------
# releasing runs


def _unpin(r: Ring, runs: list[tuple[int, int, int, int]], k: int) -> int:
    """Release run *k* of the held *runs* (first, last, v0, v1), which is updated."""
    first, last, _, _ = runs.pop(k)
    prev = runs[k - 1] if k else None
    nxt = runs[k] if k < len(runs) else None
    held = sum(b - a + 1 for a, b, _, _ in runs)
    return int(K.ring_unpin_range(r.words, r.w32, r.geo, 0, first, last,
                                  prev[1] if prev else -1, prev[3] if prev else 0,
                                  nxt[0] if nxt else -1, nxt[2] if nxt else 0, held))


@pytest.mark.parametrize("order", [(0, 0, 0), (2, 1, 0), (1, 1, 0), (1, 0, 0)])
def test_runs_are_released_in_any_order(order: tuple[int, ...]) -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    write_many(r, [10] * 9)
    runs = []
    for most in (2, 3, 4):
        seq, count, v0, length, _ = read_many(r, 0, most)
        runs.append((seq, seq + count - 1, v0, v0 + length))
    assert r.spans(0) == [(0, 8, 0, 90)]
    for k in order:
        assert _unpin(r, runs, k) == 0
        spans = r.spans(0)
        covered = {s for f, l_, _, _ in spans for s in range(f, l_ + 1)}
        assert {s for a, b, _, _ in runs for s in range(a, b + 1)} <= covered
        for f, l_, v0, v1 in spans:  # every span starts and ends at held bytes
            assert any(a == f and x == v0 for a, _, x, _ in runs)
            assert any(b == l_ and y == v1 for _, b, _, y in runs)
        assert r.slot(0, K.RD_HELD) == sum(b - a + 1 for a, b, _, _ in runs)
    assert r.spans(0) == []


def test_a_run_that_is_not_held_as_a_whole_is_refused() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    write_many(r, [10] * 4)
    read_many(r, 0, 2)
    assert K.ring_unpin_range(r.words, r.w32, r.geo, 0, 1, 3, -1, 0, -1, 0, 0) == K.NOT_HELD
    assert K.ring_unpin_range(r.words, r.w32, r.geo, 0, 1, 0, -1, 0, -1, 0, 0) == K.NOT_HELD
    assert r.spans(0) == [(0, 1, 0, 20)]


def test_unpin_of_one_batch_is_the_run_of_one() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    write_many(r, [10] * 3)
    for _ in range(3):
        r.try_read(0)
    assert K.ring_unpin(r.words, r.w32, r.geo, 0, 1, 0, 10, 2, 20, 2) == 0
    assert r.spans(0) == [(0, 0, 0, 10), (2, 2, 20, 30)]
