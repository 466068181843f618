"""Shared test helpers: tables that check themselves, child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def make_table(rows: int, seed: int = 0) -> pa.Table:
    """int64 / float64 / utf8 columns, deterministic in *seed*."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64) + seed * 1_000_000),
            "value": pa.array(rng.random(rows)),
            "label": pc.cast(pa.array(np.arange(rows, dtype=np.int64) * 7 + seed), pa.string()),
        }
    )


def stamped_table(version_tag: int, rows: int) -> pa.Table:
    """A table whose every value derives from *version_tag*, so a reader can
    verify it is whole (see :func:`check_stamped`)."""
    ids = np.full(rows, version_tag, dtype=np.int64)
    vals = np.arange(rows, dtype=np.float64) + version_tag
    return pa.table({"tag": ids, "v": vals, "tail": np.full(rows, version_tag, dtype=np.int64)})


def check_stamped(table: pa.Table) -> int:
    """The tag of a stamped table; raises AssertionError if the table is torn."""
    tag = table.column("tag").to_numpy()
    assert len(tag) > 0, "empty table"
    t = int(tag[0])
    assert (tag == t).all(), "torn: mixed tags"
    assert (table.column("tail").to_numpy() == t).all(), "torn: tail"
    v = table.column("v").to_numpy()
    assert (v == np.arange(len(v), dtype=np.float64) + t).all(), "torn: values"
    return t


def run_python(code: str, *, timeout: float = 120, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with this test's namespace."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def spare_objects(namespace: str) -> list[str]:
    """Objects the namespace's spare table lists, after checking the table holds no
    slot a dead process left busy and lists every POOLED segment (none unlisted)."""
    from arrowshm._shm.registry import registry_of
    from arrowshm._shm.spares import SpareTable
    from arrowshm.testing import pooled_objects

    reg = registry_of(namespace)
    slots = SpareTable(reg.words).slots()
    assert all(s.ready for s in slots), [(s.index, s.busy_pid) for s in slots]
    listed = sorted(reg.segment_name(s.segment_id) for s in slots)
    assert sorted(pooled_objects(namespace)) == listed, (pooled_objects(namespace), listed)
    return listed
