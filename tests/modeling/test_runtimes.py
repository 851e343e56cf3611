"""The runtime chooser: fastest candidate within the accuracy gate, mixed-precision int8, probe.json.

Speed is injected (``measure``) so the choice is deterministic; real runtimes (torch, ONNX Runtime, int8)
are built and judged on real probe answers. No test asserts on a timing.
"""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch
from torch import nn

from model_runner.modeling.classifier import (
    CHECKSUMS_FILE,
    CONFIG_FILE,
    PROBE_FILE,
    TweetClassifier,
    verify_files,
    write_checksums,
)
from model_runner.modeling.heads import build_head
from model_runner.modeling.onnx_backend import OnnxTweetClassifier, to_onnx_runtime
from model_runner.modeling.quantize import (
    FP32_LAYERS_KEY,
    QuantizedTweetClassifier,
    check_quantization,
    linear_layers,
    quantize_int8,
)
from model_runner.modeling.runtimes import (
    CANARY_TEXTS,
    REDUCED_PRECISION_MARGIN,
    Candidate,
    Gate,
    Probe,
    _plain,
    choose_runtime,
)
from model_runner.modeling.serving import load_for_serving, runtime_of

LABELS = ["negative", "neutral", "positive"]
_WORDS = ["love", "hate", "train", "great", "awful", "meeting", "phone", "coffee", "best", "worst", "happy"]
_rng = random.Random(0)
PROBE_TEXTS = [" ".join(_rng.choice(_WORDS) for _ in range(_rng.randint(2, 9))) for _ in range(48)]
SENSITIVE = "encoder.layer.1.output.dense"
OPEN = Gate(min_agreement=0.0, max_drop=1.0)  # every candidate passes: the choice is speed alone


def _classifier(tiny_bert, seed: int = 5) -> TweetClassifier:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    clf = TweetClassifier(
        AutoModel.from_pretrained(tiny_bert, use_safetensors=True),
        AutoTokenizer.from_pretrained(tiny_bert),
        build_head("linear", 32, 3),
        LABELS,
        max_length=32,
        meta={"task": "sentiment", "serving": "fp32"},
    )
    return clf.eval().requires_grad_(False)


def _with_probe(clf: TweetClassifier) -> TweetClassifier:
    """The probe as training sets it: held-out texts and (here: the fp32 model's own) labels."""
    labels = [LABELS[i] for i in clf.predict_proba(PROBE_TEXTS).argmax(axis=1)]
    clf.probe = {"texts": list(PROBE_TEXTS), "labels": labels}
    return clf


def make_int8_fragile(clf: TweetClassifier) -> None:
    """One Linear layer that int8 ruins and fp32 does not notice: a weight column 1000x the others on
    an input feature that is always exactly 0. Per-channel int8 then scales every row of that layer by
    1000/127 and rounds its real weights to 0, so fully quantized int8 flips many labels while keeping
    that single layer fp32 answers like fp32."""
    layer = clf.encoder.encoder.layer[1]
    with torch.no_grad():
        layer.intermediate.dense.weight[0].zero_()
        layer.intermediate.dense.bias[0] = -100.0  # GELU(-100) == 0: the feature never carries anything
        layer.output.dense.weight.mul_(50)  # the layer matters to the output
        layer.output.dense.weight[:, 0] = 1000.0


@pytest.fixture
def model(tiny_bert) -> TweetClassifier:
    return _with_probe(_classifier(tiny_bert))


@pytest.fixture
def folder(model, tmp_path):
    return model.save(tmp_path / "m")


class Permuted(TweetClassifier):
    """A 'runtime' that answers every text with the wrong class (its logits rotated by one)."""

    def __init__(self, model: TweetClassifier):
        super().__init__(
            model.encoder,
            model.tokenizer,
            model.head,
            model.labels,
            max_length=model.max_length,
            meta=model.meta,
        )

    def forward(self, input_ids, attention_mask):
        return torch.roll(super().forward(input_ids, attention_mask), shifts=1, dims=-1)


def speeds(table: dict[str, float]):
    seen = []

    def measure(name, model, texts):
        seen.append(name)
        return table.get(name, 1.0)

    measure.seen = seen
    return measure


