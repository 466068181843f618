"""One benchmark command, every peer, side by side: ``python -m bench``.

In one run and on one table per size (int64, float64, utf8; ``make_table``):

* arrowshm and the in-process baselines (memcpy, pickle over
  ``multiprocessing.Queue``, naive posix_ipc + Arrow IPC into a new segment)
  through ``bench.bench_datasets.run``, whose memcpy per size is the baseline
  every ratio in this run is taken against;
* Arrow Flight on localhost, Plasma, Vineyard and Ray, each through its driver
  in ``bench/peers/`` (own virtual environment under ``bench/.venvs/``,
  installed by this command unless ``--no-install``; skipped with a note when
  it cannot be had);
* a new name per put (``bench_datasets.run_new_name``: cold, into a spare of this
  process or of another, with ``reserve`` in a fresh process; end-to-end for a new
  name at 256 MiB);
* small tables (100 and 1,000 rows) and 1 KiB batches per second against
  ``multiprocessing.Queue`` (``bench/bench_small.py``), and the same tables through
  Plasma and Ray (their drivers' ``--small``);
* streams: ``bench/results/stream.json``/``stream.md`` from
  ``bench/bench_stream.py`` (run here as a subprocess when that script exists,
  reused with ``--stream reuse``); it measures iceoryx2 in this interpreter, which
  this command pip-installs when missing (and says loudly when it cannot);
* the C and C++ readers (``bench/bench_clib.py``): first and repeated get beside
  arrowshm's Python figures.

Writes bench/results/all.json, docs/PERFORMANCE.md and docs/img/*.png.

Usage: ``python -m bench [--quick] [--sizes 1,64,512] [--reps N] [--peers a,b]
[--no-install] [--install-only] [--stream run|reuse|skip]``
"""

from __future__ import annotations

import argparse
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

from bench import peers as peers_mod
from bench.common import RESULTS, MiB, fmt_time, machine, make_table, save

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("put_s", "first_get_s", "e2e_s", "repeat_get_s")


def _write_tables(sizes: list[int], tmp: Path) -> list[tuple[int, Path]]:
    """The same tables bench_datasets uses (seed = size), as Arrow IPC files for the peers."""
    out = []
    for size in sizes:
        t = make_table(size * MiB, seed=size)
        path = tmp / f"table-{size}mib.arrow"
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
            w.write_table(t)
        out.append((size, path))
        del t
    return out


def _stream(mode: str, quick: bool) -> dict[str, Any] | None:
    script = ROOT / "bench" / "bench_stream.py"
    js = RESULTS / "stream.json"
    note = None
    if mode == "run" and script.exists():
        cmd = [sys.executable, "-m", "bench.bench_stream"] + (["--quick"] if quick else [])
        print(f"== streams: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               timeout=90 if quick else 900)
            note = (f"ran `python {' '.join(cmd[1:])}` in this run "
                    f"({time.monotonic() - t0:.0f} s, exit {r.returncode})")
            if r.returncode:
                note += ": " + " | ".join(r.stderr.strip().splitlines()[-2:])
        except subprocess.TimeoutExpired:
            note = "bench_stream timed out in this run; results below are from its last run"
    elif mode == "run":
        note = "bench/bench_stream.py does not exist yet"
    if not js.exists():
        return {"note": (note or "") + "; no bench/results/stream.json", "data": None}
    data = json.loads(js.read_text())
    if note is None:
        note = "reused bench/results/stream.json from an earlier run of bench/bench_stream.py"
    return {"note": note, "data": data,
            "mtime": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(js.stat().st_mtime))}


def _stream_has_iceoryx2() -> bool:
    """True when bench/results/stream.json holds an iceoryx2 figure (not merely a note
    saying it was absent)."""
    js = RESULTS / "stream.json"
    if not js.exists():
        return False
    try:
        rt = json.loads(js.read_text()).get("round_trip_1_row") or {}
    except ValueError:
        return False
    return bool(rt.get("iceoryx2_arrow"))


