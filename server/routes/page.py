"""``GET /``: the page for people (static files in the package: no build step, no CDN)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

# The page's own script and styles, this server's API, and the pictures it fetches as blobs.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE = (files("dcf.server") / "static" / "page" / "index.html").read_text()


@router.get(
    "/",
    summary="A page to try the model in a browser",
    response_class=HTMLResponse,
    responses={200: {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def page() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"Content-Security-Policy": POLICY})
