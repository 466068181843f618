"""PNG plots of a ``python -m bench`` result: time vs table size per system, log scales."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TITLES = {
    "put_s": "put (producer, same name repeated)",
    "first_get_s": "first get of a new version, in another process",
    "e2e_s": "end-to-end: producer starts → consumer holds the table",
    "repeat_get_s": "repeated get of the same version",
}
STYLE = {"arrowshm": dict(color="C3", lw=2.5, marker="o")}
PALETTE = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9"]  # C3 is arrowshm's


def make(result: dict[str, Any], outdir: Path) -> dict[str, Path]:
    """One PNG per figure in *outdir*; returns {figure: path} (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    outdir.mkdir(parents=True, exist_ok=True)
    sizes = result["sizes_mib"]
    memcpy = [result["memcpy_s"][str(s)] for s in sizes]
    out: dict[str, Path] = {}
    for fig_key, title in TITLES.items():
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        if fig_key in ("put_s", "e2e_s"):
            ax.plot(sizes, memcpy, color="black", ls="--", lw=1.2, marker="x",
                    label="memcpy (same bytes, same run)")
        drawn = 0
        for i, (name, sysres) in enumerate(result["systems"].items()):
            pts = [(r["size_mib"], r[fig_key]) for r in sysres["rows"]
                   if r.get(fig_key) is not None]
            if not pts:
                continue
            style = STYLE.get(name, dict(color=PALETTE[i % len(PALETTE)], lw=1.5, marker="s"))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=sysres["label"], **style)
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        if fig_key == "first_get_s":
            ax.axhline(100e-6, color="grey", ls=":", lw=1, label="goal: 100 µs")
        if fig_key == "repeat_get_s":
            ax.axhline(10e-6, color="grey", ls=":", lw=1, label="goal: 10 µs")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{s} MiB" for s in sizes])
        ax.set_xlabel("table size")
        ax.set_ylabel("seconds (median)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = outdir / f"bench_{fig_key[:-2]}.png"
        fig.savefig(path)
        plt.close(fig)
        out[fig_key] = path
    out.update(_stream_plots(result, outdir, plt))
    return out


def _stream_plots(result: dict[str, Any], outdir: Path, plt: Any) -> dict[str, Path]:
    """Bar charts of stream round trip and throughput, when the stream results name them."""
    from bench.report import stream_figures

    figs = stream_figures(result)
    out: dict[str, Path] = {}
    for key, unit, title, scale in (("round_trip_s", "µs", "stream round trip (median)", 1e6),
                                    ("throughput", "", "stream throughput", 1.0)):
        items = [(name, v[key]) for name, v in figs.items() if v.get(key)]
        if not items:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(items)), dpi=110)
        ax.barh([n for n, _ in items], [v * scale for _, v in items],
                color=["C3" if "arrowshm" in n else "C0" for n, _ in items])
        ax.set_xscale("log")
        ax.set_xlabel(unit or figs[items[0][0]].get("throughput_unit", ""))
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        path = outdir / f"bench_stream_{key.split('_')[0]}.png"
        fig.savefig(path)
        plt.close(fig)
        out["stream_" + key] = path
    return out
