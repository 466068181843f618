"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

import arrowshm

from ..dependencies import EventHubDep, NamespaceDep, ReaperDep, RegistryDep, SettingsDep
from ..errors import error_responses
from ..metrics import render
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness check", response_model=Health,
            description="Answers 200 while the service runs. Needs no token.")
def healthz(settings: SettingsDep) -> Health:
    return Health(status="ok", namespace=settings.namespace, version=arrowshm.__version__)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
    description="Prometheus text format, every name prefixed `arrowshm_`: datasets, streams, "
                "bytes used (live and spare), spares, recycled puts, quota, puts, deletes, "
                "reaped objects, reaper runs, events, stream reader lag, readers per dataset "
                "and pinned bytes per retained version.",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus exposition text."}, **error_responses(401)},
)
def metrics(ns: NamespaceDep, reg: RegistryDep, reaper: ReaperDep,
            hub: EventHubDep) -> PlainTextResponse:
    return PlainTextResponse(render(ns, reg, reaper, hub),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
