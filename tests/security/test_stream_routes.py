"""Attack 8(e): ``DELETE /v1/streams/x/readers/1`` always meant "evict reader 1 of
``x``", so a stream named ``x/readers/1`` could not be deleted, and the request
acted on ``x`` instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import arrowshm

from ..service.helpers import ServeProcess

SCHEMA = pa.schema([("x", pa.int64())])
_READER = """
import sys, time, arrowshm
r = arrowshm.StreamReader(sys.argv[1], start="earliest")
held = r.read(timeout=30)
print("reading", flush=True)
time.sleep(600)
"""


def _reader(name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _READER, name], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reading"
    return proc


def _dead_reader(name: str) -> int:
    """Attach a reader in another process, SIGKILL it; returns its pid."""
    proc = _reader(name)
    proc.kill()
    proc.wait()
    return proc.pid


@pytest.mark.timeout(120)
def test_delete_of_a_stream_whose_name_ends_in_readers_n_deletes_that_stream(
        tmp_path: Path) -> None:
    batch = pa.record_batch({"x": pa.array([1, 2, 3], pa.int64())})
    # "--reaper-interval 0": only the requests below may evict anything
    with ServeProcess("--socket", str(tmp_path / "svc.sock"), "--reaper-interval", "0") as srv, \
            srv.http() as c, \
            arrowshm.StreamWriter("x", SCHEMA, capacity_bytes=1 << 20) as w, \
            arrowshm.StreamWriter("x/readers/1", SCHEMA, capacity_bytes=1 << 20):
        w.write(batch)
        live = _reader("x")
        try:
            before = c.get("/v1/streams/x").json()["readers"]
            r = c.delete("/v1/streams/x/readers/1")
            assert r.status_code == 204, r.text
            with pytest.raises(arrowshm.NotFoundError):
                arrowshm.Namespace().kind("x/readers/1")  # the stream of the full name is gone
            assert arrowshm.Namespace().kind("x") == "stream"  # and x, with its reader, untouched
            assert c.get("/v1/streams/x").json()["readers"] == before
        finally:
            live.kill()
            live.wait()


@pytest.mark.timeout(120)
def test_readers_are_evicted_by_the_unambiguous_post_route_and_still_by_delete(
        tmp_path: Path) -> None:
    batch = pa.record_batch({"x": pa.array([1, 2, 3], pa.int64())})
    with ServeProcess("--socket", str(tmp_path / "svc.sock"), "--reaper-interval", "0") as srv, \
            srv.http() as c, \
            arrowshm.StreamWriter("feed", SCHEMA, capacity_bytes=1 << 20) as w:
        w.write(batch)
        live = _reader("feed")
        try:
            dead = _dead_reader("feed")
            readers = {r["pid"]: r["reader_id"]
                       for r in c.get("/v1/streams/feed").json()["readers"]}
            r = c.post(f"/v1/streams/feed/readers/{readers[live.pid]}/evict")
            assert r.status_code == 409 and r.json()["code"] == "ConflictError"  # alive
            with arrowshm.Client(srv.socket_path) as client:
                client.evict_reader("feed", readers[dead])  # POST .../evict
            left = {r["pid"] for r in c.get("/v1/streams/feed").json()["readers"]}
            assert left == {live.pid}
            # the old spelling still evicts when no stream has the full name
            dead2 = _dead_reader("feed")
            rid = {r["pid"]: r["reader_id"]
                   for r in c.get("/v1/streams/feed").json()["readers"]}[dead2]
            assert c.delete(f"/v1/streams/feed/readers/{rid}").status_code == 204
            left = {r["pid"] for r in c.get("/v1/streams/feed").json()["readers"]}
            assert left == {live.pid}
        finally:
            live.kill()
            live.wait()
        arrowshm.gc()
