"""The per-process pool of retired version segments, reused for later puts.

Writing into fresh /dev/shm pages costs a page allocation and fault per 4 KiB
(2-3 µs here), so a put into a new segment runs at a fraction of memcpy
speed. A writer therefore keeps the segments it retires (versions that fell
out of retention), already allocated and mapped, and writes the next version
of a similar size into one of them once no process pins it (see
:mod:`arrowshm._shm.header`).

The pool is bounded (``ARROWSHM_POOL_SEGMENTS``, default 4, and
``ARROWSHM_POOL_BYTES``, default 1 GiB) and segments idle for
``ARROWSHM_POOL_IDLE_S`` (default 30 s) are freed at the next pool operation.
Pooled segments stay counted in the namespace's bytes; they are freed at
interpreter exit, by ``arrowshm.gc()`` in the owning process, and by any
process's gc once the owner is dead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .._env import env_number
from . import header
from . import layout as L
from .registry import Registry
from .segment import Segment

_FIT_SLACK = 1.25  # reuse a segment up to 25% larger than needed


@dataclass
class _Pooled:
    seg: Segment
    segment_id: int
    since: float


class SegmentPool:
    """Retired segments of one namespace that this process may rewrite."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._items: list[_Pooled] = []
        self._lock = threading.Lock()
        self.recycled = 0

    @property
    def max_segments(self) -> int:
        return int(env_number("ARROWSHM_POOL_SEGMENTS", 4))

    @property
    def max_bytes(self) -> int:
        return int(env_number("ARROWSHM_POOL_BYTES", 1 << 30))

    def take(self, nbytes: int) -> tuple[int, Segment] | None:
        """A pooled segment of at least *nbytes*, now in state WRITING, or None."""
        with self._lock:
            self._trim_idle()
            fits = sorted(
                (p for p in self._items if nbytes <= p.seg.size <= nbytes * _FIT_SLACK + L.PAGE),
                key=lambda p: p.seg.size,
            )
            for p in fits:
                word = header.state_word(p.seg)
                if L.state_of(word) != L.SEG_POOLED:  # reclaimed by someone: forget it
                    self._items.remove(p)
                    continue
                if header.take_for_rewrite(p.seg, word):
                    self._items.remove(p)
                    self.recycled += 1
                    return p.segment_id, p.seg
        return None

    def give(self, segment_id: int, seg: Segment) -> bool:
        """Pool a just-retired (PUBLISHED, unreferenced) segment; False if it was
        not pooled (then the caller reclaims it)."""
        if self.max_segments <= 0 or seg.size > self.max_bytes or not seg.writable:
            return False
        with self._lock:
            self._trim_idle()
            while self._items and (
                len(self._items) >= self.max_segments
                or sum(p.seg.size for p in self._items) + seg.size > self.max_bytes
            ):
                self._evict(self._items[0])
            # owner first, then the state: gc judges POOLED segments by this owner
            header.stamp_owner(seg)
            word = header.state_word(seg)
            if L.state_of(word) != L.SEG_PUBLISHED or not header.cas_state(
                seg, word, L.SEG_POOLED
            ):
                return False
            self._items.append(_Pooled(seg, segment_id, time.monotonic()))
        return True

    def _evict(self, p: _Pooled) -> None:
        self._items.remove(p)
        word = header.state_word(p.seg)
        if L.state_of(word) == L.SEG_POOLED:
            self.reg.free(p.seg, word)

    def _trim_idle(self) -> None:
        limit = time.monotonic() - env_number("ARROWSHM_POOL_IDLE_S", 30)
        for p in [p for p in self._items if p.since < limit]:
            self._evict(p)

    def drain(self) -> int:
        """Free every pooled segment; returns how many."""
        with self._lock:
            n = len(self._items)
            for p in list(self._items):
                self._evict(p)
        return n

    def __len__(self) -> int:
        return len(self._items)
