"""Models: embedding tables on their manifolds; classifier heads for hierarchical labels."""

from .embedding import BALL_GEOMETRIES, GEOMETRIES, EmbeddingModel
from .heads import *  # noqa: F401,F403
from .heads import __all__ as _heads_all

__all__ = ["BALL_GEOMETRIES", "GEOMETRIES", "EmbeddingModel", *_heads_all]
