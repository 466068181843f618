"""Exhaustion: a 64 MB /dev/shm, a full registry, a low file-descriptor limit,
and many datasets and streams at once. Each is an ArrowShmError that says what
to do and leaves nothing half-created, or simply works.

The dataset half of the 64 MB /dev/shm case is tests/arrowshm/test_shm_full.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm.registry import registry_of
from arrowshm.testing import data_objects, unique_namespace
from tests.arrowshm.test_shm_full import _can_unshare
from tests.helpers import check_stamped, run_python, stamped_table
from tests.reliability._util import check_seq_batch, seq_batch

_STREAM_CHILD = textwrap.dedent(
    """
    import os
    import pyarrow as pa
    import arrowshm
    from tests.reliability._util import seq_batch, check_seq_batch

    schema = seq_batch(0, 1).schema
    arrowshm.put("probe", pa.table({"x": [1]}))  # the namespace exists (its registry is made)
    arrowshm.delete("probe")
    arrowshm.gc(spares=True)  # (and holds nothing else)
    before = sorted(os.listdir("/dev/shm"))
    try:
        arrowshm.StreamWriter("big", schema, capacity_bytes=100 << 20)
    except arrowshm.ShmFullError as exc:
        assert isinstance(exc, MemoryError)
        assert "--shm-size" in str(exc), str(exc)
        print("full:", exc)
    else:
        raise SystemExit("expected ShmFullError")
    after = sorted(os.listdir("/dev/shm"))
    assert before == after, (before, after)  # nothing half-created
    try:
        arrowshm.StreamReader("big")
    except arrowshm.NotFoundError:
        pass
    else:
        raise SystemExit("a failed StreamWriter must not create the stream")
    # the registry's byte counter was given back: a stream that fits still opens
    with arrowshm.StreamWriter("small", schema, capacity_bytes=8 << 20) as w:
        w.write(seq_batch(1, 1000))
        with arrowshm.StreamReader("small") as r:
            assert check_seq_batch(r.read(timeout=5)) == 1
    arrowshm.delete("small")
    print("ok")
    """
)


@pytest.mark.timeout(180)
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m to mount a tmpfs")
def test_a_stream_larger_than_a_64mb_dev_shm_raises_shm_full_error() -> None:
    script = (
        "mount -t tmpfs -o size=64m tmpfs /dev/shm && "
        f"exec {sys.executable} -c \"$CHILD\""
    )
    env = dict(os.environ, CHILD=_STREAM_CHILD, PYTHONPATH=os.getcwd())
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=170, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "full:" in proc.stdout and "ok" in proc.stdout


_REGISTRY_FULL_CHILD = """
import os
import pyarrow as pa
import arrowshm
from arrowshm.testing import data_objects
ns = os.environ["ARROWSHM_NAMESPACE"]
made = 0
try:
    for k in range(100):
        arrowshm.put(f"d{k}", pa.table({"x": [k]}))
        made += 1
except arrowshm.RegistryFullError as exc:
    assert "ARROWSHM_REGISTRY_CAPACITY" in str(exc), str(exc)
    print("full after", made, ":", exc)
else:
    raise SystemExit("expected RegistryFullError")
assert made <= 16, made
assert len(data_objects(ns)) == made, data_objects(ns)   # the failed put left nothing
try:
    arrowshm.StreamWriter("s", pa.schema([("x", pa.int64())]), capacity_bytes=4096)
except arrowshm.RegistryFullError:
    pass
else:
    raise SystemExit("expected RegistryFullError for a stream")
assert len(data_objects(ns)) == made, data_objects(ns)
arrowshm.delete("d0")                                    # a freed entry is usable again
arrowshm.put("again", pa.table({"x": [1]}))
assert arrowshm.get("again").num_rows == 1
for info in arrowshm.list_datasets():
    arrowshm.delete(info.name)
