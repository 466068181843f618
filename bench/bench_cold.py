"""Cold paths (issue 14, item 4): what a new process pays before its first table.

Every figure is the median of fresh-interpreter runs taken in this run,
interleaved so that the machine's load hits each alike:

* ``import arrowshm`` against ``import numba, pyarrow`` (the floor: the data
  plane needs both) and against ``python -c pass`` (interpreter start), as a
  ratio of wall times and of wall times net of interpreter start;
* ``arrowshm --help``, ``arrowshm serve --help`` and ``arrowshm ls`` (the
  installed console script, which enters through ``arrowshm_cli``);
* a fresh worker receiving pickled ``Ref`` objects: the time of its
  ``import arrowshm``, of its first ``ref.get()`` (a 1 KiB table) and of its
  second ``get`` — a version of 1, 64 or 256 MiB it never mapped;
* the first ``get`` of a version this (warm) process never mapped, published
  by another process, at the same sizes.

Usage: ``python -m bench.bench_cold [--quick] [--reps N] [--sizes 1,64,256]``;
writes ``bench/results/cold.json`` and ``cold.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, MiB, fmt_time, machine, make_table, median, save

NAMESPACE = "bcold"

_CHILD = r"""
import json, pickle, sys, time
t0 = time.perf_counter()
import arrowshm
t1 = time.perf_counter()
refs = pickle.loads(sys.stdin.buffer.read())
gets = []
for ref in refs:
    t = time.perf_counter()
    table = ref.get()
    gets.append(time.perf_counter() - t)
    del table
print(json.dumps({"import_s": t1 - t0, "get_s": gets}))
"""

_WRITER = r"""
import sys, arrowshm, pyarrow as pa
from bench.common import make_table
size, count, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
table = make_table(size << 20, seed=size)
for i in range(count):
    arrowshm.put(f"{prefix}/{i}", table)
