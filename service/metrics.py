"""Prometheus text exposition of the namespace's state (no FastAPI here)."""

from __future__ import annotations

import time

import arrowshm
from arrowshm._shm.registry import Registry

from .events import EventHub
from .reaper import Reaper


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Writer:
    def __init__(self, namespace: str) -> None:
        self.lines: list[str] = []
        self.ns = namespace

    def metric(self, name: str, kind: str, help_: str,
               samples: list[tuple[dict[str, str], float]]) -> None:
        full = f"arrowshm_{name}"
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            all_labels = {"namespace": self.ns, **labels}
            body = ",".join(f'{k}="{_esc(v)}"' for k, v in all_labels.items())
            self.lines.append(f"{full}{{{body}}} {_num(value)}")

    def one(self, name: str, kind: str, help_: str, value: float) -> None:
        self.metric(name, kind, help_, [({}, value)])


def _stream_lag_samples(streams: list[arrowshm.StreamInfo]) -> list[tuple[dict[str, str], float]]:
    return [({"stream": st.name, "reader": str(r.reader_id)}, float(r.lag))
            for st in streams for r in st.readers]


_Samples = list[tuple[dict[str, str], float]]


def _reader_samples(ns: arrowshm.Namespace,
                    infos: list[arrowshm.DatasetInfo]) -> tuple[_Samples, _Samples]:
    """(readers per dataset by state, pinned payload bytes per retained version) of
    the datasets *infos* names, from their pins (:meth:`arrowshm.Namespace.info`)."""
    readers: _Samples = []
    pinned: _Samples = []
    for listed in infos:
        try:
            i = ns.info(listed.name)
        except arrowshm.ArrowShmError:
            continue  # deleted or replaced since it was listed
        held = i.readers or ()
        alive = sum(1 for r in held if r.alive)
        readers.append(({"dataset": i.name, "state": "alive"}, float(alive)))
        readers.append(({"dataset": i.name, "state": "dead"}, float(len(held) - alive)))
        for version in sorted({r.version for r in held}, reverse=True):
            nbytes = i.nbytes
            if version != i.version:
                try:
                    nbytes = ns.info(i.name, version=version).nbytes
                except arrowshm.ArrowShmError:
                    continue  # retired meanwhile
            pinned.append(({"dataset": i.name, "version": str(version)}, float(nbytes)))
    return readers, pinned


def _mirror_samples(namespace: str) -> list[tuple[dict[str, str], int, float]]:
    """(labels, version lag, staleness) of every mirror whose status record is in
    *namespace*."""
    return [({"mirror": s.local_name, "remote": f"{s.remote_name}@{s.remote}",
              "state": s.state}, s.version_lag, round(s.staleness_s, 3))
            for s in arrowshm.mirror_statuses(namespace)]


def render(ns: arrowshm.Namespace, reg: Registry, reaper: Reaper | None,
           hub: EventHub | None) -> str:
    """The Prometheus text of the namespace, its reaper and its event hub."""
    now = time.time_ns()
    datasets = sum(1 for v in reg.entries()
                   if v.kind_name == "dataset" and v.version and not v.expired(now))
    streams = ns.list_streams()
    stats = reg.stats()
    out = _Writer(ns.name)
    out.one("datasets", "gauge", "Live datasets in the namespace.", datasets)
    out.one("streams", "gauge", "Live streams in the namespace.", len(streams))
    out.one("registry_entries", "gauge", "Registry entries in use.", stats.live_entries)
    out.one("registry_capacity", "gauge", "Registry entries available in all.", stats.capacity)
    out.one("bytes_used", "gauge", "Bytes of all live segments of the namespace.",
            stats.bytes_used)
    out.one("quota_bytes", "gauge", "Byte quota of the namespace (0 = none).",
            stats.quota_bytes)
    usage = ns.usage()
    out.one("live_bytes", "gauge",
            "Of bytes_used, the bytes of live datasets and streams (and puts in progress).",
            usage.live_bytes)
    out.one("spare_bytes", "gauge",
            "Of bytes_used, the bytes of spares: retired segments kept warm for new puts, "
            "reclaimable at any time.", usage.spare_bytes)
    out.one("spares", "gauge", "Spare segments of the namespace.", usage.spares)
    out.one("recycled_total", "counter",
            "Puts that reused a spare instead of fresh pages since the registry was created.",
            stats.recycled)
    readers, pinned = _reader_samples(ns, ns.list_datasets())
    out.metric("dataset_readers", "gauge",
               "Processes holding a table of any retained version of a dataset (its pins), "
               "by state (dead: killed with its pin held, until gc releases it).", readers)
    out.metric("version_pinned_bytes", "gauge",
               "Payload bytes of a retained dataset version that some process holds a table "
               "of (only pinned versions are listed).", pinned)
    out.one("puts_total", "counter", "Dataset versions published since the registry was created.",
            stats.puts)
    out.one("deletes_total", "counter", "Names deleted since the registry was created.",
            stats.deletes)
    out.one("reaped_objects_total", "counter",
            "Objects reclaimed by gc or the reaper since the registry was created.",
            stats.reaped)
    out.one("events_seq", "counter", "Registry event count (publishes and deletes).",
            stats.events)
    if reaper is not None:
        out.one("reaper_runs_total", "counter", "Reaper runs by this service.", reaper.runs)
        out.one("reaper_failures_total", "counter", "Reaper runs that failed.", reaper.failures)
        out.metric("reaper_reclaimed_total", "counter",
                   "Objects this service's reaper reclaimed, by reason.",
                   [({"reason": r}, float(reaper.reclaimed[r]))
                    for r in ("segment", "expired", "recovered", "reader", "pin", "spare")])
        out.one("reaper_bytes_freed_total", "counter", "Bytes this service's reaper freed.",
                reaper.bytes_freed)
    if hub is not None:
        out.metric("events_total", "counter", "Events this service observed, by kind.",
                   [({"kind": "publish"}, float(hub.published)),
                    ({"kind": "delete"}, float(hub.deleted))])
        out.one("event_subscribers", "gauge", "Open /v1/events connections.", hub.subscribers)
    mirrors = _mirror_samples(ns.name)
    out.metric("mirror_version_lag", "gauge",
               "Remote versions a mirror into this namespace has not published yet.",
               [(labels, float(lag_)) for labels, lag_, _ in mirrors])
    out.metric("mirror_staleness_seconds", "gauge",
               "Seconds since a mirror into this namespace was last in sync (0: in sync).",
               [(labels, stale) for labels, _, stale in mirrors])
    out.metric("stream_reader_lag", "gauge", "Batches a stream reader is behind the writer.",
               _stream_lag_samples(streams))
    return "\n".join(out.lines) + "\n"
