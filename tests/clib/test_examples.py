"""The examples of docs/OTHER_LANGUAGES.md are the files in clib/examples, and they build
and run against a dataset Python put."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

import arrowshm

from .conftest import CLIB, ROOT, Drivers

pytestmark = pytest.mark.timeout(240)


def test_the_documented_examples_are_the_example_files() -> None:
    doc = (ROOT / "docs" / "OTHER_LANGUAGES.md").read_text()
    for name in ("example.c", "example.cpp"):
        source = (CLIB / "examples" / name).read_text()
        assert source in doc, f"docs/OTHER_LANGUAGES.md does not show clib/examples/{name}"
        assert len(source.splitlines()) <= 26, name


def test_the_examples_read_a_python_put(namespace: str, drivers: Drivers) -> None:
    arrowshm.put("prices", pa.table({"sym": ["a", "b", "c"], "px": [1.5, 2.5, 3.5]}))
    env = {**os.environ, "ARROWSHM_NAMESPACE": namespace}
    out = subprocess.run([str(drivers.dir / "example_c"), "prices"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0, out
    assert out.stdout.startswith("prices version 1: 3 rows, "), out.stdout
    missing = subprocess.run([str(drivers.dir / "example_c"), "nope"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert missing.returncode == 1 and "ASH_ENOTFOUND" in missing.stderr
    cpp = drivers.dir / "example_cpp"
    if not cpp.exists():
        pytest.skip("no C++ compiler: the C++ example is untested")
    out = subprocess.run([str(Path(cpp)), "prices"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out
    assert out.stdout.startswith("prices: 3 rows\nsym: string\npx: double"), out.stdout
