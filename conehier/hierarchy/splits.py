"""Edge splits for link prediction (Ganea et al. 2018; thesis section 5.5).

Basic edges (the transitive reduction) are always in train. Valid and test each
take ``p%`` of the non-basic edges (``floor(p/100 * M)`` of ``M``), and train adds
``q%`` (again of ``M``) of the non-basic edges left over. Valid and test get
fixed negatives: ``k`` corrupted parents + ``k`` corrupted children per
positive, never a true closure edge.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .graph import Hierarchy


@dataclass(frozen=True)
class EdgeSplit:
    """Positive ``(parent, child)`` id pairs for train / valid / test, plus fixed negatives.

    ``train_percent`` is the share of non-basic edges in train; ``source`` says
    where the split came from (e.g. a published split file).
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_neg: np.ndarray
    test_neg: np.ndarray
    train_percent: float = 0.0
    source: str = "generated"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "valid", "test", "valid_neg", "test_neg"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[1] != 2:
                raise ValueError(f"EdgeSplit.{name} must have shape (E, 2), got {a.shape}")

    def sizes(self) -> dict:
        return {k: int(len(getattr(self, k))) for k in ("train", "valid", "test", "valid_neg", "test_neg")}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``split.npz`` (arrays) + ``split.json`` (metadata) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(d / "split.npz", **{k: getattr(self, k) for k in ("train", "valid", "test", "valid_neg", "test_neg")})
        (d / "split.json").write_text(json.dumps({"train_percent": self.train_percent, "source": self.source, "meta": self.meta}))
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EdgeSplit":
        d = Path(directory)
        z = np.load(d / "split.npz")
        meta = json.loads((d / "split.json").read_text())
        return cls(**{k: z[k] for k in z.files}, **meta)


def split_edges(
    hierarchy: Hierarchy,
    *,
    valid_percent: float = 5.0,
    test_percent: float = 5.0,
    train_percent: float = 0.0,
    negatives: int = 5,
    per_level: bool = False,
    seed: int = 0,
) -> EdgeSplit:
    """Seeded link-prediction split of ``hierarchy``'s transitive closure.

    ``negatives`` is ``k``: each valid/test positive gets ``k`` corrupted parents
    and ``k`` corrupted children (10 per positive by default, as published).
    """
    from ..sampling import sample_negatives

    for nm, p in (("valid_percent", valid_percent), ("test_percent", test_percent), ("train_percent", train_percent)):
        if not 0 <= p <= 100:
            raise ValueError(f"{nm} must be within [0, 100], got {p}")
    basic = hierarchy.transitive_reduction()
    non_basic = hierarchy.non_basic_edges()
    m = len(non_basic)
    n_valid, n_test = int(valid_percent / 100.0 * m), int(test_percent / 100.0 * m)
    if valid_percent + test_percent > 100:
        raise ValueError(f"valid ({valid_percent}%) + test ({test_percent}%) exceed the {m} non-basic edges")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(m)
    valid = non_basic[np.sort(perm[:n_valid])]
    test = non_basic[np.sort(perm[n_valid:n_valid + n_test])]
    pool = perm[n_valid + n_test:]
    n_train = min(int(train_percent / 100.0 * m), len(pool))
    extra = non_basic[np.sort(pool[:n_train])]
    train = np.concatenate([basic, extra]) if len(extra) else basic
    valid_neg = sample_negatives(hierarchy, valid, k=negatives, seed=seed + 1, per_level=per_level)
    test_neg = sample_negatives(hierarchy, test, k=negatives, seed=seed + 2, per_level=per_level)
    return EdgeSplit(
        train=train,
        valid=valid,
        test=test,
        valid_neg=valid_neg,
        test_neg=test_neg,
        train_percent=float(train_percent),
        source=f"split_edges(seed={seed})",
        meta={"valid_percent": valid_percent, "test_percent": test_percent, "negatives": negatives, "per_level": per_level},
    )
