"""Evaluation protocols for embeddings: link prediction and graph reconstruction.

Both take a scoring function ``energy(pairs) -> energies`` (lower = "v is-a u"
more likely), e.g. :meth:`EmbeddingModel.is_a_energy`, and classify a pair as
positive when its energy is at most a threshold.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..hierarchy.graph import Hierarchy
from .functional import best_threshold_f1

EnergyFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def pair_energies(energy: EnergyFn, pairs, *, chunk: int = 1 << 18, device=None) -> np.ndarray:
    """Energies of ``(M, 2)`` index pairs, computed in chunks -> float64 ``(M,)``."""
    pairs = torch.as_tensor(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), device=device)
    out = [energy(pairs[s:s + chunk]).double().cpu() for s in range(0, len(pairs), chunk)]
    e = torch.cat(out).numpy() if out else np.zeros(0)
    if not np.isfinite(e).all():
        raise FloatingPointError("energies contain NaN or inf: the embedding has diverged")
    return e


def _confusion(y: np.ndarray, pred: np.ndarray) -> dict:
    tp = float(np.sum(pred & y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    tn = float(np.sum(~pred & ~y))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "precision": prec,
        "recall": rec,
        "accuracy": (tp + tn) / max(len(y), 1),
        "tpr": rec,
        "tnr": tn / (tn + fp) if tn + fp else 0.0,
    }


def threshold_metrics(pos_energy: np.ndarray, neg_energy: np.ndarray, threshold: float) -> dict:
    """F1, precision, recall, accuracy, TPR, TNR of ``energy <= threshold``."""
    e = np.concatenate([pos_energy, neg_energy])
    y = np.zeros(len(e), bool)
    y[: len(pos_energy)] = True
    return _confusion(y, e <= threshold)


THRESHOLD_RULES = ("edge", "midpoint")


def best_energy_threshold(pos_energy: np.ndarray, neg_energy: np.ndarray, *, rule: str = "edge") -> tuple[float, float]:
    """An energy threshold maximising F1 of ``energy <= t``, and that F1.

    Every ``t`` in ``[e*, e_next)`` gives the same F1, where ``e*`` is the energy of the
    last pair accepted at the optimum and ``e_next`` the next larger energy present.
    ``rule="edge"`` returns ``e*`` (the tightest); ``"midpoint"`` returns
    ``(e* + e_next) / 2``, the middle of the gap, which leaves room on both sides for
    pairs not seen (``e*`` when nothing is larger).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    e = np.concatenate([pos_energy, neg_energy])
    y = np.zeros(len(e), np.int8)
    y[: len(pos_energy)] = 1
    thr, f1 = best_threshold_f1(y, -e)
    thr = float(-thr)
    if rule == "midpoint" and np.isfinite(thr):
        above = e[e > thr]
        if len(above):
            thr = 0.5 * (thr + float(above.min()))
    return thr, float(f1)


def link_prediction(valid_pos, valid_neg, test_pos, test_neg, *, rule: str = "edge") -> dict:
    """Ganea et al.'s protocol on precomputed energies: the threshold that maximises
    validation F1 (``rule``: where in the optimal gap, see :func:`best_energy_threshold`)
    is applied to test. Returns ``valid_f1``, ``test_f1``, ``test_precision``,
    ``test_recall``, ``test_accuracy`` and ``threshold``."""
    thr, vf1 = best_energy_threshold(valid_pos, valid_neg, rule=rule)
    t = threshold_metrics(test_pos, test_neg, thr)
    return {
        "threshold": thr,
        "valid_f1": vf1,
        "test_f1": t["f1"],
        "test_precision": t["precision"],
        "test_recall": t["recall"],
        "test_accuracy": t["accuracy"],
    }


def evaluate_link_prediction(energy: EnergyFn, split, *, device=None, rule: str = "edge") -> dict:
    """:func:`link_prediction` of ``energy`` on an :class:`EdgeSplit`'s valid/test pairs."""
    e = {k: pair_energies(energy, getattr(split, k), device=device) for k in ("valid", "valid_neg", "test", "test_neg")}
    return link_prediction(e["valid"], e["valid_neg"], e["test"], e["test_neg"], rule=rule)


