"""Streams through the service: readers, dead-reader eviction."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from arrowshm._names import current_namespace
from arrowshm.service.config import Settings
from arrowshm.service.main import create_app

_READER = """
import sys, time, arrowshm
r = arrowshm.StreamReader(sys.argv[1], start="earliest")
held = r.read(timeout=30)  # keep the batch: the writer cannot reuse its space
print("reading", flush=True)
time.sleep(600)
"""


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_env(reaper_interval=0.1))) as c:
        yield c


@pytest.mark.timeout(120)
def test_dead_reader_is_shown_then_evicted_by_the_reaper(client: TestClient) -> None:
    import arrowshm

    batch = pa.record_batch({"x": pa.array(range(100), pa.int64())})
    ns = current_namespace()
    with arrowshm.StreamWriter("feed/a", batch.schema, capacity_bytes=1 << 20) as w:
        w.write(batch)
        reader = subprocess.Popen([sys.executable, "-c", _READER, "feed/a"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "reading"
            d = client.get("/v1/streams/feed/a").json()
            assert d["details_available"] is True
            assert [r["pid"] for r in d["readers"]] == [reader.pid]
            assert d["readers"][0]["held_batches"] >= 1
            listed = client.get("/v1/streams").json()
            assert [s["name"] for s in listed["data"]] == ["feed/a"]
        finally:
            reader.kill()
            reader.wait()
        line = f'arrowshm_reaper_reclaimed_total{{namespace="{ns}",reason="reader"}} 1'
        deadline = time.monotonic() + 30
        while line not in client.get("/metrics").text:
            assert time.monotonic() < deadline, client.get("/metrics").text
            time.sleep(0.05)
        assert client.get("/v1/streams/feed/a").json()["readers"] == []
    assert client.delete("/v1/streams/feed/a").status_code == 204
