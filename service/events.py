"""Publish and delete events, learned from the registry rather than from writers.

A watcher thread sleeps on the registry's event count (``Registry.wait_event``,
a futex every publish and delete wakes) and, each time it moves, diffs a
snapshot of (generation, version) per name against the previous one. Several
puts between two wake-ups coalesce into one event carrying the latest version.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from arrowshm._shm.registry import Registry

from .logs import get_logger, log_event

_log = get_logger("events")
_QUEUE_SIZE = 1024


@dataclass(frozen=True)
class Event:
    name: str
    version: int
    kind: str  # "publish" | "delete"
    entry_kind: str  # "dataset" | "stream"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind,
                "entry_kind": self.entry_kind}


def _state(reg: Registry) -> dict[str, tuple[int, int, str]]:
    return {v.name: (v.generation, v.version, v.kind_name) for v in reg.entries()}


def diff(old: dict[str, tuple[int, int, str]], new: dict[str, tuple[int, int, str]]) -> list[Event]:
    """Events that turn snapshot *old* into *new*."""
    out: list[Event] = []
    for name, (gen, version, kind) in old.items():
        cur = new.get(name)
        if cur is None or cur[0] != gen:
            out.append(Event(name, version, "delete", kind))
    for name, (gen, version, kind) in new.items():
        prev = old.get(name)
        if version and (prev is None or prev[0] != gen or prev[1] != version):
            out.append(Event(name, version, "publish", kind))
    return out


class EventHub:
    """Watches the registry in a thread and fans events out to asyncio subscribers."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.published = 0
        self.deleted = 0
        self.dropped = 0
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()
        self._subs_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        with self._subs_lock:
            self._subs.add((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        with self._subs_lock:
            self._subs = {s for s in self._subs if s[1] is not q}

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _offer(self, q: asyncio.Queue[Event], event: Event) -> None:
        try:
            q.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def _dispatch(self, events: list[Event]) -> None:
        with self._subs_lock:
            subs = list(self._subs)
        for event in events:
            if event.kind == "publish":
                self.published += 1
            else:
                self.deleted += 1
            log_event(_log, "event", level=logging.DEBUG, **event.as_dict())
            for loop, q in subs:
                try:
                    loop.call_soon_threadsafe(self._offer, q, event)
                except RuntimeError:  # that loop is closed
                    self.unsubscribe(q)

    def _loop(self) -> None:
        seq = self.reg.event_seq()
        state = _state(self.reg)
        while not self._stop.is_set():
            self.reg.wait_event(seq, 0.25)
            now = self.reg.event_seq()
            if now == seq:
                continue
            seq = now
            new = _state(self.reg)
            events = diff(state, new)
            state = new
            if events:
                self._dispatch(events)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arrowshm-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
