"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic models.

Nothing here is written by hand: paths, parameters, bodies, responses and security come from the
:class:`~cloud_sync.service.routes.RouteSpec` of every installed route, so the document cannot
drift from the code. Pydantic emits JSON Schema 2020-12, which OpenAPI 3.1 uses as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cloud_sync.service.routes import RouteSpec, RouteTable
from cloud_sync.service.state import ROUTES

__all__ = ["ErrorOut", "build_document", "table"]

table = RouteTable()

_TITLE = "Courtyard cloud API"
_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    401: "No valid bearer token (code `unauthenticated`), or wrong login (`invalid_credentials`)",
    404: "No such object, or the caller may not see it (code `not_found`: the two look the same)",
    409: "The Idempotency-Key was used for another request (code `idempotency_conflict`), or "
    "the object is not in a state that allows this (code `wrong_state`)",
    413: "The body is larger than the limit (code `payload_too_large`)",
    422: "The body, query or a header is invalid (codes `invalid_body`, `invalid_query`, "
    "`invalid_header`, `reason_required`)",
    429: "Too many failed logins or requests; see Retry-After (code `rate_limited`)",
}


class ErrorDetail(BaseModel):
    """A stable machine-readable code and a human-readable message."""

    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail


Mode = Literal["validation", "serialization"]


def _models(specs: Sequence[RouteSpec]) -> list[tuple[type[BaseModel], Mode]]:
    seen: dict[tuple[type[BaseModel], Mode], None] = {(ErrorOut, "serialization"): None}
    for spec in specs:
        if spec.body is not None:
            seen[(spec.body, "validation")] = None
        if spec.query is not None:
            seen[(spec.query, "validation")] = None
        if spec.response is not None:
            seen[(spec.response, "serialization")] = None
    return list(seen)


def _path_param(name: str, pattern: str | None) -> dict[str, Any]:
    if pattern == r"\d+":
        schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": (1 << 31) - 1}
    elif pattern:
        schema = {"type": "string", "pattern": f"^{pattern}$"}
    else:
        schema = {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_params(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "title"},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _error_statuses(spec: RouteSpec) -> list[int]:
    statuses = set(spec.errors)
    if not spec.public:
        statuses |= {401, 404}
    if spec.body is not None or spec.query is not None or spec.headers:
        statuses.add(422)
    if spec.body is not None:
        statuses.add(413)
    return sorted(statuses)


def build_document(specs: Sequence[RouteSpec]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``specs``."""
    refs, top = models_json_schema(_models(specs), ref_template=_REF)
    defs: dict[str, Any] = top.get("$defs", {})
    error_ref = refs[(ErrorOut, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        op: dict[str, Any] = {
            "operationId": spec.name,
            "summary": spec.summary,
            "security": [] if spec.public else [{"bearer": []}],
        }
        if spec.action is not None:
            op["x-policy-action"] = spec.action.value
        params = [_path_param(n, p) for n, p in spec.path_params()]
        if spec.query is not None:
            params += _query_params(refs[(spec.query, "validation")], defs)
        params += [
            {
                "name": h.name,
                "in": "header",
                "required": False,
                "description": h.description,
                "schema": {"type": "string", "maxLength": h.max_length},
            }
            for h in spec.headers
        ]
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {
                "required": bool(spec.body.model_json_schema().get("required")),
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
            }
        ok: dict[str, Any] = {"description": spec.summary}
        if spec.response is not None:
            ok["content"] = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
        responses: dict[str, Any] = {str(spec.status): ok}
        for status in _error_statuses(spec):
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        op["responses"] = responses
        paths.setdefault(spec.template, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": _TITLE,
            "version": _VERSION,
            "description": 'REST API of the Courtyard cloud. Errors: `{"error": {"code", '
            '"message"}}`; times are integer milliseconds since the epoch.',
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@table.route(
    "GET",
    "/api/v1/openapi.json",
    public=True,
    summary="This API's OpenAPI 3.1 document",
)
async def get_openapi(request: web.Request) -> web.Response:
    """The document for the routes installed in this application."""
    return web.json_response(build_document(request.app[ROUTES].specs))
