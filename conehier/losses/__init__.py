"""Losses: max-margin and distance-softmax on energies; multi-label losses on logits."""

from .margin import DistanceSoftmaxLoss, MaxMarginLoss, distance_softmax_loss, max_margin_loss
from .multilabel import *  # noqa: F401,F403
from .multilabel import __all__ as _multilabel_all

__all__ = ["DistanceSoftmaxLoss", "MaxMarginLoss", "distance_softmax_loss", "max_margin_loss", *_multilabel_all]
