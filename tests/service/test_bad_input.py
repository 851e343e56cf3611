"""Fuzzed bad input: only 4xx answers, always the JSON error body, never a traceback."""

from __future__ import annotations

import json
import random

import pytest

CASES = {
    "empty body": dict(content=b"", headers={"content-type": "application/json"}),
    "null": dict(content=b"null", headers={"content-type": "application/json"}),
    "list body": dict(json=["a", "b"]),
    "messages is a string": dict(json={"messages": "hello"}),
    "messages has a number": dict(json={"messages": ["ok", 3]}),
    "messages has null": dict(json={"messages": [None]}),
    "messages has an object": dict(json={"messages": [{"text": "hi"}]}),
    "missing messages": dict(json={"task": "sentiment"}),
    "unknown field": dict(json={"messages": ["hi"], "temperature": 2}),
    "task is a number": dict(json={"messages": ["hi"], "task": 1}),
    "broken json": dict(content=b'{"messages": ["hi"', headers={"content-type": "application/json"}),
    "invalid utf-8": dict(
        content=b'{"messages": ["\xff\xfe bad"]}', headers={"content-type": "application/json"}
    ),
    "wrong content type": dict(content=b'{"messages": ["hi"]}', headers={"content-type": "text/plain"}),
    "form encoded": dict(data={"messages": "hi"}),
    "10,000 messages": dict(json={"messages": ["hello"] * 10_000}),
    "huge body": dict(
        content=b'{"messages": ["' + b"a" * 1_100_000 + b'"]}', headers={"content-type": "application/json"}
    ),
    "deeply nested": dict(content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_inference_input_gets_a_4xx_json_error(live, case):
    with live.client() as c:
        r = c.post("/inference", **CASES[case])
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"])
    assert "Traceback" not in r.text


def test_the_100k_character_text_is_answered_and_flagged(live):
    with live.client() as c:
        r = c.post("/inference", json={"messages": ["great " * 16_667]})
    assert r.status_code == 200 and r.json()["predictions"][0]["truncated"] is True


def test_random_json_never_gives_a_5xx(live):
    rng = random.Random(3)
    atoms = [None, True, 0, -1, 1.5, "", "x" * 50, [], {}, ["a"], {"messages": None}]

    def value(depth=0):
        if depth > 2 or rng.random() < 0.4:
            return rng.choice(atoms)
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        keys = ["messages", "task", "k", "text", rng.choice(["x", "dataset", "folds"])]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    with live.client() as c:
        for _ in range(150):
            body = json.dumps(value()).encode()
            for path in ("/inference", "/similar", "/model/reload", "/train"):
                r = c.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code < 500, (path, body, r.text[:200])
                if r.status_code >= 400:
                    assert "error" in r.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("DELETE", "/inference"), ("GET", "/train/not-a-uuid"), ("GET", "/model?task=x")],
)
def test_unknown_routes_and_ids_get_json_errors(live, method, path):
    with live.client() as c:
        r = c.request(method, path)
    assert r.status_code in (404, 405, 422) and r.json()["error"]["message"]
