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

Mixed precision (``search_mixed_int8``): when every-layer int8 misses the gate, the Linear layers the
labels are most sensitive to (KL of the probabilities when only that layer is int8, on the texts
nearest a label boundary) are kept fp32, one more per gate check, until it passes; past a third of the
layers int8 is given up. The layers are recorded in ``tweetpulse.json`` (``int8_fp32_layers``) and
``quantize_int8`` reads them back, so the served model is the one the gate accepted.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from model_runner.modeling.classifier import TweetClassifier

METHOD = "torch-dynamic-qint8-perchannel"
# tweetpulse.json key: the encoder Linear layers that int8 keeps fp32 (mixed precision)
FP32_LAYERS_KEY = "int8_fp32_layers"
# Mixed precision gives up past this share of the Linear layers kept fp32: int8 would be no faster.
MAX_FP32_SHARE = 1 / 3
# Texts (the nearest to a label boundary in fp32) on which each layer's sensitivity is measured.
SENSITIVITY_TEXTS = 64
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


def linear_layers(model: TweetClassifier) -> list[str]:
    """The encoder's ``nn.Linear`` module names, in order: what int8 quantizes (and may keep fp32)."""
    return [name for name, m in model.encoder.named_modules() if isinstance(m, nn.Linear)]


def _dynamic_quantize(module: nn.Module, names: Sequence[str] | None = None) -> nn.Module:
    # qconfig by module name when only some Linear layers are quantized (mixed precision)
    spec = {nn.Linear: per_channel_dynamic_qconfig}
    if names is not None:
        spec = dict.fromkeys(names, per_channel_dynamic_qconfig)
    with _quiet_deprecations():
        return quantize_dynamic(
            module,
            spec,
            mapping={nn.Linear: _FullRangeDynamicLinear},
            inplace=True,
        )


def quantize_int8(model: TweetClassifier, *, keep_fp32: Sequence[str] | None = None) -> TweetClassifier:
    """A new CPU model with int8 encoder Linear layers; ``model`` itself is left untouched.

    ``keep_fp32``: encoder Linear layers (module names) left fp32 (mixed precision); ``None``: the
    ones training recorded in ``meta["int8_fp32_layers"]`` (none when nothing was recorded), so a
    reload reproduces the model the quantization gate accepted.
    """
    if keep_fp32 is None:
        keep_fp32 = model.meta.get(FP32_LAYERS_KEY) or ()
    keep = set(keep_fp32)
    unknown = keep - set(linear_layers(model))
    if unknown:
        raise ValueError(f"no encoder Linear layer named {', '.join(sorted(unknown))}")
    encoder = copy.deepcopy(model.encoder).to("cpu").eval()
    names = [n for n in linear_layers(model) if n not in keep] if keep else None
    encoder = _dynamic_quantize(encoder, names)
    head = copy.deepcopy(model.head).to("cpu").eval()
    meta = {**model.meta, "quantization": METHOD}
    meta.pop(FP32_LAYERS_KEY, None)
    if keep:
        meta[FP32_LAYERS_KEY] = [n for n in linear_layers(model) if n in keep]
    quantized = QuantizedTweetClassifier(
        encoder,
        model.tokenizer,
        head,
        model.labels,
        max_length=model.max_length,
        meta=meta,
        probe=model.probe,
    )
    return quantized.eval().requires_grad_(False)


def is_quantized(model: nn.Module) -> bool:
    """True when ``model`` contains dynamically quantized (int8) Linear layers."""
    return any(isinstance(m, DynamicQuantizedLinear) for m in model.modules())


def gate_failures(
    drop: float | None, agreement: float, *, max_drop: float, min_agreement: float
) -> list[str]:
    """Why a variant misses the accuracy gate (empty: it passes). ``drop`` is ``None`` when unknown."""
    failures = []
    if drop is not None and drop > max_drop + _TOLERANCE:
        failures.append(f"score drop {drop:.4f} > {max_drop:.4f}")
    if agreement < min_agreement - _TOLERANCE:
        failures.append(f"agreement {agreement:.4f} < {min_agreement:.4f}")
    return failures


# --- mixed precision: int8 except the layers the labels are most sensitive to -----------------------
@dataclass(frozen=True)
class MixedInt8:
    """What the mixed-precision search found (``search_mixed_int8``)."""

    fp32_layers: tuple[str, ...]  # kept fp32 when ``passed`` (encoder module names, model order)
    sensitivity: dict[str, float]  # mean KL(fp32 || only this layer int8) on near-tie texts
    passed: bool
    tried: int  # gate checks made
    reason: str


def _module(root: nn.Module, name: str) -> nn.Module:
    return root.get_submodule(name)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p, q = np.clip(p, 1e-12, 1.0), np.clip(q, 1e-12, 1.0)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def layer_sensitivity(
    fp32: TweetClassifier, texts: Sequence[str], p32: np.ndarray, *, n_texts: int = SENSITIVITY_TEXTS
) -> dict[str, float]:
    """How much each encoder Linear layer alone, made int8, moves the probabilities (mean KL).

    Measured on the ``n_texts`` texts closest to a label boundary in fp32 (smallest top-2 margin):
    those are the ones int8 flips, and a subset keeps the per-layer passes cheap. One fp32 copy of the
    encoder gets each layer's int8 twin swapped in and back out.
    """
    top2 = np.sort(p32, axis=1)[:, -2:] if p32.shape[1] > 1 else np.zeros((len(p32), 2))
    near = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:n_texts]
    subset, ref = [texts[i] for i in near], p32[near]
    int8 = quantize_int8(fp32, keep_fp32=())
    work = TweetClassifier(
        copy.deepcopy(fp32.encoder).to("cpu"),
        fp32.tokenizer,
        copy.deepcopy(fp32.head).to("cpu"),
        fp32.labels,
        max_length=fp32.max_length,
    ).eval()
    out = {}
    for name in linear_layers(fp32):
        original = _module(work.encoder, name)
        _replace(work.encoder, name, _module(int8.encoder, name))
        try:
            out[name] = float(_kl(ref, work.predict_proba(subset, batch_size=32)).mean())
        finally:
            _replace(work.encoder, name, original)
    return out


