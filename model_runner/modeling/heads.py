"""Classification heads that sit on the pooled sentence embedding."""

from __future__ import annotations

import torch
from torch import nn


def build_head(kind: str, dim: int, n_classes: int, *, hidden: int = 256, dropout: float = 0.1) -> nn.Module:
    """``linear``: one affine map (multinomial logistic regression); ``mlp``: one hidden layer."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
    raise ValueError(f"unknown head {kind!r}")


def head_spec(head: nn.Module) -> dict:
    """Enough to rebuild ``head`` (shape-wise) before loading its weights."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    dropout = next((m.p for m in head.modules() if isinstance(m, nn.Dropout)), 0.0)
    if len(linears) == 1:
        return {"kind": "linear", "dropout": dropout}
    return {"kind": "mlp", "hidden": linears[0].out_features, "dropout": dropout}


@torch.no_grad()
def init_from_logistic(head: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Start a linear head from a fitted logistic regression (used to warm-start LoRA)."""
    linear = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    linear.weight.copy_(weight)
    linear.bias.copy_(bias)
