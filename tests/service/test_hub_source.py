"""``model_source=hub``: an empty registry, a fake Hub speaking the real API, and a service that serves
what was pushed there, follows newer pushes without a restart and never serves a bad download."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from huggingface_hub import HfApi, constants
from safetensors.torch import load_file, save_file

from model_runner.hub import pull
from model_runner.hub.push import ALLOWED_PATTERNS, push_model
from tests.hub.fake_hub import FakeHub
from tests.service.conftest import ADMIN_TOKEN, make_settings, new_database, serve

TOKEN = "hf_fake_token_for_hub_source_0123"
REPO = "acme/tweetpulse-{task}"
SENTIMENT = "acme/tweetpulse-sentiment"
TEXTS = ["the new update is great", "train late again", "what a day"]


def _model(tiny_bert: Path, folder: Path, *, task: str, labels: list[str], kind: str, seed: int) -> Path:
    from transformers import AutoModel, AutoTokenizer

    from model_runner.modeling.classifier import TweetClassifier
    from model_runner.modeling.heads import build_head

    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(tiny_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    head = build_head(kind, encoder.config.hidden_size, len(labels), hidden=16)
    meta = {"task": task, "adapter": kind, "metrics": {"macro_recall": 0.5}}
    return TweetClassifier(encoder, tokenizer, head, labels, max_length=32, meta=meta).save(folder)


def _push(hub: FakeHub, folder: Path, *, task: str = "sentiment", version: str = "1") -> str:
    """Push with the project's push code; the commit sha. Until push writes the ``tweetpulse/``
    layout itself, the native folder is uploaded there beside it."""
    repo_id = REPO.format(task=task)
    labels = json.loads((folder / "tweetpulse.json").read_text())["labels"]
    info = {"task": task, "model_name": f"tweetpulse-{task}", "version": version, "labels": labels}
    push_model(
        folder,
        repo_id=repo_id,
        token=TOKEN,
        card_info=info,
        endpoint=hub.url,
        private=False,
        timeout_s=10,
        backoff_s=0.01,
        max_backoff_s=0.05,
    )
    if f"{pull.MODEL_SUBFOLDER}/checksums.json" not in hub.repos[repo_id].commits[-1]["files"]:
        HfApi(endpoint=hub.url, token=TOKEN).upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            path_in_repo=pull.MODEL_SUBFOLDER,
            allow_patterns=list(ALLOWED_PATTERNS),
            commit_message=f"tweetpulse-{task} version {version}",
        )
    return hub.head(repo_id)


def _upload_raw(hub: FakeHub, folder: Path, *, version: str) -> str:
    """Commit ``folder`` as the model folder without push's checks (push refuses a corrupt folder)."""
    HfApi(endpoint=hub.url, token=TOKEN).upload_folder(
        folder_path=folder,
        repo_id=SENTIMENT,
        path_in_repo=pull.MODEL_SUBFOLDER,
        allow_patterns=list(ALLOWED_PATTERNS),
        commit_message=f"tweetpulse-sentiment version {version}",
    )
    return hub.head(SENTIMENT)


