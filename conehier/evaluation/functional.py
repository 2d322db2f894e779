"""Functional (numpy) metrics for multi-label and hierarchical multi-label classification.

Inputs: ``y_true`` ``(N, C)`` in {0, 1}; ``y_pred`` ``(N, C)`` in {0, 1} or
``scores`` ``(N, C)`` float (higher = more likely). ``evaluate`` is an optional
``(C,)`` bool node mask (e.g. to drop the root); metrics only look at the
evaluated columns unless stated otherwise. Hierarchy inputs are plain arrays:
``dist`` ``(C, C)`` undirected tree distances, ``ancestors`` ``(C, C)`` bool
(``ancestors[i, j]``: j is a proper ancestor of i), ``lca_depth`` ``(C, C)``
depth of the lowest common ancestor, ``levels`` ``(C,)`` int.

Conventions shared by all functions:

- a prediction from scores is ``score >= threshold``;
- micro averages pool counts over all (sample, node) cells; macro averages are
  unweighted means over nodes (sklearn's ``zero_division`` rule for P/R/F1);
- top-k selection breaks score ties by the lower column index;
- sample-averaged ranking metrics (hit@k, P@k, R@k) average over the samples
  with at least one true evaluated node (``nan`` if there are none).

Everything is vectorised over samples and nodes; only chunks of samples (to
bound memory in the nearest-true-label search) and levels are looped over.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np

__all__ = [
    "precision_recall_f1",
    "tpr_tnr",
    "per_level",
    "precision_recall_f1_per_level",
    "hit_at_k",
    "hit_at_k_per_level",
    "label_count_stats",
    "average_precision",
    "precision_at_k",
    "recall_at_k",
    "f1_at_k",
    "nearest_true_lca_depth",
    "mean_lca_depth",
    "average_hierarchical_cost",
    "ancestor_closure",
    "hierarchical_precision_recall_f1",
    "frequency_masks",
    "average_precision_by_frequency",
    "rare_node_recall",
    "best_threshold_f1",
    "pcdb_thresholds",
    "ofadb_threshold",
    "apply_threshold",
]

Average = Literal["micro", "macro"]
_CHUNK_ELEMENTS = 1 << 23
_MAX_DISTANCE_LEVELS = 64


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------
def _binary(name: str, y) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {a.shape}")
    if a.dtype == bool:
        return a
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return a.astype(bool)


def _scores(name: str, s) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} shape {a.shape} != {nb} shape {b.shape}")


def _mask(evaluate, n_nodes: int) -> np.ndarray:
    if evaluate is None:
        return np.ones(n_nodes, dtype=bool)
    m = np.asarray(evaluate)
    if m.shape != (n_nodes,) or m.dtype != bool:
        raise ValueError(f"evaluate must be a bool array of shape ({n_nodes},), got {m.dtype} {m.shape}")
    return m


def _square(name: str, m, n_nodes: int, dtype=np.float64) -> np.ndarray:
    a = np.asarray(m, dtype=dtype)
    if a.shape != (n_nodes, n_nodes):
        raise ValueError(f"{name} must have shape ({n_nodes}, {n_nodes}), got {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return int(k)


def _divide(num, den, zero_division: float):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den > 0)
    return out if out.ndim else float(out)


# --------------------------------------------------------------------------
# Flat multi-label metrics
# --------------------------------------------------------------------------
def _counts(y_true: np.ndarray, y_pred: np.ndarray):
    tp = (y_true & y_pred).sum(0)
    fp = (~y_true & y_pred).sum(0)
    fn = (y_true & ~y_pred).sum(0)
    tn = (~y_true & ~y_pred).sum(0)
    return tp, fp, fn, tn


def precision_recall_f1(
    y_true,
    y_pred,
    *,
    average: Average | None = "micro",
    evaluate=None,
    zero_division: float = 0.0,
):
    """Precision, recall, F1 as in ``sklearn.metrics.precision_recall_fscore_support``.

    Per node: ``P = tp/(tp+fp)``, ``R = tp/(tp+fn)``, ``F1 = 2tp/(2tp+fp+fn)``
    (``zero_division`` where a denominator is 0). ``"micro"`` pools tp/fp/fn over
    evaluated nodes; ``"macro"`` averages the per-node values; ``None`` returns the
    ``(C_eval,)`` per-node arrays. Returns ``(P, R, F1)``.
    """
    yt, yp = _binary("y_true", y_true), _binary("y_pred", y_pred)
    _same_shape(yt, yp, "y_true", "y_pred")
    m = _mask(evaluate, yt.shape[1])
    tp, fp, fn, _ = _counts(yt[:, m], yp[:, m])
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    elif average not in ("macro", None):
        raise ValueError(f"average must be 'micro', 'macro' or None, got {average!r}")
    p = _divide(tp, tp + fp, zero_division)
    r = _divide(tp, tp + fn, zero_division)
    f = _divide(2 * tp, 2 * tp + fp + fn, zero_division)
    if average == "macro":
        return float(np.mean(p)), float(np.mean(r)), float(np.mean(f))
    return p, r, f


def tpr_tnr(y_true, y_pred, *, average: Average = "micro", evaluate=None, zero_division: float = 0.0):
    """True positive rate ``tp/(tp+fn)`` and true negative rate ``tn/(tn+fp)``.

    ``"micro"`` pools counts over evaluated nodes, ``"macro"`` averages per node.
    Returns ``(TPR, TNR)``.
    """
    yt, yp = _binary("y_true", y_true), _binary("y_pred", y_pred)
    _same_shape(yt, yp, "y_true", "y_pred")
    m = _mask(evaluate, yt.shape[1])
    tp, fp, fn, tn = _counts(yt[:, m], yp[:, m])
    if average == "micro":
        return _divide(tp.sum(), (tp + fn).sum(), zero_division), _divide(tn.sum(), (tn + fp).sum(), zero_division)
    if average == "macro":
        return (
            float(np.mean(_divide(tp, tp + fn, zero_division))),
            float(np.mean(_divide(tn, tn + fp, zero_division))),
        )
    raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")


def per_level(metric: Callable, y_true, y_other, levels, *args, evaluate=None, **kwargs) -> dict:
    """Run ``metric(y_true, y_other, *args, evaluate=mask_l, **kwargs)`` for each level.

    ``mask_l = evaluate & (levels == l)``; returns ``{level: result}`` for every
    level with at least one evaluated node, in increasing level order.
    """
    lv = np.asarray(levels)
    n_nodes = np.asarray(y_true).shape[1]
    if lv.shape != (n_nodes,):
        raise ValueError(f"levels must have shape ({n_nodes},), got {lv.shape}")
    m = _mask(evaluate, n_nodes)
    out = {}
    for level in np.unique(lv[m]):
        out[int(level)] = metric(y_true, y_other, *args, evaluate=m & (lv == level), **kwargs)
    return out


def precision_recall_f1_per_level(
    y_true, y_pred, levels, *, average: Average | None = "micro", evaluate=None, zero_division: float = 0.0
) -> dict:
    """:func:`precision_recall_f1` restricted to each level's nodes: ``{level: (P, R, F1)}``."""
    return per_level(
        precision_recall_f1, y_true, y_pred, levels, evaluate=evaluate, average=average, zero_division=zero_division
    )


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """``(N, C)`` bool mask of each row's top-k columns (ties: lower index first)."""
    k = min(k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, idx, True, axis=1)
    return out


