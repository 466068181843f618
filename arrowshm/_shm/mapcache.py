"""Reader-side mappings kept for reuse, and the housekeeping thread that unmaps off
the hot path and trims the namespaces' spares (:mod:`arrowshm._shm.pool`).

A steady stream of versions of one dataset cycles through a few segments (the
writer recycles them, see :mod:`arrowshm._shm.pool`), so a reader's next ``get``
usually lands in a segment it mapped a moment ago. Mapping it again costs an
``shm_open``, ``fstat``, ``mmap`` and a page fault per touched page (about
10 µs each in this VM), several times the rest of a ``get``. So when the last
table of a segment is dropped, its mapping is not unmapped but kept **idle**:

* keyed by segment name and registry incarnation (its creation time and
  creator): a registry hands out each segment id once, so within one
  incarnation a name never stands for another object, and a get checks the
  header of a reused mapping exactly as of a fresh one (pin, state, version,
  generation). No system call is needed to reuse a mapping;
* bounded (``ARROWSHM_MAP_CACHE``, default 8 mappings; 0 disables the cache);
* expired after ``ARROWSHM_MAP_CACHE_S`` seconds idle (default 2): an idle
  mapping of a segment that was unlinked in the meantime keeps that memory
  allocated, so it must not outlive a short grace. :func:`flush_releases`,
  ``clear_cache()`` and ``gc()`` drop idle mappings at once.

An idle mapping holds no pin, so it never keeps a writer from recycling the
segment. Unmapping (tens of µs for a large mapping) happens on the release
thread, never in the caller's ``get``. Nor does releasing the version a
``get`` supersedes: the cached table of the previous version is dropped at the
next ``get``/``wait`` (``wait`` runs it before blocking, when the reader has
nothing better to do) or by the release thread within 0.1 s, whichever comes
first. Its pin, and so the writer's chance to recycle its segment, outlives
the ``get`` by at most that long.
"""

from __future__ import annotations

import _thread
import collections
import queue
import threading
import time

from .._env import env_number
from .._errors import ArrowShmError
from .._proc import identity
from . import pool
from .context import all_contexts, on_new_context
from .header import Pin
from .segment import Segment

_lock = threading.RLock()  # for scans (re-entrant: a Pin finalizer may run inside one)
Key = tuple[str, int, int]  # (segment name, registry created_ns, registry creator pid)
_idle: dict[Key, tuple[Segment, float]] = {}  # -> (mapping, idle since)

_pending: collections.deque[object] = collections.deque()  # superseded, to drop soon
PERIOD_S = 0.1  # the release thread drops what nobody collected at least this often
_AWAKE_S = 10.0  # ... and keeps its timer running this long after the last activity
_graveyard: queue.SimpleQueue[object] = queue.SimpleQueue()
_undertaker: tuple[int, int] | None = None  # (pid, thread id) of the release thread


# read once, at import (a get must not pay for environment lookups)
MAX_IDLE = int(env_number("ARROWSHM_MAP_CACHE", 8))
IDLE_S = env_number("ARROWSHM_MAP_CACHE_S", 2.0)
_asleep = False  # the release thread waits with no timeout (nothing idle to expire)


class ReaderPin(Pin):
    """A reader's pin whose segment mapping goes to the idle cache when released."""

    __slots__ = ("key",)

    def __init__(self, segment: Segment, slot: int, pid: int, key: Key) -> None:
        self.segment = segment  # (no super() call: this runs in every get)
        self.slot = slot
        self.pid = pid
        self.key = key

    def __del__(self) -> None:
        try:
            self.release()
            keep_idle(self.key, self.segment)
        except Exception:  # interpreter shutdown: modules may be half torn down
            pass


def take_idle(key: Key) -> Segment | None:
    """The idle mapping kept under *key*, if any (the caller checks its header)."""
    entry = _idle.pop(key, None)  # (atomic under the GIL: no lock on the get path)
    return None if entry is None else entry[0]


def keep_idle(key: Key, seg: Segment) -> None:
    """Keep *seg* mapped for a later get (or hand it to the release thread)."""
    if not seg.writable or MAX_IDLE <= 0:
        release_later(seg)  # the unmap happens there, not in the caller
        return
    # single dict operations are atomic under the GIL; a race of two threads keeping
    # the same key at once only drops (unmaps) one of two mappings
    old = _idle.get(key)
    if old is not None and old[0] is not seg:
        release_later(seg)  # a second mapping of the same object: one is enough
    else:
        _idle[key] = (seg, time.monotonic())
        if len(_idle) > MAX_IDLE:
            with _lock:
                while len(_idle) > MAX_IDLE:
                    oldest = min(list(_idle.items()), key=lambda kv: kv[1][1])[0]
                    entry = _idle.pop(oldest, None)
                    if entry is not None:
                        release_later(entry[0])
    if _asleep or _undertaker is None or _undertaker[0] != identity()[0]:
        release_later(None)  # (re)start the release thread's expiry timer


