"""Bad input: bytes of live segments (dataset headers, Arrow IPC payloads, stream
headers/rings/arenas) and registry entries are corrupted, then a *child* process
gets/reads them. Outcomes are classified: ok / ArrowShmError / other exception /
signal / hang. Signal and hang are forbidden; another exception is a bug.

Trust model. ``get(validate=True)`` (and a stream batch validated with
``batch.validate(full=True)``, see below) must never crash the reader however the
bytes were mangled, even while consuming every value. ``get(validate=False)``
trusts the payload, so only the call itself (header, registry, IPC metadata
parsing) is held to the rule; consuming unvalidated garbage is not.

``StreamReader(validate=True)`` validates every batch (tested in
tests/arrowshm/test_stream_validate.py); without it a reader validates only
when the stream's segment belongs to another uid. The stream fuzz therefore
calls ``batch.validate(full=True)`` itself before consuming a batch; a batch it
rejects is its own outcome class ("rejected by the caller's batch.validate").
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowshm
from arrowshm._names import current_namespace
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment
from tests.reliability._util import (
    ARROWSHM_ERROR,
    HANG,
    OK,
    OTHER_EXCEPTION,
    REJECTED,
    REJECTED_EXIT,
    SIGNAL,
    check_seq_batch,
    classify_in_child,
    seq_batch,
)

DS = "fuzz/ds"
ST = "fuzz/st"
OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
DETAILS: dict[str, list[str]] = collections.defaultdict(list)


def _table() -> pa.Table:
    n = 300
    return pa.table({
        "i": pa.array(np.arange(n, dtype=np.int64)),
        "f": pa.array([None if k % 7 == 0 else k * 0.5 for k in range(n)]),
        "s": pa.array([f"row-{k}" * (k % 4) for k in range(n)]),
        "l": pa.array([list(range(k % 5)) for k in range(n)], pa.list_(pa.int32())),
        "d": pa.array([f"cat{k % 3}" for k in range(n)]).dictionary_encode(),
    })


def _consume(table: Any) -> None:
    for col in table.columns:
        col.to_pylist()


def _child_get(validate: bool) -> None:
    t = arrowshm.get(DS, validate=validate)
    if validate:
        _consume(t)  # validated data must be safe to touch everywhere
    else:
        _ = t.num_rows, t.schema


def _child_stream(report: str) -> None:
    with arrowshm.StreamReader(ST, spin_us=0) as r:
        for _ in range(16):
            b = r.read(timeout=2)
            if b is None:
                return
            try:
                b.validate(full=True)  # what a same-uid reader must do itself (no validate=)
            except pa.ArrowInvalid as exc:
                with open(report, "w") as f:
                    f.write(f"ArrowInvalid: {exc}")
                os._exit(REJECTED_EXIT)
            _consume(b)
            del b


def _child_stream_attached(report: str, shm_name: str, start: int, length: int,
                           edits: list[tuple[int, int]], after: int) -> None:
    """Attach first, then corrupt the ring (after *after* reads), then read on: the
    words a reader trusts once attached (descriptors, cursors, its own pin table)
    are as untrusted as any others."""
    seg = Segment.open(shm_name, writable=True)
    with arrowshm.StreamReader(ST, spin_us=0) as r:
        for i in range(16):
            if i == after:
                for off, val in edits:
                    seg.mm[start + off % length] = val
            b = r.read(timeout=2)
            if b is None:
                return
            try:
                b.validate(full=True)
            except pa.ArrowInvalid as exc:
                with open(report, "w") as f:
                    f.write(f"ArrowInvalid: {exc}")
                os._exit(REJECTED_EXIT)
            _consume(b)
            del b


class _Target:
    """A live object whose bytes can be corrupted and restored."""

    def __init__(self, shm_name: str, start: int, length: int) -> None:
        self.seg = Segment.open(shm_name, writable=True)
        self.start, self.length = start, min(length, self.seg.size - start)
        self.saved = bytes(self.seg.mm[self.start:self.start + self.length])

    def corrupt(self, edits: list[tuple[int, int]]) -> None:
        for off, val in edits:
            self.seg.mm[self.start + off % self.length] = val

    def restore(self) -> None:
        self.seg.mm[self.start:self.start + self.length] = self.saved


def _dataset_targets() -> dict[str, _Target]:
    arrowshm.put(DS, _table())
    reg = registry_of(current_namespace())
    view = reg.get_entry(DS)
    shm = reg.segment_name(view.segment_id)
    data_bytes = view.data_bytes
    return {
        "segment header": _Target(shm, 0, 160),  # the fields a reader uses (not the pins)
        "Arrow IPC payload": _Target(shm, L.SEGMENT_HEADER_BYTES, data_bytes),
        "registry entry": _Target(reg.shm_name, L.REGISTRY_HEADER_BYTES + view.slot * L.ENTRY_BYTES,
                                  L.ENTRY_BYTES),
    }


def _stream_targets() -> dict[str, _Target]:
    schema = seq_batch(0, 1).schema
    with arrowshm.StreamWriter(ST, schema, capacity_bytes=64 << 10, slots=16) as w:
        for k in range(6):
            w.write(seq_batch(k, 50 + 40 * k))
    reg = registry_of(current_namespace())
    view = reg.get_entry(ST)
    seg = Segment.open(reg.segment_name(view.segment_id))
    size, name = seg.size, seg.name
    del seg
    return {
        "stream segment header+ring": _Target(name, 0, min(size, 64 << 10) - 0),
        "stream arena": _Target(name, size - (64 << 10), 64 << 10),
    }


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                  max_size=8)


def _check(kind: str, outcome: str, detail: str) -> None:
    OUTCOMES[kind][outcome] += 1
    if outcome not in (OK, ARROWSHM_ERROR) and len(DETAILS[kind]) < 20:
        DETAILS[kind].append(f"{outcome}: {detail}")
    assert outcome not in (SIGNAL, HANG), f"FORBIDDEN {outcome} ({kind}): {detail}"
    assert outcome != OTHER_EXCEPTION, f"bug: {kind}: {detail}"
    assert outcome != REJECTED or kind.startswith("stream"), detail


@pytest.fixture
def report(tmp_path: Path) -> Iterator[str]:
    OUTCOMES.clear()
    DETAILS.clear()
    yield str(tmp_path / "child.txt")
    print("\nfuzz outcomes:", {k: dict(v) for k, v in OUTCOMES.items()})
    for k, v in DETAILS.items():
        print(k, v[:5])


def _fuzz_datasets(report: str, examples: int) -> None:
    targets = _dataset_targets()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(region=st.sampled_from(sorted(targets)), edits=_EDITS, validate=st.booleans())
    def run(region: str, edits: list[tuple[int, int]], validate: bool) -> None:
        t = targets[region]
        t.corrupt(edits)
        try:
            outcome, detail = classify_in_child(current_namespace(), _child_get, (validate,),
                                                report)
        finally:
            t.restore()
        _check(f"{region} (validate={validate})", outcome, detail)

    run()
    assert arrowshm.get(DS, validate=True).equals(_table())  # restored and intact


def _fuzz_streams(report: str, examples: int) -> None:
    targets = _stream_targets()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(region=st.sampled_from(sorted(targets)), edits=_EDITS)
    def run(region: str, edits: list[tuple[int, int]]) -> None:
        t = targets[region]
        t.corrupt(edits)
        try:
            outcome, detail = classify_in_child(current_namespace(), _child_stream, (report,),
                                                report)
        finally:
            t.restore()
        _check(region, outcome, detail)

    run()
    with arrowshm.StreamReader(ST) as r:
        assert [check_seq_batch(b) for b in r] == list(range(6))


def _attached_targets() -> dict[str, _Target]:
    """The words a reader uses after attaching: cursors, descriptors, reader slots
    (its own pin table included), and the arena."""
    whole = _stream_targets()["stream segment header+ring"]
    name, w = whole.seg.name, whole.seg.words
    readers, ring = int(w[L.ST_READERS_OFFSET]), int(w[L.ST_RING_OFFSET])
    arena_off, arena = int(w[L.ST_ARENA_OFFSET]), int(w[L.ST_ARENA_BYTES])
    n_slots, max_readers = int(w[L.ST_N_SLOTS]), int(w[L.ST_MAX_READERS])
    return {
        "ring header": _Target(name, L.ST_RING_HEADER * 8, 320),
        "ring descriptors": _Target(name, ring, n_slots * L.DESC_BYTES),
        "reader slots": _Target(name, readers, max_readers * L.SLOT_BYTES),
        "stream arena": _Target(name, arena_off, arena),
    }


def _fuzz_streams_attached(report: str, examples: int) -> None:
    targets = _attached_targets()
    regions = {name: (t.seg.name, t.start, t.length) for name, t in targets.items()}

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(region=st.sampled_from(sorted(targets)), edits=_EDITS, after=st.integers(0, 4))
    def run(region: str, edits: list[tuple[int, int]], after: int) -> None:
        t = targets[region]
        try:
            outcome, detail = classify_in_child(
                current_namespace(), _child_stream_attached,
                (report, *regions[region], edits, after), report)
        finally:
            t.restore()
        _check(f"{region} (corrupted after attach)", outcome, detail)

    run()
    with arrowshm.StreamReader(ST) as r:
        assert [check_seq_batch(b) for b in r] == list(range(6))


@pytest.mark.timeout(240)
def test_corrupted_dataset_bytes_never_crash_a_reader(report: str) -> None:
    _fuzz_datasets(report, examples=60)


@pytest.mark.timeout(240)
def test_corrupted_stream_bytes_never_crash_a_reader(report: str) -> None:
    _fuzz_streams(report, examples=40)


@pytest.mark.timeout(240)
def test_rings_corrupted_after_attach_never_crash_a_reader(report: str) -> None:
    _fuzz_streams_attached(report, examples=40)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_rings_corrupted_after_attach_never_crash_a_reader_long(report: str) -> None:
    """The long run: 1,000 cases of corruption after attach and between reads."""
    _fuzz_streams_attached(report, examples=1_000)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_rings_corrupted_after_attach_never_crash_a_reader_with_boundscheck(
    report: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once with NUMBA_BOUNDSCHECK=1 (the children compile every kernel afresh, into a
    cache of their own): numba's own index checks must never fire either."""
    monkeypatch.setenv("NUMBA_BOUNDSCHECK", "1")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-boundscheck"))
    _fuzz_streams_attached(report, examples=200)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_corrupted_dataset_bytes_never_crash_a_reader_long(report: str) -> None:
    _fuzz_datasets(report, examples=300)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_corrupted_stream_bytes_never_crash_a_reader_long(report: str) -> None:
    _fuzz_streams(report, examples=200)