def _ranking_inputs(y_true, scores, k, evaluate):
    yt, s = _binary("y_true", y_true), _scores("scores", scores)
    _same_shape(yt, s, "y_true", "scores")
    m = _mask(evaluate, yt.shape[1])
    k = _check_k(k)
    yt, s = yt[:, m], s[:, m]
    rows = yt.any(1)
    return yt[rows], s[rows], k


def hit_at_k(y_true, scores, k: int = 1, *, evaluate=None) -> float:
    """Fraction of samples whose k highest-scored evaluated nodes contain a true node.

    ``hit@k = mean_i 1[topk_i ∩ T_i != ∅]`` over samples with ``T_i`` (true evaluated
    nodes) non-empty; ties broken by lower column index. With one true node per
    sample this is ``sklearn.metrics.top_k_accuracy_score``.
    """
    yt, s, k = _ranking_inputs(y_true, scores, k, evaluate)
    if yt.shape[0] == 0:
        return float("nan")
    return float((yt & _topk(s, k)).any(1).mean())


def hit_at_k_per_level(y_true, scores, levels, k: int = 1, *, evaluate=None) -> dict:
    """``{level: hit@k}`` with ranking restricted to that level's nodes.

    For single-label-per-level data: is the sample's true node of that level among
    the top-k scored nodes of that level (samples without a node there are skipped).
    """
    return per_level(hit_at_k, y_true, scores, levels, k, evaluate=evaluate)


