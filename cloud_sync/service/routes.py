"""How routes are declared, and the guard every request passes before its handler.

A route is declared once, with everything the service needs to know about it::

    @table.route("POST", "/api/v1/doors/{id:\\d+}/unlock", action=Action.DOOR_UNLOCK,
                 load=load_door, body=UnlockBody, response=CommandAccepted, status=202)
    async def unlock(request): ...

A route either names a policy :class:`~cloud_sync.service.policy.Action` and a loader for the
object it acts on, or says ``public=True``; declaring neither (or both) fails at import time. The
OpenAPI document is generated from the same declarations, so it cannot drift from the code.

:func:`guard_middleware` runs before every handler. For a matched route it looks up the
declaration; a route added to the router any other way has none and is refused (404, logged as an
error). For a non-public route it authenticates the bearer token (401), loads the object (404 if
missing), asks :func:`~cloud_sync.service.policy.decide` (404 if denied — the same answer), and
only then parses the body and query against the declared models (422). The handler receives the
principal, the object, the decision and the parsed input as typed request state.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractRoute
from pydantic import BaseModel, ValidationError

from cloud_sync.service.errors import Forbidden, InvalidRequest, NotFound
from cloud_sync.service.policy import Action, Principal, Resource, SelfRes, SiteRes, decide
from cloud_sync.service.state import AUTH, DECISION, PRINCIPAL, RESOURCE, ROUTES, Handler

__all__ = [
    "BODY",
    "QUERY",
    "HeaderParam",
    "ResourceLoader",
    "RouteRegistry",
    "RouteSpec",
    "RouteTable",
    "body_of",
    "guard_middleware",
    "json_model",
    "load_self",
    "load_site",
    "path_int",
    "query_of",
    "resource_of",
]

log = structlog.get_logger(__name__)

ResourceLoader = Callable[[web.Request, Principal], Awaitable[Resource | None]]
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

BODY: web.RequestKey[BaseModel] = web.RequestKey("body")
QUERY: web.RequestKey[BaseModel] = web.RequestKey("query")

_PARAM = re.compile(r"\{(\w+)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")
_MAX_INT_ID = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class HeaderParam:
    """A request header a route reads (documented in the OpenAPI document)."""

    name: str
    description: str
    max_length: int


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """Everything declared about one route."""

    method: str
    path: str
    handler: Handler
    summary: str
    action: Action | None
    load: ResourceLoader | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    headers: tuple[HeaderParam, ...] = ()
    errors: tuple[int, ...] = ()

    @property
    def public(self) -> bool:
        """Whether the route is reachable without authentication or a policy decision."""
        return self.action is None

    @property
    def name(self) -> str:
        """A unique name (the handler's), also the OpenAPI ``operationId``."""
        return self.handler.__name__

    @property
    def template(self) -> str:
        """The path with parameter patterns removed: ``/api/v1/doors/{id}/unlock``."""
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)

    def path_params(self) -> list[tuple[str, str | None]]:
        """(name, regex or None) of each path parameter."""
        return [(m.group(1), m.group(2)) for m in _PARAM.finditer(self.path)]


