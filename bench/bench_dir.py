"""Put and first-touch speed of a namespace by the filesystem of its directory
(``ARROWSHM_DIR``): /dev/shm, a separate tmpfs, a tmpfs mounted ``huge=always``
and ``huge=within_size``, and a disk directory.

    python -m bench.bench_dir [--mib 256] [--reps 5]

As root it re-runs itself under ``unshare -m`` and mounts the tmpfs variants
privately (nothing stays mounted); otherwise only /dev/shm and the disk are
measured. For each directory, medians of ``--reps`` runs, each on fresh pages:

* ``create``: ``Segment.create`` of the size (``O_TMPFILE``, ``posix_fallocate``,
  ``mmap``, ``linkat``);
* ``write``: then writing every byte of the new mapping (the writer's first
  touch), as GB/s;
* ``read``: a second mapping of that segment reading one word per 4 KiB (a
  reader's first touch of existing pages: page-table faults only), as GB/s;
* ``put``: ``arrowshm.put`` of a table of that size into a new segment (spares
  off, so every put takes fresh pages; after one warm-up put), as GB/s, and as a
  ratio to a memcpy
  into already-touched memory measured in the same run;
* ``huge MiB``: ``ShmemHugePages`` while the segment is mapped (0: the kernel
  gave 4 KiB pages).

Results go to ``bench/results/dir.json`` and ``dir.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import RESULTS, MiB, machine, make_table, median, memcpy_seconds, save

_INNER = "ARROWSHM_BENCH_DIR_INNER"


def _meminfo_mib(key: str) -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _measure(label: str, directory: str, nbytes: int, reps: int, ns: str) -> dict[str, Any]:
    import arrowshm
    from arrowshm._shm.segment import Segment, locate, unlink
    from arrowshm.testing import cleanup_namespace

    creates, writes, reads, huge = [], [], [], []
    for k in range(reps):
        name = locate(directory, f"/ash-{ns}-bench{k}")
        t0 = time.perf_counter()
        seg = Segment.create(name, nbytes)
        t1 = time.perf_counter()
        buf = np.frombuffer(seg.mm, dtype=np.uint8)
        buf.fill(1)
        t2 = time.perf_counter()
        huge.append(_meminfo_mib("ShmemHugePages"))
        other = Segment.open(name)
        view = np.frombuffer(other.mm, dtype=np.uint8)
        t3 = time.perf_counter()
        total = int(view[::4096].sum())
        t4 = time.perf_counter()
        assert total == nbytes // 4096
        del buf, view, seg, other
        unlink(name)
        creates.append(t1 - t0)
        writes.append(t2 - t1)
        reads.append(t4 - t3)
    os.environ["ARROWSHM_DIR"] = directory  # (a benchmark, not the library)
    os.environ["ARROWSHM_SPARE_BYTES"] = "0"
    table = make_table(nbytes)
    space = arrowshm.Namespace(ns)
    puts = []
    try:
        space.put("t", table.slice(0, 1000))  # warm-up: the registry, kernels, first mapping
        for _ in range(reps):
            t0 = time.perf_counter()
            info = space.put("t", table)
            puts.append(time.perf_counter() - t0)
        data_bytes = info.nbytes
        space.delete("t")
    finally:
        cleanup_namespace(ns)
    copy = memcpy_seconds(data_bytes, reps=reps)
    gb = nbytes / 1e9
    return {
        "label": label, "directory": directory, "bytes": nbytes,
        "create_s": median(creates), "write_gbs": gb / median(writes),
        "read_gbs": gb / median(reads), "put_gbs": data_bytes / 1e9 / median(puts),
        "put_vs_memcpy": median(puts) / copy, "huge_mib": max(huge),
    }


def _inner(nbytes: int, reps: int) -> list[dict[str, Any]]:
    from arrowshm.testing import unique_namespace

    base = tempfile.mkdtemp(prefix="ashbench-", dir="/var/tmp")
    places: list[tuple[str, str]] = [("/dev/shm", "/dev/shm")]
    mounted = []
    try:
        if os.geteuid() == 0 and os.environ.get(_INNER):
            size = f"{2 * nbytes // MiB + 256}m"
            for label, opt in [("tmpfs", "huge=never"), ("tmpfs huge=always", "huge=always"),
                               ("tmpfs huge=within_size", "huge=within_size")]:
                d = os.path.join(base, opt.replace("=", "_"))
                os.mkdir(d, 0o700)
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=700,{opt}",
                                "tmpfs", d], check=True)
                mounted.append(d)
                places.append((label, d))
        disk = os.path.join(base, "disk")
        os.mkdir(disk, 0o700)
        places.append(("disk (" + _fstype(disk) + ")", disk))
        return [_measure(label, d, nbytes, reps, unique_namespace("b"))
                for label, d in places]
    finally:
        for d in mounted:
            subprocess.run(["umount", d], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _fstype(path: str) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _, point, fstype, *_ = line.split()
            if path.startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    return kind


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [f"# ARROWSHM_DIR: put and first touch by filesystem ({meta['mib']} MiB, "
           f"median of {meta['reps']})", "",
           f"{meta['machine']['date']}, commit {meta['machine']['commit']}, "
           f"{meta['machine']['cores']} cores, load average {meta['load']}; "
           f"/sys/kernel/mm/transparent_hugepage/shmem_enabled: {meta['shmem_thp']}", "",
           "| directory | create | write (first touch) | read (first touch) | put | "
           "put / memcpy | huge pages |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['create_s'] * 1e3:.1f} ms | {r['write_gbs']:.2f} GB/s | "
                   f"{r['read_gbs']:.1f} GB/s | {r['put_gbs']:.2f} GB/s | "
                   f"{r['put_vs_memcpy']:.1f}× | {r['huge_mib']:.0f} MiB |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    if (os.geteuid() == 0 and not os.environ.get(_INNER) and shutil.which("unshare")):
        env = {**os.environ, _INNER: "1"}
        cmd = ["unshare", "-m", "--propagation", "private", sys.executable, "-m",
               "bench.bench_dir", "--mib", str(args.mib), "--reps", str(args.reps)]
        raise SystemExit(subprocess.run(cmd, env=env,
                                        cwd=Path(__file__).resolve().parents[1]).returncode)
    rows = _inner(args.mib * MiB, args.reps)
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read_text().strip()
    except OSError:
        thp = "?"
    meta = {"mib": args.mib, "reps": args.reps, "machine": machine(),
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "shmem_thp": thp}
    save("dir", {**meta, "rows": rows})
    md = _markdown(rows, meta)
    (RESULTS / "dir.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
