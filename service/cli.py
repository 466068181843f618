"""The ``arrowshm serve`` sub-command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import Settings, parse_size, read_token_file
    from .server import serve

    if args.socket is not None and args.port is not None:
        raise SystemExit("arrowshm serve: use --socket or --host/--port, not both")
    if args.token is not None and args.token_file is not None:
        raise SystemExit("arrowshm serve: use --token-file or --token, not both")
    token = args.token
    if args.token_file is not None:
        token = read_token_file(args.token_file)
    elif args.token is not None:
        print("arrowshm serve: warning: --token is visible to every user of this host "
              "(ps, /proc); prefer ARROWSHM_TOKEN or --token-file", file=sys.stderr,
              flush=True)
    settings = Settings.from_env(
        socket_path=args.socket,
        host=args.host,
        port=args.port,
        token=token,
        allowed_uids=frozenset(args.allow_uid) if args.allow_uid else None,
        reaper_interval=args.reaper_interval,
        log_level=args.log_level,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        max_body_bytes=args.max_body_bytes,
        flight_max_put_bytes=args.flight_max_put_bytes,
        reserve=None if args.reserve is None else parse_size(args.reserve, "--reserve"),
    )
    flight = None
    if args.flight is not None:
        from .flight import FlightSettings

        flight = FlightSettings(uri=args.flight, token=settings.token or "",
                                tls_cert=args.flight_tls_cert, tls_key=args.flight_tls_key,
                                max_put_bytes=settings.flight_max_put_bytes)
    return serve(settings, flight=flight)


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``arrowshm`` command's sub-parsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the control-plane HTTP service (Unix socket by default)",
        description="Serve the HTTP control plane of the namespace (ARROWSHM_NAMESPACE) on a "
                    "private Unix socket ($XDG_RUNTIME_DIR/arrowshm/<ns>.sock, else "
                    "/tmp/arrowshm-<uid>/<ns>.sock; the peer's uid is checked, no token), or "
                    "over TCP with a bearer token: give it in ARROWSHM_TOKEN or --token-file, "
                    "not --token, which every user sees in ps. Limits and checks: "
                    "docs/SECURITY.md.",
    )
    p.add_argument("--socket", type=Path, default=None, help="Unix socket path")
    p.add_argument("--host", default=None, help="TCP host (default 127.0.0.1 with --port)")
    p.add_argument("--port", type=int, default=None, help="serve TCP on this port (0: any)")
    p.add_argument("--token", default=None,
                   help="bearer token for TCP and Flight (default: $ARROWSHM_TOKEN); visible "
                        "to every user in ps: prefer $ARROWSHM_TOKEN or --token-file")
    p.add_argument("--token-file", type=Path, default=None, metavar="PATH",
                   help="read the bearer token from PATH (a file of yours, mode 0600 or 0400)")
    p.add_argument("--allow-uid", type=int, action="append", default=None, metavar="UID",
                   help="another uid allowed on the Unix socket (repeatable)")
    p.add_argument("--reaper-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between reaper runs (default 2)")
    p.add_argument("--log-level", default=None,
                   choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument("--header-timeout", type=float, default=None, metavar="SECONDS",
                   help="a client must send a request's head within SECONDS of connecting "
                        "(or of the previous answer), and its body within as long again; "
                        "else it is disconnected (default 10; $ARROWSHM_HEADER_TIMEOUT_S)")
    p.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="connections open at once; one more closes the oldest idle one "
                        "(default 256; $ARROWSHM_MAX_CONNECTIONS)")
    p.add_argument("--max-body-bytes", type=int, default=None, metavar="N",
                   help="largest request body (default 1048576; $ARROWSHM_MAX_BODY_BYTES)")
    p.add_argument("--flight", default=None, metavar="URI",
                   help="also serve Arrow Flight at URI, e.g. grpc://127.0.0.1:8815 "
                        "(off by default; needs the token; see docs/FLIGHT.md)")
    p.add_argument("--flight-tls-cert", type=Path, default=None, metavar="PEM",
                   help="TLS certificate chain of the Flight endpoint")
    p.add_argument("--flight-tls-key", type=Path, default=None, metavar="PEM",
                   help="TLS private key of the Flight endpoint")
    p.add_argument("--flight-max-put-bytes", type=int, default=None, metavar="N",
                   help="largest dataset a Flight do_put may upload; it is held in memory "
                        "until complete (default 1073741824 = 1 GiB; "
                        "$ARROWSHM_FLIGHT_MAX_PUT_BYTES)")
    p.add_argument("--reserve", default=None, metavar="SIZE",
                   help="keep SIZE bytes of pre-faulted spare memory (e.g. 512M, 2G) ready "
                        "for the namespace while the service runs, so that the first put of "
                        "a new name by any process lands in warm pages; counts against the "
                        "quota (default 0; $ARROWSHM_SERVE_RESERVE)")
    p.set_defaults(func=_cmd_serve)
    return p