def label_count_stats(y_pred, *, evaluate=None) -> dict:
    """Statistics of the number of predicted (evaluated) labels per sample.

    Returns ``{"min", "max", "mean", "std"}`` (population std, ``ddof=0``).
    """
    yp = _binary("y_pred", y_pred)
    n = yp[:, _mask(evaluate, yp.shape[1])].sum(1)
    if n.size == 0:
        return {"min": float("nan"), "max": float("nan"), "mean": float("nan"), "std": float("nan")}
    return {"min": float(n.min()), "max": float(n.max()), "mean": float(n.mean()), "std": float(n.std())}


def precision_at_k(y_true, scores, k: int = 5, *, evaluate=None) -> float:
    """``P@k = mean_i |topk_i ∩ T_i| / k`` (k capped at the number of evaluated nodes)."""
    yt, s, k = _ranking_inputs(y_true, scores, k, evaluate)
    if yt.shape[0] == 0:
        return float("nan")
    return float((yt & _topk(s, k)).sum(1).mean() / min(k, yt.shape[1]))


def recall_at_k(y_true, scores, k: int = 5, *, evaluate=None) -> float:
    """``R@k = mean_i |topk_i ∩ T_i| / |T_i|``."""
    yt, s, k = _ranking_inputs(y_true, scores, k, evaluate)
    if yt.shape[0] == 0:
        return float("nan")
    return float(((yt & _topk(s, k)).sum(1) / yt.sum(1)).mean())


def f1_at_k(y_true, scores, k: int = 5, *, evaluate=None) -> float:
    """CHAMP's F1@k: harmonic mean of the averaged P@k and R@k, ``2 P R / (P + R)`` (0 if both 0)."""
    p = precision_at_k(y_true, scores, k, evaluate=evaluate)
    r = recall_at_k(y_true, scores, k, evaluate=evaluate)
    if np.isnan(p) or np.isnan(r):
        return float("nan")
    return float(_divide(2 * p * r, p + r, 0.0))


# --------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------
def _sorted_columns(y: np.ndarray, s: np.ndarray):
    """Sort each column by decreasing score; return sorted y, cumulative tp, group-end index."""
    order = np.argsort(-s, axis=0, kind="stable")
    ys = np.take_along_axis(y, order, axis=0)
    ss = np.take_along_axis(s, order, axis=0)
    n = s.shape[0]
    tps = np.cumsum(ys, axis=0, dtype=np.float64)
    is_end = np.ones(s.shape, dtype=bool)
    is_end[:-1] = ss[1:] != ss[:-1]
    # index of the last row of each row's tie group (reverse running minimum of end indices)
    idx = np.where(is_end, np.arange(n)[:, None], n)
    end = np.minimum.accumulate(idx[::-1], axis=0)[::-1]
    return ys, ss, tps, is_end, end


