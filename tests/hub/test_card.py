"""The model card: huggingface_hub's ModelCard with EvalResult metadata, the CI in the text, and a
"how to use" that runs (executed for real in test_outside_client.py)."""

from __future__ import annotations

import pytest
import yaml
from huggingface_hub import ModelCard

from model_runner.hub.card import PIP_LINE, build_model_card, extract_usage, render_model_card, usage_code
from tests.hub.test_push import INFO, REPO


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4 : card.index("\n---\n", 4)])


def test_card_metadata_is_model_card_data_with_eval_results():
    text = render_model_card({**INFO, "repo_id": REPO, "max_length": 64})
    card = ModelCard(text)  # what the Hub and huggingface_hub read back

    assert card.data.license == "apache-2.0" and card.data.language == "en"
    assert card.data.library_name == "optimum" and card.data.pipeline_tag == "text-classification"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"text-classification", "onnx", "tweets", "sentiment"} <= set(card.data.tags)
    results = {r.metric_name: (r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert results == {
        "Macro recall": ("recall", 0.7123),
        "Macro F1": ("f1", 0.7011),
        "Accuracy": ("accuracy", 0.72),
    }
    assert {r.task_type for r in card.data.eval_results} == {"text-classification"}
    assert card.data.eval_results[0].dataset_name == "sentiment held-out evaluation split"
    meta = _front_matter(text)
    assert meta["model-index"][0]["name"] == "tweetpulse-sentiment"


def test_card_text_keeps_the_substance():
    card = render_model_card({**INFO, "repo_id": REPO, "max_length": 64})
    assert "| Macro recall (primary) | 0.7123 | [0.6901, 0.7346] |" in card and "95% CI" in card
    assert "| neutral | 0.6600 | 0.7000 | 0.6800 | 500 |" in card
    assert "| train | 1200 | 1500 | 900 |" in card
    assert "`tweets.csv`" in card and "/srv/private" not in card
    assert "sarcasm" in card.lower() and "English" in card and "## Intended use" in card
    assert "None" not in card and "warm-up" not in card  # INFO has no warm-up
    assert "(64 tokens)" in card
    assert 'snapshot_download("tweetpulse/sentiment", allow_patterns=["tweetpulse/*"])' in card


def test_how_to_use_is_the_pip_line_and_the_pipeline_code():
    card = render_model_card({**INFO, "repo_id": REPO})
    assert PIP_LINE in card
    code = extract_usage(card)
    assert code == usage_code(REPO)
    lines = code.strip().splitlines()
    assert len(lines) == 4, "two imports, the pipeline, one call"
    assert f'ORTModelForSequenceClassification.from_pretrained("{REPO}")' in code
    assert f'AutoTokenizer.from_pretrained("{REPO}")' in code and "truncation=True" in code
    compile(code, "<card>", "exec")
    assert "model_runner" not in code


def test_card_names_the_encoder_warm_up():
    warm = {"task": "sentiment", "rows": 9284, "epochs": 2, "data_hash": "abc123"}
    card = render_model_card({**INFO, "task": "emotion", "repo_id": REPO, "warmup": warm})
    assert "fine-tuned first on 9284 tweets of the `sentiment` task (2 epochs" in card
    assert "`abc123`" in card


def test_card_names_the_teacher_of_a_distilled_student():
    teacher = {
        "base_id": "sentence-transformers/all-mpnet-base-v2",
        "base_revision": "e8c3b32edf5434bc2275fc9bab85f82640a19130",
        "train_rows": 7427,
        "data_hash": "def456",
    }
    card = render_model_card({**INFO, "repo_id": REPO, "teacher": teacher})
    assert "Distilled from a teacher: `sentence-transformers/all-mpnet-base-v2` (revision `e8c3b32e" in card
    assert "fine-tuned on 7427 tweets (dataset hash `def456`)" in card
    assert "Distilled" not in render_model_card({**INFO, "repo_id": REPO})


def test_card_with_partial_info_has_no_placeholders():
    card = render_model_card(
        {"task": "emotion", "labels": ["joy", "anger"], "base_model": {"id": "/models/local-bert"}}
    )
    meta = _front_matter(card)

    assert "model-index" not in meta and "base_model" not in meta, "a local path is not a Hub base_model"
    assert meta["license"] == "apache-2.0" and "emotion" in meta["tags"]
    assert "# tweetpulse emotion" in card and "`joy`, `anger`" in card
    assert "No evaluation results were recorded" in card
    assert "## Training data" not in card and "hyperparameters" not in card.lower()
    for garbage in ("None", "null", "nan", "{}", "[]"):
        assert garbage not in card.split("## How to use")[0], garbage
    assert "<owner>/<repo>" in card


@pytest.mark.parametrize("license_", [None, "mit"])
def test_build_model_card_is_a_model_card(license_):
    card = build_model_card({**INFO, "license": license_})
    assert isinstance(card, ModelCard)
    assert card.data.license == (license_ or "apache-2.0")
