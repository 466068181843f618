"""Throwaway users and processes that run as them, for the attack tests.

The interpreter lives under /root (mode 0700 here), so another user cannot
exec it: a process "of user U" is started by root, imports what it needs,
then drops every privilege for good (supplementary groups, gid, uid) before
it runs the test's code. From then on it is an ordinary process of U: the
kernel checks files, sockets and SO_PEERCRED against U's credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def make_user(prefix: str) -> User:
    """A new system user with its own group and no home (removed by :func:`drop_user`)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create throwaway users")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not available")
    name = f"{prefix}{os.getpid() % 100000}"
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        drop_user(name)
    r = subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                        "/usr/sbin/nologin", name], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    pw = pwd.getpwnam(name)
    return User(name, pw.pw_uid, pw.pw_gid)


def drop_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, timeout=60)
    subprocess.run(["userdel", name], capture_output=True, timeout=60)


def clean_runtime_dir(uid: int) -> None:
    """Remove /tmp/arrowshm-<uid> (what a test or an attacker made for that user)."""
    shutil.rmtree(f"/tmp/arrowshm-{uid}", ignore_errors=True)


# what every process of another user imports while still root (/root is closed to it)
_PRELUDE = """
import contextlib, json, os, socket, stat, sys, threading, time
from pathlib import Path
import arrowshm, arrowshm._client, arrowshm._mirror
import httpx, httpcore, h11, pyarrow.flight, certifi, ssl, idna, anyio
import httpcore._sync.connection_pool, httpcore._sync.http11, httpcore._backends.sync
import email.parser, email.message, http.client, encodings.idna, urllib.request
# build (and close) clients: every module httpx loads lazily is loaded now
httpx.Client(transport=httpx.HTTPTransport(uds="/nonexistent")).close()
httpx.Client().close()
os.setgroups([])
os.setgid({gid})
os.setuid({uid})
assert os.getuid() == os.geteuid() == {uid} and os.getgid() == {gid} and os.getgroups() == []
"""


def _prelude(user: User) -> str:
    return _PRELUDE.format(uid=user.uid, gid=user.gid)


def run_as(user: User, code: str, *args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run *code* (``sys.argv[1:]`` = *args*) in a new process of *user*; returns it
    finished."""
    return subprocess.run(
        [sys.executable, "-c", _prelude(user) + textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=_env(env), cwd="/")


def start_as(user: User, code: str, *args: str, env: dict[str, str] | None = None,
             ) -> subprocess.Popen[str]:
    """Start *code* (``sys.argv[1:]`` = *args*) in a new process of *user* (stdout and
    stderr piped, text)."""
    return subprocess.Popen(
        [sys.executable, "-c", _prelude(user) + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env), cwd="/")


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "ARROWSHM_TOKEN", "HOME")}
    env["HOME"] = "/nonexistent"
    env.update(extra or {})
    return env


def last_json(out: str) -> dict[str, object]:
    """The last line of *out* that is a JSON object."""
    for line in reversed(out.strip().splitlines()):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                return obj
    raise AssertionError(f"no JSON line in {out!r}")


# A fake service: it answers every HTTP request on a Unix socket with a made-up
# listing and reports every byte it received (one JSON line per connection).
# {setup} runs first, as the same user (e.g. planting the directory).
FAKE_SERVICE = """
path = Path(sys.argv[1])
{setup}
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(str(path))
os.chmod(path, 0o666)
srv.listen(16)
srv.settimeout(0.2)
print(json.dumps({"ready": True}), flush=True)
body = json.dumps({"data": [{"name": "planted-by-uid-%d" % os.getuid()}], "count": 1}).encode()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        continue
    conn.settimeout(2)
    got = b""
    with contextlib.suppress(OSError):
        while b"\\r\\n\\r\\n" not in got:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    if got.startswith(b"QUIT"):
        conn.close()
        break
    with contextlib.suppress(OSError):
        conn.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
                     b"content-length: %d\\r\\nconnection: close\\r\\n\\r\\n" % len(body) + body)
    conn.close()
    print(json.dumps({"received": got.decode("latin-1")}), flush=True)
srv.close()
"""


@contextlib.contextmanager
def fake_service(user: User, path: Path, setup: str = "") -> Iterator[list[str]]:
    """Run :data:`FAKE_SERVICE` as *user* at *path* after *setup* (code run as *user*,
    at the indentation of a module); yields the list that, once the block ends,
    holds every request it received (raw text)."""
    code = FAKE_SERVICE.replace("{setup}", textwrap.dedent(setup))
    proc = start_as(user, code, str(path))
    received: list[str] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if '"ready"' not in line:
            proc.kill()
            _, err = proc.communicate(timeout=60)
            raise AssertionError(f"the fake service did not start: {line!r} {err}")
        yield received
    finally:
        quit_fake_service(path)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        received.extend(str(json.loads(line)["received"]) for line in out.splitlines()
                        if line.startswith('{"received"'))


def quit_fake_service(path: Path) -> None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b"QUIT\r\n\r\n")


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
