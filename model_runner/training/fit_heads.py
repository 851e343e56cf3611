"""Fitting the head-only adapters on cached embeddings (no encoder forward passes).

``linear`` is scikit-learn's lbfgs logistic regression: one convex solve, no epochs, so it has no
per-epoch progress and no loss curve. ``mlp`` trains in epochs of mini-batches and reports each batch
(``on_step``) and, at each epoch's end, the loss and macro recall on validation rows if given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from torch import nn

from model_runner.modeling.heads import build_head
from model_runner.training.clock import FitCallback, FitStep

EpochCallback = Callable[[int, int], None]  # (epoch, epochs)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights n / (k * count): every class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return len(y) / (n_classes * np.maximum(counts, 1))


def val_scores(proba: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(class-weighted cross-entropy, macro recall) of ``proba`` on labels ``y``.

    The loss weighs classes as the training loss does (``weights``), so the curves are comparable;
    macro recall averages over every class, as the evaluation report does.
    """
    p = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    w = weights[y]
    loss = float(-(w * np.log(p)).sum() / w.sum())
    recall = recall_score(
        y, proba.argmax(axis=1), labels=list(range(proba.shape[1])), average="macro", zero_division=0
    )
    return loss, float(recall)


@torch.no_grad()
def _fold_standardisation(linear: nn.Linear, mean: np.ndarray, std: np.ndarray) -> None:
    """Rewrite ``linear`` so it takes raw embeddings instead of standardised ones."""
    w = linear.weight / torch.as_tensor(std, dtype=torch.float32)
    linear.bias -= w @ torch.as_tensor(mean, dtype=torch.float32)
    linear.weight.copy_(w)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-6


def fit_linear(x: np.ndarray, y: np.ndarray, n_classes: int, *, C: float, seed: int = 0, **_) -> nn.Module:
    """Class-weighted multinomial logistic regression (scikit-learn's lbfgs), as a torch head.

    One solve, no epochs: ``on_epoch``, ``on_step`` and validation rows are accepted and ignored."""
    mean, std = _standardiser(x)
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    clf.fit((x - mean) / std, y)
    head = build_head("linear", x.shape[1], n_classes, dropout=0.0)
    linear = head[-1]
    coef, intercept = clf.coef_, clf.intercept_
    if n_classes == 2:  # scikit-learn stores one row for binary problems: expand to two logits
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
    _fold_standardisation(linear, mean, std)
    return head


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    hidden: int,
    dropout: float,
    lr: float,
    weight_decay: float,
    epochs: int,
    seed: int = 0,
    batch_size: int = 128,
    on_epoch: EpochCallback | None = None,
    on_step: FitCallback | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    **_,
) -> nn.Module:
    """A class-weighted MLP head in epochs of shuffled mini-batches; ``on_step`` after every batch,
    with the loss and macro recall on ``val`` (embeddings, labels) at each epoch's end."""
    torch.manual_seed(seed)
    mean, std = _standardiser(x)
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.long)
    head = build_head("mlp", x.shape[1], n_classes, hidden=hidden, dropout=dropout)
    weights = class_weights(y, n_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    batches = (len(xs) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * batches, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    xv = torch.as_tensor((val[0] - mean) / std, dtype=torch.float32) if val is not None else None
    for epoch in range(epochs):
        head.train()
        total = 0.0
        for b, idx in enumerate(torch.randperm(len(xs), generator=gen).split(batch_size), start=1):
            opt.zero_grad()
            loss = loss_fn(head(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            if on_step and b < batches:
                on_step(FitStep(epoch + 1, epochs, b, batches, total / b))
        if on_step:
            scores = (None, None)
            if val is not None:
                head.eval()
                with torch.inference_mode():
                    proba = torch.softmax(head(xv), dim=-1).numpy()
                scores = val_scores(proba, np.asarray(val[1]), weights)
            on_step(FitStep(epoch + 1, epochs, batches, batches, total / batches, *scores))
        if on_epoch:
            on_epoch(epoch + 1, epochs)
    head.eval()
    _fold_standardisation(head[1], mean, std)
    return head


@torch.inference_mode()
def predict_head(head: nn.Module, x: np.ndarray) -> np.ndarray:
    head.eval()
    logits = head(torch.as_tensor(x, dtype=torch.float32))
    return torch.softmax(logits, dim=-1).numpy()


HEAD_FITTERS = {"linear": fit_linear, "mlp": fit_mlp}
