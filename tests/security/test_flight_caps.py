"""Attack 8(d): a Flight ``do_put`` held every upload in memory with no cap; the
namespace quota was only checked once the whole upload had arrived."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import arrowshm

from ..flight.helpers import FlightServe, auth, in_namespace

BATCH_ROWS = 16_384  # 128 KiB of int64 per batch


def _batch(i: int) -> pa.RecordBatch:
    return pa.record_batch({"x": pa.array(np.full(BATCH_ROWS, i, dtype=np.int64))})


def _upload(srv: FlightServe, name: str, batches: int) -> dict[str, object]:
    """do_put *batches* batches; the error the server ended the call with, as a dict
    (``{"code": ..., "fields": ...}``), or ``{"ok": info}``."""
    client = srv.client()
    try:
        writer, meta = client.do_put(fl.FlightDescriptor.for_path(name), _batch(0).schema,
                                     auth())
        try:
            for i in range(batches):
                writer.write_batch(_batch(i))
            writer.done_writing()
            buf = meta.read()
            writer.close()  # raises the error the server ended the call with, if any
            return {"ok": json.loads(buf.to_pybytes())}
        except fl.FlightError as exc:
            body: dict[str, object] = json.loads(exc.extra_info or b"{}")
            return body
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_an_upload_past_the_cap_is_refused_as_it_arrives(remote_ns: str) -> None:
    cap = 1 << 20
    with FlightServe(remote_ns, extra=["--flight-max-put-bytes", str(cap)]) as srv:
        err = _upload(srv, "big", 64)  # 8 MiB for a 1 MiB cap
        assert err.get("code") == "InvalidArgumentError", err
        fields = err["fields"]
        assert isinstance(fields, dict)
        assert fields["limit"] == cap
        # counted batch by batch: refused with the first batch past the cap, not at the end
        assert cap < fields["received"] <= cap + _batch(0).get_total_buffer_size()
        with in_namespace(remote_ns), pytest.raises(arrowshm.NotFoundError):
            arrowshm.info("big")  # nothing was published
        ok = _upload(srv, "small", 4)  # the endpoint still serves uploads within the cap
        assert ok["ok"]["version"] == 1  # type: ignore[index]


@pytest.mark.timeout(180)
def test_an_upload_past_the_quota_is_refused_before_it_has_all_arrived(remote_ns: str) -> None:
    quota = 2 << 20
    arrowshm.Namespace(remote_ns).set_quota(quota)
    try:
        with FlightServe(remote_ns) as srv:  # the default cap (1 GiB) is far away
            err = _upload(srv, "big", 64)  # 8 MiB against a 2 MiB quota
            assert err.get("code") == "QuotaExceededError", err
            fields = err["fields"]
            assert isinstance(fields, dict)
            assert fields["limit"] == quota
            assert fields["requested"] <= quota + _batch(0).get_total_buffer_size()
            with in_namespace(remote_ns), pytest.raises(arrowshm.NotFoundError):
                arrowshm.info("big")
    finally:
        arrowshm.Namespace(remote_ns).set_quota(None)
