"""The dashboard: one static page at ``/``, with its script and style sheet.

The three files ship in the package (``service/dashboard/``): nothing is built
and nothing is fetched from another host, so the page works offline. They hold
no data of the namespace (the script reads it from the JSON routes with the
caller's credentials), so they are served without a token: a browser cannot
send ``Authorization`` when it navigates, and the page asks for the token
itself. A strict Content-Security-Policy allows only this origin's script,
style and JSON, and forbids framing (a delete button must not be clickjacked).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

#: route -> (file in service/dashboard/, media type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: paths served without a token (they carry no data)
PATHS = frozenset(ASSETS)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(filename: str) -> bytes:
    return (resources.files("arrowshm.service") / "dashboard" / filename).read_bytes()


def _serve(path: str) -> Response:
    filename, media_type = ASSETS[path]
    return Response(_asset(filename), media_type=media_type, headers=HEADERS)


@router.get("/")
def index() -> Response:
    return _serve("/")


@router.get("/dashboard/app.js")
def script() -> Response:
    return _serve("/dashboard/app.js")


@router.get("/dashboard/app.css")
def style() -> Response:
    return _serve("/dashboard/app.css")
