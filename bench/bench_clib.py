"""Readers in other languages: first get and repeated get from C (libarrowshm) and from
C++ (arrowshm.hpp, to an ``arrow::Table``), beside a Python reader, in one run.

For each size one table (``make_table``, seed = size) is put ``reps + 1`` times by
this process, 50 ms apart; a reader process of each language sleeps in its wait
(``ash_wait`` / ``arrowshm.wait``) for each new version and times the ``get`` that
follows (the first version only warms the reader up). The reader holds each version
until the next one, as an application would. Then it times 200 repeated gets of the
unchanged version. Figures are medians. The drivers (tests/clib/reader.c,
reader_cpp.cpp) are compiled into a temporary directory first (C with ``-O2``, C++
against the Arrow C++ of the installed pyarrow wheel).

Goals (issue 16): C first get ≤ 10 µs and repeated get ≤ 1 µs at every size; C++ to
``arrow::Table`` ≤ 30 µs.

Usage: ``python -m bench.bench_clib [--sizes 1,64,512] [--reps 5]``; ``python -m bench``
runs it too (:func:`run`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.common import MiB, machine, make_table, save
from bench.common import fmt_time as _fmt_time

ROOT = Path(__file__).resolve().parent.parent
CLIB = ROOT / "clib"
DRIVERS = ROOT / "tests" / "clib"
REPEAT = 200

_PY_READER = """
import json, sys, time
import arrowshm
name, reps = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
first, after, held = [], 0, None
while after < reps:  # versions 1..reps are put; one may be missed while a get runs
    info = arrowshm.wait(name, after_version=after, timeout=60)
    t0 = time.perf_counter_ns()
    table = arrowshm.get(name)
    first.append(time.perf_counter_ns() - t0)
    held, after = table, info.version
again = []
for _ in range(REPEAT):
    t0 = time.perf_counter_ns()
    table = arrowshm.get(name)
    again.append(time.perf_counter_ns() - t0)
first = sorted(first[1:] or first)
again.sort()
print(f"bench first_ns {first[len(first) // 2]} repeat_ns {again[len(again) // 2]}", flush=True)
""".replace("REPEAT", str(REPEAT))


def build(out: Path) -> dict[str, list[str]]:
    """Compile the C and C++ drivers into *out*; the commands that run each reader."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cc:
        raise RuntimeError("no C compiler")
    obj = out / "arrowshm.o"
    subprocess.run([cc, "-O2", "-std=c11", f"-I{CLIB}", "-c", str(CLIB / "arrowshm.c"), "-o",
                    str(obj)], check=True)
    subprocess.run([cc, "-O2", "-std=c11", f"-I{CLIB}", str(DRIVERS / "reader.c"), str(obj),
                    "-lpthread", "-o", str(out / "reader")], check=True)
    readers = {"python": [sys.executable, "-c", _PY_READER], "c": [str(out / "reader")]}
    libs = sorted(glob.glob(os.path.join(pa.get_library_dirs()[0], "libarrow.so*")), key=len)
    if cxx and libs:
        subprocess.run([cxx, "-O2", "-std=c++20", f"-I{CLIB}", f"-I{pa.get_include()}",
                        str(DRIVERS / "reader_cpp.cpp"), str(obj), libs[0],
                        f"-Wl,-rpath,{os.path.dirname(libs[0])}", "-lpthread", "-o",
                        str(out / "reader_cpp")], check=True)
        readers["cpp"] = [str(out / "reader_cpp")]
    return readers


def _measure(cmd: list[str], namespace: str, name: str, table: pa.Table,
             reps: int) -> dict[str, float]:
    import arrowshm

    args = [name, str(reps + 1)] if cmd[1:2] == ["-c"] else ["bench", namespace, name,
                                                             str(reps + 1)]
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "ARROWSHM_NAMESPACE": namespace})
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{cmd[0]} did not start")
        time.sleep(0.2)  # (asleep in its first wait)
        for _ in range(reps + 1):
            time.sleep(0.05)  # the reader is asleep in its wait when the version lands
            arrowshm.put(name, table)
        line = proc.stdout.readline().split()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if line[:1] != ["bench"]:
        raise RuntimeError(f"{cmd[0]}: {' '.join(line)}")
    got = dict(zip(line[1::2], map(float, line[2::2]), strict=True))
    out = {"first_get_s": got["first_ns"] / 1e9, "repeat_get_s": got["repeat_ns"] / 1e9}
    if "cycle_ns" in got:
        out["get_release_s"] = got["cycle_ns"] / 1e9
    if "fresh_ns" in got:
        out["new_mapping_get_s"] = got["fresh_ns"] / 1e9
    return out


