"""conehier: hierarchy-aware representations.

Order embeddings, Euclidean and hyperbolic entailment cones, hierarchical
multi-label classifiers, and the data and metrics to compare them.
"""

from .hierarchy import CycleError, Hierarchy, HierarchyError, UnknownLabelError
from .pipeline import EmbedResult, embed

__version__ = "0.1.0"

__all__ = ["CycleError", "EmbedResult", "Hierarchy", "HierarchyError", "UnknownLabelError", "__version__", "embed"]