class RouteTable:
    """Route declarations collected by decorator (like ``web.RouteTableDef``, plus policy)."""

    def __init__(self) -> None:
        self._specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        action: Action | None = None,
        load: ResourceLoader | None = None,
        public: bool = False,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        headers: tuple[HeaderParam, ...] = (),
        errors: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare a route; it must name a policy action and loader, or be marked public."""
        if public == (action is not None):
            raise ValueError(f"{method} {path}: a route is either public or names a policy action")
        if action is not None and load is None:
            raise ValueError(f"{method} {path}: a policy action needs a resource loader")

        def register(handler: Handler) -> Handler:
            self._specs.append(
                RouteSpec(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    summary=summary,
                    action=action,
                    load=load,
                    body=body,
                    query=query,
                    response=response,
                    status=status,
                    headers=headers,
                    errors=errors,
                )
            )
            return handler

        return register

    @property
    def specs(self) -> tuple[RouteSpec, ...]:
        """The declarations, in order."""
        return tuple(self._specs)


class RouteRegistry:
    """The routes installed in one application, each mapped to its declaration."""

    def __init__(self) -> None:
        self._by_route: dict[AbstractRoute, RouteSpec] = {}
        self._public_extra: set[AbstractRoute] = set()
        self.specs: list[RouteSpec] = []

    def install(self, app: web.Application, tables: Iterable[RouteTable]) -> None:
        """Add every declared route of ``tables`` to ``app``'s router."""
        for table in tables:
            for spec in table.specs:
                route = app.router.add_route(spec.method, spec.path, spec.handler, name=spec.name)
                self._by_route[route] = spec
                self.specs.append(spec)

    def mark_public(self, routes: Iterable[AbstractRoute]) -> None:
        """Let routes added outside the table through unguarded (static web pages only)."""
        self._public_extra.update(routes)

    def spec_for(self, route: AbstractRoute) -> RouteSpec | None:
        """The declaration of ``route``, if it was installed from a table."""
        return self._by_route.get(route)

    def is_public_extra(self, route: AbstractRoute) -> bool:
        """Whether ``route`` is a page explicitly marked public."""
        return route in self._public_extra


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, load, decide, then parse — or refuse — before any handler runs."""
    match = request.match_info
    if match.http_exception is not None:  # no route: aiohttp's own 404/405
        raise match.http_exception
    registry = request.app[ROUTES]
    spec = registry.spec_for(match.route)
    if spec is None:
        if registry.is_public_extra(match.route):
            return await handler(request)
        log.error(
            "refused a route without a policy entry", method=request.method, path=request.path
        )
        raise Forbidden()  # outwardly a plain 404: the route's existence is not revealed
    if spec.action is not None and spec.load is not None:
        principal = await request.app[AUTH].authenticate(request.headers.get(hdrs.AUTHORIZATION))
        resource = await spec.load(request, principal)
        if resource is None:
            raise NotFound()
        decision = decide(principal, spec.action, resource)
        if not decision.allowed:
            log.info(
                "policy denied",
                action=spec.action.value,
                account=principal.account_id,
                rule=decision.rule,
                path=request.path,
            )
            raise Forbidden()
        request[PRINCIPAL] = principal
        request[RESOURCE] = resource
        request[DECISION] = decision
    if spec.query is not None:
        request[QUERY] = _parse_query(request, spec.query)
    if spec.body is not None:
        request[BODY] = await _parse_body(request, spec.body)
    return await handler(request)


def _describe(exc: ValidationError) -> str:
    # Name the field and the problem, never echo the input (it may be a password).
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def _parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()  # bounded by client_max_size: aiohttp raises 413 beyond it
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc), code="invalid_body") from exc


def _parse_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc), code="invalid_query") from exc


def _typed(value: object, cls: type[R]) -> R:
    if not isinstance(value, cls):
        # The route's declaration and its handler disagree: a programming error.
        raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")
    return value


def body_of(request: web.Request, model: type[M]) -> M:
    """The request body parsed by the guard as the route's declared model."""
    return _typed(request[BODY], model)


def query_of(request: web.Request, model: type[M]) -> M:
    """The query string parsed by the guard as the route's declared model."""
    return _typed(request[QUERY], model)


def resource_of(request: web.Request, cls: type[R]) -> R:
    """The object the policy authorised this request for."""
    return _typed(request[RESOURCE], cls)


def path_int(request: web.Request, name: str) -> int | None:
    """A numeric path parameter, or None when it cannot name a row (so: 404, never a 500)."""
    text = request.match_info.get(name, "")
    if not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= _MAX_INT_ID else None


async def load_site(request: web.Request, principal: Principal) -> Resource:
    """The caller's site as a whole (list endpoints)."""
    return SiteRes(principal.site_id)


async def load_self(request: web.Request, principal: Principal) -> Resource:
    """The caller's own account (its session, its profile)."""
    return SelfRes(principal.site_id, principal.account_id)


def json_model(model: BaseModel, status: int = 200, *, exclude_none: bool = False) -> web.Response:
    """Serialize a response model."""
    return web.Response(
        text=model.model_dump_json(exclude_none=exclude_none),
        status=status,
        content_type="application/json",
    )
