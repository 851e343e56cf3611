"""load_for_serving: the one place that picks fp32 torch, int8 torch or the ONNX Runtime twin."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_runner.modeling.classifier import CONFIG_FILE, TweetClassifier, write_checksums
from model_runner.modeling.heads import build_head
from model_runner.modeling.onnx_backend import OnnxTweetClassifier
from model_runner.modeling.quantize import QuantizedTweetClassifier, is_quantized, quantize_int8
from model_runner.modeling.serving import (
    CANARY_TEXTS,
    ONNX_MAX_DIFF,
    canary_proba,
    load_for_serving,
    runtime_of,
)

LABELS = ["negative", "neutral", "positive"]
TEXTS = [*CANARY_TEXTS, "good morning", "awful", "the bus is late again"]


def _save(tiny_bert, folder, serving: str):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(5)
    clf = TweetClassifier(
        AutoModel.from_pretrained(tiny_bert, use_safetensors=True),
        AutoTokenizer.from_pretrained(tiny_bert),
        build_head("linear", 32, 3),
        LABELS,
        max_length=32,
        meta={"task": "sentiment", "serving": serving, "adapter": "linear"},
    )
    return clf.save(folder)


@pytest.fixture
def fp32_folder(tiny_bert, tmp_path):
    return _save(tiny_bert, tmp_path / "fp32", "fp32")


@pytest.fixture
def int8_folder(tiny_bert, tmp_path):
    return _save(tiny_bert, tmp_path / "int8", "int8")


def test_fp32_with_onnxruntime_serves_the_checked_twin(fp32_folder):
    model, choice = load_for_serving(fp32_folder, runtime="onnxruntime")
    assert isinstance(model, OnnxTweetClassifier) and runtime_of(model) == "onnxruntime"
    assert choice.runtime == "onnxruntime" and not choice.quantized and choice.precision == "fp32"
    assert choice.canary is not None and choice.canary.passed
    assert 0 <= choice.canary.max_diff <= ONNX_MAX_DIFF
    torch_model = TweetClassifier.load(fp32_folder)
    np.testing.assert_allclose(model.predict_proba(TEXTS), torch_model.predict_proba(TEXTS), atol=1e-5)


def test_torch_runtime_loads_the_saved_fp32_model(fp32_folder):
    model, choice = load_for_serving(fp32_folder)
    assert type(model) is TweetClassifier and runtime_of(model) == "torch"
    assert (choice.runtime, choice.quantized, choice.canary) == ("torch", False, None)
    np.testing.assert_array_equal(
        model.predict_proba(TEXTS), TweetClassifier.load(fp32_folder).predict_proba(TEXTS)
    )


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_int8_recorded_at_training_is_served_by_torch_whatever_the_runtime(int8_folder, runtime, monkeypatch):
    def never(*_, **__):
        raise AssertionError("an int8 model is never exported")

    monkeypatch.setattr("model_runner.modeling.onnx_backend.to_onnx_runtime", never)
    model, choice = load_for_serving(int8_folder, runtime=runtime)
    assert isinstance(model, QuantizedTweetClassifier) and is_quantized(model)
    assert (choice.runtime, choice.quantized, choice.canary, choice.precision) == (
        "torch",
        True,
        None,
        "int8",
    )
    expected = quantize_int8(TweetClassifier.load(int8_folder)).predict_proba(TEXTS)
    np.testing.assert_allclose(model.predict_proba(TEXTS), expected, atol=1e-5)


def test_a_failing_export_falls_back_to_torch_and_says_why(fp32_folder, monkeypatch, caplog):
    def broken(model, **_):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr("model_runner.modeling.onnx_backend.to_onnx_runtime", broken)
    model, choice = load_for_serving(fp32_folder, runtime="onnxruntime", tag="m/7")
    assert runtime_of(model) == "torch" and choice.runtime == "torch"
    assert choice.canary is not None and not choice.canary.passed and choice.canary.max_diff is None
    assert "exporter exploded" in choice.canary.detail
    assert "m/7: ONNX export failed (RuntimeError: exporter exploded); serving with torch" in caplog.text


def test_check_sees_the_torch_model_first_and_its_answers_are_the_reference(fp32_folder, caplog):
    seen = []

    def skewed_reference(model):
        seen.append(runtime_of(model))
        return canary_proba(model) + np.array([0.0, 0.0, 0.5])

    model, choice = load_for_serving(fp32_folder, runtime="onnxruntime", check=skewed_reference)
    assert seen == ["torch"]
    assert runtime_of(model) == "torch" and not choice.canary.passed
    assert choice.canary.max_diff == pytest.approx(0.5, abs=1e-3)
    assert "differs from torch" in caplog.text


def test_a_check_that_refuses_stops_before_any_export(fp32_folder, monkeypatch):
    exported = []
    monkeypatch.setattr(
        "model_runner.modeling.onnx_backend.to_onnx_runtime", lambda *a, **k: exported.append(1)
    )

    def refuse(model):
        raise LookupError("not this one")

    with pytest.raises(LookupError, match="not this one"):
        load_for_serving(fp32_folder, runtime="onnxruntime", check=refuse)
    assert exported == []


def test_unknown_runtime_is_refused(fp32_folder):
    with pytest.raises(ValueError, match="unknown serving runtime 'tensorrt'"):
        load_for_serving(fp32_folder, runtime="tensorrt")


def test_load_is_persistence_only(int8_folder):
    plain = TweetClassifier.load(int8_folder)
    assert type(plain) is TweetClassifier and not is_quantized(plain)
    assert plain.meta["serving"] == "int8"  # the choice is recorded, not applied
    with pytest.raises(TypeError):
        TweetClassifier.load(int8_folder, serving=True)


def test_the_recorded_choice_is_read_from_tweetpulse_json(fp32_folder):
    config = json.loads((fp32_folder / CONFIG_FILE).read_text())
    (fp32_folder / CONFIG_FILE).write_text(json.dumps({**config, "serving": "int8"}))
    write_checksums(fp32_folder)
    _, choice = load_for_serving(fp32_folder, runtime="onnxruntime")
    assert choice.quantized and choice.runtime == "torch"


def test_the_classifier_does_not_import_the_serving_variants():
    code = (
        "import sys, model_runner.modeling.classifier\n"
        "names = ('quantize', 'onnx_backend', 'serving')\n"
        "loaded = [m for m in names if f'model_runner.modeling.{m}' in sys.modules]\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
