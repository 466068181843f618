"""Build in place + seal vs put of the same table, and seal time vs size.

For each size the table has an int64, a float64 and a utf8 column (as in the
other benchmarks). ``build`` allocates the version in shared memory, the fill
writes the values straight into it (numpy copies from the source arrays — the
producer's own work, which ``put`` must do too before it can copy), and
``seal`` publishes. Medians of repetitions; memcpy of the same bytes in the
same run as the baseline.

Usage: ``python -m bench.bench_build [--quick] [--sizes 1,64,512] [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import MiB, fmt_time, machine, make_table, median, memcpy_seconds, save


def _fill_from(b: Any, table: pa.Table) -> None:
    b["id"][:] = table.column("id").chunks[0].to_numpy()
    b["value"][:] = table.column("value").chunks[0].to_numpy()
    labels = table.column("label").chunks[0]
    _, offsets, data = labels.buffers()
    b.offsets("label")[:] = np.frombuffer(offsets, dtype=np.int32)[: len(labels) + 1]
    used = int(b.offsets("label")[-1])
    b.data("label")[:used] = np.frombuffer(data, dtype=np.uint8)[:used]


def run(sizes_mib: list[int], reps: int) -> dict[str, Any]:
    import arrowshm

    namespace = "bbuild" + str(os.getpid() % 1_000_000)
    os.environ["ARROWSHM_NAMESPACE"] = namespace
    rows = []
    try:
        for size in sizes_mib:
            table = make_table(size * MiB, seed=size).combine_chunks()
            schema = pa.schema([pa.field(f.name, f.type, nullable=False) for f in table.schema])
            table = table.cast(schema)
            string_bytes = table.column("label").chunks[0].buffers()[2].size
            memcpy = memcpy_seconds(table.nbytes)
            puts, builds, fills, seals = [], [], [], []
            for _ in range(reps + 1):  # the first round warms the pool
                t0 = time.perf_counter()
                arrowshm.put(f"put/{size}", table)
                puts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = arrowshm.build(f"build/{size}", schema, table.num_rows,
                                   string_bytes=string_bytes)
                t1 = time.perf_counter()
                _fill_from(b, table)
                t2 = time.perf_counter()
                b.seal()
                t3 = time.perf_counter()
                builds.append(t3 - t0)
                fills.append(t2 - t1)
                seals.append(t3 - t2)
            got = arrowshm.get(f"build/{size}")
            assert got.equals(table), "built table differs from the source"
            row = {
                "size_mib": size,
                "nbytes": table.nbytes,
                "memcpy_s": memcpy,
                "put_s": median(puts[1:]),
                "build_total_s": median(builds[1:]),
                "fill_s": median(fills[1:]),
                "seal_s": median(seals[1:]),
                "alloc_s": median([b - f - s for b, f, s in zip(builds, fills, seals,
                                                                 strict=True)][1:]),
            }
            rows.append(row)
            print(f"{size:>4} MiB: put {fmt_time(row['put_s'])}, build+fill+seal "
                  f"{fmt_time(row['build_total_s'])} (alloc {fmt_time(row['alloc_s'])}, fill "
                  f"{fmt_time(row['fill_s'])}, seal {fmt_time(row['seal_s'])}); memcpy "
                  f"{fmt_time(memcpy)}", flush=True)
            arrowshm.delete(f"put/{size}")
            arrowshm.delete(f"build/{size}")
    finally:
        arrowshm.gc()
        from arrowshm.testing import cleanup_namespace

        cleanup_namespace(namespace)
    return {"machine": machine(), "reps": reps, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Build in place, then seal (`python -m bench.bench_build`)",
        "",
        f"Medians of {result['reps']} runs after one warm-up; same table as above; the fill is "
        "numpy copying the source columns into the builder's arrays (work a producer does "
        "anyway when it computes its columns in place).",
        "",
        "| size | memcpy | put | build (alloc) | fill | seal | build+fill+seal | ×put |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['size_mib']} MiB | {fmt_time(r['memcpy_s'])} | {fmt_time(r['put_s'])} | "
            f"{fmt_time(r['alloc_s'])} | {fmt_time(r['fill_s'])} | {fmt_time(r['seal_s'])} | "
            f"{fmt_time(r['build_total_s'])} | {r['build_total_s'] / r['put_s']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,64,512")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    sizes = [1, 64] if args.quick else [int(s) for s in args.sizes.split(",")]
    result = run(sizes, 3 if args.quick else args.reps)
    path = save("build", result)
    md = markdown(result)
    (path.parent / "build.md").write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
