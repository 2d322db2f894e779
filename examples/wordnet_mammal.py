"""The WordNet mammal closure (1,180 nodes) on the Poincaré disk with hyperbolic entailment cones.

Trains 2-D hyperbolic cones the way Ganea et al. (2018) do: Poincaré embeddings first
(150 epochs), rescaled by 0.7, then cones by Riemannian SGD (100 epochs), on the whole
closure less the 5 % + 5 % of non-basic edges held out; then draws

    figures/wordnet_mammal_hyperbolic_cones.png   the disk: basic edges as geodesics, the
                                                  cones of the root and its children, the
                                                  inner ball eps_K shaded, top 3 levels named
    figures/wordnet_mammal_training_curves.png    loss and validation / test F1 per epoch

Needs the mammal closure (``$CONEHIER_DATA/wordnet/mammal_closure.tsv``). About a minute
on one CPU core; deterministic for a seed. From the repository root:

    CONEHIER_DATA=../shared/data MPLBACKEND=Agg python examples/wordnet_mammal.py [--seed 0]
    # redraw a saved run without training:  ... --run runs/mammal2d  (written by a first call)
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from conehier.data import load_mammal_closure_tsv
from conehier.pipeline import EmbedResult, embed
from conehier.reporting.plots import plot_poincare_disk, plot_training_curves

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from geoopt

#: every setting spelled out, so that changes to the library defaults do not change the picture
SETTINGS = dict(
    train_percent=100,
    epochs=100,
    batch_size=64,
    optimizer="rsgd",
    lr=3e-4,
    schedule="constant",
    margin=0.01,
    K=0.1,
    parametrization="ball",
    init="poincare",
    init_epochs=150,
    init_lr=0.03,
    init_rescale=0.7,
    eval_every=20,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="figures")
    ap.add_argument("--run", default=None, help="load this saved run if it exists, else train and save it there")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.run and (Path(args.run) / "embeddings.npy").is_file():
        r = EmbedResult.load(args.run)
        print(f"loaded {args.run}")
    else:
        h = load_mammal_closure_tsv()
        r = embed(h, "hyperbolic-cones", 2, seed=args.seed, progress=False, threads=1, out=args.run, **SETTINGS)
        print(f"trained in {r.metrics['wall_seconds']:.0f} s: test F1 {r.metrics['test_f1']:.2f} "
              f"(Poincaré init {r.metrics.get('init', {}).get('test_f1', float('nan')):.2f})")
    h = r.hierarchy
    plot_poincare_disk(
        r.embeddings, h, K=r.config.model.K, cone_levels=2, label_levels=3,
        title="WordNet mammals, 2-D hyperbolic entailment cones",
        save=out / "wordnet_mammal_hyperbolic_cones.png",
    )
    plot_training_curves(r, title="WordNet mammals, 2-D hyperbolic cones (after 150 Poincaré epochs)",
                         save=out / "wordnet_mammal_training_curves.png")
    print(f"wrote {out}/wordnet_mammal_*.png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
