"""The ``arrowshm serve`` sub-command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import Settings
    from .server import serve

    if args.socket is not None and args.port is not None:
        raise SystemExit("arrowshm serve: use --socket or --host/--port, not both")
    settings = Settings.from_env(
        socket_path=args.socket,
        host=args.host,
        port=args.port,
        token=args.token,
        allowed_uids=frozenset(args.allow_uid) if args.allow_uid else None,
        reaper_interval=args.reaper_interval,
        log_level=args.log_level,
    )
    flight = None
    if args.flight is not None:
        from .flight import FlightSettings

        flight = FlightSettings(uri=args.flight, token=settings.token or "",
                                tls_cert=args.flight_tls_cert, tls_key=args.flight_tls_key)
    return serve(settings, flight=flight)


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``arrowshm`` command's sub-parsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the control-plane HTTP service (Unix socket by default)",
        description="Serve the HTTP control plane of the namespace (ARROWSHM_NAMESPACE) on a "
                    "private Unix socket ($XDG_RUNTIME_DIR/arrowshm/<ns>.sock, else "
                    "/tmp/arrowshm-<uid>/<ns>.sock), or over TCP with a bearer token.",
    )
    p.add_argument("--socket", type=Path, default=None, help="Unix socket path")
    p.add_argument("--host", default=None, help="TCP host (default 127.0.0.1 with --port)")
    p.add_argument("--port", type=int, default=None, help="serve TCP on this port (0: any)")
    p.add_argument("--token", default=None, help="bearer token (default: $ARROWSHM_TOKEN)")
    p.add_argument("--allow-uid", type=int, action="append", default=None, metavar="UID",
                   help="another uid allowed on the Unix socket (repeatable)")
    p.add_argument("--reaper-interval", type=float, default=None, metavar="SECONDS",
                   help="seconds between reaper runs (default 2)")
    p.add_argument("--log-level", default=None,
                   choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument("--flight", default=None, metavar="URI",
                   help="also serve Arrow Flight at URI, e.g. grpc://127.0.0.1:8815 "
                        "(off by default; needs the token; see docs/FLIGHT.md)")
    p.add_argument("--flight-tls-cert", type=Path, default=None, metavar="PEM",
                   help="TLS certificate chain of the Flight endpoint")
    p.add_argument("--flight-tls-key", type=Path, default=None, metavar="PEM",
                   help="TLS private key of the Flight endpoint")
    p.set_defaults(func=_cmd_serve)
    return p
