"""Soak: 2 writers (a dataset and a stream) and 6 readers (3 of each) run
together, everything checksummed: zero lost or corrupt batches, zero torn
tables; the processes' RSS and the namespace's /dev/shm usage are sampled and
must stay flat. The long run (``-m slow``, 10 minutes) plots both over time into
docs/img/soak.png; the default run (20 s) plots into its tmp_path.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

import arrowshm
from arrowshm.testing import data_objects
from tests.helpers import check_stamped, spare_objects, stamped_table
from tests.reliability._util import check_seq_batch, ctx, rss_bytes, seq_batch, shm_bytes

DS, ST = "soak/ds", "soak/st"
REPO = Path(__file__).resolve().parents[2]


def _ds_writer(namespace: str, stop: Any, out: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(1)
    tag = puts = 0
    while not stop.is_set():
        tag += 1
        arrowshm.put(DS, stamped_table(tag, rng.randrange(1_000, 50_000)), retain=2)
        puts += 1
    out.put(("ds_writer", {"puts": puts}))


def _ds_reader(namespace: str, k: int, stop: Any, out: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    checked = torn = regressions = 0
    last = 0
    while not stop.is_set():
        table = arrowshm.get(DS)
        try:
            tag = check_stamped(table)
        except AssertionError:
            torn += 1
            continue
        if tag < last:
            regressions += 1
        last = tag
        checked += 1
        del table
    out.put((f"ds_reader{k}", {"checked": checked, "torn": torn, "regressions": regressions}))


def _st_writer(namespace: str, created: Any, go: Any, stop: Any, out: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rng = random.Random(2)
    with arrowshm.StreamWriter(ST, seq_batch(0, 1).schema, capacity_bytes=4 << 20,
                               max_readers=8, spin_us=0) as w:
        created.set()
        go.wait(60)
        seq = 0
        while not stop.is_set():
            w.write(seq_batch(seq, rng.randrange(10, 20_000)), timeout=60)
            seq += 1
    out.put(("st_writer", {"written": seq}))


def _st_reader(namespace: str, k: int, ready: Any, out: Any) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    read = corrupt = gaps = 0
    expect = 0
    with arrowshm.StreamReader(ST, spin_us=0) as r:
        ready.set()
        for batch in r:
            try:
                seq = check_seq_batch(batch)
            except AssertionError:
                corrupt += 1
                continue
            if seq != expect:
                gaps += 1
            expect = seq + 1
            read += 1
            del batch
        missed = r.missed
    out.put((f"st_reader{k}", {"read": read, "corrupt": corrupt, "gaps": gaps,
                               "missed": missed}))


def _soak(namespace: str, seconds: float, png: Path) -> dict[str, Any]:
    c = ctx()
    stop, created, go, out = c.Event(), c.Event(), c.Event(), c.Queue()
    procs: dict[str, Any] = {}
    arrowshm.put(DS, stamped_table(0, 1000), retain=2)
    procs["st_writer"] = c.Process(target=_st_writer, args=(namespace, created, go, stop, out))
    procs["st_writer"].start()
    assert created.wait(60)
    for k in range(3):
        ready = c.Event()
        procs[f"st_reader{k}"] = c.Process(target=_st_reader, args=(namespace, k, ready, out))
        procs[f"st_reader{k}"].start()
        assert ready.wait(60)
    go.set()
    procs["ds_writer"] = c.Process(target=_ds_writer, args=(namespace, stop, out))
    for k in range(3):
        procs[f"ds_reader{k}"] = c.Process(target=_ds_reader, args=(namespace, k, stop, out))
    for key in ("ds_writer", "ds_reader0", "ds_reader1", "ds_reader2"):
        procs[key].start()
    samples: list[tuple[float, dict[str, int], int]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            samples.append((time.monotonic() - t0,
                            {k: rss_bytes(p.pid) for k, p in procs.items()},
                            shm_bytes(namespace)))
            time.sleep(max(0.25, seconds / 1200))
    finally:
        stop.set()
        results = dict(out.get(timeout=120) for _ in procs)
        for p in procs.values():
            p.join(60)
    _plot(samples, png, seconds)
    return {"results": results, "samples": samples}


def _plot(samples: list[tuple[float, dict[str, int], int]], png: Path, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [s[0] for s in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for key in sorted(samples[0][1]):
        a.plot(ts, [s[1][key] / 2**20 for s in samples], label=key, lw=1)
    a.set_ylabel("RSS (MiB)")
    a.legend(fontsize=7, ncol=4)
    a.set_title(f"arrowshm soak: 2 writers + 6 readers, {seconds:.0f} s")
    b.plot(ts, [s[2] / 2**20 for s in samples], color="k", lw=1)
    b.set_ylabel("/dev/shm of the namespace (MiB)")
    b.set_xlabel("seconds")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def _flat(series: list[int], slack: int) -> bool:
    """No growth from the second quarter of the run to the last one (beyond *slack*
    bytes and 25 %): the first quarter is warm-up (imports, first faults, pool)."""
    n = len(series)
    q2 = max(series[n // 4 : n // 2])
    q4 = max(series[3 * n // 4 :])
    return q4 <= q2 * 1.25 + slack


def _check(run: dict[str, Any]) -> None:
    res, samples = run["results"], run["samples"]
    print("\nsoak results:", res)
    written = res["st_writer"]["written"]
    assert written > 0 and res["ds_writer"]["puts"] > 0
    for k in range(3):
        r = res[f"st_reader{k}"]
        assert r["corrupt"] == 0 and r["gaps"] == 0 and r["missed"] == 0, r
        assert r["read"] == written, (r, written)  # block mode: nothing lost
        d = res[f"ds_reader{k}"]
        assert d["torn"] == 0 and d["regressions"] == 0 and d["checked"] > 0, d
    assert len(samples) >= 20
    for key in samples[0][1]:
        series = [s[1][key] for s in samples if s[1].get(key)]
        assert _flat(series, 32 << 20), (key, series[:: max(1, len(series) // 20)])
    shm = [s[2] for s in samples]
    assert _flat(shm, 16 << 20), shm[:: max(1, len(shm) // 20)]
    print("rss MiB (max):", {k: max(s[1][k] for s in samples) >> 20 for k in samples[0][1]},
          "shm MiB (min/max):", min(shm) >> 20, max(shm) >> 20)


@pytest.mark.timeout(60)
def test_the_segment_id_spelled_reg_never_collides_with_the_registry(namespace: str) -> None:
    import numpy as np

    from arrowshm._shm import layout as L
    from arrowshm._shm.registry import registry_of
    from arrowshm.kernels.atomics import atomic_store

    arrowshm.put("first", stamped_table(1, 10))
    reg = registry_of(namespace)
    atomic_store(reg.words, L.H_NEXT_SEGMENT_ID, np.uint64(int("reg", 36)))
    arrowshm.put("second", stamped_table(2, 10))  # id 35512 would be named like the registry
    assert check_stamped(arrowshm.get("second")) == 2


def _assert_clean(namespace: str) -> None:
    # multiprocessing children end with os._exit (no atexit): the dataset writer's reuse
    # pool (retired, unpinned segments) is left to gc, like any dead writer's
    report = arrowshm.gc()
    print("gc after the soak:", len(report.segments), "segments,", report.bytes_freed, "bytes")
    live = len(arrowshm.info(DS).versions) + 1  # + the stream's segment
    spares = spare_objects(namespace)  # listed, bounded, reported: reusable, not leaked
    assert report.spares == len(spares)
    assert len(data_objects(namespace)) == live + len(spares), (data_objects(namespace), report)
    arrowshm.delete(ST)


@pytest.mark.timeout(180)
def test_soak_short(namespace: str, tmp_path: Path) -> None:
    run = _soak(namespace, 20, tmp_path / "soak.png")
    _check(run)
    _assert_clean(namespace)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_soak_10_minutes(namespace: str) -> None:
    run = _soak(namespace, 600, REPO / "docs" / "img" / "soak.png")
    _check(run)
    _assert_clean(namespace)