@torch.no_grad()
def pair_matrix(fn: EnergyFn, n: int, *, chunk_pairs: int = 1 << 18, device=None) -> np.ndarray:
    """``M[u, v] = fn(pairs)`` for every ordered pair of ``n`` nodes: ``(n, n)`` in ``fn``'s dtype.

    Whole child columns are scored at a time, about ``chunk_pairs`` pairs per call.
    """
    chunk_nodes = max(1, chunk_pairs // n)
    idx = torch.arange(n, device=device)
    cols = []
    for s in range(0, n, chunk_nodes):
        c = idx[s:s + chunk_nodes]
        pairs = torch.stack(torch.meshgrid(idx, c, indexing="ij"), dim=-1)  # (n, c, 2): (u, v)
        cols.append(fn(pairs).cpu().numpy())
    return np.concatenate(cols, axis=1)


@torch.no_grad()
def reconstruction(
    energy: EnergyFn | np.ndarray,
    hierarchy: Hierarchy,
    *,
    positives: str = "basic",
    chunk_pairs: int = 1 << 18,
    max_nodes: int = 20_000,
    device=None,
) -> dict:
    """Graph reconstruction: classify every ordered pair of distinct nodes.

    ``positives="basic"`` (the thesis's Table 6.2 protocol) counts only the basic
    edges as positive, every other ordered pair negative; ``"closure"`` counts every
    ancestor pair. Reports ``tpr``, ``tnr``, ``f1``, ``precision``, ``recall`` at the
    F1-maximising threshold, plus ``mean_rank`` (of each true ancestor among the
    candidates that are not true, 1 = best) and ``map`` (mean over nodes of the
    average precision of ranking their true ancestors first). ``energy`` is a pair
    scorer, called about ``chunk_pairs`` pairs at a time (whole child columns; lower it
    for large dims), or the ``(n, n)`` matrix :func:`pair_matrix` makes of one.
    """
    n = hierarchy.n
    chunk_nodes = max(1, chunk_pairs // n)
    if n > max_nodes:
        raise ValueError(f"reconstruction of {n} nodes scores {n * n:,} pairs; pass max_nodes={n} to run it anyway")
    if positives == "basic":
        pos = hierarchy.transitive_reduction()
    elif positives == "closure":
        pos = hierarchy.closure_edges()
    else:
        raise ValueError(f"positives must be 'basic' or 'closure', got {positives!r}")
    truth = np.zeros((n, n), bool)  # truth[u, v]: u is a true ancestor of v
    truth[pos[:, 0], pos[:, 1]] = True
    if callable(energy):
        energy = pair_matrix(energy, n, chunk_pairs=chunk_pairs, device=device)
    E = np.asarray(energy, dtype=np.float64)
    if E.shape != (n, n):
        raise ValueError(f"energy matrix has shape {E.shape}, expected ({n}, {n}) for the hierarchy's {n} nodes")
    if not np.isfinite(E).all():
        raise FloatingPointError("energies contain NaN or inf: the embedding has diverged")
    off = ~np.eye(n, dtype=bool)
    thr, _ = best_energy_threshold(E[truth], E[off & ~truth])
    m = _confusion(truth[off], E[off] <= thr)
    # ranks: for each true (u, v), 1 + number of non-true candidates w != v with E(w, v) < E(u, v)
    Eneg = np.where(off & ~truth, E, np.inf)
    sorted_neg = np.sort(Eneg, axis=0)
    cu, cv = np.nonzero(truth)
    ranks = np.empty(len(cu))
    for s in range(0, n, chunk_nodes):  # chunk over child columns: searchsorted per column
        sel = (cv >= s) & (cv < s + chunk_nodes)
        cols = cv[sel]
        ranks[sel] = 1 + _count_less(sorted_neg[:, cols], E[cu[sel], cols])
    # MAP: per child column, AP of the true ancestors when candidates are sorted by energy
    Eall = np.where(off, E, np.inf)
    order = np.argsort(Eall, axis=0, kind="stable")
    hits = np.take_along_axis(truth, order, axis=0)  # (n, n): is the i-th ranked candidate true
    cum = np.cumsum(hits, axis=0)
    prec_at = cum / np.arange(1, n + 1)[:, None]
    n_true = hits.sum(0)
    has = n_true > 0
    ap = (prec_at * hits).sum(0)[has] / n_true[has]
    return {
        "positives": positives,
        "threshold": thr,
        "f1": m["f1"],
        "precision": m["precision"],
        "recall": m["recall"],
        "tpr": m["tpr"],
        "tnr": m["tnr"],
        "mean_rank": float(ranks.mean()) if len(ranks) else float("nan"),
        "map": float(ap.mean()) if has.any() else float("nan"),
        "n_positive": int(truth.sum()),
        "n_negative": int((off & ~truth).sum()),
    }


def _count_less(sorted_cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each column j of a column-sorted matrix, the number of entries < values[j]."""
    return (sorted_cols < values[None, :]).sum(0)
