"""A full /dev/shm is ShmFullError, never SIGBUS, and leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os
    import arrowshm
    from tests.helpers import make_table

    big = make_table(3_000_000)  # ~100 MB: more than the 64 MB tmpfs
    assert big.nbytes > 64 << 20
    arrowshm.put("probe", make_table(10))  # the namespace exists (its registry is made)
    arrowshm.delete("probe")
    arrowshm.gc(spares=True)  # (and holds nothing else)
    before = sorted(os.listdir("/dev/shm"))
    try:
        arrowshm.put("big", big)
    except arrowshm.ShmFullError as exc:
        assert isinstance(exc, MemoryError)
        assert "--shm-size" in str(exc), str(exc)
        print("full:", exc)
    else:
        raise SystemExit("expected ShmFullError")
    after = sorted(os.listdir("/dev/shm"))
    assert before == after, (before, after)          # nothing half-created
    try:
        arrowshm.get("big")
    except arrowshm.NotFoundError:
        pass
    else:
        raise SystemExit("a failed put must not create the name")
    info = arrowshm.put("small", make_table(10_000))  # still usable afterwards
    assert arrowshm.get("small").num_rows == 10_000
    arrowshm.delete("small")
    print("ok", info.version)
    """
)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.timeout(180)
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m to mount a tmpfs")
def test_a_put_larger_than_a_64mb_dev_shm_raises_shm_full_error() -> None:
    script = (
        "mount -t tmpfs -o size=64m tmpfs /dev/shm && "
        f"exec {sys.executable} -c \"$CHILD\""
    )
    env = dict(os.environ, CHILD=CHILD, PYTHONPATH=os.getcwd())
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=170, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "full:" in proc.stdout and "ok 1" in proc.stdout
