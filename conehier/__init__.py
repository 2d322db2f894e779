"""conehier: hierarchy-aware representations.

Order embeddings, Euclidean and hyperbolic entailment cones, hierarchical
multi-label classifiers, and the data and metrics to compare them.
"""

from .hierarchy import CycleError, Hierarchy, HierarchyError, UnknownLabelError

__version__ = "0.1.0"

__all__ = ["CycleError", "Hierarchy", "HierarchyError", "UnknownLabelError", "__version__"]