def _ensure_iceoryx2(install: bool) -> str | None:
    """bench_stream.py measures iceoryx2 in this interpreter: pip-install it here when
    missing (install mode); None when importable, else why not (printed loudly)."""
    check = [sys.executable, "-c", "import iceoryx2"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return None
    if install:
        print("== installing iceoryx2 into this environment (pip install iceoryx2), for "
              "bench/bench_stream.py", flush=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "iceoryx2"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode == 0 and subprocess.run(check, capture_output=True).returncode == 0:
            return None
        why = "pip install iceoryx2 failed: " + " | ".join(r.stderr.strip().splitlines()[-2:])
    else:
        why = ("iceoryx2 is not installed in this environment and this mode installs "
               "nothing (`pip install iceoryx2`, or run without --quick/--no-install)")
    print(f"!! ICEORYX2 ABSENT from the stream table: {why}", file=sys.stderr, flush=True)
    return why


def _ratios(row: dict[str, Any], memcpy: float) -> dict[str, Any]:
    for key in FIGURES:
        v = row.get(key)
        row[key[:-2] + "_x_memcpy"] = None if v is None else v / memcpy
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 and 64 MiB, 3 repetitions, installed peers only (< 2 minutes)")
    p.add_argument("--sizes", default="1,64,512", help="table sizes in MiB")
    p.add_argument("--reps", type=int, default=5, help="repetitions per figure (median)")
    p.add_argument("--peers", default=",".join(peers_mod.PEERS),
                   help=f"peers to run (default: {','.join(peers_mod.PEERS)}; '' for none); "
                        f"the stream peer iceoryx2 runs unless bench/results/stream.json "
                        f"already has an iceoryx2 figure or --stream skip")
    p.add_argument("--no-install", action="store_true", help="never install a missing peer")
    p.add_argument("--install-only", action="store_true", help="install the peers and exit")
    p.add_argument("--stream", choices=("run", "reuse", "skip"), default=None,
                   help="streams: run bench/bench_stream.py, reuse its results file, or skip "
                        "(default: run in full mode, reuse in quick mode)")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/PERFORMANCE.md")
    p.add_argument("--docs", action="store_true",
                   help="with --quick, write docs/PERFORMANCE.md and plots anyway (a quick run "
                        "otherwise saves bench/results/all-quick.json only)")
    args = p.parse_args(argv)
    sizes = [1, 64] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 3 if args.quick else args.reps
    repeat = 100 if args.quick else 200
    names = [n for n in args.peers.split(",") if n]
    stream_mode = args.stream or ("reuse" if args.quick else "run")
    install = not (args.quick or args.no_install)
    iceoryx2_absent = None
    if stream_mode == "run":
        iceoryx2_absent = _ensure_iceoryx2(install or args.install_only)
    if stream_mode != "skip" and (iceoryx2_absent or not _stream_has_iceoryx2()):
        names += [n for n in peers_mod.STREAM_PEERS if n not in names]
    started = time.monotonic()
    logdir = peers_mod.VENVS / "logs"  # git-ignored, beside the environments
    logdir.mkdir(parents=True, exist_ok=True)

    # peers: what is there, what gets installed, what is skipped and why
    skipped: dict[str, str] = {}
    to_run = []
    for name in names:
        m = peers_mod.meta(name)
        ok, why = peers_mod.available(m)
        if not ok and (install or args.install_only):
            print(f"== installing {name}: {' '.join(m['requirements'])} "
                  f"into bench/.venvs/{m['venv']}", flush=True)
            ok, why = peers_mod.install(m, logdir / f"install-{name}.log")
        if ok:
            to_run.append(name)
        else:
            skipped[name] = why + ("" if install else " (quick/--no-install mode installs nothing; "
                                   "run `python -m bench --install-only`)")
            print(f"== skipping {name}: {skipped[name]}", flush=True)
    if args.install_only:
        return 0 if not skipped else 1

    os.environ["ARROWSHM_NAMESPACE"] = ns = "bm" + format(os.getpid() % 16**8, "x")
    tmp = Path(tempfile.mkdtemp(prefix="ashb-"))
    systems: dict[str, Any] = {}
    try:
        # arrowshm + memcpy + pickle/Queue + naive shm, the same tables (seed = size)
        from bench import bench_datasets

        print(f"== arrowshm and in-process baselines: sizes {sizes} MiB, {reps} reps", flush=True)
        ds = bench_datasets.run(sizes, reps)
        if not args.quick:
            save("datasets", ds)
            (RESULTS / "datasets.md").write_text(bench_datasets.markdown(ds))
        memcpy = {r["size_mib"]: r["memcpy_s"] for r in ds["rows"]}
        systems["arrowshm"] = {"label": "arrowshm", "version": ds["machine"]["arrowshm"],
                               "rows": [_ratios({k: r[k] for k in (
                                   "size_mib", "nbytes", *FIGURES)}, r["memcpy_s"])
                                   for r in ds["rows"]]}
        systems["pickle_queue"] = {
            "label": "pickle + multiprocessing.Queue",
            "version": f"Python {sys.version.split()[0]}",
            "rows": [_ratios({"size_mib": r["size_mib"], "nbytes": r["nbytes"], "put_s": None,
                              "first_get_s": None, "repeat_get_s": None,
                              "e2e_s": r["pickle_queue_e2e_s"]}, r["memcpy_s"])
                     for r in ds["rows"]]}
        systems["naive_shm"] = {
            "label": "naive posix_ipc + Arrow IPC, new segment", "version": "posix_ipc",
            "rows": [_ratios({"size_mib": r["size_mib"], "nbytes": r["nbytes"], "put_s": None,
                              "first_get_s": None, "repeat_get_s": None,
                              "e2e_s": r["naive_shm_e2e_s"]}, r["memcpy_s"])
                     for r in ds["rows"]]}

        # readers in other languages: libarrowshm (C) and arrowshm.hpp (C++), same sizes
        from bench import bench_clib

        print("== C and C++ readers (bench/bench_clib.py)", flush=True)
        try:
            clib = bench_clib.run(sizes, reps)
            for lang, label in (("c", "arrowshm, C reader (libarrowshm)"),
                                ("cpp", "arrowshm, C++ reader (to arrow::Table)")):
                if all(lang in r for r in clib["rows"]):
                    systems[f"arrowshm_{lang}"] = {"label": label, "version": "clib/", "rows": [
                        _ratios({"size_mib": r["size_mib"], "nbytes": r["nbytes"], "put_s": None,
                                 "e2e_s": None, **{k: r[lang][k] for k in (
                                     "first_get_s", "repeat_get_s")}}, memcpy[r["size_mib"]])
                        for r in clib["rows"]]}
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            skipped["arrowshm_c"] = f"the C/C++ readers could not be built or run: {exc}"
            print(f"   skipped: {exc}", flush=True)

        # a new name per put (cold, spares, reserve) and end-to-end for a new name
        nn_sizes = [64] if args.quick else [64, 256, 512]
        print(f"== arrowshm, new name per put: {nn_sizes} MiB, {reps} reps", flush=True)
        new_name = bench_datasets.run_new_name(nn_sizes, reps,
                                               e2e_mib=None if args.quick else 256)
        if not args.quick:
            save("new_name", new_name)
        # small tables and 1 KiB batches against multiprocessing.Queue, same run
        from bench import bench_small

        print("== small messages (bench_small)", flush=True)
        small = bench_small.run(args.quick, reps)
        if not args.quick:
            save("small", small)
        small_files = [(rows, bench_small.write_small_file(rows, tmp / f"small-{rows}.arrow"))
                       for rows in bench_small.ROWS]
        small_peers: dict[str, dict[int, float]] = {}

        tables = _write_tables(sizes, tmp)
        for name in to_run:
            m = peers_mod.meta(name)
            if m.get("kind") == "stream":
                continue
            print(f"== {name}", flush=True)
            res = peers_mod.run(name, tables, reps, repeat, tmp,
                                timeout=(150 if args.quick else None), small=small_files,
                                small_n=small["counts"]["tab_q"])
            (logdir / f"{name}.stderr.log").write_bytes(
                (tmp / name / "stderr.log").read_bytes()
                if (tmp / name / "stderr.log").exists() else b"")
            if "error" in res:
                skipped[name] = f"ran but failed: {res['error']}"
                print(f"   failed: {res['error']}", flush=True)
                continue
            rows = [_ratios({k: r.get(k) for k in ("size_mib", "nbytes", *FIGURES)},
                            memcpy[r["size_mib"]]) for r in res["rows"]]
            systems[name] = {"label": m["label"], "version": res.get("version", ""),
                             "rows": rows, "seconds": res["seconds"]}
            if res.get("small"):
                small_peers[m["label"]] = {r["rows"]: r["per_s"] for r in res["small"]}
                print("   small tables: " + ", ".join(
                    f"{r['rows']} rows {r['per_s']:,.0f}/s" for r in res["small"]), flush=True)
            for r in rows:
                print("   " + ", ".join(f"{k[:-2]} {fmt_time(r[k])}" for k in FIGURES
                                        if r.get(k) is not None) + f" ({r['size_mib']} MiB)",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        from arrowshm.testing import cleanup_namespace

        cleanup_namespace(ns)

    stream = None if stream_mode == "skip" else _stream(stream_mode, args.quick)
    stream_peers: dict[str, Any] = {}
    for name in to_run:
        m = peers_mod.meta(name)
        if m.get("kind") != "stream" or stream is None:
            continue
        print(f"== {name} (stream round trip)", flush=True)
        wd = Path(tempfile.mkdtemp(prefix="ashb-"))
        try:
            res = peers_mod.run(name, [], 1, repeat, wd, timeout=60 if args.quick else None)
        finally:
            shutil.rmtree(wd, ignore_errors=True)
        if "error" in res:
            skipped[name] = f"ran but failed: {res['error']}"
            print(f"   failed: {res['error']}", flush=True)
            continue
        res["label"] = m["label"]
        stream_peers[name] = res
        ice, pipe = res["iceoryx2"]["round_trip_median_s"], res["pipe"]["round_trip_median_s"]
        print(f"   round trip median: iceoryx2 {fmt_time(ice)}, "
              f"multiprocessing.Pipe {fmt_time(pipe)}", flush=True)
    # cold paths: import, the command line, a fresh worker's first get (bench_cold.py)
    from bench import bench_cold

    print("== cold paths (bench/bench_cold.py)", flush=True)
    cold = bench_cold.run(quick=args.quick)
    print("   " + bench_cold.markdown(cold).replace("\n", "\n   ").rstrip(), flush=True)
    cmd = "python -m bench" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    result = {"machine": machine(), "command": cmd, "mode": "quick" if args.quick else "full",
              "sizes_mib": sizes, "reps": reps, "repeat_get_calls": repeat,
              "memcpy_s": {str(k): v for k, v in memcpy.items()}, "systems": systems,
              "skipped": skipped, "stream": stream, "stream_peers": stream_peers, "datasets": ds,
              "new_name": new_name, "small": small, "small_peers": small_peers,
              "iceoryx2_absent": iceoryx2_absent,
              "seconds": time.monotonic() - started}
    result["cold"] = cold
    path = save("all-quick" if args.quick else "all", result)
    print(f"saved {path}", flush=True)
    from bench import plots, report

    if not args.no_docs and (args.docs or not args.quick):
        images = plots.make(result, ROOT / "docs" / "img")
        doc = report.write(result, images, ROOT / "docs" / "PERFORMANCE.md")
        print(f"wrote {doc}", flush=True)
    print()
    print(report.summary(result))
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
