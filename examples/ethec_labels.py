"""The ETHEC label hierarchy in 2-D: order embeddings, Euclidean cones and hyperbolic cones.

ETHEC Merged (thesis section 4.1): 6 families, 21 subfamilies, 135 genera and 561
species (723 labels) of butterflies, from the public split files. Each model is trained
on the whole label closure (less the 5 % + 5 % of non-basic edges held out); the
pictures colour every label by its family, draw the species small and name the
families and subfamilies:

    figures/ethec_order.png              translated orthants of the six families
    figures/ethec_euclidean_cones.png    Euclidean cones of the six families
    figures/ethec_hyperbolic_cones.png   Poincaré disk, hyperbolic cones of the families
    figures/ethec_embeddings.png         the three side by side

``--drop-species`` embeds only families, subfamilies and genera (162 labels).
Needs ``$CONEHIER_DATA/ethec/{val,test}.json``. About a minute on one CPU core;
deterministic for a seed. From the repository root:

    CONEHIER_DATA=../shared/data MPLBACKEND=Agg python examples/ethec_labels.py [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from conehier.data import load_ethec
from conehier.pipeline import embed
from conehier.reporting.plots import plot_euclidean_cones, plot_order_embedding, plot_poincare_disk

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from geoopt

LEVELS = ["family", "subfamily", "genus", "species"]
#: every setting spelled out, so that changes to the library defaults do not change the pictures
SETTINGS = {
    "order": dict(epochs=200, batch_size=32, optimizer="adam", lr=0.3, schedule="cosine", margin=1.0),
    "euclidean-cones": dict(epochs=200, batch_size=32, optimizer="adam", lr=0.03, schedule="cosine", margin=0.01,
                            K=0.1, per_level=True),
    "hyperbolic-cones": dict(epochs=100, batch_size=32, optimizer="rsgd", lr=3e-4, schedule="constant",
                             margin=0.01, K=0.1, parametrization="ball", init="poincare", init_epochs=100,
                             init_lr=0.03, init_rescale=0.7),
}
TITLES = {"order": "order embeddings", "euclidean-cones": "Euclidean cones", "hyperbolic-cones": "hyperbolic cones"}


def draw(r, model: str, **kw):
    common = dict(level_names=LEVELS, label_levels=2, color_by="top", cone_levels=1, **kw)
    if model == "order":
        return plot_order_embedding(r.embeddings, r.hierarchy, **common)
    if model == "euclidean-cones":
        return plot_euclidean_cones(r.embeddings, r.hierarchy, K=r.config.model.K, **common)
    return plot_poincare_disk(r.embeddings, r.hierarchy, K=r.config.model.K, **common)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="figures")
    ap.add_argument("--drop-species", action="store_true", help="embed families, subfamilies and genera only")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    h = load_ethec().hierarchy
    suffix = ""
    if args.drop_species:
        h = h.subgraph(np.flatnonzero(h.depth < 3))
        suffix = "_no_species"
    grid = Figure(figsize=(20, 6.6))
    axes = grid.subplots(1, 3, gridspec_kw=dict(wspace=0.12))
    for i, (model, settings) in enumerate(SETTINGS.items()):
        t = time.perf_counter()
        r = embed(h, model, 2, train_percent=100, seed=args.seed, progress=False, threads=1, **settings)
        print(f"  {model}: {time.perf_counter() - t:.1f} s, test F1 {r.metrics['test_f1']:.2f}")
        name = f"ETHEC labels, {TITLES[model]}"
        draw(r, model, title=name, save=out / f"ethec_{model.replace('-', '_')}{suffix}.png")
        draw(r, model, title=name, ax=axes[i], legend=i == 2)
    grid.savefig(out / f"ethec_embeddings{suffix}.png", dpi=130, bbox_inches="tight")
    print(f"wrote {out}/ethec_*{suffix}.png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
