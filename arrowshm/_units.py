"""Sizes, ages and schemas as people read them (shared by every text rendering)."""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["human_age", "human_bytes", "schema_short"]


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


def schema_short(schema: pa.Schema, limit: int = 4) -> str:
    """``'x: int64, s: string, … (+3)'``."""
    parts = [f"{f.name}: {f.type}" for f in list(schema)[:limit]]
    if len(schema) > limit:
        parts.append(f"… (+{len(schema) - limit})")
    return ", ".join(parts)
