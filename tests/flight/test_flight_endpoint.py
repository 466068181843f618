"""``arrowshm serve --flight``: list, describe, do_get, do_put, actions, auth, errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import arrowshm
from arrowshm._mirror import raise_from_flight

from ..helpers import make_table, run_python
from .helpers import TOKEN, FlightServe, auth, in_namespace


def _action(client: fl.FlightClient, kind: str, body: dict[str, object]) -> dict[str, object]:
    results = list(client.do_action(fl.Action(kind, json.dumps(body).encode()), auth()))
    out: dict[str, object] = json.loads(results[0].body.to_pybytes())
    return out


@pytest.mark.timeout(120)
def test_flight_lists_describes_and_serves_each_retained_version(remote_ns: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("sales/eu", make_table(1000, seed=1), retain=2)
        arrowshm.put("sales/eu", make_table(2000, seed=2), retain=2)
        arrowshm.put("other", make_table(5))
        with arrowshm.StreamWriter("ticks", pa.schema([("x", pa.int64())])):
            pass
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        try:
            flights = {"/".join(p.decode() for p in f.descriptor.path): f
                       for f in client.list_flights(options=auth())}
            assert sorted(flights) == ["other", "sales/eu", "ticks"]
            assert json.loads(flights["ticks"].app_metadata)["kind"] == "stream"

            fi = client.get_flight_info(fl.FlightDescriptor.for_path("sales/eu"), auth())
            meta = json.loads(fi.app_metadata)
            assert (meta["version"], meta["versions"]) == (2, [2, 1])
            assert fi.total_records == 2000
            assert fi.total_bytes > 0
            assert fi.schema == make_table(1).schema

            got = client.do_get(fi.endpoints[0].ticket, auth()).read_all()
            assert got.equals(make_table(2000, seed=2))
            old = fl.Ticket(json.dumps({"kind": "dataset", "name": "sales/eu",
                                        "version": 1}).encode())
            assert client.do_get(old, auth()).read_all().equals(make_table(1000, seed=1))
        finally:
            client.close()
        with in_namespace(remote_ns):
            arrowshm.delete("ticks")


@pytest.mark.timeout(120)
def test_calls_without_the_right_token_are_refused(remote_ns: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("secret", make_table(3))
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        try:
            with pytest.raises(fl.FlightUnauthenticatedError):
                list(client.list_flights())
            with pytest.raises(fl.FlightUnauthenticatedError):
                client.do_get(fl.Ticket(b'{"name": "secret"}'), auth("wrong")).read_all()
            assert client.do_get(fl.Ticket(b'{"name": "secret"}'), auth()).read_all().num_rows == 3
        finally:
            client.close()


@pytest.mark.timeout(60)
def test_serve_refuses_flight_without_a_token(remote_ns: str, tmp_path: Path) -> None:
    proc = run_python(
        "import sys; from arrowshm._cli import main; "
        f"sys.exit(main(['serve', '--socket', {str(tmp_path / 's.sock')!r}, "
        "'--flight', 'grpc://127.0.0.1:0']))",
        env={"ARROWSHM_NAMESPACE": remote_ns, "ARROWSHM_TOKEN": ""}, check=False, timeout=60)
    assert proc.returncode == 1
    assert "needs a token" in proc.stderr


@pytest.mark.timeout(120)
def test_do_put_publishes_a_version_and_errors_cross_as_arrowshm_classes(remote_ns: str) -> None:
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        try:
            table = make_table(500, seed=3)
            desc = fl.FlightDescriptor.for_command(json.dumps({"name": "up/x", "retain": 2}))
            writer, meta = client.do_put(desc, table.schema, auth())
            for batch in table.to_batches(max_chunksize=100):
                writer.write_batch(batch)
            writer.done_writing()
            answer = json.loads(meta.read().to_pybytes())
            writer.close()
            assert (answer["version"], answer["num_rows"]) == (1, 500)
            with in_namespace(remote_ns):
                assert arrowshm.get("up/x").equals(table)
                assert arrowshm.info("up/x").retain == 2

            with pytest.raises(fl.FlightError) as err:
                client.do_get(fl.Ticket(b'{"name": "nope"}'), auth()).read_all()
            with pytest.raises(arrowshm.NotFoundError) as nf:
                raise_from_flight(err.value)
            assert getattr(nf.value, "name", None) == "nope"
            with pytest.raises(fl.FlightError) as err:
                client.get_flight_info(fl.FlightDescriptor.for_path("bad name"), auth())
            with pytest.raises(arrowshm.InvalidNameError):
                raise_from_flight(err.value)
        finally:
            client.close()


@pytest.mark.timeout(120)
def test_wait_action_long_polls_until_a_newer_version(remote_ns: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("w", make_table(1))
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        try:
            res = _action(client, "wait", {"name": "w", "after_version": 1, "timeout": 0.3})
            assert res == {"name": "w", "timeout": True, "version": 1}
            got: dict[str, object] = {}

            def poll() -> None:
                got.update(_action(client, "wait",
                                   {"name": "w", "after_version": 1, "timeout": 30}))

            t = threading.Thread(target=poll)
            t.start()
            with in_namespace(remote_ns):
                arrowshm.put("w", make_table(7))
            t.join(60)
            assert got["version"] == 2 and got["num_rows"] == 7
            assert _action(client, "info", {"name": "w"})["version"] == 2
        finally:
            client.close()


@pytest.mark.timeout(120)
def test_streams_cross_flight_both_ways(remote_ns: str) -> None:
    schema = pa.schema([("i", pa.int64())])
    batches = [pa.record_batch([pa.array(np.arange(k * 10, k * 10 + 10))], schema=schema)
               for k in range(20)]
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        try:
            tail = fl.Ticket(json.dumps({"kind": "stream", "name": "s", "start": "earliest",
                                        "open_timeout": 30})
                             .encode())
            desc = fl.FlightDescriptor.for_command(
                json.dumps({"name": "s", "kind": "stream", "capacity_bytes": 1 << 20}))
            # a remote producer writes the stream through do_put ...
            writer, meta = client.do_put(desc, schema, auth())
            for b in batches[:5]:
                writer.write_batch(b)
            # ... while a remote consumer tails it live through do_get
            reader = client.do_get(tail, auth())
            for b in batches[5:]:
                writer.write_batch(b)
            writer.done_writing()
            assert json.loads(meta.read().to_pybytes())["batches"] == 20
            writer.close()
            assert reader.read_all().equals(pa.Table.from_batches(batches))
        finally:
            client.close()
        with in_namespace(remote_ns):
            arrowshm.delete("s")


@pytest.mark.timeout(120)
def test_tls_endpoint_serves_and_mirrors_with_the_ca_certificate(
        remote_ns: str, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    with in_namespace(remote_ns):
        arrowshm.put("tls/x", make_table(50))
    with FlightServe(remote_ns, extra=("--flight-tls-cert", str(cert), "--flight-tls-key",
                                       str(key)), tls_root=cert.read_bytes()) as srv:
        assert srv.location.startswith("grpc+tls://")
        client = srv.client()
        try:
            got = client.do_get(fl.Ticket(b'{"name": "tls/x"}'), auth()).read_all()
            assert got.equals(make_table(50))
        finally:
            client.close()
        plain = fl.FlightClient(srv.location.replace("grpc+tls://", "grpc://"))
        try:
            with pytest.raises(fl.FlightError):  # no TLS, no service
                list(plain.list_flights(options=auth(timeout=5)))
        finally:
            plain.close()
        with arrowshm.mirror(srv.location, "tls/x", token=TOKEN,
                             tls_root_certs=cert.read_bytes(), poll_timeout=1.0) as m:
            m.wait_synced(1, timeout=30)
        assert arrowshm.get("tls/x").equals(make_table(50))


@pytest.mark.timeout(120)
def test_sigterm_stops_the_service_with_a_long_poll_and_a_tail_open(remote_ns: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("p", make_table(2))
        writer = arrowshm.StreamWriter("live", pa.schema([("x", pa.int64())]))
    try:
        with FlightServe(remote_ns) as srv:
            client = srv.client()
            outcome: list[str] = []

            def long_poll() -> None:
                try:
                    _action(client, "wait", {"name": "p", "after_version": 1, "timeout": 60})
                    outcome.append("answered")
                except fl.FlightError:
                    outcome.append("cut")

            reader = client.do_get(fl.Ticket(b'{"kind": "stream", "name": "live"}'), auth())
            t = threading.Thread(target=long_poll)
            t.start()
            assert srv.stop(signal.SIGTERM) == 0  # neither the poll nor the tail holds it up
            t.join(60)
            assert outcome in (["answered"], ["cut"])
            with pytest.raises(fl.FlightError):
                reader.read_all()
            client.close()
    finally:
        with in_namespace(remote_ns):
            writer.close()
            arrowshm.delete("live")
