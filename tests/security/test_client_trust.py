"""Attack 6: the client's token and trust must not go to whoever owns the socket
directory, and the mirrors' status directory must not be another user's."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import arrowshm
from arrowshm._names import current_namespace

from .helpers import User, fake_service, last_json, run_as

SECRET = "victims-secret-token"

# the victim asks the service of its namespace for the listing, as `arrowshm.Client()` does
VICTIM_LISTS = """
try:
    with arrowshm.Client(*sys.argv[1:2]) as c:
        print(json.dumps({"listing": c.list_datasets()}))
except arrowshm.ArrowShmError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory like /tmp: everyone may create files in it (sticky)."""
    top = Path(tempfile.mkdtemp(prefix="ashsec-"))
    os.chmod(top, 0o1777)
    try:
        yield top
    finally:
        import shutil

        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.timeout(120)
def test_client_refuses_a_socket_directory_another_user_planted(victim: User,
                                                                attacker: User) -> None:
    """Without XDG_RUNTIME_DIR the default socket is /tmp/arrowshm-<uid>/<ns>.sock: an
    attacker who makes that directory first must get neither the token nor the trust."""
    ns = current_namespace()
    planted = Path(f"/tmp/arrowshm-{victim.uid}")
    setup = f"""
    os.mkdir({str(planted)!r})
    os.chmod({str(planted)!r}, 0o777)  # so that the victim can connect
    """
    with fake_service(attacker, planted / f"{ns}.sock", setup) as received:
        victim_run = run_as(victim, VICTIM_LISTS, env={"ARROWSHM_TOKEN": SECRET})
    result = last_json(victim_run.stdout + victim_run.stderr)
    assert result.get("error") == "AccessDeniedError", result  # not the planted listing
    assert f"belongs to uid {attacker.uid}" in str(result["message"])
    assert received == []  # not a byte went to the attacker, let alone the token


@pytest.mark.timeout(120)
def test_client_checks_the_servers_uid_before_sending_anything(
        victim: User, attacker: User, shared_dir: Path) -> None:
    """A socket file that looks like the victim's but is served by the attacker (here
    root hands it to the victim with chown) is refused on SO_PEERCRED alone."""
    path = shared_dir / "svc.sock"
    with fake_service(attacker, path) as received:
        os.chown(path, victim.uid, victim.gid)  # the file's owner is right, the peer is not
        victim_run = run_as(victim, VICTIM_LISTS, str(path), env={"ARROWSHM_TOKEN": SECRET})
    result = last_json(victim_run.stdout + victim_run.stderr)
    assert result.get("error") == "AccessDeniedError", result
    assert f"runs as uid {attacker.uid}" in str(result["message"])
    assert "".join(received) == ""  # it connected to ask the peer's uid, and sent nothing


@pytest.mark.timeout(120)
def test_client_refuses_a_socket_of_another_user_in_a_shared_directory(
        victim: User, attacker: User, shared_dir: Path) -> None:
    path = shared_dir / "svc.sock"
    with fake_service(attacker, path) as received:
        victim_run = run_as(victim, VICTIM_LISTS, str(path), env={"ARROWSHM_TOKEN": SECRET})
    result = last_json(victim_run.stdout + victim_run.stderr)
    assert result.get("error") == "AccessDeniedError", result
    assert f"belongs to uid {attacker.uid}" in str(result["message"])
    assert received == []


def _one_request_server(path: Path, got: list[bytes]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            srv.close()
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            body = b'{"data": [], "count": 0}'
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.timeout(60)
def test_the_token_never_crosses_a_unix_socket(tmp_path: Path) -> None:
    """Even to a socket of our own uid: the peer uid is the credential there, and the
    token (meant for TCP) must not be handed to whatever process listens."""
    path = tmp_path / "svc.sock"
    got: list[bytes] = []
    t = _one_request_server(path, got)
    with arrowshm.Client(path, token=SECRET) as c:
        assert c.list_datasets() == []
    t.join(30)
    assert len(got) == 1 and got[0].startswith(b"GET /v1/datasets")
    assert SECRET.encode() not in got[0] and b"authorization" not in got[0].lower()


MIRROR_AS_VICTIM = """
ns = sys.argv[1]
out = {"statuses": [s.local_name for s in arrowshm.mirror_statuses(ns)]}
try:
    arrowshm.Mirror("grpc://127.0.0.1:9", "prices", namespace=ns)
    out["mirror"] = "started"
except arrowshm.ArrowShmError as exc:
    out["mirror"] = type(exc).__name__
    out["message"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("level", ["runtime", "namespace"])
def test_a_planted_mirror_status_directory_is_ignored_and_refused(
        victim: User, attacker: User, level: str) -> None:
    ns = current_namespace()
    top = Path(f"/tmp/arrowshm-{victim.uid}")
    ns_dir = top / "mirrors" / ns
    record = {"local_name": "planted", "remote_name": "x", "remote": "grpc://evil:1",
              "state": "live", "pid": 1}
    if level == "namespace":  # the victim's own top directories, the attacker's leaf
        top.mkdir(mode=0o755)
        (top / "mirrors").mkdir(mode=0o777)  # a careless mode that let the attacker in
        os.chmod(top / "mirrors", 0o777)
        os.chown(top, victim.uid, victim.gid)
        os.chown(top / "mirrors", victim.uid, victim.gid)
    plant = run_as(attacker, f"""
    d = Path({str(ns_dir)!r})
    d.mkdir(mode=0o777, parents=True, exist_ok=True)
    for p in [d, *d.parents]:
        if p.stat().st_uid == os.getuid():
            os.chmod(p, 0o777)
    (d / "planted.json").write_text({json.dumps(record)!r})
    print("planted")
    """)
    assert "planted" in plant.stdout, plant.stderr
    result = last_json(run_as(victim, MIRROR_AS_VICTIM, ns).stdout)
    assert result["statuses"] == []  # the planted record is not shown
    assert result["mirror"] == "AccessDeniedError", result  # nor written into
    assert sorted(p.name for p in ns_dir.iterdir()) == ["planted.json"]


@pytest.mark.timeout(120)
def test_a_mirror_status_directory_of_ones_own_is_used(victim: User) -> None:
    ns = current_namespace()
    code = """
    ns = sys.argv[1]
    m = arrowshm.Mirror("grpc://127.0.0.1:9", "prices", namespace=ns)
    m._update(state="reconnecting")  # what the mirror thread writes first
    d = arrowshm._mirror.status_dir(ns)
    modes = [oct(stat.S_IMODE(os.lstat(p).st_mode)) for p in (d.parent.parent, d.parent, d)]
    names = [s.local_name for s in arrowshm.mirror_statuses(ns)]
    print(json.dumps({"modes": modes, "names": names,
                      "file_mode": oct(stat.S_IMODE(os.lstat(m._status_path).st_mode))}))
    """
    result = last_json(run_as(victim, code, ns).stdout)
    assert result == {"modes": ["0o700"] * 3, "names": ["prices"], "file_mode": "0o600"}
