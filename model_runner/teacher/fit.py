"""Fine-tune the teacher: the larger encoder, end to end, with a linear head, on a task's training rows.

The recipe measured for all-mpnet-base-v2 (issue 15): lr 4e-5, batch 32, mean pooling and a linear
head, class-weighted cross-entropy, 2 epochs on the 9,284 sentiment tweets (hidden-test macro recall
0.7525) and 4 on the 3,257 emotion tweets (macro F1 0.815): ``fit_pass_target`` turns a row count into
epochs the way the student's fine-tune does. The head starts random (the teacher's embeddings are not
cached), so it gets its own, larger learning rate. bf16 autocast where this machine measures it faster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from model_runner.encoder.resolve import ResolvedModel
from model_runner.modeling.classifier import TweetClassifier
from model_runner.training.clock import FitCallback
from model_runner.training.fit_lora import _fit_encoder
from model_runner.training.fitting import fit_epochs

TEACHER_HP: dict[str, object] = {
    "lr": 4e-5,
    "head_lr": 2e-3,
    "epochs": 2,
    "max_epochs": 4,
    "fit_pass_target": 14_000,
    "batch_size": 32,
    "weight_decay": 0.01,
}


def teacher_hp(n_rows: int) -> dict[str, object]:
    """The teacher's hyperparameters for ``n_rows`` training rows (epochs from the pass target)."""
    hp = dict(TEACHER_HP)
    hp["epochs"] = fit_epochs(hp, n_rows)
    return hp


def teacher_key(base: ResolvedModel, task: str, labels: Sequence[str], data_hash: str, hp: dict) -> str:
    """Names one fitted teacher: its base weights and a hash of what it was fitted on and how."""
    fit = json.dumps(
        {"task": task, "labels": list(labels), "data": data_hash, "hp": hp}, sort_keys=True, default=str
    )
    return f"{base.model_id}@{base.revision}/ft-{hashlib.sha256(fit.encode()).hexdigest()[:16]}"


def fit_teacher(
    base: ResolvedModel,
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    *,
    max_length: int,
    seed: int,
    device: str,
    hp: dict,
    on_step: FitCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TweetClassifier:
    """The fine-tuned teacher (eval mode); ``texts`` are cleaned like every training text."""
    loop = {k: v for k, v in hp.items() if k not in {"max_epochs", "fit_pass_target"}}
    model = _fit_encoder(
        Path(base.path),
        texts,
        np.asarray(y),
        labels,
        max_length=max_length,
        seed=seed,
        device=device,
        on_step=on_step,
        should_stop=should_stop,
        precision="auto",
        **loop,
    )
    model.meta.update({"teacher": {"base_id": base.model_id, "base_revision": base.revision, "hp": hp}})
    return model


def teacher_logits(model: TweetClassifier, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """The teacher's log-probabilities for ``texts`` (cleaned): logits up to a per-row constant, which
    softmax at any temperature ignores, so they distil exactly as the raw logits would.

    Under bf16 autocast when the teacher was trained under it (measured faster on this machine, and
    the precision it learnt in): soft labels need no more than bf16's three significant digits."""
    bf16 = model.meta.get("training_precision", {}).get("precision") == "bf16"
    device = next(model.head.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        proba = model.predict_proba(list(texts), batch_size=batch_size, clean=False)
    return np.log(np.clip(proba, 1e-12, 1.0)).astype(np.float32)
