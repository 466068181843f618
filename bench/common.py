"""Shared pieces of the benchmarks: the table, statistics, machine facts, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20


def make_table(target_bytes: int, seed: int = 0) -> pa.Table:
    """int64, float64 and utf8 (16 characters) columns totalling about *target_bytes*."""
    rows = max(1, target_bytes // 36)  # 8 + 8 + 16 chars + 4 offset bytes
    rng = np.random.default_rng(seed)
    strings = pc.utf8_lpad(pc.cast(pa.array(np.arange(rows, dtype=np.int64) + seed), pa.string()),
                           16, padding="x")
    return pa.table({"id": pa.array(rng.integers(0, 1 << 62, rows, dtype=np.int64)),
                     "value": pa.array(rng.random(rows)), "label": strings})


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def memcpy_seconds(nbytes: int, reps: int = 5) -> float:
    """Median time to copy *nbytes* into memory that is already touched."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty(nbytes, dtype=np.uint8)
    np.copyto(dst, src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return median(times)


def machine() -> dict[str, Any]:
    """Machine, versions and commit, for the record."""
    import numba

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import arrowshm

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "arrowshm": arrowshm.__version__,
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
