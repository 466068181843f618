"""Attack 8(a): a token given on the command line is readable by every user (ps,
/proc/PID/cmdline); ``--token-file`` keeps it out of sight and must be private."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arrowshm import AccessDeniedError, InvalidArgumentError

from ..service.helpers import ServeProcess
from .helpers import User, last_json, run_as

TOKEN = "file-token-0123456789"

# what any user of the host can see of every other process
SNOOP = """
needle = os.environ.pop("NEEDLE").encode()
seen = {"cmdline": [], "environ": [], "denied_environ": 0}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    for what in ("cmdline", "environ"):
        try:
            raw = Path(f"/proc/{pid}/{what}").read_bytes()
        except PermissionError:
            seen["denied_" + what] = seen.get("denied_" + what, 0) + 1
            continue
        except OSError:
            continue
        if needle in raw:
            seen[what].append(int(pid))
print(json.dumps(seen))
"""


def _token_file(tmp_path: Path, mode: int = 0o600, text: str = TOKEN + "\n") -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _serve_fails(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARROWSHM_TOKEN"}
    return subprocess.run([sys.executable, "-m", "arrowshm._cli", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(120)
def test_a_token_file_keeps_the_token_out_of_other_users_sight(
        tmp_path: Path, attacker: User) -> None:
    path = _token_file(tmp_path)
    with ServeProcess("--host", "127.0.0.1", "--port", "0", "--token-file", str(path)) as srv:
        with srv.http(TOKEN) as c:
            assert c.get("/v1/datasets").status_code == 200
        with srv.http("wrong") as c:
            assert c.get("/v1/datasets").status_code == 401
        seen = last_json(run_as(attacker, SNOOP, env={"NEEDLE": TOKEN}).stdout)
    assert seen["cmdline"] == [] and seen["environ"] == [], seen
    assert seen["denied_environ"] > 0  # it did try the service's environment


@pytest.mark.timeout(120)
def test_serve_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    proc = _serve_fails("--token-file", str(_token_file(tmp_path, 0o644)))
    assert proc.returncode == 1
    assert "has mode 0644" in proc.stderr and "chmod 600" in proc.stderr, proc.stderr
    assert "listening" not in proc.stdout


@pytest.mark.timeout(120)
def test_serve_refuses_a_token_file_of_another_user(tmp_path: Path, attacker: User) -> None:
    path = _token_file(tmp_path)
    os.chown(path, attacker.uid, attacker.gid)  # e.g. planted where the operator looks
    proc = _serve_fails("--token-file", str(path))
    assert proc.returncode == 1
    assert f"belongs to uid {attacker.uid}" in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_the_mirror_command_takes_a_private_token_file(tmp_path: Path, attacker: User) -> None:
    loose = _token_file(tmp_path, 0o640)
    bad = subprocess.run([sys.executable, "-m", "arrowshm._cli", "mirror", "grpc://127.0.0.1:9",
                          "prices", "--token-file", str(loose)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "has mode 0640" in bad.stderr, bad.stderr
    os.chmod(loose, 0o400)
    proc = subprocess.Popen([sys.executable, "-m", "arrowshm._cli", "mirror",
                             "grpc://127.0.0.1:9", "prices", "--token-file", str(loose)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("arrowshm mirror: prices @ ")
        seen = last_json(run_as(attacker, SNOOP, env={"NEEDLE": TOKEN}).stdout)
        assert seen["cmdline"] == [], seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def _outcome(reader: object, path: Path) -> str:
    try:
        return "token:" + reader(path)  # type: ignore[operator]
    except (AccessDeniedError, InvalidArgumentError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_both_token_file_readers_apply_the_same_rules(tmp_path: Path) -> None:
    """``arrowshm serve`` (service/config.py) and ``arrowshm mirror`` (arrowshm/_client.py)
    cannot share code (the service imports only the public package): same answers."""
    from arrowshm._client import read_token_file as client_read_token_file
    from arrowshm.service.config import read_token_file as service_read_token_file

    cases: dict[str, Path] = {}
    for name, mode, text in [("ok", 0o600, f"  {TOKEN}\n"), ("read-only", 0o400, TOKEN),
                             ("group", 0o640, TOKEN), ("other", 0o604, TOKEN),
                             ("group-write", 0o620, TOKEN), ("empty", 0o600, "\n"),
                             ("two-lines", 0o600, "a\nb\n"), ("big", 0o600, "x" * 5000)]:
        d = tmp_path / name
        d.mkdir()
        cases[name] = _token_file(d, mode, text)
    cases["directory"] = tmp_path / "ok"
    cases["missing"] = tmp_path / "nope"
    outcomes = {name: _outcome(service_read_token_file, p) for name, p in cases.items()}
    assert outcomes == {name: _outcome(client_read_token_file, p) for name, p in cases.items()}
    assert outcomes["ok"] == outcomes["read-only"] == "token:" + TOKEN
    for name in ("group", "other", "group-write"):
        assert outcomes[name].startswith("AccessDeniedError"), outcomes[name]
    for name in ("empty", "two-lines", "big", "directory", "missing"):
        assert outcomes[name].startswith("InvalidArgumentError"), outcomes[name]
