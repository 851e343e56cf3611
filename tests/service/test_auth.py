"""The auth matrix: every route and method of the app, enumerated from ``app.routes``, against the
explicit public allow-list; reads take the read or the admin token, writes only the admin token."""

from __future__ import annotations

import logging
import re

import psycopg
import pytest
from fastapi.routing import APIRoute

from model_runner.service.auth import PUBLIC_PATHS, READ_POSTS
from tests.service.conftest import ADMIN_TOKEN, READ_TOKEN, serve

WRONG = "wrong-token-that-must-not-leak-42"
JOB = "00000000-0000-0000-0000-000000000000"


def api_routes(routes) -> list[APIRoute]:
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # FastAPI keeps included routers as one entry
            found += api_routes(route.original_router.routes)
    return found


def operations(app) -> list[tuple[str, str, str]]:
    """(method, concrete path, path template) of every API route."""
    ops = []
    for route in api_routes(app.routes):
        path = re.sub(r"\{job_id\}", JOB, route.path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            ops.append((method, path, route.path))
    return ops


def is_write(method: str, template: str) -> bool:
    return method != "GET" and template not in READ_POSTS


def test_the_matrix_covers_the_routes_we_know(live):
    templates = {t for _, _, t in operations(live.app)}
    assert {"/train", "/model/reload", "/inference", "/drift", "/review", "/tweets"} <= templates
    assert templates >= PUBLIC_PATHS


def test_only_the_allow_list_answers_without_a_token(live, caplog):
    caplog.set_level(logging.DEBUG)
    with live.client(token=None) as c:
        for method, path, template in operations(live.app):
            r = c.request(method, path, json={})
            if template in PUBLIC_PATHS:
                assert r.status_code in (200, 503), (method, path, r.text)
                continue
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.json()["error"]["type"] == "unauthorized" and r.headers["WWW-Authenticate"]
            r = c.request(method, path, json={}, headers={"Authorization": f"Bearer {WRONG}"})
            assert r.status_code == 403, (method, path, r.text)
            assert WRONG not in r.text and ADMIN_TOKEN not in r.text
            r = c.request(method, path, json={}, headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
            assert r.status_code == 401, (method, path)
    assert WRONG not in caplog.text and ADMIN_TOKEN not in caplog.text and READ_TOKEN not in caplog.text


def test_the_read_token_reads_and_never_writes(live):
    with live.client(token=READ_TOKEN) as c:
        for method, path, template in operations(live.app):
            if template in PUBLIC_PATHS:
                continue
            r = c.request(method, path, json={})
            if is_write(method, template):
                assert r.status_code == 403, (method, path, r.text)
                assert "admin token" in r.json()["error"]["message"]
            else:
                assert r.status_code not in (401, 403), (method, path, r.text)


def test_the_admin_token_passes_everywhere(live):
    with live.client(token=ADMIN_TOKEN) as c:
        r = c.post("/model/reload")
        assert r.status_code == 200, r.text
        assert {res["task"] for res in r.json()["results"]} == {"sentiment", "emotion"}
        assert c.post("/inference", json={"messages": ["hi"]}).status_code == 200
        assert c.get("/model").status_code == 200


def _row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_reads_write_nothing(live, service_settings):
    """Every GET, with and without a token: not one row changes anywhere."""
    url = service_settings.database_url.get_secret_value()
    # what earlier tests' /inference answers left in the served-traffic queue lands first (the
    # recorder writes in the background): from here on nothing may write
    while live.state.served.flush_now():
        pass
    before = _row_counts(url)
    with live.client(token=READ_TOKEN) as c, live.client(token=None) as anon:
        for method, path, _ in operations(live.app):
            if method == "GET":
                assert c.get(path).status_code < 500, path
                anon.get(path)
    assert _row_counts(url) == before


def test_docs_are_public_by_default_and_can_be_closed(service_settings):
    with serve(service_settings) as server, server.client(token=None) as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/metrics").status_code == 401
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert any(s.get("scheme") == "bearer" for s in schemes.values())
    closed = service_settings.model_copy(update={"public_docs": False, "public_metrics": True})
    with serve(closed) as server, server.client(token=None) as c:
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/docs").status_code == 401
        assert c.get("/metrics").status_code == 200
        assert c.get("/openapi.json", headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200


def test_without_a_configured_token_one_is_generated_not_left_open(service_settings, tmp_path):
    settings = service_settings.model_copy(
        update={
            "api_token": None,
            "inference_token": None,
            "home": tmp_path / "home",
            # the champion stays where the fixture trained it
            "mlflow_tracking_uri": service_settings.tracking_uri(),
        }
    )
    with serve(settings) as server, server.client(token=None) as c:
        assert c.post("/inference", json={"messages": ["hi"]}).status_code == 401
        token_file = tmp_path / "home" / "api-token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        r = c.post("/inference", json={"messages": ["hi"]}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("Bearer nope", 403), ("Bearer infer-key", 200)])
def test_inference_can_be_keyed_by_its_own_token(service_settings, header, status):
    from pydantic import SecretStr

    settings = service_settings.model_copy(update={"inference_token": SecretStr("infer-key")})
    with serve(settings) as server, server.client(token=None) as c:
        headers = {"Authorization": header} if header else {}
        r = c.post("/inference", json={"messages": ["hi"]}, headers=headers)
        assert r.status_code == status, r.text
        # the admin token may call every route, reads included
        assert c.post("/inference", json={"messages": ["hi"]}, headers=server.admin()).status_code == 200
        # the read token cannot write
        r = c.post("/model/reload", headers={"Authorization": "Bearer infer-key"})
        assert r.status_code == 403
