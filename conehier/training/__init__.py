"""Training: config objects and the embedding trainer (checkpoints, resume, best epoch)."""

from .config import GEOMETRY_DEFAULTS, EmbedConfig, EvalConfig, ModelConfig, TrainConfig
from .hmc import *  # noqa: F401,F403
from .hmc import __all__ as _hmc_all
from .row_optim import RowAdam, RowOptimizer, RowRSGD
from .trainer import EmbeddingTrainer, make_optimizer, resolve_device

__all__ = [
    "GEOMETRY_DEFAULTS",
    "EmbedConfig",
    "EmbeddingTrainer",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "make_optimizer",
    "resolve_device",
    "RowAdam",
    "RowOptimizer",
    "RowRSGD",
    *_hmc_all,
]
