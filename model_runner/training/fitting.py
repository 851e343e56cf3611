"""One entry point to fit any candidate on a subset of the training rows and to predict with it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from model_runner.modeling.classifier import TweetClassifier
from model_runner.training.clock import FitCallback
from model_runner.training.fit_heads import HEAD_FITTERS, fit_linear, predict_head
from model_runner.training.fit_lora import fit_finetune, fit_lora
from model_runner.training.folds import CVData
from model_runner.training.search_space import Candidate

# LoRA and fine-tuning start from a logistic-regression head fitted on the cached embeddings: the
# encoder updates then refine a sensible classifier instead of first having to undo a random one.
LORA_INIT_C = 0.05


def cv_epochs(hp: dict, n_rows: int) -> int:
    """Epochs of a CV fit: ``cv_epochs``, raised towards ``epochs`` while the fold fits the budget.

    ``cv_pass_budget`` caps rows x epochs per fold. On a large training split one epoch already fills
    it (the score is then a lower bound of the final fit); on a small one (emotion: 3,257 tweets) the
    folds get the full epochs, because a one-epoch score there would undersell the encoder adapters
    against the head-only ones and CV would pick the wrong adapter.
    """
    return _budgeted_epochs(int(hp["cv_epochs"]), int(hp["epochs"]), hp.get("cv_pass_budget"), n_rows)


def fit_epochs(hp: dict, n_rows: int) -> int:
    """Epochs of a final fit: ``epochs``, raised while rows x epochs stays within ``fit_pass_target``.

    A fine-tune wants a number of optimiser steps more than a number of epochs: two epochs of the
    9,284 sentiment tweets are ~580 steps, but two of the 3,257 emotion tweets only ~200. Emotion,
    trained on 80% of its train.jsonl, macro F1 on the other 20% / on validation.jsonl: 2 epochs
    0.701 / 0.669, 5 epochs 0.723 / 0.690, 8 epochs 0.744 / 0.694 (with emoji named: 5 epochs
    0.757 / 0.694, 8 epochs 0.742 / 0.711, 12 epochs 0.743 / 0.711: a plateau). ``max_epochs``
    bounds it for tiny datasets.
    """
    floor = int(hp["epochs"])
    return _budgeted_epochs(floor, int(hp.get("max_epochs") or floor), hp.get("fit_pass_target"), n_rows)


def _budgeted_epochs(floor: int, cap: int, budget, n_rows: int) -> int:
    """As many epochs as ``budget`` rows x epochs allow on ``n_rows``, within [floor, cap]."""
    budget = int(budget or 0)
    if budget <= 0 or n_rows <= 0:
        return floor
    return max(floor, min(cap, budget // n_rows))


def resolve_hp(candidate: Candidate, n_rows: int, *, in_cv: bool = False) -> dict:
    """The hyperparameters a fit on ``n_rows`` really uses: epochs from the CV budget or the fit target."""
    hp = candidate.hp
    if in_cv and "cv_epochs" in hp:
        hp["epochs"] = cv_epochs(hp, n_rows)
    elif not in_cv and "fit_pass_target" in hp:
        hp["epochs"] = fit_epochs(hp, n_rows)
    return hp


@dataclass(frozen=True, eq=False)
class ValRows:
    """Rows a fit scores at each epoch's end (loss and macro recall curves): monitoring only, nothing
    is chosen by them. Head-only candidates see them as embeddings under the frozen base encoder."""

    texts: Sequence[str]
    y: np.ndarray


def _val_inputs(candidate: Candidate, data: CVData, val: ValRows | None):
    """``val`` as the fitter takes it: texts for encoder adapters, base-encoder embeddings for heads;
    None for the linear head, which has no epochs."""
    if val is None or not len(val.y) or candidate.adapter not in {"mlp", "lora", "finetune"}:
        return None
    if not candidate.uses_cache:
        return list(val.texts), np.asarray(val.y)
    # pooled exactly as the embedding cache pools data.x (see training.warmup.embed_with)
    from model_runner.encoder import FrozenEncoder

    encoder = FrozenEncoder(data.base_path, device=data.device, max_length=data.max_length)
    return encoder.encode(list(val.texts)), np.asarray(val.y)


def fit_candidate(
    candidate: Candidate,
    data: CVData,
    idx: np.ndarray,
    *,
    in_cv: bool = False,
    on_epoch: Callable[[int, int], None] | None = None,
    on_step: FitCallback | None = None,
    val: ValRows | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> nn.Module | TweetClassifier:
    """Fit on rows ``idx``; ``in_cv`` applies the candidate's CV budget (``cv_epochs``), otherwise its
    fit target (``fit_pass_target``) sets the epochs.

    ``on_step`` hears every batch of an epoch-based fit (mlp, lora, finetune), its epoch's last report
    with the loss and macro recall on ``val`` when given; the linear head is one solve and reports
    nothing."""
    n_classes = len(data.labels)
    hp = resolve_hp(candidate, len(idx), in_cv=in_cv)
    val_in = _val_inputs(candidate, data, val) if on_step else None
    if candidate.uses_cache:
        fitter = HEAD_FITTERS[candidate.adapter]
        return fitter(
            data.x[idx],
            data.y[idx],
            n_classes,
            seed=data.seed,
            on_epoch=on_epoch,
            on_step=on_step,
            val=val_in,
            **hp,
        )
    x_init = data.x if data.x_init is None else data.x_init
    init = fit_linear(x_init[idx], data.y[idx], n_classes, C=LORA_INIT_C, seed=data.seed)
    fitter = fit_lora if candidate.adapter == "lora" else fit_finetune
    if candidate.adapter == "distill":
        hp["teacher"] = data.distillation(idx, hp.pop("alpha"), hp.pop("temperature"), unlabelled=not in_cv)
    return fitter(
        Path(data.init_path or data.base_path),
        [data.texts[i] for i in idx],
        data.y[idx],
        data.labels,
        max_length=data.max_length,
        seed=data.seed,
        device=data.device,
        init_head=init,
        on_epoch=on_epoch,
        on_step=on_step,
        val=val_in,
        should_stop=should_stop,
        **hp,
    )


def predict_candidate(fitted, candidate: Candidate, data: CVData, idx: np.ndarray) -> np.ndarray:
    if candidate.uses_cache:
        return predict_head(fitted, data.x[idx])
    return fitted.predict_proba([data.texts[i] for i in idx], clean=False)


def build_classifier(fitted, candidate: Candidate, data: CVData, meta: dict) -> TweetClassifier:
    """The deployable model: a head-only fit gets the frozen base encoder; LoRA already is one."""
    if isinstance(fitted, TweetClassifier):
        fitted.meta.update(meta)
        return fitted
    # lazy: CV worker processes import this module; head-only candidates never need transformers
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(data.base_path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(data.base_path)
    model = TweetClassifier(encoder, tokenizer, fitted, data.labels, max_length=data.max_length, meta=meta)
    return model.eval().requires_grad_(False)
