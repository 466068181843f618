"""Spares and the warm reserve: every put lands in memory whose pages are faulted in.

Writing into fresh /dev/shm pages costs an allocation, a zeroing and a fault per
4 KiB page (in this VM even more: a page the guest never touched), so a put
into a new segment runs at a fraction of memcpy speed. Instead:

* **Spares.** A dataset segment nobody references any more — a version that
  fell out of retention, a deleted or expired dataset — becomes a *spare* of
  the namespace, listed in the registry's spare table
  (:mod:`arrowshm._shm.spares`). Any process of the user may claim a spare for
  a put of any name (:func:`take`): best fit (at most twice the bytes needed,
  plus 1 MiB), state POOLED → WRITING by a compare-and-swap, and only then the
  pin table is checked: a reader still holding a table of it keeps it out of
  reach (it goes back to the table) until the reader lets go. The process that
  retired a segment still has it mapped with its page tables populated;
  another process maps it with ``MAP_POPULATE``.
* **Bounds.** Spares count against the namespace's quota. Their bytes are
  bounded by ``ARROWSHM_SPARE_BYTES`` (default: an eighth of the filesystem
  holding /dev/shm, at most 1 GiB: spares are memory held for speed, so they
  may take a fixed small share of the space live data needs, and are given back
  first when a put needs room), and a spare idle for ``ARROWSHM_SPARE_IDLE_S``
  (default 30 s) is freed by the next housekeeping pass of any process
  (:func:`trim`, run on a timer by :mod:`arrowshm._shm.mapcache`'s thread).
  A put that would fail with ``ShmFullError`` or ``QuotaExceededError`` frees
  spares first and tries again.
* **Reserve.** :func:`set_reserve` keeps a ladder of pre-faulted spares ready
  (sizes halving from half the reserve down to 1 MiB), refilled by a thread of
  its own, off every put's path, so even the first put of a new name by a new
  process lands in warm memory.

Only dataset segments become spares: a stream reader holds batches through its
ring slot, not the segment's pin table, so a stream segment is always freed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._env import env_number
from .._errors import ArrowShmError, ConflictError, QuotaExceededError, ShmFullError
from .._proc import identity
from . import header
from . import layout as L
from .context import Context
from .segment import SHM_DIR, Segment, shm_dir_bytes
from .spares import ReserveTable, SpareSlot, SpareTable

__all__ = [
    "SpareUsage",
    "free",
    "give",
    "create",
    "nudge_reserve",
    "limit_bytes",
    "listed",
    "recover",
    "reserve_target",
    "retire",
    "set_reserve",
    "take",
    "trim",
    "usage",
]

_MIB = 1 << 20
_DEFAULT_CAP = 1 << 30


def limit_bytes(directory: str = SHM_DIR) -> int:
    """Most bytes spares may hold (``ARROWSHM_SPARE_BYTES``; 0 turns spares off); by
    default an eighth of the filesystem of the namespace's *directory*, at most 1 GiB."""
    default = min(_DEFAULT_CAP, _dir_bytes(directory) // 8)
    legacy = os.environ.get("ARROWSHM_POOL_BYTES", "").strip()  # the old name
    if legacy and not os.environ.get("ARROWSHM_SPARE_BYTES", "").strip():
        return int(env_number("ARROWSHM_POOL_BYTES", default))
    if env_number("ARROWSHM_POOL_SEGMENTS", 1) == 0:  # the old switch: no reuse at all
        return 0
    return int(env_number("ARROWSHM_SPARE_BYTES", default))


_dir_sizes: dict[str, tuple[float, int]] = {}
_DIR_SIZE_TTL_S = 1.0


def _dir_bytes(directory: str) -> int:
    """:func:`shm_dir_bytes`, looked up at most once a second per directory (a put
    asks for the bound; a statvfs per put cost 15 µs)."""
    now = time.monotonic()
    hit = _dir_sizes.get(directory)
    if hit is not None and now - hit[0] < _DIR_SIZE_TTL_S:
        return hit[1]
    size = shm_dir_bytes(directory)
    _dir_sizes[directory] = (now, size)
    return size


_bounds: dict[str, tuple[float, int]] = {}
_RESERVE_TTL_S = 0.5


def _bound(ctx: Context) -> int:
    """The bound on the namespace's spares: max(:func:`limit_bytes`, the live
    reserves' bytes). The reserves are read from the registry at most every half
    second (reading the table checks each reserving pid in /proc); this process's
    own :func:`set_reserve` refreshes them at once."""
    now = time.monotonic()
    hit = _bounds.get(ctx.namespace)
    if hit is None or now - hit[0] >= _RESERVE_TTL_S:
        hit = (now, reserve_target(ctx))
        _bounds[ctx.namespace] = hit
    return max(limit_bytes(ctx.directory), hit[1])


def idle_seconds() -> float:
    """How long an unused spare is kept (``ARROWSHM_SPARE_IDLE_S``, default 30 s)."""
    if os.environ.get("ARROWSHM_POOL_IDLE_S", "").strip() and not os.environ.get(
        "ARROWSHM_SPARE_IDLE_S", ""
    ).strip():
        return env_number("ARROWSHM_POOL_IDLE_S", 30.0)
    return env_number("ARROWSHM_SPARE_IDLE_S", 30.0)


def _table(ctx: Context) -> SpareTable:
    return SpareTable(ctx.registry.words)


@dataclass(frozen=True)
class SpareUsage:
    """The spares of a namespace."""

    segments: int
    nbytes: int


def listed(ctx: Context) -> set[int]:
    """Segment ids the spare table lists (gc keeps them)."""
    return _table(ctx).listed()


def usage(ctx: Context) -> SpareUsage:
    """How many spares the namespace holds, and their bytes."""
    slots = _table(ctx).slots()
    return SpareUsage(len(slots), sum(s.nbytes for s in slots))


# -- listing ----------------------------------------------------------------------------


def give(ctx: Context, segment_id: int, seg: Segment) -> bool:
    """Make the unreferenced dataset segment *seg* (PUBLISHED, or WRITING by this
    process) a spare; False when it is not kept (then the caller frees it):
    spares are off, it is larger than the bound, it is not a dataset segment, or
    another process changed it meanwhile."""
    limit = _bound(ctx)
    seen = header.facts(seg)
    if (limit <= 0 or seg.size > limit or not seg.writable or seen is None
            or seen.kind != L.KIND_DATASET
            or not (seen.state == L.SEG_PUBLISHED  # retired: nobody references it
                    # or being written by this very process (a reserve spare)
                    or (seen.state == L.SEG_WRITING and seen.creator_pid == identity()[0]))):
        return False
    table = _table(ctx)
    _make_room(ctx, table, limit - seg.size)
    index = table.begin_insert(segment_id, seg.size)
    if index is None:  # a full table: the oldest spare goes
        _free_slots(ctx, table, sorted(table.ready(), key=lambda s: s.since_ns)[:1])
        index = table.begin_insert(segment_id, seg.size)
        if index is None:
            return False
    header.stamp_owner(seg)
    if not header.cas_state(seg, seen.word, L.SEG_POOLED):  # reclaimed or rewritten meanwhile
        table.clear(index)
        return False
    table.end_insert(index)
    ctx.remember_own(segment_id, seg)  # its page tables: a later claim here costs no fault
    return True


def retire(ctx: Context, segment_id: int) -> int:
    """A dataset segment no entry references any more: a spare, or freed. Returns the
    bytes freed (0 when it became a spare, or was gone or not ours)."""
    seg = ctx.take_own(segment_id)
    if seg is None:
        try:
            seg = Segment.open(ctx.registry.segment_name(segment_id), writable=True)
        except ArrowShmError:
            return 0  # already gone, or not ours to touch
    if give(ctx, segment_id, seg):
        return 0
    return ctx.registry.free(seg)


def _make_room(ctx: Context, table: SpareTable, room: int) -> None:
    """Free the oldest spares until they hold at most *room* bytes."""
    ready = sorted(table.ready(), key=lambda s: s.since_ns)
    held = sum(s.nbytes for s in table.slots())
    victims = []
    for s in ready:
        if held <= room:
            break
        victims.append(s)
        held -= s.nbytes
    _free_slots(ctx, table, victims)


# -- claiming ---------------------------------------------------------------------------


def _fits(slot: SpareSlot, need: int) -> bool:
    return need <= slot.nbytes <= 2 * need + _MIB


def take(ctx: Context, need: int) -> tuple[int, Segment] | None:
    """Claim a spare of at least *need* bytes (the best fit) for a put: returned in
    state WRITING, owned by this process; None when no spare fits or every fit is
    pinned by a reader."""
    table = _table(ctx)
    for slot in sorted((s for s in table.ready() if _fits(s, need)), key=lambda s: s.nbytes):
        if not table.claim(slot):
            continue
        seg = _map(ctx, slot.segment_id)
        seen = header.facts(seg) if seg is not None else None
        if seg is None or seen is None or seen.state != L.SEG_POOLED:
            table.clear(slot.index)  # gone or changed: the listing was stale
            continue
        if seg.size < need:  # (the table's bytes word is a hint: the file's size decides)
            table.put_back(slot.index)
            ctx.remember_own(slot.segment_id, seg)
            continue
        # (the owner stamp while POOLED is harmless: listed spares are kept by gc
        # whoever pooled them; after the CAS a killed claimer is a dead creator)
        header.stamp_owner(seg)
        if header.take_for_rewrite(seg, seen.word):
            table.clear(slot.index)
            ctx.registry.count_recycled()
            return slot.segment_id, seg
        table.put_back(slot.index)  # a reader still holds a table of it
        ctx.remember_own(slot.segment_id, seg)  # keep the mapping for the next try
    return None


def _map(ctx: Context, segment_id: int) -> Segment | None:
    """This process's populated mapping of a spare, or a new one (``MAP_POPULATE``:
    the pages exist, only the page tables are filled)."""
    seg = ctx.take_own(segment_id)
    if seg is not None:
        return seg
    try:
        return Segment.open(ctx.registry.segment_name(segment_id), writable=True,
                            populate=True)
    except ArrowShmError:
        return None


# -- freeing ---------------------------------------------------------------------------


def _free_slots(ctx: Context, table: SpareTable, slots: list[SpareSlot]) -> tuple[int, int]:
    """Free the spares of these READY slots; returns (count, bytes)."""
    count = freed = 0
    reg = ctx.registry
    for slot in slots:
        if not table.claim(slot):
            continue
        got = _free_claimed(ctx, table, slot)
        if got:
            count += 1
            freed += got
    if count:
        reg.count_reaped(count)
    return count, freed


def _free_claimed(ctx: Context, table: SpareTable, slot: SpareSlot) -> int:
    """Free the spare of a slot this process holds BUSY, then empty the slot."""
    seg = ctx.take_own(slot.segment_id)
    try:
        if seg is None:
            seg = Segment.open(ctx.registry.segment_name(slot.segment_id), writable=True)
    except ArrowShmError:
        seg = None
    freed = 0
    if seg is not None:
        seen = header.facts(seg)
        if seen is not None and seen.state == L.SEG_POOLED:
            freed = ctx.registry.free(seg, seen.word)
    table.clear(slot.index)
    return freed


def free(ctx: Context, *, everything: bool = False, older_than: float | None = None,
         need: int = 0) -> tuple[int, int]:
    """Free spares: all of them, those idle longer than *older_than* seconds, or the
    largest until *need* bytes are freed. Returns (count, bytes)."""
    table = _table(ctx)
    ready = table.ready()
    if everything:
        victims = ready
    elif older_than is not None:
        limit = time.time_ns() - int(older_than * 1e9)
        keep = _reserved(ctx, ready)
        victims = [s for s in ready if s.since_ns < limit and s.index not in keep]
    else:
        victims, got = [], 0
        for s in sorted(ready, key=lambda s: -s.nbytes):
            if got >= need:
                break
            victims.append(s)
            got += s.nbytes
    return _free_slots(ctx, table, victims)


def recover(ctx: Context) -> int:
    """Finish what processes killed while listing or claiming a spare left: a slot
    BUSY by a dead process lists its segment again if it is still POOLED, else it
    is emptied (a segment a dead claimer made WRITING is a dead creator's: gc
    reclaims it). Returns the slots recovered."""
    table = _table(ctx)
    done = 0
    for slot in table.slots():
        if not slot.busy_pid or not table.take_over(slot):
            continue
        seg = _map(ctx, slot.segment_id)
        seen = header.facts(seg) if seg is not None else None
        if seg is not None and seen is not None and seen.state == L.SEG_POOLED:
            table.put_back(slot.index)
        else:
            table.clear(slot.index)
        done += 1
    return done


def trim(ctx: Context) -> tuple[int, int]:
    """Housekeeping: recover dead owners' slots, free spares idle too long and keep
    the total within the bound. Returns (count, bytes) freed."""
    recover(ctx)
    count, freed = free(ctx, older_than=idle_seconds())
    table = _table(ctx)
    limit = _bound(ctx)
    held = sum(s.nbytes for s in table.slots())
    if held > limit:
        c, b = free(ctx, need=held - limit)
        count, freed = count + c, freed + b
    return count, freed


def create(ctx: Context, nbytes: int, init: Callable[[Segment], None], *,
           populate: bool = False) -> tuple[int, Segment]:
    """A new segment (see :meth:`Registry.create_segment`); when the namespace's
    quota or /dev/shm has no room, spares are freed first (the largest, until the
    bytes are free) and the creation is tried once more.

    Raises
    ------
    QuotaExceededError, ShmFullError
        When it does not fit even without spares (nothing is created).
    AccessDeniedError
        When other users' files squat the names tried.
    """
    reg = ctx.registry
    try:
        return reg.create_segment(nbytes, init, populate=populate)
    except (QuotaExceededError, ShmFullError):
        if free(ctx, need=nbytes)[0] == 0:
            raise
    return reg.create_segment(nbytes, init, populate=populate)


# -- the reserve ---------------------------------------------------------------------


def ladder(nbytes: int) -> list[int]:
    """The spare sizes a reserve of *nbytes* keeps: halving from *nbytes* / 2 down to
    1 MiB (page-rounded), so any put up to half the reserve finds a spare at most
    twice its size."""
    sizes = []
    size = max(_MIB, (nbytes // 2) & ~(L.PAGE - 1))
    total = 0
    while total + size <= nbytes and size >= _MIB:
        sizes.append(size)
        total += size
        size //= 2
    return sizes


_reserves: dict[str, _Reserve] = {}
_reserves_lock = threading.Lock()


def reserve_target(ctx: Context) -> int:
    """Bytes the namespace keeps in reserve: the sum of every live reserving
    process's reserve, as the registry's reserve table records them (0: none)."""
    return sum(nbytes for _, nbytes in ReserveTable(ctx.registry.words).live())


def _rungs(ctx: Context) -> list[int]:
    """The spare sizes every live reserve of the namespace counts on."""
    return sorted(size for _, target in ReserveTable(ctx.registry.words).live()
                  for size in ladder(target))


def _match(rungs: list[int], ready: list[SpareSlot]) -> tuple[list[SpareSlot], list[int]]:
    """The spares that stand for *rungs* (each rung its own spare, of at most 1.5
    times its size plus a page), and the rungs none stands for."""
    free = sorted(ready, key=lambda s: s.nbytes)
    used: list[SpareSlot] = []
    missing: list[int] = []
    for size in rungs:
        hit = next((s for s in free if size <= s.nbytes <= size + size // 2 + L.PAGE), None)
        if hit is None:
            missing.append(size)
        else:
            free.remove(hit)
            used.append(hit)
    return used, missing


def _reserved(ctx: Context, ready: list[SpareSlot]) -> set[int]:
    """Slots the namespace's reserves count on (exempt from idle trimming, in every
    process: the reserve table is in the registry)."""
    return {s.index for s in _match(_rungs(ctx), ready)[0]}


class _Reserve:
    """Keeps a namespace's ladder of spares filled, in a thread of its own."""

    def __init__(self, ctx: Context, target: int) -> None:
        self.ctx = ctx
        self.target = target
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.filled = threading.Event()
        self.error: str = ""
        self.thread = threading.Thread(target=self._run, name="arrowshm-reserve",
                                       daemon=True)
        self.thread.start()

    def missing(self) -> list[int]:
        """The rungs of this reserve's ladder that no spare stands for, matching the
        spares against every live reserve of the namespace (two reserving processes
        each keep their own ladder)."""
        unmatched = _match(_rungs(self.ctx), _table(self.ctx).ready())[1]
        out = []
        for size in ladder(self.target):  # ours among the unmatched
            if size in unmatched:
                unmatched.remove(size)
                out.append(size)
        return out

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                todo = self.missing()
                for size in todo:
                    if self.stop.is_set():
                        return
                    self._add(size)
                if not todo:
                    self.filled.set()
                self.error = ""
            except ArrowShmError as exc:  # no room now: try again later
                self.error = str(exc)
                self.filled.set()  # (nothing to wait for)
            self.wake.wait(1.0)
            self.wake.clear()

    def _add(self, size: int) -> None:
        reg = self.ctx.registry
        sid, seg = reg.create_segment(size, header.init_fresh, populate=True)  # (no pressure
        # relief: a reserve never frees other spares to make room for itself)
        header.begin_version(seg, 0, fresh=True)  # a dataset segment, holding nothing yet
        if not give(self.ctx, sid, seg):
            reg.free(seg)


def set_reserve(ctx: Context, nbytes: int, *, wait: float | None = None) -> None:
    """Keep *nbytes* of pre-faulted spares ready for *ctx*'s namespace (0 stops).

    With *wait*, block up to that many seconds until the reserve is filled."""
    with _reserves_lock:
        table = ReserveTable(ctx.registry.words)
        if not table.set(max(nbytes, 0)):
            holders = [pid for pid, _ in table.live()]
            raise ConflictError(
                f"namespace {ctx.namespace!r} already has {L.RESERVE_SLOTS} processes keeping "
                f"a reserve (pids {', '.join(map(str, holders))}): a reserve serves "
                "every process of the namespace, so use theirs, or stop one of them "
                "(reserve(0) there) and try again",
                namespace=ctx.namespace, holders=holders)
        _bounds.pop(ctx.namespace, None)
        old = _reserves.pop(ctx.namespace, None)
        if old is not None:
            old.stop.set()
            old.wake.set()
        if nbytes <= 0:
            return
        r = _Reserve(ctx, nbytes)
        _reserves[ctx.namespace] = r
    if wait is not None:
        r.filled.wait(wait)


def nudge_reserve(ctx: Context) -> None:
    """A spare was claimed: refill soon."""
    r = _reserves.get(ctx.namespace)
    if r is not None:
        r.filled.clear()
        r.wake.set()