def _ap_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision of each column, sklearn's step-wise definition; nan without positives.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, i.e. the mean over
    positives of the precision at the end of their score-tie group.
    """
    n_pos = y.sum(0).astype(np.float64)
    if y.shape[0] == 0:
        return np.full(y.shape[1], np.nan)
    ys, _, tps, _, end = _sorted_columns(y, s)
    precision = tps / np.arange(1, y.shape[0] + 1)[:, None]
    prec_at_end = np.take_along_axis(precision, end, axis=0)
    total = (ys * prec_at_end).sum(0)
    out = np.full(y.shape[1], np.nan)
    np.divide(total, n_pos, out=out, where=n_pos > 0)
    return out


def average_precision(y_true, scores, *, average: Average | None = "micro", evaluate=None):
    """Area under the precision-recall curve as average precision.

    ``"micro"``: AP of all evaluated cells pooled (C-HMCNN's AU(PRC), equal to
    ``average_precision_score(y[:, m], s[:, m], average="micro")``);
    ``"macro"``: mean of per-node AP over evaluated nodes with at least one positive;
    ``None``: ``(C,)`` per-node AP, ``nan`` for non-evaluated nodes and nodes
    without positives.
    """
    yt, s = _binary("y_true", y_true), _scores("scores", scores)
    _same_shape(yt, s, "y_true", "scores")
    m = _mask(evaluate, yt.shape[1])
    if average == "micro":
        return float(_ap_columns(yt[:, m].reshape(-1, 1), s[:, m].reshape(-1, 1))[0])
    if average not in ("macro", None):
        raise ValueError(f"average must be 'micro', 'macro' or None, got {average!r}")
    per_node = np.full(yt.shape[1], np.nan)
    per_node[m] = _ap_columns(yt[:, m], s[:, m])
    if average is None:
        return per_node
    valid = per_node[~np.isnan(per_node)]
    return float(valid.mean()) if valid.size else float("nan")


# --------------------------------------------------------------------------
# CHAMP hierarchical metrics
# --------------------------------------------------------------------------
def _min_dist(yt: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """``dmin[n, j] = min_{s in S_n} dist[j, s]`` (inf if S_n empty), ``(N, C)``.

    With few distinct distances ``v_0 < ... < v_K`` (tree distances), ``dmin`` is
    ``v[i]`` where i counts the ``v_k`` with no ``s in S`` within ``v_k`` of j: K
    BLAS matmuls ``(N, C) @ (C, C)``. Otherwise a chunked masked minimum.
    """
    values = np.unique(dist)
    if values.size > _MAX_DISTANCE_LEVELS:
        return _nearest_true(yt, dist)[0]
    yf = yt.astype(np.float32)
    idx = np.zeros(yt.shape, dtype=np.intp)
    for v in values[:-1]:
        idx += (yf @ (dist <= v).astype(np.float32).T) < 0.5
    return np.where(yt.any(1, keepdims=True), values[idx], np.inf)


def _nearest_true(yt: np.ndarray, dist: np.ndarray, lca_depth: np.ndarray | None = None):
    """``dmin[n, j] = min_{s in S_n} dist[j, s]`` (inf if S_n empty) and, if given,
    the largest ``lca_depth[j, s]`` among the nearest s (nan if S_n empty).

    Masked reductions over ``(chunk, C, C)`` blocks of samples.
    """
    n, c = yt.shape
    dmin = np.empty((n, c))
    lmax = np.empty((n, c)) if lca_depth is not None else None
    chunk = max(1, _CHUNK_ELEMENTS // max(1, c * c))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        d = np.where(yt[sl, None, :], dist[None], np.inf)  # (B, C_j, C_s)
        dm = d.min(-1)
        dmin[sl] = dm
        if lca_depth is not None:
            nearest = (d == dm[..., None]) & yt[sl, None, :]
            lm = np.where(nearest, lca_depth[None], -np.inf).max(-1)
            lmax[sl] = np.where(np.isfinite(lm), lm, np.nan)
    return dmin, lmax


def nearest_true_lca_depth(y_true, y_pred, dist, lca_depth, *, evaluate=None) -> np.ndarray:
    """CHAMP's LCA depth per predicted label, ``(N, C)`` (``nan`` where not predicted).

    For each predicted evaluated node j, take its nearest true evaluated node
    ``j' = argmin_{s in S} dist(j, s)`` (the sphere of influence it lies in) and return
    ``lca_depth[j, j']``; among tied nearest nodes the deepest LCA is used. A
    correct prediction gives ``depth(j)``. ``nan`` for samples with empty S.
    """
    yt, yp = _binary("y_true", y_true), _binary("y_pred", y_pred)
    _same_shape(yt, yp, "y_true", "y_pred")
    c = yt.shape[1]
    m = _mask(evaluate, c)
    dist = _square("dist", dist, c)
    lca = _square("lca_depth", lca_depth, c)
    _, lmax = _nearest_true(yt & m, dist, lca)
    return np.where(yp & m, lmax, np.nan)


def mean_lca_depth(y_true, y_pred, dist, lca_depth, *, evaluate=None) -> float:
    """Mean of :func:`nearest_true_lca_depth` over all predicted (sample, node) pairs
    of samples with a non-empty true set (pooled; higher is better)."""
    v = nearest_true_lca_depth(y_true, y_pred, dist, lca_depth, evaluate=evaluate)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def average_hierarchical_cost(y_true, y_pred, dist, *, evaluate=None) -> float:
    """CHAMP's AHC: ``mean_i sum_j yhat_ij dist(j, S_i) / |S_i|`` (lower is better).

    ``dist(j, S) = min_{s in S} dist(j, s)``; both sets restricted to evaluated
    nodes; averaged over samples with ``|S_i| > 0``.
    """
    yt, yp = _binary("y_true", y_true), _binary("y_pred", y_pred)
    _same_shape(yt, yp, "y_true", "y_pred")
    c = yt.shape[1]
    m = _mask(evaluate, c)
    dist = _square("dist", dist, c)
    yt, yp = yt & m, yp & m
    rows = yt.any(1)
    if not rows.any():
        return float("nan")
    dmin = _min_dist(yt[rows], dist)
    cost = np.where(yp[rows], dmin, 0.0).sum(1) / yt[rows].sum(1)
    return float(cost.mean())


def ancestor_closure(y, ancestors) -> np.ndarray:
    """Close each row of ``y`` ``(N, C)`` under ancestors: ``y | (y @ ancestors > 0)``."""
    yb = _binary("y", y)
    anc = _square("ancestors", ancestors, yb.shape[1], dtype=np.float32)
    return yb | ((yb.astype(np.float32) @ anc) > 0.5)


def hierarchical_precision_recall_f1(
    y_true, y_pred, ancestors, *, evaluate=None, zero_division: float = 0.0
) -> tuple[float, float, float]:
    """Hierarchical P/R/F1 (Kiritchenko et al.; hiclass), micro over samples.

    With ``P^_i``, ``T^_i`` the predicted and true sets closed under ancestors
    (then restricted to evaluated nodes):
    ``hP = sum_i |P^_i ∩ T^_i| / sum_i |P^_i|``, ``hR = sum_i |P^_i ∩ T^_i| / sum_i |T^_i|``,
    ``hF = 2 hP hR / (hP + hR)``.
    """
    yt, yp = _binary("y_true", y_true), _binary("y_pred", y_pred)
    _same_shape(yt, yp, "y_true", "y_pred")
    m = _mask(evaluate, yt.shape[1])
    t = ancestor_closure(yt, ancestors)[:, m]
    p = ancestor_closure(yp, ancestors)[:, m]
    inter = (t & p).sum()
    hp = _divide(inter, p.sum(), zero_division)
    hr = _divide(inter, t.sum(), zero_division)
    hf = _divide(2 * hp * hr, hp + hr, zero_division)
    return float(hp), float(hr), float(hf)


# --------------------------------------------------------------------------
# Frequent / rare nodes
# --------------------------------------------------------------------------
def frequency_masks(train_labels, *, fraction: float = 0.2, evaluate=None) -> tuple[np.ndarray, np.ndarray]:
    """``(frequent, rare)`` bool masks ``(C,)``: the ``ceil(fraction * C_eval)`` evaluated
    nodes with the most / fewest training samples.

    ``train_labels`` is an ``(N_train, C)`` label matrix or ``(C,)`` counts. Ties in
    frequency are broken by node index (lower index ranks as more frequent).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a = np.asarray(train_labels)
    counts = a.sum(0) if a.ndim == 2 else a
    if counts.ndim != 1:
        raise ValueError("train_labels must be an (N, C) label matrix or (C,) counts")
    c = counts.shape[0]
    m = _mask(evaluate, c)
    nodes = np.flatnonzero(m)
    n_sel = int(np.ceil(fraction * nodes.size - 1e-9))  # 0.2 * 15 -> 3, not 4
    ranked = nodes[np.argsort(-counts[nodes], kind="stable")]  # most frequent first
    frequent = np.zeros(c, dtype=bool)
    rare = np.zeros(c, dtype=bool)
    if n_sel:
        frequent[ranked[:n_sel]] = True
        rare[ranked[-n_sel:]] = True
    return frequent, rare


def average_precision_by_frequency(
    y_true, scores, train_labels, *, fraction: float = 0.2, average: Average = "micro", evaluate=None
) -> dict:
    """AU(PRC) of the most / least frequent ``fraction`` of nodes (CHAMP Table 3).

    Returns ``{"frequent": ap, "rare": ap}``; ``average`` as in :func:`average_precision`.
    """
    frequent, rare = frequency_masks(train_labels, fraction=fraction, evaluate=evaluate)
    return {
        "frequent": average_precision(y_true, scores, average=average, evaluate=frequent),
        "rare": average_precision(y_true, scores, average=average, evaluate=rare),
    }


def rare_node_recall(
    y_true,
    y_pred,
    train_labels,
    *,
    fraction: float = 0.2,
    average: Average = "micro",
    threshold=None,
    evaluate=None,
) -> float:
    """Recall on the ``fraction`` least frequent evaluated nodes (see :func:`frequency_masks`).

    ``y_pred`` is binary, or scores binarised with ``threshold`` (scalar or ``(C,)``)
    when given. Micro: pooled ``tp / (tp + fn)``; macro: mean per-node recall
    (0 for nodes without positives, sklearn's ``zero_division=0``).
    """
    if threshold is not None:
        y_pred = apply_threshold(y_pred, threshold)
    _, rare = frequency_masks(train_labels, fraction=fraction, evaluate=evaluate)
    return float(precision_recall_f1(y_true, y_pred, average=average, evaluate=rare)[1])


# --------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------
def best_threshold_f1(y_true, scores, *, axis: int | None = None):
    """Threshold maximising F1 of ``score >= threshold``, by one sort.

    ``axis=None``: one threshold for all cells pooled (micro-F1); ``axis=0``: one per
    column. Candidates are the distinct scores; at candidate t with ``k`` cells
    scoring ``>= t`` of which ``tp`` are positive, ``F1 = 2 tp / (P + k)``. The
    highest threshold wins ties. Without positives the best is to predict nothing:
    threshold ``inf``, F1 0. Returns ``(threshold, f1)`` (floats or ``(C,)`` arrays).
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"y_true shape {y.shape} != scores shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contains NaN")
    if axis is None:
        yb, s = _binary("y_true", y.reshape(-1, 1)), s.reshape(-1, 1)
    elif axis == 0:
        yb = _binary("y_true", y)
    else:
        raise ValueError(f"axis must be None or 0, got {axis}")
    n_pos = yb.sum(0)
    if yb.shape[0] == 0:
        thr, f1 = np.full(yb.shape[1], np.inf), np.zeros(yb.shape[1])
    else:
        _, ss, tps, is_end, _ = _sorted_columns(yb, s)
        k = np.arange(1, yb.shape[0] + 1)[:, None]
        f1_all = np.where(is_end, 2 * tps / (n_pos + k), -1.0)
        best = np.argmax(f1_all, axis=0)  # first maximum = highest threshold
        cols = np.arange(yb.shape[1])
        thr = ss[best, cols]
        f1 = f1_all[best, cols]
        none = n_pos == 0
        thr = np.where(none, np.inf, thr)
        f1 = np.where(none, 0.0, f1)
    if axis is None:
        return float(thr[0]), float(f1[0])
    return thr, f1


def pcdb_thresholds(y_true, scores) -> np.ndarray:
    """Per-class decision boundaries (Dhall 2019, 3.1.1): each column's F1-optimal threshold ``(C,)``."""
    return best_threshold_f1(y_true, scores, axis=0)[0]


def ofadb_threshold(y_true, scores, *, evaluate=None) -> float:
    """One-fits-all decision boundary (Dhall 2019, 3.1.2): the micro-F1-optimal global
    threshold over the evaluated columns."""
    s = np.asarray(scores)
    m = _mask(evaluate, s.shape[1])
    return best_threshold_f1(np.asarray(y_true)[:, m], s[:, m], axis=None)[0]


def apply_threshold(scores, threshold) -> np.ndarray:
    """``scores >= threshold`` with a scalar or per-column ``(C,)`` threshold -> bool ``(N, C)``."""
    s = _scores("scores", scores)
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != s.shape[1]):
        raise ValueError(f"threshold must be a scalar or have shape ({s.shape[1]},), got {t.shape}")
    return s >= t