"""


def _env() -> dict[str, str]:
    """The children's environment: the bench namespace, and bytecode caching on.

    numba and pyarrow are imported from the ``.pyc`` files of site-packages; with
    ``PYTHONDONTWRITEBYTECODE`` set (as in some CI and container images) a source
    checkout of arrowshm would be compiled from source at every start instead, so
    the children write and reuse bytecode under ``bench/.pycache`` (outside the
    source tree's folders) as an installed package would.
    """
    root = Path(__file__).resolve().parent.parent
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, ARROWSHM_NAMESPACE=NAMESPACE,
               PYTHONPATH=str(root) + (os.pathsep + path if path else ""),
               PYTHONPYCACHEPREFIX=str(root / "bench" / ".pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _wall(cmd: list[str], env: dict[str, str], stdin: bytes | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, input=stdin, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def _cli() -> list[str]:
    exe = shutil.which("arrowshm")
    return [exe] if exe else [sys.executable, "-c",
                              "import sys, arrowshm_cli; sys.exit(arrowshm_cli.main())"]


def start_up(reps: int, env: dict[str, str]) -> dict[str, Any]:
    """Medians of fresh-interpreter wall times, each round running every command once."""
    py = sys.executable
    cmds = {
        "python": [py, "-c", "pass"],
        "numba_pyarrow": [py, "-c", "import numba, pyarrow"],
        "arrowshm": [py, "-c", "import arrowshm"],
        "cli_help": [*_cli(), "--help"],
        "cli_serve_help": [*_cli(), "serve", "--help"],
        "cli_ls": [*_cli(), "ls"],
    }
    for cmd in cmds.values():  # warm the page cache and numba's cache once
        _wall(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for key, cmd in cmds.items():
            times[key].append(_wall(cmd, env))
    med = {k: median(v) for k, v in times.items()}
    base = med["python"]
    return {
        "reps": reps,
        "median_s": med,
        "import_ratio": med["arrowshm"] / med["numba_pyarrow"],
        "import_ratio_net": (med["arrowshm"] - base) / (med["numba_pyarrow"] - base),
    }


def worker_gets(sizes: list[int], reps: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """A fresh worker per run: import, first get (1 KiB), second get (SIZE, never mapped)."""
    import arrowshm

    ns = arrowshm.Namespace(NAMESPACE)
    ns.put("cold/small", make_table(1024, seed=1))
    rows = []
    try:
        for size in sizes:
            ns.put(f"cold/{size}", make_table(size * MiB, seed=size))
            payload = pickle.dumps([ns.ref("cold/small"), ns.ref(f"cold/{size}")])
            runs = []
            for _ in range(reps):
                out = subprocess.run([sys.executable, "-c", _CHILD], env=env, input=payload,
                                     capture_output=True)
                if out.returncode:
                    raise RuntimeError(f"worker failed: {out.stderr.decode()[-2000:]}")
                runs.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
            rows.append({
                "size_mib": size,
                "import_s": median([r["import_s"] for r in runs]),
                "first_get_s": median([r["get_s"][0] for r in runs]),
                "second_get_never_mapped_s": median([r["get_s"][1] for r in runs]),
            })
            ns.delete(f"cold/{size}")
    finally:
        ns.delete("cold/small")
    return rows


def in_process_first_gets(sizes: list[int], reps: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """First get, in this warm process, of versions another process published."""
    import arrowshm

    ns = arrowshm.Namespace(NAMESPACE)
    ns.put("cold/warmup", make_table(1024, seed=2))
    ns.get("cold/warmup")
    rows = []
    try:
        for size in sizes:
            prefix = f"cold/np{size}"
            subprocess.run([sys.executable, "-c", _WRITER, str(size), str(reps), prefix],
                           env=env, check=True)
            times = []
            for i in range(reps):
                t0 = time.perf_counter()
                table = ns.get(f"{prefix}/{i}")
                times.append(time.perf_counter() - t0)
                del table
                ns.delete(f"{prefix}/{i}")
            rows.append({"size_mib": size, "first_get_never_mapped_s": median(times)})
    finally:
        ns.delete("cold/warmup")
    return rows


def run(quick: bool = False, reps: int | None = None,
        sizes: list[int] | None = None) -> dict[str, Any]:
    """Run every cold-path figure; save ``cold.json``/``cold.md``; return the result."""
    from arrowshm.testing import cleanup_namespace

    sizes = sizes or ([1, 64] if quick else [1, 64, 256])
    n_start = reps or (10 if quick else 15)
    n_get = reps or (5 if quick else 9)
    env = _env()
    started = time.monotonic()
    load = os.getloadavg()
    try:
        result: dict[str, Any] = {
            "machine": machine(),
            "loadavg_at_start": load,
            "start_up": start_up(n_start, env),
            "worker": worker_gets(sizes, n_get, env),
            "in_process": in_process_first_gets(sizes, n_get, env),
        }
    finally:
        cleanup_namespace(NAMESPACE)
    result["loadavg_at_end"] = os.getloadavg()
    result["seconds"] = time.monotonic() - started
    save("cold", result)
    (RESULTS / "cold.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """The result as the table docs/PERFORMANCE.md quotes."""
    s = result["start_up"]
    m = s["median_s"]
    lines = [
        "| cold path | median | goal |",
        "|---|---|---|",
        f"| `python -c pass` | {fmt_time(m['python'])} | — |",
        f"| `import numba, pyarrow` | {fmt_time(m['numba_pyarrow'])} | — |",
        f"| `import arrowshm` | {fmt_time(m['arrowshm'])} = {s['import_ratio']:.2f}× "
        f"numba + pyarrow ({s['import_ratio_net']:.2f}× net of interpreter start) | ≤ 1.3× |",
        f"| `arrowshm --help` | {fmt_time(m['cli_help'])} | < 0.15 s |",
        f"| `arrowshm serve --help` | {fmt_time(m['cli_serve_help'])} | < 0.15 s |",
        f"| `arrowshm ls` | {fmt_time(m['cli_ls'])} | < 0.15 s |",
    ]
    for w in result["worker"]:
        lines.append(f"| fresh worker: first `Ref.get()` (1 KiB table), after "
                     f"`import arrowshm` ({fmt_time(w['import_s'])}) | "
                     f"{fmt_time(w['first_get_s'])} | < 5 ms |")
        break
    for w in result["worker"]:
        lines.append(f"| fresh worker: second get, never-mapped {w['size_mib']} MiB | "
                     f"{fmt_time(w['second_get_never_mapped_s'])} | ≤ 100 µs |")
    for r in result["in_process"]:
        lines.append(f"| warm process: first get of a never-mapped {r['size_mib']} MiB version | "
                     f"{fmt_time(r['first_get_never_mapped_s'])} | ≤ 100 µs |")
    lo, hi = result["loadavg_at_start"][0], result["loadavg_at_end"][0]
    lines.append("")
    lines.append(f"Medians of {s['reps']} fresh interpreters per start-up figure (interleaved) "
                 f"and of the worker runs; load average {lo:.1f} → {hi:.1f} "
                 f"({os.cpu_count()} CPUs).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_cold", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer runs, sizes 1 and 64 MiB")
    p.add_argument("--reps", type=int, default=None, help="runs per figure (median)")
    p.add_argument("--sizes", default=None, help="MiB, comma-separated (default 1,64,256)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
    result = run(quick=args.quick, reps=args.reps, sizes=sizes)
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
