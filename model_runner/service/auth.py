"""Bearer tokens: one for mutating routes, an optional one for inference; compared in constant time."""

from __future__ import annotations

import secrets

from fastapi import Request
from pydantic import SecretStr

from model_runner.service.errors import Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tweetpulse"'}


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_bearer(request: Request, expected: SecretStr | None, *, purpose: str, required: bool) -> None:
    if expected is None or not expected.get_secret_value():
        if required:
            raise Forbidden(f"{purpose} is disabled: the service has no API token configured")
        return
    token = _presented(request)
    if token is None:
        raise Unauthorized(f"{purpose} needs 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    if not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise Forbidden("the bearer token is not valid")


def require_admin(request: Request) -> None:
    """Dependency of every mutating route."""
    check_bearer(request, request.app.state.runner.settings.api_token, purpose="this route", required=True)


def require_inference(request: Request) -> None:
    check_bearer(
        request, request.app.state.runner.settings.inference_token, purpose="inference", required=False
    )
