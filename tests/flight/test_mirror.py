"""Mirrors between two services in two namespaces on loopback ("remote" and "local")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import arrowshm
from arrowshm._mirror import Mirror, mirror_statuses, status_dir
from arrowshm._shm.registry import registry_of
from arrowshm.service import metrics

from ..helpers import check_stamped, make_table, run_python, stamped_table
from .helpers import (
    TOKEN,
    FlightServe,
    auth,
    flight_put,
    free_port,
    in_namespace,
    pump_lines,
    put_stamped_in,
)


def _until(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(120)
def test_mirror_follows_new_versions_into_local_shared_memory(remote_ns: str,
                                                              namespace: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("prices", make_table(100, seed=1))
    with FlightServe(remote_ns) as srv:
        m = arrowshm.mirror(srv.location, "prices", local_name="prices/copy", token=TOKEN,
                            poll_timeout=1.0)
        try:
            st = m.wait_synced(1, timeout=30)
            assert (st.kind, st.local_version) == ("dataset", 1)
            assert arrowshm.get("prices/copy").equals(make_table(100, seed=1))
            for k in range(2, 5):  # a producer on the remote side, through do_put
                assert flight_put(srv.location, "prices", make_table(100 * k, seed=k)) == k
            st = m.wait_synced(4, timeout=30)
            local = arrowshm.get("prices/copy")
            assert local.equals(make_table(400, seed=4))
            assert st.version_lag == 0
            assert _until(lambda: m.status.state == "live")
            assert m.status.staleness_s == 0.0

            # the status record: `arrowshm mirror --status`, and the service's metrics
            (rec,) = mirror_statuses()
            assert (rec.local_name, rec.remote_name, rec.mirrored_version) == (
                "prices/copy", "prices", 4)
            proc = run_python("import sys; from arrowshm._cli import main; "
                              "sys.exit(main(['mirror', '--status', '--json']))")
            (row,) = json.loads(proc.stdout)
            assert (row["local_name"], row["version_lag"]) == ("prices/copy", 0)
            text = metrics.render(arrowshm.Namespace(namespace), registry_of(namespace), None, None)
            assert 'arrowshm_mirror_version_lag{namespace="' in text
            assert 'mirror="prices/copy"' in text
        finally:
            m.stop()
        assert mirror_statuses() == []  # a stopped mirror removes its record
        assert not status_dir().exists()
        del local


@pytest.mark.timeout(180)
def test_mirror_reconnects_after_the_remote_dies_and_catches_up(remote_ns: str) -> None:
    port = free_port()
    with in_namespace(remote_ns):
        arrowshm.put("d", stamped_table(1, 1000))
    srv = FlightServe(remote_ns, flight_port=port)
    with srv:
        m = Mirror(srv.location, "d", token=TOKEN, poll_timeout=1.0, max_backoff=0.5).start()
        try:
            m.wait_synced(1, timeout=30)
            srv.kill()  # SIGKILL: no goodbye
            assert _until(lambda: m.status.state == "reconnecting")
            assert m.status.reconnects >= 1
            put_stamped_in(remote_ns, "d", 2, 2000)  # while the remote service is down
            assert check_stamped(arrowshm.get("d")) == 1  # still the last whole version
            with FlightServe(remote_ns, flight_port=port):
                st = m.wait_synced(2, timeout=60)
                assert st.state == "live"
                assert check_stamped(arrowshm.get("d")) == 2
        finally:
            m.stop()


@pytest.mark.timeout(180)
def test_a_transfer_cut_by_sigkill_is_never_published(remote_ns: str) -> None:
    port = free_port()
    rows = 4 << 20  # 3 int64/float64 columns: ~96 MiB a version
    with in_namespace(remote_ns):
        arrowshm.put("big", stamped_table(1, rows))
    with FlightServe(remote_ns, flight_port=port) as srv:
        m = Mirror(srv.location, "big", token=TOKEN, poll_timeout=1.0, max_backoff=0.5).start()
        try:
            m.wait_synced(1, timeout=60)
            put_stamped_in(remote_ns, "big", 2, rows)
            _until(lambda: m.status.state == "fetching" or m.status.mirrored_version == 2)
            srv.kill()  # most likely mid-transfer of version 2; either way:
            local = arrowshm.get("big")
            assert local.num_rows == rows and check_stamped(local) in (1, 2)
            del local
            with FlightServe(remote_ns, flight_port=port):
                m.wait_synced(2, timeout=90)
            local = arrowshm.get("big")
            assert local.num_rows == rows and check_stamped(local) == 2
            assert m.versions_published in (1, 2)  # v1, then v2 once: nothing partial
            del local
        finally:
            m.stop()


@pytest.mark.timeout(120)
def test_arrowshm_mirror_command_mirrors_until_sigterm(remote_ns: str) -> None:
    with in_namespace(remote_ns):
        arrowshm.put("cli/src", make_table(10, seed=5))
    with FlightServe(remote_ns) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arrowshm._cli", "mirror", srv.location, "cli/src",
             "--as", "cli/dst", "--poll", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "ARROWSHM_TOKEN": TOKEN})
        assert proc.stdout is not None
        lines = pump_lines(proc.stdout)
        try:
            seen: list[str] = []
            while not any("mirrored version 1" in x for x in seen):
                seen.append(lines.get(timeout=60))
            assert arrowshm.get("cli/dst").equals(make_table(10, seed=5))
            flight_put(srv.location, "cli/src", make_table(20, seed=6))
            while not any("mirrored version 2" in x for x in seen):
                seen.append(lines.get(timeout=60))
            assert arrowshm.get("cli/dst").equals(make_table(20, seed=6))
            ls = subprocess.run([sys.executable, "-m", "arrowshm._cli", "ls"],
                                capture_output=True, text=True, timeout=60)
            row = next(line for line in ls.stdout.splitlines() if line.startswith("cli/dst"))
            assert "mirror of cli/src@" in row and "behind" in row  # staleness in `ls`
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.timeout(120)
def test_mirror_of_a_stream_tails_it_into_a_local_stream(remote_ns: str) -> None:
    schema = pa.schema([("i", pa.int64())])
    batches = [pa.record_batch([pa.array(np.arange(k * 4, k * 4 + 4))], schema=schema)
               for k in range(50)]
    with FlightServe(remote_ns) as srv:
        client = srv.client()
        desc = fl.FlightDescriptor.for_command(
            json.dumps({"name": "feed", "kind": "stream", "capacity_bytes": 1 << 20}))
        writer, meta = client.do_put(desc, schema, auth())
        try:
            for b in batches[:10]:
                writer.write_batch(b)
            m = Mirror(srv.location, "feed", token=TOKEN, kind="stream", poll_timeout=1.0)
            m.start()
            try:
                assert _until(lambda: m.status.mirrored_version >= 10)
                with arrowshm.StreamReader("feed", start="earliest") as r:
                    for b in batches[10:]:
                        writer.write_batch(b)
                    writer.done_writing()
                    assert json.loads(meta.read().to_pybytes())["batches"] == 50
                    got = [arrowshm.StreamReader.detach(b) for b in r]
                assert pa.Table.from_batches(got).equals(pa.Table.from_batches(batches))
                assert _until(lambda: m.status.state == "stopped")
            finally:
                m.stop()
        finally:
            writer.close()
            client.close()
        arrowshm.delete("feed")
        with in_namespace(remote_ns):  # no mirror runs any more
            arrowshm.delete("feed")


@pytest.mark.timeout(180)
def test_a_running_mirror_keeps_its_namespace_while_this_process_works_in_another(
    remote_ns: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror publishes into namespace a while the main thread puts 1,000 tables into
    b through the module functions with ARROWSHM_NAMESPACE=b: none lands in the wrong one."""
    from arrowshm.testing import cleanup_namespace, data_objects, delete_all, unique_namespace

    a, b = unique_namespace("m"), namespace
    with in_namespace(remote_ns):
        arrowshm.put("prices", make_table(100, seed=1))
    try:
        with FlightServe(remote_ns) as srv:
            m = arrowshm.mirror(srv.location, "prices", local_name="prices/copy", token=TOKEN,
                                poll_timeout=1.0, namespace=a)
            try:
                m.wait_synced(1, timeout=30)
                monkeypatch.setenv("ARROWSHM_NAMESPACE", b)
                done = []

                def remote_producer() -> None:
                    for k in range(2, 7):
                        done.append(flight_put(srv.location, "prices",
                                               make_table(100 * k, seed=k)))

                producer = threading.Thread(target=remote_producer)
                producer.start()
                for i in range(1_000):
                    arrowshm.put(f"b/{i % 50}", make_table(5, seed=i))
                producer.join(60)
                assert done == [2, 3, 4, 5, 6]
                m.wait_synced(6, timeout=30)
            finally:
                m.stop()
            ns_a = arrowshm.Namespace(a)
            assert [d.name for d in ns_a.list_datasets()] == ["prices/copy"]
            assert ns_a.get("prices/copy").equals(make_table(600, seed=6))
            assert sorted(d.name for d in arrowshm.list_datasets()) == sorted(
                f"b/{k}" for k in range(50))
    finally:
        delete_all(a)
        left = data_objects(a)
        cleanup_namespace(a)
    assert left == []
