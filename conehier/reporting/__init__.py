"""Reporting: figures of embeddings, training curves and per-label performance.

matplotlib is imported inside the plotting functions only, so importing this package
is cheap and works without a display.
"""

from .plots import (
    add_plot_parser,
    euclidean_cone_wedges,
    hyperbolic_cone_regions,
    order_quadrants,
    plot_command,
    plot_embedding,
    plot_euclidean_cones,
    plot_joint_embedding,
    plot_order_embedding,
    plot_per_label_performance,
    plot_poincare_disk,
    plot_training_curves,
    poincare_geodesics,
    top_groups,
)

__all__ = [
    "add_plot_parser",
    "euclidean_cone_wedges",
    "hyperbolic_cone_regions",
    "order_quadrants",
    "plot_command",
    "plot_embedding",
    "plot_euclidean_cones",
    "plot_joint_embedding",
    "plot_order_embedding",
    "plot_per_label_performance",
    "plot_poincare_disk",
    "plot_training_curves",
    "poincare_geodesics",
    "top_groups",
]
