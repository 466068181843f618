"""``arrowshm doctor``: every WARN and FAIL driven for real — a 64 MiB tmpfs on
/dev/shm (``unshare -m``), a full one, a low ``RLIMIT_NOFILE``, a read-only numba
cache directory, a segment leaked by a process killed with SIGKILL, a registry made
in another PID namespace (``unshare --pid``), a quota, a stale service socket —
plus the JSON schema and the exit codes of the CLI."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import arrowshm
from arrowshm.testing import cleanup_namespace, data_objects, unique_namespace

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ["directory", "shm_size", "container", "o_tmpfile", "pid_namespace", "open_files",
          "numba_cache", "namespace", "stale_objects", "spares", "quota", "service"]


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(),
                                   reason="needs root and unshare -m to mount filesystems")


def _doctor(namespace: str, *, setup: str = "", env: dict[str, str] | None = None,
            preexec: Callable[[], None] | None = None, cwd: Path = ROOT,
            ) -> tuple[int, dict[str, Any]]:
    """``python -m arrowshm doctor --json`` in a child; with *setup*, under ``unshare -m``
    after running those shell commands (mounts private to the child)."""
    cmd = [sys.executable, "-m", "arrowshm", "doctor", "--json", "--namespace", namespace]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if setup:
        script = f"set -e; {setup}; exec \"$@\""
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=full_env,
                          preexec_fn=preexec, cwd=cwd)
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in report["checks"] if c["name"] == name]
    assert len(found) == 1, report
    return found[0]


# -- the report and its forms ------------------------------------------------------------------


def test_the_report_has_every_check_a_verdict_and_a_fix_for_each_problem(namespace: str) -> None:
    arrowshm.put("t", pa.table({"x": [1, 2, 3]}))
    report = arrowshm.doctor()
    assert isinstance(report, arrowshm.DoctorReport)
    assert report.namespace == namespace
    assert [c.name for c in report] == CHECKS
    for c in report:
        assert isinstance(c, arrowshm.DoctorCheck)
        assert c.status in ("OK", "WARN", "FAIL") and c.message
        assert (c.fix != "") == (c.status != "OK"), c
    assert report.status == max((c.status for c in report),
                                key=["OK", "WARN", "FAIL"].index)
    assert report.exit_code == ["OK", "WARN", "FAIL"].index(report.status)
    assert report["namespace"].details["datasets"] == 1
    text = repr(report)
    assert text.splitlines()[0].startswith(f"arrowshm doctor: namespace {namespace!r}")
    for c in report:
        assert any(line.startswith(f"{c.status:<4}  {c.name}") for line in text.splitlines())
    assert "<table>" in report._repr_html_()
    with pytest.raises(KeyError):
        report["nope"]
    arrowshm.delete("t")


def test_html_escapes_what_it_shows() -> None:
    check = arrowshm.DoctorCheck("x", "WARN", "<script>alert(1)</script>", "rm <this>")
    page = arrowshm.DoctorReport("ns", "/dev/shm", [check])._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "rm &lt;this&gt;" in page


def test_json_schema_and_exit_code_of_the_cli(namespace: str) -> None:
    code, report = _doctor(namespace)
    assert set(report) == {"namespace", "directory", "status", "exit_code", "checks"}
    assert report["namespace"] == namespace and report["directory"] == "/dev/shm"
    assert [c["name"] for c in report["checks"]] == CHECKS
    for c in report["checks"]:
        assert set(c) == {"name", "status", "message", "fix", "details"}
        assert c["status"] in ("OK", "WARN", "FAIL") and isinstance(c["details"], dict)
    assert code == report["exit_code"] == ["OK", "WARN", "FAIL"].index(report["status"])
    # a namespace nobody used: no registry is created by looking at it
    assert _check(report, "namespace")["details"] == {"exists": False}
    assert os.listdir("/dev/shm").count(f"ash-{namespace}-reg") == 0
    text = subprocess.run([sys.executable, "-m", "arrowshm", "doctor", "--namespace", namespace],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert text.returncode == code and "arrowshm doctor: namespace" in text.stdout


@needs_unshare
@pytest.mark.timeout(180)
def test_exit_status_0_when_everything_is_fine(namespace: str) -> None:
    code, report = _doctor(namespace, setup="mount -t tmpfs -o size=2g,mode=1777 tmpfs /dev/shm")
    assert [c["name"] for c in report["checks"] if c["status"] != "OK"] == []
    assert code == 0 and report["status"] == "OK"


# -- /dev/shm ----------------------------------------------------------------------------------


@needs_unshare
@pytest.mark.timeout(180)
def test_a_64mb_dev_shm_warns_with_the_docker_compose_and_kubernetes_fixes(namespace: str) -> None:
    code, report = _doctor(namespace, setup="mount -t tmpfs -o size=64m tmpfs /dev/shm")
    c = _check(report, "shm_size")
    assert c["status"] == "WARN" and code >= 1
    assert c["details"]["total_bytes"] == 64 << 20 and c["details"]["docker_default"]
    assert "Docker gives a container by default" in c["message"]
    for snippet in ("docker run --shm-size=", "shm_size:", "emptyDir: {medium: Memory, "
                    "sizeLimit:", "mountPath: /dev/shm", "half of RAM"):
        assert snippet in c["fix"], snippet


@needs_unshare
@pytest.mark.timeout(180)
def test_a_full_dev_shm_fails(namespace: str) -> None:
    code, report = _doctor(namespace, setup="mount -t tmpfs -o size=64m tmpfs /dev/shm; "
                                            "fallocate -l 60m /dev/shm/filler")
    c = _check(report, "shm_size")
    assert c["status"] == "FAIL" and code == 2 and report["status"] == "FAIL"
    assert "ShmFullError" in c["message"] and "arrowshm gc" in c["fix"]
    assert "--shm-size" in c["fix"]


@needs_unshare
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("setup", "words"), [
    ("mount -t tmpfs -o size=256m tmpfs /dev/shm", "below 512.0 MiB"),
    ("mount -t tmpfs -o size=1g tmpfs /dev/shm; fallocate -l 950m /dev/shm/filler",
     "over 90% used"),
    ("mount -t ramfs ramfs /dev/shm", "ramfs has no size limit"),
], ids=["small", "nearly-full", "ramfs"])
def test_a_small_nearly_full_or_unbounded_dev_shm_warns(namespace: str, setup: str,
                                                        words: str) -> None:
    code, report = _doctor(namespace, setup=setup)
    c = _check(report, "shm_size")
    assert c["status"] == "WARN" and words in c["message"], c
    assert code >= 1 and c["fix"]


@needs_unshare
@pytest.mark.timeout(180)
def test_a_world_writable_directory_without_sticky_bit_warns(namespace: str) -> None:
    _, report = _doctor(namespace, setup="mount -t tmpfs -o size=1g,mode=0777 tmpfs /dev/shm")
    c = _check(report, "directory")
    assert c["status"] == "WARN" and "sticky" in c["message"] and "chmod 1777" in c["fix"]


@needs_unshare
@pytest.mark.timeout(180)
def test_a_read_only_directory_fails(namespace: str) -> None:
    code, report = _doctor(namespace, setup="mount -t tmpfs -o size=1g,ro tmpfs /dev/shm")
    assert _check(report, "directory")["status"] == "FAIL"
    assert "remount,rw" in _check(report, "directory")["fix"]
    assert _check(report, "o_tmpfile")["status"] == "FAIL"
    assert code == 2


@needs_unshare
@pytest.mark.timeout(180)
def test_a_filesystem_without_o_tmpfile_warns(namespace: str) -> None:
    # mqueue is a real filesystem whose directory refuses O_TMPFILE (EOPNOTSUPP)
    _, report = _doctor(namespace, setup="mount -t mqueue mqueue /dev/shm")
    c = _check(report, "o_tmpfile")
    assert c["status"] == "WARN" and c["details"]["errno"] in ("EOPNOTSUPP", "ENOTSUP")
    assert "60 s" in c["message"]


# -- ARROWSHM_DIR ------------------------------------------------------------------------------


def test_a_namespace_in_arrowshm_dir_is_inspected_there_and_a_mismatch_fails(
        tmp_path: Path) -> None:
    other = unique_namespace("dir")
    segs = tmp_path / "segs"
    segs.mkdir(mode=0o700)
    env = {"ARROWSHM_DIR": str(segs)}
    try:
        put = subprocess.run(
            [sys.executable, "-c", "import arrowshm, pyarrow as pa; "
             "arrowshm.put('x', pa.table({'a': [1, 2]}))"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "ARROWSHM_NAMESPACE": other, **env})
        assert put.returncode == 0, put.stderr
        _, report = _doctor(other, env=env)
        assert report["directory"] == str(segs)
        assert _check(report, "directory")["status"] == "OK"
        assert _check(report, "namespace")["details"]["datasets"] == 1
        assert _check(report, "stale_objects")["status"] == "OK"
        # a process without ARROWSHM_DIR is told where the namespace lives
        code, report = _doctor(other)
        c = _check(report, "directory")
        assert c["status"] == "FAIL" and code == 2, c
        assert f"ARROWSHM_DIR={segs}" in c["fix"] and str(segs) in c["message"]
    finally:
        cleanup_namespace(other)


# -- RLIMIT_NOFILE -----------------------------------------------------------------------------


def _limit(soft: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    return apply


@pytest.mark.timeout(180)
def test_a_low_ulimit_n_fails_and_a_modest_one_warns(namespace: str) -> None:
    for i in range(3):
        arrowshm.put(f"t{i}", pa.table({"x": [i]}))
    code, report = _doctor(namespace, preexec=_limit(50))
    c = _check(report, "open_files")
    assert c["status"] == "FAIL" and code == 2, c
    assert c["details"]["soft"] == 50 and c["details"]["namespace_objects"] >= 4
    assert c["details"]["needed"] == c["details"]["namespace_objects"] + 64
    assert "ulimit -n" in c["fix"]
    _, report = _doctor(namespace, preexec=_limit(500))
    c = _check(report, "open_files")
    assert c["status"] == "WARN" and "below 1,024" in c["message"], c
    for i in range(3):
        arrowshm.delete(f"t{i}")


HOLDER = """
import os, resource, sys, time
import pyarrow as pa
import arrowshm
tables = []
for i in range(20):
    arrowshm.put(f"h{i}", pa.table({"x": [i]}))
    tables.append(arrowshm.get(f"h{i}"))
