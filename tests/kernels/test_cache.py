"""The kernels' numba cache: where it lives, that it is reused, that it goes stale never."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from numba.core import config

import arrowshm.kernels as K
from arrowshm.kernels import _cache

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# In process
# --------------------------------------------------------------------------


def _copy_kernels(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for path in _cache.PACKAGE_DIR.glob("*.py"):
        shutil.copy2(path, dst / path.name)
    return dst


def test_source_stamp_covers_every_kernel_file(tmp_path: Path) -> None:
    copy = _copy_kernels(tmp_path / "kernels")
    stamp = _cache.source_stamp(copy)
    assert stamp == _cache.source_stamp(_cache.PACKAGE_DIR)  # content, not location
    assert stamp == _cache.source_stamp(copy)
    with open(copy / "atomics.py", "a") as f:
        f.write("\n# an edit to the intrinsics only\n")
    edited = _cache.source_stamp(copy)
    assert edited != stamp
    (copy / "new_module.py").write_text("X = 1\n")
    assert _cache.source_stamp(copy) not in (stamp, edited)


def test_kernel_functions_use_the_package_locator_and_stamp() -> None:
    locator = K.seqlock_write._cache._impl.locator
    assert isinstance(locator, _cache.KernelCacheLocator)
    assert locator.get_source_stamp() == _cache.source_stamp()
    assert locator.get_cache_path() == str(_cache.cache_dir())
    assert _cache.source_stamp() in locator.get_cache_path()
    for name in ("atomic_cas", "futex_wait", "wait_until_greater", "seqlock_recover"):
        assert isinstance(getattr(K, name)._cache._impl.locator, _cache.KernelCacheLocator)


def _outsider() -> None:
    pass


def test_functions_outside_the_package_are_left_to_numba() -> None:
    assert _cache.KernelCacheLocator.from_function(_outsider, __file__) is None


def test_registration_is_first_and_idempotent() -> None:
    _cache.install_cache_locator()
    _cache.install_cache_locator()
    from numba.core import caching

    classes = caching.CacheImpl._locator_classes
    assert classes[0] is _cache.KernelCacheLocator
    assert classes.count(_cache.KernelCacheLocator) == 1


def test_cache_dir_follows_numba_cache_dir_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    choose = _cache._chosen_dir.__wrapped__
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba"))
    assert choose("abc", "") == tmp_path / "numba" / "arrowshm-abc"
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert choose("abc", "") == tmp_path / "xdg" / "arrowshm" / "numba" / "abc"
    assert (tmp_path / "xdg" / "arrowshm" / "numba" / "abc").is_dir()


def test_unwritable_cache_falls_back_to_a_private_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    choose = _cache._chosen_dir.__wrapped__
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir below a file fails
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    got = choose("abc", "")
    root = tmp_path / "tmp" / f"arrowshm-numba-{os.getuid()}"
    assert got == root / "abc"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_temp_dir_others_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / f"arrowshm-numba-{os.getuid()}"
    root.mkdir()
    root.chmod(0o777)
    assert _cache._private_tmp_root() is None
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert _cache._chosen_dir.__wrapped__("abc", "") is None


# --------------------------------------------------------------------------
# Across processes
# --------------------------------------------------------------------------

_REUSE_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import arrowshm.kernels as K
t1 = time.perf_counter()
a = np.zeros(64, np.uint64)
w = a.view(np.uint32)
d = np.zeros(4, np.uint64)
K.seqlock_write(a, 0, d)
K.seqlock_try_read(a, 0, d, 1)
K.wait_until_greater(a, 0, -1, w, 40, 8, 1, 0)
K.eventcount_notify(a, 8, w, 40)
K.atomic_cas(a, 20, 0, 1)
t2 = time.perf_counter()
fns = [K.seqlock_write, K.seqlock_try_read, K.wait_until_greater, K.eventcount_notify,
       K.atomic_cas]
print(json.dumps({
    "hits": sum(sum(f.stats.cache_hits.values()) for f in fns),
    "misses": sum(sum(f.stats.cache_misses.values()) for f in fns),
    "import_s": t1 - t0, "first_calls_s": t2 - t1,
}))
"""


def _run(script: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(300)
def test_a_second_process_loads_the_kernels_from_the_cache(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    cold = _run(_REUSE_SCRIPT, env, REPO)
    warm = _run(_REUSE_SCRIPT, env, REPO)
    print(f"cold: {cold}\nwarm: {warm}")
    assert cold["hits"] == 0 and cold["misses"] > 0
    assert warm["hits"] > 0 and warm["misses"] == 0
    (entry,) = (tmp_path / "cache").iterdir()
    assert entry.name == f"arrowshm-{_cache.source_stamp()}"


_STALE_SCRIPT = r"""
import json
import numpy as np
import arrowshm.kernels as K
from arrowshm.kernels import _cache

words = np.zeros(16, np.uint64)
w32 = words.view(np.uint32)
K.eventcount_notify(words, 0, w32, 8)  # fetch_add(w32[8], 1) inlined from atomics.py
f = K.eventcount_notify
print(json.dumps({
    "file": K.__file__,
    "w32": int(w32[8]),
    "hits": sum(f.stats.cache_hits.values()),
    "path": f._cache.cache_path,
}))
"""

_ADD = '_rmw_codegen("add")'
_SUB = '_rmw_codegen("sub")'


@pytest.mark.timeout(300)
def test_editing_only_the_intrinsics_never_runs_stale_cached_callers(tmp_path: Path) -> None:
    """Edit fetch_add in atomics.py of a copy; eventcount_notify (futex.py) must change.

    The control runs use numba's stock locator, which keys futex.py's cache on
    futex.py alone: it keeps running the old fetch_add, which is the bug the
    package locator exists to prevent (and proves this test can fail).
    """
    root = tmp_path / "site"
    (root / "arrowshm").mkdir(parents=True)
    (root / "arrowshm" / "__init__.py").write_text('"""Stub parent package."""\n')
    kernels = _copy_kernels(root / "arrowshm" / "kernels")
    base_env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(root))
    base_env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    ours = base_env
    stock = dict(base_env, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")

    stock_before = _run(_STALE_SCRIPT, stock, root)
    first = _run(_STALE_SCRIPT, ours, root)
    again = _run(_STALE_SCRIPT, ours, root)
    assert Path(first["file"]).resolve().is_relative_to(root.resolve())
    assert stock_before["w32"] == first["w32"] == again["w32"] == 1
    assert again["hits"] > 0 and again["path"] == first["path"]

    source = (kernels / "atomics.py").read_text()
    assert source.count(_ADD) == 1
    (kernels / "atomics.py").write_text(source.replace(_ADD, _SUB))

    edited = _run(_STALE_SCRIPT, ours, root)
    assert edited["w32"] == 2**32 - 1  # 0 - 1: the new fetch_add ran
    assert edited["hits"] == 0
    assert edited["path"] != first["path"]

    stock_after = _run(_STALE_SCRIPT, stock, root)
    assert stock_after["hits"] > 0
    assert stock_after["w32"] == 1  # stale machine code: numba's default cache is fooled