# --- choosing by measured speed --------------------------------------------------------------------
@pytest.mark.parametrize("fastest", ["onnxruntime", "torch-int8", "onnxruntime-int8", "torch"])
def test_auto_serves_the_candidate_measured_fastest(model, fastest):
    table = {"torch": 100.0, "onnxruntime": 110.0, "torch-int8": 120.0, "onnxruntime-int8": 130.0}
    table[fastest] = 1000.0
    served, choice = choose_runtime(model, requested="auto", gate=OPEN, measure=speeds(table))
    assert choice.name == fastest and choice.requested == "auto"
    assert runtime_of(served) == choice.runtime
    assert isinstance(served, OnnxTweetClassifier) == fastest.startswith("onnxruntime")
    assert choice.quantized == fastest.endswith("int8") and choice.precision == (
        "int8" if fastest.endswith("int8") else "fp32"
    )
    by_name = {c.name: c for c in choice.candidates}
    assert {"torch", "onnxruntime", "torch-int8", "onnxruntime-int8"} <= set(by_name)
    assert all(c.accepted and c.texts_per_s == table[c.name] for c in by_name.values() if c.name in table)
    assert choice.probe == "evaluation" and choice.probe_texts == len(PROBE_TEXTS) + len(CANARY_TEXTS)


def test_the_default_measure_times_every_accepted_candidate(model):
    _, choice = choose_runtime(model, requested="auto", gate=OPEN)
    accepted = [c for c in choice.candidates if c.accepted]
    assert accepted and all(c.texts_per_s is not None and c.texts_per_s > 0 for c in accepted)
    assert choice.name in {c.name for c in accepted}


def test_a_candidate_outside_the_gate_is_never_served_even_when_fastest(model, caplog):
    permuted = Candidate("permuted", "torch", "fp32", _plain(lambda: Permuted(model)))
    measure = speeds({"permuted": 1e9, "torch": 100.0})
    with caplog.at_level(logging.INFO, logger="model_runner.modeling.runtimes"):
        served, choice = choose_runtime(
            model, requested="auto", gate=Gate(), measure=measure, extra=[permuted]
        )
    assert choice.name != "permuted" and not isinstance(served, Permuted)
    row = next(c for c in choice.candidates if c.name == "permuted")
    assert not row.accepted and row.agreement < 0.5 and "agreement" in row.reason
    assert row.texts_per_s is None and "permuted" not in measure.seen  # a rejected one is not even timed
    assert f"serving {choice.name}" in caplog.text and "permuted" in caplog.text  # the one-line table


def test_a_forced_runtime_outside_the_gate_leaves_fp32_torch_serving(model, caplog):
    permuted = Candidate("permuted", "torch", "fp32", _plain(lambda: Permuted(model)))
    served, choice = choose_runtime(
        model, requested="permuted", measure=speeds({"permuted": 1e9}), extra=[permuted]
    )
    assert served is model and (choice.name, choice.precision, choice.requested) == (
        "torch",
        "fp32",
        "permuted",
    )
    assert "permuted was asked for but misses the gate" in caplog.text
    assert [c.name for c in choice.candidates] == ["torch", "permuted"]  # only what was asked is built


def test_a_forced_runtime_within_the_gate_serves_even_when_slower(folder):
    served, choice = load_for_serving(folder, runtime="torch-int8", measure=speeds({"torch": 1e9}))
    assert isinstance(served, QuantizedTweetClassifier) and choice.name == "torch-int8" and choice.quantized
    assert [c.name for c in choice.candidates] == ["torch", "torch-int8"]


def test_an_fp32_twin_must_match_torch_on_the_canaries(model):
    """fp32 runtimes are held to float noise on the canaries, whatever their label agreement."""

    class Nudged(TweetClassifier):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids, attention_mask) + torch.tensor([0.0, 0.0, 0.05])

    def nudged():
        return Nudged(model.encoder, model.tokenizer, model.head, model.labels, max_length=32)

    cand = Candidate("nudged", "torch", "fp32", _plain(nudged, fp32=True))
    _, choice = choose_runtime(model, gate=OPEN, measure=speeds({"nudged": 1e9}), extra=[cand])
    row = next(c for c in choice.candidates if c.name == "nudged")
    assert not row.accepted and "on canaries" in row.reason and choice.name != "nudged"


def test_a_candidate_that_cannot_be_built_is_reported_not_fatal(model):
    def broken():
        raise RuntimeError("no such kernel")

    cand = Candidate("broken", "torch", "int8", _plain(broken))
    _, choice = choose_runtime(model, gate=OPEN, measure=speeds({}), extra=[cand])
    row = next(c for c in choice.candidates if c.name == "broken")
    assert not row.accepted and "no such kernel" in row.reason


def test_unknown_runtime_is_refused(model):
    with pytest.raises(ValueError, match="unknown serving runtime 'tensorrt'"):
        choose_runtime(model, requested="tensorrt")


