"""The machine code the kernels compile to (x86-64).

Compiled fresh in a subprocess with an empty ``NUMBA_CACHE_DIR``: numba's
``inspect_asm`` of a function loaded from the cache is unreliable.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 assembly"
)

_SCRIPT = r"""
import json
import numpy as np
import arrowshm.kernels as K

a = np.zeros(64, np.uint64)
w = a.view(np.uint32)
d = np.zeros(4, np.uint64)
K.futex_wait(w, 0, 1, 0)
K.futex_wake(w, 0, 1)
K.monotonic_ns()
K.seqlock_write(a, 0, d)
K.seqlock_read(a, 0, d, 1, 0)
K.seqlock_try_read(a, 0, d, 1)
K.wait_until_greater(a, 0, -1, w, 40, 8, 1, 0)
K.eventcount_notify(a, 8, w, 40)

from arrowshm.kernels import registry as KR, ring as KG
big = np.zeros(1024, np.uint64)
KR.registry_entry_stamp(big, 0, 0)
geo = np.zeros(KG.G_WORDS, np.uint64)
geo[KG.G_READERS] = 64
geo[KG.G_MAX_READERS] = 1
geo[KG.G_RING] = 128
geo[KG.G_N_SLOTS] = 4
geo[KG.G_ARENA_BYTES] = 4096
out = np.zeros(KG.OUT_WORDS, np.uint64)
KG.ring_try_read_many(big, geo, 0, 4, 0, out)
KG.ring_unpin_range(big, big.view(np.uint32), geo, 0, 0, 0, -1, 0, -1, 0, 0)

names = [
    "atomic_load", "atomic_store", "atomic_cas", "atomic_fetch_add", "atomic_fetch_sub",
    "atomic_exchange", "futex_wait", "futex_wake", "monotonic_ns", "seqlock_write",
    "seqlock_read", "seqlock_try_read", "wait_until_greater", "eventcount_notify",
]
out = {}
for name in names:
    f = getattr(K, name)
    out[name] = "\n".join(f.inspect_asm(sig) for sig in f.signatures)
    out[name + ".hits"] = sum(f.stats.cache_hits.values())
for mod, name in [(KR, "registry_entry_stamp"), (KG, "ring_try_read_many"),
                  (KG, "ring_unpin_range")]:
    f = getattr(mod, name)
    out[name] = "\n".join(f.inspect_asm(sig) for sig in f.signatures)
    out[name + ".hits"] = sum(f.stats.cache_hits.values())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def asm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("empty-numba-cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def _core(text: str, name: str) -> str:
    """The body of the kernel's own function, without numba's Python wrapper.

    The wrapper that boxes arguments releases references with ``lock decq``
    (NRT_decref), which says nothing about the kernel.
    """
    label = re.search(rf"^_ZN\d+arrowshm7kernels\d+\w+?{len(name)}{name}\w*:$", text, re.M)
    assert label is not None, f"no function label for {name}"
    end = text.index(".Lfunc_end", label.end())
    return text[label.end() : end]


@pytest.mark.timeout(300)
def test_assembly_was_compiled_fresh_not_loaded_from_cache(asm: dict[str, object]) -> None:
    assert all(v == 0 for k, v in asm.items() if k.endswith(".hits"))


@pytest.mark.timeout(300)
def test_cas_is_lock_cmpxchg(asm: dict[str, str]) -> None:
    assert _has(r"lock\s+cmpxchg", _core(asm["atomic_cas"], "atomic_cas"))


@pytest.mark.timeout(300)
def test_fetch_add_and_fetch_sub_are_lock_xadd(asm: dict[str, str]) -> None:
    assert _has(r"lock\s+xadd", _core(asm["atomic_fetch_add"], "atomic_fetch_add"))
    assert _has(r"lock\s+xadd", _core(asm["atomic_fetch_sub"], "atomic_fetch_sub"))


@pytest.mark.timeout(300)
def test_exchange_is_xchg(asm: dict[str, str]) -> None:
    assert _has(r"\bxchg", _core(asm["atomic_exchange"], "atomic_exchange"))


@pytest.mark.timeout(300)
def test_acquire_loads_and_release_stores_cost_no_locked_instruction(asm: dict[str, str]) -> None:
    for name in ("atomic_load", "atomic_store"):
        body = _core(asm[name], name)
        assert _has(r"\bmov", body), name
        assert not _has(r"\block\b|mfence|xchg", body), name


@pytest.mark.timeout(300)
def test_futex_and_clock_are_raw_syscalls(asm: dict[str, str]) -> None:
    for name in ("futex_wait", "futex_wake", "monotonic_ns"):
        assert _has(r"\bsyscall\b", _core(asm[name], name)), name


@pytest.mark.timeout(300)
def test_spinning_kernels_pause(asm: dict[str, str]) -> None:
    for name in ("seqlock_read", "seqlock_try_read", "wait_until_greater"):
        assert _has(r"\bpause\b", _core(asm[name], name)), name


@pytest.mark.timeout(300)
def test_notify_fences_then_bumps_the_futex_word(asm: dict[str, str]) -> None:
    text = _core(asm["eventcount_notify"], "eventcount_notify")
    assert _has(r"lock\s+or|mfence", text)  # seq_cst fence
    assert _has(r"lock\s+(xadd|inc|add)", text)  # fetch_add on the event counter


@pytest.mark.timeout(300)
def test_seqlock_writer_uses_no_locked_instructions(asm: dict[str, str]) -> None:
    """Release/relaxed stores and a release fence: plain movs on x86-64."""
    body = _core(asm["seqlock_write"], "seqlock_write")
    assert _has(r"\bmov", body)
    assert not _has(r"\block\b|mfence|xchg", body)


@pytest.mark.timeout(300)
def test_the_entry_stamp_is_plain_loads(asm: dict[str, str]) -> None:
    """Acquire loads only: a repeated get costs no locked instruction or fence."""
    body = _core(asm["registry_entry_stamp"], "registry_entry_stamp")
    assert _has(r"\bmov", body)
    assert not _has(r"\block\b|mfence|xchg", body)


@pytest.mark.timeout(300)
def test_a_run_is_pinned_and_released_with_seq_cst_stores(asm: dict[str, str]) -> None:
    """The reader's half of the Dekker handshakes (pin table closed, read cursor
    advanced) and the release of a run are sequentially consistent stores: xchg."""
    for name in ("ring_try_read_many", "ring_unpin_range"):
        assert _has(r"\bxchg", _core(asm[name], name)), name
