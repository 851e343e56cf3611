"""Fitting the head-only adapters on cached embeddings (no encoder forward passes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from model_runner.modeling.heads import build_head

EpochCallback = Callable[[int, int], None]  # (epoch, epochs)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights n / (k * count): every class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return len(y) / (n_classes * np.maximum(counts, 1))


@torch.no_grad()
def _fold_standardisation(linear: nn.Linear, mean: np.ndarray, std: np.ndarray) -> None:
    """Rewrite ``linear`` so it takes raw embeddings instead of standardised ones."""
    w = linear.weight / torch.as_tensor(std, dtype=torch.float32)
    linear.bias -= w @ torch.as_tensor(mean, dtype=torch.float32)
    linear.weight.copy_(w)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-6


def fit_linear(x: np.ndarray, y: np.ndarray, n_classes: int, *, C: float, seed: int = 0, **_) -> nn.Module:
    """Class-weighted multinomial logistic regression (scikit-learn's lbfgs), as a torch head."""
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
    **_,
) -> nn.Module:
    torch.manual_seed(seed)
    mean, std = _standardiser(x)
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.long)
    head = build_head("mlp", x.shape[1], n_classes, hidden=hidden, dropout=dropout)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights(y, n_classes), dtype=torch.float32))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(xs) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for epoch in range(epochs):
        for idx in torch.randperm(len(xs), generator=gen).split(batch_size):
            opt.zero_grad()
            loss_fn(head(xs[idx]), ys[idx]).backward()
            opt.step()
            sched.step()
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
