"""Core dataset, stream, spare, gc and quota cases, run in a child process whose
``ARROWSHM_DIR`` names a directory other than /dev/shm (a disk directory, or a
tmpfs mounted in a private mount namespace: ``unshare -m``).

``python -m tests.ops._dir_cases GROUP`` runs one group and prints ``OK GROUP``;
every case checks that the namespace's objects are in the directory and none in
/dev/shm (but its marker), and the group removes every object it made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa

import arrowshm
from arrowshm._introspect import buffers_in_shm
from arrowshm.testing import cleanup_namespace, data_objects, namespace_objects

DIR = os.environ["ARROWSHM_DIR"]
NS = os.environ["ARROWSHM_NAMESPACE"]


def _table(rows: int, tag: int = 0) -> pa.Table:
    return pa.table({"i": np.arange(rows, dtype=np.int64) + tag,
                     "s": pa.array([f"r{k}" for k in range(rows)])})


def _child(code: str, *, wait: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    if wait:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"child failed:\n{out}\n{err}"
    return proc


def _only_here() -> None:
    """The namespace's objects are all in DIR; in /dev/shm there is only its marker."""
    in_shm = [e for e in os.listdir("/dev/shm") if e.startswith(f"ash-{NS}-")]
    assert in_shm == [f"ash-{NS}-reg.at"], in_shm
    assert all(n.startswith(DIR + "/") for n in data_objects(NS)), data_objects(NS)


def datasets() -> None:
    """put/get across processes, zero-copy out of DIR, versions, retain, wait, delete."""
    info = arrowshm.put("a", _table(20_000), retain=3)
    assert info.segment.startswith(f"{DIR}/ash-{NS}-"), info.segment
    assert arrowshm.usage().directory == DIR
    _child(f"""
        import arrowshm
        from arrowshm._introspect import buffers_in_shm
        t = arrowshm.get("a")
        assert t.num_rows == 20_000 and t.column("s")[5].as_py() == "r5"
        inside, total, where = buffers_in_shm(t)
        assert inside == total and all(w.startswith("{DIR}/ash-") for w in where), where
        arrowshm.put("a", t.slice(0, 10), retain=3)  # version 2, from another process
    """)
    t = arrowshm.get("a")
    assert t.num_rows == 10 and arrowshm.info("a").version == 2
    inside, total, where = buffers_in_shm(t)
    assert inside == total and all(w.startswith(DIR + "/") for w in where), where
    assert arrowshm.get("a", version=1).num_rows == 20_000  # retained
    waiter = _child("""
        import arrowshm
        print(arrowshm.wait("a", after_version=2, timeout=60).version)
    """, wait=False)
    time.sleep(0.5)
    arrowshm.put("a", _table(3, tag=7), retain=3)
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0 and out.strip() == "3", (out, err)
    _only_here()
    del t
    arrowshm.delete("a")
    try:
        arrowshm.get("a")
    except arrowshm.NotFoundError:
        pass
    else:
        raise AssertionError("deleted dataset still readable")


def stream_roundtrip() -> None:
    """A reader process follows a writer here (block mode, cross process)."""
    schema = pa.schema([("i", pa.int64())])
    with arrowshm.StreamWriter("s", schema, capacity_bytes=1 << 18) as w:
        reader = _child("""
            import arrowshm
            with arrowshm.StreamReader("s", start="earliest") as r:
                print("ready", flush=True)
                n = 0
                for b in r:
                    n += b.num_rows
                print(n)
        """, wait=False)
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        for k in range(300):
            w.write(pa.record_batch({"i": pa.array([k] * 100, pa.int64())}), timeout=60)
        _only_here()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0 and out.strip() == "30000", (out, err)
    arrowshm.delete("s")


def spares() -> None:
    """Retired segments become spares in DIR and the next put reuses one; gc frees
    what a killed writer left; a quota holds."""
    from arrowshm._shm.registry import registry_of

    reg = registry_of(NS)
    for k in range(6):
        arrowshm.put("p", _table(50_000, tag=k))
    assert reg.stats().recycled >= 1, reg.stats()
    # a writer killed mid-put leaves a segment in DIR that gc reclaims
    victim = _child("""
        import os, time, numpy as np, pyarrow as pa, arrowshm
        schema = pa.schema([("x", pa.int64())])
        b = arrowshm.build("killed", schema, 1_000_000)
        b.__enter__()
        print("ready", flush=True)
        time.sleep(600)
    """, wait=False)
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "ready"
    before = set(data_objects(NS))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    report = arrowshm.gc(spares=True)
    assert report.segments, report
    assert all(s.startswith(DIR + "/") for s in report.segments), report.segments
    left = set(data_objects(NS))
    assert not (left - before) and len(left) < len(before), (before, left)
    # quota, counted on DIR's segments
    ns = arrowshm.Namespace(NS)
    ns.set_quota(1 << 20)
    try:
        try:
            arrowshm.put("big", _table(400_000))
        except arrowshm.QuotaExceededError:
            pass
        else:
            raise AssertionError("quota not enforced")
    finally:
        ns.set_quota(None)
    _only_here()
    arrowshm.delete("p")
    arrowshm.gc(spares=True)


def full() -> None:
    """A put that does not fit the (small) filesystem of DIR raises ShmFullError
    naming DIR, and leaves nothing behind; spares are bounded by DIR's size."""
    from arrowshm._shm.pool import limit_bytes
    from arrowshm._shm.segment import shm_dir_bytes

    assert "ARROWSHM_SPARE_BYTES" not in os.environ
    assert limit_bytes(DIR) == shm_dir_bytes(DIR) // 8 < shm_dir_bytes() // 8
    arrowshm.put("small", _table(10))
    try:
        arrowshm.put("huge", _table(4_000_000))
    except arrowshm.ShmFullError as exc:
        assert DIR in str(exc) and "/dev/shm" not in str(exc).split(":")[0], str(exc)
    else:
        raise AssertionError("no ShmFullError")
    arrowshm.delete("small")
    arrowshm.gc(spares=True)
    assert data_objects(NS) == [], data_objects(NS)


GROUPS = {"datasets": datasets, "streams": stream_roundtrip, "spares": spares,
          "full": full}


def main() -> None:
    group = sys.argv[1]
    try:
        GROUPS[group]()
        arrowshm.gc(spares=True)
        leaked = data_objects(NS)
        assert not leaked, f"leaked: {leaked}"
    finally:
        cleanup_namespace(NS)
    assert namespace_objects(NS) == [], namespace_objects(NS)
    assert not [e for e in os.listdir("/dev/shm") if e.startswith(f"ash-{NS}-")]
    print("OK", group)


if __name__ == "__main__":
    main()
