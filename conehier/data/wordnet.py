"""WordNet hypernymy closures in the published split format (Ganea et al. 2018).

Files (prefix ``noun_closure.tsv`` or ``mammal_closure.tsv``) in ``ROOT/wordnet``:

* ``PREFIX.vocab`` — ``id<TAB>name``;
* ``PREFIX.train_{0,10,25,50,90}percent`` — ``parent_id<TAB>child_id`` training
  positives: every basic edge plus that share of the non-basic edges;
* ``PREFIX.valid`` / ``.test`` and ``*_neg`` — positives (5% of the non-basic
  edges each) and 10 fixed negatives per positive;
* ``PREFIX.full_transitive`` — every closure edge; ``mammal_closure.tsv`` —
  ``child<TAB>parent`` names of the closure with the root ``mammal.n.01``.

The public copy lacks the noun ``train_50percent`` / ``train_90percent`` files
and ``full_transitive``: :func:`derive_noun_training_file` rebuilds them exactly
as the published procedure does (seeded) when they are not found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..hierarchy.graph import Hierarchy
from ..hierarchy.io import read_edge_list
from ..hierarchy.splits import EdgeSplit
from .paths import cache_dir, require_files

URL = "https://raw.githubusercontent.com/dalab/hyperbolic_cones/master/data/maxn/{}"
PREFIXES = {"noun": "noun_closure.tsv", "mammal": "mammal_closure.tsv"}
TRAIN_PERCENTS = (0, 10, 25, 50, 90)
_DERIVED = {"noun_closure.tsv.train_50percent", "noun_closure.tsv.train_90percent", "noun_closure.tsv.full_transitive"}


def _url(fname: str) -> str | None:
    return None if fname in _DERIVED else URL.format(fname)


def _read_pairs(path: Path) -> np.ndarray:
    a = np.loadtxt(path, dtype=np.int64, ndmin=2, delimiter="\t")
    if a.size == 0:
        return np.zeros((0, 2), np.int64)
    if a.shape[1] != 2:
        raise ValueError(f"{path}: expected two id columns, got {a.shape[1]}")
    return a


@dataclass
class WordNetData:
    """A WordNet closure: the hierarchy (basic edges over the vocabulary) and its published splits."""

    name: str
    directory: Path
    hierarchy: Hierarchy

    @property
    def prefix(self) -> str:
        return PREFIXES[self.name]

    def _file(self, suffix: str, data_dir=None) -> Path:
        fname = f"{self.prefix}.{suffix}"
        p = self.directory / fname
        if p.is_file():
            return p
        if fname in _DERIVED:
            return derive_noun_training_file(self, suffix)
        d = require_files("wordnet", [fname], data_dir=self.directory, url_for=_url, what=f"WordNet {self.name} split file")
        return d / fname

    def pairs(self, suffix: str) -> np.ndarray:
        """``(E, 2)`` id pairs of ``PREFIX.suffix`` (e.g. ``"valid"``, ``"test_neg"``, ``"train_25percent"``)."""
        arr = _read_pairs(self._file(suffix))
        if arr.size and (arr.min() < 0 or arr.max() >= self.hierarchy.n):
            raise ValueError(f"{self.prefix}.{suffix}: node id outside the vocabulary 0..{self.hierarchy.n - 1}")
        return arr

    def split(self, train_percent: int = 0) -> EdgeSplit:
        """The published split with ``train_percent`` in {0, 10, 25, 50, 90}."""
        if train_percent not in TRAIN_PERCENTS:
            raise ValueError(f"published WordNet splits have train_percent in {TRAIN_PERCENTS}, got {train_percent}")
        return EdgeSplit(
            train=self.pairs(f"train_{train_percent}percent"),
            valid=self.pairs("valid"),
            test=self.pairs("test"),
            valid_neg=self.pairs("valid_neg"),
            test_neg=self.pairs("test_neg"),
            train_percent=float(train_percent),
            source=f"published {self.prefix} split",
        )

    @cached_property
    def full_transitive(self) -> np.ndarray:
        return self.pairs("full_transitive")


def load_wordnet(name: str = "mammal", data_dir: str | os.PathLike | None = None, download: bool = True) -> WordNetData:
    """Load the ``"noun"`` or ``"mammal"`` closure: vocabulary + basic edges (``train_0percent``)."""
    if name not in PREFIXES:
        raise ValueError(f"unknown WordNet closure {name!r}; choose from {sorted(PREFIXES)}")
    prefix = PREFIXES[name]
    files = [f"{prefix}.vocab", f"{prefix}.train_0percent"]
    d = require_files("wordnet", files, data_dir=data_dir, url_for=_url, download=download, what=f"WordNet {name} closure")
    ids, names = [], []
    with open(d / files[0], encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{d / files[0]}:{lineno}: expected 'id<TAB>name', got {line!r}")
            ids.append(int(parts[0]))
            names.append(parts[1])
    ordered = [None] * len(ids)
    for i, nm in zip(ids, names):
        if not 0 <= i < len(ids) or ordered[i] is not None:
            raise ValueError(f"{d / files[0]}: ids must be a permutation of 0..{len(ids) - 1} (bad id {i})")
        ordered[i] = nm
    h = Hierarchy(ordered, _read_pairs(d / files[1]), name=f"wordnet-{name}")
    return WordNetData(name=name, directory=d, hierarchy=h)


def load_mammal_closure_tsv(data_dir: str | os.PathLike | None = None, download: bool = True) -> Hierarchy:
    """The mammal closure with names and its root ``mammal.n.01``, reduced to basic edges."""
    d = require_files("wordnet", ["mammal_closure.tsv"], data_dir=data_dir, url_for=_url, download=download, what="mammal closure")
    return read_edge_list(d / "mammal_closure.tsv", child_first=True, name="wordnet-mammal-closure").reduced()


def derive_noun_training_file(data: WordNetData, suffix: str) -> Path:
    """Rebuild a noun file the public copy lacks (``train_50percent``, ``train_90percent``, ``full_transitive``).

    Same procedure as the published split script: the non-basic edges not held
    out for valid/test, sorted, then independent uniform draws of 50% and 90% of
    all non-basic edges with ``numpy.random.default_rng(0)``. Written to the cache.
    """
    if data.name != "noun":
        raise ValueError(f"only the noun closure has derived files, not {data.name!r}")
    out_dir = cache_dir() / "wordnet"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{data.prefix}.{suffix}"
    if target.is_file():
        return target
    h = data.hierarchy
    clo = h.closure_edges()
    if suffix == "full_transitive":
        np.savetxt(target, clo, fmt="%d", delimiter="\t")
        return target
    n = h.n
    basic = h.transitive_reduction()
    non_basic = h.non_basic_edges()
    held = np.concatenate([data.pairs("valid"), data.pairs("test")])
    pool = non_basic[~np.isin(non_basic @ [n, 1], held @ [n, 1])]
    rng = np.random.default_rng(0)
    picks = {}
    for perc in (50, 90):
        k = min(int(perc * len(non_basic) / 100.0), len(pool))
        picks[perc] = np.sort(rng.choice(len(pool), size=k, replace=False))
    perc = int(suffix.split("_")[1].removesuffix("percent"))
    np.savetxt(target, np.concatenate([pool[picks[perc]], basic]), fmt="%d", delimiter="\t")
    return target