def drop_idle(*, older_than: float = 0.0) -> int:
    """Unmap idle mappings idle for more than *older_than* seconds; returns how many."""
    now = time.monotonic()
    with _lock:
        keys = [k for k, (_, since) in list(_idle.items()) if now - since >= older_than]
        dropped = [e[0] for e in (_idle.pop(k, None) for k in keys) if e is not None]
    for seg in dropped:
        release_later(seg)
    return len(dropped)


def idle_count() -> int:
    """How many idle mappings this process keeps."""
    return len(_idle)


def release_soon(obj: object) -> None:
    """Drop *obj* (a superseded cached table) soon, not now: at the next ``get`` or
    ``wait`` of this process, or on the release thread within ``PERIOD_S``.

    Freeing a table releases its pin and its Arrow objects, 20-30 µs with cold
    caches, which a ``get`` would otherwise spend before returning the new one.
    """
    _pending.append(obj)
    if _asleep or _undertaker is None or _undertaker[0] != identity()[0]:
        release_later(None)  # (re)start the release thread's timer


def collect() -> None:
    """Drop, in the calling thread, what :func:`release_soon` queued."""
    while _pending:
        try:
            obj = _pending.popleft()
        except IndexError:  # another thread took the last one
            return
        del obj


def _ensure_thread() -> None:
    global _undertaker
    if _undertaker is None or _undertaker[0] != identity()[0]:  # (none after a fork)
        # a bare thread (daemon-like: not joined at exit): threading.Thread.start()
        # blocks until the new thread has run, milliseconds on a busy machine, and
        # this runs when a process attaches — inside a fresh worker's first get
        _undertaker = (identity()[0], _thread.start_new_thread(_bury, ()))


# the thread starts when the process first uses a namespace, not inside its first get
on_new_context(lambda ctx: _ensure_thread())

HOUSEKEEPING_S = 2.0  # how often the thread trims the namespaces' spares
_next_housekeeping = 0.0


def _housekeeping() -> None:
    """Spares of every namespace this process uses: recover dead claimers' slots,
    free those idle too long or beyond the bound (:func:`arrowshm._shm.pool.trim`)."""
    global _next_housekeeping
    now = time.monotonic()
    if now < _next_housekeeping:
        return
    _next_housekeeping = now + HOUSEKEEPING_S
    for ctx in all_contexts():
        if ctx.opened_registry is None:  # not attached yet, or dropped meanwhile: trimming
            continue  # would open (or re-create) its registry
        try:
            pool.trim(ctx)
        except ArrowShmError:  # a namespace removed or refused meanwhile: nothing to trim
            continue


def release_later(obj: object) -> None:
    """Drop *obj* (a mapping to unmap) on the release thread, waking it now."""
    _ensure_thread()
    _graveyard.put(obj)


def _bury() -> None:
    global _asleep
    last_busy = time.monotonic()
    while True:
        now = time.monotonic()
        if _idle or _pending:
            last_busy = now
        try:
            if now - last_busy < _AWAKE_S:
                obj: object = _graveyard.get(timeout=min(PERIOD_S, max(IDLE_S / 2, 0.01)))
            else:
                # nothing to release for a while: sleep until woken (a wake costs the
                # waker a futex call, so the timer above keeps running while there is
                # activity), or until the next housekeeping pass
                _asleep = True
                if _idle or _pending:
                    _asleep = False
                    continue
                obj = _graveyard.get(timeout=HOUSEKEEPING_S)
                _asleep = False
        except queue.Empty:
            obj = None
        if isinstance(obj, threading.Event):
            collect()
            drop_idle()  # queues the idle mappings: drop them before telling the waiter
            while True:
                try:
                    more = _graveyard.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, threading.Event):
                    more.set()
                del more
            obj.set()
        del obj
        collect()
        if _idle:
            drop_idle(older_than=IDLE_S)
        _housekeeping()


def flush_releases(timeout: float = 10.0) -> None:
    """Drop superseded tables and idle mappings and wait until every object handed
    to the release thread is dropped (tests and ``gc`` use it to see memory
    actually unmapped)."""
    collect()
    if _undertaker is None or _undertaker[0] != identity()[0]:
        with _lock:
            _idle.clear()  # no thread in this process (a fork child): drop them here
        return
    done = threading.Event()
    _graveyard.put(done)
    done.wait(timeout)
