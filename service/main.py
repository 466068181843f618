"""The FastAPI application of ``arrowshm serve``."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

import arrowshm
from arrowshm._shm.registry import registry_of

from . import errors
from .config import Settings
from .events import EventHub
from .lifecycle import DatasetCatalog
from .logs import get_logger, log_event
from .reaper import Reaper
from .routers import admin, dashboard, datasets, events, health, streams, usage

_log = get_logger()
OPEN_PATHS = frozenset({"/healthz", *dashboard.PATHS})  # the page holds no data
WS_POLICY_VIOLATION = 1008


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket before accepting it.

    The service has no WebSocket route, and its access checks (bearer token,
    peer uid) are written for HTTP requests: a WebSocket is refused outright
    rather than let through to the router. A close code sent before the
    handshake never reaches the client (the server answers 403 instead), so
    when the server offers the ASGI ``websocket.http.response`` extension the
    refusal is a ``403`` with the service's JSON error body; otherwise it is a
    close with code 1008 (policy violation).
    """
    await receive()  # websocket.connect
    log_event(_log, "websocket refused", path=scope.get("path", ""))
    reason = "arrowshm serve does not accept WebSocket connections"
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps({"code": "AccessDeniedError", "detail": reason,
                           "fields": {}}).encode()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": reason})


class RefuseWebSockets:
    """Close every WebSocket scope with 1008 before any other middleware sees it (the
    app may run under another server than ``arrowshm serve``, whose protocol already
    answers a WebSocket handshake with 403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BearerAuth:
    """Reject every request but those of OPEN_PATHS (/healthz, the dashboard's static
    files) without ``Authorization: Bearer <token>`` (401)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # never passed through unchecked
            await refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:  # lifespan, /healthz
            await self.app(scope, receive, send)
            return
        got = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(got, self.expected):
            await self.app(scope, receive, send)
            return
        response = errors.error_response(
            401, "Unauthorized",
            "this service needs `Authorization: Bearer <token>` (--token / ARROWSHM_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    ns = arrowshm.Namespace(settings.namespace)  # every call names its namespace
    reg = registry_of(ns.name)
    app.state.namespace = ns
    app.state.registry = reg
    app.state.catalog = DatasetCatalog(reg)
    app.state.stopping = asyncio.Event()
    reaper = Reaper(ns, settings.reaper_interval)
    hub = EventHub(reg)
    app.state.reaper = reaper
    app.state.events = hub
    await asyncio.to_thread(reaper.start)
    hub.start()
    if settings.reserve:
        # refilled by a thread of this process as puts claim it, for as long as we run
        await asyncio.to_thread(ns.reserve, settings.reserve)
    log_event(_log, "service started", namespace=settings.namespace,
              reaper_interval=settings.reaper_interval, reserve=settings.reserve)
    try:
        yield
    finally:
        app.state.stopping.set()
        if settings.reserve:
            ns.reserve(0)  # its spares are trimmed like any others from now on
        hub.stop()
        reaper.stop()
        log_event(_log, "service stopped", namespace=settings.namespace)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for *settings* (``Settings.from_env()`` by default).

    Raises
    ------
    InvalidNameError
        When the namespace is invalid.
    """
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="arrowshm control plane",
        version=arrowshm.__version__,
        summary="Lifecycle, quotas, reaper, events and metrics of one arrowshm namespace.",
        description="Manages what the arrowshm data plane creates in shared memory; never "
                    "on the data path. Errors are `{\"code\": <arrowshm exception class>, "
                    "\"detail\": ..., \"fields\": {...}}`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    for r in (health.router, datasets.router, streams.router, admin.router, events.router,
              usage.router, dashboard.router):
        app.include_router(r)
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    app.add_middleware(RefuseWebSockets)  # added last: the outermost
    return app


def app_factory() -> Any:
    """``uvicorn --factory arrowshm.service.main:app_factory``."""
    return create_app()
