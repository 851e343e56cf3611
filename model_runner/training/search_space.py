"""The search space: every adapter and the hyperparameters cross-validation chooses from.

Declared in one place so that a reviewer sees at a glance what a training run tries. Head-only
adapters are cheap (they read cached embeddings), so they get a grid; LoRA and full fine-tuning train
the encoder from tokens, so each gets one well-tested configuration and a CV budget (``cv_folds``,
``cv_epochs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ADAPTERS = ("linear", "mlp", "lora", "finetune", "distill")
# adapters that train the encoder from tokens; the others read cached embeddings
ENCODER_ADAPTERS = frozenset({"lora", "finetune", "distill"})


@dataclass(frozen=True)
class Candidate:
    adapter: str
    params: tuple[tuple[str, object], ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, adapter: str, **params) -> Candidate:
        return cls(adapter, tuple(sorted(params.items())))

    @property
    def hp(self) -> dict:
        return dict(self.params)

    @property
    def name(self) -> str:
        return f"{self.adapter}[{','.join(f'{k}={v}' for k, v in self.params)}]"

    @property
    def uses_cache(self) -> bool:
        return self.adapter not in ENCODER_ADAPTERS

    def to_json(self) -> str:
        return json.dumps({"adapter": self.adapter, **self.hp}, sort_keys=True)


FT_LR, FT_EPOCHS = 8e-5, 2
# rows x epochs one CV fold of an encoder adapter may train on (see fitting.cv_epochs)
CV_PASS_BUDGET = 6000
# rows x epochs a final encoder fit aims at, from FT_EPOCHS up to FT_MAX_EPOCHS (fitting.fit_epochs):
# 2 epochs on the 9,284 sentiment tweets, 6 on the 3,257 emotion tweets
FIT_PASS_TARGET, FT_MAX_EPOCHS = 20_000, 8

# Full fine-tuning of every encoder weight: on a CPU an epoch costs what LoRA's does (see
# fit_finetune) and it scored a little higher. Same CV budget and lower-bound argument as LoRA.
FINETUNE_HP: dict[str, object] = {
    "lr": FT_LR,
    "epochs": FT_EPOCHS,
    "max_epochs": FT_MAX_EPOCHS,
    "fit_pass_target": FIT_PASS_TARGET,
    "batch_size": 32,
    "weight_decay": 0.01,
    "cv_folds": 2,
    "cv_epochs": 1,
    "cv_pass_budget": CV_PASS_BUDGET,
}

SEARCH_SPACE: dict[str, list[Candidate]] = {
    # Multinomial logistic regression on standardised embeddings; C is the inverse L2 strength.
    "linear": [Candidate.of("linear", C=c) for c in (0.02, 0.1)],
    "mlp": [
        Candidate.of("mlp", hidden=h, dropout=0.3, lr=1e-3, weight_decay=1e-2, epochs=40) for h in (256,)
    ],
    # LoRA on every attention and feed-forward projection. Its CV has a budget: its own stratified
    # 2-fold split and, on the 9,284 sentiment tweets, one epoch per fold, because k folds x all
    # epochs would not fit the 20-minute target on a 2-core CPU. Half the data and fewer epochs make
    # the score a lower bound of what the final fit on all rows reaches, so when an encoder adapter
    # wins the selection the win is real. Small datasets get more CV epochs (cv_pass_budget).
    # On a GPU, raise cv_folds/cv_epochs here.
    "lora": [
        Candidate.of(
            "lora",
            rank=8,
            alpha=16,
            dropout=0.1,
            lr=1e-3,
            epochs=2,
            batch_size=32,
            target_modules="query,key,value,dense",
            cv_folds=2,
            cv_epochs=1,
            cv_pass_budget=CV_PASS_BUDGET,
        )
    ],
    "finetune": [Candidate.of("finetune", **FINETUNE_HP)],
    # The student: full fine-tuning that learns from the labels and from the teacher's soft labels
    # (training/run.py fits or reuses the teacher first; without one it is the finetune candidate).
    # alpha weighs the distillation term, temperature softens both distributions (Hinton et al.).
    "distill": [Candidate.of("distill", **FINETUNE_HP, alpha=0.5, temperature=2.0)],
}


def without_teacher(candidate: Candidate) -> Candidate:
    """What a distill candidate becomes when the run has no teacher: the plain fine-tune."""
    if candidate.adapter != "distill":
        return candidate
    return SEARCH_SPACE["finetune"][0]


def candidates_for(adapters: list[str]) -> list[Candidate]:
    unknown = sorted(set(adapters) - set(ADAPTERS))
    if unknown:
        raise ValueError(f"unknown adapter(s) {unknown}; choose from {list(ADAPTERS)}")
    return [c for a in adapters for c in SEARCH_SPACE[a]]
