"""The code is ruff- and mypy-clean, and mypy really types the kernels' call sites."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.timeout(600)
def test_ruff_is_clean() -> None:
    pytest.importorskip("ruff")
    proc = _run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy")
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_mypy_sees_the_kernels_under_their_installed_name(tmp_path: Path) -> None:
    """kernels/ installs as arrowshm.kernels (package-dir); mypy must not type calls into
    it as Any (the arrowshm/kernels symlink shows it the installed layout)."""
    pytest.importorskip("mypy")
    assert (ROOT / "arrowshm" / "kernels").resolve() == (ROOT / "kernels").resolve()
    probe = tmp_path / "probe.py"
    probe.write_text("from arrowshm.kernels.pins import pin_version\n"
                     "from arrowshm.kernels.ring import ring_try_claim\n"
                     "reveal_type(pin_version)\nreveal_type(ring_try_claim)\n"
                     "pin_version('not an array')\n")
    proc = _run("mypy", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"),
                str(probe))
    out = proc.stdout
    assert 'Revealed type is "Any"' not in out, out
    assert "def (words:" in out, out
    assert 'incompatible type "str"' in out, out  # a wrong call is an error
    shutil.rmtree(tmp_path / ".mypy_cache", ignore_errors=True)
