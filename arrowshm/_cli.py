"""The ``arrowshm`` command: demo, ls, info, rm, gc (and serve, with the service)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ._units import human_age, human_bytes

# Start-up: this module imports no numba, pyarrow or service code at top level (the
# `arrowshm` script enters through arrowshm_cli, which keeps the package lazy), so
# `arrowshm --help` is fast; each verb imports what it needs inside its function.


def _cmd_ls(args: argparse.Namespace) -> int:
    import time

    from ._display import readers_summary, table, usage_line
    from ._errors import ArrowShmError
    from ._mirror import mirror_statuses
    from ._namespace import Namespace

    ns = Namespace()
    mirrors = {m.local_name: m for m in mirror_statuses(ns.name)}
    rows = []
    for d in ns.list_datasets():
        try:  # the processes holding a table of any retained version (their pins)
            readers = readers_summary(ns.info(d.name).readers)
        except ArrowShmError:
            readers = ""  # deleted or replaced while listing
        rows.append([d.name, "dataset", d.version, f"{d.num_rows:,}", human_bytes(d.nbytes),
                     human_age(d.updated_at), readers, ""])
    for st in ns.list_streams():
        rows.append([st.name, "stream", st.session, f"{st.rows_written:,}",
                     human_bytes(st.bytes_written), "", str(len(st.readers)), st.summary()])
    rows.sort(key=lambda r: str(r[0]))
    for row in rows:
        m = mirrors.get(str(row[0]))
        if m is not None:  # a mirror of a remote dataset: how far behind it is
            lag = max(0, m.remote_version - m.mirrored_version)
            stale = max(0.0, time.time() - m.synced_at) if lag or m.state != "live" else 0.0
            row[7] = (f"{row[7]}; " if row[7] else "") + (
                f"mirror of {m.remote_name}@{m.remote} ({m.state}, {lag} behind, "
                f"stale {stale:.1f}s)"
            )
    if args.json:
        print(json.dumps([dict(zip(["name", "kind", "version", "rows", "size", "age",
                                    "readers", "detail"], r, strict=True)) for r in rows],
                         default=str))
        return 0
    memory = usage_line(ns.usage())
    if not rows:
        print(f"namespace {ns.name!r} is empty\n{memory}")
        return 0
    print(table(["NAME", "KIND", "VERSION", "ROWS", "SIZE", "AGE", "READERS", "DETAIL"], rows,
                right=[2, 3, 4, 5]))
    print(memory)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ._display import readers_lines, usage_line
    from ._errors import ConflictError
    from ._namespace import Namespace

    ns = Namespace()
    try:
        i = ns.info(args.name)
    except ConflictError:  # a stream
        print(ns.stream_info(args.name).describe())
        return 0
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
    lines += readers_lines(i)
    lines.append(usage_line(ns.usage()))  # live bytes, and spares (reclaimable)
    print("\n".join(lines))
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from ._namespace import Namespace

    ns = Namespace()
    for name in args.names:
        ns.delete(name)
        print(f"removed {name}")
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    from ._display import Spinner
    from ._names import SHM_PREFIX
    from ._namespace import Namespace
    from ._shm.context import namespace_dir
    from ._shm.segment import list_names

    ns = Namespace()
    objects = (len(list_names(f"{SHM_PREFIX}{ns.name}-", namespace_dir(ns.name)))
               if sys.stderr.isatty() else 0)
    with Spinner(f"arrowshm gc: checking {objects:,} shared-memory object(s) of namespace "
                 f"{ns.name!r}", sys.stderr):
        report = ns.gc(spares=args.spares)
    for name in report.expired:
        print(f"expired  {name}")
    for name in report.recovered:
        print(f"recovered {name}")
    for shm in report.segments:
        print(f"removed  {shm}")
    for reader in report.readers_evicted:
        print(f"evicted  {reader}")
    for pin in report.pins_released:
        print(f"unpinned {pin}")
    print(
        f"reclaimed {len(report.segments)} segment(s) and {report.spares_freed} spare(s), "
        f"{human_bytes(report.bytes_freed)}; "
        f"{len(report.expired)} expired; {len(report.recovered)} recovered; "
        f"{len(report.readers_evicted)} dead reader(s) evicted; "
        f"{len(report.pins_released)} dead pin(s) released; "
        f"{report.kept} kept (being written by live processes)"
    )
    print(f"spares kept: {report.spares}, {human_bytes(report.spare_bytes)} (reclaimable"
          + ("" if args.spares else "; `arrowshm gc --spares` frees them") + ")")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import main as doctor_main

    return doctor_main(args.namespace, args.json)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(size_mb=args.size_mb)


def _cmd_mirror(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ._display import table
    from ._mirror import Mirror, mirror_statuses
    from ._names import current_namespace

    if args.status or args.uri is None:
        statuses = mirror_statuses()
        if args.json:
            print(json.dumps([{**vars(s), "version_lag": s.version_lag,
                               "staleness_s": round(s.staleness_s, 3)} for s in statuses]))
        elif not statuses:
            print(f"no mirrors in namespace {current_namespace()!r}")
        else:
            print(table(["LOCAL", "REMOTE", "STATE", "REMOTE V", "MIRRORED V", "LAG",
                         "STALE", "ERROR"],
                        [[s.local_name, f"{s.remote_name} @ {s.remote}", s.state,
                          s.remote_version, s.mirrored_version, s.version_lag,
                          f"{s.staleness_s:.1f} s", s.error[:60]] for s in statuses],
                        right=[3, 4, 5, 6]))
        return 0
    if args.name is None:
        raise SystemExit("arrowshm mirror: give URI and NAME (or --status)")
    if args.token is not None and args.token_file is not None:
        raise SystemExit("arrowshm mirror: use --token-file or --token, not both")
    token = args.token
    if args.token_file is not None:
        from ._client import read_token_file

        token = read_token_file(args.token_file)
    elif args.token is not None:
        print("arrowshm mirror: warning: --token is visible to every user of this host "
              "(ps, /proc); prefer ARROWSHM_TOKEN or --token-file", file=sys.stderr,
              flush=True)
    tls_roots = args.tls_root_cert.read_bytes() if args.tls_root_cert else None
    m = Mirror(args.uri, args.name, local_name=args.local_name, token=token,
               tls_root_certs=tls_roots, kind=args.kind, retain=args.retain,
               poll_timeout=args.poll)
    stop = threading.Event()

    def _on_signal(sig: int, frame: object) -> None:
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _on_signal)
    print(f"arrowshm mirror: {args.name} @ {args.uri} -> {m.local_name} "
          f"(namespace {current_namespace()!r})", flush=True)
    m.start()
    last = 0
    state = ""
    while not stop.wait(0.1):
        st = m.status
        if st.state != state:
            state = st.state
            if state == "reconnecting":
                print(f"arrowshm mirror: remote unreachable, reconnecting ({st.error})",
                      file=sys.stderr, flush=True)
        if st.mirrored_version != last and st.local_version:
            last = st.mirrored_version
            print(f"mirrored version {last} as local version {st.local_version}", flush=True)
        if st.state == "ended":
            break
    m.stop()
    return 0


def _bench_root() -> Path | None:
    """The source checkout holding ``bench/`` (the benchmarks are not installed)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "bench" / "__main__.py").is_file() else None


