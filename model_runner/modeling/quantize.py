"""int8 serving variant of a TweetClassifier, and the gate that decides whether it may be served.

Method (``METHOD``): PyTorch eager dynamic quantization of every ``nn.Linear`` in the encoder: qint8
weights with one scale per output channel, activations quantized on the fly per batch over the full
8-bit range. The head stays fp32 (tiny; its logits decide the label). Measured on a 2-core AVX2 CPU
with all-MiniLM-L6-v2 and 1,000 validation tweets (``python -m benchmarks quantize``): ~1.4x the
fp32 throughput, macro recall within 0.01, but 5% of labels flip (near-tie tweets), the same as an
ONNX Runtime int8 export, which needs two extra packages and an export step at load time.

Two deliberate departures from ``quantize_dynamic``'s defaults, both for accuracy at equal speed:
per-channel weight scales (per-tensor flips 14% of labels), and ``reduce_range=False`` for activations
(torch hard-codes 7-bit activations; full range halves the flips; measured on AVX2, not only VNNI).

``torch.ao.quantization`` is deprecated upstream in favour of ``torchao`` but still ships and works in
torch 2.13; its deprecation warnings are silenced in this one place. (torchao's eager CPU int8 is
not a replacement: 1.9 texts/s against 140 for fp32 without ``torch.compile``.) If a future torch
removes it, ``quantize_int8`` raises and ``check_quantization`` keeps fp32.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from model_runner.modeling.classifier import TweetClassifier

METHOD = "torch-dynamic-qint8-perchannel"
_TOLERANCE = 1e-12  # float noise only: with max_drop=0 / min_agreement=1 only exact matches pass


class QuantizedTweetClassifier(TweetClassifier):
    """A TweetClassifier whose encoder Linear layers are int8; CPU only, never saved.

    The int8 variant is re-derived from the fp32 weights at load time, so writing it to disk is
    always a mistake (``save_pretrained`` cannot represent packed int8 weights anyway).
    """

    def save(self, folder: Path) -> Path:
        raise TypeError("an int8 serving model is not saved: save the fp32 model and set serving=int8")


class _FullRangeDynamicLinear(DynamicQuantizedLinear):
    """torch's dynamic int8 Linear, but quantizing activations to all 8 bits instead of 7."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False).to(x.dtype)


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        yield


def _dynamic_quantize(module: nn.Module) -> nn.Module:
    with _quiet_deprecations():
        return quantize_dynamic(
            module,
            {nn.Linear: per_channel_dynamic_qconfig},
            mapping={nn.Linear: _FullRangeDynamicLinear},
            inplace=True,
        )


def quantize_int8(model: TweetClassifier) -> TweetClassifier:
    """A new CPU model with int8 encoder Linear layers; ``model`` itself is left untouched."""
    encoder = copy.deepcopy(model.encoder).to("cpu").eval()
    encoder = _dynamic_quantize(encoder)
    head = copy.deepcopy(model.head).to("cpu").eval()
    meta = {**model.meta, "quantization": METHOD}
    quantized = QuantizedTweetClassifier(
        encoder, model.tokenizer, head, model.labels, max_length=model.max_length, meta=meta
    )
    return quantized.eval().requires_grad_(False)


def is_quantized(model: nn.Module) -> bool:
    """True when ``model`` contains dynamically quantized (int8) Linear layers."""
    return any(isinstance(m, DynamicQuantizedLinear) for m in model.modules())


@dataclass
class QuantizationReport:
    chosen: str  # "int8" or "fp32"
    method: str
    fp32_score: float
    int8_score: float
    score_drop: float
    agreement: float
    max_drop: float
    min_agreement: float
    reason: str
    fp32_texts_per_s: float
    int8_texts_per_s: float

    def to_dict(self) -> dict:
        """Plain JSON-safe values (a score that could not be computed is ``None``, not NaN)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def _timed_proba(model: TweetClassifier, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    model.predict_proba(texts[:8])  # warm-up: first calls pay for lazy init / weight packing
    t0 = time.perf_counter()
    proba = model.predict_proba(texts)
    return proba, len(texts) / max(time.perf_counter() - t0, 1e-9)


def check_quantization(
    fp32: TweetClassifier,
    texts: Sequence[str],
    y_true: np.ndarray,
    *,
    metric: Callable[[np.ndarray, np.ndarray], float],
    max_drop: float = 0.01,
    min_agreement: float = 0.97,
) -> tuple[QuantizationReport, TweetClassifier | None]:
    """Quantize ``fp32`` and accept int8 only if it stays within tolerance of fp32 on ``texts``.

    ``metric(y_true, y_pred)`` scores predictions (higher is better, e.g. macro recall); ``y_pred`` has
    the same kind as ``y_true``: label names when ``y_true`` holds strings, class indices otherwise.
    Accepted when ``fp32_score - int8_score <= max_drop`` and the share of texts on which both models
    predict the same label is ``>= min_agreement``. Returns the report and the int8 model, or ``None``
    when fp32 is to be served.
    """
    texts = list(texts)
    y_true = np.asarray(y_true)
    if not texts:
        raise ValueError("check_quantization needs at least one text")
    if len(y_true) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(y_true)} labels")
    as_names = y_true.dtype.kind in "OUS"

    def score(proba: np.ndarray) -> float:
        pred = proba.argmax(axis=1)
        return float(metric(y_true, np.asarray(fp32.labels, dtype=object)[pred] if as_names else pred))

    p32, fp32_tps = _timed_proba(fp32, texts)
    fp32_score = score(p32)
    common = {
        "method": METHOD,
        "fp32_score": fp32_score,
        "max_drop": max_drop,
        "min_agreement": min_agreement,
        "fp32_texts_per_s": fp32_tps,
    }
    try:
        int8 = quantize_int8(fp32)
        p8, int8_tps = _timed_proba(int8, texts)
    except (RuntimeError, NotImplementedError, ImportError) as exc:  # no quantized engine on this build
        nan = float("nan")
        report = QuantizationReport(
            chosen="fp32",
            int8_score=nan,
            score_drop=nan,
            agreement=nan,
            reason=f"int8 unavailable: {exc}",
            int8_texts_per_s=nan,
            **common,
        )
        return report, None

    int8_score = score(p8)
    drop = fp32_score - int8_score
    agreement = float(np.mean(p32.argmax(axis=1) == p8.argmax(axis=1)))
    failures = []
    if drop > max_drop + _TOLERANCE:
        failures.append(f"score drop {drop:.4f} > {max_drop:.4f}")
    if agreement < min_agreement - _TOLERANCE:
        failures.append(f"agreement {agreement:.4f} < {min_agreement:.4f}")
    accepted = not failures
    if accepted:
        reason = f"int8 accepted: score drop {drop:.4f} <= {max_drop:.4f}, "
        reason += f"agreement {agreement:.4f} >= {min_agreement:.4f}"
    else:
        reason = "fp32 kept: " + "; ".join(failures)
    report = QuantizationReport(
        chosen="int8" if accepted else "fp32",
        int8_score=int8_score,
        score_drop=drop,
        agreement=agreement,
        reason=reason,
        int8_texts_per_s=int8_tps,
        **common,
    )
    return report, (int8 if accepted else None)
