"""How a saved model is served: the one place that picks the runtime (torch, ONNX Runtime; fp32, int8, bf16).

Everything that answers with a model loads it through :func:`load_for_serving`: the service's reload
(``service/served.py``), ``model-runner predict`` and ``evaluate`` (``jobs/champion.py``) and the MLflow
pyfunc, so given the same runtime they answer alike. ``TweetClassifier.load`` reads the fp32 weights
(pure persistence, safetensors only); ``check``, when given, sees that torch model first (the service
validates the label set and the canary answers there; raising refuses the model) and returns its
probabilities on ``CANARY_TEXTS``. Then, by ``runtime`` (the ``serving_runtime`` setting):

* ``"auto"`` (the setting's default) or a candidate name (``"torch-int8"``, ``"onnxruntime-int8"``,
  ``"torch-bf16"``, ``"cuda"``): ``runtimes.choose_runtime`` measures the candidates on the model's
  probe texts and serves the fastest within the accuracy gate (a named one only if it passes, else fp32
  torch with a warning). The choice, with every candidate's figures, is the returned ``RuntimeChoice``.
* ``"torch"`` and ``"onnxruntime"``: the fixed behaviour of earlier releases, nothing measured:

  1. int8 when training chose it (``"serving": "int8"`` in ``tweetpulse.json``) and the model runs on
     the CPU: the encoder's Linear layers are dynamically quantized again (``quantize.quantize_int8``,
     deterministic, with the layers training kept fp32 recorded in ``int8_fp32_layers``).
  2. ``"onnxruntime"`` for an fp32 model on the CPU: the exported twin serves if it answers the
     canaries like torch (largest probability difference at most ``ONNX_MAX_DIFF``); a failed export
     or a twin that differs leaves torch serving, with a warning. int8 models stay with torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model_runner.modeling import onnx_backend
from model_runner.modeling.classifier import TweetClassifier
from model_runner.modeling.quantize import FP32_LAYERS_KEY, QuantizedTweetClassifier, quantize_int8
from model_runner.modeling.runtimes import (
    AUTO,
    CANARY_TEXTS,
    CANDIDATES,
    ONNX_MAX_DIFF,
    ONNXRUNTIME,
    TORCH,
    TORCH_INT8,
    CanaryCheck,
    Gate,
    Measure,
    RuntimeChoice,
    canary_proba,
    choose_runtime,
)

log = logging.getLogger(__name__)

RUNTIMES = (AUTO, *CANDIDATES)
ServingChoice = RuntimeChoice  # the name earlier releases used

__all__ = [
    "CANARY_TEXTS",
    "ONNX_MAX_DIFF",
    "RUNTIMES",
    "CanaryCheck",
    "RuntimeChoice",
    "ServingChoice",
    "canary_proba",
    "load_for_serving",
    "runtime_of",
]


def runtime_of(model: TweetClassifier) -> str:
    """The engine that answers for ``model``: ``"onnxruntime"`` or ``"torch"``."""
    return ONNXRUNTIME if isinstance(model, onnx_backend.OnnxTweetClassifier) else TORCH


def load_for_serving(
    folder: Path | str,
    *,
    runtime: str = TORCH,
    device: str | torch.device = "cpu",
    check: Callable[[TweetClassifier], np.ndarray] | None = None,
    tag: str | None = None,
    probe_texts: int = 256,
    min_agreement: float = 0.97,
    max_drop: float = 0.01,
    measure: Measure | None = None,
) -> tuple[TweetClassifier, RuntimeChoice]:
    """The model of ``folder`` as it is served, and what was chosen (see the module docstring).

    ``runtime``: ``"auto"``, a candidate name, or the fixed ``"torch"`` / ``"onnxruntime"``.
    ``check(model)``: called once on the loaded torch model before anything else; returns its
    probabilities on ``CANARY_TEXTS`` (the reference fp32 twins must reproduce) and raises to refuse it.
    ``tag``: names the model in log lines (default: the folder's name).
    ``probe_texts``, ``min_agreement``, ``max_drop``: the settings ``runtime_probe_texts`` and
    ``quant_*``, for measured runtimes. ``measure``: the timing function (tests).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown serving runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    folder = Path(folder)
    tag = tag or folder.name
    model = TweetClassifier.load(folder, device=device)
    if runtime not in (TORCH, ONNXRUNTIME):
        reference = check(model) if check is not None else None
        gate = Gate(min_agreement=min_agreement, max_drop=max_drop)
        return choose_runtime(
            model,
            requested=runtime,
            gate=gate,
            probe_texts=probe_texts,
            reference_canaries=reference,
            measure=measure,
            tag=tag,
        )
    # int8 dynamic quantization is a CPU kernel: on a GPU the fp32 (or autocast) model is faster
    if model.meta.get("serving") == "int8" and torch.device(device).type == "cpu":
        model = quantize_int8(model)
    quantized = isinstance(model, QuantizedTweetClassifier)
    reference = check(model) if check is not None else None
    if runtime != ONNXRUNTIME or quantized or torch.device(device).type != "cpu":
        return model, _fixed(TORCH, runtime, model, quantized)
    if reference is None:
        reference = canary_proba(model)
    served, canary = _onnx_or_torch(model, reference, tag)
    return served, _fixed(runtime_of(served), runtime, served, False, canary)


def _fixed(
    engine: str, requested: str, model: TweetClassifier, quantized: bool, canary: CanaryCheck | None = None
) -> RuntimeChoice:
    layers = tuple(model.meta.get(FP32_LAYERS_KEY) or ()) if quantized else ()
    return RuntimeChoice(
        runtime=engine,
        precision="int8" if quantized else "fp32",
        canary=canary,
        name=TORCH_INT8 if quantized else engine,
        requested=requested,
        fp32_layers=layers,
        reason="recorded by training" if quantized else f"{requested} was asked for",
    )


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