used = len(os.listdir("/proc/self/fd"))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, hard))
print("ready", used, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(180)
def test_a_process_near_its_descriptor_limit_is_named(namespace: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.startswith("ready"), line
        report = arrowshm.doctor()
        c = report["open_files"]
        assert c.status == "WARN", c
        assert f"pid {holder.pid}" in c.message
        assert c.details["mapping_processes"][str(holder.pid)] >= 20
    finally:
        holder.kill()
        holder.wait()
    for i in range(20):
        arrowshm.delete(f"h{i}")


# -- the numba cache ---------------------------------------------------------------------------


@needs_unshare
@pytest.mark.timeout(180)
def test_a_read_only_numba_cache_dir_warns_and_no_usable_one_fails(
        namespace: str, tmp_path: Path) -> None:
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    env = {"NUMBA_CACHE_DIR": str(ro)}
    # root ignores mode bits: a read-only mount is what really refuses writes
    _, report = _doctor(namespace, env=env, setup=f"mount -t tmpfs -o ro,size=1m tmpfs {ro}")
    c = _check(report, "numba_cache")
    assert c["status"] == "WARN", c
    assert c["details"]["preferred_writable"] is False
    assert c["details"]["directory"].startswith("/tmp/arrowshm-numba-")
    assert "NUMBA_CACHE_DIR" in c["fix"]
    # and the private fallback under /tmp taken by another user: nowhere to cache
    code, report = _doctor(namespace, env=env, setup=(
        f"mount -t tmpfs -o size=16m tmpfs /tmp; mkdir -p {ro}; "
        f"mount -t tmpfs -o ro,size=1m tmpfs {ro}; "
        f"mkdir /tmp/arrowshm-numba-{os.getuid()}; chown 54321 /tmp/arrowshm-numba-{os.getuid()}"))
    c = _check(report, "numba_cache")
    assert c["status"] == "FAIL" and code == 2, c
    assert c["details"]["directory"] is None


# -- stale objects -----------------------------------------------------------------------------

LEAKER = """
import sys, time
import pyarrow as pa
import arrowshm
b = arrowshm.build("leaky", pa.schema([("x", pa.int64())]), 100_000)
print("allocated", flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(180)
def test_a_segment_leaked_by_a_killed_process_warns_and_gc_is_not_run(namespace: str) -> None:
    before = set(data_objects(namespace))
    leaker = subprocess.Popen([sys.executable, "-c", LEAKER], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert leaker.stdout is not None
    assert leaker.stdout.readline().strip() == "allocated"
    leaked = set(data_objects(namespace)) - before
    assert len(leaked) == 1
    report = arrowshm.doctor()
    assert report["stale_objects"].status == "OK"  # a live writer's segment is not stale
    os.kill(leaker.pid, signal.SIGKILL)
    leaker.wait()
    report = arrowshm.doctor()
    c = report["stale_objects"]
    assert c.status == "WARN", c
    assert c.details["segments"] == sorted(leaked)
    assert c.details["segment_bytes"] >= 800_000
    assert f"ARROWSHM_NAMESPACE={namespace} arrowshm gc" in c.fix
    assert set(data_objects(namespace)) - before == leaked  # a dry run: nothing reclaimed
    gc = arrowshm.gc()
    assert sorted(gc.segments) == sorted(leaked)
    assert arrowshm.doctor()["stale_objects"].status == "OK"


READER = """
import time
import arrowshm
r = arrowshm.StreamReader("ticks")
print("attached", r.reader_id, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(180)
def test_a_stream_reader_killed_with_sigkill_is_reported_until_gc_evicts_it(
        namespace: str) -> None:
    schema = pa.schema([("x", pa.int64())])
    with arrowshm.StreamWriter("ticks", schema, capacity_bytes=1 << 20) as w:
        reader = subprocess.Popen([sys.executable, "-c", READER], stdout=subprocess.PIPE,
                                  text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert reader.stdout is not None
        line = reader.stdout.readline().split()
        assert line[:1] == ["attached"], line
        assert arrowshm.doctor()["stale_objects"].status == "OK"
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
        c = arrowshm.doctor()["stale_objects"]
        assert c.status == "WARN", c
        assert c.details["dead_readers"] == [f"ticks#{line[1]}(pid {reader.pid})"]
        assert "dead stream reader" in c.message
        assert arrowshm.gc().readers_evicted == [f"ticks#{line[1]}(pid {reader.pid})"]
        assert arrowshm.doctor()["stale_objects"].status == "OK"
        w.write(pa.record_batch([pa.array([1])], schema=schema))
    arrowshm.delete("ticks")


def test_idle_spares_are_what_gc_would_trim(namespace: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    arrowshm.put("s", pa.table({"x": list(range(1000))}))
    arrowshm.put("s", pa.table({"x": list(range(1000))}))  # v1 becomes a spare
    assert arrowshm.usage().spares == 1
    assert arrowshm.doctor()["stale_objects"].status == "OK"
    assert "1 spare segment(s)" in arrowshm.doctor()["spares"].message
    monkeypatch.setenv("ARROWSHM_SPARE_IDLE_S", "0")
    c = arrowshm.doctor()["stale_objects"]
    assert c.status == "WARN" and c.details["spares_to_free"] == 1, c
    assert arrowshm.usage().spares == 1  # still there
    monkeypatch.setenv("ARROWSHM_SPARE_BYTES", "0")
    c = arrowshm.doctor()["spares"]
    assert c.status == "WARN" and "ARROWSHM_SPARE_BYTES" in c.fix
    arrowshm.delete("s")


def test_an_object_squatting_the_namespace_names_warns(namespace: str) -> None:
    arrowshm.put("t", pa.table({"x": [1]}))
    link = Path(f"/dev/shm/ash-{namespace}-squat")
    link.symlink_to("/etc/passwd")
    try:
        c = arrowshm.doctor()["stale_objects"]
        assert c.status == "WARN" and f"/ash-{namespace}-squat" in c.message, c
        assert "ls -l" in c.fix
        assert link.is_symlink()  # reported, never touched
    finally:
        link.unlink()
    arrowshm.delete("t")


def test_a_corrupt_registry_fails_with_the_command_that_removes_it() -> None:
    other = unique_namespace("bad")
    path = Path(f"/dev/shm/ash-{other}-reg")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"not a registry".ljust(1 << 20, b"x"))
        os.close(fd)
        report = arrowshm.doctor(other)
        c = report["namespace"]
        assert c.status == "FAIL" and c.details["error"] == "CorruptSegmentError", c
        assert f"rm /dev/shm/ash-{other}-reg" in c.fix
        assert report.exit_code == 2 and path.exists()
    finally:
        cleanup_namespace(other)


def test_a_registry_from_before_a_reboot(namespace: str) -> None:
    """A reboot is simulated by rewriting the boot id in a registry's header (all a
    reboot changes for a registry on a disk directory)."""
    from arrowshm._shm import layout as L
    from arrowshm._shm.segment import Segment

    other = unique_namespace("boot")
    try:
        put = subprocess.run(
            [sys.executable, "-c", "import arrowshm, pyarrow as pa; "
             "arrowshm.put('x', pa.table({'a': [1]}))"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "ARROWSHM_NAMESPACE": other})
        assert put.returncode == 0, put.stderr
        seg = Segment.open(f"/ash-{other}-reg", writable=True)
        seg.words[L.H_BOOT_ID] ^= 0x5A5A
        del seg
        c = arrowshm.doctor()["pid_namespace"]
        assert c.status in ("WARN", "FAIL") and other in c.details["before_reboot"], c
        assert f"rm /dev/shm/ash-{other}-*" in c.fix
        report = arrowshm.doctor(other)
        assert report["pid_namespace"].status == "FAIL"
        assert "before the last reboot" in report["pid_namespace"].message
    finally:
        cleanup_namespace(other)


def test_a_malformed_namespace_name_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "arrowshm", "doctor", "--namespace", "Bad!"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "Bad!" in out.stderr


# -- PID namespaces ----------------------------------------------------------------------------

CONTAINER_PUT = """
import os
import pyarrow as pa
import arrowshm
arrowshm.put("from-elsewhere", pa.table({"x": [1]}))
print("pid here:", os.getpid(), flush=True)
"""


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare")
@pytest.mark.timeout(180)
def test_a_namespace_made_in_another_pid_namespace(namespace: str) -> None:
    other = unique_namespace("pidns")
    try:
        proc = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", CONTAINER_PUT],
            capture_output=True, text=True, timeout=150, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "ARROWSHM_NAMESPACE": other})
        assert proc.returncode == 0 and "pid here: 1" in proc.stdout, proc.stderr
        # this namespace: warned that another PID namespace shares /dev/shm
        c = arrowshm.doctor()["pid_namespace"]
        assert c.status in ("WARN", "FAIL") and other in c.details["other_pid_namespaces"]
        assert other in c.message and "--pid=" in c.fix
        # that namespace: it cannot be joined from here
        report = arrowshm.doctor(other)
        c = report["pid_namespace"]
        assert c.status == "FAIL" and "another PID namespace" in c.message, c
        assert "shareProcessNamespace" in c.fix
        assert report["namespace"].status == "FAIL"
        assert "AccessDeniedError" in report["namespace"].details["error"]
        assert report.exit_code == 2
    finally:
        cleanup_namespace(other)


# -- namespace, quota --------------------------------------------------------------------------


def test_a_nearly_full_registry_warns(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROWSHM_REGISTRY_CAPACITY", "4")  # read when the registry is made
    for i in range(4):
        arrowshm.put(f"r{i}", pa.table({"x": [i]}))
    c = arrowshm.doctor()["namespace"]
    assert c.status == "WARN" and "RegistryFullError" in c.message, c
    assert "ARROWSHM_REGISTRY_CAPACITY" in c.fix
    for i in range(4):
        arrowshm.delete(f"r{i}")


def test_quota_headroom(namespace: str) -> None:
    ns = arrowshm.Namespace(namespace)
    arrowshm.put("q", pa.table({"x": list(range(10_000))}))
    assert arrowshm.doctor()["quota"].status == "OK"
    used = ns.bytes_used
    ns.set_quota(used + used // 20)
    c = arrowshm.doctor()["quota"]
    assert c.status == "WARN" and "less than 10% left" in c.message, c
    ns.set_quota(used)
    c = arrowshm.doctor()["quota"]
    assert c.status == "FAIL" and "QuotaExceededError" in c.message and "set_quota" in c.fix
    ns.set_quota(1 << 50)
    c = arrowshm.doctor()["quota"]
    assert c.status == "WARN" and "larger than /dev/shm" in c.message
    ns.set_quota(None)
    arrowshm.delete("q")


# -- the service -------------------------------------------------------------------------------


def test_a_stale_service_socket_warns_and_a_foreign_directory_fails(
        namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert arrowshm.doctor()["service"].status == "OK"  # no service: fine, it is optional
    run = tmp_path / "arrowshm"
    run.mkdir(mode=0o700)
    path = run / f"{namespace}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # bound, never listening: what a killed service leaves
    c = arrowshm.doctor()["service"]
    assert c.status == "WARN" and "stale socket" in c.message and "arrowshm serve" in c.fix
    path.unlink()
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(1)  # never accepts: connecting works, no answer comes
    try:
        c = arrowshm.doctor()["service"]
        assert c.status == "WARN" and "does not answer" in c.message, c
    finally:
        mute.close()
    if os.geteuid() == 0:  # a socket file of another user
        os.chown(path, 54321, 54321)
        c = arrowshm.doctor()["service"]
        assert c.status == "FAIL" and "uid 54321" in c.message, c
        os.chown(path, 0, 0)
    run.chmod(0o777)
    c = arrowshm.doctor()["service"]
    assert c.status == "FAIL" and "0777" in c.message, c


@pytest.mark.timeout(180)
def test_a_running_service_answers_and_serves_v1_doctor(namespace: str, tmp_path: Path) -> None:
    from tests.service.helpers import ServeProcess

    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    with ServeProcess(env=env) as serve:
        _, report = _doctor(namespace, env=env)
        c = _check(report, "service")
        assert c["status"] == "OK" and c["details"]["answering"], c
        with serve.http() as http:
            r = http.get("/v1/doctor")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["namespace"] == namespace
        assert [c["name"] for c in body["checks"]] == CHECKS
        assert _check(body, "service")["message"] == "running inside arrowshm serve"
        assert _check(body, "namespace")["details"]["exists"] is True


# arrowshm's own modules the doctor imports at top level: each of them, and what they
# import in turn, must be the standard library only (no numba, no pyarrow)
CHEAP = {"_client", "_errors", "_names", "_proc", "_units", "kernels.status"}


def test_the_doctor_module_imports_only_the_standard_library_at_top_level() -> None:
    """``import arrowshm`` stays cheap: the data plane is imported inside doctor()."""
    import ast

    def top_imports(path: Path) -> tuple[list[str], list[str]]:
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        local, other = [], []
        for n in top:
            if isinstance(n, ast.ImportFrom) and n.level:
                if n.module:
                    local.append(n.module)
                else:  # from . import x
                    local.extend(a.name for a in n.names)
            else:
                other += [a.name for a in n.names] if isinstance(n, ast.Import) else [
                    n.module or ""]
        return local, other

    seen: set[str] = set()
    todo = [ROOT / "arrowshm" / "_doctor.py"]
    while todo:
        path = todo.pop()
        local, other = top_imports(path)
        for name in other:
            assert name.split(".")[0] in sys.stdlib_module_names | {"__future__"}, (path, name)
        for mod in local:
            mod = "kernels.status" if path.parent.name == "kernels" and mod == "status" else mod
            mod = "kernels.status" if mod == "kernels" else mod  # (`from .kernels import status`)
            assert mod in CHEAP, f"{path.name} imports .{mod} at top level"
            if mod not in seen:
                seen.add(mod)
                todo.append(ROOT / ("kernels/status.py" if mod == "kernels.status"
                                    else f"arrowshm/{mod}.py"))
