"""Peers and baselines that ``python -m bench`` runs beside arrowshm.

Each peer is one module here (``<name>_peer.py``) with a ``META`` dict and a
``main()`` that runs as a script in the peer's own interpreter: a virtual
environment under ``bench/.venvs/<venv>`` (created and filled by the bench
itself, so a peer's pyarrow/numpy never touch the main environment), or the
main interpreter when ``venv`` is None. The driver prints JSON timings on its
last stdout line (see ``_proto``). This module installs, runs and, on timeout,
stops them: the driver runs in its own session, and on timeout or failure every
process of that session, plus any process whose command line names the run's
work directory (daemons that detach), is killed by pid.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venvs"
PEERS = ["flight", "plasma", "vineyard", "ray"]
STREAM_PEERS = ["iceoryx2"]


def meta(name: str) -> dict[str, Any]:
    """A peer's META, read without importing its module (its imports may not exist here)."""
    tree = ast.parse((HERE / f"{name}_peer.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "META" for t in node.targets):
            return ast.literal_eval(node.value)  # type: ignore[no-any-return]
    raise LookupError(f"{name}_peer.py has no META")


def base_python() -> str:
    """The interpreter virtual environments are made from (the main venv's base)."""
    return getattr(sys, "_base_executable", sys.executable)


def python_of(m: dict[str, Any]) -> Path:
    return Path(sys.executable) if m["venv"] is None else VENVS / m["venv"] / "bin" / "python"


def available(m: dict[str, Any]) -> tuple[bool, str]:
    py = python_of(m)
    if not py.exists():
        return False, f"not installed (no {py.relative_to(HERE.parent.parent)})"
    r = subprocess.run([str(py), "-c", m["check"]], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"`{m['check']}` fails: {last}"
    return True, ""


def install(m: dict[str, Any], log: Path) -> tuple[bool, str]:
    """Create bench/.venvs/<venv> and pip-install the peer's requirements into it."""
    if m["venv"] is None:
        return available(m)
    venv = VENVS / m["venv"]
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        if not (venv / "bin" / "python").exists():
            r = subprocess.run([base_python(), "-m", "venv", str(venv)], stdout=f, stderr=f)
            if r.returncode:
                return False, f"python -m venv failed (see {log})"
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *m["requirements"]],
                           stdout=f, stderr=f, timeout=1800)
    if r.returncode:
        return False, f"pip install {' '.join(m['requirements'])} failed (see {log})"
    return available(m)


def _pids_naming(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in cmd:
            out.append(int(d))
    return out


def _kill_session(proc: subprocess.Popen[bytes], workdir: Path) -> None:
    """Kill the driver's process group, then stragglers that name our work directory."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in _pids_naming(str(workdir)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def run(name: str, tables: list[tuple[int, Path]], reps: int, repeat: int, workdir: Path,
        timeout: float | None = None, small: list[tuple[int, Path]] | None = None,
        small_n: int = 2000) -> dict[str, Any]:
    """Run one peer's driver; returns its JSON, or {"error": ...} (never raises).

    *small*: (rows, IPC file of distinct tables) for the small-table throughput, passed
    to the peers whose META says ``"small": True``."""
    m = meta(name)
    wd = workdir / name
    wd.mkdir(parents=True, exist_ok=True)
    cmd = [str(python_of(m)), str(HERE / f"{name}_peer.py"),
           "--tables", ",".join(f"{s}={p}" for s, p in tables),
           "--reps", str(reps), "--repeat", str(repeat), "--workdir", str(wd)]
    if small and m.get("small"):
        cmd += ["--small", ",".join(f"{r}={p}" for r, p in small), "--small-n", str(small_n)]
    env = dict(os.environ)
    env.update(m.get("env", {}))
    env.pop("PYTHONPATH", None)
    if m["venv"] is not None:
        env.pop("VIRTUAL_ENV", None)
    err_path = wd / "stderr.log"
    t0 = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env,
                                start_new_session=True, cwd=str(wd))
        try:
            out, _ = proc.communicate(timeout=timeout or m.get("timeout", 900))
        except subprocess.TimeoutExpired:
            _kill_session(proc, wd)
            proc.communicate()
            return {"error": f"timed out after {timeout or m.get('timeout')} s",
                    "seconds": time.monotonic() - t0}
        finally:
            if proc.poll() is None:
                _kill_session(proc, wd)
    # whatever the outcome, nothing started for this peer may outlive it
    leftovers = _pids_naming(str(wd))
    if leftovers:
        _kill_session(proc, wd)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail),
                "seconds": time.monotonic() - t0}
    result: dict[str, Any] = json.loads(lines[-1])
    result["seconds"] = time.monotonic() - t0
    if leftovers:
        result["killed_leftovers"] = leftovers
    return result
