"""Evaluation: functional metrics and embedding protocols (link prediction, reconstruction)."""

from .functional import *  # noqa: F401,F403
from .functional import __all__ as _functional_all
from .protocols import evaluate_link_prediction, link_prediction, pair_energies, reconstruction

__all__ = [*_functional_all, "evaluate_link_prediction", "link_prediction", "pair_energies", "reconstruction"]
