"""A promoting training job pushes the champion to the Hub (a local fake speaking the Hub's API)."""

from __future__ import annotations

import json

import mlflow
import pytest
from pydantic import SecretStr

from tests.hub.fake_hub import FakeHub
from tests.service.conftest import make_dataset, serve, wait_for_job

HUB_TOKEN = "hf_fake_token_for_tests_123456"


@pytest.fixture
def hub(monkeypatch):
    # the worker is a child process: it reads these from the environment it inherits
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    fake = FakeHub(HUB_TOKEN).start()
    yield fake
    fake.stop()


def _settings(fresh_settings, hub, **extra):
    return fresh_settings.model_copy(
        update={
            "hub_token": SecretStr(HUB_TOKEN),
            "hub_repo_id": "acme/tweetpulse-{task}",
            "hub_endpoint": hub.url,
            **extra,
        }
    )


def test_a_promoted_model_is_pushed_with_its_card_and_the_commit_is_recorded(fresh_settings, hub, tmp_path):
    settings = _settings(fresh_settings, hub)
    data = str(make_dataset(fresh_settings.resolved_home() / "data" / "v2", seed=5))
    with serve(settings) as server, server.client() as c:
        job_id = c.post("/train", json={"dataset": data}, headers=server.admin()).json()["job_id"]
        job = wait_for_job(c, job_id)
    assert job["state"] == "succeeded" and job["promoted"], job
    assert job["hub"]["pushed"] is True and job["hub"]["repo_id"] == "acme/tweetpulse-sentiment"
    repo = hub.repos["acme/tweetpulse-sentiment"]
    # the native model folder is under tweetpulse/; the root holds the portable export and the card
    native = "tweetpulse/"
    assert {"README.md", "model.onnx", "config.json", "tokenizer.json"} <= set(repo.files)
    assert "model.safetensors" not in repo.files  # a bare encoder at the root would load silently
    assert {
        f"{native}{name}"
        for name in (
            "model.safetensors",
            "head.safetensors",
            "tokenizer.json",
            "label_map.json",
            "tweetpulse.json",
            "config.json",
        )
    } <= set(repo.files)
    assert json.loads(repo.files[f"{native}label_map.json"])["id2label"] == {
        "0": "negative",
        "1": "neutral",
        "2": "positive",
    }
    id2label = json.loads(repo.files["config.json"])["id2label"]
    assert id2label == {"0": "negative", "1": "neutral", "2": "positive"}
    card = repo.files["README.md"].decode()
    assert "Macro recall (primary)" in card and "95% CI" in card and "Model version: `2`" in card
    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.get_run(job["mlflow_run_id"])
    assert run.data.tags["hub.commit_id"] == job["hub"]["commit_id"]
    assert (
        client.get_model_version("tweetpulse-sentiment", "2").tags["hub.commit_id"] == job["hub"]["commit_id"]
    )
    # the token went to the Hub and nowhere else
    assert all(call.authorization == f"Bearer {HUB_TOKEN}" for call in hub.calls if call.route == "commit")
    assert HUB_TOKEN not in json.dumps(job) and HUB_TOKEN not in json.dumps(run.data.params)


def test_a_failed_push_is_reported_but_the_promotion_stands(fresh_settings, hub, tmp_path):
    settings = _settings(fresh_settings, hub, hub_retries=0)
    hub.fail_next("commit", n=5, status=503)
    data = str(make_dataset(fresh_settings.resolved_home() / "data" / "v2", seed=5))
    with serve(settings) as server, server.client() as c:
        job_id = c.post("/train", json={"dataset": data}, headers=server.admin()).json()["job_id"]
        job = wait_for_job(c, job_id)
        assert job["state"] == "succeeded" and job["promoted"] is True
        assert job["hub"]["pushed"] is False and "503" in job["hub"]["error"]
        assert HUB_TOKEN not in job["hub"]["error"]
        assert c.get("/model").json()["version"] == "2"  # hot-reloaded all the same
