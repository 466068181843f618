"""The FastAPI app in-process (TestClient): routes, errors, quota, TTL, events."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

import arrowshm
from arrowshm._names import current_namespace
from arrowshm._shm import layout as L
from arrowshm._shm.registry import registry_of
from arrowshm.service.config import Settings
from arrowshm.service.events import diff
from arrowshm.service.main import create_app
from arrowshm.testing import data_objects

from ..helpers import spare_objects


def _table(n: int = 10) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.int64), "y": np.arange(n, dtype=np.float64)})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings.from_env(reaper_interval=0.1))
    with TestClient(app) as c:
        yield c


def _until(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(60)
def test_healthz_names_the_namespace(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "namespace": current_namespace(),
                        "version": arrowshm.__version__}


@pytest.mark.timeout(60)
def test_every_route_is_documented_in_openapi(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    expected = {
        ("/healthz", "get"), ("/metrics", "get"), ("/v1/datasets", "get"),
        ("/v1/datasets/{name}", "get"), ("/v1/datasets/{name}", "patch"),
        ("/v1/datasets/{name}", "delete"), ("/v1/streams", "get"),
        ("/v1/streams/{name}", "get"), ("/v1/streams/{name}", "delete"),
        ("/v1/streams/{name}/readers/{reader_id}", "delete"), ("/v1/quota", "get"),
        ("/v1/quota", "put"), ("/v1/gc", "post"), ("/v1/events", "get"),
    }
    found = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= found
    for path, method in expected:
        op = doc["paths"][path][method]
        assert op.get("summary"), (path, method)
        assert op.get("description"), (path, method)
        assert op["responses"], (path, method)
    for name, schema in doc["components"]["schemas"].items():
        if name in {"HTTPValidationError", "ValidationError"}:
            continue
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


@pytest.mark.timeout(60)
def test_datasets_are_listed_described_patched_and_deleted(client: TestClient) -> None:
    arrowshm.put("sales/eu/2024", _table(5), retain=3)
    arrowshm.put("sales/eu/2024", _table(7), retain=3)
    arrowshm.put("other", _table(1))
    body = client.get("/v1/datasets").json()
    assert body["count"] == 2
    assert [d["name"] for d in body["data"]] == ["other", "sales/eu/2024"]
    assert client.get("/v1/datasets", params={"limit": 1, "offset": 1}).json()["data"][0][
        "name"] == "sales/eu/2024"

    d = client.get("/v1/datasets/sales/eu/2024").json()
    assert d["version"] == 2 and d["num_rows"] == 7 and d["versions"] == [2, 1]
    assert d["retain"] == 3 and d["ttl_seconds"] is None and d["owner_pid"] > 0
    assert [f["name"] for f in d["schema"]] == ["x", "y"]
    assert d["created_at"] <= d["updated_at"]

    p = client.patch("/v1/datasets/sales/eu/2024", json={"retain": 1, "ttl_seconds": 3600})
    assert p.status_code == 200, p.text
    assert p.json()["versions"] == [2] and p.json()["ttl_seconds"] == 3600
    with pytest.raises(KeyError):
        arrowshm.get("sales/eu/2024", version=1)
    assert arrowshm.info("sales/eu/2024").ttl == 3600
    p = client.patch("/v1/datasets/sales/eu/2024", json={"ttl_seconds": None})
    assert p.json()["ttl_seconds"] is None and arrowshm.info("sales/eu/2024").ttl is None

    assert client.delete("/v1/datasets/sales/eu/2024").status_code == 204
    assert client.get("/v1/datasets").json()["count"] == 1
    with pytest.raises(KeyError):
        arrowshm.get("sales/eu/2024")


@pytest.mark.timeout(60)
def test_errors_carry_the_arrowshm_class_name_and_status(client: TestClient) -> None:
    r = client.get("/v1/datasets/missing")
    assert r.status_code == 404
    assert r.json()["code"] == "NotFoundError" and r.json()["fields"]["name"] == "missing"
    r = client.get("/v1/datasets/bad%20name!")
    assert r.status_code == 422 and r.json()["code"] == "InvalidNameError"
    r = client.patch("/v1/datasets/x", json={"retain": 99})
    assert r.status_code == 422 and r.json()["code"] == "InvalidArgumentError"
    r = client.put("/v1/quota", json={"max_bytes": -1})
    assert r.status_code == 422 and r.json()["code"] == "InvalidArgumentError"
    assert client.delete("/v1/datasets/missing").json()["code"] == "NotFoundError"


@pytest.mark.timeout(60)
def test_quota_set_by_the_service_is_enforced_by_the_data_plane(client: TestClient) -> None:
    assert client.get("/v1/quota").json()["max_bytes"] is None
    arrowshm.put("a", _table(10))
    used = client.get("/v1/quota").json()["bytes_used"]
    assert used > 0
    r = client.put("/v1/quota", json={"max_bytes": used + 100})
    assert {k: r.json()[k] for k in ("namespace", "max_bytes", "bytes_used")} == {
        "namespace": current_namespace(), "max_bytes": used + 100, "bytes_used": used}
    with pytest.raises(arrowshm.QuotaExceededError):
        arrowshm.put("b", _table(10))
    assert data_objects(current_namespace()) and len(data_objects(current_namespace())) == 1
    client.put("/v1/quota", json={"max_bytes": None})
    arrowshm.put("b", _table(10))
    assert client.get("/v1/quota").json()["max_bytes"] is None


@pytest.mark.timeout(60)
def test_reaper_expires_ttl_datasets_and_counts_them(client: TestClient) -> None:
    arrowshm.put("short", _table(), ttl=0.2)
    arrowshm.put("long", _table())
    ns = current_namespace()
    # the expired version's segment becomes a spare of the namespace (listed, bounded)
    assert _until(lambda: len(set(data_objects(ns)) - set(spare_objects(ns))) == 1)
    assert [d["name"] for d in client.get("/v1/datasets").json()["data"]] == ["long"]
    line = f'arrowshm_reaper_reclaimed_total{{namespace="{ns}",reason="expired"}} 1'
    assert _until(lambda: line in client.get("/metrics").text)  # counted just after unlink


@pytest.mark.timeout(60)
def test_patched_ttl_expires_a_dataset(client: TestClient) -> None:
    arrowshm.put("p", _table())
    client.patch("/v1/datasets/p", json={"ttl_seconds": 0.05})
    assert _until(lambda: client.get("/v1/datasets/p").status_code == 404)
    ns = current_namespace()
    assert _until(lambda: set(data_objects(ns)) == set(spare_objects(ns)))


@pytest.mark.timeout(60)
def test_gc_route_reports_what_it_reclaimed(client: TestClient) -> None:
    r = client.post("/v1/gc")
    assert r.status_code == 200
    assert set(r.json()) == {"segments", "bytes_freed", "expired", "recovered", "kept",
                             "quota_recovered", "readers_evicted", "pins_released",
                             "spares_freed", "spares", "spare_bytes"}


@pytest.mark.timeout(60)
def test_metrics_are_prometheus_text_prefixed_arrowshm(client: TestClient) -> None:
    arrowshm.put("m", _table())
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = [ln for ln in r.text.splitlines() if ln and not ln.startswith("#")]
    assert samples and all(ln.startswith("arrowshm_") for ln in samples)
    ns = current_namespace()
    assert f'arrowshm_datasets{{namespace="{ns}"}} 1' in samples
    assert f'arrowshm_puts_total{{namespace="{ns}"}} 1' in samples
    assert any(ln.startswith("arrowshm_bytes_used") for ln in samples)
    assert any(ln.startswith("arrowshm_quota_bytes") for ln in samples)


@pytest.mark.timeout(60)
def test_streams_are_listed_from_the_registry_and_deletable(client: TestClient) -> None:
    reg = registry_of(current_namespace())
    reg.claim("ticks/live", L.KIND_STREAM)  # a bare stream entry, as a writer registers it
    arrowshm.put("ds", _table())
    body = client.get("/v1/streams").json()
    assert body["count"] == 1 and body["data"][0]["name"] == "ticks/live"
    d = client.get("/v1/streams/ticks/live").json()
    assert d["name"] == "ticks/live" and "readers" in d and "details_available" in d
    assert client.get("/v1/streams/ds").json()["code"] == "ConflictError"
    assert client.get("/v1/datasets/ticks/live").status_code == 409
    assert client.delete("/v1/streams/nope/readers/0").status_code == 404
    assert client.delete("/v1/streams/ticks/live").status_code == 204
    assert client.get("/v1/streams").json()["count"] == 0


def test_event_diff_reports_publishes_and_deletes() -> None:
    old = {"a": (1, 1, L.KIND_DATASET), "b": (1, 3, L.KIND_DATASET), "c": (2, 1, L.KIND_STREAM)}
    new = {"a": (1, 2, L.KIND_DATASET), "c": (3, 1, L.KIND_STREAM), "d": (1, 0, L.KIND_DATASET)}
    got = {(e.name, e.kind, e.version) for e in diff(old, new)}
    assert got == {("a", "publish", 2), ("b", "delete", 3), ("c", "delete", 1),
                   ("c", "publish", 1)}
