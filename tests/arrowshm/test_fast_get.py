"""The repeated get: one kernel call when nothing changed, the full path otherwise.

A ``get`` of a version this process already holds checks the entry's stamp
(LIVE, same generation, same record sequence) and the cached TTL deadline, and
returns the table it holds. Anything that changes the entry - a put from any
process, a TTL or retention change, a delete, a new namespace - must send the
next ``get`` down the full path; a TTL must expire without any change at all.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest

import arrowshm
from arrowshm._datasets import get as G
from arrowshm._namespace import default_namespace
from arrowshm.testing import cleanup_namespace
from tests.helpers import check_stamped, make_table, run_python, stamped_table

CTX = mp.get_context("spawn")


@pytest.fixture
def no_full_path(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the full path of get fail loudly, to prove a get did not take it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the full path was taken")

    def arm() -> None:
        monkeypatch.setattr(G, "dataset_entry", refuse)

    return arm


def test_a_repeated_get_does_not_read_the_record(no_full_path: Any) -> None:
    arrowshm.put("f", make_table(10))
    first = arrowshm.get("f")
    no_full_path()
    for _ in range(3):
        assert arrowshm.get("f") is first
        assert arrowshm.Namespace(default_namespace().name).get("f") is first


def test_a_put_from_another_process_is_seen_at_once(namespace: str) -> None:
    arrowshm.put("p", make_table(3))
    first = arrowshm.get("p")
    assert arrowshm.get("p") is first
    run_python(f"""
        import arrowshm
        from tests.helpers import make_table
        arrowshm.Namespace({namespace!r}).put("p", make_table(4))
    """)
    second = arrowshm.get("p")
    assert second is not first and second.num_rows == 4
    assert arrowshm.get("p") is second


def test_a_ttl_or_retention_change_takes_the_full_path_once() -> None:
    arrowshm.put("u", make_table(3))
    first = arrowshm.get("u")
    cached = G._cache[(default_namespace().name, "u")]
    arrowshm.Namespace(default_namespace().name).update("u", ttl=60)
    assert arrowshm.get("u") is first  # same version: the same table, re-armed
    rearmed = G._cache[(default_namespace().name, "u")]
    assert rearmed.stamp > cached.stamp >= 0
    assert rearmed.expires_ns < G._NEVER
    arrowshm.Namespace(default_namespace().name).update("u", retain=3)
    assert arrowshm.get("u") is first
    assert G._cache[(default_namespace().name, "u")].stamp > rearmed.stamp


def test_a_ttl_expires_for_a_repeated_get_without_any_change() -> None:
    arrowshm.put("ttl", make_table(5), ttl=0.3)
    assert arrowshm.get("ttl").num_rows == 5
    assert arrowshm.get("ttl").num_rows == 5
    time.sleep(0.4)
    with pytest.raises(arrowshm.NotFoundError, match="expired"):
        arrowshm.get("ttl")


def test_a_delete_is_seen_and_the_name_can_be_put_again() -> None:
    arrowshm.put("d", make_table(3))
    first = arrowshm.get("d")
    arrowshm.delete("d")
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.get("d")
    arrowshm.put("d", make_table(6))
    again = arrowshm.get("d")
    assert again is not first and again.num_rows == 6


def test_a_delete_by_another_process_is_seen(namespace: str) -> None:
    arrowshm.put("d2", make_table(3))
    arrowshm.get("d2")
    run_python(f"import arrowshm; arrowshm.Namespace({namespace!r}).delete('d2')")
    with pytest.raises(arrowshm.NotFoundError):
        arrowshm.get("d2")
    run_python(f"""
        import arrowshm
        from tests.helpers import make_table
        arrowshm.Namespace({namespace!r}).put("d2", make_table(2))
    """)
    assert arrowshm.get("d2").num_rows == 2


def test_a_namespace_made_anew_is_not_answered_from_the_old_one(namespace: str) -> None:
    arrowshm.put("n", make_table(3))
    first = arrowshm.get("n")
    old = G._cache[(namespace, "n")]
    cleanup_namespace(namespace)  # every object unlinked, this process's state dropped
    G._cache[(namespace, "n")] = old  # (as if it had outlived the cleanup)
    arrowshm.put("n", make_table(7))
    assert arrowshm.get("n").num_rows == 7
    assert arrowshm.get("n") is not first


def test_an_explicit_version_and_validation_still_work() -> None:
    arrowshm.put("v", make_table(3), retain=2)
    arrowshm.put("v", make_table(4), retain=2)
    latest = arrowshm.get("v")
    assert arrowshm.get("v", version=1).num_rows == 3
    assert arrowshm.get("v", validate=True) is latest
    assert arrowshm.get("v", version=2) is latest


def test_the_default_namespace_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                       namespace: str) -> None:
    assert default_namespace().name == namespace
    assert default_namespace() is default_namespace()
    monkeypatch.setenv("ARROWSHM_NAMESPACE", "fastget1")
    assert default_namespace().name == "fastget1"
    monkeypatch.delenv("ARROWSHM_NAMESPACE")
    assert default_namespace().name == "default"
    monkeypatch.setenv("ARROWSHM_NAMESPACE", "Not-Valid")
    with pytest.raises(arrowshm.InvalidNameError):
        default_namespace()
    with pytest.raises(arrowshm.InvalidNameError):
        arrowshm.get("x")
    monkeypatch.setenv("ARROWSHM_NAMESPACE", namespace)
    assert default_namespace().name == namespace


# --------------------------------------------------------------------------------------
# across processes: a get never answers with a version older than one already seen


def _publisher(namespace: str, name: str, n: int) -> None:
    ns = arrowshm.Namespace(namespace)
    for v in range(1, n + 1):
        ns.put(name, stamped_table(v, 50))  # the table's tag is its version
        if v % 97 == 0:
            ns.update(name, ttl=3600)
        if v % 89 == 0:
            ns.update(name, retain=1 + v % 3)


@pytest.mark.timeout(120)
def test_get_after_wait_never_returns_an_older_or_torn_version(namespace: str) -> None:
    """FORBIDDEN: a get older than the version wait reported, or older than a previous
    get; a torn table. ACCEPTABLE: a get newer than wait's version."""
    n = 3000
    name = "race"
    p = CTX.Process(target=_publisher, args=(namespace, name, n), daemon=True)
    p.start()
    ns = arrowshm.Namespace(namespace)
    last_seen = 0
    got = 0
    older = 0
    try:
        while last_seen < n:
            info = ns.wait(name, after_version=last_seen, timeout=60)
            for _ in range(3):  # repeated gets: the fast path, while the publisher races
                tag = check_stamped(ns.get(name))
                if tag < info.version or tag < last_seen:
                    older += 1
                last_seen = max(last_seen, tag)
                got += 1
    finally:
        p.join(60)
    assert p.exitcode == 0
    assert older == 0
    assert got > 100
    assert check_stamped(ns.get(name)) == n
