"""The ModelRunner client's retry and error policy, at the HTTP transport (httpx.MockTransport)."""

from __future__ import annotations

import httpx
import pytest
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import JobConflict, RunnerConfig, RunnerError


def client(handler, **config) -> tuple[ModelRunner, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request, len(seen))

    cfg = RunnerConfig("http://runner.test", token="s3cret-token", backoff_max_s=0.01, **config)
    return ModelRunner(cfg, transport=httpx.MockTransport(record)), seen


def error(status: int, type_: str = "x", headers: dict | None = None, **extra) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": type_, "message": f"m{status}", **extra}}, headers=headers
    )


def test_503_with_retry_after_is_retried_then_succeeds():
    runner, seen = client(
        lambda r, n: (
            error(503, headers={"Retry-After": "0"}) if n < 3 else httpx.Response(200, json={"tasks": {}})
        )
    )
    assert runner.served_tasks() == []
    assert len(seen) == 3


def test_client_errors_fail_at_once_with_the_service_message():
    runner, seen = client(lambda r, n: error(422, "invalid_request"))
    with pytest.raises(RunnerError) as info:
        runner.drift("sentiment", 7)
    assert (info.value.status, info.value.error_type, info.value.message) == (422, "invalid_request", "m422")
    assert len(seen) == 1


def test_retries_are_bounded():
    runner, seen = client(lambda r, n: error(502), retries=2)
    with pytest.raises(RunnerError, match="502"):
        runner.served_tasks()
    assert len(seen) == 3


def test_a_read_timeout_is_retried_only_for_idempotent_calls():
    def handler(request, n):
        raise httpx.ReadTimeout("slow", request=request)

    runner, seen = client(handler, retries=2)
    with pytest.raises(RunnerError, match="unreachable"):
        runner.training_job("j1")
    assert len(seen) == 3
    runner, seen = client(handler, retries=2)
    with pytest.raises(RunnerError, match="unreachable"):
        runner.start_training({"task": "sentiment"})  # POST /train may have started a job: no repeat
    assert len(seen) == 1


def test_connection_errors_are_retried_even_for_posts():
    def handler(request, n):
        if n == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(202, json={"job_id": "j9"})

    runner, seen = client(handler)
    assert runner.start_training({}) == "j9"
    assert len(seen) == 2


def test_the_token_goes_with_every_call_and_never_into_repr():
    # every route but health needs a token on the ModelRunner, reads included
    runner, seen = client(lambda r, n: httpx.Response(200, json={"tasks": {"sentiment": {"version": "1"}}}))
    runner.served_tasks()
    runner.request("POST", "/tweets", json={}, auth=True)
    assert [r.headers["authorization"] for r in seen] == ["Bearer s3cret-token"] * 2
    assert "s3cret" not in repr(runner.config)


def test_a_conflict_names_the_running_job():
    runner, _ = client(lambda r, n: error(409, "conflict", job_id="running-1"))
    with pytest.raises(JobConflict) as info:
        runner.start_training({})
    assert info.value.job_id == "running-1"


def test_no_token_configured_is_a_clear_error_without_a_request():
    seen = []
    runner = ModelRunner(RunnerConfig("http://x"), transport=httpx.MockTransport(lambda r: seen.append(r)))
    with pytest.raises(RunnerError, match="API token"):
        runner.store_tweets("q", [])
    assert seen == []
