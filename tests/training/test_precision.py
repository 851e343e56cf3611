"""bf16 autocast for a fit only where the CPU has bf16 instructions and a timed step shows it pays."""

import pytest
import torch

from model_runner.training import precision
from model_runner.training.fit_lora import _classifier, _load_base


@pytest.fixture(scope="module")
def model(tiny_bert):
    encoder, tokenizer = _load_base(tiny_bert)
    return _classifier(encoder, tokenizer, ["a", "b"], None, 32).train()


TEXTS = ["love it", "hate it", "the meeting is on tuesday"] * 12


def test_no_bf16_instructions_means_fp32_without_measuring(model, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision, "_step_seconds", lambda *a, **k: pytest.fail("measured anyway"))
    choice = precision.pick_precision(model, TEXTS, torch.device("cpu"))
    assert choice.precision == "fp32" and "no bf16" in choice.reason


@pytest.mark.parametrize(("fp32_s", "bf16_s", "expected"), [(1.0, 0.5, "bf16"), (1.0, 0.95, "fp32")])
def test_bf16_is_chosen_only_when_measured_clearly_faster(model, monkeypatch, fp32_s, bf16_s, expected):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "_step_seconds", lambda m, b, *, bf16: bf16_s if bf16 else fp32_s)
    choice = precision.pick_precision(model, TEXTS, torch.device("cpu"))
    assert choice.precision == expected
    assert (choice.fp32_step_s, choice.bf16_step_s) == (fp32_s, bf16_s)


def test_measuring_leaves_the_weights_and_gradients_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = model.tokenize(TEXTS[:4])
    assert precision._step_seconds(model, batch, bf16=False) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
