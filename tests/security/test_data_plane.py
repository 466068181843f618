"""Attacks on the data plane, each reproduced for real and refused.

Every test plays an attacker with real means: a second local user (created
with ``useradd``, removed afterwards), a writer in another PID namespace
(``unshare --pid --fork --mount-proc``), or a process corrupting a ring it
attached to. The victim must get a clear ``ArrowShmError``, keep its data
intact, and leak nothing. (docs/SECURITY.md: the threat model.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import arrowshm
from arrowshm._datasets.get import clear_cache
from arrowshm._shm import layout as L
from arrowshm._shm.registry import _mix, registry_of
from arrowshm.testing import data_objects, namespace_objects
from tests.helpers import check_stamped, stamped_table
from tests.reliability._util import seq_batch

from .attacker import ROOT, run_as, throwaway_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a second user")


def _shm_path(name: str) -> str:
    return "/dev/shm" + name


# -- 1. registry squatting ---------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_registry_another_user_made_first_is_refused(namespace: str) -> None:
    """Another user makes the namespace's registry (mode 0666) before its owner runs
    arrowshm, and plants a dataset of its own. The victim's put must not write its
    table anywhere the attacker can read: the registry is refused, naming its owner."""
    with throwaway_user() as attacker:
        run_as(attacker, f"""
            os.umask(0)
            ns = arrowshm.Namespace({namespace!r})
            ns.put("bait", pa.table({{"x": [1, 2, 3]}}))
            for name in os.listdir("/dev/shm"):
                if name.startswith("ash-{namespace}-"):
                    os.chmod("/dev/shm/" + name, 0o666)   # "share" everything
        """)
        squatted = namespace_objects(namespace)
        assert len(squatted) == 2 and all(
            os.stat(_shm_path(n)).st_uid == attacker.pw_uid for n in squatted)
        with pytest.raises(arrowshm.AccessDeniedError) as err:
            arrowshm.put("secret", stamped_table(7, 1_000))
        assert attacker.pw_name in str(err.value)
        with pytest.raises(arrowshm.AccessDeniedError):
            arrowshm.get("bait")
        with pytest.raises(arrowshm.AccessDeniedError):
            arrowshm.StreamWriter("secret/stream", stamped_table(1, 1).schema)
        # nothing of the victim's was written anywhere
        assert namespace_objects(namespace) == squatted
        assert all(os.stat(_shm_path(n)).st_uid == attacker.pw_uid for n in squatted)


@pytest.mark.timeout(120)
def test_a_registry_of_ours_that_others_can_write_is_refused(namespace: str) -> None:
    arrowshm.put("x", stamped_table(1, 10))
    reg = _shm_path(registry_of(namespace).shm_name)
    os.chmod(reg, 0o606)
    from arrowshm._shm.context import drop_context

    drop_context(namespace)  # as a process starting now would
    try:
        with pytest.raises(arrowshm.AccessDeniedError, match="mode 606"):
            arrowshm.get("x")
    finally:
        os.chmod(reg, 0o600)
    assert check_stamped(arrowshm.get("x")) == 1


# -- 2. PID namespaces ---------------------------------------------------------------------

_CONTAINER_WRITER = """
import sys, os
import arrowshm
from tests.helpers import stamped_table
print("pid in its namespace:", os.getpid(), flush=True)
try:
    for tag in range(2, 8):
        arrowshm.put(sys.argv[1], stamped_table(tag, 50_000), retain=1)
except arrowshm.AccessDeniedError as exc:
    print("refused:", exc, flush=True)
    sys.exit(3)
