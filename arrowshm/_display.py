"""Human-readable renderings (terminal tables and notebook HTML)."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._dataset import DatasetInfo


def human_bytes(n: int) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def human_age(when: _dt.datetime, now: _dt.datetime | None = None) -> str:
    """Age of *when* as ``'3s'``, ``'5m'``, ``'2h'``, ``'4d'``."""
    now = now or _dt.datetime.now(tz=_dt.timezone.utc)
    secs = max(0.0, (now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs)}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]],
          right: Sequence[int] = ()) -> str:
    """An aligned plain-text table; columns whose index is in *right* are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def dataset_info_html(info: DatasetInfo) -> str:
    """An HTML summary of a dataset version for notebooks."""
    fields = "".join(
        f"<tr><td><code>{html.escape(f.name)}</code></td><td>{html.escape(str(f.type))}</td></tr>"
        for f in info.schema
    )
    return (
        f"<div><b>arrowshm dataset</b> <code>{html.escape(info.name)}</code> "
        f"v{info.version} &middot; {info.num_rows:,} rows &middot; {human_bytes(info.nbytes)}"
        f" &middot; updated {human_age(info.updated_at)} ago"
        f"<table><tr><th>column</th><th>type</th></tr>{fields}</table></div>"
    )
