"""arrowshm.Namespace: every verb bound to one namespace, thread-safe, env-free."""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

import arrowshm
from arrowshm.testing import cleanup_namespace, data_objects, delete_all, unique_namespace

from ..helpers import check_stamped, stamped_table


@pytest.fixture
def other() -> Iterator[str]:
    """A second namespace, cleaned and checked for leaks at teardown."""
    ns = unique_namespace("o")
    yield ns
    delete_all(ns)
    left = data_objects(ns)
    cleanup_namespace(ns)
    assert left == [], f"namespace {ns} leaked {left}"


def test_a_namespace_object_has_every_verb_and_touches_no_environment(
    namespace: str, other: str
) -> None:
    env_before = dict(os.environ)
    with arrowshm.Namespace(other) as ns:
        assert ns.name == other and repr(ns) == f"Namespace({other!r})"
        info = ns.put("t", stamped_table(1, 100), retain=2)
        ns.put("t", stamped_table(2, 100), retain=2)
        assert (info.namespace, info.version) == (other, 1)
        assert check_stamped(ns.get("t")) == 2
        assert check_stamped(ns.get("t", version=1)) == 1
        assert ns.info("t", version=1).num_rows == 100
        assert [d.name for d in ns.list_datasets()] == ["t"]
        assert ns.wait("t", after_version=1, timeout=1).version == 2
        ref = ns.ref("t")
        assert ref.namespace == other and ref.ns is ns
        with ns.build("b", pa.schema([("x", pa.int64())]), 3) as b:
            b["x"][:] = [1, 2, 3]
        assert ns.get("b")["x"].to_pylist() == [1, 2, 3]
        with ns.StreamWriter("s", pa.schema([("x", pa.int64())]),
                             capacity_bytes=1 << 16) as w:
            w.write(pa.record_batch([pa.array([5])], names=["x"]))
            with ns.StreamReader("s") as r:
                assert r.read(timeout=5)["x"].to_pylist() == [5]
        assert [s.name for s in ns.list_streams()] == ["s"]
        assert ns.stream_info("s").closed
        ns.update("t", ttl=3600, retain=1)
        assert ns.info("t").ttl == 3600 and ns.info("t").versions == (2,)
        for name in ("t", "b", "s"):
            ns.delete(name)
        assert ns.gc().expired == []
    assert dict(os.environ) == env_before
    # nothing of it went to the namespace of the environment
    assert arrowshm.list_datasets() == [] and arrowshm.list_streams() == []
    with pytest.raises(arrowshm.InvalidArgumentError, match="closed"):
        ns.get("t")


def test_namespaces_pickle_by_name_and_refs_carry_theirs(namespace: str, other: str) -> None:
    ns = arrowshm.Namespace(other)
    assert pickle.loads(pickle.dumps(ns)) == ns
    ns.put("r", stamped_table(7, 10))
    ref = pickle.loads(pickle.dumps(ns.ref("r")))
    assert ref.namespace == other and check_stamped(ref.get()) == 7  # not the env's namespace
    assert check_stamped(arrowshm.Ref("r", 1, other).get()) == 7
    with pytest.raises(arrowshm.InvalidNameError):
        arrowshm.Namespace("Not-Valid")
    ns.delete("r")


@pytest.mark.timeout(120)
def test_threads_working_in_two_namespaces_never_mix(
    namespace: str, other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread loops on Namespace(a) and a Ref of a; the main thread puts 1,000 tables
    into b through the module functions with ARROWSHM_NAMESPACE=b. Every table lands in b."""
    a, b = other, namespace
    monkeypatch.setenv("ARROWSHM_NAMESPACE", b)
    ns_a = arrowshm.Namespace(a)
    ns_a.put("a/src", stamped_table(3, 1_000))
    ref = ns_a.ref("a/src")
    stop = threading.Event()
    failures: list[BaseException] = []
    rounds = [0]

    def loop_in_a() -> None:
        try:
            while not stop.is_set():
                assert check_stamped(ref.get()) == 3
                ns_a.put("a/loop", stamped_table(rounds[0], 10))
                assert ref.info().namespace == a
                rounds[0] += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    t = threading.Thread(target=loop_in_a)
    t.start()
    try:
        for i in range(1_000):
            assert arrowshm.put(f"b/{i % 50}", stamped_table(i, 10)).namespace == b
    finally:
        stop.set()
        t.join(60)
    assert not failures, failures
    assert rounds[0] > 0
    assert sorted(d.name for d in arrowshm.list_datasets()) == sorted(
        f"b/{k}" for k in range(50))
    assert sorted(d.name for d in ns_a.list_datasets()) == ["a/loop", "a/src"]
    assert all(arrowshm.info(f"b/{k}").version == 20 for k in range(50))