print("wrote versions 2..7", flush=True)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
@pytest.mark.timeout(180)
def test_a_writer_in_another_pid_namespace_cannot_recycle_a_table_held_here(
    namespace: str,
) -> None:
    """A host reader holds version 1; a writer in a second PID namespace (as a
    container sharing /dev/shm but not pids would be) puts new versions. It must not
    join the namespace: from there the host reader's pid looks dead, and recycling
    would rewrite the table under the reader."""
    arrowshm.put("held", stamped_table(1, 50_000), retain=1)
    held = arrowshm.get("held")
    before = held.column("tag").to_numpy().sum()
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         _CONTAINER_WRITER, "held"],
        capture_output=True, text=True, timeout=150,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
    )
    assert "pid in its namespace: " in proc.stdout, proc.stderr  # really another namespace
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "PID namespace" in proc.stdout and "--pid=host" in proc.stdout
    assert check_stamped(held) == 1 and held.column("tag").to_numpy().sum() == before
    assert arrowshm.info("held").version == 1


# -- 3. corrupt rings ------------------------------------------------------------------------

_CORRUPT_READER = """
import sys, os, json
import numpy as np
import arrowshm
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment
name, what = sys.argv[1], sys.argv[2]
r = arrowshm.StreamReader(name, spin_us=0)
reg = registry_of(os.environ["ARROWSHM_NAMESPACE"])
seg = Segment.open(reg.segment_name(reg.get_entry(name).segment_id), writable=True)
w = seg.words
ring = int(w[L.ST_RING_OFFSET]) // 8
slot = int(w[L.ST_READERS_OFFSET]) // 8 + r.reader_id * (L.SLOT_BYTES // 8)
after = slot + L.SLOT_BYTES // 8
canary = w[after:after + 64].copy()   # the next reader's slot: nobody's to write
if what == "length":
    w[ring + L.DESC_LENGTH] = 1 << 30            # 1 GiB in a 64 KiB arena
elif what == "offset":
    w[ring + L.DESC_VSTART] = (1 << 62) + 65_000  # lies across the end of the arena
elif what == "pins-huge":
    w[slot + L.RD_PINS_N] = 1 << 40
elif what == "pins-over":
    w[slot + L.RD_PINS_N] = L.PIN_SPANS + 3
out = {}
try:
    total = 0
    kept = []
    for _ in range(3):
        b = r.read(timeout=5)
        total += int(np.asarray(b.column(1)).sum())   # touches every value
        kept.append(b)
    out["result"] = "read 3 batches"
except arrowshm.ArrowShmError as exc:
    out["result"] = type(exc).__name__ + ": " + str(exc)
del kept
out["canary intact"] = bool((w[after:after + 64] == canary).all())
print(json.dumps(out), flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["length", "offset", "pins-huge", "pins-over"])
def test_ring_words_corrupted_after_a_reader_attached_never_crash_it(
    namespace: str, what: str
) -> None:
    """Lengths, offsets and pin counts read from the ring after attaching are
    bounds-checked: a corrupt one is CorruptSegmentError (or clamped), never a
    SIGSEGV or a write outside the reader's own slot."""
    schema = seq_batch(0, 1).schema
    with arrowshm.StreamWriter("r", schema, capacity_bytes=64 << 10, max_readers=4) as w:
        for k in range(3):
            w.write(seq_batch(k, 100))
        proc = subprocess.run([sys.executable, "-c", _CORRUPT_READER, "r", what],
                              capture_output=True, text=True, timeout=100, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, f"the reader died ({proc.returncode}): {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["canary intact"], out
    if what in ("length", "offset"):
        assert out["result"].startswith("CorruptSegmentError"), out
    else:  # a clamped pin count: the reader works on, inside its own slot
        assert out["result"] in ("read 3 batches",) or out["result"].startswith(
            "CorruptSegmentError"), out


# -- 4. another user's segment ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_segment_another_user_owns_is_never_read(namespace: str) -> None:
    """Validating once is not enough: the owner of a segment can rewrite (or
    truncate) it after validation. A segment of another uid is refused outright."""
    with throwaway_user() as attacker:
        arrowshm.put("x", stamped_table(3, 1_000))
        seg = arrowshm.info("x").segment
        with arrowshm.StreamWriter("s", seq_batch(0, 1).schema, capacity_bytes=1 << 16) as w:
            w.write(seq_batch(0, 10))
            stream_seg = arrowshm.stream_info("s").segment
            for name in (seg, stream_seg):  # as if another user now owned them
                os.chown(_shm_path(name), attacker.pw_uid, attacker.pw_gid)
            clear_cache()
            with pytest.raises(arrowshm.AccessDeniedError, match=attacker.pw_name):
                arrowshm.get("x", validate=True)
            with pytest.raises(arrowshm.AccessDeniedError, match=attacker.pw_name):
                arrowshm.StreamReader("s")
            for name in (seg, stream_seg):
                os.chown(_shm_path(name), 0, 0)
        assert check_stamped(arrowshm.get("x")) == 3


# -- 5. foreign files in /dev/shm ------------------------------------------------------------


@pytest.mark.timeout(180)
def test_foreign_files_never_break_gc_and_are_never_removed(namespace: str) -> None:
    arrowshm.put("kept", stamped_table(1, 10))
    link = f"/dev/shm/ash-{namespace}-zz"
    old = f"/dev/shm/ash-{namespace}-zy"
    with throwaway_user() as attacker:
        run_as(attacker, f"""
            os.symlink("/etc/hostname", {link!r})
            open({old!r}, "w").close()
            os.utime({old!r}, (0, 0))        # an old empty file: looks abandoned
        """)
        report = arrowshm.gc()
        assert {"/" + os.path.basename(link), "/" + os.path.basename(old)} <= set(
            report.skipped)
        assert os.path.islink(link) and os.path.exists(old)  # never removed
        assert report.segments == []
        assert check_stamped(arrowshm.get("kept")) == 1
    assert data_objects(namespace) == [arrowshm.info("kept").segment]


@pytest.mark.timeout(180)
def test_names_planted_for_future_segments_do_not_stop_puts(namespace: str) -> None:
    """Ids are the registry's secret-keyed counter: files planted at the names a
    sequential counter would use are never in the way."""
    arrowshm.put("first", stamped_table(0, 10))
    from arrowshm._names import base36

    with throwaway_user() as attacker:
        names = [f"/dev/shm/ash-{namespace}-{base36(i)}" for i in range(1, 65)]
        run_as(attacker, f"""
            for path in {names!r}:
                if not os.path.exists(path):
                    open(path, "w").close()
        """)
        for k in range(4):
            assert arrowshm.put(f"p{k}", stamped_table(k, 10)).version == 1


@pytest.mark.timeout(180)
def test_squatted_names_are_skipped_then_refused_naming_their_owner(namespace: str) -> None:
    arrowshm.put("first", stamped_table(0, 10))
    reg = registry_of(namespace)
    used = reg.bytes_used
    from arrowshm._names import base36

    def upcoming(n: int) -> list[str]:
        counter = int(reg.words[L.H_NEXT_SEGMENT_ID])
        return [f"/dev/shm/ash-{namespace}-{base36(_mix(c, reg.id_key))}"
                for c in range(counter, counter + n)]

    with throwaway_user() as attacker:
        few = upcoming(3)  # one put skips these three names
        run_as(attacker, f"for p in {few!r}: open(p, 'w').close()")
        assert arrowshm.put("a", stamped_table(1, 10)).version == 1
        assert all(os.stat(p).st_uid == attacker.pw_uid for p in few)  # left alone
        many = upcoming(64)
        run_as(attacker, f"for p in {many!r}: open(p, 'w').close()")
        with pytest.raises(arrowshm.AccessDeniedError, match=attacker.pw_name) as err:
            arrowshm.put("b", stamped_table(2, 10))
        assert "squatting" in str(err.value)
        assert reg.bytes_used == used + arrowshm.info("a").nbytes + L.SEGMENT_HEADER_BYTES
    assert arrowshm.put("b", stamped_table(2, 10)).version == 1  # the squatter is gone
