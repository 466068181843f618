"""arrowshm exceptions as HTTP errors: ``{"code": <class name>, "detail": ..., "fields": ...}``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import arrowshm as E

from .schemas import ErrorBody

STATUS: list[tuple[type[E.ArrowShmError], int]] = [
    (E.NotFoundError, 404),
    (E.InvalidNameError, 422),
    (E.InvalidArgumentError, 422),
    (E.ShmFullError, 507),
    (E.QuotaExceededError, 507),
    (E.RegistryFullError, 507),
    (E.WaitTimeoutError, 504),
    (E.AccessDeniedError, 403),
    (E.ConflictError, 409),
    (E.StreamClosedError, 409),
    (E.CorruptSegmentError, 500),
]

_HTTP_CODES = {401: "Unauthorized", 403: "AccessDeniedError", 404: "NotFoundError",
               405: "MethodNotAllowed"}


def status_of(exc: E.ArrowShmError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in fields.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = repr(v)
        out[k] = v
    return out


def error_response(status: int, code: str, detail: str, fields: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail, "fields": _jsonable(fields or {})},
                        status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for *statuses*, all with :class:`ErrorBody`."""
    text = {401: "Missing or wrong bearer token.", 403: "Peer uid not allowed.",
            404: "No such name.", 409: "The name is of the other kind.",
            422: "Invalid name or argument.", 507: "Quota, registry or /dev/shm full."}
    return {s: {"model": ErrorBody, "description": text.get(s, "Error.")} for s in statuses}


def install(app: FastAPI) -> None:
    """Register the exception handlers on *app*."""

    async def on_arrowshm(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, E.ArrowShmError)
        return error_response(status_of(exc), type(exc).__name__, exc.message, exc.fields)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errs)
        return error_response(422, "InvalidArgumentError", detail, {"errors": errs})

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "HTTPError"),
                              str(exc.detail), headers=getattr(exc, "headers", None))

    app.add_exception_handler(E.ArrowShmError, on_arrowshm)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
