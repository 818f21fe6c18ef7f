"""The application factory: one function that wires the cloud service together.

``create_app(settings)`` returns an :class:`aiohttp.web.Application` whose resources start and stop
with it through ``cleanup_ctx`` (cleanup runs iff its startup succeeded, in reverse order):

1. the database (migrated first only if ``settings.migrate_on_start``),
2. the keys, 3. the password hasher and authenticator,
4. the MQTT link (manual acks: ingest acknowledges a message only after committing it),
   the dispatcher and the unlock service,
5. the ingest task, 6. the command-expiry sweeper.

Tests and the demo may inject an existing :class:`Database`, :class:`CloudKeys`, hasher or clock;
injected resources belong to the caller and are not closed here. App state is reached through the
typed keys in :mod:`cloud_sync.service.state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from cloud_sync.protocol import MqttLink
from cloud_sync.service import (
    migrate,
    openapi,
    routes_audit,
    routes_devices,
    routes_doors,
    routes_meters,
    routes_notifications,
    routes_parcels,
    routes_residents,
    routes_sessions,
)
from cloud_sync.service.auth import Authenticator
from cloud_sync.service.db import Database
from cloud_sync.service.dispatch import Dispatcher
from cloud_sync.service.errors import error_middleware
from cloud_sync.service.expiry import ExpirySweeper
from cloud_sync.service.ingest import Ingestor, subscriptions
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.parcel_desk import ParcelLimits
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.ratelimit import LoginLimiter
from cloud_sync.service.routes import RouteRegistry, RouteTable, guard_middleware
from cloud_sync.service.settings import CloudSettings
from cloud_sync.service.state import (
    AUTH,
    CLOCK,
    DB,
    DISPATCHER,
    HASHER,
    INGESTOR,
    KEYS,
    LINK,
    PARCEL_LIMITS,
    ROUTES,
    SETTINGS,
    SWEEPER,
    UNLOCK,
    WAITERS,
    Clock,
)
from cloud_sync.service.unlock import UnlockService
from cloud_sync.service.waiters import CommandWaiters
from trust import SafeClock

__all__ = ["TABLES", "create_app"]

log = structlog.get_logger(__name__)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


#: Every route table the API serves.
TABLES: tuple[RouteTable, ...] = (
    routes_sessions.table,
    routes_doors.table,
    routes_devices.table,
    routes_meters.table,
    routes_parcels.table,
    routes_notifications.table,
    routes_audit.table,
    routes_residents.table,
    openapi.table,
)


def create_app(
    settings: CloudSettings,
    *,
    database: Database | None = None,
    keys: CloudKeys | None = None,
    hasher: PasswordHasher | None = None,
    clock: Clock | None = None,
    pages: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The cloud service as an aiohttp application.

    ``pages`` may add static web pages (the browser UI) to the app: every route it adds is marked
    public explicitly, all others must come from the route tables with a policy action.
    """
    app = web.Application(
        middlewares=[error_middleware, guard_middleware],
        client_max_size=settings.client_max_size,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SafeClock()
    app[WAITERS] = CommandWaiters()
    app[PARCEL_LIMITS] = ParcelLimits()
    registry = RouteRegistry()
    registry.install(app, TABLES)
    if pages is not None:
        before = set(app.router.routes())
        pages(app)
        added: set[AbstractRoute] = set(app.router.routes()) - before
        registry.mark_public(added)
    app[ROUTES] = registry
    app.cleanup_ctx.extend(
        [
            _database_ctx(database),
            _keys_ctx(keys),
            _auth_ctx(hasher),
            _link_ctx,
            _task_ctx(INGESTOR, "ingest"),
            _task_ctx(SWEEPER, "expiry sweeper"),
        ]
    )
    return app


def _database_ctx(injected: Database | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if injected is not None:
            app[DB] = injected
            yield
            return
        if settings.migrate_on_start:
            await migrate.upgrade(settings.database_url)
        db = Database(settings.database_url)
        app[DB] = db
        try:
            yield
        finally:
            await db.dispose()

    return ctx


def _keys_ctx(injected: CloudKeys | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Key files are read (or created, with fsync) once: off the event loop.
        keys = injected
        if keys is None:
            keys = await asyncio.to_thread(CloudKeys.load_or_create, app[SETTINGS].key_dir)
        app[KEYS] = keys
        yield

    return ctx


def _auth_ctx(injected: PasswordHasher | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        hasher = injected or (
            PasswordHasher.fast_for_tests() if settings.argon2 == "fast" else PasswordHasher()
        )
        limiter = LoginLimiter(
            per_login=settings.login_max_failures,
            per_ip=settings.login_max_failures_per_ip,
            window_s=settings.login_window_s,
        )
        auth = Authenticator(app[DB], hasher, limiter, app[CLOCK], token_ttl_s=settings.token_ttl_s)
        await auth.warm_up()
        app[HASHER], app[AUTH] = hasher, auth
        yield

    return ctx


def _client_id(settings: CloudSettings) -> str:
    if settings.broker.client_id:
        return settings.broker.client_id
    # Unique per instance (and per app in one test process), recognisable in broker logs.
    return f"cy-cloud-{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"


async def _link_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    b = settings.broker
    # A clean session: what the cloud misses while it is down, the gateways' outboxes resend
    # (they keep every event until the application-level ack), so no broker state is needed.
    link = MqttLink(
        b.host,
        b.port,
        _client_id(settings),
        username=b.username,
        password=b.password,
        protocol=b.protocol,
        manual_ack=True,
    )
    for pattern in subscriptions(settings.topic_root, settings.share_group):
        link.subscribe(pattern, qos=1)
    # Starts connecting in the background: the API serves (and reports "queued") while the
    # broker is unreachable, and the link keeps reconnecting with back-off.
    await link.start()
    waiters = app[WAITERS]
    app[LINK] = link
    app[DISPATCHER] = Dispatcher(
        app[DB],
        app[KEYS],
        link,
        app[CLOCK],
        waiters,
        topic_root=settings.topic_root,
        publish_timeout_ms=settings.publish_timeout_ms,
    )
    app[UNLOCK] = UnlockService(app[DB], app[KEYS], settings.command_ttl_ms)
    app[INGESTOR] = Ingestor(app[DB], link, app[CLOCK], waiters, topic_root=settings.topic_root)
    app[SWEEPER] = ExpirySweeper(
        app[DB],
        app[CLOCK],
        waiters,
        grace_ms=settings.expiry_grace_ms,
        outcome_timeout_ms=settings.outcome_timeout_ms,
        interval_s=settings.sweep_interval_s,
    )
    try:
        yield
    finally:
        await link.stop()


def _task_ctx(key: web.AppKey[Ingestor] | web.AppKey[ExpirySweeper], name: str) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_supervise(name, app[key].run), name=name)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived loop; if it dies of a bug, log it and restart it after a pause."""
    backoff = 0.1
    while True:
        try:
            await run()
        except Exception:
            log.exception("background task crashed; restarting", task=name)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
