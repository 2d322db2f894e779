"""Multi-label losses on logits: weighted BCE, focal, ASL, CHAMP, sigmoidF1, rare-node.

Every loss is a plain function on torch tensors plus a thin ``nn.Module`` that
stores its hyper-parameters and, where a hierarchy is involved, the
hierarchy-derived matrices as (non-persistent) buffers computed once.

Shapes: ``logits`` and ``targets`` are ``(N, C)`` (N samples, C nodes); targets
are {0, 1} (bool, int or float). Hierarchy inputs are plain arrays: ``dist`` is
the ``(C, C)`` matrix of undirected tree distances (zero diagonal, finite).

Reductions (``reduction=``), applied to the ``(N, C)`` element-wise loss:

- ``"none"``: the ``(N, C)`` tensor,
- ``"mean"``: mean over all ``N * C`` elements (PyTorch's convention),
- ``"sum"``: sum over all elements,
- ``"batchmean"``: sum over nodes, mean over samples (``sum / N``); this is the
  reduction of the CHAMP appendix code (``reduce_mean(reduce_sum(loss, 1))``).

sigmoidF1 / unboundedF1 are batch-level losses (one value per label); their
reduction is over labels only (``"mean"``, ``"sum"``, ``"none"``).

All logs are computed from logits with ``logsigmoid`` (no ``log(p + eps)``), so
values and gradients stay finite for any finite logit, in float32 and float64.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "bce_with_logits",
    "focal_loss",
    "asymmetric_loss",
    "champ_severity",
    "champ_loss",
    "champ_asymmetric_loss",
    "sigmoid_f1_loss",
    "unbounded_f1_loss",
    "node_weights",
    "ensemble_uncertainty",
    "rare_node_loss",
    "WeightedBCELoss",
    "FocalLoss",
    "AsymmetricLoss",
    "CHAMPLoss",
    "CHAMPAsymmetricLoss",
    "SigmoidF1Loss",
    "UnboundedF1Loss",
    "RareNodeLoss",
]

Reduction = Literal["none", "mean", "sum", "batchmean"]
Scaling = Literal["linear", "one_plus_beta", "quadratic", "appendix"]
Uncertainty = Literal["confidence", "entropy", "aleatoric", "epistemic"]

_REDUCTIONS = ("none", "mean", "sum", "batchmean")
_SCALINGS = ("linear", "one_plus_beta", "quadratic", "appendix")
_UNCERTAINTIES = ("confidence", "entropy", "aleatoric", "epistemic")
# Above this many distinct distance values the nearest-label search switches
# from the per-value matmul formulation to a chunked masked minimum.
_MAX_DISTANCE_LEVELS = 64
_CHUNK_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------
# Stability helpers and validation
# --------------------------------------------------------------------------
def _safe_pow(base: Tensor, gamma: float) -> Tensor:
    """``base ** gamma`` for base in [0, 1] with a finite gradient at base = 0.

    ``gamma == 0`` gives ones (no ``0 * inf`` in the backward pass); for
    ``0 < gamma < 1`` the base is clamped to the smallest normal number.
    """
    if gamma == 0:
        return torch.ones_like(base)
    if gamma < 1:
        base = base.clamp_min(torch.finfo(base.dtype).tiny)
    return base.pow(gamma)


def _binary_entropy(p: Tensor) -> Tensor:
    """Binary entropy in nats, ``-p log p - (1-p) log(1-p)``; 0 at p in {0, 1}."""
    tiny = torch.finfo(p.dtype).tiny
    q = 1.0 - p
    return torch.special.entr(p.clamp_min(tiny)) + torch.special.entr(q.clamp_min(tiny))


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchmean":
        if loss.dim() == 0:
            raise ValueError("reduction='batchmean' needs a batch dimension")
        return loss.sum() / loss.shape[0]
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {_REDUCTIONS}")


def _prepare(logits: Tensor, targets: Tensor, *, two_d: bool = False,
             batched: bool = False) -> tuple[Tensor, Tensor]:
    """Check shapes / dtypes; return (logits, targets cast to logits' dtype).

    ``two_d``: require ``(N, C)``; ``batched``: require ``(N, C)`` or ``(..., N, C)``
    (e.g. a stack of M models, each with its own batch).
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    targets = torch.as_tensor(targets, device=logits.device)
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} != logits shape {tuple(logits.shape)}"
        )
    if two_d and logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if batched and logits.dim() < 2:
        raise ValueError(f"logits must be (N, C) or (..., N, C), got shape {tuple(logits.shape)}")
    return logits, targets.to(logits.dtype)


