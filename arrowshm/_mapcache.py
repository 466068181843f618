"""Reader-side mappings kept for reuse, and the thread that unmaps off the hot path.

A steady stream of versions of one dataset cycles through a few segments (the
writer recycles them, see :mod:`arrowshm._pool`), so a reader's next ``get``
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
thread, never in the caller's ``get``.
"""

from __future__ import annotations

import os
import queue
import threading
import time

from ._errors import InvalidArgumentError
from ._pin import Pin
from ._proc import identity
from ._segment import Segment

_lock = threading.RLock()  # for scans (re-entrant: a Pin finalizer may run inside one)
Key = tuple[str, int, int]  # (segment name, registry created_ns, registry creator pid)
_idle: dict[Key, tuple[Segment, float]] = {}  # -> (mapping, idle since)

_graveyard: queue.SimpleQueue[object] = queue.SimpleQueue()
_undertaker: tuple[int, threading.Thread] | None = None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # (also NaN)
        raise InvalidArgumentError(
            f"{name}={raw!r} is not a non-negative number; unset it for the default "
            f"({default:g})",
            variable=name,
            value=raw,
        )
    return value


# read once, at import (a get must not pay for environment lookups)
MAX_IDLE = int(_env_float("ARROWSHM_MAP_CACHE", 8))
IDLE_S = _env_float("ARROWSHM_MAP_CACHE_S", 2.0)
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


def _ensure_thread() -> None:
    global _undertaker
    if _undertaker is None or _undertaker[0] != os.getpid():  # (none after a fork)
        thread = threading.Thread(target=_bury, name="arrowshm-release", daemon=True)
        thread.start()
        _undertaker = (os.getpid(), thread)


def release_later(obj: object) -> None:
    """Drop *obj* (a superseded table, a mapping) on the release thread."""
    _ensure_thread()
    _graveyard.put(obj)


def _bury() -> None:
    global _asleep
    while True:
        try:
            if _idle:
                obj: object = _graveyard.get(timeout=max(IDLE_S / 2, 0.01))
            else:
                _asleep = True  # keep_idle wakes it (a nudge costs a futex wake: only then)
                if _idle:
                    _asleep = False
                    continue
                obj = _graveyard.get()
                _asleep = False
        except queue.Empty:
            obj = None
        if isinstance(obj, threading.Event):
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
        if _idle:
            drop_idle(older_than=IDLE_S)


def flush_releases(timeout: float = 10.0) -> None:
    """Drop idle mappings and wait until every object handed to the release thread
    is dropped (tests and ``gc`` use it to see memory actually unmapped)."""
    if _undertaker is None or _undertaker[0] != os.getpid():
        with _lock:
            _idle.clear()  # no thread in this process (a fork child): drop them here
        return
    done = threading.Event()
    _graveyard.put(done)
    done.wait(timeout)
