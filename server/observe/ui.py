"""The run viewer: static pages at /ui that read the native runs API in the browser.

    app.mount(UI_PATH, viewer(), name="ui")

The pages are files shipped in the package (`server/ui/`), with no build step and nothing fetched
from elsewhere. They hold no data, so they are served without a key; every call they make to
/v1 sends the key the user typed into the page (kept in the tab's sessionStorage) as a Bearer
token, and the API's own auth applies to it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["UI_DIR", "UI_PATH", "viewer"]

UI_PATH = "/ui"
UI_DIR = Path(__file__).resolve().parent.parent / "ui"


class _Pages(StaticFiles):
    """Static files that tell browsers to check back: a router upgraded in place serves its new pages."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def viewer() -> StaticFiles:
    return _Pages(directory=UI_DIR, html=True)
