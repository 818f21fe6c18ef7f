"""Sessions and the caller's own profile: ``/api/v1/sessions``, ``/api/v1/me``."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cloud_sync.service import directory
from cloud_sync.service.policy import Action
from cloud_sync.service.routes import RouteTable, body_of, json_model, load_self
from cloud_sync.service.state import AUTH, DB, KEYS, PRINCIPAL

__all__ = ["LoginBody", "MeOut", "SessionOut", "table"]

table = RouteTable()


class LoginBody(BaseModel):
    """Credentials."""

    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """A new session. The token is shown only here; send it as ``Authorization: Bearer …``."""

    token: str
    expires_at: int = Field(description="ms since the epoch")
    role: str


class MeOut(BaseModel):
    """Who the caller is. Residents see their own name masked, like everyone else does."""

    login: str
    role: str
    units: list[str]
    name: str | None


@table.route(
    "POST",
    "/api/v1/sessions",
    public=True,
    summary="Log in: exchange a login and password for a bearer token",
    body=LoginBody,
    response=SessionOut,
    status=201,
    errors=(401, 422, 429),
)
async def create_session(request: web.Request) -> web.Response:
    """Log in."""
    body = body_of(request, LoginBody)
    issued = await request.app[AUTH].login(body.login, body.password, request.remote or "unknown")
    out = SessionOut(token=issued.token, expires_at=issued.expires_at, role=issued.role.value)
    return json_model(out, 201)


@table.route(
    "DELETE",
    "/api/v1/sessions/current",
    action=Action.SESSION_END,
    load=load_self,
    summary="Log out: the bearer token stops working at once",
    status=204,
)
async def delete_session(request: web.Request) -> web.Response:
    """Log out."""
    await request.app[AUTH].logout(request[PRINCIPAL])
    return web.Response(status=204)


@table.route(
    "GET",
    "/api/v1/me",
    action=Action.ME_READ,
    load=load_self,
    summary="The caller's login, role, units and masked name",
    response=MeOut,
)
async def get_me(request: web.Request) -> web.Response:
    """The caller's profile."""
    principal = request[PRINCIPAL]
    name: str | None = None
    if principal.resident_id is not None:
        async with request.app[DB].session() as session:
            profile = await directory.read_profile(
                session, request.app[KEYS], principal.resident_id
            )
        name = directory.mask_name(profile.name) if profile is not None else None
    units = sorted({m.unit_label for m in principal.memberships if m.valid_at(principal.at_ms)})
    out = MeOut(login=principal.login, role=principal.role.value, units=units, name=name)
    return json_model(out)