assert len(data_objects(ns)) == arrowshm.usage().spares, data_objects(ns)  # spares only
arrowshm.gc(spares=True)
assert data_objects(ns) == [], data_objects(ns)
print("ok", made)
"""


@pytest.mark.timeout(120)
def test_a_full_registry_is_registry_full_error_and_recovers() -> None:
    from arrowshm.testing import cleanup_namespace

    ns = unique_namespace("r")  # a fresh registry, created with the small capacity
    try:
        proc = run_python(_REGISTRY_FULL_CHILD, env={"ARROWSHM_NAMESPACE": ns,
                                                     "ARROWSHM_REGISTRY_CAPACITY": "16"})
    finally:
        cleanup_namespace(ns)
    assert "full after" in proc.stdout and "ok" in proc.stdout, proc.stdout


_FD_CHILD = """
import resource, os
import pyarrow as pa
import arrowshm
from tests.helpers import stamped_table, check_stamped
from tests.reliability._util import seq_batch, check_seq_batch
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
for k in range(1000):                               # 1000 puts and gets over 16 names
    arrowshm.put(f"fd/{k % 16}", stamped_table(k, 100), retain=2)
    assert check_stamped(arrowshm.get(f"fd/{k % 16}")) == k
schema = seq_batch(0, 1).schema
for k in range(200):                                # 200 streams opened and closed
    with arrowshm.StreamWriter(f"fs/{k % 4}", schema, capacity_bytes=4096) as w:
        with arrowshm.StreamReader(f"fs/{k % 4}", start="latest") as r:
            w.write(seq_batch(k, 10))
            assert check_seq_batch(r.read(timeout=5)) == k
open_fds = len(os.listdir("/proc/self/fd"))
assert open_fds < 64, open_fds
print("ok", open_fds, "fds open")
"""


@pytest.mark.timeout(180)
def test_a_low_file_descriptor_limit_is_enough_for_many_gets_puts_and_streams(
        namespace: str) -> None:
    proc = run_python(_FD_CHILD, env={"PYTHONPATH": os.getcwd()})
    assert "ok" in proc.stdout, proc.stdout + proc.stderr


_FD_EXHAUSTED_CHILD = """
import resource
import arrowshm
from tests.helpers import stamped_table
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
n = 0
try:
    for k in range(200):               # each get keeps a mapping (and so an fd) cached
        arrowshm.put(f"fx/{k}", stamped_table(k, 10))
        arrowshm.get(f"fx/{k}")
        n += 1
except arrowshm.ArrowShmError as exc:
    print("clear error after", n, "names:", exc)
except OSError as exc:
    raise SystemExit(f"raw {type(exc).__name__} after {n} names: {exc}")
else:
    print("ok: 200 names")
"""


@pytest.mark.timeout(120)
def test_running_out_of_file_descriptors_is_a_clear_error(namespace: str) -> None:
    proc = run_python(_FD_EXHAUSTED_CHILD, env={"PYTHONPATH": os.getcwd()}, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    arrowshm.gc()


def _many(n_datasets: int, n_streams: int) -> None:
    for k in range(n_datasets):
        arrowshm.put(f"many/{k}", stamped_table(k, 64))
    schema = seq_batch(0, 1).schema
    writers = [arrowshm.StreamWriter(f"many-s/{k}", schema, capacity_bytes=16 << 10)
               for k in range(n_streams)]
    try:
        readers = [arrowshm.StreamReader(f"many-s/{k}") for k in range(n_streams)]
        for k, w in enumerate(writers):
            w.write(seq_batch(k, 32))
        for k, r in enumerate(readers):
            assert check_seq_batch(r.read(timeout=5)) == k
            r.close()
        assert len(arrowshm.list_datasets()) == n_datasets
        assert sum(1 for _ in registry_of(os.environ["ARROWSHM_NAMESPACE"]).entries()) == (
            n_datasets + n_streams)
        for k in range(n_datasets):
            assert check_stamped(arrowshm.get(f"many/{k}")) == k
        report = arrowshm.gc()
        assert report.segments == []  # everything is live: gc must take nothing
        assert len(data_objects(os.environ["ARROWSHM_NAMESPACE"])) == n_datasets + n_streams
    finally:
        for w in writers:
            w.close()


@pytest.mark.timeout(300)
def test_1000_datasets_and_100_streams_at_once() -> None:
    _many(1000, 100)


_ = (np, pa)
