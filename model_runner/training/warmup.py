"""Intermediate-task warm-up: fine-tune the encoder on another task's labelled tweets first.

Emotion has 3,257 training tweets; sentiment has 9,284 from the same platform, and polarity is much
of what separates anger and sadness from joy and optimism, so fine-tuning the encoder on sentiment
first (intermediate-task transfer, Phang et al. 2018, "STILTs") looked promising. Measured on
emotion's default fine-tune, fitted on 80% of its train.jsonl, macro F1 on the other 20% / on
validation.jsonl, warm minus base, paired by seed:

    experiment (6 epochs, seeds 0-2)       +0.011 / +0.014   -0.001 / +0.012   +0.020 / +0.002
    make bench ARGS=warmup (7 epochs)      -0.028 / +0.005   -0.006 / +0.031   -0.017 / -0.004

Over the six pairs: -0.004 on the held-out fifth (2 of 6 better), +0.010 on validation (5 of 6
better). No reliable gain for one extra fine-tune (~6 min on 2 cores), so it is off by default
(``emotion_warmup_task=""``) and available for tasks with less data than emotion has.

Only the encoder carries over: the warm-up task's head is dropped and this task's head starts from a
logistic regression on the warmed encoder's embeddings, as a plain fine-tune does on the base
encoder's. The warm-up task's own warm-up setting is not followed (one level, no cycles).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_runner.data import prepare_dataset
from model_runner.encoder import FrozenEncoder
from model_runner.tasks import Task, get_task
from model_runner.training.clock import FitCallback
from model_runner.training.fitting import ValRows, fit_candidate, resolve_hp
from model_runner.training.folds import CVData, Split
from model_runner.training.history import CURVE_ROWS, curve_sample
from model_runner.training.search_space import SEARCH_SPACE
from model_runner.wiring import Components

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Warmup:
    """A warmed-up encoder folder and what made it."""

    task: str
    path: Path
    data_hash: str
    rows: int
    epochs: int
    seconds: float

    def params(self) -> dict[str, object]:
        return {f"warmup.{key}": value for key, value in self.meta().items()}

    def meta(self) -> dict[str, object]:
        return {"task": self.task, "data_hash": self.data_hash, "rows": self.rows, "epochs": self.epochs}


def warm_up_encoder(
    components: Components,
    task: Task,
    dst: Path,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    on_step: FitCallback | None = None,
    curve_rows: int = CURVE_ROWS,
) -> Warmup:
    """Fine-tune the base encoder on ``task.warmup``'s training split; save encoder + tokenizer to ``dst``.

    Uses the ``finetune`` adapter's hyperparameters (epochs from its pass target) and the embedding
    cache for its initial head, so a warm-up on data the sentiment task already embedded costs only
    the fine-tune itself. ``on_step`` hears every batch; each epoch's last report carries the loss and
    macro recall on up to ``curve_rows`` of the warm-up task's held-out rows (0: none).
    """
    settings = components.settings
    source = get_task(task.warmup, settings)
    started = time.perf_counter()
    prepared = prepare_dataset(
        source.data, eval_fraction=settings.eval_fraction, seed=settings.seed, **source.read_options()
    )
    split = Split.of(prepared, source=source.data)
    store = components.embeddings
    x = store.get_or_compute(split.train_texts, progress=True)
    data = CVData.build(split=split, x=x, encoder=store.encoder, settings=settings)
    rows = len(data.y)
    candidate = SEARCH_SPACE["finetune"][0]
    epochs = int(resolve_hp(candidate, rows)["epochs"])
    log.info("warm-up: fine-tuning the encoder on %s (%d tweets, %d epochs)", source.name, rows, epochs)
    val = None
    if on_step and curve_rows > 0 and len(split.y_eval):
        pick = curve_sample(split.y_eval, curve_rows, settings.seed)
        val = ValRows([split.eval_texts[i] for i in pick], split.y_eval[pick])
    model = fit_candidate(
        candidate,
        data,
        np.arange(rows),
        on_epoch=on_epoch,
        on_step=on_step,
        val=val,
        should_stop=should_stop,
    )
    dst.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(dst)
    model.tokenizer.save_pretrained(dst)
    return Warmup(source.name, dst, split.summary.dataset_hash, rows, epochs, time.perf_counter() - started)


def embed_with(warmup: Warmup, texts: Sequence[str], components: Components) -> np.ndarray:
    """``texts``' embeddings under the warmed encoder, pooled exactly as the embedding cache pools."""
    settings = components.settings
    encoder = FrozenEncoder(
        str(warmup.path),
        device=settings.device,
        max_length=settings.encoder_max_length,
        batch_size=settings.encoder_batch_size,
    )
    return encoder.encode(list(texts))
