"""Attack 8(b): ``arrowshm serve --socket PATH`` must replace only a stale socket of
its own; never a file, a symlink (or what it points to), nor another user's socket."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..service.helpers import ServeProcess
from .helpers import User, run_as


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``arrowshm serve`` expected to refuse to start (it would run on otherwise: the
    timeout then fails the test)."""
    return subprocess.run([sys.executable, "-m", "arrowshm._cli", "serve", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory everyone may write (not sticky), like a careless shared run dir."""
    top = Path(tempfile.mkdtemp(prefix="ashsock-"))
    os.chmod(top, 0o777)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.timeout(120)
def test_a_regular_file_at_the_socket_path_is_never_deleted(tmp_path: Path) -> None:
    precious = tmp_path / "data.db"
    precious.write_text("the operator's data")
    proc = _serve("--socket", str(precious))
    assert proc.returncode == 1
    assert "is a file, not a socket" in proc.stderr, proc.stderr
    assert precious.read_text() == "the operator's data"


@pytest.mark.timeout(120)
def test_a_symlink_at_the_socket_path_is_neither_followed_nor_deleted(tmp_path: Path) -> None:
    precious = tmp_path / "data.db"
    precious.write_text("the operator's data")
    link = tmp_path / "svc.sock"
    link.symlink_to(precious)
    proc = _serve("--socket", str(link))
    assert proc.returncode == 1
    assert "is a symlink, not a socket" in proc.stderr, proc.stderr
    assert link.is_symlink() and precious.read_text() == "the operator's data"


@pytest.mark.timeout(120)
def test_another_users_socket_is_not_replaced(shared_dir: Path, attacker: User) -> None:
    path = shared_dir / "svc.sock"
    made = run_as(attacker, """
    s = socket.socket(socket.AF_UNIX)
    s.bind(sys.argv[1])
    s.close()  # stale: nobody listens, as a killed service leaves it
    print("made")
    """, str(path))
    assert "made" in made.stdout, made.stderr
    proc = _serve("--socket", str(path))
    assert proc.returncode == 1
    assert f"is a socket of uid {attacker.uid}, not ours" in proc.stderr, proc.stderr
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == attacker.uid


@pytest.mark.timeout(120)
def test_a_symlinked_default_socket_directory_is_refused(tmp_path: Path) -> None:
    """$XDG_RUNTIME_DIR/arrowshm as a symlink to some directory of ours: the service must
    not follow it (it would make the target 0700 and bind there)."""
    target = tmp_path / "somewhere"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    (tmp_path / "arrowshm").symlink_to(target)
    proc = _serve(env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "is not a directory (a symlink?)" in proc.stderr, proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and list(target.iterdir()) == []


@pytest.mark.timeout(120)
def test_a_stale_socket_of_our_own_is_still_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run" / "svc.sock"
    path.parent.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    with ServeProcess("--socket", str(path)) as srv:
        assert srv.address == f"unix:{path}"