@pytest.fixture
def hub(monkeypatch):
    # the fake has no Xet CAS; telemetry would fetch a list from huggingface.co while building headers
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    fake = FakeHub(TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def models(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-models")
    three = ["negative", "neutral", "positive"]
    out = {
        "a": _model(tiny_bert, root / "a", task="sentiment", labels=three, kind="linear", seed=1),
        "b": _model(
            tiny_bert, root / "b", task="sentiment", labels=["negative", "positive"], kind="mlp", seed=2
        ),
        "d": _model(tiny_bert, root / "d", task="sentiment", labels=three, kind="mlp", seed=4),
        "emotion": _model(
            tiny_bert, root / "e", task="emotion", labels=["joy", "anger"], kind="linear", seed=3
        ),
    }
    # an altered head whose checksums.json was not regenerated
    tampered = root / "tampered"
    shutil.copytree(out["d"], tampered)
    head = load_file(tampered / "head.safetensors")
    save_file({k: v + 1 for k, v in head.items()}, tampered / "head.safetensors")
    out["tampered"] = tampered
    return out


def _hub_settings(tmp_path, pg_server, tiny_bert, hub: FakeHub, **extra):
    # an EMPTY registry: nothing is trained; no Hub token: the repos are public
    return make_settings(
        tmp_path / "home",
        new_database(pg_server),
        tiny_bert,
        model_source="hub",
        hub_repo_id=REPO,
        hub_endpoint=hub.url,
        hub_timeout_s=5,
        hub_retries=0,
        hub_poll_s=0.3,
        serving_runtime="torch",
        startup_retry_max_s=1,
        **extra,
    )


def _wait(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _served_commit(c: httpx.Client, task: str = "sentiment") -> str | None:
    r = c.get("/model", params={"task": task})
    return r.json()["hub"]["commit"] if r.status_code == 200 else None


def test_serves_the_pushed_model_and_follows_new_pushes_without_a_restart(
    tmp_path, pg_server, tiny_bert, hub, models
):
    sha_a = _push(hub, models["a"], version="1")
    settings = _hub_settings(tmp_path, pg_server, tiny_bert, hub)
    with serve(settings) as server, server.client() as c:
        # the pushed model serves, and says where it came from
        r = c.post("/inference", json={"messages": TEXTS})
        assert r.status_code == 200, r.text
        assert {p["label"] for p in r.json()["predictions"]} <= {"negative", "neutral", "positive"}
        model = c.get("/model").json()
        assert model["labels"] == ["negative", "neutral", "positive"]
        assert model["hub"] == {"repo_id": SENTIMENT, "revision": "main", "commit": sha_a}
        assert model["source"] == f"hf://{SENTIMENT}@{sha_a}"
        # the registry version the export records (push writes it into the root config.json), and the commit
        root_config = hub.repos[SENTIMENT].trees[sha_a].get("config.json", b"{}")
        recorded = json.loads(root_config).get("tweetpulse", {}).get("version")
        assert model["version"] == (f"{recorded}@{sha_a[:12]}" if recorded else sha_a[:12])
        assert r.json()["model"]["version"] == model["version"]
        # a task whose repo does not exist yet: 503 "no model yet", like no champion
        r = c.post("/inference", json={"messages": TEXTS, "task": "emotion"})
        assert r.status_code == 503 and "no model yet" in r.text, r.text
        assert c.get("/health/ready").status_code == 200

        # a second, different push while a client keeps sending: swapped in, no request failed
        stop = threading.Event()
        seen: list[tuple[int, str]] = []

        def client() -> None:
            with server.client() as cc:
                while not stop.is_set():
                    rr = cc.post("/inference", json={"messages": TEXTS})
                    seen.append(
                        (rr.status_code, rr.json()["model"]["version"] if rr.status_code == 200 else "")
                    )

        sender = threading.Thread(target=client)
        sender.start()
        try:
            sha_b = _push(hub, models["b"], version="2")
            assert sha_b != sha_a
            _wait("the new commit to serve", lambda: _served_commit(c) == sha_b, timeout=30)
            time.sleep(0.5)
        finally:
            stop.set()
            sender.join()
        assert seen and all(status == 200 for status, _ in seen), seen[:5]
        versions = [v for _, v in seen]
        assert versions[0].endswith(sha_a[:12]) and versions[-1].endswith(sha_b[:12])
        assert versions == sorted(versions, key=lambda v: v.endswith(sha_b[:12])), "never back to the old one"
        assert c.get("/model").json()["labels"] == ["negative", "positive"]

        # the emotion repo appears: the poller picks it up
        sha_e = _push(hub, models["emotion"], task="emotion")
        _wait("the emotion model", lambda: _served_commit(c, "emotion") == sha_e, timeout=30)
        r = c.post("/inference", json={"messages": TEXTS, "task": "emotion"})
        assert r.status_code == 200 and {p["label"] for p in r.json()["predictions"]} <= {"joy", "anger"}

        # a tampered file (checksums.json does not match): refused, the old model keeps serving
        sha_t = _upload_raw(hub, models["tampered"], version="3")
        tasks = _wait(
            "the tampered commit to be refused",
            lambda: (
                "checksums.json" in ((t := c.get("/model/tasks").json())["errors"].get("sentiment") or "")
                and t
            ),
            timeout=30,
        )
        assert tasks["source"] == "hub" and tasks["hub"]["sentiment"]["latest_commit"] == sha_t
        assert (
            "head.safetensors" in tasks["errors"]["sentiment"] and sha_t[:12] in tasks["errors"]["sentiment"]
        )
        assert _served_commit(c) == sha_b
        r = c.post("/model/reload", headers=server.admin(), params={"task": "sentiment"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "model_invalid", r.text
        assert c.post("/inference", json={"messages": TEXTS}).status_code == 200

        # a corrupted transfer (the CDN's bytes differ from the LFS sha256 the Hub committed): refused
        head = (models["d"] / "head.safetensors").read_bytes()
        hub.corrupt_lfs(hashlib.sha256(head).hexdigest(), bytes(b ^ 0xFF for b in head))
        sha_d = _push(hub, models["d"], version="4")
        _wait(
            "the corrupt download to be refused",
            lambda: (
                "sha256" in (c.get("/model/tasks").json()["hub"]["sentiment"]["last_error"] or "")
                or "committed" in (c.get("/model/tasks").json()["errors"].get("sentiment") or "")
            ),
            timeout=30,
        )
        assert _served_commit(c) == sha_b
        # the CDN is fixed: the next poll downloads it again and it serves
        hub._served_lfs.clear()
        _wait("the repaired commit to serve", lambda: _served_commit(c) == sha_d, timeout=30)

        # a Hub outage: checks fail, the model keeps serving, the last good check time stays
        before = c.get("/model/tasks").json()["hub"]["sentiment"]["last_check"]
        hub.fail_next("repo_info", 10_000, status=503)
        _wait(
            "a failed check",
            lambda: c.get("/model/tasks").json()["hub"]["sentiment"]["last_error"],
            timeout=30,
        )
        for _ in range(5):
            r = c.post("/inference", json={"messages": TEXTS})
            assert r.status_code == 200 and r.json()["model"]["version"].endswith(sha_d[:12])
        r = c.post("/model/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 422 and "503" in r.text, r.text
        assert c.get("/model/tasks").json()["hub"]["sentiment"]["last_check"] >= before
        metrics = c.get("/metrics", headers=server.admin()).text
        assert 'tweetpulse_hub_last_check_timestamp_seconds{task="sentiment"}' in metrics
        hub.recover()
        _wait(
            "a good check after the outage",
            lambda: not c.get("/model/tasks").json()["hub"]["sentiment"]["last_error"],
            timeout=30,
        )
        assert c.get("/health/ready").status_code == 200
    # the service never opened an MLflow store
    assert not (settings.resolved_home() / "mlflow.db").exists()


def test_a_pinned_revision_serves_that_commit_and_a_restart_during_an_outage_serves_the_last_download(
    tmp_path, pg_server, tiny_bert, hub, models
):
    sha_a = _push(hub, models["a"], version="1")
    hub.tag(SENTIMENT, "v1", sha_a)
    settings = _hub_settings(tmp_path, pg_server, tiny_bert, hub, hub_revision="sentiment=v1,emotion=main")
    assert pull.revision_for(settings, "sentiment") == "v1"
    assert pull.revision_for(settings, "emotion") == "main"
    sha_b = _push(hub, models["b"], version="2")
    with serve(settings) as server, server.client() as c:
        model = c.get("/model").json()
        assert model["hub"] == {"repo_id": SENTIMENT, "revision": "v1", "commit": sha_a}
        time.sleep(1.0)  # several polls
        assert _served_commit(c) == sha_a
        # the tag moves: the service follows it
        hub.tag(SENTIMENT, "v1", sha_b)
        _wait("the moved tag", lambda: _served_commit(c) == sha_b, timeout=30)

    # a restart while the Hub is down: the last verified download of the same revision serves
    hub.fail_next("repo_info", 10_000, status=503)
    with serve(settings) as server, server.client() as c:
        assert _served_commit(c) == sha_b
        assert "503" in c.get("/model/tasks").json()["hub"]["sentiment"]["last_error"]
        assert c.post("/inference", json={"messages": TEXTS}).status_code == 200
        hub.recover()
        _wait(
            "a good check after the outage",
            lambda: not c.get("/model/tasks").json()["hub"]["sentiment"]["last_error"],
            timeout=30,
        )
        assert _served_commit(c) == sha_b


def test_pull_resolves_downloads_and_verifies_a_commit(tmp_path, hub, models, tiny_bert):
    from model_runner.settings import Settings

    sha_a = _push(hub, models["a"])
    _push(hub, models["b"], version="2")
    settings = Settings(
        home=tmp_path / "home", hub_repo_id=REPO, hub_endpoint=hub.url, hub_revision=sha_a[:10], hub_retries=0
    )
    commit = pull.resolve(settings, "sentiment")
    assert commit.sha == sha_a  # an older commit still resolves after a newer push
    lfs = {f.path for f in commit.model_files() if f.lfs_sha256}
    assert {"tweetpulse/model.safetensors", "tweetpulse/head.safetensors"} <= lfs
    folder = pull.download(settings, commit)
    assert folder == settings.resolved_home() / "hub" / "sentiment" / sha_a / "tweetpulse"
    assert (folder / "head.safetensors").read_bytes() == (models["a"] / "head.safetensors").read_bytes()
    # a local copy altered after the download does not verify
    (folder / "label_map.json").write_text("{}")
    with pytest.raises(pull.HubIntegrityError):
        pull.verify_against_hub(folder.parent, commit)
    # missing repo / revision: "no model yet", not an outage
    with pytest.raises(pull.HubModelMissing):
        pull.resolve(settings, "emotion")
    with pytest.raises(pull.HubModelMissing):
        pull.resolve(settings.model_copy(update={"hub_revision": "nope"}), "sentiment")
    hub.fail_next("repo_info", 1, status=503)
    with pytest.raises(pull.HubUnavailable):
        pull.resolve(settings, "sentiment")


def test_start_up_reconciliation_in_hub_mode_never_reads_the_registry(tmp_path):
    import asyncio
    from types import SimpleNamespace

    from model_runner.service import reconcile
    from model_runner.service.model_manager import ReloadOutcome, ReloadResult
    from model_runner.settings import Settings

    reads: list[str] = []

    class Registry:
        def champion(self, task):
            reads.append(task)
            raise AssertionError("the registry was read")

    settings = Settings(home=tmp_path, model_source="hub", hub_repo_id=REPO, hub_token="hf_x")
    merged: list = []
    job = SimpleNamespace(
        id="j1", task="sentiment", state="succeeded", model_version=None, result=reconcile.JobResult()
    )

    async def reload(task):
        return ReloadResult(task, "1@abc", None, "already serving", ReloadOutcome.SAME)

    state = SimpleNamespace(
        settings=settings,
        components=SimpleNamespace(registry=Registry()),
        models=SimpleNamespace(tasks=["sentiment"], get=lambda task: SimpleNamespace(version="1@abc")),
        reload=reload,
        jobs=SimpleNamespace(
            store=SimpleNamespace(recent=lambda n: [job], merge_result=lambda i, info: merged.append(info))
        ),
    )
    asyncio.run(reconcile.at_startup(state))
    assert not reads
    assert merged and merged[0].served_version == "1@abc" and merged[0].reconciled_at is not None


def test_the_space_sync_sets_the_variables_that_make_a_fresh_space_serve_the_hub(tmp_path, monkeypatch):
    import importlib.util

    import huggingface_hub

    spec = importlib.util.spec_from_file_location(
        "sync_space", Path(__file__).resolve().parents[2] / "infra" / "space" / "sync_space.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.space_variables(None) == {}
    assert module.space_variables("acme/tweetpulse-{task}", "v3") == {
        "TWEETPULSE_MODEL_SOURCE": "hub",
        "TWEETPULSE_HUB_REPO_ID": "acme/tweetpulse-{task}",
        "TWEETPULSE_HUB_REVISION": "v3",
    }
    calls: list[tuple] = []

    class Api:
        def __init__(self, **kwargs):
            pass

        def create_repo(self, *args, **kwargs):
            calls.append(("create_repo",))

        def add_space_variable(self, space_id, key, value, **kwargs):
            calls.append(("variable", key, value))

        def list_repo_files(self, *args, **kwargs):
            return []

        def create_commit(self, *args, **kwargs):
            calls.append(("commit",))
            return type("Info", (), {"commit_url": "url"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    variables = module.space_variables("acme/tweetpulse-{task}")
    module.sync("acme/space", tmp_path, commit="c0ffee", private=False, variables=variables)
    assert calls == [
        ("create_repo",),
        ("variable", "TWEETPULSE_MODEL_SOURCE", "hub"),
        ("variable", "TWEETPULSE_HUB_REPO_ID", "acme/tweetpulse-{task}"),
        ("commit",),
    ], "the variables are set before the commit whose build reads them"