_DICT_TABLE = pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode()})
_INT_TABLE = pa.table({"i": pa.array(np.arange(10, dtype=np.int64))})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("table", "offset", "value", "escapes"), [
    (_INT_TABLE, 108, 0, pa.ArrowNotImplementedError),  # the int64 field's bit width
    (_DICT_TABLE, 75, 2, pa.ArrowNotImplementedError),
    (_DICT_TABLE, 44, 0, pa.ArrowKeyError),             # dictionary id
    (_DICT_TABLE, 100, 255, UnicodeDecodeError),        # field name no longer UTF-8
], ids=["int-bitwidth", "dict-bitwidth", "dict-id", "field-name"])
def test_ipc_parse_errors_of_any_kind_become_corrupt_segment_error(
        namespace: str, table: pa.Table, offset: int,
                                               value: int, escapes: type) -> None:
    from arrowshm._datasets.get import clear_cache

    arrowshm.put("x", table)
    reg = registry_of(namespace)
    seg = Segment.open(reg.segment_name(reg.get_entry("x").segment_id),
                       writable=True)
    seg.mm[L.SEGMENT_HEADER_BYTES + offset] = value
    clear_cache()
    try:
        arrowshm.get("x", validate=True)
    except arrowshm.CorruptSegmentError:
        return  # fixed
    except escapes:
        raise
    raise AssertionError("the corruption went unnoticed")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("owner", ["none", "live"])
