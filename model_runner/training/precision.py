"""Whether a fit trains under bf16 autocast: measured on this machine, never assumed.

On CUDA bf16 autocast is the norm. On a CPU it pays only where the cores have bf16 instructions
(Intel AMX, AVX512-BF16 on Intel and AMD Zen 4), and even there the gain depends on the model and the
batch shapes: the teacher's fine-tune was 2.2x faster under bf16 on 2 Intel AMX cores, while on an
AVX2-only CPU autocast only adds casts. So where the instructions exist, a few real training steps
(forward and backward, no optimiser step: the weights are untouched) are timed each way and bf16 is
used only when it is clearly faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

FASTER_BY = 0.85  # bf16 must take at most this share of the fp32 step time
_STEPS = 2


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "bf16" or "fp32"
    reason: str
    fp32_step_s: float | None = None
    bf16_step_s: float | None = None


def cpu_has_bf16() -> bool:
    """The CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16)."""
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


def pick_precision(model, texts: Sequence[str], device: torch.device) -> PrecisionChoice:
    """bf16 or fp32 for training ``model`` (a TweetClassifier in train mode) on ``device``."""
    if device.type == "cuda":
        return PrecisionChoice("bf16", "CUDA")
    if not cpu_has_bf16():
        return PrecisionChoice("fp32", "this CPU has no bf16 instructions")
    batch = {k: v.to(device) for k, v in model.tokenize(list(texts)[:32]).items()}
    fp32 = _step_seconds(model, batch, bf16=False)
    bf16 = _step_seconds(model, batch, bf16=True)
    model.zero_grad(set_to_none=True)
    faster = bf16 <= FASTER_BY * fp32
    reason = f"measured step {bf16:.2f} s bf16 vs {fp32:.2f} s fp32"
    choice = PrecisionChoice("bf16" if faster else "fp32", reason, fp32, bf16)
    log.info("training precision %s (%s)", choice.precision, reason)
    return choice


def _step_seconds(model, batch: dict, *, bf16: bool) -> float:
    best = float("inf")
    for i in range(_STEPS + 1):  # the first step of each kind warms kernels and caches up
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch["input_ids"], batch["attention_mask"])
        logits.float().sum().backward()
        if i:
            best = min(best, time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    return best
