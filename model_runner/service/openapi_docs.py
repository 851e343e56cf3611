"""The OpenAPI document says what the service really does, for every operation in one place:

- which bearer token it takes (``security``): ``readToken`` or ``adminToken`` for reads, only
  ``adminToken`` for writes, none for the public routes (the rule of ``auth.authorize``);
- which error answers it can give, each with the one error body the handlers emit
  (``errors.ErrorBody``): 401/403 where a token is needed, 413 where a body is read, 422 where
  parameters or a body are validated, 404 with a path parameter, and the 409/429/503 of the tables
  below. FastAPI's own 422 schema (``HTTPValidationError``) is replaced: the service never sends it.

Explicit ``responses`` of a route keep their description and, when they name a model (``/health/ready``'s
503 answers a ``Readiness``), their schema.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from model_runner.service.auth import (
    ADMIN_SCHEME,
    READ_SCHEME,
    bearer_scheme,
    is_public,
    needs_admin,
    read_scheme,
)
from model_runner.service.errors import ErrorBody
from model_runner.settings import Settings

ERROR_SCHEMA = ErrorBody.__name__
ERROR_REF = f"#/components/schemas/{ERROR_SCHEMA}"
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

DESCRIPTIONS = {
    401: "No bearer token: send `Authorization: Bearer <token>`.",
    403: "The token is not valid, or it is the read token on a route that needs the admin token.",
    404: "Not found.",
    409: "Conflicts with the current state (the body says with what, e.g. `job_id`).",
    413: "The request body is larger than `max_body_bytes` (or holds too many items).",
    422: "Invalid request: a parameter or the body fails validation, or names something unknown.",
    429: "Overloaded: retry after `Retry-After` seconds.",
    503: "Not available right now (the database, or no model loaded): retry after `Retry-After` seconds.",
}
HEADERS = {
    401: {"WWW-Authenticate": '`Bearer realm="tweetpulse"`'},
    429: {"Retry-After": "Seconds to wait before repeating the request."},
    503: {"Retry-After": "Seconds to wait before repeating the request."},
}
# FastAPI's placeholders: a route that states its own description keeps it
_DEFAULT_DESCRIPTIONS = {"", "Additional Response", "Validation Error"}

CONFLICTS = frozenset(
    {
        ("post", "/train"),
        ("post", "/train/{job_id}/cancel"),
        ("post", "/alerts/confirm"),
        ("post", "/alerts/release"),
    }
)
OVERLOADED = frozenset({("post", "/inference")})  # the batcher's admission control
# Protected operations that touch neither Postgres nor a served model: no 503. Every other one reads
# or writes the database (503 database_unavailable) or needs a loaded model (503 model_not_loaded).
NO_UNAVAILABLE = frozenset(
    {("get", "/tasks"), ("get", "/model/tasks"), ("get", "/model/versions"), ("post", "/model/reload")}
)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``, ``/docs``, ``/redoc``) return the document
    completed by ``document``; built once, on first use."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi


def document(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas[ERROR_SCHEMA] = error
    components["securitySchemes"] = {
        ADMIN_SCHEME: _scheme(bearer_scheme),
        READ_SCHEME: _scheme(read_scheme),
    }
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                _document_operation(item[method], method, path, settings)
    _drop_unused(schemas, ("HTTPValidationError", "ValidationError"), schema)
    return schema


def _scheme(scheme) -> dict[str, Any]:
    return scheme.model.model_dump(by_alias=True, exclude_none=True, mode="json")


def statuses(operation: dict[str, Any], method: str, path: str, settings: Settings) -> set[int]:
    """The error statuses ``method path`` can answer."""
    key = (method, path)
    public = is_public(path, settings)
    found = {int(s) for s in operation.get("responses", {}) if s.isdigit() and int(s) >= 400}
    if not public:
        found |= {401, 403}
        if key not in NO_UNAVAILABLE:
            found.add(503)
    if "requestBody" in operation:
        found |= {413, 422}
    if operation.get("parameters"):
        found.add(422)
    if "{" in path:
        found.add(404)
    if key in CONFLICTS:
        found.add(409)
    if key in OVERLOADED:
        found.add(429)
    return found


def _document_operation(operation: dict[str, Any], method: str, path: str, settings: Settings) -> None:
    if is_public(path, settings):
        operation.pop("security", None)
    elif needs_admin(method.upper(), path):
        operation["security"] = [{ADMIN_SCHEME: []}]
    else:
        operation["security"] = [{READ_SCHEME: []}, {ADMIN_SCHEME: []}]
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses(operation, method, path, settings)):
        answer = responses.setdefault(str(status), {})
        if answer.get("description", "") in _DEFAULT_DESCRIPTIONS:
            answer["description"] = DESCRIPTIONS.get(status, "Error.")
        json_content = answer.setdefault("content", {}).setdefault("application/json", {})
        ref = json_content.get("schema", {}).get("$ref")
        if ref is None or ref == _FASTAPI_VALIDATION:
            json_content["schema"] = {"$ref": ERROR_REF}
        for name, description in HEADERS.get(status, {}).items():
            answer.setdefault("headers", {}).setdefault(
                name, {"description": description, "schema": {"type": "string"}}
            )
    # the document lists statuses in order, as FastAPI does
    operation["responses"] = dict(sorted(responses.items(), key=lambda kv: (not kv[0].isdigit(), kv[0])))


def _drop_unused(schemas: dict[str, Any], names: tuple[str, ...], schema: dict[str, Any]) -> None:
    for name in names:
        if name in schemas:
            held = schemas.pop(name)
            if f'"#/components/schemas/{name}"' in json.dumps(schema):
                schemas[name] = held
