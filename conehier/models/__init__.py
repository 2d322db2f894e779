"""Models: embedding tables on their manifolds."""

from .embedding import BALL_GEOMETRIES, GEOMETRIES, EmbeddingModel

__all__ = ["BALL_GEOMETRIES", "GEOMETRIES", "EmbeddingModel"]
