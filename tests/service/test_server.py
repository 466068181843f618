"""A real ``arrowshm serve`` subprocess: Unix socket, TCP, auth, reaper, events, restart."""

from __future__ import annotations

import json
import os
import pwd
import queue
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._names import current_namespace
from arrowshm.service.config import default_socket_path
from arrowshm.testing import data_objects

from ..helpers import run_python
from .helpers import ServeProcess

TOKEN = "s3cret-token"


def _table(n: int = 10) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.int64)})


def _until(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "svc.sock"


@pytest.mark.timeout(120)
def test_unix_socket_is_private_and_serves_the_client(sock_path: Path) -> None:
    arrowshm.put("a/b", _table(3))
    with ServeProcess("--socket", str(sock_path)) as srv:
        assert srv.address == f"unix:{sock_path}"
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
        with arrowshm.Client(sock_path) as c:
            assert c.health()["namespace"] == current_namespace()
            assert [d["name"] for d in c.list_datasets()] == ["a/b"]
            assert c.dataset("a/b")["num_rows"] == 3
            with pytest.raises(arrowshm.NotFoundError) as err:
                c.dataset("nope")
            assert err.value.name == "nope"
            with pytest.raises(arrowshm.InvalidNameError):
                c.dataset("bad name")
            assert c.patch_dataset("a/b", ttl_seconds=100)["ttl_seconds"] == 100
            c.delete_dataset("a/b")
            with pytest.raises(KeyError):
                arrowshm.get("a/b")
        assert srv.stop(signal.SIGTERM) == 0
    assert not sock_path.exists()
    events = [json.loads(line) for line in srv.logs().splitlines()]  # one JSON object a line
    assert {"service started", "service stopped", "signal received"} <= {e["event"] for e in events}


def test_serve_is_a_subcommand_and_other_commands_need_no_service() -> None:
    arrowshm.put("c1", _table())
    out = run_python("from arrowshm._cli import main; main(['serve', '--help'])", check=False)
    assert "--socket" in out.stdout and "--token" in out.stdout
    ls = run_python("from arrowshm._cli import main; raise SystemExit(main(['ls', '--json']))")
    assert '"c1"' in ls.stdout


@pytest.mark.timeout(60)
def test_default_socket_is_under_xdg_runtime_dir(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    with ServeProcess(env=env) as srv:
        assert srv.socket_path == tmp_path / "arrowshm" / f"{current_namespace()}.sock"
        assert srv.stop(signal.SIGINT) == 0
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path)
    try:
        assert default_socket_path("abc") == tmp_path / "arrowshm" / "abc.sock"
    finally:
        del os.environ["XDG_RUNTIME_DIR"]


@pytest.mark.timeout(120)
def test_tcp_requires_the_bearer_token() -> None:
    arrowshm.put("t", _table())
    with ServeProcess("--host", "127.0.0.1", "--port", "0", "--token", TOKEN) as srv:
        assert srv.address.startswith("http://127.0.0.1:")
        with srv.http() as anon:
            assert anon.get("/healthz").status_code == 200
            r = anon.get("/v1/datasets")
            assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
            assert anon.get("/metrics").status_code == 401
            assert anon.get("/openapi.json").status_code == 401
        with srv.http("wrong") as bad:
            assert bad.get("/v1/datasets").status_code == 401
        with srv.http(TOKEN) as good:
            assert good.get("/v1/datasets").json()["count"] == 1
        with arrowshm.Client(url=srv.address, token=TOKEN) as c:
            assert c.list_datasets()[0]["name"] == "t"
        with arrowshm.Client(url=srv.address, token="wrong") as c, \
                pytest.raises(arrowshm.AccessDeniedError):
            c.list_datasets()


@pytest.mark.timeout(60)
def test_tcp_without_a_token_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROWSHM_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "arrowshm._cli", "serve", "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode != 0
    assert "token" in proc.stderr


def _get_as(uid: int, path: Path) -> str:
    """GET /v1/datasets over the socket from a forked child running as *uid*."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stdlib sockets only, then _exit
        out = b""
        try:
            os.close(rfd)
            os.setgid(pwd.getpwuid(uid).pw_gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            try:
                s.connect(str(path))
            except PermissionError:
                out = b"EACCES"
            else:
                s.sendall(b"GET /v1/datasets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while chunk := s.recv(65536):
                    out += chunk
        except BaseException as exc:
            out = f"ERROR {exc!r}".encode()
        finally:
            os.write(wfd, out)
            os._exit(0)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another user")
@pytest.mark.timeout(120)
def test_another_uid_gets_403_unless_allowed(other_user: tuple[int, int]) -> None:
    uid = other_user[0]
    top = Path(tempfile.mkdtemp(prefix="ashsvc-"))  # pytest's tmp_path is 0700 all the way up
    os.chmod(top, 0o755)
    try:
        _check_uid_access(uid, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _check_uid_access(uid: int, top: Path) -> None:
    path = top / "run" / "svc.sock"
    with ServeProcess("--socket", str(path)):
        # the 0700 directory and the 0600 socket keep the other user out entirely
        assert _get_as(uid, path).strip() == "EACCES"
        # loosened by hand, the socket still checks the peer's uid (SO_PEERCRED)
        os.chmod(path.parent, 0o711)
        os.chmod(path, 0o666)
        out = _get_as(uid, path)
        assert out.startswith("HTTP/1.1 403"), out
        assert '"code":"AccessDeniedError"' in out
    path2 = top / "run2" / "svc.sock"
    with ServeProcess("--socket", str(path2), "--allow-uid", str(uid)):
        os.chmod(path2.parent, 0o711)
        os.chmod(path2, 0o666)
        assert _get_as(uid, path2).startswith("HTTP/1.1 200")


_PRODUCER = """
import os, sys, time
import numpy as np, pyarrow as pa
import arrowshm
from arrowshm._shm import layout as L
from arrowshm._names import current_namespace
from arrowshm._proc import identity
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment

arrowshm.put("kept", pa.table({"x": np.arange(1000)}))
reg = registry_of(current_namespace())
# a version half-written when the producer dies: WRITING, referenced by nothing
size = L.SEGMENT_HEADER_BYTES + (1 << 16)
reg.reserve(size)
seg = Segment.create(reg.segment_name(reg.new_segment_id()), size)
w = seg.words
w[L.S_FORMAT_VERSION] = L.FORMAT_VERSION
w[L.S_KIND] = L.KIND_DATASET
w[L.S_STATE] = L.SEG_WRITING
w[L.S_CREATOR_PID], w[L.S_CREATOR_START] = identity()
w[L.S_SEGMENT_BYTES] = size
w[L.S_MAGIC] = L.SEGMENT_MAGIC
view = reg.get_entry("kept")
with reg.entry_lock(view.slot):  # and it dies holding the entry's writer lock
    print("ready", flush=True)
    time.sleep(600)
"""


@pytest.mark.timeout(120)
def test_producer_killed_with_sigkill_is_reaped(sock_path: Path) -> None:
    ns = current_namespace()
    with ServeProcess("--socket", str(sock_path)) as srv:
        producer = subprocess.Popen([sys.executable, "-c", _PRODUCER], stdout=subprocess.PIPE,
                                    text=True)
        try:
            assert producer.stdout is not None
            assert producer.stdout.readline().strip() == "ready"
            assert len(data_objects(ns)) == 2
        finally:
            producer.kill()
            producer.wait()
        assert _until(lambda: len(data_objects(ns)) == 1)
        line = f'arrowshm_reaper_reclaimed_total{{namespace="{ns}",reason="segment"}} 1'
        with arrowshm.Client(sock_path) as c:
            assert c.dataset("kept")["num_rows"] == 1000
            # the reaper counts a reclaim just after it unlinked the segment
            assert _until(lambda: line in c.metrics()), c.metrics() + srv.logs()
        assert '"event": "reaped segment"' in srv.logs()
        assert arrowshm.get("kept").num_rows == 1000
    arrowshm.gc()


_PUTTER = """
import numpy as np, pyarrow as pa, arrowshm
arrowshm.put("ev/one", pa.table({"x": np.arange(3)}))
arrowshm.delete("ev/one")
"""


@pytest.mark.timeout(120)
def test_events_stream_publishes_and_deletes_of_other_processes(sock_path: Path) -> None:
    with ServeProcess("--socket", str(sock_path)) as srv:
        got: queue.Queue[dict[str, object] | str] = queue.Queue()

        def listen() -> None:
            try:
                with srv.http() as c, c.stream("GET", "/v1/events",
                                               timeout=httpx.Timeout(10, read=60)) as r:
                    assert r.headers["content-type"].startswith("text/event-stream")
                    for line in r.iter_lines():
                        if line.startswith(": connected"):
                            got.put("connected")  # subscribed: events from now on arrive
                        elif line.startswith("data:"):
                            got.put(json.loads(line[5:]))
            except httpx.HTTPError:
                pass

        threading.Thread(target=listen, daemon=True).start()
        assert got.get(timeout=30) == "connected"
        arrowshm.put("ev/one", _table(3))
        assert got.get(timeout=30) == {"name": "ev/one", "version": 1, "kind": "publish",
                                       "entry_kind": "dataset"}
        run_python(_PUTTER)  # another process publishes version 2, then deletes the name
        seen: list[object] = []
        while ("ev/one", "delete") not in seen:
            event = got.get(timeout=30)
            assert isinstance(event, dict)
            seen.append((event["name"], event["kind"]))
        # a publish and its delete may coalesce when they fall between two wake-ups
        assert seen in ([("ev/one", "publish"), ("ev/one", "delete")], [("ev/one", "delete")])


@pytest.mark.timeout(120)
def test_restarted_service_recovers_everything_from_the_registry(sock_path: Path) -> None:
    arrowshm.put("r1", _table())
    with ServeProcess("--socket", str(sock_path)), arrowshm.Client(sock_path) as c:
        c.set_quota(1 << 30)
        c.patch_dataset("r1", retain=2)
    with ServeProcess("--socket", str(sock_path)), arrowshm.Client(sock_path) as c:
        assert c.quota()["max_bytes"] == 1 << 30
        assert c.dataset("r1")["retain"] == 2
        c.set_quota(None)
    # the library works with the service stopped
    arrowshm.put("r2", _table())
    assert {d.name for d in arrowshm.list_datasets()} == {"r1", "r2"}


def test_stale_socket_file_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()  # a socket file nobody listens on, as a killed service leaves
    with ServeProcess("--socket", str(sock_path)) as srv:
        assert srv.address == f"unix:{sock_path}"


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ARROWSHM_TOKEN", raising=False)
    yield


@pytest.mark.timeout(120)
def test_a_socket_in_a_shared_directory_leaves_that_directory_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    sock = shared / "svc.sock"
    with ServeProcess("--socket", str(sock)):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        with arrowshm.Client(sock) as c:
            assert c.health()["namespace"] == current_namespace()
