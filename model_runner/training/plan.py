"""What a training run will try, fixed before it trains anything: candidates, folds, metric, encoder."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from model_runner.settings import Settings
from model_runner.tasks import Task
from model_runner.training.search_space import Candidate, candidates_for, without_teacher

if TYPE_CHECKING:
    from model_runner.encoder import FrozenEncoder


@dataclass(frozen=True)
class Plan:
    task: Task
    candidates: tuple[Candidate, ...]
    folds: int  # k of the stratified k-fold CV (a candidate's own budget may lower it)
    workers: int  # CV jobs run at once
    metric: str  # what picks the best candidate and what the gate compares
    seed: int
    encoder_id: str
    encoder_revision: str

    @classmethod
    def of(
        cls,
        settings: Settings,
        task: Task,
        encoder: FrozenEncoder,
        *,
        adapters: list[str] | None = None,
        folds: int | None = None,
    ) -> Plan:
        """``adapters`` and ``folds`` as asked, else as the settings say."""
        candidates = tuple(candidates_for(adapters or settings.adapters.split(",")))
        k = folds or settings.cv_folds
        device = "cuda" if encoder.device.type == "cuda" else "cpu"
        return cls(
            task=task,
            candidates=candidates,
            folds=k,
            workers=cv_workers(settings, device, len(candidates) * k),
            metric=task.metric,
            seed=settings.seed,
            encoder_id=encoder.encoder_id,
            encoder_revision=encoder.revision,
        )

    @property
    def adapters(self) -> str:
        return ",".join(sorted({c.adapter for c in self.candidates}))

    @property
    def base_model(self) -> dict[str, str]:
        return {"id": self.encoder_id, "revision": self.encoder_revision}

    @property
    def wants_teacher(self) -> bool:
        return any(c.adapter == "distill" for c in self.candidates)

    def without_teacher(self) -> Plan:
        """The plan of a run that has no teacher: its distill candidate is the plain fine-tune."""
        candidates = tuple(dict.fromkeys(without_teacher(c) for c in self.candidates))
        return replace(self, candidates=candidates)

    @property
    def needs_warmup(self) -> bool:
        """The task names a warm-up and an encoder adapter is among the candidates."""
        return bool(self.task.warmup) and not all(c.uses_cache for c in self.candidates)


def cv_workers(settings: Settings, device: str, n_jobs: int) -> int:
    configured = settings.cv_workers
    if configured:
        return configured
    return min(n_jobs, 2 if device == "cuda" else max(1, os.cpu_count() or 1))
