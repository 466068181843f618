"""Reclaiming what crashed or finished processes left in /dev/shm.

A data segment may be removed when no LIVE registry entry references it and
either it was PUBLISHED (so it has been retired: a published segment is never
referenced again once dropped) or its creator is dead (so it can never be
published). A segment in WRITING/SEALED state whose creator lives is a put in
progress and is kept.

The order of the checks matters: each segment's header state and creator
liveness are read *before* the registry snapshot of references. A writer sets
PUBLISHED only after its seqlock write made the reference visible, so a
segment seen PUBLISHED is either referenced in the later snapshot or retired
for good; and a creator seen dead can no longer publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .._errors import ArrowShmError
from .._info import GcReport
from .._names import SHM_PREFIX, parse_segment_shm_name
from .._proc import is_alive
from . import header, pool
from . import layout as L
from .context import Context
from .mapcache import collect as collect_superseded
from .mapcache import drop_idle
from .registry import EntryView
from .segment import Segment, base_name, foreign, list_names, object_stat, unlink

__all__ = ["GcPreview", "collect", "drop_entry", "preview"]

_UNINITIALIZED_GRACE_S = 60.0


def collect(ctx: Context, *, spares: bool = False) -> GcReport:
    """Reclaim every object of *ctx*'s namespace that nothing live needs (see the
    module docstring); returns what was reclaimed. Spares (:mod:`arrowshm._shm.pool`)
    are kept within their bound and idle time, or all freed with *spares*."""
    reg = ctx.registry
    report = GcReport()
    report.recovered.extend(reg.recover_dead_writers())
    report.quota_recovered = reg.recover_reservations()
    pool.recover(ctx)
    _sweep_entries(ctx, report)
    _release_dead_pins(ctx, report)
    count, freed = pool.free(ctx, everything=True) if spares else pool.trim(ctx)
    report.spares_freed, report.bytes_freed = count, report.bytes_freed + freed
    _reclaim_segments(ctx, report)
    left = pool.usage(ctx)
    report.spares, report.spare_bytes = left.segments, left.nbytes
    if report.segments or report.expired:
        reg.count_reaped(len(report.segments) + len(report.expired))
    return report


@dataclass
class GcPreview:
    """What :func:`collect` would reclaim now (:func:`preview`; nothing is changed).

    ``segments`` lists (name, bytes) of unreferenced objects it would remove;
    ``kept`` counts unreferenced ones live processes are still writing;
    ``expired`` and ``abandoned`` name entries it would delete (TTL passed, claimer
    died before a first version); ``dead_locks`` names entries whose writer lock a
    dead process holds; ``dead_reservation_bytes`` is quota dead creators reserved;
    ``spares_freed``/``spare_bytes_freed`` what trimming the spares would free;
    ``skipped`` objects with the namespace's prefix that are not this user's files.
    """

    segments: list[tuple[str, int]] = field(default_factory=list)
    kept: int = 0
    expired: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    dead_locks: list[str] = field(default_factory=list)
    dead_reservation_bytes: int = 0
    spares_freed: int = 0
    spare_bytes_freed: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes a gc would free (segments and trimmed spares)."""
        return sum(n for _, n in self.segments) + self.spare_bytes_freed


def preview(ctx: Context) -> GcPreview:
    """What :func:`collect` would reclaim from *ctx*'s namespace now, as a dry run:
    segments are mapped read-only, no lock, slot or counter is written (``arrowshm
    doctor``). The same rules as :func:`collect`, so a gc run right after reclaims
    this (or less, if live processes moved on meanwhile)."""
    reg = ctx.registry
    out = GcPreview()
    now = time.time_ns()
    for view in reg.entries():
        if _abandoned(view):
            out.abandoned.append(view.name)
        elif view.expired(now):
            out.expired.append(view.name)
    out.dead_locks.extend(reg.dead_locks())
    out.dead_reservation_bytes = reg.dead_reservation_bytes()
    table = pool._table(ctx)
    ready = table.ready()
    idle_before = now - int(pool.idle_seconds() * 1e9)
    idle = [s for s in ready if s.since_ns < idle_before]
    left = sorted((s for s in ready if s not in idle), key=lambda s: -s.nbytes)
    over = sum(s.nbytes for s in table.slots()) - sum(s.nbytes for s in idle) - max(
        pool.limit_bytes(ctx.directory), pool.reserve_target(ctx))
    for s in left:
        if over <= 0:
            break
        idle.append(s)
        over -= s.nbytes
    out.spares_freed, out.spare_bytes_freed = len(idle), sum(s.nbytes for s in idle)
    candidates = _scan(ctx, out.skipped, writable=False)
    referenced = reg.referenced_segments() | pool.listed(ctx)
    for sid, shm, mapped, _, removable in candidates:
        if sid in referenced:
            continue
        if not removable:
            out.kept += 1
            continue
        st = object_stat(shm)
        out.segments.append((shm, mapped.size if mapped is not None else
                             int(st.st_size) if st is not None else 0))
    return out