def test_cuda_is_refused_cleanly_without_a_gpu(model, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    served, choice = choose_runtime(model, requested="cuda", measure=speeds({}))
    assert served is model and choice.name == "torch"
    assert "no CUDA device" in next(c.reason for c in choice.candidates if c.name == "cuda")


def test_load_for_serving_auto_reports_every_candidate_and_the_settings_gate(folder):
    _, choice = load_for_serving(
        folder, runtime="auto", measure=speeds({"torch": 5.0}), min_agreement=1.0, max_drop=0.0
    )
    assert choice.requested == "auto" and choice.candidates[0].name == "torch"
    assert all(c.agreement == 1.0 for c in choice.candidates if c.accepted)  # the strict gate held
    body = choice.to_dict()
    assert json.loads(json.dumps(body)) == body and body["candidates"][0]["texts_per_s"] == 5.0


# --- probe texts -----------------------------------------------------------------------------------
def test_probe_json_round_trips_and_is_checksummed(model, tmp_path):
    folder = model.save(tmp_path / "m")
    assert json.loads((folder / PROBE_FILE).read_text()) == model.probe
    assert PROBE_FILE in json.loads((folder / CHECKSUMS_FILE).read_text())
    verify_files(folder)
    loaded = TweetClassifier.load(folder)
    assert loaded.probe == model.probe
    # the variants built from a model carry its probe along
    assert quantize_int8(loaded).probe == model.probe
    assert to_onnx_runtime(loaded, int8=False, threads=1).probe == model.probe
    # an altered probe is caught like any other file
    probe = json.loads((folder / PROBE_FILE).read_text())
    (folder / PROBE_FILE).write_text(json.dumps({**probe, "texts": probe["texts"][:3]}))
    with pytest.raises(ValueError, match=PROBE_FILE):
        verify_files(folder)


def test_numpy_labels_are_saved_as_plain_json(model, tmp_path):
    model.probe = {"texts": PROBE_TEXTS[:3], "labels": np.array([0, 2, 1])}
    folder = model.save(tmp_path / "m")
    assert json.loads((folder / PROBE_FILE).read_text())["labels"] == [0, 2, 1]
    assert Probe.of(TweetClassifier.load(folder), 256).labels.tolist() == [0, 2, 1]


def test_a_folder_without_probe_loads_and_is_probed_on_canaries(model, tmp_path):
    model.probe = None
    folder = model.save(tmp_path / "m")
    assert not (folder / PROBE_FILE).exists()
    verify_files(folder)
    assert TweetClassifier.load(folder).probe is None
    _, choice = load_for_serving(folder, runtime="auto", measure=speeds({}))
    assert choice.probe == "canaries" and choice.probe_texts == len(CANARY_TEXTS)


def test_saving_without_probe_removes_a_stale_one(model, tmp_path):
    folder = model.save(tmp_path / "m")
    model.probe = None
    model.save(folder)
    assert not (folder / PROBE_FILE).exists()
    verify_files(folder)


def test_the_probe_is_cut_to_runtime_probe_texts(folder):
    _, choice = load_for_serving(folder, runtime="auto", probe_texts=16, measure=speeds({}))
    assert choice.probe_texts == 16 + len(CANARY_TEXTS)


def test_probe_labels_measure_the_metric_drop(model):
    model.probe = {"texts": PROBE_TEXTS, "labels": ["negative"] * len(PROBE_TEXTS)}
    _, choice = choose_runtime(model, gate=OPEN, measure=speeds({}))
    assert all(c.score_drop is not None for c in choice.candidates if c.agreement is not None)


# --- mixed-precision int8 --------------------------------------------------------------------------
@pytest.fixture
def fragile(tiny_bert) -> TweetClassifier:
    clf = _classifier(tiny_bert)
    make_int8_fragile(clf)
    return _with_probe(clf)


def _agreement(a: TweetClassifier, b: TweetClassifier) -> float:
    return float(np.mean(a.predict_proba(PROBE_TEXTS).argmax(1) == b.predict_proba(PROBE_TEXTS).argmax(1)))


def test_mixed_int8_passes_the_gate_where_full_int8_misses_it(fragile, tmp_path):
    assert _agreement(fragile, quantize_int8(fragile)) < 0.9  # the construction works: full int8 fails
    y = fragile.predict_proba(PROBE_TEXTS).argmax(axis=1)
    report, int8 = check_quantization(
        fragile, PROBE_TEXTS, y, metric=lambda t, p: float(np.mean(t == p)), min_agreement=0.97
    )
    assert report.chosen == "int8" and int8 is not None
    assert SENSITIVE in report.fp32_layers and len(report.fp32_layers) <= len(linear_layers(fragile)) // 3
    assert report.full_int8_agreement < 0.9 <= 0.97 <= report.agreement
    assert isinstance(int8.encoder.get_submodule(SENSITIVE), nn.Linear)  # kept fp32
    assert fragile.meta[FP32_LAYERS_KEY] == report.fp32_layers  # recorded for the saved folder
    assert json.loads(json.dumps(report.to_dict()))["fp32_layers"] == report.fp32_layers

    # the folder training saves reproduces exactly that int8 model at load
    fragile.meta["serving"] = report.chosen
    folder = fragile.save(tmp_path / "m")
    assert json.loads((folder / CONFIG_FILE).read_text())[FP32_LAYERS_KEY] == report.fp32_layers
    served, choice = load_for_serving(folder, runtime="torch")
    assert isinstance(served, QuantizedTweetClassifier) and choice.fp32_layers == tuple(report.fp32_layers)
    assert type(served.encoder.get_submodule(SENSITIVE)) is nn.Linear
    np.testing.assert_allclose(served.predict_proba(PROBE_TEXTS), int8.predict_proba(PROBE_TEXTS), atol=1e-5)


def test_without_mixed_precision_the_fragile_model_keeps_fp32(fragile):
    y = fragile.predict_proba(PROBE_TEXTS).argmax(axis=1)
    report, int8 = check_quantization(
        fragile, PROBE_TEXTS, y, metric=lambda t, p: float(np.mean(t == p)), mixed=False
    )
    assert int8 is None and report.chosen == "fp32" and report.fp32_layers == []
    assert FP32_LAYERS_KEY not in fragile.meta


def test_the_chooser_finds_mixed_int8_at_load_and_records_its_layers(fragile, tmp_path):
    folder = fragile.save(tmp_path / "m")  # nothing recorded: the search runs at load
    served, choice = load_for_serving(folder, runtime="torch-int8", measure=speeds({}))
    assert choice.name == "torch-int8" and SENSITIVE in choice.fp32_layers
    row = next(c for c in choice.candidates if c.name == "torch-int8")
    assert row.accepted and row.agreement >= 0.97 and "fp32" in row.method
    assert served.meta[FP32_LAYERS_KEY] == list(choice.fp32_layers)
    again = quantize_int8(TweetClassifier.load(folder), keep_fp32=choice.fp32_layers)
    np.testing.assert_allclose(served.predict_proba(PROBE_TEXTS), again.predict_proba(PROBE_TEXTS), atol=1e-5)


def test_recorded_layers_are_tried_first_at_load(fragile, tmp_path):
    fragile.meta[FP32_LAYERS_KEY] = [SENSITIVE]
    folder = fragile.save(tmp_path / "m")
    _, choice = load_for_serving(folder, runtime="torch-int8", measure=speeds({}))
    assert choice.name == "torch-int8" and choice.fp32_layers == (SENSITIVE,)


def test_quantize_int8_refuses_an_unknown_layer(model):
    with pytest.raises(ValueError, match="no encoder Linear layer named nope"):
        quantize_int8(model, keep_fp32=["nope"])


def test_onnx_int8_reuses_the_fp32_layers_torch_found(fragile):
    _, choice = choose_runtime(fragile, requested="auto", gate=Gate(min_agreement=0.97), measure=speeds({}))
    rows = {c.name: c for c in choice.candidates}
    assert rows["torch-int8"].accepted and SENSITIVE in rows["torch-int8"].fp32_layers
    ort = rows["onnxruntime-int8"]
    # either int8 graph passed on its own (static calibration) or with torch's fp32 layers excluded
    assert ort.accepted == (ort.agreement is not None and ort.agreement >= 0.97)
    if ort.accepted and "static" not in (ort.method or ""):
        assert SENSITIVE in ort.fp32_layers
    if choice.quantized:
        assert choice.fp32_layers == next(c for c in choice.candidates if c.name == choice.name).fp32_layers


def test_the_check_of_the_service_sees_fp32_torch_first(folder):
    seen = []

    def check(model):
        seen.append(type(model).__name__)
        return model.predict_proba(list(CANARY_TEXTS))

    load_for_serving(folder, runtime="auto", check=check, measure=speeds({}))
    assert seen == ["TweetClassifier"]


def test_a_recorded_serving_int8_is_no_constraint_for_auto(model, tmp_path):
    folder = model.save(tmp_path / "m")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "serving": "int8"}))
    write_checksums(folder)
    _, choice = load_for_serving(folder, runtime="auto", measure=speeds({"onnxruntime": 1e9}))
    assert choice.name == "onnxruntime" and not choice.quantized


@pytest.mark.parametrize(("int8_speed", "served"), [(104.0, "onnxruntime"), (110.0, "torch-int8")])
def test_reduced_precision_must_win_by_a_margin(model, int8_speed, served):
    table = {"torch": 90.0, "onnxruntime": 100.0, "torch-int8": int8_speed, "onnxruntime-int8": 1.0}
    _, choice = choose_runtime(model, gate=OPEN, measure=speeds(table))
    assert pytest.approx(1.05) == REDUCED_PRECISION_MARGIN  # 104 is within it, 110 beyond
    assert choice.name == served
