"""Every notebook in notebooks/ runs, top to bottom, in a real Jupyter kernel.

The kernels are separate processes: each gets the test's namespace through
``ARROWSHM_NAMESPACE`` in its environment (and so do the processes a notebook
starts), so a test sees — and fails on — anything a notebook leaves behind.

Every notebook runs alone in a fresh kernel, as a new user would run it (open it,
Run All): the two sharing notebooks then start the missing partner as a process
of their own. The two sharing notebooks also run at the same time in two
kernels, as a user would run them side by side; then each must find the other's
kernel, not a stand-in process.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from arrowshm.testing import data_objects

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
PRODUCER = "01_share_producer.ipynb"
CONSUMER = "02_share_consumer.ipynb"
CELL_TIMEOUT = 90
# seconds a notebook may take alone (the sharing ones wait 10 s for their partner)
ALONE_BUDGET = 60
# what a notebook run alone must print: the sharing notebooks still show a second
# process reading the dataset (a stand-in for the missing notebook)
ALONE_PRINTS = {
    PRODUCER: ["starts a consumer process", "version 4: mean temperature",
               "saw version 4"],
    CONSUMER: ["starts a producer process", "version 4: mean temperature",
               "published versions 1 to 4"],
}
# notebooks that show a picture (a plot of a shared table or of put/get times)
PICTURES = {PRODUCER, CONSUMER, "04_stream_asyncio.ipynb"}


def _load(name: str) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # the kernel must be this venv's interpreter (jupyter_client maps the
    # "python3" kernelspec's "python" to sys.executable; make sure it did);
    # it prints its pid, for the tests that check who talked to whom
    check = nbformat.v4.new_code_cell(
        "import os, sys\n"
        f"assert sys.executable == {sys.executable!r}, sys.executable\n"
        'print(f"kernel process {os.getpid()}")'
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


def _printed(nb: Any) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.get("output_type") == "stream")


def _kernel_pid(nb: Any) -> int:
    match = re.search(r"kernel process (\d+)", _printed(nb))
    assert match, "the kernel check cell did not print the kernel's pid"
    return int(match.group(1))


def _pictures(nb: Any) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs if o.get("output_type") in ("display_data", "execute_result"))


def _assert_clean(namespace: str, cwd: Path) -> None:
    # before the fixture deletes anything: the notebook (and every process it
    # started) deleted what it created, and wrote no file where it ran
    assert data_objects(namespace) == [], "the notebook left shared memory behind"
    assert sorted(p.name for p in cwd.iterdir()) == [], "the notebook left files behind"


def test_there_are_notebooks_for_every_recipe() -> None:
    assert len(ALL) >= 5, ALL
    assert PRODUCER in ALL
    assert CONSUMER in ALL


@pytest.mark.parametrize("name", ALL)
def test_notebooks_are_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell has outputs"
            assert cell.execution_count is None, f"{name}: a cell has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_alone(name: str, namespace: str, tmp_path: Path) -> None:
    nb = _load(name)
    start = time.monotonic()
    _execute(nb, namespace, tmp_path)
    took = time.monotonic() - start
    assert took < ALONE_BUDGET, f"{name} took {took:.0f} s alone"
    printed = _printed(nb)
    for text in ALONE_PRINTS.get(name, []):
        assert text in printed, f"{name} did not print {text!r}:\n{printed}"
    if name in PICTURES:
        assert _pictures(nb) >= 1, f"{name} shows no picture"
    _assert_clean(namespace, tmp_path)


@pytest.mark.timeout(150)
def test_two_kernels_share_a_dataframe(namespace: str, tmp_path: Path) -> None:
    producer = _load(PRODUCER)
    consumer = _load(CONSUMER)
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
        t.join(timeout=120)
    assert not t.is_alive(), "the consumer notebook did not finish"
    if failure:
        raise failure[0]
    by_producer, by_consumer = _printed(producer), _printed(consumer)
    producer_pid, consumer_pid = _kernel_pid(producer), _kernel_pid(consumer)
    # neither started a stand-in process: each found the other's kernel
    assert "starts a consumer process" not in by_producer, by_producer
    assert "starts a producer process" not in by_consumer, by_consumer
    assert f"published by process {producer_pid}" in by_consumer, by_consumer
    assert f"a consumer notebook is reading demo/weather: process {consumer_pid}" \
        in by_producer, by_producer
    # the consumer kernel followed the versions the producer kernel published,
    # up to the last, and told the producer so
    assert "version 4: mean temperature" in by_consumer, by_consumer
    assert f"process {consumer_pid} saw version 4" in by_producer, by_producer
    _assert_clean(namespace, tmp_path)
