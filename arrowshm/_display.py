"""Human-readable renderings (terminal tables and notebook HTML).

Every ``repr`` and ``_repr_html_`` of the public info classes is built here
and installed on them when this module is imported (:func:`_install`; arrowshm
always imports it), so notebooks, the CLI and reprs agree on units
(``human_bytes``) and ages (``human_age``). The info classes know nothing of
this module. All user-controlled text (dataset names, column names, types) is
escaped.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TextIO

import pyarrow as pa

from ._info import DatasetInfo, ReaderInfo, StreamInfo, Usage, VersionReader
from ._units import human_age, human_bytes, schema_short


def table(headers: Sequence[str], rows: Sequence[Sequence[object]],
          right: Sequence[int] = ()) -> str:
    """An aligned plain-text table; columns whose index is in *right* are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value))


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[object]],
                right: Sequence[int] = ()) -> str:
    """An HTML table; every cell is escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td style="text-align:right">{_e(c)}</td>' if i in right else f"<td>{_e(c)}</td>"
            for i, c in enumerate(r)
        ) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _schema_html(schema: pa.Schema) -> str:
    return _html_table(["column", "type"], ([f.name, f.type] for f in schema))


# -- datasets --------------------------------------------------------------------------------


def dataset_info_repr(info: DatasetInfo) -> str:
    """One line: ``<arrowshm.DatasetInfo 'prices' v3: 2 rows, 1.2 KiB, updated 5s ago, …>``."""
    ttl = "" if info.ttl is None else f", ttl {info.ttl:g} s"
    readers = "" if info.readers is None else f", readers {readers_summary(info.readers)}"
    return (
        f"<arrowshm.DatasetInfo {info.name!r} v{info.version}: {info.num_rows:,} rows, "
        f"{human_bytes(info.nbytes)}, updated {human_age(info.updated_at)} ago{ttl}"
        f"{readers}; {schema_short(info.schema)}>"
    )


def readers_summary(readers: Sequence[VersionReader] | None) -> str:
    """``'3'``, ``'3 (1 dead)'``, ``'0'``; ``''`` when not looked up (None)."""
    if readers is None:
        return ""
    dead = sum(1 for r in readers if not r.alive)
    return f"{len(readers)}" + (f" ({dead} dead)" if dead else "")


VERSION_READER_HEADERS = ["version", "pid", "command", "since", "alive"]


def version_reader_rows(readers: Sequence[VersionReader]) -> list[list[object]]:
    """One row per reader: version, pid, command (``?`` unknown), age of the pin,
    ``yes``/``DEAD``."""
    return [[r.version, r.pid, r.command or "?",
             "?" if r.since is None else f"{human_age(r.since)} ago",
             "yes" if r.alive else "DEAD"] for r in readers]


def readers_lines(info: DatasetInfo) -> list[str]:
    """The ``readers:`` section of ``arrowshm info``: who holds which version."""
    if not info.readers:
        return ["readers:   none" if info.readers is not None else "readers:   not looked up"]
    lines = [f"readers:   {readers_summary(info.readers)} (processes holding a table of a "
             "retained version; `arrowshm gc` releases dead ones' pins)"]
    body = table([h.upper() for h in VERSION_READER_HEADERS], version_reader_rows(info.readers),
                 right=[0, 1])
    lines += ["  " + line for line in body.splitlines()]
    lines += [f"  version {v}: more readers than its 64 pin slots can list"
              for v in info.readers_overflow]
    return lines


def dataset_info_html(info: DatasetInfo) -> str:
    """An HTML summary of a dataset version for notebooks: name, version, rows,
    size, age, TTL, the schema and, when looked up, the processes reading each
    retained version."""
    ttl = "" if info.ttl is None else f" &middot; ttl {info.ttl:g} s"
    retained = ""
    if len(info.versions) > 1:
        retained = f" (retained: {_e(', '.join(map(str, info.versions)))})"
    readers = ""
    if info.readers is not None:
        readers = (
            f"<div>readers: {_e(readers_summary(info.readers))}</div>"
            + _html_table(VERSION_READER_HEADERS, version_reader_rows(info.readers),
                          right=[0, 1])
            if info.readers else "<div>readers: none</div>"
        )
    return (
        f"<div><b>arrowshm dataset</b> <code>{_e(info.name)}</code> "
        f"v{info.version}{retained} &middot; {info.num_rows:,} rows &middot; "
        f"{_e(human_bytes(info.nbytes))} &middot; updated {_e(human_age(info.updated_at))} ago"
        f"{ttl} &middot; namespace <code>{_e(info.namespace)}</code>"
        f"{_schema_html(info.schema)}{readers}</div>"
    )


_LIST_HEADERS = ["name", "version", "rows", "size", "age", "ttl", "columns"]


def _list_rows(infos: Sequence[DatasetInfo]) -> list[list[object]]:
    return [
        [i.name, i.version, f"{i.num_rows:,}", human_bytes(i.nbytes), human_age(i.updated_at),
         "" if i.ttl is None else f"{i.ttl:g} s", schema_short(i.schema, 3)]
        for i in infos
    ]


def usage_line(u: Usage) -> str:
    """``'memory: 1.2 GiB live, 3 spares 256.0 MiB (reclaimable), quota none; /dev/shm
    20.1 GiB free'`` (the namespace's directory: /dev/shm or ``ARROWSHM_DIR``)."""
    quota = "none" if u.quota is None else human_bytes(u.quota)
    reserve = f", reserve {human_bytes(u.reserve)}" if u.reserve else ""
    return (f"memory: {human_bytes(u.live_bytes)} live, {u.spares} spare"
            f"{'s' if u.spares != 1 else ''} {human_bytes(u.spare_bytes)} (reclaimable"
            f"{reserve}), quota {quota}; {u.directory} {human_bytes(u.shm_free)} free of "
            f"{human_bytes(u.shm_total)}")


class DatasetList(list[DatasetInfo]):
    """The datasets of a namespace, as :func:`arrowshm.list_datasets` returns them.

    A plain ``list`` of :class:`DatasetInfo` that prints as an aligned table
    in a terminal and as an HTML table in Jupyter (name, version, rows, size,
    age, TTL, columns), followed by a line of the namespace's memory: live
    bytes, spares (reclaimable), quota and /dev/shm space.

    Attributes
    ----------
    usage : Usage or None
        The namespace's memory when the list was made.
    """

    def __init__(self, items: Iterable[DatasetInfo] = (), usage: Usage | None = None) -> None:
        super().__init__(items)
        self.usage = usage

    def __repr__(self) -> str:
        memory = "" if self.usage is None else "\n" + usage_line(self.usage)
        if not self:
            return "<arrowshm.DatasetList: no datasets>" + memory
        return table([h.upper() for h in _LIST_HEADERS], _list_rows(self),
                     right=[1, 2, 3, 4]) + memory

    def _repr_html_(self) -> str:
        memory = "" if self.usage is None else f"<div>{_e(usage_line(self.usage))}</div>"
        if not self:
            return f"<div><b>arrowshm</b>: no datasets{memory}</div>"
        n = len(self)
        return (
            f"<div><b>arrowshm</b>: {n} dataset{'s' if n != 1 else ''}"
            f"{_html_table(_LIST_HEADERS, _list_rows(self), right=[1, 2, 3, 4])}{memory}</div>"
        )


# -- streams ---------------------------------------------------------------------------------

_READER_HEADERS = ["id", "pid", "state", "cursor", "lag", "held", "missed", "idle"]


def _reader_row(r: ReaderInfo) -> list[object]:
    return [r.reader_id, r.pid, r.state if r.alive else "dead", f"{r.cursor:,}", f"{r.lag:,}",
            r.held_batches, f"{r.missed:,}", f"{r.idle_s:.1f}s"]


def reader_info_repr(r: ReaderInfo) -> str:
    """One line: ``<arrowshm.ReaderInfo 0 pid 123 active: cursor 5, lag 2, …>``."""
    state = r.state if r.alive else "dead"
    return (f"<arrowshm.ReaderInfo {r.reader_id} pid {r.pid} {state}: cursor {r.cursor:,}, "
            f"lag {r.lag:,}, {r.held_batches} held, {r.missed:,} missed, idle {r.idle_s:.1f}s>")


def reader_info_html(r: ReaderInfo) -> str:
    """One reader as a one-row HTML table."""
    return _html_table(_READER_HEADERS, [_reader_row(r)], right=[3, 4, 5, 6, 7])


def stream_info_repr(s: StreamInfo) -> str:
    """One line: ``<arrowshm.StreamInfo 'ticks' open, block: 12 batches, …>``."""
    return (
        f"<arrowshm.StreamInfo {s.name!r} {s.state}, {s.mode}: {s.cursor:,} batches, "
        f"{s.rows_written:,} rows, {human_bytes(s.bytes_written)} written; "
        f"{len(s.readers)} reader{'s' if len(s.readers) != 1 else ''}; "
        f"capacity {human_bytes(s.capacity_bytes)}; {schema_short(s.schema)}>"
    )


def stream_info_html(s: StreamInfo) -> str:
    """An HTML summary of a stream for notebooks: state, writer, cursors,
    schema and a table of its readers."""
    blocked = f", blocked for {s.writer_waiting_s:.1f} s" if s.writer_waiting_s else ""
    readers = (
        _html_table(_READER_HEADERS, [_reader_row(r) for r in s.readers], right=[3, 4, 5, 6, 7])
        if s.readers else "<div>no readers</div>"
    )
    return (
        f"<div><b>arrowshm stream</b> <code>{_e(s.name)}</code> "
        f"session {s.session} &middot; {_e(s.state)} &middot; mode {_e(s.mode)} &middot; "
        f"writer pid {s.writer_pid}{_e(blocked)} &middot; {s.cursor:,} batches, "
        f"{s.rows_written:,} rows, {_e(human_bytes(s.bytes_written))} written &middot; "
        f"capacity {_e(human_bytes(s.capacity_bytes))} in {s.slots:,} slots"
        f"{_schema_html(s.schema)}{readers}</div>"
    )


# -- progress --------------------------------------------------------------------------------


class Spinner:
    """A one-line progress indicator on a terminal, for operations a person waits on.

    Redraws ``<frame> <message> <elapsed>`` every 0.1 s from a daemon thread
    while the ``with`` block runs, and erases the line at the end. Does nothing
    unless *stream* is a TTY, so pipes, files and logs never see control
    characters.
    """

    _FRAMES = "|/-\\"

    def __init__(self, message: str, stream: TextIO) -> None:
        self.message = message
        self.stream = stream
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def _draw(self, frame: int) -> None:
        elapsed = time.monotonic() - self._start
        self.stream.write(f"\r{self._FRAMES[frame % 4]} {self.message} {elapsed:.1f}s\x1b[K")
        self.stream.flush()

    def _run(self) -> None:
        frame = 1
        while not self._stop.wait(0.1):
            self._draw(frame)
            frame += 1

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._start = time.monotonic()
            self._draw(0)
            self._thread = threading.Thread(target=self._run, name="arrowshm-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def version_reader_repr(r: VersionReader) -> str:
    """One line: ``<arrowshm.VersionReader v3 pid 123 (python) alive, since 5s ago>``."""
    since = "" if r.since is None else f", since {human_age(r.since)} ago"
    return (f"<arrowshm.VersionReader v{r.version} pid {r.pid} ({r.command or '?'}) "
            f"{'alive' if r.alive else 'DEAD'}{since}>")


def _install() -> None:
    """Give the info classes their faces (they import nothing of this module)."""
    DatasetInfo.__repr__ = dataset_info_repr  # type: ignore[method-assign,assignment]
    DatasetInfo._repr_html_ = dataset_info_html  # type: ignore[attr-defined]
    ReaderInfo.__repr__ = reader_info_repr  # type: ignore[method-assign,assignment]
    ReaderInfo._repr_html_ = reader_info_html  # type: ignore[attr-defined]
    StreamInfo.__repr__ = stream_info_repr  # type: ignore[method-assign,assignment]
    StreamInfo._repr_html_ = stream_info_html  # type: ignore[attr-defined]
    VersionReader.__repr__ = version_reader_repr  # type: ignore[method-assign,assignment]


_install()
