"""The rows a fit sees: a task's prepared split, the frozen CV data built from it, and the folds.

``Split`` is what data preparation hands to training (training rows, held-out evaluation rows);
``CVData`` is what every fit reads (the training rows, their cached embeddings and the encoder to
start from); ``fold_jobs`` cuts the training rows into the (candidate, fold) jobs of
cross-validation. All three are frozen: a stage that changes them (the warm-up) returns a new value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import StratifiedKFold

from model_runner.training.search_space import Candidate

if TYPE_CHECKING:  # types only: fold workers import this module and need none of them
    from model_runner.data import DataSummary, PreparedData
    from model_runner.encoder import FrozenEncoder
    from model_runner.settings import Settings


@dataclass(frozen=True, eq=False)
class Split:
    """A task's prepared data: the training rows (CV and the final fit) and the held-out rows."""

    source: str
    summary: DataSummary
    labels: list[str]
    train_texts: list[str]
    y_train: np.ndarray
    eval_texts: list[str]
    y_eval: np.ndarray

    @classmethod
    def of(cls, prepared: PreparedData, *, source: str) -> Split:
        return cls(
            source=source,
            summary=prepared.summary,
            labels=prepared.labels,
            train_texts=list(prepared.train["text"]),
            y_train=np.asarray(prepared.train["label"]),
            eval_texts=list(prepared.eval["text"]),
            y_eval=np.asarray(prepared.eval["label"]),
        )


@dataclass(frozen=True, eq=False)
class CVData:
    """Everything a fold job needs; shipped once per worker process. Build it with :meth:`build`."""

    x: np.ndarray  # cached embeddings of the training split
    texts: list[str]  # its texts (for LoRA)
    y: np.ndarray
    labels: list[str]
    base_path: str
    max_length: int
    seed: int
    device: str
    # encoder adapters start from this encoder folder (a warmed-up one, see training.warmup) instead
    # of base_path, with their initial head fitted on x_init: these texts' embeddings under it
    init_path: str = ""
    x_init: np.ndarray | None = None
    # the teacher's logits for these rows, and unlabelled texts with theirs (training.run.teach)
    soft: np.ndarray | None = None
    unlabelled_texts: tuple[str, ...] = ()
    unlabelled_soft: np.ndarray | None = None

    @classmethod
    def build(cls, *, split: Split, x: np.ndarray, encoder: FrozenEncoder, settings: Settings) -> CVData:
        """The training rows of ``split`` with their embeddings ``x`` under ``encoder``."""
        return cls(
            x=x,
            texts=split.train_texts,
            y=split.y_train,
            labels=split.labels,
            base_path=str(encoder.resolved.path),
            max_length=settings.encoder_max_length,
            seed=settings.seed,
            device="cuda" if encoder.device.type == "cuda" else "cpu",
        )

    def starting_from(self, init_path: str, x_init: np.ndarray) -> CVData:
        """The same rows, with encoder adapters starting from the encoder in ``init_path``."""
        return replace(self, init_path=init_path, x_init=x_init)

    def taught(
        self, soft: np.ndarray, unlabelled_texts: Sequence[str], unlabelled_soft: np.ndarray
    ) -> CVData:
        """The same rows with the teacher's logits (and unlabelled texts the student also learns from)."""
        return replace(
            self, soft=soft, unlabelled_texts=tuple(unlabelled_texts), unlabelled_soft=unlabelled_soft
        )

    def distillation(self, idx: np.ndarray, alpha: float, temperature: float, *, unlabelled: bool):
        """What a distill fit on rows ``idx`` learns from besides labels; None without a teacher.

        CV folds leave the unlabelled texts out (``unlabelled=False``): they would multiply each
        fold's cost while the fold's score, on labelled rows, compares candidates either way.
        """
        if self.soft is None:
            return None
        from model_runner.training.fit_lora import Distillation

        extra = unlabelled and len(self.unlabelled_texts) > 0
        return Distillation(
            logits=self.soft[idx],
            alpha=float(alpha),
            temperature=float(temperature),
            unlabelled_texts=self.unlabelled_texts if extra else (),
            unlabelled_logits=self.unlabelled_soft if extra else None,
        )


@dataclass(frozen=True)
class FoldJob:
    """One fit of cross-validation: ``candidate`` trained on ``train_idx``, scored on ``val_idx``."""

    candidate: Candidate
    fold: int
    train_idx: np.ndarray
    val_idx: np.ndarray


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    smallest = int(np.bincount(y).min())
    if smallest < k:
        raise ValueError(
            f"{k}-fold CV needs at least {k} examples per class; the smallest class has {smallest}"
        )
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def fold_count(candidate: Candidate, folds: int) -> int:
    """``folds``, or fewer where the candidate has a CV budget (``cv_folds``, e.g. LoRA on a CPU)."""
    return min(folds, int(candidate.hp.get("cv_folds", folds)))


def fold_jobs(candidates: Sequence[Candidate], data: CVData, folds: int) -> list[FoldJob]:
    """Every (candidate, fold) job; candidates with the same fold count share the same split.

    A candidate with a CV budget gets its own stratified ``cv_folds``-fold split: fewer, cheaper
    folds that still give a mean and a spread.
    """
    splits = {k: stratified_folds(data.y, k, data.seed) for k in {fold_count(c, folds) for c in candidates}}
    return [
        FoldJob(c, i, train_idx, val_idx)
        for c in candidates
        for i, (train_idx, val_idx) in enumerate(splits[fold_count(c, folds)])
    ]
