"""Reprs and notebook HTML of DatasetInfo, the dataset list and stream info."""

from __future__ import annotations

import html.parser

import pyarrow as pa
import pytest

import arrowshm
from arrowshm import stream_info


class _Cells(html.parser.HTMLParser):
    """Collects the text of the HTML and checks that tags balance."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _text(markup: str) -> str:
    p = _Cells()
    p.feed(markup)
    p.close()
    assert p.stack == [], f"unclosed tags {p.stack}"
    return " ".join(p.text)


def test_dataset_info_repr_is_one_readable_line() -> None:
    info = arrowshm.put("prices", pa.table({"sym": ["A", "B"], "px": [1.5, 2.5]}), ttl=60)
    text = repr(info)
    assert "\n" not in text
    assert text.startswith("<arrowshm.DatasetInfo 'prices' v1: 2 rows, ")
    assert "ttl 60 s" in text and "sym: string" in text and "px: double" in text


def test_dataset_info_html_shows_name_version_rows_size_schema_and_age() -> None:
    arrowshm.put("prices", pa.table({"sym": ["A"], "px": [1.0]}), retain=2)
    info = arrowshm.put("prices", pa.table({"sym": ["A", "B", "C"], "px": [1.0, 2.0, 3.0]}),
                        retain=2)
    text = _text(info._repr_html_())
    for part in ["prices", "v2", "retained: 2, 1", "3 rows", "updated", "ago", "sym", "string",
                 "px", "double"]:
        assert part in text, part


def test_html_escapes_names_and_columns() -> None:
    info = arrowshm.put("a/b", pa.table({"<script>": [1]}))
    markup = info._repr_html_()
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    _text(markup)


def test_list_datasets_prints_as_a_table_and_renders_html() -> None:
    empty = repr(arrowshm.list_datasets()).splitlines()
    assert empty[0] == "<arrowshm.DatasetList: no datasets>"
    assert empty[1].startswith("memory: 0 B live, 0 spares 0 B (reclaimable), quota none;")
    arrowshm.put("alpha", pa.table({"x": list(range(1000))}))
    arrowshm.put("beta/longer-name", pa.table({"y": ["z"]}), ttl=30)
    datasets = arrowshm.list_datasets()
    assert isinstance(datasets, list) and isinstance(datasets, arrowshm.DatasetList)
    assert [d.name for d in datasets] == ["alpha", "beta/longer-name"]
    lines = repr(datasets).splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "ROWS", "SIZE", "AGE", "TTL", "COLUMNS"]
    assert lines[1].startswith("alpha ") and "1,000" in lines[1]
    assert lines[2].startswith("beta/longer-name") and "30 s" in lines[2]
    # aligned: the VERSION column starts at the same offset on every line
    col = lines[0].index("VERSION")
    assert all(line[col - 1] == " " for line in lines[1:3])
    assert lines[-1].startswith("memory: ") and " live, " in lines[-1]
    text = _text(datasets._repr_html_())
    assert "2 datasets" in text and "alpha" in text and "beta/longer-name" in text
    assert "memory: " in text and "spares" in text


@pytest.mark.timeout(60)
def test_stream_info_and_reader_info_render() -> None:
    schema = pa.schema([("i", pa.int64())])
    with arrowshm.StreamWriter("ticks", schema, capacity_bytes=1 << 20) as w, \
            arrowshm.StreamReader("ticks") as r:
        w.write(pa.record_batch([pa.array([1, 2, 3])], schema=schema))
        batch = r.read(timeout=10)
        assert batch is not None
        si = stream_info("ticks")
        text = repr(si)
        assert "\n" not in text
        assert text.startswith("<arrowshm.StreamInfo 'ticks' open, block: 1 batches, 3 rows")
        assert "1 reader;" in text
        markup = si._repr_html_()
        body = _text(markup)
        for part in ["ticks", "open", "block", "3 rows", "i", "int64", "pid", "lag"]:
            assert part in body, part
        (reader,) = si.readers
        assert repr(reader).startswith(f"<arrowshm.ReaderInfo {reader.reader_id} pid ")
        assert "1 held" in repr(reader)
        assert "active" in _text(reader._repr_html_())
        del batch


# -- progress of `arrowshm gc` ---------------------------------------------------------------


def _gc_with_stderr_on(tty: bool) -> tuple[int, str, str]:
    """Run ``arrowshm gc`` in a child whose stderr is a pseudo-terminal or a pipe."""
    import os
    import pty
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "arrowshm._cli", "gc"]
    if not tty:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    try:
        proc2 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc2.communicate(timeout=60)
        return proc2.returncode, out.decode(), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


@pytest.mark.timeout(120)
def test_gc_shows_progress_on_a_terminal_and_nothing_in_a_pipe() -> None:
    for i in range(20):
        arrowshm.put(f"obj/{i}", pa.table({"x": [i]}))
    code, out, err = _gc_with_stderr_on(tty=True)
    assert code == 0
    assert "reclaimed" in out
    assert "arrowshm gc: checking" in err and "shared-memory object(s)" in err
    assert err.endswith("\r\x1b[K")  # the progress line is erased at the end
    code, out, err = _gc_with_stderr_on(tty=False)
    assert code == 0 and "reclaimed" in out
    assert err == ""
