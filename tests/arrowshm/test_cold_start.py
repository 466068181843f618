"""Start-up structure (issue 14, item 4): what ``import arrowshm`` and the command
line load, and that lazily imported public names behave like eager ones.

Each check runs in a fresh interpreter, since this process has imported everything.
No timing is asserted: the numbers are in ``bench/bench_cold.py``.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pyarrow as pa
import pytest

import arrowshm


def _python(code: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def _loaded_after(code: str, modules: list[str]) -> dict[str, bool]:
    out = _python(code + f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules "
                  f"for m in {modules!r}}}))")
    result: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
    return result


OPTIONAL = ["arrowshm.service", "arrowshm._client", "arrowshm._mirror", "arrowshm._interop",
            "arrowshm._doctor", "arrowshm._demo", "fastapi", "uvicorn", "httpx", "pandas",
            "polars", "pyarrow.flight"]


def test_import_loads_the_data_plane_and_nothing_optional() -> None:
    loaded = _loaded_after("import arrowshm", [*OPTIONAL, "numba", "pyarrow",
                                               "arrowshm._datasets.get"])
    assert loaded.pop("numba") and loaded.pop("pyarrow") and loaded.pop("arrowshm._datasets.get")
    assert [m for m, yes in loaded.items() if yes] == []


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["ls", "--help"]])
def test_the_command_line_help_imports_neither_numba_nor_pyarrow(argv: list[str]) -> None:
    code = ("import contextlib, io, arrowshm_cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    arrowshm_cli.main({argv!r})")
    loaded = _loaded_after(code, ["numba", "pyarrow", "numpy", "fastapi", "uvicorn",
                                  "arrowshm.kernels.atomics"])
    assert [m for m, yes in loaded.items() if yes] == []


def test_the_command_line_runs_a_verb_through_the_lazy_package() -> None:
    out = _python("import arrowshm_cli, sys; sys.exit(arrowshm_cli.main(['ls', '--json']))")
    assert isinstance(json.loads(out), list)


def test_errors_and_kernel_status_need_no_numba() -> None:
    code = ("import arrowshm_cli, arrowshm\n"
            "from arrowshm.kernels import status\n"
            "assert issubclass(arrowshm.NotFoundError, KeyError)\n"
            "assert arrowshm._errors.from_status(status.NOT_FOUND, 'x').__class__"
            " is arrowshm.NotFoundError")
    assert _loaded_after(code, ["numba", "pyarrow"]) == {"numba": False, "pyarrow": False}


def test_lazy_names_resolve_once_and_are_listed() -> None:
    code = ("import arrowshm_cli, arrowshm, sys\n"
            "names = sorted(arrowshm.__all__)\n"
            "assert set(names) <= set(dir(arrowshm))\n"
            "objs = {n: getattr(arrowshm, n) for n in names}\n"
            "assert all(getattr(arrowshm, n) is objs[n] for n in names)\n"
            "assert arrowshm.Mirror.__module__ == 'arrowshm'\n"
            "assert arrowshm.StreamWriter.__module__ == 'arrowshm'\n"
            "print(len(names))")
    assert int(_python(code).strip()) == len(arrowshm.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        arrowshm.not_a_name  # noqa: B018
    for name in arrowshm.__all__:
        assert name in dir(arrowshm)


def test_kernel_re_exports_resolve_lazily() -> None:
    import arrowshm.kernels as K
    from arrowshm.kernels import atomics, seqlock

    assert K.atomic_cas is atomics.atomic_cas and K.seqlock_read is seqlock.seqlock_read
    assert set(K.__all__) <= set(dir(K))
    with pytest.raises(AttributeError):
        K.no_such_kernel  # noqa: B018


_WORKER = r"""
import json, pickle, sys
import arrowshm
from arrowshm.kernels import registry, seqlock
preloaded = {f.__name__: len(f.overloads) for f in
             (registry.registry_find, registry.registry_entry_stamp, seqlock.seqlock_try_read)}
ref = pickle.loads(sys.stdin.buffer.read())
table = ref.get()
print(json.dumps({"preloaded": preloaded, "rows": table.num_rows,
                  "total": sum(table.column("x").to_pylist())}))
"""


def test_a_fresh_worker_gets_through_a_ref_with_the_get_kernels_preloaded() -> None:
    name = "cold/worker"
    arrowshm.put(name, pa.table({"x": list(range(1000))}))
    try:
        arrowshm.get(name)  # compiles (and caches) the get path's kernels if needed
        out = json.loads(_python(_WORKER, pickle.dumps(arrowshm.ref(name))).splitlines()[-1])
    finally:
        arrowshm.delete(name)
    assert out["rows"] == 1000 and out["total"] == sum(range(1000))
    # import loaded the lazily compiled kernels of a get from numba's cache
    assert all(n >= 1 for n in out["preloaded"].values()), out


def test_preload_compiles_nothing_when_the_cache_is_empty(tmp_path: object) -> None:
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = ("from arrowshm.kernels import _cache, seqlock\n"
            "n = _cache.preload([seqlock.seqlock_try_read])\n"
            "print(n, len(seqlock.seqlock_try_read.overloads))")
    proc = subprocess.run([sys.executable, "-c", "import arrowshm_cli, arrowshm\n" + code],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0"]


_FIRST_USE = r"""
import threading
import numpy as np
import arrowshm.kernels as K
from arrowshm.kernels import atomics

words = np.zeros(8, np.uint64)
assert atomics.atomic_fetch_add._pending is not None  # nothing loaded at import
seen = []
threads = [threading.Thread(target=lambda: seen.append(int(K.atomic_fetch_add(words, 0, 1))))
           for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(seen) == list(range(8)) and int(words[0]) == 8, seen
# exactly the declared signatures, compiling off (as njit(signatures) at import)
assert len(atomics.atomic_fetch_add.signatures) == len(atomics._RMW_SIGS)
assert not atomics.atomic_fetch_add._can_compile
assert K.atomic_cas(words, 1, 0, 2**64 - 1) == 0 and int(words[1]) == 2**64 - 1
try:
    K.atomic_load(words.astype(np.int32), 0)
except TypeError:
    print("ok")
"""


def test_fixed_signature_kernels_materialize_once_under_concurrent_first_use() -> None:
    assert _python(_FIRST_USE).strip().splitlines()[-1] == "ok"
