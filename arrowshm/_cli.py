"""The ``arrowshm`` command: demo, ls, info, rm, gc (and serve, with the service)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._display import human_age, human_bytes, table


def _cmd_ls(args: argparse.Namespace) -> int:
    from . import _layout as L
    from ._dataset import _expired
    from ._names import current_namespace
    from ._registry import get_registry

    reg = get_registry(current_namespace())
    rows = []
    import datetime as dt

    for view in sorted(reg.entries(), key=lambda v: v.name):
        kind = L.KIND_NAMES.get(view.kind, "?")
        if view.kind == L.KIND_DATASET and (view.version == 0 or _expired(view)):
            continue
        updated = dt.datetime.fromtimestamp(view.field(L.R_UPDATED_NS) / 1e9, tz=dt.timezone.utc)
        extra = ""
        if view.kind == L.KIND_STREAM:
            try:
                from ._stream import stream_summary

                extra = stream_summary(reg, view)
            except Exception as exc:  # a stream being torn down: still list it
                extra = f"({exc})"
        rows.append([
            view.name, kind, view.version, f"{view.field(L.R_NUM_ROWS):,}",
            human_bytes(view.field(L.R_DATA_BYTES)), human_age(updated), extra,
        ])
    if args.json:
        print(json.dumps([dict(zip(["name", "kind", "version", "rows", "size", "age", "detail"],
                                   r, strict=True)) for r in rows], default=str))
        return 0
    if not rows:
        print(f"namespace {reg.namespace!r} is empty")
        return 0
    print(table(["NAME", "KIND", "VERSION", "ROWS", "SIZE", "AGE", "DETAIL"], rows,
                right=[2, 3, 4, 5]))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import _layout as L
    from ._dataset import info
    from ._names import current_namespace, validate_name
    from ._registry import get_registry

    validate_name(args.name)
    reg = get_registry(current_namespace())
    view = reg.get_entry(args.name)
    if view.kind == L.KIND_STREAM:
        from ._stream import stream_info

        print(stream_info(args.name).describe())
        return 0
    i = info(args.name)
    lines = [
        f"name:      {i.name}",
        f"namespace: {i.namespace}",
        f"version:   {i.version} (retained: {', '.join(map(str, i.versions))})",
        f"rows:      {i.num_rows:,}",
        f"size:      {human_bytes(i.nbytes)} ({i.nbytes:,} bytes)",
        f"created:   {i.created_at.isoformat()}",
        f"updated:   {i.updated_at.isoformat()} ({human_age(i.updated_at)} ago)",
        f"ttl:       {'none' if i.ttl is None else f'{i.ttl:g} s'}",
        f"owner pid: {i.owner_pid}",
        f"segment:   {i.segment}",
        "schema:",
    ]
    lines += ["  " + line for line in str(i.schema).splitlines()]
    print("\n".join(lines))
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from ._dataset import delete

    for name in args.names:
        delete(name)
        print(f"removed {name}")
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    from ._gc import gc

    report = gc()
    for name in report.expired:
        print(f"expired  {name}")
    for name in report.recovered:
        print(f"recovered {name}")
    for shm in report.segments:
        print(f"removed  {shm}")
    print(
        f"reclaimed {len(report.segments)} segment(s), {human_bytes(report.bytes_freed)}; "
        f"{len(report.expired)} expired; {len(report.recovered)} recovered; "
        f"{report.kept} kept (being written by live processes)"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(size_mb=args.size_mb)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="arrowshm",
        description="Zero-copy Arrow tables between processes through shared memory. "
        "The namespace is ARROWSHM_NAMESPACE (default: 'default').",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="put a table in one process, get it zero-copy in another")
    d.add_argument("--size-mb", type=int, default=100, help="table size (default 100 MB)")
    d.set_defaults(func=_cmd_demo)
    ls = sub.add_parser("ls", help="list datasets and streams")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_cmd_ls)
    i = sub.add_parser("info", help="describe a dataset or stream, with its schema")
    i.add_argument("name")
    i.set_defaults(func=_cmd_info)
    rm = sub.add_parser("rm", help="delete datasets or streams and free their memory")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=_cmd_rm)
    g = sub.add_parser("gc", help="reclaim segments that crashed or finished processes left")
    g.set_defaults(func=_cmd_gc)
    try:
        from .service.cli import add_serve_parser
    except ImportError:
        pass
    else:
        add_serve_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``arrowshm`` console script."""
    from ._errors import ArrowShmError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ArrowShmError as exc:
        print(f"arrowshm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
