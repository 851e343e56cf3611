"""How a saved model is served: the one place that picks fp32 torch, int8 torch or ONNX Runtime.

Everything that answers with a model loads it through :func:`load_for_serving`: the service's reload
(``service/served.py``), ``model-runner predict`` and ``evaluate`` (``jobs/champion.py``) and the MLflow
pyfunc, so given the same runtime they answer alike. The decision, in order:

1. ``TweetClassifier.load`` reads the fp32 weights (pure persistence, safetensors only).
2. int8: when training chose it (``"serving": "int8"`` in ``tweetpulse.json``, written after the
   quantization gate accepted int8) and the model runs on the CPU, the encoder's Linear layers are
   dynamically quantized again (``quantize.quantize_int8``: a deterministic function of the fp32
   weights, so the int8 model is never stored). int8 is a CPU kernel: on a GPU the fp32 model serves.
3. ``check``, when given, sees that model before any export (the service validates the label set and
   the canary answers there; raising refuses the model) and returns its probabilities on
   ``CANARY_TEXTS``.
4. ONNX Runtime, when asked for (``runtime="onnxruntime"``: the ``serving_runtime`` setting) for an fp32
   model on the CPU: the graph is exported and kept only if it answers the canaries like torch (largest
   probability difference at most ``ONNX_MAX_DIFF``); a failed export or a twin that differs leaves torch
   serving, with a warning in the log. int8 models always stay with torch (ONNX Runtime's int8 flips
   far more labels: see ``onnx_backend``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_runner.modeling import onnx_backend
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.quantize import QuantizedTweetClassifier, quantize_int8

log = logging.getLogger(__name__)

TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
RUNTIMES = (TORCH, ONNXRUNTIME)

# Largest probability difference between the ONNX Runtime twin and torch that is float noise.
ONNX_MAX_DIFF = 1e-3

# Fixed texts every candidate must answer sensibly (the service), and the ONNX twin like torch.
CANARY_TEXTS = (
    "I love this, best update ever!",
    "This is the worst service I have ever used.",
    "The meeting is at 3pm on Tuesday.",
    "",
    "@user check http://example.com " + "long " * 200,
)


@dataclass(frozen=True)
class CanaryCheck:
    """How the ONNX Runtime twin answered ``CANARY_TEXTS`` compared with torch."""

    passed: bool
    max_diff: float | None  # largest probability difference; None when the export itself failed
    detail: str  # what happened, as logged when the twin was dropped


@dataclass(frozen=True)
class ServingChoice:
    """What ``load_for_serving`` chose for one model folder."""

    runtime: str  # "onnxruntime" or "torch": what runs the forward pass
    quantized: bool  # int8 dynamic quantization (torch) serves
    canary: CanaryCheck | None = None  # the ONNX agreement check; None when ONNX was not tried

    @property
    def precision(self) -> str:
        return "int8" if self.quantized else "fp32"


def runtime_of(model: TweetClassifier) -> str:
    """The runtime that answers for ``model``: ``"onnxruntime"`` or ``"torch"``."""
    return ONNXRUNTIME if isinstance(model, onnx_backend.OnnxTweetClassifier) else TORCH


def canary_proba(model: TweetClassifier) -> np.ndarray:
    """``model``'s class probabilities on ``CANARY_TEXTS``."""
    return model.predict_proba(list(CANARY_TEXTS))


def load_for_serving(
    folder: Path | str,
    *,
    runtime: str = TORCH,
    device: str | torch.device = "cpu",
    check: Callable[[TweetClassifier], np.ndarray] | None = None,
    tag: str | None = None,
) -> tuple[TweetClassifier, ServingChoice]:
    """The model of ``folder`` as it is served, and what was chosen (see the module docstring).

    ``runtime``: ``"torch"`` or ``"onnxruntime"`` (fp32 models on the CPU only; int8 stays torch).
    ``check(model)``: called once on the loaded torch model before any export; returns its
    probabilities on ``CANARY_TEXTS`` (the ONNX twin must reproduce them) and raises to refuse it.
    ``tag``: names the model in log lines (default: the folder's name).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown serving runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    folder = Path(folder)
    model = TweetClassifier.load(folder, device=device)
    # int8 dynamic quantization is a CPU kernel: on a GPU the fp32 (or autocast) model is faster
    if model.meta.get("serving") == "int8" and torch.device(device).type == "cpu":
        model = quantize_int8(model)
    quantized = isinstance(model, QuantizedTweetClassifier)
    reference = check(model) if check is not None else None
    if runtime != ONNXRUNTIME or quantized or torch.device(device).type != "cpu":
        return model, ServingChoice(runtime=TORCH, quantized=quantized)
    if reference is None:
        reference = canary_proba(model)
    served, canary = _onnx_or_torch(model, reference, tag or folder.name)
    return served, ServingChoice(runtime=runtime_of(served), quantized=False, canary=canary)


def _onnx_or_torch(
    model: TweetClassifier, reference: np.ndarray, tag: str
) -> tuple[TweetClassifier, CanaryCheck]:
    """The ONNX Runtime twin of an fp32 model, when it answers the canaries like torch does.

    The export is checked, not trusted: a graph that differs from torch beyond float noise (an
    unsupported op, a traced shortcut) is dropped and torch serves, with a warning in the log.
    """
    try:
        twin = onnx_backend.to_onnx_runtime(model, int8=False)
        diff = float(np.abs(canary_proba(twin) - reference).max())
    except Exception as exc:  # the torch model is a complete fallback
        detail = f"ONNX export failed ({type(exc).__name__}: {exc})"
        log.warning("%s: %s; serving with torch", tag, detail)
        return model, CanaryCheck(passed=False, max_diff=None, detail=detail)
    if diff > ONNX_MAX_DIFF:
        detail = f"ONNX Runtime differs from torch by {diff:.2g} on canaries"
        log.warning("%s: %s; serving with torch", tag, detail)
        return model, CanaryCheck(passed=False, max_diff=diff, detail=detail)
    detail = f"ONNX Runtime matches torch within {diff:.2g} on canaries"
    return twin, CanaryCheck(passed=True, max_diff=diff, detail=detail)
