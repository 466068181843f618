"""One table of kernel status codes: distinct values, one meaning each, one translation."""

from __future__ import annotations

import pytest

import arrowshm
from arrowshm._errors import from_status
from arrowshm.kernels import futex, pins, registry, ring, seqlock, status


def _codes() -> dict[str, int]:
    return {n: v for n, v in vars(status).items() if n.isupper() and isinstance(v, int)}


def test_every_status_code_is_distinct() -> None:
    codes = _codes()
    assert len(set(codes.values())) == len(codes), codes
    assert {v: n for n, v in codes.items()} == status.NAMES


@pytest.mark.parametrize(("module", "names"), [
    (ring, ["GATED", "EMPTY", "CLOSED", "FULL", "CORRUPT", "NOT_OWNER", "NOT_HELD", "TIMEOUT"]),
    (pins, ["PIN_OK", "PIN_NOT_A_SEGMENT", "PIN_BAD_FORMAT", "PIN_STALE", "PIN_BAD_OFFSETS"]),
    (registry, ["NOT_FOUND", "FULL", "QUOTA_EXCEEDED"]),
    (seqlock, ["SEQLOCK_EBUSY", "SEQLOCK_EINVAL", "SEQLOCK_EOWNERDEAD"]),
    (futex, ["EINTR", "EAGAIN", "ETIMEDOUT"]),
])
def test_each_kernel_returns_codes_of_the_one_table(module: object, names: list[str]) -> None:
    table = set(_codes().values())
    for name in names:
        assert getattr(module, name) in table, name
    values = [getattr(module, n) for n in names]
    assert len(set(values)) == len(values)  # within a kernel too: one meaning per code


@pytest.mark.parametrize("code", [c for c in _codes().values() if c < 0 and c not in (
    status.EAGAIN, status.EINTR, status.RING_EMPTY, status.RING_GATED, status.RING_CLOSED,
    status.RING_NOT_HELD, status.SEQLOCK_RETRY, status.PIN_STALE)])
def test_every_error_code_becomes_a_specific_arrowshm_error(code: int) -> None:
    err = from_status(code, "thing 'x'", "do this", found=2, expected=1)
    assert type(err) is not arrowshm.ArrowShmError, status.NAMES[code]
    assert isinstance(err, arrowshm.ArrowShmError)
    assert str(err).startswith("thing 'x' ") and str(err).endswith(": do this")
    assert err.status == code and err.status_name == status.NAMES[code]  # type: ignore[attr-defined]


def test_a_format_error_names_both_versions() -> None:
    err = from_status(status.PIN_BAD_FORMAT, "seg", found=9, expected=1)
    assert isinstance(err, arrowshm.FormatVersionError)
    assert "format version 9" in str(err) and "reads format version 1" in str(err)


def test_format_md_lists_every_code() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text()
    table = text[text.index("## Kernel status codes"):]
    rows = {int(v): n for v, n in re.findall(r"^\| (-\d+) \| ([A-Z_]+) \|", table, re.M)}
    assert rows == {v: n for n, v in _codes().items() if v < 0}
