"""The OpenAPI document: valid 3.1, and complete (every served route is in it)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from cloud_sync.protocol import CommandStatus
from cloud_sync.service.state import ROUTES


async def _document(api: TestClient) -> dict[str, Any]:
    resp = await api.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_document_is_valid_openapi_3_1(api: TestClient) -> None:
    doc = await _document(api)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


async def test_every_served_route_is_documented(api: TestClient) -> None:
    doc = await _document(api)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(r.method, r.resource.canonical) for r in api.app.router.routes() if r.resource}
    assert documented == served


async def test_operations_carry_security_policy_and_errors(api: TestClient) -> None:
    doc = await _document(api)
    specs = {(s.method, s.template): s for s in api.app[ROUTES].specs}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            spec = specs[(method.upper(), path)]
            assert op["operationId"] == spec.name
            if spec.public:
                assert op["security"] == []
                assert "x-policy-action" not in op
            else:
                assert op["security"] == [{"bearer": []}]
                assert op["x-policy-action"] == spec.action.value  # type: ignore[union-attr]
                assert {"401", "404"} <= set(op["responses"])
            assert str(spec.status) in op["responses"]
    unlock = doc["paths"]["/api/v1/doors/{id}/unlock"]["post"]
    assert unlock["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    }
    assert any(p["name"] == "Idempotency-Key" for p in unlock["parameters"])
    assert "409" in unlock["responses"]
    command = doc["paths"]["/api/v1/commands/{id}"]["get"]
    wait = next(p for p in command["parameters"] if p["name"] == "wait")
    assert wait["in"] == "query"
    assert wait["schema"]["maximum"] == 25
    login = doc["paths"]["/api/v1/sessions"]["post"]
    assert login["requestBody"]["required"] is True
    assert "429" in login["responses"]
    error = doc["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]


async def test_command_statuses_are_exactly_the_lifecycle_states(api: TestClient) -> None:
    doc = await _document(api)
    schemas = doc["components"]["schemas"]
    assert set(schemas["CommandStatus"]["enum"]) == {s.value for s in CommandStatus}
    out = schemas["CommandOut"]["properties"]["status"]
    assert out == {"$ref": "#/components/schemas/CommandStatus"}


async def test_meter_and_device_routes_are_documented(api: TestClient) -> None:
    doc = await _document(api)
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    readings = paths["/api/v1/meters/{id}/readings"]["get"]
    assert readings["x-policy-action"] == "meter.readings"
    params = {p["name"]: p for p in readings["parameters"]}
    assert set(params) == {"id", "since", "until", "before", "limit"}
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["since"]["in"] == "query"
    assert "422" in readings["responses"]
    read = paths["/api/v1/meters/{id}/read"]["post"]
    assert read["x-policy-action"] == "meter.read_now"
    assert any(p["name"] == "Idempotency-Key" for p in read["parameters"])
    assert {"202", "409"} <= set(read["responses"])
    assert "requestBody" not in read
    devices = paths["/api/v1/devices"]["get"]
    assert {p["name"] for p in devices["parameters"]} == {"online", "gateway", "after", "limit"}
    assert paths["/api/v1/meters"]["get"]["x-policy-action"] == "meter.list"
    # response fields carry their meaning
    for model, field in (
        ("ReadingOut", "values"),
        ("MeterOut", "latest"),
        ("ReadingsOut", "next_before"),
        ("DeviceOut", "stats_at"),
        ("CommandOut", "meter"),
    ):
        assert schemas[model]["properties"][field].get("description"), (model, field)


async def test_parcel_routes_are_documented(api: TestClient) -> None:
    doc = await _document(api)
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    actions = {
        ("get", "/api/v1/locker-banks"): "bank.list",
        ("post", "/api/v1/recipients/lookup"): "recipient.lookup",
        ("post", "/api/v1/parcels"): "parcel.deposit",
        ("get", "/api/v1/parcels"): "parcel.list",
        ("get", "/api/v1/parcels/{id}"): "parcel.read",
        ("post", "/api/v1/parcels/{id}/reopen"): "parcel.courier_act",
        ("post", "/api/v1/parcels/{id}/cancel"): "parcel.courier_act",
        ("post", "/api/v1/parcels/{id}/retrieve"): "parcel.courier_act",
        ("post", "/api/v1/parcels/{id}/pickup"): "parcel.pickup",
        ("get", "/api/v1/parcels/{id}/code"): "parcel.code",
        ("get", "/api/v1/parcels/{id}/qr.png"): "parcel.code",
        ("get", "/api/v1/courier/pass"): "courier.pass",
        ("get", "/api/v1/notifications"): "notification.list",
        ("post", "/api/v1/notifications/{id}/read"): "notification.read",
    }
    for (method, path), action in actions.items():
        assert paths[path][method]["x-policy-action"] == action, path
    deposit = paths["/api/v1/parcels"]["post"]
    assert deposit["requestBody"]["required"] is True
    assert any(p["name"] == "Idempotency-Key" for p in deposit["parameters"])
    assert {"202", "409", "422"} <= set(deposit["responses"])
    body = schemas["DepositBody"]
    assert set(body["properties"]) == {"bank", "unit", "phone", "size", "tracking"}
    assert body["additionalProperties"] is False
    parcel_id = paths["/api/v1/parcels/{id}"]["get"]["parameters"][0]
    assert parcel_id["schema"] == {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    for suffix in ("pickup", "code", "qr.png"):
        ops = paths[f"/api/v1/parcels/{{id}}/{suffix}"]
        assert {"409", "429"} <= set(next(iter(ops.values()))["responses"]), suffix
    pass_params = {p["name"] for p in paths["/api/v1/courier/pass"]["get"]["parameters"]}
    assert pass_params == {"gateway", "format"}
    # no parcel view or recipient carries a code, a name or a phone number
    for model in ("ParcelOut", "RecipientOut", "BankOut", "DepositOut", "PickupOut"):
        assert set(schemas[model]["properties"]).isdisjoint({"code", "phone", "code_n"}), model
    for model in ("ParcelOut", "RecipientOut"):
        assert "name" not in schemas[model]["properties"]
    assert set(schemas["RecipientOut"]["properties"]) == {"unit", "phone_masked"}
    assert set(schemas["CodeOut"]["properties"]) == {"code", "qr_token", "expires_at"}
    read = paths["/api/v1/notifications/{id}/read"]["post"]
    assert read["parameters"][0]["schema"] == {"type": "string", "pattern": "^[1-9][0-9]{0,15}$"}
    assert "requestBody" not in read
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotificationOut"
    }
    assert "unread" in schemas["NotificationsOut"]["required"]
