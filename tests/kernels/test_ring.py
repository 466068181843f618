"""The ring kernels on plain words: cursors, gating, pins, lapping, waits and wakes.

Single-process tests drive the kernels on a private numpy array laid out like
a stream segment (the kernels only see words and a geometry vector); the
cross-thread and cross-process tests use real futexes on real shared memory.
The jcstress-style stress test of the whole data path is in
tests/stress/test_ring_stress.py.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from arrowshm.kernels import ring as K
from tests.kernels.helpers import Segment

U64 = np.uint64


class Ring:
    """A ring laid out in a word array: header, reader slots, descriptors (no arena bytes:
    the kernels never touch the arena, they only reason about its positions)."""

    HDR = 0
    READERS = 64

    def __init__(
        self,
        *,
        n_slots: int = 8,
        max_readers: int = 4,
        arena: int = 1000,
        mode: int = K.MODE_BLOCK,
        words: np.ndarray[Any, np.dtype[np.uint64]] | None = None,
    ) -> None:
        self.ring = self.READERS + max_readers * K.SLOT_WORDS
        size = self.ring + n_slots * K.DESC_WORDS
        if words is None:
            words = np.zeros(size, dtype=np.uint64)
        assert len(words) >= size
        self.words = words
        self.w32 = words.view(np.uint32)
        self.geo = np.zeros(K.G_WORDS, dtype=np.uint64)
        self.geo[K.G_HDR] = self.HDR
        self.geo[K.G_READERS] = self.READERS
        self.geo[K.G_MAX_READERS] = max_readers
        self.geo[K.G_RING] = self.ring
        self.geo[K.G_N_SLOTS] = n_slots
        self.geo[K.G_ARENA_BYTES] = arena
        self.geo[K.G_MODE] = mode
        self.arena = arena
        self.out = np.zeros(K.OUT_WORDS, dtype=np.uint64)
        self.head = 0

    # writer ---------------------------------------------------------------------------
    def try_write(self, size: int, restart_bytes: int = 0) -> int:
        """Claim + publish a message of ``size`` bytes; returns seq or a status."""
        seq = int(K.ring_try_claim(self.words, self.geo, self.head, size, restart_bytes, 0,
                                   self.out))
        if seq < 0:
            return seq
        start = int(self.out[K.O_START])
        end = start + size + (restart_bytes if self.out[K.O_RESTART] else 0)
        K.ring_publish(self.words, self.w32, self.geo, seq, end - size, size, 1, end, 0)
        self.head = end
        return seq

    def h(self, field: int) -> int:
        return int(self.words[self.HDR + field])

    # readers --------------------------------------------------------------------------
    def attach(self, pid: int = 1000, latest: bool = False) -> int:
        return int(K.ring_reader_attach(self.words, self.geo, pid, 7, 0, int(latest), self.out))

    def slot(self, i: int, field: int) -> int:
        return int(self.words[self.READERS + i * K.SLOT_WORDS + field])

    def try_read(self, i: int) -> tuple[int, int, int, int]:
        """(seq or status, vstart, length, missed)."""
        seq = int(K.ring_try_read(self.words, self.geo, i, 0, self.out))
        return seq, int(self.out[K.O_VSTART]), int(self.out[K.O_LENGTH]), int(
            self.out[K.O_MISSED]
        )

    def spans(self, i: int) -> list[tuple[int, int, int, int]]:
        n = self.slot(i, K.RD_PINS_N)
        base = self.READERS + i * K.SLOT_WORDS + K.RD_SPANS
        return [tuple(int(x) for x in self.words[base + j * 4 : base + j * 4 + 4])  # type: ignore[misc]
                for j in range(n)]

    def unpin(self, i: int, seq: int, held: list[int], pos: dict[int, tuple[int, int]]) -> int:
        """Release ``seq`` of reader ``i`` given its held list (mutated) and byte positions."""
        j = held.index(seq)
        held.remove(seq)
        prev = held[j - 1] if j else -1
        nxt = held[j] if j < len(held) else -1
        return int(K.ring_unpin(self.words, self.w32, self.geo, i, seq, prev,
                                pos[prev][1] if prev >= 0 else 0, nxt,
                                pos[nxt][0] if nxt >= 0 else 0, len(held)))


# ------------------------------------------------------------------------------------------
# documentation


def test_module_opens_with_an_ascii_diagram_of_the_ring() -> None:
    doc = K.__doc__ or ""
    assert "cursor" in doc and "reclaim" in doc and "+-----+" in doc


@pytest.mark.parametrize("name", [n for n in K.__all__ if callable(getattr(K, n))])
def test_every_ring_kernel_documents_memory_ordering_and_returns(name: str) -> None:
    doc = getattr(K, name).__doc__ or ""
    assert "Memory ordering" in doc, name
    assert "Returns" in doc, name


def test_every_blocking_kernel_has_a_try_twin_and_a_timeout() -> None:
    for blocking in ("ring_claim", "ring_wait_for", "ring_read"):
        assert hasattr(K, blocking.replace("ring_", "ring_try_"))
        assert "timeout_ns" in inspect.signature(getattr(K, blocking).py_func).parameters


def test_layout_constants_fit_their_cache_lines() -> None:
    assert K.SLOT_WORDS * 8 % 64 == 0
    assert K.RD_PINS_SEQ * 8 == 64  # pin table starts its own line, apart from `read`
    assert K.RD_SPANS + K.PIN_SPANS * K.SPAN_WORDS <= K.SLOT_WORDS
    assert K.H_DATA_WAITERS * 8 % 64 == 0 and K.H_SPACE_FUTEX * 8 % 64 == 0
    assert K.HEADER_WORDS * 8 % 64 == 0
    assert K.O_SCRATCH + 1 + K.PIN_SPANS * K.SPAN_WORDS <= K.OUT_WORDS


# ------------------------------------------------------------------------------------------
# writer and one reader


def test_publish_then_read_in_order_then_closed() -> None:
    r = Ring()
    assert r.attach() == 0
    assert r.try_read(0)[0] == K.EMPTY
    for i in range(5):
        assert r.try_write(10) == i
    assert r.h(K.H_CURSOR) == 5 and r.h(K.H_HEAD) == 50
    for i in range(5):
        seq, vstart, length, missed = r.try_read(0)
        assert (seq, vstart, length, missed) == (i, 10 * i, 10, 0)
    assert r.try_read(0)[0] == K.EMPTY
    K.ring_close(r.words, r.w32, r.geo, K.CLOSED_CLOSED)
    assert r.try_read(0)[0] == K.CLOSED
    assert K.ring_try_wait_for(r.words, r.geo, 5) == K.CLOSED
    assert K.ring_try_wait_for(r.words, r.geo, 4) == 5


def test_try_wait_for_reports_the_cursor_without_claiming() -> None:
    r = Ring()
    assert K.ring_try_wait_for(r.words, r.geo, 0) == K.EMPTY
    r.try_write(1)
    r.try_write(1)
    assert K.ring_try_wait_for(r.words, r.geo, 0) == 2
    assert K.ring_try_wait_for(r.words, r.geo, 2) == K.EMPTY


def test_block_mode_writer_is_gated_by_the_slowest_reader_on_slots() -> None:
    r = Ring(n_slots=4, arena=10_000)
    r.attach(pid=11)
    r.attach(pid=12)
    for i in range(4):
        assert r.try_write(8) == i
    assert r.try_write(8) == K.GATED
    assert r.out[K.O_GATE_KIND] == K.GATE_UNREAD and r.out[K.O_N_GATING] == 2
    # reader 0 reads everything (and holds it all); reader 1 reads one
    held0 = [r.try_read(0)[0] for _ in range(4)]
    assert held0 == [0, 1, 2, 3]
    assert r.try_write(8) == K.GATED
    assert int(r.out[K.O_FIRST_GATING]) == 1 and r.out[K.O_N_GATING] == 1
    assert r.try_read(1)[0] == 0
    # batch 0 is read by both; reader 0 still pins it, but slot reuse needs no bytes of it
    assert r.try_write(8) == 4
    assert r.h(K.H_RECLAIM) == 1


def test_block_mode_writer_is_gated_on_unread_arena_bytes() -> None:
    r = Ring(n_slots=64, arena=100)
    r.attach()
    for i in range(3):
        assert r.try_write(30) == i
    assert r.try_write(30) == K.GATED  # would wrap onto unread batch 0
    assert r.try_read(0)[0] == 0
    held = [0]
    pos = {0: (0, 30)}
    # batch 0 is read but pinned: jumping past it runs into unread batch 1
    assert r.try_write(30) == K.GATED
    assert r.out[K.O_GATE_KIND] == K.GATE_UNREAD
    assert r.unpin(0, 0, held, pos) == 0
    assert r.try_write(30) == 3
    assert int(r.out[K.O_START]) == 100  # next lap, physical offset 0


def test_writer_jumps_over_a_pinned_batch_and_keeps_lapping() -> None:
    r = Ring(n_slots=16, arena=100, mode=K.MODE_BLOCK)
    r.attach()
    pos: dict[int, tuple[int, int]] = {}
    held: list[int] = []
    seq = r.try_write(10)
    s, v0, n, _ = r.try_read(0)
    pos[s] = (v0, v0 + n)
    held.append(s)  # keep batch 0: bytes [0, 10) of every lap stay pinned
    starts = []
    for _ in range(60):
        seq = r.try_write(10)
        assert seq >= 0
        starts.append(int(r.out[K.O_START]))
        s, v0, n, _ = r.try_read(0)
        assert s == seq
        pos[s] = (v0, v0 + n)
        assert r.unpin(0, s, [*held, s], pos) == 0
    assert all(v % 100 >= 10 for v in starts), "wrote over the pinned bytes"
    assert r.head > 5 * 100
    assert r.h(K.H_SKIPPED) >= 10 * 5
    assert r.spans(0) == [(0, 0, 0, 10)]


def test_writer_is_gated_when_pins_leave_no_room() -> None:
    r = Ring(n_slots=16, arena=100)
    r.attach()
    for _ in range(4):
        r.try_write(25)
    for _ in range(4):
        r.try_read(0)
    assert r.spans(0) == [(0, 3, 0, 100)]
    assert r.try_write(10) == K.GATED
    assert r.out[K.O_GATE_KIND] == K.GATE_PINNED and int(r.out[K.O_FIRST_GATING]) == 0


def test_restart_bytes_are_added_when_the_message_does_not_follow_the_previous_one() -> None:
    r = Ring(n_slots=16, arena=100)
    seq = K.ring_try_claim(r.words, r.geo, 0, 10, 7, 1, r.out)
    assert seq == 0 and r.out[K.O_START] == 0 and r.out[K.O_RESTART] == 1
    K.ring_publish(r.words, r.w32, r.geo, 0, 7, 10, 1, 17, 0)
    r.head = 17
    seq = K.ring_try_claim(r.words, r.geo, 17, 10, 7, 0, r.out)
    assert seq == 1 and r.out[K.O_START] == 17 and r.out[K.O_RESTART] == 0
    K.ring_publish(r.words, r.w32, r.geo, 1, 17, 10, 1, 27, 0)
    seq = K.ring_try_claim(r.words, r.geo, 27, 80, 7, 0, r.out)  # 27 + 80 > 100: next lap
    assert seq == 2 and r.out[K.O_START] == 100 and r.out[K.O_RESTART] == 1


# ------------------------------------------------------------------------------------------
# pins


def test_pins_merge_runs_and_split_on_out_of_order_release() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    pos = {}
    held = []
    for _ in range(12):
        r.try_write(10)
    for _ in range(12):
        s, v0, n, _ = r.try_read(0)
        pos[s] = (v0, v0 + n)
        held.append(s)
    assert r.spans(0) == [(0, 11, 0, 120)]
    # release odd sequences out of order: the run splits while spans are free
    for s in (5, 1, 9):
        assert r.unpin(0, s, held, pos) == 0
    spans = r.spans(0)
    assert len(spans) == 4
    covered = {s for f, l_, _, _ in spans for s in range(f, l_ + 1)}
    assert set(held) <= covered and not {1, 5, 9} & covered
    for f, l_, v0, v1 in spans:
        assert (v0, v1) == (pos[f][0], pos[l_][1])
    for s in (3, 7, 11, 0):  # more holes than spans: a span keeps pinning a gap
        assert r.unpin(0, s, held, pos) == 0
    spans = r.spans(0)
    assert len(spans) <= K.PIN_SPANS
    covered = {s for f, l_, _, _ in spans for s in range(f, l_ + 1)}
    assert set(held) <= covered
    for s in list(held):
        assert r.unpin(0, s, held, pos) == 0
    assert r.spans(0) == [] and r.slot(0, K.RD_HELD) == 0
    assert r.unpin(0, 99, [99], {99: (0, 1)}) == K.NOT_HELD


def test_a_claim_beyond_the_span_limit_merges_the_closest_spans() -> None:
    r = Ring(n_slots=64, arena=10_000)
    r.attach()
    pos = {}
    held = []
    for _ in range(2 * K.PIN_SPANS + 2):
        r.try_write(10)
    for _ in range(2 * K.PIN_SPANS + 2):
        s, v0, n, _ = r.try_read(0)
        pos[s] = (v0, v0 + n)
        held.append(s)
        if s % 2 == 1:  # keep only even batches: one span per kept batch until full
            r.unpin(0, s, held, pos)
    spans = r.spans(0)
    assert len(spans) == K.PIN_SPANS
    covered = {s for f, l_, _, _ in spans for s in range(f, l_ + 1)}
    assert set(held) <= covered


# ------------------------------------------------------------------------------------------
# overwrite mode


def test_overwrite_mode_laps_an_unread_reader_which_counts_what_it_missed() -> None:
    r = Ring(n_slots=4, arena=10_000, mode=K.MODE_OVERWRITE)
    r.attach()
    for i in range(10):
        assert r.try_write(8) == i  # never gated by unread batches
    seq, _, _, missed = r.try_read(0)
    assert seq == int(r.h(K.H_RECLAIM)) == 6 and missed == 6
    assert r.slot(0, K.RD_MISSED) == 6
    assert [r.try_read(0)[0] for _ in range(3)] == [7, 8, 9]


def test_overwrite_mode_never_overwrites_a_held_batch() -> None:
    r = Ring(n_slots=64, arena=100, mode=K.MODE_OVERWRITE)
    r.attach()
    r.try_write(40)
    assert r.try_read(0)[0] == 0
    starts = []
    for _ in range(20):
        assert r.try_write(40) >= 0
        starts.append(int(r.out[K.O_START]))
    assert all(v % 100 >= 40 for v in starts)
    # fill the rest of the arena with pins too: now the writer must wait
    missed = r.try_read(0)[3]
    assert missed > 0
    assert r.try_write(70) == K.GATED and r.out[K.O_GATE_KIND] == K.GATE_PINNED


def test_overwrite_claim_is_undone_when_the_writer_reclaims_first() -> None:
    # Simulate the race: the reader reads the descriptor, the writer then reclaims it.
    r = Ring(n_slots=4, arena=10_000, mode=K.MODE_OVERWRITE)
    r.attach()
    for _ in range(4):
        r.try_write(8)
    # the writer's horizon passes batch 0 (as if it claimed after the reader's first look)
    r.words[r.HDR + K.H_RECLAIM] = 2
    seq, _, _, missed = r.try_read(0)
    assert (seq, missed) == (2, 2)
    assert r.spans(0) == [(2, 2, 16, 24)]


# ------------------------------------------------------------------------------------------
# readers: attach, drain, detach, evict


def test_attach_earliest_starts_at_reclaim_and_latest_at_the_cursor() -> None:
    r = Ring(n_slots=4, arena=10_000, mode=K.MODE_OVERWRITE)
    for _ in range(10):
        r.try_write(8)
    assert r.attach(pid=1) == 0 and int(r.out[K.O_READ]) == r.h(K.H_RECLAIM) == 6
    assert r.attach(pid=2, latest=True) == 1 and int(r.out[K.O_READ]) == 10
    assert r.try_read(1)[0] == K.EMPTY


def test_reader_slots_run_out_and_eviction_frees_one() -> None:
    r = Ring(max_readers=2)
    assert r.attach(pid=5) == 0 and r.attach(pid=6) == 1
    assert r.attach(pid=7) == K.FULL
    assert K.ring_evict(r.words, r.w32, r.geo, 0, 999, 1) == 0  # wrong pid: untouched
    assert K.ring_evict(r.words, r.w32, r.geo, 0, 5, 1) == 1
    assert r.slot(0, K.RD_STATE) == K.RD_FREE and r.slot(0, K.RD_PID) == 0
    assert r.h(K.H_EVICTED) == 1
    assert r.attach(pid=7) == 0


def test_a_draining_reader_gates_only_with_its_pins() -> None:
    r = Ring(n_slots=4, arena=10_000)
    r.attach(pid=5)
    for _ in range(4):
        r.try_write(8)
    assert r.try_write(8) == K.GATED
    K.ring_reader_drain(r.words, r.w32, r.geo, 0)
    assert r.try_write(8) == 4  # unread batches no longer hold the writer
    assert K.ring_reader_detach(r.words, r.w32, r.geo, 0, 6) == K.NOT_OWNER
    assert K.ring_reader_detach(r.words, r.w32, r.geo, 0, 5) == 0
    assert r.slot(0, K.RD_PID) == 0


# ------------------------------------------------------------------------------------------
# waiting and waking (real futexes)


def test_waits_time_out_with_etimedout() -> None:
    r = Ring(n_slots=2)
    r.attach()
    t0 = time.monotonic()
    assert K.ring_wait_for(r.words, r.w32, r.geo, 0, 1000, 20_000_000) == K.TIMEOUT
    assert time.monotonic() - t0 >= 0.015
    assert K.ring_read(r.words, r.w32, r.geo, 0, 0, 5_000_000, r.out) == K.TIMEOUT
    r.try_write(1)
    r.try_write(1)
    rc = K.ring_claim(r.words, r.w32, r.geo, r.head, 1, 0, 0, 1000, 20_000_000, r.out)
    assert rc == K.TIMEOUT and r.out[K.O_N_GATING] == 1
    assert r.h(K.H_SPACE_WAITERS) == 0 and r.h(K.H_DATA_WAITERS) == 0
    assert r.h(K.H_GATED_SINCE) != 0 and r.h(K.H_WAITS) == 1


def test_notify_without_sleepers_makes_no_wake_call() -> None:
    r = Ring()
    before = int(r.w32[2 * (r.HDR + K.H_DATA_FUTEX)])
    assert K.ring_notify(r.words, r.w32, r.HDR + K.H_DATA_FUTEX, r.HDR + K.H_DATA_WAITERS) == 0
    assert int(r.w32[2 * (r.HDR + K.H_DATA_FUTEX)]) == before  # no bump either


def _in_thread(fn: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    t.start()
    return t, result


@pytest.mark.timeout(30)
def test_a_sleeping_reader_is_woken_by_a_publish() -> None:
    r = Ring()
    r.attach()
    t, result = _in_thread(
        lambda: int(K.ring_wait_for(r.words, r.w32, r.geo, 0, 0, 10_000_000_000))
    )
    deadline = time.monotonic() + 10
    while r.h(K.H_DATA_WAITERS) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert r.h(K.H_DATA_WAITERS) == 1
    r.try_write(4)
    t.join(10)
    assert result == [1]
    assert r.h(K.H_DATA_WAITERS) == 0


@pytest.mark.timeout(30)
def test_a_sleeping_reader_is_woken_by_close() -> None:
    r = Ring()
    r.attach()
    t, result = _in_thread(
        lambda: int(K.ring_wait_for(r.words, r.w32, r.geo, 0, 0, 10_000_000_000))
    )
    deadline = time.monotonic() + 10
    while r.h(K.H_DATA_WAITERS) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    K.ring_close(r.words, r.w32, r.geo, K.CLOSED_CLOSED)
    t.join(10)
    assert result == [K.CLOSED]


@pytest.mark.timeout(30)
def test_a_sleeping_writer_is_woken_by_a_release() -> None:
    r = Ring(n_slots=64, arena=100)
    r.attach()
    for _ in range(4):
        r.try_write(25)
    pos = {}
    held = []
    for _ in range(4):
        s, v0, n, _ = r.try_read(0)
        pos[s] = (v0, v0 + n)
        held.append(s)
    out = np.zeros(K.OUT_WORDS, dtype=np.uint64)
    t, result = _in_thread(lambda: int(K.ring_claim(
        r.words, r.w32, r.geo, r.head, 25, 0, 0, 0, 10_000_000_000, out)))
    deadline = time.monotonic() + 10
    while r.h(K.H_SPACE_WAITERS) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert r.h(K.H_SPACE_WAITERS) == 1
    r.unpin(0, 0, held, pos)
    t.join(10)
    assert result == [4] and int(out[K.O_START]) == 100


def _child_waits(name: str, size: int, q: Any) -> None:
    import mmap

    import posix_ipc

    shm = posix_ipc.SharedMemory(name)
    mm = mmap.mmap(shm.fd, size)
    shm.close_fd()
    words = np.frombuffer(mm, dtype=np.uint64)
    r = Ring(words=words)
    q.put("ready")
    q.put(int(K.ring_read(r.words, r.w32, r.geo, 0, 0, 20_000_000_000, r.out)))
    q.put(int(K.ring_read(r.words, r.w32, r.geo, 0, 0, 20_000_000_000, r.out)))


@pytest.mark.timeout(60)
def test_a_reader_in_another_process_sleeps_and_is_woken(
    segment: Callable[[int], Segment], children: Any
) -> None:
    seg = segment(1 << 16)
    r = Ring(words=seg.u64())
    assert r.attach(pid=4242) == 0
    q = children.ctx.Queue()
    proc = children.start(_child_waits, seg.name, seg.size, q)
    assert q.get(timeout=30) == "ready"
    deadline = time.monotonic() + 20
    while r.h(K.H_DATA_WAITERS) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    r.try_write(16)
    assert q.get(timeout=20) == 0
    K.ring_close(r.words, r.w32, r.geo, K.CLOSED_CLOSED)
    assert q.get(timeout=20) == K.CLOSED
    proc.join(20)
    assert proc.exitcode == 0