def _cmd_bench(args: argparse.Namespace) -> int:
    from ._errors import InvalidArgumentError

    root = _bench_root()
    if root is None:
        raise InvalidArgumentError(
            "the benchmarks ship with the source, not the installed package: clone the "
            "repository, `pip install -e \".[dev]\"` there, and run `arrowshm bench` (or "
            "`python -m bench`) in it"
        )
    import subprocess

    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args], cwd=root)


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
    g.add_argument("--spares", action="store_true",
                   help="also free every spare (retired segments kept warm for new puts)")
    g.set_defaults(func=_cmd_gc)
    dr = sub.add_parser("doctor", help="check the machine and the namespace: OK/WARN/FAIL "
                        "and the fix (exit status 0/1/2)")
    dr.add_argument("--json", action="store_true", help="machine-readable output")
    dr.add_argument("--namespace", default=None, help="default: $ARROWSHM_NAMESPACE")
    dr.set_defaults(func=_cmd_doctor)
    b = sub.add_parser("bench", help="run the benchmarks against every peer (python -m bench)",
                       description="Runs `python -m bench` of the source checkout, passing "
                       "every argument on (e.g. --quick, --sizes 1,64, --peers ray): "
                       "`arrowshm bench --help` lists them.", add_help=False)
    b.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS")
    b.set_defaults(func=_cmd_bench)
    mi = sub.add_parser("mirror", help="keep a remote dataset or stream (arrowshm serve "
                        "--flight) mirrored into local shared memory",
                        description="Follow NAME at URI (grpc://HOST:PORT of arrowshm serve "
                        "--flight) and publish each new version locally; runs until SIGINT "
                        "or SIGTERM. --status lists the namespace's mirrors and their lag.")
    mi.add_argument("uri", nargs="?", help="grpc://HOST:PORT or grpc+tls://HOST:PORT")
    mi.add_argument("name", nargs="?", help="remote dataset or stream")
    mi.add_argument("--as", dest="local_name", default=None, metavar="LOCAL_NAME",
                    help="local name (default: NAME)")
    mi.add_argument("--token", default=None,
                    help="remote token (default: $ARROWSHM_TOKEN); visible to every user in "
                         "ps: prefer $ARROWSHM_TOKEN or --token-file")
    mi.add_argument("--token-file", type=Path, default=None, metavar="PATH",
                    help="read the remote token from PATH (a file of yours, mode 0600 or 0400)")
    mi.add_argument("--tls-root-cert", type=Path, default=None, metavar="PEM",
                    help="CA certificate of a grpc+tls remote")
    mi.add_argument("--kind", default="auto", choices=["auto", "dataset", "stream"])
    mi.add_argument("--retain", type=int, default=1, help="local versions kept (default 1)")
    mi.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                    help="long-poll length (default 5)")
    mi.add_argument("--status", action="store_true", help="list this namespace's mirrors")
    mi.add_argument("--json", action="store_true", help="with --status: machine-readable")
    mi.set_defaults(func=_cmd_mirror)
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

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["bench"]:  # everything after the verb belongs to `python -m bench`
        args = argparse.Namespace(func=_cmd_bench, bench_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ArrowShmError as exc:
        print(f"arrowshm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
