"""Fuzzing with atheris (libFuzzer's mutator) of ``get(validate=True)`` over
corrupted dataset segments (header fields and Arrow IPC payload). arrowshm is not
instrumented for coverage (atheris' import hooks break the numba kernels' typing),
so libFuzzer mutates without coverage feedback.

atheris runs in a child process: a crash (signal), a hang (libFuzzer's
``-timeout``) or an exception other than ArrowShmError ends it with a non-zero
exit status and a report, which fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("atheris")

_FUZZER = textwrap.dedent(
    """
    import sys
    import atheris
    import numpy as np
    import pyarrow as pa
    import arrowshm  # not instrumented: atheris' hooks break the numba kernels' typing
    from arrowshm._shm import layout as L
    from arrowshm._datasets.get import clear_cache
    from arrowshm._shm.registry import registry_of
    from arrowshm._shm.segment import Segment
    from arrowshm._names import current_namespace

    n = 200
    table = pa.table({
        "i": pa.array(np.arange(n, dtype=np.int64)),
        "s": pa.array([f"v{k}" * (k % 3) for k in range(n)]),
        "l": pa.array([list(range(k % 4)) for k in range(n)], pa.list_(pa.int32())),
    })
    arrowshm.put("atheris", table)
    reg = registry_of(current_namespace())
    view = reg.get_entry("atheris")
    seg = Segment.open(reg.segment_name(view.segment_id), writable=True)
    start = 0
    end = L.SEGMENT_HEADER_BYTES + view.data_bytes
    saved = bytes(seg.mm[start:end])
    header_fields = 160  # the header words a reader uses (not the pin table)
    payload = end - L.SEGMENT_HEADER_BYTES

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        seg.mm[start:end] = saved
        for _ in range(fdp.ConsumeIntInRange(1, 8)):
            if fdp.ConsumeBool():
                off = fdp.ConsumeIntInRange(0, header_fields - 1)
            else:
                off = L.SEGMENT_HEADER_BYTES + fdp.ConsumeIntInRange(0, payload - 1)
            seg.mm[off] = fdp.ConsumeIntInRange(0, 255)
        clear_cache()
        try:
            t = arrowshm.get("atheris", validate=True)
            for col in t.columns:
                col.to_pylist()
            del t
        except arrowshm.ArrowShmError:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
    """
)


def _run(namespace: str, runs: int, tmp: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _FUZZER, f"-runs={runs}", "-timeout=20", "-seed=1",
         f"-artifact_prefix={tmp}/"],
        capture_output=True, text=True, timeout=1700,
        env=dict(os.environ, PYTHONPATH=os.getcwd()), cwd=tmp,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"Done (\d+) runs", out)
    assert m, out[-2000:]
    print(f"\natheris: {m.group(0)}")
    return out


@pytest.mark.timeout(240)
def test_atheris_get_validate_survives_corrupted_segments(namespace: str,
                                                         tmp_path: object) -> None:
    _run(namespace, 400, str(tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_atheris_get_validate_long(namespace: str, tmp_path: object) -> None:
    _run(namespace, 5_000, str(tmp_path))