def search_mixed_int8(
    fp32: TweetClassifier,
    texts: Sequence[str],
    p32: np.ndarray,
    accept: Callable[[np.ndarray], bool],
    *,
    max_share: float = MAX_FP32_SHARE,
) -> tuple[TweetClassifier | None, MixedInt8]:
    """int8 with the fewest most-sensitive Linear layers kept fp32 such that ``accept(proba)`` holds.

    Greedy: layers in decreasing ``layer_sensitivity``, one more kept fp32 per gate check (each a pass
    over ``texts``), giving up past ``max_share`` of the layers (int8 would no longer pay). Layers that
    do not reach the output (BERT's unused pooler) have sensitivity 0 and are never kept.
    """
    layers = linear_layers(fp32)
    sensitivity = layer_sensitivity(fp32, texts, p32)
    order = [n for n in sorted(layers, key=lambda n: -sensitivity[n]) if sensitivity[n] > 0]
    budget = max(1, int(len(layers) * max_share))
    mixed = quantize_int8(fp32, keep_fp32=())
    kept: list[str] = []
    for name in order[:budget]:
        _replace(mixed.encoder, name, copy.deepcopy(_module(fp32.encoder, name)).to("cpu"))
        kept.append(name)
        if accept(mixed.predict_proba(texts, batch_size=32)):
            fp32_layers = tuple(n for n in layers if n in kept)
            mixed.meta[FP32_LAYERS_KEY] = list(fp32_layers)
            reason = f"int8 passes with {len(kept)} of {len(layers)} Linear layers kept fp32"
            return mixed, MixedInt8(fp32_layers, sensitivity, True, len(kept), reason)
    reason = f"int8 misses the gate even with {len(kept)} of {len(layers)} Linear layers kept fp32"
    return None, MixedInt8((), sensitivity, False, len(kept), reason)


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
    # mixed precision: the encoder Linear layers int8 keeps fp32 (empty: every layer int8), and the
    # agreement of the fully quantized model when it missed the gate (NaN: not measured / it passed)
    fp32_layers: list[str] = field(default_factory=list)
    full_int8_agreement: float = float("nan")

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
    mixed: bool = True,
) -> tuple[QuantizationReport, TweetClassifier | None]:
    """Quantize ``fp32`` and accept int8 only if it stays within tolerance of fp32 on ``texts``.

    ``metric(y_true, y_pred)`` scores predictions (higher is better, e.g. macro recall); ``y_pred`` has
    the same kind as ``y_true``: label names when ``y_true`` holds strings, class indices otherwise.
    Accepted when ``fp32_score - int8_score <= max_drop`` and the share of texts on which both models
    predict the same label is ``>= min_agreement``. Returns the report and the int8 model, or ``None``
    when fp32 is to be served.

    ``mixed``: when every-layer int8 misses the gate, search the fewest most sensitive Linear layers to
    keep fp32 (``search_mixed_int8``). When that passes, the layers are in the report and recorded in
    ``fp32.meta["int8_fp32_layers"]``, so the folder training saves next reproduces the same model at
    load (``quantize_int8`` reads them); otherwise the key is removed from ``fp32.meta``.
    """
    texts = list(texts)
    y_true = np.asarray(y_true)
    if not texts:
        raise ValueError("check_quantization needs at least one text")
    if len(y_true) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(y_true)} labels")
    as_names = y_true.dtype.kind in "OUS"
    fp32.meta.pop(FP32_LAYERS_KEY, None)

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
        int8 = quantize_int8(fp32, keep_fp32=())
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

    def judge(proba: np.ndarray) -> tuple[float, float, float, list[str]]:
        int8_score = score(proba)
        drop = fp32_score - int8_score
        agreement = float(np.mean(p32.argmax(axis=1) == proba.argmax(axis=1)))
        return (
            int8_score,
            drop,
            agreement,
            gate_failures(drop, agreement, max_drop=max_drop, min_agreement=min_agreement),
        )

    int8_score, drop, agreement, failures = judge(p8)
    full_agreement, fp32_layers, search = float("nan"), [], None
    if failures and mixed:
        found, search = search_mixed_int8(fp32, texts, p32, lambda proba: not judge(proba)[3])
        if found is not None:
            full_agreement, fp32_layers = agreement, list(search.fp32_layers)
            int8 = found
            p8, int8_tps = _timed_proba(int8, texts)
            int8_score, drop, agreement, failures = judge(p8)
            fp32.meta[FP32_LAYERS_KEY] = fp32_layers
    accepted = not failures
    if accepted:
        reason = f"int8 accepted: score drop {drop:.4f} <= {max_drop:.4f}, "
        reason += f"agreement {agreement:.4f} >= {min_agreement:.4f}"
        if fp32_layers:
            reason += f" ({search.reason}; every layer int8: agreement {full_agreement:.4f})"
    else:
        reason = "fp32 kept: " + "; ".join(failures)
        if search is not None:
            reason += f" ({search.reason})"
    report = QuantizationReport(
        chosen="int8" if accepted else "fp32",
        int8_score=int8_score,
        score_drop=drop,
        agreement=agreement,
        reason=reason,
        int8_texts_per_s=int8_tps,
        fp32_layers=fp32_layers,
        full_int8_agreement=full_agreement,
        **common,
    )
    return report, (int8 if accepted else None)