def _check_dist(dist: Tensor, n_nodes: int) -> None:
    if dist.shape != (n_nodes, n_nodes):
        raise ValueError(f"dist must have shape ({n_nodes}, {n_nodes}), got {tuple(dist.shape)}")
    if not bool(torch.isfinite(dist).all()):
        raise ValueError("dist contains NaN or inf (tree distances must be finite)")
    if bool((dist < 0).any()):
        raise ValueError("dist contains negative distances")


def _node_vector(value, n_nodes: int, like: Tensor, name: str) -> Tensor | None:
    if value is None:
        return None
    v = torch.as_tensor(value, device=like.device, dtype=like.dtype)
    if v.dim() > 1 or (v.dim() == 1 and v.shape[0] != n_nodes):
        raise ValueError(f"{name} must be a scalar or have shape ({n_nodes},), got {tuple(v.shape)}")
    return v


# --------------------------------------------------------------------------
# BCE, focal, ASL
# --------------------------------------------------------------------------
def bce_with_logits(
    logits: Tensor,
    targets: Tensor,
    *,
    pos_weight: Tensor | float | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy on logits with positive weights.

    ``l = -[pw_j * y * log sigmoid(z) + (1 - y) * log sigmoid(-z)] * weight``,
    identical to ``F.binary_cross_entropy_with_logits(..., pos_weight=pw)``.
    ``pos_weight`` is a scalar or ``(C,)``; ``weight`` broadcasts against the loss.
    """
    z, y = _prepare(logits, targets)
    pw = _node_vector(pos_weight, z.shape[-1], z, "pos_weight")
    pos = y * F.logsigmoid(z)
    if pw is not None:
        pos = pw * pos
    loss = -(pos + (1.0 - y) * F.logsigmoid(-z))
    if weight is not None:
        loss = loss * torch.as_tensor(weight, device=z.device, dtype=z.dtype)
    return _reduce(loss, reduction)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017), defaults ``gamma=2, alpha=0.25``.

    ``l = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t = p y + (1 - p)(1 - y)``
    and ``alpha_t = alpha y + (1 - alpha)(1 - y)`` (``alpha=None``: no alpha
    weighting). ``1 - p_t`` is computed as ``y sigmoid(-z) + (1-y) sigmoid(z)``.
    Same values as ``torchvision.ops.sigmoid_focal_loss``.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    z, y = _prepare(logits, targets)
    ce = -(y * F.logsigmoid(z) + (1.0 - y) * F.logsigmoid(-z))
    one_minus_pt = y * torch.sigmoid(-z) + (1.0 - y) * torch.sigmoid(z)
    loss = ce * _safe_pow(one_minus_pt, gamma)
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return _reduce(loss, reduction)


def _asl_terms(
    z: Tensor, y: Tensor, gamma_pos: float, gamma_neg: float, clip: float, detach_focusing: bool
) -> tuple[Tensor, Tensor]:
    """Positive and negative ASL terms (both >= 0), element-wise.

    pos = -y (1 - p)^gamma_pos log p,
    neg = -(1 - y) p_m^gamma_neg log(1 - p_m),  p_m = max(p - clip, 0).
    """
    if gamma_pos < 0 or gamma_neg < 0:
        raise ValueError("gamma_pos and gamma_neg must be >= 0")
    if not 0 <= clip < 1:
        raise ValueError(f"clip must be in [0, 1), got {clip}")
    log_p = F.logsigmoid(z)
    one_minus_p = torch.sigmoid(-z)
    if clip > 0:
        # 1 - p_m = min(1 - p + clip, 1) >= clip > 0: the log is safe.
        one_minus_pm = (one_minus_p + clip).clamp(max=1.0)
        log_one_minus_pm = torch.log(one_minus_pm)
        p_m = 1.0 - one_minus_pm
    else:
        log_one_minus_pm = F.logsigmoid(-z)
        p_m = torch.sigmoid(z)
    w_pos = _safe_pow(one_minus_p, gamma_pos)
    w_neg = _safe_pow(p_m, gamma_neg)
    if detach_focusing:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    pos = -y * w_pos * log_p
    neg = -(1.0 - y) * w_neg * log_one_minus_pm
    return pos, neg


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    detach_focusing: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """Asymmetric loss, ASL (Ridnik et al. 2021); defaults are the paper's (0, 4, 0.05).

    ``l = -y (1-p)^{gamma_pos} log p - (1-y) p_m^{gamma_neg} log(1 - p_m)`` with the
    probability margin ``p_m = max(p - clip, 0)``. ``detach_focusing=True`` stops the
    gradient through the focusing weights (the reference code's
    ``disable_torch_grad_focal_loss``).
    """
    z, y = _prepare(logits, targets)
    pos, neg = _asl_terms(z, y, gamma_pos, gamma_neg, clip, detach_focusing)
    return _reduce(pos + neg, reduction)


# --------------------------------------------------------------------------
# CHAMP
# --------------------------------------------------------------------------
def _min_dist_to_set(y: Tensor, dist: Tensor, values: Tensor) -> Tensor:
    """``d[n, j] = min_{s : y[n, s] = 1} dist[j, s]``; ``values[-1]`` (the max) if S is empty.

    With K = ``len(values)`` distinct distances (sorted ascending), uses
    ``d = v[#{k < K: no s in S with dist(j, s) <= v_k}]``: K - 1
    matmuls ``(N, C) @ (C, C)``, memory O(N C + C^2). Tree distances are small
    integers so K <= 2 * height + 1. Falls back to a masked minimum over
    ``(chunk, C, C)`` blocks when K is large (generic real-valued distances).
    """
    n, c = y.shape
    if values.numel() <= _MAX_DISTANCE_LEVELS:
        # d = v[i] with i = #{k < K: no s in S with dist(j, s) <= v_k}
        idx = torch.zeros((n, c), dtype=torch.long, device=y.device)
        for k in range(values.numel() - 1):
            within = (dist <= values[k]).to(y.dtype)  # (C, C): within[j, s]
            idx += (y @ within.T) < 0.5  # (N, C): no s in S within v_k of j
        return values[idx]
    chunk = max(1, _CHUNK_ELEMENTS // (c * c))
    parts = []
    big = values[-1]
    for start in range(0, n, chunk):
        yb = y[start : start + chunk] > 0.5  # (B, C)
        masked = torch.where(yb[:, None, :], dist[None, :, :], big)  # (B, C, C)
        parts.append(masked.amin(dim=-1))
    return torch.cat(parts, dim=0) if parts else y.new_zeros((0, c))


def _scale(x: Tensor, beta: float, scaling: str) -> Tensor:
    if scaling == "linear":
        return beta * x
    if scaling == "one_plus_beta":
        return (1.0 + beta) * x
    if scaling == "quadratic":
        return beta * x * x
    if scaling == "appendix":
        return beta * ((1.0 + x) ** 2 - 1.0)
    raise ValueError(f"unknown scaling {scaling!r}; expected one of {_SCALINGS}")


def _severity(
    y: Tensor,
    dist: Tensor,
    values: Tensor,
    inv_dist: Tensor,
    dist_max: float,
    beta: float,
    soft: bool,
    scaling: str,
) -> Tensor:
    with torch.no_grad():
        n_true = y.sum(dim=1, keepdim=True)  # |S|
        empty = n_true < 0.5
        if soft:
            inv_sum = y @ inv_dist.T  # sum_{s in S} 1 / dist(j, s), s != j
            d = torch.where(inv_sum > 0, n_true / inv_sum.clamp_min(1e-30), dist.new_tensor(dist_max))
            d = torch.where(y > 0.5, torch.zeros_like(d), d)  # harmonic mean with a 0 term is 0
        else:
            d = _min_dist_to_set(y, dist, values)
        d = torch.where(empty, torch.full_like(d, dist_max), d)
        x = d / dist_max if dist_max > 0 else torch.zeros_like(d)
        return _scale(x, beta, scaling)


def _champ_inputs(dist, like: Tensor, n_nodes: int):
    dist = torch.as_tensor(dist, device=like.device, dtype=like.dtype)
    _check_dist(dist, n_nodes)
    values = torch.unique(dist)
    inv = torch.where(dist > 0, 1.0 / dist.clamp_min(1e-30), torch.zeros_like(dist))
    return dist, values, inv


def champ_severity(
    targets: Tensor,
    dist: Tensor,
    *,
    beta: float = 1.0,
    soft: bool = False,
    scaling: Scaling = "linear",
    dist_max: float | None = None,
) -> Tensor:
    """CHAMP severity ``s_S(j)`` of a false positive on node j, shape ``(N, C)``.

    With S the true labels of the sample and ``x = d / dist_max``:

    - hard (Eq. 3): ``d = dist(j, S) = min_{s in S} dist(j, s)``;
    - soft (Eq. 4): ``d = |S| / sum_{s in S} dist(j, s)^{-1}`` (harmonic mean);
    - ``scaling`` (Table 7): ``"linear"`` ``s = beta x`` (Eqs. 3-4, default),
      ``"one_plus_beta"`` ``s = (1 + beta) x``, ``"quadratic"`` ``s = beta x^2``,
      ``"appendix"`` ``s = beta ((1 + x)^2 - 1)`` (the normalisation in the
      paper's appendix code for CHAMP-H, which differs from Eq. 3).

    ``dist_max`` defaults to ``dist.max()``. Conventions: ``s = 0`` for j in S
    (its negative term vanishes anyway); for a sample with no true label ``d`` is
    taken as ``dist_max`` (the min over an empty set, clipped). Ties in the hard
    version count once (Eq. 3's min); the appendix code adds one term per tied
    nearest label. Computed without gradient.
    """
    t = torch.as_tensor(targets)
    if t.dim() != 2:
        raise ValueError(f"targets must be 2-D (N, C), got shape {tuple(t.shape)}")
    like = t if t.is_floating_point() else t.to(torch.get_default_dtype())
    y = like.detach()
    dist, values, inv = _champ_inputs(dist, y, y.shape[1])
    dmax = float(values[-1]) if dist_max is None else float(dist_max)
    return _severity(y, dist, values, inv, dmax, beta, soft, scaling)


def _champ_common(logits, targets, dist, beta, soft, scaling, dist_max, cache=None):
    z, y = _prepare(logits, targets, two_d=True)
    if cache is None:
        d, values, inv = _champ_inputs(dist, z, z.shape[1])
        dmax = float(values[-1]) if dist_max is None else float(dist_max)
    else:
        d, values, inv, dmax = (t.to(z.dtype) if isinstance(t, Tensor) else t for t in cache)
    s = _severity(y.detach(), d, values, inv, dmax, beta, soft, scaling)
    return z, y, s


def champ_loss(
    logits: Tensor,
    targets: Tensor,
    dist: Tensor,
    *,
    beta: float = 1.0,
    soft: bool = False,
    scaling: Scaling = "linear",
    dist_max: float | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """CHAMP severity-weighted BCE (Eq. 2), hard (CHAMP-H) or soft (CHAMP-S).

    ``l_j = -[y_j log p_j + (1 + s_S(j)) (1 - y_j) log(1 - p_j)]`` with ``p = sigmoid(z)``
    and ``s_S`` from :func:`champ_severity`. ``beta = 0`` gives plain BCE. The paper
    sums over nodes and averages over the batch: ``reduction="batchmean"``. Logs
    come from logits via ``logsigmoid`` (the appendix code uses ``log(p + 1e-15)``).
    """
    z, y, s = _champ_common(logits, targets, dist, beta, soft, scaling, dist_max)
    loss = -(y * F.logsigmoid(z) + (1.0 + s) * (1.0 - y) * F.logsigmoid(-z))
    return _reduce(loss, reduction)


def champ_asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    dist: Tensor,
    *,
    beta: float = 1.0,
    soft: bool = False,
    scaling: Scaling = "linear",
    dist_max: float | None = None,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    detach_focusing: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """CHAMP-Asymmetric: ASL with its negative term multiplied by ``(1 + s_S(j))``.

    ``l = -y (1-p)^{gamma_pos} log p - (1 + s_S(j)) (1-y) p_m^{gamma_neg} log(1 - p_m)``.
    The paper defers the exact form to its (unavailable) supplement; this is the
    direct analogue of Eq. 2 (severity on the false-positive term only).
    """
    z, y, s = _champ_common(logits, targets, dist, beta, soft, scaling, dist_max)
    pos, neg = _asl_terms(z, y, gamma_pos, gamma_neg, clip, detach_focusing)
    return _reduce(pos + (1.0 + s) * neg, reduction)


# --------------------------------------------------------------------------
# sigmoidF1 / unboundedF1
# --------------------------------------------------------------------------
def _soft_f1_loss(s: Tensor, y: Tensor, reduction: str) -> Tensor:
    # sums over the batch axis (-2): (..., N, C) -> (..., C), one F1 per label (and per leading index)
    tp = (s * y).sum(dim=-2)
    fp = (s * (1.0 - y)).sum(dim=-2)
    fn = ((1.0 - s) * y).sum(dim=-2)
    denom = 2.0 * tp + fn + fp
    # 0/0 (no positives and nothing predicted) -> F1 = 0, as the reference code's +1e-16.
    f1 = 2.0 * tp / torch.where(denom > 0, denom, torch.ones_like(denom))
    loss = 1.0 - f1
    if reduction == "batchmean":
        raise ValueError("F1 losses are batch-level; use reduction 'mean', 'sum' or 'none'")
    return _reduce(loss, reduction)


def sigmoid_f1_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    beta: float = 1.0,
    eta: float = 0.0,
    reduction: Literal["none", "mean", "sum"] = "mean",
) -> Tensor:
    """sigmoidF1 (Benedict et al. 2022, Eqs. 5-8), macro over labels.

    ``S = sigmoid(beta (z + eta))``; per label j over the batch:
    ``tp = sum_i S y``, ``fp = sum_i S (1-y)``, ``fn = sum_i (1-S) y``;
    ``loss_j = 1 - 2 tp / (2 tp + fn + fp)`` (0/0 -> F1 = 0). ``"mean"`` gives
    ``1 - mean_j F1_j``; ``"none"`` the ``(C,)`` per-label losses. Defaults
    ``beta=1, eta=0`` are those of the authors' code (``S=-1, E=0``); the paper
    grid-searches beta in [1, 30] and eta in [0, 2]. With the defaults this
    equals :func:`unbounded_f1_loss`.

    Stacked models: ``logits`` / ``targets`` of shape ``(M, N, C)`` (M independent
    models, each with its own batch) give one F1 per model and label; ``"none"``
    returns ``(M, C)``, so ``loss(..., reduction="none").mean(-1)`` is the ``(M,)``
    per-model losses, each equal to the 2-D loss of that model's batch.
    """
    z, y = _prepare(logits, targets, batched=True)
    return _soft_f1_loss(torch.sigmoid(beta * (z + eta)), y, reduction)


def unbounded_f1_loss(
    logits: Tensor, targets: Tensor, *, reduction: Literal["none", "mean", "sum"] = "mean"
) -> Tensor:
    """unboundedF1 (Eq. 7): :func:`sigmoid_f1_loss` with ``p = sigmoid(z)`` in place of S."""
    z, y = _prepare(logits, targets, batched=True)
    return _soft_f1_loss(torch.sigmoid(z), y, reduction)


# --------------------------------------------------------------------------
# Rare-node weighting (Xu et al. 2026)
# --------------------------------------------------------------------------
def node_weights(
    y_train, *, omega: float = 1.0, w_max: float = 10.0, dtype: torch.dtype | None = None
) -> Tensor:
    """Node-wise imbalance weights ``w`` of shape ``(C,)`` from a training label matrix.

    ``n_j`` = number of training samples carrying node j (``y_train`` is ``(N, C)``).
    Raw inverse frequency ``r_j = N / (C n_j)``, min-max rescaled over the nodes
    with ``0 < n_j < N`` into ``[omega, w_max]`` (rarest node -> ``w_max``, most
    frequent -> ``omega``); ``w_j = 1`` where ``n_j = 0`` or ``n_j = N``. If all
    rescaled nodes share one frequency they get ``omega``. Defaults
    ``omega=1, w_max=10`` are ours (the paper's values are not in our copy).
    """
    if not 0 <= omega <= w_max:
        raise ValueError(f"need 0 <= omega <= w_max, got omega={omega}, w_max={w_max}")
    y = torch.as_tensor(np.asarray(y_train) if not isinstance(y_train, Tensor) else y_train)
    if y.dim() != 2:
        raise ValueError(f"y_train must be 2-D (N, C), got shape {tuple(y.shape)}")
    y = y.to(torch.float64)
    if bool(torch.isnan(y).any()):
        raise ValueError("y_train contains NaN")
    n, c = y.shape
    counts = y.sum(dim=0)
    valid = (counts > 0) & (counts < n)
    raw = n / (c * counts.clamp_min(1.0))
    w = torch.ones(c, dtype=torch.float64)
    if bool(valid.any()):
        lo, hi = raw[valid].min(), raw[valid].max()
        frac = (raw - lo) / (hi - lo) if hi > lo else torch.zeros_like(raw)
        w = torch.where(valid, omega + frac * (w_max - omega), w)
    return w.to(dtype or torch.get_default_dtype())


def ensemble_uncertainty(probs: Tensor, mode: Uncertainty = "epistemic") -> Tensor:
    """Per-node uncertainty in [0, 1] from ensemble probabilities ``(H, N, C)`` -> ``(N, C)``.

    Leading dimensions are kept: ``(..., H, N, C)`` -> ``(..., N, C)`` (e.g. a stack
    of M models, each with H heads: ``(M, H, N, C)`` -> ``(M, N, C)``).

    With ``pbar = mean_h p_h`` and binary entropy ``h`` (nats):

    - ``"confidence"``: ``1 - 2 |pbar - 1/2|``;
    - ``"entropy"``: ``h(pbar) / log 2`` (total predictive entropy);
    - ``"aleatoric"``: ``mean_h h(p_h) / log 2``;
    - ``"epistemic"`` (default): mean over head pairs a < b of the Jensen-Shannon
      divergence ``h((p_a + p_b)/2) - (h(p_a) + h(p_b))/2``, over ``log 2``
      (0 for a single head).
    """
    p = torch.as_tensor(probs)
    if p.dim() == 2:
        p = p[None]
    if p.dim() < 3:
        raise ValueError(f"probs must be (..., H, N, C) or (N, C), got shape {tuple(p.shape)}")
    ln2 = math.log(2.0)
    if mode == "confidence":
        return 1.0 - 2.0 * (p.mean(-3) - 0.5).abs()
    if mode == "entropy":
        return _binary_entropy(p.mean(-3)) / ln2
    if mode == "aleatoric":
        return _binary_entropy(p).mean(-3) / ln2
    if mode == "epistemic":
        h = p.shape[-3]
        if h < 2:
            return torch.zeros_like(p.select(-3, 0))
        a, b = torch.triu_indices(h, h, offset=1, device=p.device)
        pa, pb = p.index_select(-3, a), p.index_select(-3, b)  # (..., H(H-1)/2, N, C)
        jsd = _binary_entropy(0.5 * (pa + pb)) - 0.5 * (_binary_entropy(pa) + _binary_entropy(pb))
        return (jsd.mean(-3) / ln2).clamp(0.0, 1.0)
    raise ValueError(f"unknown uncertainty mode {mode!r}; expected one of {_UNCERTAINTIES}")


def rare_node_loss(
    logits: Tensor,
    targets: Tensor,
    node_weight: Tensor | None = None,
    *,
    k: float = 2.0,
    omega_f: float = 0.25,
    uncertainty: Uncertainty = "epistemic",
    weight_terms: Literal["positive", "all"] = "positive",
    detach_uncertainty: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Rare-node weighted, uncertainty-focal BCE (Xu et al. 2026).

    ``L_ij = W_ij (omega_f + u_ij^k) mean_h BCE(sigmoid(z_hij), y_ij)`` with ``logits``
    of shape ``(H, N, C)`` (an ensemble of H heads; ``(N, C)`` means H = 1),
    ``u = ensemble_uncertainty(sigmoid(logits), uncertainty)`` and node weights
    ``w`` (``(C,)``, from :func:`node_weights`; ``None`` = ones):
    ``W_ij = w_j`` on positive terms and 1 on negative ones (``weight_terms="positive"``)
    or ``w_j`` on both (``"all"``). ``u`` is a weight, not a target, so it is
    detached by default (``detach_uncertainty``). Reduction over ``(N, C)``.

    Stacked models: ``logits`` ``(M, H, N, C)`` with ``targets`` ``(M, N, C)``
    (each model its own batch and its own ensemble statistics); ``"none"`` gives
    ``(M, N, C)``, so ``.mean((-2, -1))`` is the ``(M,)`` per-model losses.
    """
    if weight_terms not in ("positive", "all"):
        raise ValueError(f"weight_terms must be 'positive' or 'all', got {weight_terms!r}")
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    z = logits if logits.dim() in (3, 4) else logits[None]
    if z.dim() not in (3, 4):
        raise ValueError(f"logits must be (N, C), (H, N, C) or (M, H, N, C), got shape {tuple(logits.shape)}")
    _, y = _prepare(z.select(-3, 0), targets, batched=True)
    bce = -(y.unsqueeze(-3) * F.logsigmoid(z) + (1.0 - y.unsqueeze(-3)) * F.logsigmoid(-z)).mean(dim=-3)  # (.., N, C)
    probs = torch.sigmoid(z)
    u = ensemble_uncertainty(probs.detach() if detach_uncertainty else probs, uncertainty)
    focal = omega_f + _safe_pow(u, k)
    w = _node_vector(node_weight, y.shape[-1], z, "node_weight")
    if w is not None:
        term_w = y * w + (1.0 - y) if weight_terms == "positive" else w.expand_as(y)
        focal = focal * term_w
    return _reduce(focal * bce, reduction)


# --------------------------------------------------------------------------
# nn.Module wrappers
# --------------------------------------------------------------------------
class WeightedBCELoss(nn.Module):
    """Module form of :func:`bce_with_logits`; ``pos_weight`` stored as a buffer."""

    def __init__(self, pos_weight=None, *, reduction: Reduction = "mean"):
        super().__init__()
        self.reduction = reduction
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.get_default_dtype())
        self.register_buffer("pos_weight", pw, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return bce_with_logits(logits, targets, pos_weight=self.pos_weight, reduction=self.reduction)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`."""

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = 0.25, reduction: Reduction = "mean"):
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return focal_loss(logits, targets, gamma=self.gamma, alpha=self.alpha, reduction=self.reduction)


class AsymmetricLoss(nn.Module):
    """Module form of :func:`asymmetric_loss`."""

    def __init__(
        self,
        *,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        detach_focusing: bool = False,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.detach_focusing, self.reduction = detach_focusing, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return asymmetric_loss(
            logits, targets, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip,
            detach_focusing=self.detach_focusing, reduction=self.reduction,
        )


class _CHAMPBase(nn.Module):
    def __init__(self, dist, *, beta, soft, scaling, dist_max):
        super().__init__()
        if scaling not in _SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; expected one of {_SCALINGS}")
        d = torch.as_tensor(np.asarray(dist) if not isinstance(dist, Tensor) else dist)
        d = d.to(torch.get_default_dtype())
        if d.dim() != 2:
            raise ValueError(f"dist must be a (C, C) matrix, got shape {tuple(d.shape)}")
        d, values, inv = _champ_inputs(d, d, d.shape[0])
        self.register_buffer("dist", d, persistent=False)
        self.register_buffer("dist_values", values, persistent=False)
        self.register_buffer("inv_dist", inv, persistent=False)
        self.dist_max = float(values[-1]) if dist_max is None else float(dist_max)
        self.beta, self.soft, self.scaling = beta, soft, scaling

    def severity(self, targets: Tensor) -> Tensor:
        """``(N, C)`` severities for a batch of targets (see :func:`champ_severity`)."""
        y = torch.as_tensor(targets, device=self.dist.device).to(self.dist.dtype)
        return _severity(
            y, self.dist, self.dist_values, self.inv_dist, self.dist_max, self.beta, self.soft, self.scaling
        )

    def _cache(self):
        return self.dist, self.dist_values, self.inv_dist, self.dist_max


class CHAMPLoss(_CHAMPBase):
    """Module form of :func:`champ_loss`; ``dist`` and its derived matrices are buffers."""

    def __init__(
        self,
        dist,
        *,
        beta: float = 1.0,
        soft: bool = False,
        scaling: Scaling = "linear",
        dist_max: float | None = None,
        reduction: Reduction = "mean",
    ):
        super().__init__(dist, beta=beta, soft=soft, scaling=scaling, dist_max=dist_max)
        self.reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        z, y, s = _champ_common(
            logits, targets, None, self.beta, self.soft, self.scaling, None, cache=self._cache()
        )
        loss = -(y * F.logsigmoid(z) + (1.0 + s) * (1.0 - y) * F.logsigmoid(-z))
        return _reduce(loss, self.reduction)


class CHAMPAsymmetricLoss(_CHAMPBase):
    """Module form of :func:`champ_asymmetric_loss`."""

    def __init__(
        self,
        dist,
        *,
        beta: float = 1.0,
        soft: bool = False,
        scaling: Scaling = "linear",
        dist_max: float | None = None,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        detach_focusing: bool = False,
        reduction: Reduction = "mean",
    ):
        super().__init__(dist, beta=beta, soft=soft, scaling=scaling, dist_max=dist_max)
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.detach_focusing, self.reduction = detach_focusing, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        z, y, s = _champ_common(
            logits, targets, None, self.beta, self.soft, self.scaling, None, cache=self._cache()
        )
        pos, neg = _asl_terms(z, y, self.gamma_pos, self.gamma_neg, self.clip, self.detach_focusing)
        return _reduce(pos + (1.0 + s) * neg, self.reduction)


class SigmoidF1Loss(nn.Module):
    """Module form of :func:`sigmoid_f1_loss`."""

    def __init__(self, *, beta: float = 1.0, eta: float = 0.0, reduction: Literal["none", "mean", "sum"] = "mean"):
        super().__init__()
        self.beta, self.eta, self.reduction = beta, eta, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_f1_loss(logits, targets, beta=self.beta, eta=self.eta, reduction=self.reduction)


class UnboundedF1Loss(nn.Module):
    """Module form of :func:`unbounded_f1_loss`."""

    def __init__(self, *, reduction: Literal["none", "mean", "sum"] = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return unbounded_f1_loss(logits, targets, reduction=self.reduction)


class RareNodeLoss(nn.Module):
    """Module form of :func:`rare_node_loss`; node weights stored as a buffer.

    Build from training labels with :meth:`from_labels`.
    """

    def __init__(
        self,
        node_weight=None,
        *,
        k: float = 2.0,
        omega_f: float = 0.25,
        uncertainty: Uncertainty = "epistemic",
        weight_terms: Literal["positive", "all"] = "positive",
        detach_uncertainty: bool = True,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        if uncertainty not in _UNCERTAINTIES:
            raise ValueError(f"unknown uncertainty mode {uncertainty!r}; expected one of {_UNCERTAINTIES}")
        if weight_terms not in ("positive", "all"):
            raise ValueError(f"weight_terms must be 'positive' or 'all', got {weight_terms!r}")
        w = None if node_weight is None else torch.as_tensor(node_weight, dtype=torch.get_default_dtype())
        self.register_buffer("node_weight", w, persistent=False)
        self.k, self.omega_f, self.uncertainty = k, omega_f, uncertainty
        self.weight_terms, self.detach_uncertainty, self.reduction = weight_terms, detach_uncertainty, reduction

    @classmethod
    def from_labels(cls, y_train, *, omega: float = 1.0, w_max: float = 10.0, **kwargs) -> "RareNodeLoss":
        """Weights from :func:`node_weights` of the ``(N, C)`` training labels."""
        return cls(node_weights(y_train, omega=omega, w_max=w_max), **kwargs)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return rare_node_loss(
            logits, targets, self.node_weight, k=self.k, omega_f=self.omega_f,
            uncertainty=self.uncertainty, weight_terms=self.weight_terms,
            detach_uncertainty=self.detach_uncertainty, reduction=self.reduction,
        )
