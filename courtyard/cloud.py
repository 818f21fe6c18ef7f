"""``courtyard cloud run``: the cloud service with the web pages, as one aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web as aioweb

from cloud_sync.service.app import create_app
from cloud_sync.service.settings import CloudSettings
from courtyard.web_mount import mount_pages

__all__ = ["build_cloud_app", "run_cloud"]


def build_cloud_app(settings: CloudSettings) -> aioweb.Application:
    """The cloud API plus the browser pages."""
    return create_app(settings, pages=mount_pages)


async def run_cloud(settings: CloudSettings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    runner = aioweb.AppRunner(build_cloud_app(settings), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await aioweb.TCPSite(runner, settings.http_host, settings.http_port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
