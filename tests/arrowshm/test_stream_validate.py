"""Untrusted streams: ``StreamReader(validate=True)`` validates every batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import arrowshm
from arrowshm._shm.registry import registry_of
from arrowshm._shm.segment import Segment

SCHEMA = pa.schema([("s", pa.string())])
OFFSETS = np.arange(0, 65, dtype=np.int32).tobytes()  # 64 one-character strings


def _corrupt_offsets(namespace: str, name: str) -> None:
    reg = registry_of(namespace)
    seg = Segment.open(reg.segment_name(reg.get_entry(name).segment_id),
                       writable=True)
    raw = np.frombuffer(seg.mm, dtype=np.uint8)
    at = bytes(seg.mm).find(OFFSETS)
    assert at > 0, "the batch's offsets were not found in the arena"
    raw[at + 8 : at + 40] = 0xFF  # offsets now point far past the data


@pytest.mark.timeout(60)
def test_a_corrupt_batch_is_refused_with_validate_and_passed_without(namespace: str) -> None:
    batch = pa.record_batch([pa.array(["x"] * 64)], schema=SCHEMA)
    with arrowshm.StreamWriter("untrusted", SCHEMA, capacity_bytes=1 << 16) as w:
        checked = arrowshm.StreamReader("untrusted", validate=True)
        trusting = arrowshm.StreamReader("untrusted")
        w.write(batch)
        _corrupt_offsets(namespace, "untrusted")
        with pytest.raises(arrowshm.CorruptSegmentError, match="not a valid Arrow"):
            checked.read(timeout=5)
        got = trusting.read(timeout=5)  # trusted: handed out as is (no per-batch validation)
        assert got is not None and got.num_rows == 64
        with pytest.raises(pa.ArrowInvalid):
            got.validate(full=True)
        del got
        checked.close()
        trusting.close()
    arrowshm.delete("untrusted")
