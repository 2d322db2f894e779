"""Training: config objects and the embedding trainer (checkpoints, resume, best epoch)."""

from .config import GEOMETRY_DEFAULTS, EmbedConfig, EvalConfig, ModelConfig, TrainConfig
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
]
