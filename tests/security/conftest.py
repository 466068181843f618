"""Two throwaway users for the whole session: the victim and the attacker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..flight.conftest import remote_ns  # the Flight tests' remote namespace
from .helpers import User, clean_runtime_dir, drop_user, make_user

__all__ = ["attacker", "remote_ns", "victim"]


@pytest.fixture(scope="session")
def victim() -> Iterator[User]:
    user = make_user("ashvic")
    yield user
    clean_runtime_dir(user.uid)
    drop_user(user.name)


@pytest.fixture(scope="session")
def attacker() -> Iterator[User]:
    user = make_user("ashatk")
    yield user
    drop_user(user.name)


@pytest.fixture(autouse=True)
def _fresh_runtime_dir(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test with a victim starts and ends without /tmp/arrowshm-<victim uid>."""
    if "victim" not in request.fixturenames:
        yield
        return
    user: User = request.getfixturevalue("victim")
    clean_runtime_dir(user.uid)
    yield
    clean_runtime_dir(user.uid)
