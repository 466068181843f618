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

import numpy as np

from . import _layout as L
from ._errors import ArrowShmError
from ._names import SHM_PREFIX, current_namespace, parse_segment_shm_name
from ._pin import reclaim, state_word
from ._proc import is_alive
from ._registry import EntryView, Registry, get_registry
from ._segment import Segment, list_names, object_stat, unlink
from .kernels.atomics import atomic_load

_U64 = np.uint64
_UNINITIALIZED_GRACE_S = 60.0


@dataclass
class GcReport:
    """What a garbage collection reclaimed.

    Attributes
    ----------
    segments : list of str
        Shared-memory objects removed.
    bytes_freed : int
    expired : list of str
        Datasets deleted because their TTL passed.
    recovered : list of str
        Entries whose dead writer left a lock or a half-done publish behind.
    kept : int
        Unreferenced segments kept because a live process is still writing them
        (or keeps them in its pool for reuse).
    pooled : int
        Segments of this process's reuse pool that were freed.
    quota_recovered : int
        Quota bytes given back that killed creators had reserved for segments
        they never named.
    """

    segments: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    expired: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    kept: int = 0
    pooled: int = 0
    quota_recovered: int = 0

    @property
    def count(self) -> int:
        return len(self.segments) + len(self.expired) + len(self.recovered) + self.pooled


def gc(namespace: str | None = None) -> GcReport:
    """Reclaim every object of the namespace that nothing live needs.

    Removes data segments that no LIVE entry references and no live process is
    writing, deletes datasets whose TTL passed, and completes publishes or
    releases locks that killed writers left behind.

    Parameters
    ----------
    namespace : str, optional
        Defaults to ``ARROWSHM_NAMESPACE``.

    Returns
    -------
    GcReport

    Raises
    ------
    InvalidNameError
        When the namespace is invalid.
    """
    from ._names import validate_namespace

    ns = validate_namespace(namespace) if namespace is not None else current_namespace()
    reg = get_registry(ns)
    report = GcReport()
    _recover_entries(reg, report)
    report.quota_recovered = reg.recover_reservations()
    _sweep_entries(reg, report)
    _reclaim_segments(reg, report)
    if report.segments or report.expired:
        reg.count(L.H_STAT_REAPED, len(report.segments) + len(report.expired))
    return report


def _recover_entries(reg: Registry, report: GcReport) -> None:
    w = reg.words
    for slot in range(reg.capacity):
        state = int(w[reg.ew(slot, L.E_STATE)])
        if state == L.STATE_EMPTY:
            continue
        owner = int(atomic_load(w, reg.ew(slot, L.E_LOCK)))
        start = int(atomic_load(w, reg.ew(slot, L.E_LOCK_START)))
        if owner and not is_alive(owner, start):
            with reg.entry_lock(slot):  # taking it over completes the dead writer's publish
                pass
            report.recovered.append(reg.read_name(slot))
        if state == L.STATE_CLAIMED:
            # a claimer died inside the structure lock: the slot is free again
            with reg.struct_lock():
                if int(w[reg.ew(slot, L.E_STATE)]) == L.STATE_CLAIMED:
                    w[reg.ew(slot, L.E_STATE)] = L.STATE_DELETED
                    report.recovered.append(reg.read_name(slot))


def _abandoned(view: EntryView) -> bool:
    """A dataset name claimed by a writer that died before publishing a version."""
    owner = view.field(L.R_OWNER_PID)
    return (view.kind == L.KIND_DATASET and view.version == 0 and owner != 0
            and not is_alive(owner, view.field(L.R_OWNER_START)))


def _sweep_entries(reg: Registry, report: GcReport) -> None:
    """One pass over the live entries: delete those whose TTL passed and names whose
    claimer died before publishing a first version."""
    now = time.time_ns()
    for view in list(reg.entries()):
        if _abandoned(view):
            if reg.remove(view.slot, view.generation, _abandoned):
                report.recovered.append(view.name)
            continue
        ttl = view.field(L.R_TTL_NS)
        if ttl and now > view.field(L.R_UPDATED_NS) + ttl:
            removed = reg.remove(view.slot, view.generation)
            if removed is None:
                continue
            for sid in set(removed.history()) | {removed.field(L.R_SEGMENT_ID)}:
                if sid:
                    report.bytes_freed += reg.unlink_segment(sid)
            report.expired.append(view.name)


def _reclaim_segments(reg: Registry, report: GcReport) -> None:
    report.pooled = _drain_own_pool(reg)  # an explicit gc frees this process's pool too
    from ._dataset import prune_own
    from ._mapcache import collect, drop_idle

    prune_own()
    collect()
    drop_idle()  # idle reader mappings would keep the memory of what gc unlinks
    # (segment id, mapping or None, state word seen, removable unless referenced)
    candidates: list[tuple[int, str, Segment | None, int, bool]] = []
    for shm in list_names(f"{SHM_PREFIX}{reg.namespace}-"):
        sid = parse_segment_shm_name(reg.namespace, shm)
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
            seg = Segment.open(shm, writable=True)
        except ArrowShmError:
            continue  # gone, or another user's
        w = seg.words
        if seg.size < L.SEGMENT_HEADER_BYTES or int(w[L.S_MAGIC]) != L.SEGMENT_MAGIC:
            del seg
            # being created (not yet sized/stamped) or foreign: remove only when old
            st = object_stat(shm)
            old = st is not None and time.time() - st.st_mtime > _UNINITIALIZED_GRACE_S
            candidates.append((sid, shm, None, 0, old))
            continue
        word = state_word(seg)
        state = L.state_of(word)
        creator = int(w[L.S_CREATOR_PID])
        start = int(w[L.S_CREATOR_START])
        if state in (L.SEG_PUBLISHED, L.SEG_RECLAIMING):
            removable = True  # retired (or its reclaimer died before unlinking)
        else:  # WRITING, SEALED, POOLED: only its owner may still use it
            removable = not is_alive(creator, start)
        candidates.append((sid, shm, seg, word, removable))
    referenced = reg.referenced_segments()  # read last: see the module docstring
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
            freed = reclaim(reg, mapped, word)  # fails if the segment changed since inspected
            removed = freed > 0
        if removed:
            report.segments.append(shm)
            report.bytes_freed += freed


def _drain_own_pool(reg: Registry) -> int:
    from ._pool import drain_pool

    return drain_pool(reg.namespace)
