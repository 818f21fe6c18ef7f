"""Serve the browser pages of :mod:`web` from an aiohttp application."""

from __future__ import annotations

from aiohttp import web as aioweb

import web

__all__ = ["mount_pages"]


def mount_pages(app: aioweb.Application) -> None:
    """Add the static pages and assets of :mod:`web` to ``app``."""
    for url, filename in web.PAGES.items():
        path = web.STATIC_DIR / filename

        async def page(request: aioweb.Request, _path=path) -> aioweb.FileResponse:  # type: ignore[no-untyped-def]
            return aioweb.FileResponse(_path, headers={"Cache-Control": "no-cache"})

        app.router.add_get(url, page)
    app.router.add_static("/static/", web.STATIC_DIR, append_version=False)
