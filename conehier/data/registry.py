"""Resolve a hierarchy SPEC string (as taken by ``conehier info`` / ``embed``).

SPEC is one of
  * a built-in name: ``toy:L,b``, ``cifar10``, ``fashion-mnist``;
  * a real data set: ``wordnet-mammal``, ``wordnet-noun``, ``ethec``, ``hmc:<name>``
    (e.g. ``hmc:cellcycle_FUN``), read from ``data_dir`` / ``$CONEHIER_DATA``;
  * a path to an edge-list file (``parent<TAB>child`` per line).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..hierarchy.graph import Hierarchy
from ..hierarchy.io import read_edge_list
from . import builtin

BUILTIN = ("toy:L,b", "cifar10", "fashion-mnist")
DATASETS = ("wordnet-mammal", "wordnet-noun", "ethec", "hmc:<name>")


@dataclass
class SpecData:
    """A resolved SPEC: its hierarchy, the samples per split (labelled data), and the loaded object."""

    spec: str
    hierarchy: Hierarchy
    samples: dict | None = None
    source: object = None
    meta: dict = field(default_factory=dict)


def load_spec(spec: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> SpecData:
    s = spec.strip()
    m = re.fullmatch(r"toy:(\d+),(\d+)", s)
    if m:
        return SpecData(s, builtin.toy_tree(int(m.group(1)), int(m.group(2))))
    if s == "cifar10":
        return SpecData(s, builtin.cifar10_hierarchy())
    if s in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return SpecData(s, builtin.fashion_mnist_hierarchy())
    if s in ("wordnet-mammal", "wordnet-noun"):
        from .wordnet import load_wordnet

        wn = load_wordnet(s.split("-")[1], data_dir, download=download)
        return SpecData(s, wn.hierarchy, source=wn)
    if s == "ethec":
        from .ethec import load_ethec

        e = load_ethec(data_dir, download=download)
        return SpecData(s, e.hierarchy, samples=e.samples_per_split(), source=e,
                        meta={"missing_splits": list(e.missing_splits)})
    if s.startswith("hmc:"):
        from .hmc import load_hmc

        d = load_hmc(s[4:], data_dir=data_dir, download=download)
        return SpecData(s, d.hierarchy, samples=d.splits, source=d)
    p = Path(s)
    if p.is_file():
        return SpecData(s, read_edge_list(p))
    raise ValueError(
        f"unknown hierarchy spec {spec!r}: use a built-in ({', '.join(BUILTIN)}), a data set "
        f"({', '.join(DATASETS)}) or the path of an edge-list file"
    )
