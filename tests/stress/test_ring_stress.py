"""Cross-process stress of streams, with outcomes classified the jcstress way.

A writer publishes self-checking batches of random sizes into a small ring
(so it laps many times and jumps over pinned batches); reader processes read
every batch, keep a random few for a while and release them out of order,
and classify each observation:

==========================  ==========  ======================================
outcome                     block mode  overwrite mode
==========================  ==========  ======================================
ok (in order, whole)        ACCEPTABLE  ACCEPTABLE
missed (lapped, counted)    FORBIDDEN   ACCEPTABLE (must equal the gaps seen)
lost (gap not counted)      FORBIDDEN   FORBIDDEN
duplicated                  FORBIDDEN   FORBIDDEN
reordered                   FORBIDDEN   FORBIDDEN
torn (mixed values)         FORBIDDEN   FORBIDDEN
overwritten while held      FORBIDDEN   FORBIDDEN
==========================  ==========  ======================================

The default run is short; ``-m slow`` runs the long soak.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm import stream_info

CTX = mp.get_context("spawn")
SCHEMA = pa.schema([("seq", pa.int64()), ("x", pa.float64()), ("s", pa.string())])
FORBIDDEN = {
    "block": {"missed", "lost", "duplicated", "reordered", "torn", "overwritten_while_held"},
    "overwrite": {"lost", "duplicated", "reordered", "torn", "overwritten_while_held"},
}


def rows_of(seq: int) -> int:
    return 1 + (seq * 2654435761) % 257


def batch(seq: int) -> pa.RecordBatch:
    n = rows_of(seq)
    return pa.record_batch(
        [
            pa.array(np.full(n, seq, dtype=np.int64)),
            pa.array(np.arange(n, dtype=np.float64) * 0.5 + seq),
            pa.array([str(seq)] * n),
        ],
        schema=SCHEMA,
    )


def verify(b: pa.RecordBatch) -> int:
    seq_col = b.column(0).to_numpy()
    seq = int(seq_col[0])
    n = rows_of(seq)
    if (
        len(seq_col) != n
        or not (seq_col == seq).all()
        or not (b.column(1).to_numpy() == np.arange(n) * 0.5 + seq).all()
        or b.column(2).to_pylist() != [str(seq)] * n
    ):
        raise AssertionError(f"torn batch {seq}")
    return seq


def _batches(r: arrowshm.StreamReader, rng: random.Random, api: str) -> Any:
    """Every batch of the stream: one at a time, or from read_many runs of random size."""
    if api == "single":
        yield from r
        return
    while True:
        run = r.read_many(rng.randint(1, 6))
        if not run:
            return
        yield from run
        del run


def _stress_reader(name: str, q: Any, seed: int, api: str = "single") -> None:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    # a batch kept from a read_many run keeps the whole run (up to 6 batches) in the ring
    keep = 6 if api == "single" else 2
    try:
        with arrowshm.StreamReader(name, open_timeout=60) as r:
            q.put("attached")
            prev = -1
            gaps = 0
            held: list[tuple[int, pa.RecordBatch]] = []
            for b in _batches(r, rng, api):
                try:
                    seq = verify(b)
                except AssertionError:
                    counts["torn"] += 1
                    continue
                if seq == prev:
                    counts["duplicated"] += 1
                elif seq < prev:
                    counts["reordered"] += 1
                else:
                    gaps += seq - prev - 1
                    counts["ok"] += 1
                    prev = seq
                if rng.random() < 0.05:
                    held.append((seq, b))
                del b
                while held and (len(held) > keep or rng.random() < 0.1):
                    k, kept = held.pop(rng.randrange(len(held)))  # out of order
                    try:
                        if verify(kept) != k:
                            counts["overwritten_while_held"] += 1
                    except AssertionError:
                        counts["overwritten_while_held"] += 1
                    del kept
            for k, kept in held:
                try:
                    if verify(kept) != k:
                        counts["overwritten_while_held"] += 1
                except AssertionError:
                    counts["overwritten_while_held"] += 1
            missed = r.missed
        counts["missed"] += missed
        if gaps != missed:
            counts["lost"] += abs(gaps - missed)
        q.put(("done", dict(counts), prev))
    except BaseException as exc:
        q.put(("error", repr(exc)))


def run(mode: str, n: int, readers: int = 2, api: str = "single") -> list[dict[str, int]]:
    """*api* ``single``: write / iterate; ``burst``: write_many of random bursts /
    read_many of random runs."""
    name = f"stress-{mode}"
    queues = [CTX.Queue() for _ in range(readers)]
    procs = []
    rng = random.Random(n)
    with arrowshm.StreamWriter(name, SCHEMA, capacity_bytes=256 << 10, slots=256, mode=mode,
                               delete_on_close=True) as w:
        for i, q in enumerate(queues):
            p = CTX.Process(target=_stress_reader, args=(name, q, 1000 + i, api), daemon=True)
            p.start()
            procs.append(p)
        for q in queues:
            assert q.get(timeout=60) == "attached"
        seq = 0
        while seq < n:
            if api == "single":
                w.write(batch(seq), timeout=60)
                seq += 1
            else:
                k = min(n - seq, rng.randint(1, 40))
                w.write_many([batch(s) for s in range(seq, seq + k)], timeout=60)
                seq += k
                if mode == "overwrite" and rng.random() < 0.5:
                    time.sleep(0.0005)  # (bursts lap the readers at once: let them read some)
        laps = w._head / w.capacity_bytes
        skipped = int(stream_info(name).readers[0].pinned_bytes >= 0)
    results = []
    for q in queues:
        msg = q.get(timeout=120)
        assert msg[0] == "done", msg
        _, counts, last = msg
        assert last == n - 1, f"the last batch never arrived ({last})"
        results.append(counts)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert laps > 20 and skipped
    print(f"\n{mode}: {n} batches, {laps:.0f} laps: " + "; ".join(
        ", ".join(f"{k}={v}" for k, v in sorted(c.items())) for c in results))
    return results


def classify(mode: str, results: list[dict[str, int]], n: int) -> None:
    for counts in results:
        bad = {k: v for k, v in counts.items() if k in FORBIDDEN[mode] and v}
        assert not bad, f"FORBIDDEN outcomes in {mode} mode: {bad}"
        assert counts.get("ok", 0) + counts.get("missed", 0) == n


@pytest.mark.parametrize("api", ["single", "burst"])
@pytest.mark.parametrize("mode", ["block", "overwrite"])
@pytest.mark.timeout(180)
def test_no_batch_is_lost_duplicated_reordered_or_torn(mode: str, api: str) -> None:
    n = 6000
    classify(mode, run(mode, n, api=api), n)


def _victim(name: str, q: Any) -> None:
    """Read and hold batches until killed."""
    r = arrowshm.StreamReader(name, open_timeout=60, spin_us=0)
    q.put(("attached", os.getpid()))
    held = []
    for b in r:
        verify(b)
        held.append(b)
        # at most 6 batches (< 90 KB) each: two live victims must leave the writer room in
        # the 256 KiB arena, or it waits (rightly) for readers that wait for it
        if len(held) > 6:
            del held[:3]


@pytest.mark.parametrize("mode", ["block", "overwrite"])
@pytest.mark.timeout(180)
def test_readers_killed_mid_stream_while_holding_batches_cost_nothing(mode: str) -> None:
    import signal

    n = 6000
    name = f"kill-{mode}"
    q_ok, q_v1, q_v2 = CTX.Queue(), CTX.Queue(), CTX.Queue()
    with arrowshm.StreamWriter(name, SCHEMA, capacity_bytes=256 << 10, slots=256, mode=mode,
                               evict_after=0.5, delete_on_close=True) as w:
        survivor = CTX.Process(target=_stress_reader, args=(name, q_ok, 7), daemon=True)
        victims = [CTX.Process(target=_victim, args=(name, q), daemon=True)
                   for q in (q_v1, q_v2)]
        for p in (survivor, *victims):
            p.start()
        assert q_ok.get(timeout=60) == "attached"
        pids = [q.get(timeout=60)[1] for q in (q_v1, q_v2)]
        for seq in range(n):
            if seq in (n // 4, n // 2):  # SIGKILL a reader that holds batches, mid-stream
                os.kill(pids.pop(), signal.SIGKILL)
            w.write(batch(seq), timeout=60)
            if seq == n - 200:
                time.sleep(0.6)  # let evict_after pass: the last writes reap the dead
        info = stream_info(name)
    msg = q_ok.get(timeout=120)
    assert msg[0] == "done", msg
    _, counts, last = msg
    assert last == n - 1
    classify(mode, [counts], n)
    survivor.join(60)
    for p in victims:
        p.join(10)
    assert info.evicted == 2  # in the writer's way or not, the dead are evicted
    assert all(r.alive for r in info.readers)


@pytest.mark.slow
@pytest.mark.parametrize("api", ["single", "burst"])
@pytest.mark.parametrize("mode", ["block", "overwrite"])
@pytest.mark.timeout(1800)
def test_soak_no_batch_is_lost_duplicated_reordered_or_torn(mode: str, api: str) -> None:
    n = int(os.environ.get("ARROWSHM_STRESS_BATCHES", "300000"))
    t0 = time.monotonic()
    classify(mode, run(mode, n, readers=3, api=api), n)
    print(f"{mode}: {time.monotonic() - t0:.1f} s")
