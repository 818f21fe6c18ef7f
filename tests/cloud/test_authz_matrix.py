"""The authorization matrix: every route × every role × relationship, with expected statuses.

The table below is the policy as the outside world sees it. The test fails when the app serves a
route the table does not list, and when the table lists a route the app does not serve — so a new
route cannot ship without someone deciding, here, who may call it.

Relationships: ``li`` lives in building 1 (unit 1-101) and acts on building 1's door, her own
command and her unit's meter; ``zhang`` lives in building 2 and acts on the same objects; staff act
on their own site; ``other_admin`` is an admin of another site acting on this site's objects.

Parcels: ``li`` is the recipient of the seeded waiting parcel (and of an unfinished deposit, found
empty), ``zhang`` is not; ``courier`` (company SF) deposited both; ``other_courier`` (company ZTO)
serves the same site but deposited neither; everyone names bank A and the site's gateway.
Notifications: everyone marks read one of ``li``'s notifications.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlmodel import col

from cloud_sync.service.state import DB
from cloud_sync.service.tables import Membership, Notification, Parcel

ROLES = (
    "anonymous",
    "li",
    "zhang",
    "engineer",
    "admin",
    "auditor",
    "courier",
    "other_courier",
    "other_admin",
)

# fmt: off
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    #                                               anon  li  zhang eng admin aud  cour ocour other
    ("POST",   "/api/v1/sessions"):                 (201, 201, 201, 201, 201, 201, 201, 201, 201),
    ("DELETE", "/api/v1/sessions/current"):         (401, 204, 204, 204, 204, 204, 204, 204, 204),
    ("GET",    "/api/v1/me"):                       (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET",    "/api/v1/doors"):                    (401, 200, 200, 200, 200, 404, 404, 404, 200),
    ("POST",   "/api/v1/doors/{id}/unlock"):        (401, 202, 404, 202, 202, 404, 404, 404, 404),
    ("GET",    "/api/v1/commands/{id}"):            (401, 200, 404, 200, 200, 404, 404, 404, 404),
    ("GET",    "/api/v1/gateways"):                 (401, 404, 404, 200, 200, 404, 404, 404, 200),
    ("GET",    "/api/v1/alarms"):                   (401, 404, 404, 200, 200, 404, 404, 404, 200),
    ("GET",    "/api/v1/audit"):                    (401, 404, 404, 404, 200, 200, 404, 404, 200),
    ("GET",    "/api/v1/audit/verify"):             (401, 404, 404, 404, 404, 200, 404, 404, 404),
    ("GET",    "/api/v1/residents/{id}"):           (401, 404, 404, 404, 200, 404, 404, 404, 404),
    ("POST",   "/api/v1/residents/{id}/unmask"):    (401, 404, 404, 404, 200, 404, 404, 404, 404),
    ("GET",    "/api/v1/meters"):                   (401, 200, 200, 200, 200, 404, 404, 404, 200),
    ("GET",    "/api/v1/meters/{id}/readings"):     (401, 200, 404, 200, 200, 404, 404, 404, 404),
    ("POST",   "/api/v1/meters/{id}/read"):         (401, 202, 404, 202, 202, 404, 404, 404, 404),
    ("GET",    "/api/v1/devices"):                  (401, 404, 404, 200, 200, 404, 404, 404, 200),
    ("GET",    "/api/v1/locker-banks"):             (401, 404, 404, 200, 200, 404, 200, 200, 200),
    ("POST",   "/api/v1/recipients/lookup"):        (401, 404, 404, 404, 404, 404, 200, 200, 404),
    ("POST",   "/api/v1/parcels"):                  (401, 404, 404, 404, 404, 404, 202, 202, 404),
    ("GET",    "/api/v1/parcels"):                  (401, 200, 200, 200, 200, 404, 200, 200, 200),
    ("GET",    "/api/v1/parcels/{id}"):             (401, 200, 404, 200, 200, 404, 200, 404, 404),
    ("POST",   "/api/v1/parcels/{id}/reopen"):      (401, 404, 404, 404, 404, 404, 202, 404, 404),
    ("POST",   "/api/v1/parcels/{id}/cancel"):      (401, 404, 404, 404, 404, 404, 202, 404, 404),
    ("POST",   "/api/v1/parcels/{id}/retrieve"):    (401, 404, 404, 404, 404, 404, 202, 404, 404),
    ("POST",   "/api/v1/parcels/{id}/pickup"):      (401, 202, 404, 404, 404, 404, 404, 404, 404),
    ("GET",    "/api/v1/parcels/{id}/code"):        (401, 200, 404, 404, 404, 404, 404, 404, 404),
    ("GET",    "/api/v1/parcels/{id}/qr.png"):      (401, 200, 404, 404, 404, 404, 404, 404, 404),
    ("GET",    "/api/v1/courier/pass"):             (401, 404, 404, 404, 404, 404, 200, 200, 404),
    ("GET",    "/api/v1/notifications"):            (401, 200, 200, 404, 404, 404, 404, 404, 404),
    ("POST",   "/api/v1/notifications/{id}/read"):  (401, 200, 404, 404, 404, 404, 404, 404, 404),
    ("GET",    "/api/v1/openapi.json"):             (200, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on


@dataclass(frozen=True)
class Ctx:
    """The objects the requests name: building 1's door, Li's command, record and meter."""

    door_b1: int
    command: str
    resident: int
    meter: int
    credentials: dict[str, tuple[str, str]]
    bank: int = 0
    gateway: str = ""
    parcel: str = ""  # waiting for li, deposited by courier
    empty_parcel: str = ""  # an unfinished deposit for li by courier, found empty
    note: int = 0  # one of li's notifications


Request = Callable[[Ctx, str], tuple[str, Any]]

REASON = {"reason": "authorization matrix check"}

#: How to call each route: (path, JSON body) for a caller.
REQUESTS: dict[tuple[str, str], Request] = {
    ("POST", "/api/v1/sessions"): lambda c, who: (
        "/api/v1/sessions",
        dict(zip(("login", "password"), c.credentials[who], strict=True)),
    ),
    ("DELETE", "/api/v1/sessions/current"): lambda c, who: ("/api/v1/sessions/current", None),
    ("GET", "/api/v1/me"): lambda c, who: ("/api/v1/me", None),
    ("GET", "/api/v1/doors"): lambda c, who: ("/api/v1/doors", None),
    ("POST", "/api/v1/doors/{id}/unlock"): lambda c, who: (
        f"/api/v1/doors/{c.door_b1}/unlock",
        REASON,
    ),
    ("GET", "/api/v1/commands/{id}"): lambda c, who: (f"/api/v1/commands/{c.command}", None),
    ("GET", "/api/v1/gateways"): lambda c, who: ("/api/v1/gateways", None),
    ("GET", "/api/v1/alarms"): lambda c, who: ("/api/v1/alarms", None),
    ("GET", "/api/v1/audit"): lambda c, who: ("/api/v1/audit", None),
    ("GET", "/api/v1/audit/verify"): lambda c, who: ("/api/v1/audit/verify", None),
    ("GET", "/api/v1/residents/{id}"): lambda c, who: (f"/api/v1/residents/{c.resident}", None),
    ("POST", "/api/v1/residents/{id}/unmask"): lambda c, who: (
        f"/api/v1/residents/{c.resident}/unmask",
        REASON,
    ),
    ("GET", "/api/v1/meters"): lambda c, who: ("/api/v1/meters", None),
    ("GET", "/api/v1/meters/{id}/readings"): lambda c, who: (
        f"/api/v1/meters/{c.meter}/readings",
        None,
    ),
    ("POST", "/api/v1/meters/{id}/read"): lambda c, who: (f"/api/v1/meters/{c.meter}/read", None),
    ("GET", "/api/v1/devices"): lambda c, who: ("/api/v1/devices", None),
    ("GET", "/api/v1/locker-banks"): lambda c, who: ("/api/v1/locker-banks", None),
    ("POST", "/api/v1/recipients/lookup"): lambda c, who: (
        "/api/v1/recipients/lookup",
        {"bank": c.bank, "unit": "1-101"},
    ),
    ("POST", "/api/v1/parcels"): lambda c, who: (
        "/api/v1/parcels",
        {"bank": c.bank, "size": "M", "unit": "1-101"},
    ),
    ("GET", "/api/v1/parcels"): lambda c, who: ("/api/v1/parcels", None),
    ("GET", "/api/v1/parcels/{id}"): lambda c, who: (f"/api/v1/parcels/{c.parcel}", None),
    ("POST", "/api/v1/parcels/{id}/reopen"): lambda c, who: (
        f"/api/v1/parcels/{c.empty_parcel}/reopen",
        None,
    ),
    ("POST", "/api/v1/parcels/{id}/cancel"): lambda c, who: (
        f"/api/v1/parcels/{c.empty_parcel}/cancel",
        None,
    ),
    ("POST", "/api/v1/parcels/{id}/retrieve"): lambda c, who: (
        f"/api/v1/parcels/{c.parcel}/retrieve",
        None,
    ),
    ("POST", "/api/v1/parcels/{id}/pickup"): lambda c, who: (
        f"/api/v1/parcels/{c.parcel}/pickup",
        None,
    ),
    ("GET", "/api/v1/parcels/{id}/code"): lambda c, who: (f"/api/v1/parcels/{c.parcel}/code", None),
    ("GET", "/api/v1/parcels/{id}/qr.png"): lambda c, who: (
        f"/api/v1/parcels/{c.parcel}/qr.png",
        None,
    ),
    ("GET", "/api/v1/courier/pass"): lambda c, who: (
        f"/api/v1/courier/pass?gateway={c.gateway}",
        None,
    ),
    ("GET", "/api/v1/notifications"): lambda c, who: ("/api/v1/notifications", None),
    ("POST", "/api/v1/notifications/{id}/read"): lambda c, who: (
        f"/api/v1/notifications/{c.note}/read",
        None,
    ),
    ("GET", "/api/v1/openapi.json"): lambda c, who: ("/api/v1/openapi.json", None),
}

#: Routes naming an object, and a path naming an object that does not exist.
MISSING: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/doors/{id}/unlock"): "/api/v1/doors/999999/unlock",
    ("GET", "/api/v1/commands/{id}"): "/api/v1/commands/" + "0" * 32,
    ("GET", "/api/v1/residents/{id}"): "/api/v1/residents/999999",
    ("POST", "/api/v1/residents/{id}/unmask"): "/api/v1/residents/999999/unmask",
    ("GET", "/api/v1/meters/{id}/readings"): "/api/v1/meters/999999/readings",
    ("POST", "/api/v1/meters/{id}/read"): "/api/v1/meters/999999/read",
    ("GET", "/api/v1/parcels/{id}"): "/api/v1/parcels/" + "0" * 32,
    ("POST", "/api/v1/parcels/{id}/reopen"): f"/api/v1/parcels/{'0' * 32}/reopen",
    ("POST", "/api/v1/parcels/{id}/cancel"): f"/api/v1/parcels/{'0' * 32}/cancel",
    ("POST", "/api/v1/parcels/{id}/retrieve"): f"/api/v1/parcels/{'0' * 32}/retrieve",
    ("POST", "/api/v1/parcels/{id}/pickup"): f"/api/v1/parcels/{'0' * 32}/pickup",
    ("GET", "/api/v1/parcels/{id}/code"): f"/api/v1/parcels/{'0' * 32}/code",
    ("GET", "/api/v1/parcels/{id}/qr.png"): f"/api/v1/parcels/{'0' * 32}/qr.png",
    ("GET", "/api/v1/courier/pass"): "/api/v1/courier/pass?gateway=no-such-gateway",
    ("POST", "/api/v1/notifications/{id}/read"): "/api/v1/notifications/999999999/read",
}


def served_routes(client: TestClient) -> set[tuple[str, str]]:
    """(method, path template) of every route registered in the app."""
    out = set()
    for route in client.app.router.routes():
        resource = route.resource
        assert resource is not None
        out.add((route.method, resource.canonical))
    return out


async def _context(client: TestClient, seeded: Any, other: Any) -> Ctx:
    credentials = {
        who: (seeded.logins[who].login, seeded.logins[who].password)
        for who in ("li", "zhang", "engineer", "admin", "auditor", "courier", "other_courier")
    }
    credentials["anonymous"] = credentials["li"]
    credentials["other_admin"] = (other.logins["admin"].login, other.logins["admin"].password)
    ctx = Ctx(seeded.door_b1_id, "", seeded.li_id, seeded.meter_li_id, credentials)
    token = await _token(client, ctx, "li")
    resp = await client.post(
        f"/api/v1/doors/{seeded.door_b1_id}/unlock", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 202
    command = (await resp.json())["command_id"]
    empty = await _empty_deposit(client, seeded)
    return Ctx(
        seeded.door_b1_id,
        command,
        seeded.li_id,
        seeded.meter_li_id,
        credentials,
        bank=seeded.bank_id,
        gateway=seeded.gateway_id,
        parcel=seeded.parcel_id,
        empty_parcel=empty,
        note=await _note(client, seeded),
    )


async def _note(client: TestClient, seeded: Any) -> int:
    """A notification for li."""
    note = Notification(
        site_id=seeded.site_id,
        resident_id=seeded.li_id,
        kind="parcel.waiting",
        body={"parcel": seeded.parcel_id, "bank": "Lobby", "compartment": 1},
        created_at=time.time_ns() // 1_000_000,
    )
    async with client.app[DB].session() as s:
        s.add(note)
        await s.commit()
        await s.refresh(note)
    assert note.id is not None
    return note.id


async def _empty_deposit(client: TestClient, seeded: Any) -> str:
    """A deposit by ``courier`` for 1-101 that the gateway found empty (waiting for the courier)."""
    now = time.time_ns() // 1_000_000
    parcel_id = uuid.uuid4().hex
    parcel = Parcel(
        id=parcel_id,
        site_id=seeded.site_id,
        gateway_id=seeded.gateway_id,
        bank_id=seeded.bank_id,
        compartment=5,
        size="S",
        unit_id=seeded.unit1_id,
        unit_label=seeded.unit1_label,
        courier_account_id=seeded.logins["courier"].account_id,
        company=seeded.courier_company,
        state="empty",
        via="command",
        created_at=now,
        updated_at=now,
    )
    async with client.app[DB].session() as s:
        s.add(parcel)
        await s.commit()
    return parcel_id


async def _token(client: TestClient, ctx: Ctx, who: str) -> str:
    login, password = ctx.credentials[who]
    resp = await client.post("/api/v1/sessions", json={"login": login, "password": password})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["token"])


def test_the_matrix_and_the_requests_cover_the_same_routes() -> None:
    assert set(MATRIX) == set(REQUESTS)
    assert all(len(row) == len(ROLES) for row in MATRIX.values())


async def test_every_served_route_is_in_the_matrix(api: TestClient) -> None:
    served = served_routes(api)
    assert served - set(MATRIX) == set(), "routes served but absent from the matrix"
    assert set(MATRIX) - served == set(), "routes in the matrix but not served"


async def test_every_route_role_and_relationship(
    api: TestClient, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    ctx = await _context(api, seeded, other)
    mismatches = []
    for route in sorted(served_routes(api)):
        method, _ = route
        expected_row = MATRIX[route]
        for who, expected in zip(ROLES, expected_row, strict=True):
            headers = {}
            if who != "anonymous":
                headers["Authorization"] = f"Bearer {await _token(api, ctx, who)}"
            path, body = REQUESTS[route](ctx, who)
            resp = await api.request(method, path, headers=headers, json=body)
            if resp.status != expected:
                mismatches.append((method, path, who, expected, resp.status, await resp.text()))
            elif resp.status >= 400:
                error = (await resp.json())["error"]
                assert error["code"] in ("unauthenticated", "not_found"), (route, who, error)
    assert mismatches == []


async def test_denied_looks_exactly_like_missing(
    api: TestClient, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    ctx = await _context(api, seeded, other)
    for route, missing_path in MISSING.items():
        method, _ = route
        denied_row = MATRIX[route]
        for who, expected in zip(ROLES, denied_row, strict=True):
            if expected != 404:
                continue
            headers = {"Authorization": f"Bearer {await _token(api, ctx, who)}"}
            path, body = REQUESTS[route](ctx, who)
            denied = await api.request(method, path, headers=headers, json=body)
            missing = await api.request(method, missing_path, headers=headers, json=body)
            assert denied.status == missing.status == 404
            assert await denied.json() == await missing.json(), (route, who)


async def test_door_list_follows_the_relationship(
    api: TestClient, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    ctx = await _context(api, seeded, other)

    async def doors(who: str) -> list[int]:
        headers = {"Authorization": f"Bearer {await _token(api, ctx, who)}"}
        body = await (await api.get("/api/v1/doors", headers=headers)).json()
        return [d["id"] for d in body["doors"]]

    assert await doors("li") == [seeded.door_b1_id]
    assert await doors("zhang") == [seeded.door_b2_id]
    assert await doors("engineer") == [seeded.door_b1_id, seeded.door_b2_id]
    assert await doors("other_admin") == [other.door_b1_id, other.door_b2_id]


async def test_meter_list_follows_the_relationship(
    api: TestClient, seeded: Any, site_factory: Any, db: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    ctx = await _context(api, seeded, other)

    async def meters(who: str) -> list[int]:
        headers = {"Authorization": f"Bearer {await _token(api, ctx, who)}"}
        resp = await api.get("/api/v1/meters", headers=headers)
        assert resp.status == 200, await resp.text()
        return [m["id"] for m in (await resp.json())["meters"]]

    everything = [seeded.meter_li_id, seeded.meter_zhang_id, seeded.meter_common_id]
    assert await meters("li") == [seeded.meter_li_id]
    assert await meters("zhang") == [seeded.meter_zhang_id]
    assert await meters("engineer") == everything
    assert await meters("admin") == everything
    assert await meters("other_admin") == [
        other.meter_li_id,
        other.meter_zhang_id,
        other.meter_common_id,
    ]

    # Li's membership ends: her meter leaves her list, and its series and reads are refused
    async with db.session() as s:
        await s.execute(
            update(Membership)
            .where(col(Membership.resident_id) == seeded.li_id)
            .values(valid_until=time.time_ns() // 1_000_000 - 1000)
        )
        await s.commit()
    assert await meters("li") == []
    headers = {"Authorization": f"Bearer {await _token(api, ctx, 'li')}"}
    readings = await api.get(f"/api/v1/meters/{seeded.meter_li_id}/readings", headers=headers)
    read = await api.post(f"/api/v1/meters/{seeded.meter_li_id}/read", headers=headers)
    assert readings.status == read.status == 404
    assert await meters("engineer") == everything
