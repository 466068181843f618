"""A second namespace, the "remote" host's, cleaned and checked at teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arrowshm.testing import unique_namespace

from .helpers import clean_remote


@pytest.fixture
def remote_ns() -> Iterator[str]:
    ns = unique_namespace("r")
    yield ns
    left = clean_remote(ns)
    if left:
        pytest.fail(f"remote namespace {ns} kept unreferenced objects: {left}")
