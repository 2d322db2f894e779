"""conehier: hierarchy-aware representations.

Order embeddings, Euclidean and hyperbolic entailment cones, hierarchical
multi-label classifiers, and the data and metrics to compare them.
"""

import warnings

# geoopt 0.5 scripts a helper with torch.jit.script, deprecated in recent torch: not actionable for users
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from .hierarchy import CycleError, Hierarchy, HierarchyError, UnknownLabelError
from .pipeline import EmbedResult, embed  # noqa: E402
from .estimators import ConeClassifier  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConeClassifier", "CycleError", "EmbedResult", "Hierarchy", "HierarchyError", "UnknownLabelError", "__version__", "embed"]