def run(sizes_mib: list[int], reps: int) -> dict[str, Any]:
    """Build the drivers and measure every reader at every size (in the namespace of
    ``ARROWSHM_NAMESPACE``, which the caller cleans up)."""
    import arrowshm

    namespace = os.environ.get("ARROWSHM_NAMESPACE", "default")
    work = Path(tempfile.mkdtemp(prefix="ashb-clib-"))
    try:
        readers = build(work)
        rows = []
        for size in sizes_mib:
            table = make_table(size * MiB, seed=size)
            row: dict[str, Any] = {"size_mib": size, "nbytes": table.nbytes}
            for lang, cmd in readers.items():
                name = f"clib/{size}mib-{lang}"
                row[lang] = _measure(cmd, namespace, name, table, reps)
                arrowshm.delete(name)
            rows.append(row)
            print(_row_line(row), flush=True)
            del table
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": machine(), "reps": reps, "repeat_calls": REPEAT,
            "readers": sorted(readers), "rows": rows}


def fmt_time(seconds: float) -> str:  # (sub-microsecond figures in ns)
    return f"{seconds * 1e9:.0f} ns" if seconds < 1e-6 else _fmt_time(seconds)


def _row_line(row: dict[str, Any]) -> str:
    parts = [f"{row['size_mib']} MiB:"]
    for lang in ("python", "c", "cpp"):
        r = row.get(lang)
        if r:
            parts.append(f"{lang} first {fmt_time(r['first_get_s'])}, "
                         f"repeat {fmt_time(r['repeat_get_s'])};")
    return " ".join(parts)


def goals(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) of issue 16."""
    rows = result["rows"]
    out = []
    c_first = max(r["c"]["first_get_s"] for r in rows)
    c_rep = max(r["c"]["repeat_get_s"] for r in rows)
    out.append(("C first get ≤ 10 µs at every size", f"worst {fmt_time(c_first)}",
                c_first <= 10e-6))
    out.append(("C repeated get ≤ 1 µs at every size", f"worst {fmt_time(c_rep)}", c_rep <= 1e-6))
    if all("cpp" in r for r in rows):
        cpp = max(r["cpp"]["first_get_s"] for r in rows)
        out.append(("C++ first get to arrow::Table ≤ 30 µs", f"worst {fmt_time(cpp)}",
                    cpp <= 30e-6))
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "| size | Python first get | C first get | C++ first get (to Table) | Python repeated "
        "| C repeated | C get+release | C++ repeated (to Table) | C get, fresh handle |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        py, c, cpp = r.get("python", {}), r["c"], r.get("cpp", {})

        def f(d: dict[str, float], k: str) -> str:
            return fmt_time(d[k]) if k in d else "–"

        lines.append(f"| {r['size_mib']} MiB | {f(py, 'first_get_s')} | {f(c, 'first_get_s')} | "
                     f"{f(cpp, 'first_get_s')} | {f(py, 'repeat_get_s')} | "
                     f"{f(c, 'repeat_get_s')} | {f(c, 'get_release_s')} | "
                     f"{f(cpp, 'repeat_get_s')} | {f(c, 'new_mapping_get_s')} |")
    lines.append("")
    for goal, got, met in goals(result):
        lines.append(f"- {goal}: {got} — {'met' if met else 'NOT met'}")
    lines.append("")
    lines.append(f"Measured {m['date']} at {m['commit']} on {m['cpu']} ({m['cores']} cores), "
                 f"{result['reps']} versions per size (medians; first get after a wait, the "
                 f"reader holding the previous version), {result['repeat_calls']} repeated gets. "
                 "A new version usually lands in a spare this reader has mapped before; the "
                 "last column is a get through a handle that has mapped nothing yet (registry "
                 "entry and segment mapped and faulted anew), in a process not woken by a "
                 "wait.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_clib",
                                description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,64,512", help="table sizes in MiB")
    p.add_argument("--reps", type=int, default=5, help="versions per size (median)")
    args = p.parse_args(argv)
    ns = os.environ["ARROWSHM_NAMESPACE"] = "bc" + format(os.getpid() % 16**8, "x")
    try:
        result = run([int(s) for s in args.sizes.split(",")], args.reps)
    finally:
        import arrowshm
        from arrowshm.testing import cleanup_namespace

        arrowshm.gc(spares=True)
        cleanup_namespace(ns)
    save("clib", result)
    md = markdown(result)
    from bench.common import RESULTS

    (RESULTS / "clib.md").write_text(md)
    print(md)
    print(json.dumps([g[:2] for g in goals(result)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
