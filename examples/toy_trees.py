"""Balanced toy trees in 2-D with order embeddings and Euclidean entailment cones (thesis Fig. 6.3).

Trees: depth L=4 with branching b=3 (121 nodes) and L=3, b=7 (400 nodes), both built
in (no data needed). Each is trained on its whole transitive closure (less the 5 % +
5 % of non-basic edges held out for validation and test) and drawn:

    figures/toy_L4_b3_order.png             figures/toy_L4_b3_euclidean_cones.png
    figures/toy_L3_b7_order.png             figures/toy_L3_b7_euclidean_cones.png
    figures/toy_trees.png                   (the four panels side by side)

Run from the repository root (about a minute on one CPU core; deterministic for a seed):

    MPLBACKEND=Agg python examples/toy_trees.py [--seed 0] [--out figures]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from conehier.pipeline import embed
from conehier.reporting.plots import plot_euclidean_cones, plot_order_embedding

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from geoopt

TREES = [(4, 3), (3, 7)]
#: 2-D pictures only: short runs with settings that give a readable layout (all spelled out,
#: so that changes to the library defaults do not change the pictures)
SETTINGS = {
    "order": dict(epochs=400, batch_size=32, optimizer="adam", lr=0.3, schedule="cosine", margin=1.0),
    "euclidean-cones": dict(epochs=400, batch_size=32, optimizer="row-adam", lr=0.03, schedule="cosine", margin=0.01,
                            K=0.1, per_level=True),
}
TITLES = {"order": "order embeddings", "euclidean-cones": "Euclidean cones"}


def train(L: int, b: int, model: str, seed: int):
    t = time.perf_counter()
    r = embed(f"toy:{L},{b}", model, 2, train_percent=100, seed=seed, progress=False, threads=1, **SETTINGS[model])
    print(f"  toy:{L},{b} {model}: {time.perf_counter() - t:.1f} s, test F1 {r.metrics['test_f1']:.2f}")
    return r


def draw(r, model: str, *, ax=None, legend=True, title=None, save=None):
    h = r.hierarchy
    fn = plot_order_embedding if model == "order" else plot_euclidean_cones
    kw = {} if model == "order" else {"K": r.config.model.K}
    return fn(r.embeddings, h, ax=ax, legend=legend, title=title, save=save, label_levels=2, color_by="top", **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="figures")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    grid = Figure(figsize=(13.5, 12.5))
    axes = grid.subplots(2, 2, gridspec_kw=dict(wspace=0.32, hspace=0.14))
    for row, (L, b) in enumerate(TREES):
        for col, model in enumerate(SETTINGS):
            r = train(L, b, model, args.seed)
            tag = f"toy_L{L}_b{b}_{model.replace('-', '_')}"
            name = f"{TITLES[model]}, toy tree L={L}, b={b}"
            draw(r, model, title=name, save=out / f"{tag}.png")
            draw(r, model, ax=axes[row, col], legend=col == 1, title=name)
    grid.savefig(out / "toy_trees.png", dpi=150, bbox_inches="tight")
    print(f"wrote {out}/toy_*.png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
