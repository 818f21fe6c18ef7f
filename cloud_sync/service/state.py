"""Typed keys of the application's and the request's state.

The composition root and the tests read the app's resources through these keys (``app[DB]``), never
through string keys. Types are imported for annotations only, so this module imports nothing at
run time and every other module may import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from cloud_sync.protocol import MqttLink
    from cloud_sync.service.auth import Authenticator
    from cloud_sync.service.db import Database
    from cloud_sync.service.dispatch import Dispatcher
    from cloud_sync.service.expiry import ExpirySweeper
    from cloud_sync.service.ingest import Ingestor
    from cloud_sync.service.keys import CloudKeys
    from cloud_sync.service.parcel_desk import ParcelLimits
    from cloud_sync.service.passwords import PasswordHasher
    from cloud_sync.service.policy import Decision, Principal, Resource
    from cloud_sync.service.routes import RouteRegistry
    from cloud_sync.service.settings import CloudSettings
    from cloud_sync.service.unlock import UnlockService
    from cloud_sync.service.waiters import CommandWaiters

__all__ = [
    "AUTH",
    "CLOCK",
    "DB",
    "DECISION",
    "DISPATCHER",
    "HASHER",
    "INGESTOR",
    "KEYS",
    "LINK",
    "PARCEL_LIMITS",
    "PRINCIPAL",
    "RESOURCE",
    "ROUTES",
    "SETTINGS",
    "SWEEPER",
    "UNLOCK",
    "WAITERS",
    "Clock",
    "Handler",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Clock(Protocol):
    """Milliseconds since the epoch; :class:`trust.SafeClock` in production."""

    def now_ms(self) -> int:
        """The current time in ms."""
        ...


SETTINGS: web.AppKey[CloudSettings] = web.AppKey("settings")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ROUTES: web.AppKey[RouteRegistry] = web.AppKey("routes")
DB: web.AppKey[Database] = web.AppKey("db")
KEYS: web.AppKey[CloudKeys] = web.AppKey("keys")
HASHER: web.AppKey[PasswordHasher] = web.AppKey("hasher")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
LINK: web.AppKey[MqttLink] = web.AppKey("link")
WAITERS: web.AppKey[CommandWaiters] = web.AppKey("waiters")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
UNLOCK: web.AppKey[UnlockService] = web.AppKey("unlock")
INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor")
SWEEPER: web.AppKey[ExpirySweeper] = web.AppKey("sweeper")
#: Per-account limits on revealing pickup codes and on remote pickups.
PARCEL_LIMITS: web.AppKey[ParcelLimits] = web.AppKey("parcel_limits")

#: Set by the route guard before a non-public handler runs.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
RESOURCE: web.RequestKey[Resource] = web.RequestKey("resource")
DECISION: web.RequestKey[Decision] = web.RequestKey("decision")
