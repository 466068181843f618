"""Segments on any filesystem (``ARROWSHM_DIR``): the core dataset, stream, spare,
gc and quota cases on a disk directory and on a separate tmpfs (mounted for real
in a private mount namespace, ``unshare -m``), a full filesystem, the directory
agreement between processes, and the directories that are refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm import layout as L
from arrowshm._shm.context import describe_namespace, namespace_dir
from arrowshm._shm.directory import check_directory, marker_name, read_marker
from arrowshm._shm.segment import Segment
from arrowshm.testing import cleanup_namespace, data_objects, namespace_objects
from tests.helpers import run_python

ROOT = Path(__file__).resolve().parents[2]


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(),
                                   reason="needs root and unshare -m to mount a tmpfs")
needs_other_user = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")


@pytest.fixture
def disk_dir() -> Iterator[str]:
    """A private (0700) directory on the disk under /var/tmp (sticky, root's)."""
    d = tempfile.mkdtemp(prefix="ashdir-", dir="/var/tmp")
    yield os.path.realpath(d)
    shutil.rmtree(d, ignore_errors=True)


def _run_cases(group: str, namespace: str, directory: str, *,
               tmpfs: str | None = None) -> None:
    """Run a group of :mod:`tests.ops._dir_cases` in a child with ``ARROWSHM_DIR``;
    with *tmpfs* (mount options), a fresh tmpfs is mounted on *directory* first,
    visible only to the child and its children."""
    cmd = [sys.executable, "-m", "tests.ops._dir_cases", group]
    if tmpfs is not None:
        script = f"set -e; mount -t tmpfs -o {tmpfs} tmpfs {directory}; exec \"$@\""
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *cmd]
    env = {**os.environ, "ARROWSHM_DIR": directory, "ARROWSHM_NAMESPACE": namespace,
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0 and f"OK {group}" in proc.stdout, proc.stdout + proc.stderr
    # the child removed everything, its /dev/shm marker included
    assert not [e for e in os.listdir("/dev/shm") if e.startswith(f"ash-{namespace}-")]


GROUPS = ["datasets", "streams", "spares"]


@pytest.mark.parametrize("group", GROUPS)
def test_core_cases_on_a_disk_directory(group: str, namespace: str, disk_dir: str) -> None:
    _run_cases(group, namespace, disk_dir)
    assert os.listdir(disk_dir) == []


@needs_unshare
@pytest.mark.parametrize("group", GROUPS)
def test_core_cases_on_a_separate_tmpfs(group: str, namespace: str, disk_dir: str) -> None:
    _run_cases(group, namespace, disk_dir, tmpfs="size=256m,mode=700")


@needs_unshare
def test_core_cases_on_a_huge_page_tmpfs(namespace: str, disk_dir: str) -> None:
    _run_cases("datasets", namespace, disk_dir, tmpfs="size=256m,mode=700,huge=within_size")


@needs_unshare
def test_a_full_directory_raises_shm_full_naming_it(namespace: str, disk_dir: str) -> None:
    _run_cases("full", namespace, disk_dir, tmpfs="size=8m,mode=700")


def test_objects_live_in_the_directory_and_a_marker_in_dev_shm(
        namespace: str, disk_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROWSHM_DIR", disk_dir)
    info = arrowshm.put("a", pa.table({"x": [1, 2, 3]}))
    assert info.segment.startswith(f"{disk_dir}/ash-{namespace}-")
    assert sorted(os.listdir(disk_dir)) == sorted(
        [f"ash-{namespace}-reg", os.path.basename(info.segment)])
    marker = Path("/dev/shm") / marker_name(namespace)[1:]
    assert marker.read_text() == f"ARROWSHM_DIR={disk_dir}\n"
    st = marker.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(f"{disk_dir}/ash-{namespace}-reg").st_mode) == 0o600
    assert arrowshm.usage().directory == disk_dir
    assert namespace_dir(namespace) == disk_dir and read_marker(namespace) == disk_dir
    d = describe_namespace(namespace)
    assert d.ok and d.directory == d.recorded == disk_dir and d.total_bytes > 0
    assert set(data_objects(namespace)) == {info.segment}
    assert marker_name(namespace) in namespace_objects(namespace)
    arrowshm.delete("a")


def test_a_process_with_another_directory_is_told_which_to_set(
        namespace: str, disk_dir: str, tmp_path: Path) -> None:
    run_python("import arrowshm, pyarrow as pa; arrowshm.put('a', pa.table({'x': [1]}))",
               env={"ARROWSHM_DIR": disk_dir})
    # unset: refused, told the value to set (and nothing made in /dev/shm)
    with pytest.raises(arrowshm.ConflictError, match=f"Set ARROWSHM_DIR={disk_dir} "):
        arrowshm.get("a")
    assert not os.path.exists(f"/dev/shm/ash-{namespace}-reg")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    proc = run_python("import arrowshm; arrowshm.get('a')", check=False,
                      env={"ARROWSHM_DIR": str(other)})
    assert proc.returncode != 0 and "ConflictError" in proc.stderr
    assert f"Set ARROWSHM_DIR={disk_dir} " in proc.stderr and not list(other.iterdir())
    err = describe_namespace(namespace)
    assert not err.ok and err.recorded == disk_dir and disk_dir in (err.problem or "")
    # the same directory through a symbolic link is the same directory
    link = tmp_path / "link"
    link.symlink_to(disk_dir)
    run_python("import arrowshm; assert arrowshm.get('a').num_rows == 1; "
               "arrowshm.delete('a')", env={"ARROWSHM_DIR": str(link)})
    cleanup_namespace(namespace)  # (this process never mapped the namespace)


def test_a_namespace_in_dev_shm_refuses_a_process_of_another_directory(
        namespace: str, disk_dir: str) -> None:
    arrowshm.put("a", pa.table({"x": [1]}))
    proc = run_python("import arrowshm; arrowshm.get('a')", check=False,
                      env={"ARROWSHM_DIR": disk_dir})
    assert proc.returncode != 0 and "ConflictError" in proc.stderr
    assert "Unset ARROWSHM_DIR" in proc.stderr
    assert os.listdir(disk_dir) == [] and read_marker(namespace) is None
    arrowshm.delete("a")


def _refused(directory: str, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        check_directory(directory)
    # and through the public API, in a process that never used the namespace
    proc = run_python("import arrowshm, pyarrow as pa; arrowshm.put('a', pa.table({'x': [1]}))",
                      check=False, env={"ARROWSHM_DIR": directory})
    assert proc.returncode != 0 and exc.__name__ in proc.stderr, proc.stderr


def test_insecure_or_unusable_directories_are_refused(tmp_path: Path, namespace: str) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    _refused(str(d), arrowshm.AccessDeniedError, "writable by other users")
    d.chmod(0o770)
    _refused(str(d), arrowshm.AccessDeniedError, "chmod go-w")
    d.chmod(0o1777)  # sticky, like /tmp: others cannot touch our files
    assert check_directory(str(d)) == str(d)
    _refused(str(tmp_path / "missing"), arrowshm.NotFoundError, "mkdir -m 700")
    f = tmp_path / "file"
    f.write_text("")
    _refused(str(f), arrowshm.InvalidArgumentError, "not a directory")
    proc = run_python("import arrowshm; arrowshm.list_datasets()", check=False,
                      env={"ARROWSHM_DIR": "relative/dir"})
    assert "InvalidArgumentError" in proc.stderr and "absolute path" in proc.stderr
    assert not [e for e in os.listdir("/dev/shm") if e.startswith(f"ash-{namespace}-")]


@needs_unshare
def test_a_read_only_filesystem_is_refused(namespace: str, disk_dir: str) -> None:
    code = ("import arrowshm, pyarrow as pa\n"
            "try:\n    arrowshm.put('a', pa.table({'x': [1]}))\n"
            "except arrowshm.AccessDeniedError as exc:\n    print('refused:', exc)\n")
    script = f"set -e; mount -t tmpfs -o ro,mode=700 tmpfs {disk_dir}; exec \"$@\""
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "ARROWSHM_DIR": disk_dir, "ARROWSHM_NAMESPACE": namespace})
    assert proc.returncode == 0 and "refused:" in proc.stdout, proc.stdout + proc.stderr
    assert "read-only" in proc.stdout and disk_dir in proc.stdout
    assert read_marker(namespace) is None  # refused before anything was made


