"""``conehier demo``: the main job on a built-in default, with no download.

Embeds the balanced toy tree of thesis Fig. 6.3 (depth 4, branching 3: 121
nodes) in the 2-D Poincaré disk with hyperbolic entailment cones (initialised
from Poincaré embeddings, as Ganea et al.), evaluates link prediction and graph
reconstruction, and draws the disk.
"""

from __future__ import annotations

from pathlib import Path

DEMO_SPEC = "toy:4,3"
DEMO_SETTINGS = dict(
    train_percent=50, epochs=150, batch_size=16, lr=0.003, eval_every=10, init="poincare", init_epochs=60
)


def run_demo(out: str = "conehier-demo", seed: int = 0, epochs: int | None = None) -> int:
    from .evaluation.protocols import reconstruction
    from .pipeline import embed
    from .reporting.plots import plot_embedding

    settings = dict(DEMO_SETTINGS, seed=seed)
    if epochs is not None:
        settings["epochs"] = epochs
    print(f"conehier demo: hyperbolic entailment cones, 2-D, on the built-in {DEMO_SPEC} tree")
    result = embed(DEMO_SPEC, "hyperbolic-cones", 2, out=out, **settings)
    m = result.metrics
    r = m.get("reconstruction", {})
    print(f"  link prediction: test F1 {100 * m['test_f1']:.1f} (valid F1 {100 * m['valid_f1']:.1f}, best epoch {m['best_epoch']})")
    if r:
        print(f"  reconstruction of the basic edges: F1 {r['f1']:.3f}, mean rank {r['mean_rank']:.2f}, MAP {r['map']:.3f}")
    rc = reconstruction(result.model().is_a_energy, result.hierarchy, positives="closure")
    print(f"  reconstruction of the transitive closure: F1 {rc['f1']:.3f}, mean rank {rc['mean_rank']:.2f}, MAP {rc['map']:.3f}")
    fig_path = Path(out) / "poincare_disk.png"
    plot_embedding(result, save=fig_path)
    print(f"  {m['wall_seconds']:.1f} s; embeddings, metrics.json and the figure {fig_path} are in {out}/")
    return 0