def test_a_record_stuck_mid_write_is_an_error_not_a_hang(
    namespace: str, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the long fuzz: a registry entry whose seqlock reads odd (mid-write)
    with no writer holding its lock made every get() spin forever. Now a reader
    waits at most ARROWSHM_STALL_TIMEOUT_S: corrupt when nobody holds the lock, a
    timeout naming the pid when a live process does (stopped inside its write)."""
    import time

    from arrowshm._datasets.get import clear_cache

    arrowshm.put("x", _INT_TABLE)
    reg = registry_of(namespace)
    slot = reg.get_entry("x").slot
    seq_idx, lock_idx = reg.ew(slot, L.E_SEQLOCK), reg.ew(slot, L.E_LOCK)
    saved_seq, saved_lock = int(reg.words[seq_idx]), int(reg.words[lock_idx])
    monkeypatch.setenv("ARROWSHM_STALL_TIMEOUT_S", "0.5")
    clear_cache()
    reg.words[seq_idx] = saved_seq + 1  # odd: mid-write
    if owner == "live":
        reg.words[lock_idx] = os.getpid()  # a live holder (as if stopped mid-write)
    expected = arrowshm.WaitTimeoutError if owner == "live" else arrowshm.CorruptSegmentError
    try:
        t0 = time.monotonic()
        with pytest.raises(expected) as err:
            arrowshm.get("x")
        assert time.monotonic() - t0 < 30  # a watchdog: it returned at all
        assert "'x'" in str(err.value)
        if owner == "live":
            assert str(os.getpid()) in str(err.value)
    finally:
        reg.words[lock_idx] = saved_lock
        reg.words[seq_idx] = saved_seq
    assert arrowshm.get("x").equals(_INT_TABLE)  # restored: readable again


@pytest.mark.timeout(60)
def test_a_corrupt_stream_schema_of_any_kind_is_corrupt_segment_error(namespace: str) -> None:
    """Found by the stream fuzz: a schema message whose int64 bit width reads 0 made
    the reader raise pyarrow's ArrowNotImplementedError instead of CorruptSegmentError."""
    with arrowshm.StreamWriter("s", _INT_TABLE.schema, capacity_bytes=64 << 10) as w:
        reg = registry_of(namespace)
        seg = Segment.open(reg.segment_name(reg.get_entry("s").segment_id),
                           writable=True)
        msg = _INT_TABLE.schema.serialize().to_pybytes()
        at = L.STREAM_SCHEMA_OFFSET
        assert bytes(seg.mm[at:at + len(msg)]) == msg  # stored as pyarrow serializes it
        at += msg.index(b"\x40")  # the int64 field's bit width (64)
        seg.mm[at] = 0
        with pytest.raises(arrowshm.CorruptSegmentError):
            arrowshm.StreamReader("s", open_timeout=5)
        seg.mm[at] = 0x40
        w.write(_INT_TABLE.to_batches()[0])
