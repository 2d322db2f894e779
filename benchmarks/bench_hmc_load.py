"""Time :func:`conehier.data.hmc.load_hmc` on every HMC set found under ``$CONEHIER_DATA/hmc``.

    CONEHIER_DATA=../shared/data python benchmarks/bench_hmc_load.py [--repeat 3] [NAME ...]

Prints the best-of-``repeat`` wall time per data set (parse three ARFF files,
build the hierarchy, close the labels, impute and standardise).
"""

from __future__ import annotations

import argparse
import time

from conehier.data.hmc import HMC_DATASETS, hmc_files, load_hmc
from conehier.data.paths import data_root


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="data sets (default: every one whose files are present)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    root = data_root(args.data_dir)
    names = args.names or [n for n in HMC_DATASETS if all((root / "hmc" / f).is_file() for f in hmc_files(n).values())]
    load_hmc(names[0], data_dir=root, download=False)  # warm imports
    print(f"{'data set':<16}{'best s':>8}  splits / features / nodes")
    for name in names:
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            d = load_hmc(name, data_dir=root, download=False)
            best = min(best, time.perf_counter() - t)
        print(f"{name:<16}{best:>8.3f}  {d.splits} / {d.n_features} / {d.n_labels} ({int(d.eval_mask.sum())} evaluated)")


if __name__ == "__main__":
    main()
