"""A real ``arrowshm serve --flight … --reserve SIZE``: Flight's ``info`` names the
processes reading each version, and the service keeps its reserve of warm spares
ready while it runs."""

from __future__ import annotations

import json
import os
import time

import pyarrow.flight as fl
import pytest

import arrowshm

from ..helpers import make_table
from .helpers import FlightServe, auth, in_namespace


@pytest.mark.timeout(180)
def test_flight_info_lists_readers_and_serve_keeps_its_reserve(remote_ns: str) -> None:
    reserve = 8 << 20
    ns = arrowshm.Namespace(remote_ns)
    ns.put("held", make_table(1000), retain=2)
    ns.put("held", make_table(2000), retain=2)
    table = ns.get("held", version=1)  # this process reads version 1
    with FlightServe(remote_ns, extra=["--reserve", "8M"]) as srv:
        client = srv.client()
        try:
            result = list(client.do_action(
                fl.Action("info", json.dumps({"name": "held"}).encode()), auth()))
            meta = json.loads(result[0].body.to_pybytes())
            assert [(r["version"], r["pid"], r["alive"]) for r in meta["readers"]] == [
                (1, os.getpid(), True)]
            assert meta["readers"][0]["command"] and meta["readers"][0]["since"] > 0
            fi = client.get_flight_info(fl.FlightDescriptor.for_path("held"), auth())
            assert json.loads(fi.app_metadata)["readers"] == meta["readers"]
        finally:
            client.close()
        deadline = time.monotonic() + 60  # the service's thread fills the reserve
        while ns.usage().spare_bytes < reserve // 2:
            assert time.monotonic() < deadline, ns.usage()
            time.sleep(0.05)
    del table
    with in_namespace(remote_ns):
        arrowshm.gc(spares=True)