@needs_other_user
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    _refused(str(d), arrowshm.AccessDeniedError, "belongs to uid 65534")
    inner = d / "mine"
    inner.mkdir(mode=0o700)  # ours, but below a directory they can change
    _refused(str(inner), arrowshm.AccessDeniedError, "belongs to uid 65534")


def test_links_and_fifos_planted_in_the_directory_are_refused(
        namespace: str, disk_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = f"{disk_dir}/ash-{namespace}-reg"
    os.symlink("/etc/passwd", reg)
    monkeypatch.setenv("ARROWSHM_DIR", disk_dir)
    with pytest.raises(arrowshm.AccessDeniedError, match="symbolic link"):
        arrowshm.list_datasets()
    os.unlink(reg)
    os.mkfifo(reg, 0o600)  # an open of a FIFO would block: refused at once instead
    with pytest.raises(arrowshm.AccessDeniedError):
        Segment.open(reg)
    os.unlink(reg)
    cleanup_namespace(namespace)


@needs_other_user
def test_another_users_marker_is_never_trusted(namespace: str, disk_dir: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "/dev/shm" + marker_name(namespace)
    with open(marker, "w") as f:
        f.write("ARROWSHM_DIR=/\n")
    os.chown(marker, 65534, 65534)
    try:
        with pytest.raises(arrowshm.AccessDeniedError, match="belongs to uid 65534"):
            arrowshm.list_datasets()
        monkeypatch.setenv("ARROWSHM_DIR", disk_dir)
        with pytest.raises(arrowshm.AccessDeniedError, match="belongs to uid 65534"):
            arrowshm.Namespace(namespace).list_datasets()
    finally:
        os.unlink(marker)
    cleanup_namespace(namespace)


def test_a_corrupt_marker_is_reported(namespace: str) -> None:
    marker = "/dev/shm" + marker_name(namespace)
    with open(marker, "w") as f:
        f.write("garbage")
    os.chmod(marker, 0o600)
    try:
        with pytest.raises(arrowshm.CorruptSegmentError, match="not an arrowshm directory"):
            arrowshm.list_datasets()
    finally:
        os.unlink(marker)
    cleanup_namespace(namespace)


def test_nothing_survives_a_reboot_even_on_disk(namespace: str, disk_dir: str) -> None:
    run_python("import arrowshm, pyarrow as pa; arrowshm.put('a', pa.table({'x': [1]}))",
               env={"ARROWSHM_DIR": disk_dir})
    # a reboot: /dev/shm (the marker) is emptied, and the boot id changes
    os.unlink("/dev/shm" + marker_name(namespace))
    words = np.memmap(f"{disk_dir}/ash-{namespace}-reg", dtype=np.uint64, mode="r+",
                      shape=(L.REGISTRY_HEADER_BYTES // 8,))
    words[L.H_BOOT_ID] ^= np.uint64(1)
    words.flush()
    del words
    proc = run_python("import arrowshm; arrowshm.get('a')", check=False,
                      env={"ARROWSHM_DIR": disk_dir})
    assert "AccessDeniedError" in proc.stderr and "before the last reboot" in proc.stderr
    assert f"rm {disk_dir}/ash-{namespace}-*" in proc.stderr
    cleanup_namespace(namespace)
    for e in os.listdir(disk_dir):  # what the operator is told to remove
        os.unlink(os.path.join(disk_dir, e))


def test_the_fallback_without_o_tmpfile_creates_and_refuses_existing(disk_dir: str) -> None:
    path = f"{disk_dir}/ash-zz-1"
    seg = Segment._create_named(path, 8192, mode=0o600, populate=False, init=None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and seg.size == 8192
    with pytest.raises(FileExistsError):
        Segment._create_named(path, 8192, mode=0o600, populate=False, init=None)
    assert Segment.open(path).size == 8192
    os.unlink(path)


_KILLED_WRITER = """
import time, pyarrow as pa, arrowshm
b = arrowshm.build("killed", pa.schema([("x", pa.int64())]), 100_000)
b.__enter__()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(180)
def test_a_real_service_serves_and_reaps_a_disk_directory(
        namespace: str, disk_dir: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.service.helpers import ServeProcess

    sock = tmp_path / "run" / "svc.sock"
    monkeypatch.setenv("ARROWSHM_DIR", disk_dir)
    arrowshm.put("a", pa.table({"x": [1, 2]}))
    with ServeProcess("--socket", str(sock)) as srv, arrowshm.Client(sock) as c:
        assert c.quota()["directory"] == disk_dir
        assert [d["name"] for d in c.list_datasets()] == ["a"]
        writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
            assert len(data_objects(namespace)) == 2
        finally:
            writer.kill()
            writer.wait()
        deadline = time.monotonic() + 60  # the service's reaper (every 0.2 s) frees it
        while len(data_objects(namespace)) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(data_objects(namespace)) == 1, srv.logs()
        assert all(n.startswith(disk_dir + "/") for n in data_objects(namespace))
        c.delete_dataset("a")
        c.gc(spares=True)  # (the deleted version became a spare)
    assert data_objects(namespace) == []


def test_the_service_reports_the_directory(namespace: str, disk_dir: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from arrowshm.service.main import create_app

    monkeypatch.setenv("ARROWSHM_DIR", disk_dir)
    with TestClient(create_app()) as client:
        quota = client.get("/v1/quota").json()
        assert quota["directory"] == disk_dir and quota["shm_total"] > 0
        assert client.get("/v1/usage").json()["directory"] == disk_dir
    assert os.path.exists(f"{disk_dir}/ash-{namespace}-reg")


_RACER = """
import sys, pyarrow as pa, arrowshm
from arrowshm._shm.context import context
sys.stdin.readline()                  # released together with the other process
try:
    context(arrowshm.usage().namespace)
    arrowshm.put("x", pa.table({"x": [1]}))
except arrowshm.ConflictError:
    print("refused")
else:
    print("joined", arrowshm.usage().directory)
"""


def _race(namespace: str, disk_dir: str) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", _RACER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "ARROWSHM_NAMESPACE": namespace,
                                   **({"ARROWSHM_DIR": d} if d else {})})
             for d in ("", disk_dir)]
    for p in procs:  # (both have imported arrowshm by the time they read the line)
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


@pytest.mark.slow
def test_two_directories_racing_for_a_new_namespace_never_both_join(disk_dir: str) -> None:
    from arrowshm.testing import unique_namespace

    joined_both = []
    for _ in range(20):
        ns = unique_namespace("r")
        try:
            shm, disk = _race(ns, disk_dir)
            if shm.startswith("joined") and disk.startswith("joined"):
                joined_both.append(ns)  # FORBIDDEN: two namespaces of one name
            if shm.startswith("joined"):
                assert read_marker(ns) is None
                assert not [e for e in os.listdir(disk_dir) if e.startswith(f"ash-{ns}-")]
            if disk.startswith("joined"):
                assert read_marker(ns) == disk_dir
                assert not os.path.exists(f"/dev/shm/ash-{ns}-reg")
        finally:
            cleanup_namespace(ns)
            for e in os.listdir(disk_dir):
                if e.startswith(f"ash-{ns}-"):
                    os.unlink(os.path.join(disk_dir, e))
    assert joined_both == []


def _resident_bytes(path: str) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
def test_a_disk_dataset_evicted_from_the_page_cache_is_read_back_zero_copy(
        namespace: str, disk_dir: str) -> None:
    env = {"ARROWSHM_DIR": disk_dir, "PYTHONPATH": str(ROOT)}
    out = run_python("""
        import arrowshm
        from tests.helpers import stamped_table
        print(arrowshm.put("big", stamped_table(7, 2_000_000)).segment)
    """, env=env).stdout.strip()  # the writer exits: no process maps the segment
    assert out.startswith(disk_dir + "/")
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages can be dropped; dirty ones cannot
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    size = os.stat(out).st_size
    assert _resident_bytes(out) < size // 4  # (the kernel may keep a few pages)
    run_python(f"""
        import arrowshm
        from arrowshm._introspect import buffers_in_shm
        from tests.helpers import check_stamped
        t = arrowshm.get("big")
        inside, total, where = buffers_in_shm(t)
        assert inside == total and where == {{"{out}"}}, where
        assert check_stamped(t) == 7  # every page read back from the disk, intact
    """, env=env)
    assert _resident_bytes(out) > size // 2  # the reader faulted them in again
    run_python("import arrowshm; arrowshm.delete('big'); arrowshm.gc(spares=True)", env=env)
