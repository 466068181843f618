"""Every notebook in notebooks/ runs, top to bottom, in a real Jupyter kernel.

The kernels are separate processes: each gets the test's namespace through
``ARROWSHM_NAMESPACE`` in its environment, so the conftest fixture sees (and
fails on) anything a notebook leaves behind. The two sharing notebooks run at
the same time in two kernels, as a user would run them.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
SINGLE = [n for n in ALL if "_share_" not in n]
CELL_TIMEOUT = 120


def _load(name: str) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # the kernel must be this venv's interpreter (jupyter_client maps the
    # "python3" kernelspec's "python" to sys.executable; make sure it did)
    check = nbformat.v4.new_code_cell(
        f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    )
    check["id"] = "test-kernel-check"
    nb.cells.insert(0, check)
    return nb


def _execute(nb: Any, namespace: str, cwd: Path) -> None:
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    env = dict(os.environ, ARROWSHM_NAMESPACE=namespace)
    client.execute(env=env)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []


def test_there_are_notebooks_for_every_recipe() -> None:
    assert len(ALL) >= 5, ALL
    assert any("_share_producer" in n for n in ALL)
    assert any("_share_consumer" in n for n in ALL)


@pytest.mark.parametrize("name", ALL)
def test_notebooks_are_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell has outputs"
            assert cell.execution_count is None, f"{name}: a cell has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.timeout(300)
def test_two_kernels_share_a_dataframe(namespace: str, tmp_path: Path) -> None:
    producer = _load("01_share_producer.ipynb")
    consumer = _load("02_share_consumer.ipynb")
    failure: list[BaseException] = []

    def run_consumer() -> None:
        try:
            _execute(consumer, namespace, tmp_path)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    t = threading.Thread(target=run_consumer, name="consumer-kernel")
    t.start()
    try:
        _execute(producer, namespace, tmp_path)
    finally:
        t.join(timeout=250)
    assert not t.is_alive(), "the consumer notebook did not finish"
    if failure:
        raise failure[0]
    # the consumer really followed the versions the producer published
    printed = "".join(o.get("text", "") for c in consumer.cells if c.cell_type == "code"
                      for o in c.outputs if o.get("output_type") == "stream")
    assert "version 4: mean temperature" in printed


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SINGLE)
def test_notebook_runs_without_errors(name: str, namespace: str, tmp_path: Path) -> None:
    nb = _load(name)
    _execute(nb, namespace, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the notebook left files behind"
