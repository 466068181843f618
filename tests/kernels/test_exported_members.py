"""The public kernel API: names other modules import, sorted ``__all__``, documentation."""

from __future__ import annotations

import importlib

import pytest

import arrowshm.kernels as K

# The contract other layers import (see the kernels brief); extra names are fine.
API = {
    "atomics": [
        "load_acquire", "load_relaxed", "load_seq_cst",
        "store_release", "store_relaxed", "store_seq_cst",
        "cas", "fetch_add", "fetch_sub", "exchange",
        "fence_acquire", "fence_release", "fence_seq_cst", "compiler_barrier", "cpu_pause",
        "atomic_load", "atomic_store", "atomic_cas",
        "atomic_fetch_add", "atomic_fetch_sub", "atomic_exchange",
    ],
    "futex": [
        "futex_wait", "futex_wake", "monotonic_ns", "eventcount_notify", "wait_until_greater",
    ],
    "seqlock": [
        "seqlock_write", "seqlock_try_read", "seqlock_read", "seqlock_recover",
        "seqlock_read_seq",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(API))
def test_module_provides_the_contracted_names(module: str) -> None:
    mod = importlib.import_module(f"arrowshm.kernels.{module}")
    for name in API[module]:
        assert hasattr(mod, name), f"{module}.{name}"
        assert name in mod.__all__
        assert getattr(K, name) is getattr(mod, name)


def test_package_all_is_sorted_and_complete() -> None:
    assert K.__all__ == sorted(K.__all__)
    assert len(set(K.__all__)) == len(K.__all__)
    for name in K.__all__:
        assert hasattr(K, name), name
    contracted = {n for names in API.values() for n in names}
    assert contracted <= set(K.__all__)


@pytest.mark.parametrize("name", [n for n in K.__all__ if callable(getattr(K, n))])
def test_every_public_kernel_documents_memory_ordering_and_status(name: str) -> None:
    doc = getattr(K, name).__doc__ or ""
    assert "Memory ordering" in doc, name
    assert "Returns" in doc or "status codes" in doc, name
