"""The reaper: runs the data plane's ``gc`` at start and on a schedule.

It reclaims expired TTLs, segments whose owner died and that no entry
references, half-written versions, locks or half-done publishes of dead
writers, and evicts stream readers whose process died so that no crashed
reader stalls a writer (:meth:`arrowshm.Namespace.gc`). Every reclaim is
logged and counted.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import arrowshm

from .logs import get_logger, log_event

_log = get_logger("reaper")


class Reaper:
    """Runs :meth:`arrowshm.Namespace.gc` for one namespace, serialized, in a
    background thread."""

    def __init__(self, ns: arrowshm.Namespace, interval: float) -> None:
        self.ns = ns
        self.namespace = ns.name
        self.interval = interval
        self.runs = 0
        self.failures = 0
        self.reclaimed: Counter[str] = Counter()
        self.bytes_freed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, *, spares: bool = False) -> dict[str, Any]:
        """One collection (with *spares*, freeing every spare too); returns what it
        reclaimed as a JSON-able dict.

        Raises
        ------
        ArrowShmError
            When the registry cannot be read.
        """
        with self._lock:
            report = self.ns.gc(spares=spares)
            readers = report.readers_evicted
            self.runs += 1
            self._account(report, readers)
        return {
            "segments": report.segments,
            "bytes_freed": report.bytes_freed,
            "expired": report.expired,
            "recovered": report.recovered,
            "kept": report.kept,
            "quota_recovered": report.quota_recovered,
            "readers_evicted": readers,
            "pins_released": report.pins_released,
            "spares_freed": report.spares_freed,
            "spares": report.spares,
            "spare_bytes": report.spare_bytes,
        }

    def _account(self, report: arrowshm.GcReport, readers: list[str]) -> None:
        for shm in report.segments:
            log_event(_log, "reaped segment", segment=shm, namespace=self.namespace)
        for name in report.expired:
            log_event(_log, "expired dataset", name=name, namespace=self.namespace)
        for name in report.recovered:
            log_event(_log, "recovered entry", name=name, namespace=self.namespace)
        for r in readers:
            log_event(_log, "evicted dead reader", reader=r, namespace=self.namespace)
        for pin in report.pins_released:
            log_event(_log, "released dead reader's pin", pin=pin, namespace=self.namespace)
        if report.spares_freed:
            log_event(_log, "freed spares", spares=report.spares_freed,
                      namespace=self.namespace)
        if report.quota_recovered:
            log_event(_log, "recovered quota of dead creators", bytes=report.quota_recovered,
                      namespace=self.namespace)
        self.reclaimed["segment"] += len(report.segments)
        self.reclaimed["expired"] += len(report.expired)
        self.reclaimed["recovered"] += len(report.recovered)
        self.reclaimed["reader"] += len(readers)
        self.reclaimed["pin"] += len(report.pins_released)
        self.reclaimed["spare"] += report.spares_freed
        self.bytes_freed += report.bytes_freed

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                self.failures += 1
                log_event(_log, "reaper run failed", logging.ERROR, exc_info=True)

    def start(self) -> None:
        """Run once now, then every *interval* seconds in a daemon thread."""
        try:
            self.run_once()
        except Exception:
            self.failures += 1
            log_event(_log, "reaper run failed", logging.ERROR, exc_info=True)
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="arrowshm-reaper",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
