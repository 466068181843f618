"""What an operator sees over HTTP: who reads which version (`GET /v1/datasets/{name}`,
`/metrics`), memory and spares (`GET /v1/quota`, `/metrics`), `POST /v1/gc` with
`{"spares": true}`, and the service's reserve (`Settings.reserve`, `--reserve SIZE`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

import arrowshm
from arrowshm._names import current_namespace
from arrowshm.service.config import Settings, parse_size
from arrowshm.service.main import create_app

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = """
import sys, time
import arrowshm
t = arrowshm.get(sys.argv[1], version=int(sys.argv[2]))
print("holding", flush=True)
time.sleep(600)
"""


def _table(n: int = 10) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.int64)})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings.from_env(reaper_interval=0))  # gc only when asked
    with TestClient(app) as c:
        yield c


@pytest.fixture
def holder() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
    arrowshm.gc()


def _hold(procs: list[subprocess.Popen[str]], name: str, version: int) -> int:
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_HOLDER), name, str(version)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    return p.pid


def _samples(client: TestClient) -> list[str]:
    r = client.get("/metrics")
    assert r.status_code == 200
    return [ln for ln in r.text.splitlines() if ln and not ln.startswith("#")]


@pytest.mark.timeout(120)
def test_dataset_detail_and_metrics_name_the_readers_and_gc_releases_a_dead_ones_pins(
    client: TestClient, holder: list[subprocess.Popen[str]],
) -> None:
    arrowshm.put("d", _table(10), retain=2)
    v2 = arrowshm.put("d", _table(20), retain=2)
    pid1, pid2 = _hold(holder, "d", 1), _hold(holder, "d", 2)
    body = client.get("/v1/datasets/d").json()
    readers = {r["pid"]: r for r in body["readers"]}
    assert readers[pid1]["version"] == 1 and readers[pid2]["version"] == 2
    assert readers[pid1]["alive"] is True and readers[pid1]["command"].startswith("python")
    assert readers[pid1]["since"].endswith("Z") and body["readers_overflow"] == []

    ns = current_namespace()
    samples = _samples(client)
    assert f'arrowshm_dataset_readers{{namespace="{ns}",dataset="d",state="alive"}} 2' in samples
    assert f'arrowshm_dataset_readers{{namespace="{ns}",dataset="d",state="dead"}} 0' in samples
    assert (f'arrowshm_version_pinned_bytes{{namespace="{ns}",dataset="d",version="2"}} '
            f"{v2.nbytes}") in samples
    assert any(s.startswith(f'arrowshm_version_pinned_bytes{{namespace="{ns}",dataset="d",'
                            'version="1"}') for s in samples)

    os.kill(pid1, signal.SIGKILL)
    holder[0].wait(timeout=30)
    body = client.get("/v1/datasets/d").json()
    assert {r["pid"]: r["alive"] for r in body["readers"]} == {pid1: False, pid2: True}
    assert f'arrowshm_dataset_readers{{namespace="{ns}",dataset="d",state="dead"}} 1' in (
        _samples(client))
    r = client.post("/v1/gc")
    assert r.status_code == 200 and r.json()["pins_released"] == [f"d@1(pid {pid1})"]
    body = client.get("/v1/datasets/d").json()
    assert [(r["pid"], r["version"]) for r in body["readers"]] == [(pid2, 2)]
    assert not any(s.startswith(f'arrowshm_version_pinned_bytes{{namespace="{ns}",dataset="d",'
                                'version="1"}') for s in _samples(client))


@pytest.mark.timeout(120)
def test_quota_metrics_and_gc_show_and_free_spares(client: TestClient) -> None:
    arrowshm.put("s", _table(100_000))
    arrowshm.delete("s")  # the segment becomes a spare of the namespace
    q = client.get("/v1/quota").json()
    assert q["spares"] == 1 and q["spare_bytes"] > 0
    assert q["bytes_used"] == q["live_bytes"] + q["spare_bytes"]
    assert q["reserve"] == 0 and 0 < q["shm_free"] <= q["shm_total"]

    ns = current_namespace()
    samples = _samples(client)
    assert f'arrowshm_spares{{namespace="{ns}"}} 1' in samples
    assert f'arrowshm_spare_bytes{{namespace="{ns}"}} {q["spare_bytes"]}' in samples
    assert any(s.startswith(f'arrowshm_live_bytes{{namespace="{ns}"}} ') for s in samples)
    assert any(s.startswith(f'arrowshm_recycled_total{{namespace="{ns}"}} ') for s in samples)

    r = client.post("/v1/gc")  # a plain gc keeps a fresh spare
    assert r.status_code == 200 and (r.json()["spares"], r.json()["spares_freed"]) == (1, 0)
    assert client.post("/v1/gc", json={"bogus": True}).status_code == 422
    r = client.post("/v1/gc", json={"spares": True})
    assert r.status_code == 200, r.text
    assert (r.json()["spares_freed"], r.json()["spares"], r.json()["spare_bytes"]) == (1, 0, 0)
    assert r.json()["bytes_freed"] >= q["spare_bytes"]
    assert client.get("/v1/quota").json()["spares"] == 0


@pytest.mark.timeout(120)
def test_the_service_keeps_its_reserve_while_it_runs() -> None:
    want = 8 << 20
    app = create_app(Settings.from_env(reaper_interval=0, reserve=want))
    with TestClient(app) as c:
        assert c.get("/v1/quota").json()["reserve"] == want
        deadline = time.monotonic() + 60
        while c.get("/v1/quota").json()["spare_bytes"] < want // 2:
            assert time.monotonic() < deadline, c.get("/v1/quota").json()
            time.sleep(0.05)
    assert arrowshm.usage().reserve == 0  # stopped with the service
    arrowshm.gc(spares=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("4096", 4096), ("512K", 512 << 10), ("512M", 512 << 20), ("2G", 2 << 30),
    ("1.5g", 3 << 29), ("512MiB", 512 << 20), ("2GB", 2 << 30), ("1T", 1 << 40),
])
def test_sizes_parse_as_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1", "1e9", "inf", "nan", "5Q", "99999999T"])
def test_bad_sizes_are_refused_with_the_way_to_write_one(text: str) -> None:
    with pytest.raises(arrowshm.InvalidArgumentError, match=r"e\.g\. 512M or 2G"):
        parse_size(text)


def test_serve_refuses_a_bad_reserve_before_serving() -> None:
    out = subprocess.run([sys.executable, "-m", "arrowshm._cli", "serve", "--reserve", "lots"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert "--reserve 'lots' is not a size" in out.stderr


@pytest.mark.timeout(120)
def test_a_real_serve_with_reserve_and_the_client_frees_spares(tmp_path: Path) -> None:
    from .helpers import ServeProcess

    sock = tmp_path / "run" / "svc.sock"
    with ServeProcess("--socket", str(sock), "--reserve", "4M"), arrowshm.Client(sock) as c:
        assert c.quota()["reserve"] == 4 << 20
        deadline = time.monotonic() + 60
        while c.quota()["spare_bytes"] < 2 << 20:  # the service's thread fills it
            assert time.monotonic() < deadline, c.quota()
            time.sleep(0.05)
        report = c.gc(spares=True)
        assert report["spares_freed"] >= 1 and report["bytes_freed"] >= 2 << 20
        assert "pins_released" in c.gc()
    arrowshm.gc(spares=True)  # what the stopped service's reserve refilled meanwhile