def drop_entry(ctx: Context, slot: int, generation: int) -> tuple[EntryView, int] | None:
    """Delete entry *slot* if it still holds *generation* and let go of every segment
    it references now: a dataset's become spares of the namespace (bounded; see
    :mod:`arrowshm._shm.pool`) or are freed, a stream's are freed. Tables and
    batches that processes hold stay valid: their mappings keep the memory.
    Returns the entry's last snapshot and the bytes freed, or None when it was
    already gone."""
    reg = ctx.registry
    removed = reg.remove(slot, generation)
    if removed is None:
        return None
    freed = 0
    for sid in removed.segments():
        if removed.kind == L.KIND_DATASET:
            freed += pool.retire(ctx, sid)
        else:
            freed += reg.unlink_segment(sid)
            ctx.take_own(sid)
    return removed, freed


def _abandoned(view: EntryView) -> bool:
    """A dataset name claimed by a writer that died before publishing a version."""
    owner = view.owner_pid
    return (view.kind == L.KIND_DATASET and view.version == 0 and owner != 0
            and not is_alive(owner, view.owner_start))


def _sweep_entries(ctx: Context, report: GcReport) -> None:
    """One pass over the live entries: delete those whose TTL passed and names whose
    claimer died before publishing a first version."""
    reg = ctx.registry
    now = time.time_ns()
    for view in list(reg.entries()):
        if _abandoned(view):
            if reg.remove(view.slot, view.generation, _abandoned):
                report.recovered.append(view.name)
            continue
        if view.expired(now):
            dropped = drop_entry(ctx, view.slot, view.generation)
            if dropped is not None:
                report.bytes_freed += dropped[1]
                report.expired.append(view.name)


_Candidate = tuple[int, str, Segment | None, int, bool]


def _release_dead_pins(ctx: Context, report: GcReport) -> None:
    """Release the pins that dead processes left on the retained versions of live
    datasets (each kept its version's segment from being recycled or, once
    retired, from becoming a spare)."""
    reg = ctx.registry
    for view in list(reg.entries()):
        if view.kind != L.KIND_DATASET or view.version == 0:
            continue
        for k, sid in enumerate(view.history()):
            try:
                seg = Segment.open(reg.segment_name(sid), writable=True)
            except ArrowShmError:
                continue  # retired meanwhile, or not ours
            if header.facts(seg) is None:
                continue
            for pin in header.clear_dead_pins(seg):
                report.pins_released.append(f"{view.name}@{view.version - k}(pid {pin.pid})")


def _reclaim_segments(ctx: Context, report: GcReport) -> None:
    reg = ctx.registry
    ctx.prune_own()
    collect_superseded()
    drop_idle()  # idle reader mappings would keep the memory of what gc unlinks
    candidates = _scan(ctx, report.skipped)
    # read last: see the module docstring (a spare is listed before it is POOLED, and
    # a claimer makes it WRITING before it leaves the table)
    referenced = reg.referenced_segments() | pool.listed(ctx)
    for sid, shm, mapped, word, removable in candidates:
        if sid in referenced:
            continue
        if not removable:
            report.kept += 1
            continue
        if mapped is None or L.state_of(word) == L.SEG_RECLAIMING:
            st = object_stat(shm)
            removed = st is not None and unlink(shm)
            freed = int(st.st_size) if st is not None and removed else 0
            if removed and mapped is not None:
                reg.release(freed)
            # (an unstamped object never settled its creator's reservation, which
            # recover_reservations gives back: releasing its size too would count twice)
        else:
            freed = reg.free(mapped, word)  # fails if the segment changed since inspected
            removed = freed > 0
        if removed:
            report.segments.append(shm)
            report.bytes_freed += freed


def _scan(ctx: Context, skipped: list[str], *, writable: bool = True) -> list[_Candidate]:
    """Every data object of the namespace: (segment id, name, mapping or None, state
    word seen, removable unless referenced); objects that are not regular files of
    this user go to *skipped*."""
    reg = ctx.registry
    candidates: list[_Candidate] = []
    for shm in list_names(f"{SHM_PREFIX}{reg.namespace}-", reg.directory):
        if foreign(shm):  # a link, a directory, another user's file: never ours to touch
            skipped.append(shm)
            continue
        sid = parse_segment_shm_name(reg.namespace, base_name(shm))
        if sid is None:
            continue
        st = object_stat(shm)
        if st is None:
            continue
        if st.st_size < L.SEGMENT_HEADER_BYTES:
            # created but never sized (its writer died between shm_open and fallocate)
            old = time.time() - st.st_mtime > _UNINITIALIZED_GRACE_S
            candidates.append((sid, shm, None, 0, old))
            continue
        try:
            seg = Segment.open(shm, writable=writable)
        except ArrowShmError:
            continue  # gone, or swapped for another user's object meanwhile
        seen = header.facts(seg)
        if seen is None:
            del seg
            # being created (not yet sized/stamped) or foreign: remove only when old
            st = object_stat(shm)
            old = st is not None and time.time() - st.st_mtime > _UNINITIALIZED_GRACE_S
            candidates.append((sid, shm, None, 0, old))
            continue
        if seen.state in (L.SEG_PUBLISHED, L.SEG_RECLAIMING):
            removable = True  # retired (or its reclaimer died before unlinking)
        elif seen.state == L.SEG_POOLED:
            removable = True  # unless the spare table lists it (checked below)
        else:  # WRITING, SEALED: only its creator may still use it
            removable = not seen.creator_alive
        candidates.append((sid, shm, seg, seen.word, removable))
    return candidates

