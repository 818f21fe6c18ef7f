"""The application itself: life cycle, error shapes, body limits, the route guard."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cloud_sync.service import create_app
from cloud_sync.service.policy import Action
from cloud_sync.service.routes import RouteTable
from cloud_sync.service.state import DB, INGESTOR, LINK, ROUTES, SWEEPER


async def test_app_starts_and_stops_its_resources(make_api: Any, seeded: Any) -> None:
    client: TestClient = await make_api()
    app = client.app
    assert app[LINK].connected
    assert app[DB] is not None
    assert app[INGESTOR].stats.malformed == 0
    assert app[SWEEPER].expired == 0
    await client.close()
    # cleanup ran: the link is down
    assert not app[LINK].connected


async def _error(resp: Any) -> dict[str, str]:
    body = await resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return dict(body["error"])


async def test_unknown_path_is_json_404(api: TestClient) -> None:
    resp = await api.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await _error(resp))["code"] == "not_found"


async def test_wrong_method_is_json_405(api: TestClient) -> None:
    resp = await api.put("/api/v1/sessions", json={})
    assert resp.status == 405
    assert (await _error(resp))["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


async def test_body_over_the_limit_is_413(api: TestClient) -> None:
    resp = await api.post("/api/v1/sessions", data=b"x" * (65 * 1024))
    assert resp.status == 413
    assert (await _error(resp))["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"login": 1, "password": "x"}',
        b'{"login": "li"}',
        b'{"login": "li", "password": "li-password", "extra": 1}',
        b'{"login": "' + b"a" * 65 + b'", "password": "x"}',
        b"\xff\xfe",
        b'{"login": "li", "password": "\\ud800"}',
    ],
)
async def test_bad_bodies_are_422_never_500(api: TestClient, payload: bytes) -> None:
    resp = await api.post(
        "/api/v1/sessions", data=payload, headers={"Content-Type": "application/json"}
    )
    assert resp.status in (401, 422), await resp.text()
    error = await _error(resp)
    if resp.status == 422:
        assert error["code"] == "invalid_body"
        assert "li-password" not in error["message"]  # input is never echoed


async def test_bad_query_is_422(api: TestClient, login: Any, seeded: Any) -> None:
    headers = await login(api, "engineer")
    resp = await api.get("/api/v1/alarms?limit=-1", headers=headers)
    assert resp.status == 422
    assert (await _error(resp))["code"] == "invalid_query"


async def test_huge_path_ids_are_404_not_500(api: TestClient, login: Any) -> None:
    headers = await login(api, "admin")
    for path in (
        "/api/v1/doors/99999999999999999999999/unlock",
        "/api/v1/doors/0/unlock",
        "/api/v1/residents/2147483648",
    ):
        method = api.post if path.endswith("unlock") else api.get
        resp = await method(path, headers=headers, json={"reason": "inspection"})
        assert resp.status == 404, path
        assert (await _error(resp))["code"] == "not_found"


async def test_a_route_added_outside_the_table_is_refused(make_api: Any, seeded: Any) -> None:
    reached = []

    async def sneaky(request: web.Request) -> web.Response:
        reached.append(True)
        return web.json_response({"secret": True})

    client: TestClient = await make_api()
    # The router is frozen once the app runs; go under it, as a careless plugin might have.
    client.app.router._frozen = False
    client.app.router.add_get("/api/v1/sneaky", sneaky)
    resp = await client.get("/api/v1/sneaky")
    assert resp.status == 404
    assert (await _error(resp))["code"] == "not_found"
    assert reached == []
    assert client.app[ROUTES].spec_for(next(iter(client.app.router.routes()))) is not None


def test_a_route_must_name_a_policy_action_or_be_public() -> None:
    table = RouteTable()

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="public or names a policy action"):
        table.route("GET", "/x", summary="x")(handler)
    with pytest.raises(ValueError, match="public or names a policy action"):
        table.route("GET", "/x", summary="x", public=True, action=Action.ME_READ)(handler)
    with pytest.raises(ValueError, match="resource loader"):
        table.route("GET", "/x", summary="x", action=Action.ME_READ)(handler)


async def test_pages_are_marked_public_explicitly(
    aiohttp_client: Any, cloud_settings: Any, db: Any, cloud_keys: Any, hasher: Any, seeded: Any
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    def pages(app: web.Application) -> None:
        app.router.add_get("/", page)

    app = create_app(cloud_settings, database=db, keys=cloud_keys, hasher=hasher, pages=pages)
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == 200
    assert "hello" in await resp.text()
