"""Helpers of the reliability suite: fast real child processes, outcome classes,
/dev/shm accounting."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from arrowshm.testing import data_objects, namespace_objects

# A forkserver that has imported arrowshm once: each child starts in ~10-30 ms with a
# clean interpreter state (no inherited mappings or caches of the test process).
_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["arrowshm", "tests.helpers", "tests.reliability._util"])

OK, ARROWSHM_ERROR, OTHER_EXCEPTION, SIGNAL, HANG = (
    "ok", "ArrowShmError", "other exception", "signal", "hang")
REJECTED = "rejected by the caller's batch.validate"  # a child exits with REJECTED_EXIT
REJECTED_EXIT = 5
_EXIT_CODES = {0: OK, 3: ARROWSHM_ERROR, 4: OTHER_EXCEPTION, REJECTED_EXIT: REJECTED}


def ctx() -> Any:
    return _CTX


def _run_classified(namespace: str, fn: Callable[..., Any], args: tuple[Any, ...],
                    report_path: str) -> None:
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    import arrowshm

    try:
        fn(*args)
    except arrowshm.ArrowShmError as exc:
        _write(report_path, f"{type(exc).__name__}: {exc}")
        os._exit(3)
    except BaseException as exc:
        _write(report_path, f"{type(exc).__name__}: {exc}")
        os._exit(4)
    os._exit(0)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text[:2000])


def classify_in_child(namespace: str, fn: Callable[..., Any], args: tuple[Any, ...],
                      report_path: str, timeout: float = 20.0) -> tuple[str, str]:
    """Run ``fn(*args)`` in a fresh child; (outcome class, detail). A child still
    running after *timeout* is killed and classified as a hang."""
    with open(report_path, "w"):
        pass
    p = _CTX.Process(target=_run_classified, args=(namespace, fn, args, report_path))
    p.start()
    p.join(timeout)
    if p.is_alive():
        os.kill(p.pid or 0, signal.SIGKILL)
        p.join()
        return HANG, f"still running after {timeout} s"
    with open(report_path) as f:
        detail = f.read()
    code = p.exitcode or 0
    if code < 0:
        return SIGNAL, f"killed by {signal.Signals(-code).name}"
    return _EXIT_CODES.get(code, OTHER_EXCEPTION), detail or f"exit code {code}"


# -- checksummed batches ---------------------------------------------------------------------

SEQ_SCHEMA = pa.schema([("seq", pa.int64()), ("payload", pa.int64()), ("crc", pa.int64())])


def seq_batch(seq: int, rows: int) -> pa.RecordBatch:
    """Batch number *seq*: its payload derives from *seq*, its crc covers the payload."""
    payload = (np.arange(rows, dtype=np.int64) * 2654435761 + seq) & 0xFFFFFFFF
    crc = zlib.crc32(payload.tobytes())
    return pa.record_batch([pa.array(np.full(rows, seq, dtype=np.int64)), pa.array(payload),
                            pa.array(np.full(rows, crc, dtype=np.int64))], schema=SEQ_SCHEMA)


def check_seq_batch(batch: pa.RecordBatch) -> int:
    """The seq of a batch made by :func:`seq_batch`; AssertionError when it is corrupt."""
    seq_col = batch.column(0).to_numpy()
    assert len(seq_col) > 0, "empty batch"
    seq = int(seq_col[0])
    assert (seq_col == seq).all(), "corrupt: mixed seq"
    payload = batch.column(1).to_numpy()
    expected = (np.arange(len(payload), dtype=np.int64) * 2654435761 + seq) & 0xFFFFFFFF
    assert (payload == expected).all(), "corrupt: payload"
    crc = batch.column(2).to_numpy()
    assert (crc == zlib.crc32(payload.tobytes())).all(), "corrupt: crc"
    return seq


# -- /dev/shm accounting ---------------------------------------------------------------------

def shm_bytes(namespace: str) -> int:
    """Bytes of /dev/shm the namespace's objects occupy (allocated blocks)."""
    total = 0
    for name in namespace_objects(namespace):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat("/dev/shm" + name).st_blocks * 512
    return total


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


__all__ = ["ARROWSHM_ERROR", "HANG", "OK", "OTHER_EXCEPTION", "REJECTED", "REJECTED_EXIT",
           "SEQ_SCHEMA", "SIGNAL",
           "check_seq_batch", "classify_in_child", "ctx", "data_objects", "rss_bytes",
           "seq_batch", "shm_bytes"]
