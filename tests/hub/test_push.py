"""push_model against a local fake Hub: the real huggingface_hub client does every HTTP call.

The repo gets the portable export at its root (ONNX, tokenizer with the cleaning, config with id2label,
the card) and the native model folder under ``tweetpulse/``; the card itself is tested in test_card.py
and the root's loading by a plain client in test_outside_client.py."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http as hf_http

from model_runner.hub.card import render_model_card
from model_runner.hub.push import HubPushError, PushResult, push_model
from model_runner.modeling.export import build_export
from tests.hub.fake_hub import FakeHub

TOKEN = "hf_fakeTOKEN0123456789abcdefSECRET"
REPO = "tweetpulse/sentiment"
LABELS = ["negative", "neutral", "positive"]
MODEL_FILES = {
    "config.json",
    "model.safetensors",
    "head.safetensors",
    "label_map.json",
    "tweetpulse.json",
    "checksums.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
# the portable export at the repo root (the card is generated at each push)
ROOT_FILES = {
    "config.json",
    "model.onnx",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
}
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}

INFO = {
    "task": "sentiment",
    "model_name": "tweetpulse-sentiment",
    "version": "7",
    "labels": LABELS,
    "metric": "macro_recall",
    "metrics": {
        "macro_recall": 0.71234,
        "macro_recall_ci": [0.69012, 0.73456],
        "macro_f1": 0.70111,
        "accuracy": 0.72,
        "n": 1200,
        "per_class": {
            "negative": {"precision": 0.7, "recall": 0.68, "f1": 0.69, "support": 400},
            "neutral": {"precision": 0.66, "recall": 0.7, "f1": 0.68, "support": 500},
            "positive": {"precision": 0.8, "recall": 0.75, "f1": 0.774, "support": 300},
        },
    },
    "data": {
        "source": "/srv/private/data/tweets.csv",
        "rows_in": 5000,
        "rows_out": {"train": 3600, "eval": 1200},
        "class_balance": {"train": {"negative": 1200, "neutral": 1500, "positive": 900}},
        "dataset_hash": "abc123def456",
        "eval_source": "stratified_split",
    },
    "base_model": {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "sha256:0011223344"},
    "adapter": "lora",
    "hyperparameters": {"lr": 0.0005, "epochs": 3},
    "serving": "int8",
    "mlflow_run_id": "run-42",
}


def _classifier(tiny_bert: Path, kind: str = "linear"):
    from transformers import AutoModel, AutoTokenizer

    from model_runner.modeling.classifier import TweetClassifier
    from model_runner.modeling.heads import build_head

    encoder = AutoModel.from_pretrained(tiny_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    head = build_head(kind, encoder.config.hidden_size, len(LABELS), hidden=16)
    return TweetClassifier(encoder, tokenizer, head, LABELS, max_length=64, meta={"serving": "int8"})


@pytest.fixture(scope="module")
def model_folder(tiny_bert, tmp_path_factory) -> Path:
    folder = _classifier(tiny_bert).save(tmp_path_factory.mktemp("model") / "model")
    # files that must stay local: a stale card, an editor backup, training state
    (folder / "README.md").write_text("old card")
    (folder / "notes.txt~").write_text("scratch")
    (folder / "optimizer.pt").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture(scope="module")
def export_folder(model_folder, tmp_path_factory) -> Path:
    """The export of ``model_folder`` (its stray files copied along into tweetpulse/), built once."""
    out = build_export(model_folder, tmp_path_factory.mktemp("export") / "export", version="7")
    (out / "model.safetensors").write_bytes(b"planted")  # never pushed: not in the root's allow-list
    (out / "notes.txt").write_text("scratch")
    return out


@pytest.fixture
def hub(monkeypatch):
    # the Xet protocol needs a CAS server the fake does not have; the legacy LFS path is what it speaks
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # otherwise building the User-Agent fetches an "agent harnesses" list from huggingface.co itself
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    fake = FakeHub(TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    return caplog


def _push(hub: FakeHub, folder: Path, **kwargs) -> PushResult:
    args = {"repo_id": REPO, "token": TOKEN, "card_info": INFO, "endpoint": hub.url, "timeout_s": 10, **FAST}
    return push_model(folder, **(args | kwargs))


def test_push_commits_the_export_and_the_native_folder_in_one_commit(hub, model_folder, logs):
    factory_before = hf_http._GLOBAL_CLIENT_FACTORY
    result = _push(hub, model_folder)  # a native folder: exported on the way

    repo = hub.repos[REPO]
    assert repo.private is True
    assert len(repo.commits) == 1, "one commit, so the repo never holds half a model"
    native = {f"tweetpulse/{name}" for name in MODEL_FILES}  # transformers 5 writes no vocab.txt
    assert set(repo.files) == ROOT_FILES | native | {"README.md"}
    assert "model.safetensors" not in repo.files, "a plain pipeline would load a random head from it"
    for name in MODEL_FILES:
        assert repo.files[f"tweetpulse/{name}"] == (model_folder / name).read_bytes(), name
    config = json.loads(repo.files["config.json"])
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["tweetpulse"]["version"] == "7"
    assert {"tweetpulse/model.safetensors", "tweetpulse/head.safetensors"} <= repo.lfs_paths
    assert "tokenizer.json" not in repo.lfs_paths

    card = repo.files["README.md"].decode()
    assert card == render_model_card({**INFO, "max_length": 64, "repo_id": REPO})
    assert "0.7123" in card and "[0.6901, 0.7346]" in card and "95% CI" in card
    assert json.loads(repo.files["tweetpulse/tweetpulse.json"])["labels"] == LABELS

    assert result == PushResult(
        REPO,
        repo.commits[0]["oid"],
        f"{hub.url}/{REPO}/commit/{repo.commits[0]['oid']}",
        sorted(ROOT_FILES | native | {"README.md"}),
    )
    assert repo.commits[0]["summary"] == "Upload tweetpulse-sentiment model version 7"

    api_calls = [c for c in hub.calls if c.route != "lfs_upload"]
    assert {c.route for c in api_calls} >= {"create", "validate_yaml", "preupload", "lfs_batch", "commit"}
    assert all(c.authorization == f"Bearer {TOKEN}" for c in api_calls)
    assert not hub.calls_to("unexpected")
    assert TOKEN not in logs.text and TOKEN not in repr(result)
    assert any(REPO in r.getMessage() and result.commit_id in r.getMessage() for r in logs.records)
    assert hf_http._GLOBAL_CLIENT_FACTORY is factory_before, "the timeout client factory leaked"


def test_an_export_folder_is_pushed_as_it_is_with_a_fresh_card(hub, export_folder):
    _push(hub, export_folder)
    repo = hub.repos[REPO]
    assert set(repo.files) == ROOT_FILES | {f"tweetpulse/{n}" for n in MODEL_FILES} | {"README.md"}
    assert repo.files["model.onnx"] == (export_folder / "model.onnx").read_bytes()
    assert repo.files["README.md"].decode() == render_model_card({**INFO, "max_length": 64, "repo_id": REPO})


def test_transient_503_on_each_step_is_retried(hub, export_folder, logs):
    hub.fail_next("create", 2, status=503)
    hub.fail_next("commit", 1, status=502)
    result = _push(hub, export_folder, retries=3)

    assert [c.status for c in hub.calls_to("create")] == [503, 503, 200]
    assert [c.status for c in hub.calls_to("commit")] == [502, 200]
    assert result.commit_id == hub.repos[REPO].commits[-1]["oid"]
    assert len(hub.repos[REPO].commits) == 1
    assert sum("retrying" in r.getMessage() for r in logs.records if r.name == "model_runner.hub.push") == 3
    assert TOKEN not in logs.text


@pytest.mark.parametrize(
    ("retry_after", "max_backoff_s", "min_gap", "max_gap"), [("1", 5.0, 0.9, 4.0), ("3600", 0.2, 0.15, 3.0)]
)
def test_429_honours_retry_after_up_to_the_cap(
    hub, export_folder, retry_after, max_backoff_s, min_gap, max_gap
):
    hub.fail_next("create", 1, status=429, retry_after=retry_after)
    _push(hub, export_folder, backoff_s=0.01, max_backoff_s=max_backoff_s)

    first, second = hub.calls_to("create")
    assert (first.status, second.status) == (429, 200)
    assert min_gap <= second.at - first.at <= max_gap


def test_persistent_failure_raises_after_retries_plus_one_attempts(hub, export_folder, logs):
    hub.fail_next("commit", 10, status=503)
    with pytest.raises(HubPushError) as caught:
        _push(hub, export_folder, retries=2)

    assert len(hub.calls_to("commit")) == 3
    message = str(caught.value)
    assert "commit" in message and "3 attempt" in message and "503" in message
    assert TOKEN not in message and TOKEN not in logs.text
    # the httpx error holds the request and its Authorization header: it must not travel with ours
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert not hub.repos[REPO].commits


def test_bad_token_fails_fast_without_retries(hub, export_folder, logs):
    wrong = "hf_wrongTOKENxyz987654321"
    with pytest.raises(HubPushError) as caught:
        _push(hub, export_folder, token=wrong, retries=3)

    assert [c.status for c in hub.calls_to("create")] == [401]
    assert not hub.calls_to("commit") and not hub.repos
    assert "401" in str(caught.value) and "server said: fake hub says 401" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in logs.text
    assert hub.calls_to("create")[0].authorization == f"Bearer {wrong}"


@pytest.mark.parametrize("status", [403, 422])
def test_client_errors_on_commit_are_not_retried(hub, export_folder, status):
    hub.fail_next("commit", 1, status=status)
    with pytest.raises(HubPushError, match=str(status)):
        _push(hub, export_folder, retries=3)
    assert len(hub.calls_to("commit")) == 1


def test_timeout_applies_and_a_timed_out_call_is_retried(hub, export_folder):
    hub.delay_next("create", 5.0)
    started = time.monotonic()
    with pytest.raises(HubPushError, match="Timeout"):
        _push(hub, export_folder, timeout_s=0.3, retries=0)
    assert time.monotonic() - started < 4.0, "without the timeout the client would wait for the slow server"

    hub.delay_next("create", 5.0)
    started = time.monotonic()
    result = _push(hub, export_folder, timeout_s=2.0, retries=1)
    assert time.monotonic() - started < 4.5
    assert result.commit_id == hub.repos[REPO].commits[-1]["oid"]


def test_corrupt_folder_is_refused_before_any_call(hub, model_folder, tmp_path):
    copy = Path(shutil.copytree(model_folder, tmp_path / "model"))
    (copy / "head.safetensors").write_bytes(b"not the trained head")
    with pytest.raises(HubPushError, match=r"head\.safetensors"):
        _push(hub, copy)
    assert not hub.calls


def test_an_export_with_an_altered_native_file_is_refused_before_any_call(hub, export_folder, tmp_path):
    copy = Path(shutil.copytree(export_folder, tmp_path / "export"))
    (copy / "tweetpulse" / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(HubPushError, match=r"model\.safetensors"):
        _push(hub, copy)
    assert not hub.calls
