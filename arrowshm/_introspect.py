"""Where a table's memory lives: buffer addresses against /proc/self/maps."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa

from ._shm.context import all_contexts


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    path: str


def _directories() -> list[str]:
    """/dev/shm and the directory of every namespace this process uses
    (``ARROWSHM_DIR``), each with a trailing ``/``."""
    dirs = {"/dev/shm/"} | {c.directory.rstrip("/") + "/" for c in all_contexts()}
    return sorted(dirs)


def shm_mappings() -> list[Mapping]:
    """This process's mappings of arrowshm's objects (/dev/shm, and the directory of
    each namespace it uses), each with the object's current path.

    A segment this process created is mapped before it is named (see
    ``Segment.create``), so the kernel lists it as ``<directory>/#<inode>
    (deleted)``; such entries are matched to their name by inode. Objects
    really unlinked keep the kernel's ``(deleted)`` path.
    """
    dirs = tuple(_directories())
    entries = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith(dirs):
                lo, hi = parts[0].split("-")
                entries.append((int(lo, 16), int(hi, 16), int(parts[4]), parts[5].strip()))
    names: dict[int, str] = {}
    if any(path.endswith(" (deleted)") for *_, path in entries):
        for d in dirs:
            # (an inode number is unique per filesystem only: a clash across two
            # directories could misname a deleted entry, never hide a mapping)
            with os.scandir(d) as it:
                names.update({e.inode(): d + e.name for e in it})
    return [
        Mapping(lo, hi, names.get(ino, path) if path.endswith(" (deleted)") else path)
        for lo, hi, ino, path in entries
    ]


def table_buffers(table: pa.Table | pa.RecordBatch) -> list[pa.Buffer]:
    """Every non-null buffer of every column chunk (children and dictionaries included)."""
    bufs: list[pa.Buffer] = []

    def visit(arr: pa.Array) -> None:
        bufs.extend(b for b in arr.buffers() if b is not None and b.size > 0)
        if isinstance(arr, pa.DictionaryArray):
            visit(arr.dictionary)

    columns = table.columns if isinstance(table, pa.Table) else [
        pa.chunked_array([c]) for c in table.columns
    ]
    for col in columns:
        for chunk in col.chunks:
            visit(chunk)
    return bufs


def buffers_in_shm(table: pa.Table | pa.RecordBatch) -> tuple[int, int, set[str]]:
    """(buffers inside a mapping of an arrowshm object — /dev/shm or a namespace's
    directory —, all buffers, the objects they lie in)."""
    maps = shm_mappings()
    bufs = table_buffers(table)
    inside = 0
    where: set[str] = set()
    for b in bufs:
        for m in maps:
            if m.start <= b.address and b.address + b.size <= m.end:
                inside += 1
                where.add(m.path)
                break
    return inside, len(bufs), where
