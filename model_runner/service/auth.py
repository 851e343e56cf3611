"""Bearer tokens on every route but an explicit public allow-list; compared in constant time.

Two tokens: the admin token (``api_token``) may do everything; the read token (``inference_token``)
may call reads: every GET, and the two POSTs that only compute (``/inference``, ``/similar``). Public
without a token: ``/health/*``, plus the docs (pages, ``/openapi.json`` and their assets) and
``/metrics`` when settings say so. The OpenAPI document states the same rule per operation
(``openapi_docs.py``): the ``adminToken`` or ``readToken`` bearer scheme, or none. With no admin
token configured the service makes one at start-up and writes it to ``<home>/api-token`` (mode 0600),
as TorchServe does with its key file: an unconfigured service is never an open one.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from model_runner.service.errors import Forbidden, Unauthorized, error_response
from model_runner.settings import Settings

log = logging.getLogger(__name__)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tweetpulse"'}

PUBLIC_PATHS = frozenset({"/health/live", "/health/ready"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/redoc/logo-mini.svg", "/openapi.json"})
# Swagger UI's and ReDoc's files and the favicon, served by the service itself (docs_assets.py)
DOCS_ASSETS = "/docs/assets"
METRICS_PATH = "/metrics"
# POST routes that only compute an answer: the read token may call them.
READ_POSTS = frozenset({"/inference", "/similar"})

# Both tokens travel as ``Authorization: Bearer <token>``; the two schemes tell OpenAPI readers (and
# Swagger UI's Authorize dialog) which token an operation takes. ``bearer_scheme`` reads the header.
ADMIN_SCHEME, READ_SCHEME = "adminToken", "readToken"
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name=ADMIN_SCHEME,
    description="The admin token (TWEETPULSE_API_TOKEN): every route.",
)
read_scheme = HTTPBearer(
    auto_error=False,
    scheme_name=READ_SCHEME,
    description="The read token (TWEETPULSE_INFERENCE_TOKEN): GET routes, /inference and /similar"
    " (the admin token works there too).",
)


@dataclass(frozen=True)
class Tokens:
    admin: SecretStr
    read: SecretStr | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        admin = settings.api_token
        if admin is None or not admin.get_secret_value():
            admin = SecretStr(_generated_token(settings))
        read = settings.inference_token
        return cls(admin, read if read is not None and read.get_secret_value() else None)

    def is_admin(self, token: str) -> bool:
        return _same(token, self.admin)

    def may_read(self, token: str) -> bool:
        return self.is_admin(token) or (self.read is not None and _same(token, self.read))


def _same(token: str, expected: SecretStr) -> bool:
    return secrets.compare_digest(token.encode(), expected.get_secret_value().encode())


def _generated_token(settings: Settings) -> str:
    """The token of ``<home>/api-token``, created once (0600) when none is configured."""
    path = settings.resolved_home() / "api-token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    log.warning("no TWEETPULSE_API_TOKEN set: generated an admin token in %s", path)
    return token


def is_docs(path: str) -> bool:
    return path in DOCS_PATHS or path == DOCS_ASSETS or path.startswith(DOCS_ASSETS + "/")


def is_public(path: str, settings: Settings) -> bool:
    return (
        path in PUBLIC_PATHS
        or (settings.public_docs and is_docs(path))
        or (settings.public_metrics and path == METRICS_PATH)
    )


def needs_admin(method: str, path: str) -> bool:
    return method not in ("GET", "HEAD") and path not in READ_POSTS


def check(tokens: Tokens, presented: str | None, *, admin: bool) -> None:
    if presented is None:
        raise Unauthorized("this route needs 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    if admin and not tokens.is_admin(presented):
        if tokens.may_read(presented):
            raise Forbidden("this route needs the admin token; the read token only reads")
        raise Forbidden("the bearer token is not valid")
    if not admin and not tokens.may_read(presented):
        raise Forbidden("the bearer token is not valid")


def _presented(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    token = credentials.credentials.strip()
    return token or None


async def authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> None:
    """The app-wide dependency: every route goes through here, by its path template and method."""
    state = request.app.state.runner
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if is_public(path, state.settings):
        return
    check(state.tokens, _presented(credentials), admin=needs_admin(request.method, path))


def require_admin(request: Request) -> None:
    """Kept on mutating routes as a second, explicit statement of the rule."""
    state = request.app.state.runner
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    check(state.tokens, presented, admin=True)


class DocsGuard:
    """ASGI middleware: the docs and their assets (not API routes, so no dependency reaches them) need
    a read token unless ``public_docs``."""

    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and is_docs(scope["path"])
            and not is_public(scope["path"], self.state.settings)
        ):
            headers = dict(scope.get("headers") or [])
            raw = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = raw.partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" and token.strip() else None
            if presented is None or not self.state.tokens.may_read(presented):
                response = error_response(
                    401, "unauthorized", "the docs need 'Authorization: Bearer <token>'", _CHALLENGE
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
