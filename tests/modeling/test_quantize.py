import json
from itertools import count

import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from model_runner.modeling.classifier import CONFIG_FILE, TweetClassifier
from model_runner.modeling.heads import build_head
from model_runner.modeling.quantize import (
    METHOD,
    QuantizationReport,
    check_quantization,
    is_quantized,
    quantize_int8,
)
from model_runner.modeling.serving import load_for_serving

LABELS = ["negative", "neutral", "positive"]
# already in clean_text's normal form, so predict_proba sees exactly these strings
TEXTS = [
    "i love this phone",
    "worst service ever, never again",
    "the train is late",
    "what a great day at the beach with friends",
    "meh",
    "not sure how i feel about the new update",
    "@user thanks for the help!",
    "prices went up again http",
]


def macro_recall(y_true, y_pred) -> float:
    return float(recall_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0))


@pytest.fixture
def model(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(tiny_bert, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    clf = TweetClassifier(encoder, tokenizer, build_head("linear", 32, 3), LABELS, max_length=64)
    return clf.eval().requires_grad_(False)


def embeddings(clf: TweetClassifier, texts: list[str]) -> torch.Tensor:
    with torch.inference_mode():
        batch = clf.tokenize(texts)
        return clf.embed(batch["input_ids"], batch["attention_mask"])


def set_head(clf: TweetClassifier, weight, bias) -> None:
    linear = clf.head[-1]
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def near_tie_head(clf: TweetClassifier) -> None:
    """A head whose class-0/class-1 boundary passes between one text's fp32 and int8 embeddings."""
    w = torch.randn(32, generator=torch.Generator().manual_seed(1))
    s32 = embeddings(clf, TEXTS) @ w
    s8 = embeddings(quantize_int8(clf), TEXTS) @ w
    i = int(torch.argmax((s32 - s8).abs()))
    assert abs(float(s32[i] - s8[i])) > 1e-4, "int8 should move the embedding measurably"
    threshold = float(s32[i] + s8[i]) / 2
    # logits: class 0 = w.e - threshold, class 1 = 0, class 2 = never
    set_head(clf, torch.stack([w, torch.zeros(32), torch.zeros(32)]), [-threshold, 0.0, -100.0])


def test_quantize_int8_makes_a_new_int8_model_and_leaves_fp32_alone(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_linear = sum(isinstance(m, nn.Linear) for m in model.encoder.modules())

    q = quantize_int8(model)

    assert q is not model and q.encoder is not model.encoder and isinstance(q, TweetClassifier)
    assert sum(isinstance(m, DynamicQuantizedLinear) for m in q.encoder.modules()) == n_linear > 0
    assert q.encoder.encoder.layer[0].attention.self.query.weight().dtype == torch.qint8
    assert type(q.head[-1]) is nn.Linear and q.head[-1].weight.dtype == torch.float32  # head stays fp32
    assert is_quantized(q) and not is_quantized(model)
    assert q.labels == model.labels and q.max_length == model.max_length
    assert q.meta["quantization"] == METHOD and "quantization" not in model.meta

    assert all(type(m) is not DynamicQuantizedLinear for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_int8_outputs_are_probability_rows_like_fp32(model):
    q = quantize_int8(model)
    p32, p8 = model.predict_proba(TEXTS), q.predict_proba(TEXTS)
    assert p8.shape == p32.shape == (len(TEXTS), 3) and p8.dtype == np.float32
    assert (p8 >= 0).all() and np.allclose(p8.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(p8 - p32).max() < 0.2  # close, not identical
    assert q.predict_proba([]).shape == (0, 3)


def test_strict_gate_keeps_fp32_when_int8_flips_a_prediction(model):
    near_tie_head(model)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    # mixed=False: every layer int8 or none (mixed precision has its own tests in test_runtimes)
    report, int8 = check_quantization(
        model, TEXTS, y, metric=macro_recall, max_drop=0.0, min_agreement=1.0, mixed=False
    )
    assert int8 is None and report.chosen == "fp32"
    assert report.agreement < 1.0
    assert "agreement" in report.reason and report.reason.startswith("fp32 kept")
    assert report.method == METHOD and report.max_drop == 0.0 and report.min_agreement == 1.0
    assert report.fp32_texts_per_s > 0 and report.int8_texts_per_s > 0

    report, int8 = check_quantization(model, TEXTS, y, metric=macro_recall, max_drop=1.0, min_agreement=0.5)
    assert report.chosen == "int8" and is_quantized(int8)
    assert report.score_drop == pytest.approx(report.fp32_score - report.int8_score)


def test_strict_gate_accepts_exactly_identical_predictions(model):
    set_head(model, torch.zeros(3, 32), [0.0, 5.0, 0.0])  # always "neutral", whatever the encoder says
    y = np.array(["neutral", "negative", "positive", "neutral", "neutral", "positive", "negative", "neutral"])
    seen = []

    def metric(y_true, y_pred):
        seen.append(list(y_pred))
        return float(np.mean(y_true == y_pred))

    report, int8 = check_quantization(model, TEXTS, y, metric=metric, max_drop=0.0, min_agreement=1.0)
    assert report.chosen == "int8" and int8 is not None
    assert report.agreement == 1.0 and report.score_drop == 0.0 and report.fp32_score == 0.5
    assert seen == [["neutral"] * len(TEXTS)] * 2  # string labels in -> label names passed to the metric
    assert report.to_dict()["chosen"] == "int8"


def test_a_score_drop_beyond_tolerance_keeps_fp32(model):
    scores = count(start=0.9, step=-0.05)  # fp32 is scored first: 0.90, then int8: 0.85

    report, int8 = check_quantization(
        model,
        TEXTS,
        np.zeros(len(TEXTS), dtype=int),
        metric=lambda *_: next(scores),
        max_drop=0.01,
        min_agreement=0.0,
    )
    assert int8 is None and report.chosen == "fp32"
    assert report.score_drop == pytest.approx(0.05) and "score drop" in report.reason


def test_report_is_json_safe_and_inputs_are_checked(model):
    report = QuantizationReport(
        "fp32",
        METHOD,
        0.7,
        float("nan"),
        float("nan"),
        float("nan"),
        0.01,
        0.97,
        "int8 unavailable",
        100.0,
        float("nan"),
    )
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["int8_score"] is None
    with pytest.raises(ValueError):
        check_quantization(model, [], np.array([]), metric=macro_recall)
    with pytest.raises(ValueError):
        check_quantization(model, TEXTS, np.zeros(3), metric=macro_recall)


def test_load_for_serving_applies_int8_from_tweetpulse_json(model, tmp_path):
    folder = model.save(tmp_path / "m")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "serving": "int8"}))

    served, choice = load_for_serving(folder)
    plain = TweetClassifier.load(folder)
    assert is_quantized(served) and not is_quantized(plain)
    assert choice.quantized and choice.runtime == "torch"
    assert served.meta["serving"] == "int8"
    np.testing.assert_allclose(plain.predict_proba(TEXTS), model.predict_proba(TEXTS), atol=1e-5)
    np.testing.assert_allclose(
        served.predict_proba(TEXTS), quantize_int8(model).predict_proba(TEXTS), atol=1e-5
    )
    with pytest.raises(TypeError):
        served.save(tmp_path / "never")
