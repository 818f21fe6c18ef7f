"""The service's errors and the one middleware that turns them into JSON.

Every error a client can see has a stable ``code`` (clients branch on it; the message is for
humans and may change)::

    ServiceError
    ├── InvalidRequest        422 invalid_body | invalid_query | invalid_header | reason_required
    ├── Unauthenticated       401 unauthenticated (no, unknown or expired token; bad login)
    ├── NotFound              404 not_found
    │   └── Forbidden         404 not_found  (policy said no: looks exactly like a missing object)
    ├── Conflict              409 idempotency_conflict
    ├── RateLimited           429 rate_limited (with Retry-After)
    └── Unavailable           503 unavailable

Errors raised by aiohttp itself (unknown path, wrong method, body too large) get the same shape.
Anything else is a bug: it is logged with its traceback and answered with a bare 500 ``internal``
that reveals nothing.
"""

from __future__ import annotations

import math

import structlog
from aiohttp import web

from cloud_sync.service.state import Handler

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "error_middleware",
    "error_response",
]

log = structlog.get_logger(__name__)


class ServiceError(Exception):
    """Base of every error the HTTP API reports to clients."""

    status = 500
    code = "internal"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries."""
        return {}


class InvalidRequest(ServiceError):
    """The request is well-formed HTTP but its body, query or headers are not acceptable."""

    status = 422
    code = "invalid_body"


class Unauthenticated(ServiceError):
    """No valid credentials."""

    status = 401
    code = "unauthenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="courtyard"'}


class NotFound(ServiceError):
    """No such object, as far as this caller may know."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "not found", **kw: str | None) -> None:
        super().__init__(message, **kw)


class Forbidden(NotFound):
    """The policy denied the action; outwardly identical to :class:`NotFound` so nothing leaks."""


class Conflict(ServiceError):
    """The request conflicts with an earlier one (an idempotency key reused for another door)."""

    status = 409
    code = "idempotency_conflict"


class RateLimited(ServiceError):
    """Too many failed attempts; try again after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed attempts; try again later")
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ServiceError):
    """A dependency (database, broker) is not available right now."""

    status = 503
    code = "unavailable"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The one JSON error shape: ``{"error": {"code": ..., "message": ...}}``."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain and HTTP errors to JSON; never let an exception's text reach the client."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason, headers)
    except Exception:
        # A bug or an unexpected dependency failure: the details go to the log, never the client.
        log.exception("unhandled error", method=request.method, path=request.path)
        return error_response(500, "internal", "internal error")
