"""The console: one static page (``index.html``, ``console.js``, ``console.css``: the files
are their own source, no build step) that logs in with a token and drives the REST API.

The token stays in the tab's ``sessionStorage`` and goes out only in the ``Authorization``
header of API calls (no cookie, hence no CSRF); text from the API is set with
``textContent`` only; a strict Content-Security-Policy allows nothing but these files.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)
FILES = {"": "index.html", "console.js": "console.js", "console.css": "console.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console/{name:path}")
def console_file(name: str) -> Response:
    if name not in FILES:
        raise HTTPException(404, "no such console file")
    filename = FILES[name]
    body = resources.files(__package__).joinpath(filename).read_bytes()
    suffix = filename[filename.rindex(".") :]
    headers = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-cache"}  # fmt: skip
    return Response(body, media_type=TYPES[suffix], headers=headers)
