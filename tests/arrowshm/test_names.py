from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrowshm
from arrowshm._names import (
    base36,
    parse_segment_shm_name,
    segment_shm_name,
    validate_name,
)
from arrowshm.testing import namespace_objects
from tests.helpers import make_table

VALID = ["a", "prices", "team/alpha/prices:v2", "x.y-z_1", "a" * 200, "a/b/c", ".hidden", "..a"]
INVALID = ["", "a" * 201, "/abs", "trailing/", "a//b", "../up", "a/../b", "..", "sp ace",
           "tab\t", "é", "a*b", "new\nline", "semi;colon"]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_raise_invalid_name_error_and_create_nothing(name: str,
                                                                   namespace: str) -> None:
    before = namespace_objects(namespace)
    with pytest.raises(arrowshm.InvalidNameError) as exc:
        arrowshm.put(name, make_table(3))
    assert isinstance(exc.value, ValueError)
    assert "name" in str(exc.value)
    assert namespace_objects(namespace) == before


def test_non_string_name_is_rejected() -> None:
    with pytest.raises(arrowshm.InvalidNameError):
        arrowshm.get(123)  # type: ignore[arg-type]


def test_invalid_namespace_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROWSHM_NAMESPACE", "Has-Caps")
    with pytest.raises(arrowshm.InvalidNameError, match="ARROWSHM_NAMESPACE"):
        arrowshm.list_datasets()


def test_segment_names_fit_in_31_characters() -> None:
    name = segment_shm_name("abcdefghijkl", 2**64 - 1)
    assert len(name) <= 31
    assert parse_segment_shm_name("abcdefghijkl", name) == 2**64 - 1
    assert parse_segment_shm_name("abcdefghijkl", "/ash-abcdefghijkl-reg") is None
    assert parse_segment_shm_name("other", name) is None
    assert base36(0) == "0" and base36(35) == "z" and base36(36) == "10"


_name_chars = st.sampled_from([*list("abcXYZ019._-/:"), " ", "é", "\x00", "*"])


@settings(max_examples=60, deadline=None)
@given(st.text(_name_chars, min_size=0, max_size=12))
def test_any_string_either_round_trips_or_is_rejected_cleanly(name: str) -> None:
    ns = os.environ["ARROWSHM_NAMESPACE"]
    try:
        validate_name(name)
    except arrowshm.InvalidNameError:
        before = namespace_objects(ns)
        with pytest.raises(arrowshm.InvalidNameError):
            arrowshm.put(name, make_table(1))
        assert namespace_objects(ns) == before
        return
    arrowshm.put(name, make_table(2))
    assert arrowshm.get(name).num_rows == 2
    arrowshm.delete(name)
