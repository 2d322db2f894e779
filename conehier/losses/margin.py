"""Losses on energies of positive pairs and their negatives."""

from __future__ import annotations

import torch
from torch import nn


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")


def max_margin_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float, reduction: str = "sum") -> torch.Tensor:
    """Thesis eq. 2.3: ``sum_pos E + sum_neg max(0, margin - E)``.

    ``pos`` (B,) energies of positives, ``neg`` (B, k) energies of their negatives.
    ``reduction="none"`` gives the per-positive loss ``(B,)``; ``"mean"`` divides by B.
    """
    if neg.ndim != pos.ndim + 1 or neg.shape[:-1] != pos.shape:
        raise ValueError(f"neg must have shape {tuple(pos.shape)} + (k,), got {tuple(neg.shape)}")
    per = pos + torch.relu(margin - neg).sum(-1)
    return _reduce(per, reduction)


def distance_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Nickel & Kiela 2017: ``-log(exp(-d(u, v)) / (exp(-d(u, v)) + sum_neg exp(-d(u', v'))))``.

    ``pos`` (B,) distances of positives, ``neg`` (B, k) distances of their negatives.
    """
    if neg.ndim != pos.ndim + 1 or neg.shape[:-1] != pos.shape:
        raise ValueError(f"neg must have shape {tuple(pos.shape)} + (k,), got {tuple(neg.shape)}")
    logits = -torch.cat([pos.unsqueeze(-1), neg], dim=-1)
    per = -torch.log_softmax(logits, dim=-1)[..., 0]
    return _reduce(per, reduction)


class MaxMarginLoss(nn.Module):
    def __init__(self, margin: float = 0.01, reduction: str = "sum"):
        super().__init__()
        self.margin, self.reduction = float(margin), reduction

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return max_margin_loss(pos, neg, self.margin, self.reduction)


class DistanceSoftmaxLoss(nn.Module):
    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = reduction

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return distance_softmax_loss(pos, neg, self.reduction)
