"""Every mutating route needs the admin token (enumerated from the app, so a new route cannot slip by)."""

from __future__ import annotations

import logging

import pytest

from tests.service.conftest import ADMIN_TOKEN, serve

# Writes that are not mutations of the service: they only read with a POST body.
OPEN_POSTS = {"/inference", "/similar"}
WRONG = "wrong-token-that-must-not-leak-42"


def mutating_routes(app) -> list[tuple[str, str]]:
    routes = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            if method.upper() in {"POST", "PUT", "PATCH", "DELETE"} and path not in OPEN_POSTS:
                routes.append(
                    (method.upper(), path.replace("{job_id}", "00000000-0000-0000-0000-000000000000"))
                )
    return routes


def test_the_app_has_the_mutating_routes_we_expect(live):
    found = {p for _, p in mutating_routes(live.app)}
    assert {"/train", "/model/reload", "/train/00000000-0000-0000-0000-000000000000/cancel"} <= found


def test_every_mutating_route_refuses_a_missing_or_wrong_token(live, caplog):
    caplog.set_level(logging.DEBUG)
    with live.client() as c:
        for method, path in mutating_routes(live.app):
            r = c.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["type"] == "unauthorized" and r.headers["WWW-Authenticate"]
            r = c.request(method, path, json={}, headers={"Authorization": f"Bearer {WRONG}"})
            assert r.status_code == 403, (method, path, r.text)
            assert WRONG not in r.text and ADMIN_TOKEN not in r.text
            r = c.request(method, path, json={}, headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
            assert r.status_code == 401, (method, path)
    assert WRONG not in caplog.text and ADMIN_TOKEN not in caplog.text


def test_the_right_token_is_accepted(live):
    with live.client() as c:
        r = c.post("/model/reload", headers=live.admin())
    assert r.status_code == 200, r.text
    assert {res["task"] for res in r.json()["results"]} == {"sentiment", "emotion"}


def test_without_a_configured_token_mutations_are_disabled(service_settings):
    settings = service_settings.model_copy(update={"api_token": None})
    with serve(settings) as server, server.client() as c:
        r = c.post("/model/reload", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "no API token" in r.json()["error"]["message"]


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("Bearer nope", 403), ("Bearer infer-key", 200)])
def test_inference_can_be_keyed_by_its_own_token(service_settings, header, status):
    from pydantic import SecretStr

    settings = service_settings.model_copy(update={"inference_token": SecretStr("infer-key")})
    with serve(settings) as server, server.client() as c:
        headers = {"Authorization": header} if header else {}
        r = c.post("/inference", json={"messages": ["hi"]}, headers=headers)
        assert r.status_code == status, r.text
        # the admin token is not an inference token
        assert c.post("/inference", json={"messages": ["hi"]}, headers=server.admin()).status_code == 403
