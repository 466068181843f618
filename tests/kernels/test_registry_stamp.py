"""The registry-entry stamp: what a repeated ``get`` asks of the registry.

Outcome classes (jcstress style), for a reader that takes a stamp, reads the
record through the seqlock and takes the stamp again: equal non-negative
stamps with any record but exactly that stamp's is FORBIDDEN; unequal stamps,
``EBUSY`` or ``NOT_FOUND`` (the reader then takes the full path) are
ACCEPTABLE. A stamp older than a record word the reader already saw is
FORBIDDEN (``wait`` sees a version word, the ``get`` after it must not take
the old table).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from arrowshm._shm import layout as L
from arrowshm.kernels import atomic_load, atomic_store, seqlock_words, seqlock_write
from arrowshm.kernels import status as S
from arrowshm.kernels.registry import (
    ENTRY_GENERATION,
    ENTRY_SEQ,
    ENTRY_STATE,
    registry_entry_stamp,
)
from tests.kernels import helpers as H
from tests.kernels import stamp_helpers as SH
from tests.kernels.conftest import Children

E = 5  # an entry that does not start at word 0


def _entry(state: int = L.STATE_LIVE, generation: int = 7) -> np.ndarray[Any, Any]:
    words = np.zeros(E + ENTRY_SEQ + seqlock_words(4), np.uint64)
    words[E + ENTRY_STATE] = state
    words[E + ENTRY_GENERATION] = generation
    return words


def test_the_offsets_are_those_of_the_registry_entry() -> None:
    assert (ENTRY_STATE, ENTRY_GENERATION, ENTRY_SEQ) == (L.E_STATE, L.E_GENERATION,
                                                          L.E_SEQLOCK)


def test_a_live_entry_of_that_generation_gives_its_record_sequence() -> None:
    words = _entry()
    assert registry_entry_stamp(words, E, 7) == 0
    rec = np.arange(4, dtype=np.uint64)
    assert seqlock_write(words, E + ENTRY_SEQ, rec) == 2
    assert registry_entry_stamp(words, E, 7) == 2
    seqlock_write(words, E + ENTRY_SEQ, rec)  # any write moves it, even of the same words
    assert registry_entry_stamp(words, E, 7) == 4


@pytest.mark.parametrize("state", [L.STATE_EMPTY, L.STATE_CLAIMED, L.STATE_DELETED])
def test_an_entry_that_is_not_live_is_not_found(state: int) -> None:
    assert registry_entry_stamp(_entry(state), E, 7) == S.NOT_FOUND


def test_another_generation_is_not_found() -> None:
    words = _entry()
    assert registry_entry_stamp(words, E, 6) == S.NOT_FOUND
    assert registry_entry_stamp(words, E, 8) == S.NOT_FOUND


def test_a_write_in_progress_is_busy() -> None:
    words = _entry()
    words[E + ENTRY_SEQ] = 3
    assert registry_entry_stamp(words, E, 7) == S.EBUSY


@pytest.mark.parametrize("entry", [-1, -E, 10**6])
def test_an_entry_outside_the_words_is_invalid_not_read(entry: int) -> None:
    assert registry_entry_stamp(_entry(), entry, 7) == S.EINVAL
    words = _entry()
    assert registry_entry_stamp(words, len(words) - ENTRY_SEQ, 7) == S.EINVAL


def test_the_docstring_states_memory_ordering_and_codes() -> None:
    doc = registry_entry_stamp.__doc__ or ""
    assert "Memory ordering" in doc and "Returns" in doc
    for code in ("NOT_FOUND", "EBUSY", "EINVAL"):
        assert code in doc


# --------------------------------------------------------------------------
# Cross-process
# --------------------------------------------------------------------------


def _run(segment: Any, children: Children, readers: int, stamp_before: bool,
         reclaim_every: int, seconds: float) -> tuple[list[dict[str, int]], int]:
    seg: H.Segment = segment(8 * (SH.ENTRY + ENTRY_SEQ + seqlock_words(SH.N)) + 4096)
    words = seg.u64()
    words[SH.ENTRY + ENTRY_STATE] = SH.LIVE
    words[SH.ENTRY + ENTRY_GENERATION] = 1
    first = np.empty(SH.N, np.uint64)
    H.fill_payload(first, SH.FIRST)
    assert seqlock_write(words, SH.ENTRY + ENTRY_SEQ, first) == 2
    children.start(SH.stamp_writer, seg.name, reclaim_every)
    for r in range(readers):
        children.start(SH.stamp_reader, seg.name, r, stamp_before)
    H.wait_for(lambda: atomic_load(words, SH.READY) == readers + 1, 60, "children ready")
    time.sleep(seconds)
    atomic_store(words, H.STOP, 1)
    for proc in children.procs:
        proc.join(30)
        assert proc.exitcode == 0
    keys = ["checks", "bad", "later", "stale"]
    out = [{k: int(words[SH.RESULTS + 8 * r + j]) for j, k in enumerate(keys)}
           for r in range(readers)]
    return out, int(words[SH.ENTRY + ENTRY_SEQ]) // 2


@pytest.mark.timeout(120)
def test_equal_stamps_around_a_read_always_come_with_that_stamps_record(
    segment: Any, children: Children
) -> None:
    results, writes = _run(segment, children, readers=1, stamp_before=True,
                           reclaim_every=1024, seconds=3.0)
    print("stamp stress:", results, "writes", writes)
    assert writes > 10_000
    for res in results:
        assert res["bad"] == 0  # FORBIDDEN: a stale or torn record under a matching stamp
        assert res["stale"] == 0  # FORBIDDEN: a stamp older than a record word already seen
        assert res["checks"] > 1_000 and res["later"] > 1_000  # ...it did check, often


@pytest.mark.timeout(120)
def test_the_stress_test_detects_a_stamp_taken_only_after_the_read(
    segment: Any, children: Children
) -> None:
    """Control: without the stamp before the read, stale records go unnoticed."""
    results, _ = _run(segment, children, readers=1, stamp_before=False, reclaim_every=0,
                      seconds=1.5)
    print("stamp-after-only stress:", results)
    assert sum(res["bad"] for res in results) > 0
