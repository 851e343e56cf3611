"""``/docs`` (Swagger UI) and ``/redoc`` with every file they load served by the service itself.

FastAPI's default pages load their JavaScript, CSS and favicon from public CDNs, so without internet
they stay blank. This follows FastAPI's self-hosting recipe (the app is built with ``docs_url=None``
and ``redoc_url=None``; these routes call ``get_swagger_ui_html`` / ``get_redoc_html`` with local
URLs). The files come from the ``fastapi-standalone-docs`` package (pinned in the lock): Swagger UI's
``swagger-ui-dist`` and ReDoc's standalone bundle, whose side-menu logo it points at
``/redoc/logo-mini.svg``. Google Fonts stay off: the page makes no request outside the service.

The routes are plain Starlette routes like FastAPI's own docs routes: not in the OpenAPI document,
guarded by ``auth.DocsGuard`` (public unless ``public_docs`` is off), assets included.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from model_runner.service.auth import DOCS_ASSETS, DOCS_PATHS

STATIC = Path(fastapi_standalone_docs.__file__).resolve().parent / "static"
SWAGGER_JS = "swagger/swagger-ui-bundle.js"
SWAGGER_CSS = "swagger/swagger-ui.css"
REDOC_JS = "redoc/redoc.standalone.js"
REDOC_LOGO = "redoc/logo-mini.svg"
FAVICON = "fastapi/favicon.png"
REDOC_LOGO_PATH = "/redoc/logo-mini.svg"  # where the packaged ReDoc bundle looks for its logo


def missing_assets() -> list[str]:
    names = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, REDOC_LOGO, FAVICON)
    return [name for name in names if not (STATIC / name).is_file()]


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, its OAuth2 redirect page, ``/redoc`` and the assets under ``DOCS_ASSETS``."""
    if missing := missing_assets():
        raise RuntimeError(f"the docs' assets are missing from {STATIC}: {', '.join(missing)}")
    pages = {"/docs", "/redoc", REDOC_LOGO_PATH, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    if not pages <= DOCS_PATHS:  # the auth rules know the docs by DOCS_PATHS
        raise RuntimeError(f"docs pages outside auth.DOCS_PATHS: {sorted(map(str, pages - DOCS_PATHS))}")

    def root(request: Request) -> str:  # behind a proxy that strips a prefix, as FastAPI's own pages
        return request.scope.get("root_path", "").rstrip("/")

    def asset(request: Request, name: str) -> str:
        return f"{root(request)}{DOCS_ASSETS}/{name}"

    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=root(request) + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root(request) + app.swagger_ui_oauth2_redirect_url,
            swagger_js_url=asset(request, SWAGGER_JS),
            swagger_css_url=asset(request, SWAGGER_CSS),
            swagger_favicon_url=asset(request, FAVICON),
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=root(request) + app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, REDOC_JS),
            redoc_favicon_url=asset(request, FAVICON),
            with_google_fonts=False,
        )

    async def redoc_logo(_: Request) -> FileResponse:
        return FileResponse(STATIC / REDOC_LOGO, media_type="image/svg+xml")

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(app.swagger_ui_oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.add_route(REDOC_LOGO_PATH, redoc_logo, include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=STATIC), name="docs-assets")
