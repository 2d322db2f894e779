"""Time and peak memory to load the WordNet noun closure and compute its closure, reduction and a 25% split.

Usage: CONEHIER_DATA=../shared/data python benchmarks/bench_hierarchy.py
Target (issue 2): under 15 s and 2 GiB on 2 cores.
"""

from __future__ import annotations

import resource
import time

from conehier.data.wordnet import load_wordnet
from conehier.hierarchy.splits import split_edges


def main() -> None:
    t0 = time.perf_counter()
    wn = load_wordnet("noun")
    t1 = time.perf_counter()
    h = wn.hierarchy
    clo = h.closure_edges()
    t2 = time.perf_counter()
    red = h.transitive_reduction()
    nb = h.non_basic_edges()
    t3 = time.perf_counter()
    split = split_edges(h, valid_percent=5, test_percent=5, train_percent=25, seed=0)
    t4 = time.perf_counter()
    published = wn.split(25)
    t5 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"nodes {h.n:,}  basic {len(red):,}  closure {len(clo):,}  non-basic {len(nb):,}")
    print(f"load vocab + basic edges      {t1 - t0:7.2f} s")
    print(f"transitive closure            {t2 - t1:7.2f} s")
    print(f"reduction + non-basic edges   {t3 - t2:7.2f} s")
    print(f"25% split + 10 negatives/pos  {t4 - t3:7.2f} s  sizes {split.sizes()}")
    print(f"published 25% split files     {t5 - t4:7.2f} s  sizes {published.sizes()}")
    print(f"total                         {t5 - t0:7.2f} s   peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
