"""Which runtime serves an fp32 model: the ONNX Runtime twin when it matches torch, torch otherwise."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.heads import build_head
from model_runner.modeling.onnx_backend import OnnxTweetClassifier
from model_runner.service import served
from model_runner.service.served import CANARY_TEXTS, load_folder

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def folder(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(3)
    encoder = AutoModel.from_pretrained(tiny_bert, use_safetensors=True)
    clf = TweetClassifier(
        encoder,
        AutoTokenizer.from_pretrained(tiny_bert),
        build_head("linear", 32, 3),
        LABELS,
        max_length=32,
        meta={"task": "sentiment", "serving": "fp32", "adapter": "linear"},
    )
    return clf.save(tmp_path / "model")


def test_fp32_model_is_served_by_onnx_runtime_with_torch_answers(folder):
    got = load_folder(folder, task="sentiment", name="m", version="1", runtime="onnxruntime")
    assert isinstance(got.model, OnnxTweetClassifier)
    assert got.describe()["runtime"] == "onnxruntime" and got.describe()["serving"] == "fp32"
    torch_model = TweetClassifier.load(folder)
    texts = [*CANARY_TEXTS, "good morning", "awful"]
    np.testing.assert_allclose(got.model.predict_proba(texts), torch_model.predict_proba(texts), atol=1e-5)


def test_torch_runtime_setting_keeps_torch(folder):
    got = load_folder(folder, task="sentiment", name="m", version="1", runtime="torch")
    assert not isinstance(got.model, OnnxTweetClassifier)
    assert got.describe()["runtime"] == "torch"


def test_a_failing_export_falls_back_to_torch_with_a_warning(folder, monkeypatch, caplog):
    def broken(model, **_):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr("model_runner.modeling.onnx_backend.to_onnx_runtime", broken)
    with caplog.at_level(logging.WARNING, logger=served.__name__):
        got = load_folder(folder, task="sentiment", name="m", version="1", runtime="onnxruntime")
    assert got.describe()["runtime"] == "torch"
    assert "exporter exploded" in caplog.text


def test_a_twin_that_answers_differently_is_dropped(folder, monkeypatch, caplog):
    real = OnnxTweetClassifier.forward

    def skewed(self, input_ids, attention_mask):
        return real(self, input_ids, attention_mask) + torch.tensor([0.0, 0.0, 0.5])

    monkeypatch.setattr(OnnxTweetClassifier, "forward", skewed)
    with caplog.at_level(logging.WARNING, logger=served.__name__):
        got = load_folder(folder, task="sentiment", name="m", version="1", runtime="onnxruntime")
    assert got.describe()["runtime"] == "torch"
    assert "differs from torch" in caplog.text


def test_auto_measures_the_candidates_and_describes_the_choice(folder):
    got = load_folder(folder, task="sentiment", name="m", version="1", runtime="auto", probe_texts=16)
    body = got.describe()
    selection = body["runtime_selection"]
    assert selection["requested"] == "auto" and selection["probe"] == "canaries"  # no probe.json here
    assert body["serving_runtime"] == selection["name"] == got.choice.name
    assert body["runtime"] == ("onnxruntime" if isinstance(got.model, OnnxTweetClassifier) else "torch")
    assert got.quantized == (body["precision"] == "int8")
    names = [row["name"] for row in selection["candidates"]]
    assert names[0] == "torch" and {"onnxruntime", "torch-int8", "onnxruntime-int8"} <= set(names)


def test_a_forced_runtime_that_misses_the_gate_serves_fp32_torch(folder, caplog):
    # min_agreement above 1 cannot be met by any runtime but fp32 torch itself
    with caplog.at_level(logging.WARNING):
        got = load_folder(
            folder, task="sentiment", name="m", version="1", runtime="torch-bf16", min_agreement=1.01
        )
    assert got.describe()["serving_runtime"] == "torch" and got.describe()["precision"] == "fp32"
    assert "torch-bf16 was asked for but misses the gate" in caplog.text
