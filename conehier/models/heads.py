"""Classification heads for hierarchical multi-label classification (HMC).

Every head is an ``nn.Module`` that maps a feature tensor ``(N, F)`` (the output
of an MLP here, of a CNN backbone elsewhere) to logits, and knows how to turn
its logits into per-node scores. Node ids are those of a
:class:`~conehier.hierarchy.Hierarchy` (``C = hierarchy.n`` nodes); label
matrices are ``(N, C)`` in {0, 1}, closed under ancestors.

Two families:

* **sigmoid heads** (``kind = "sigmoid"``): one logit per node, trained with
  any multi-label loss of :mod:`conehier.losses.multilabel` on
  :meth:`training_logits`; decisions by thresholds on :meth:`scores`
  (per-class, PCDB, or one global, OFADB: see
  :func:`conehier.evaluation.functional.pcdb_thresholds`).

  - :class:`MultiLabelHead`: hierarchy-agnostic, one sigmoid per node.
  - :class:`MaxConstraintHead`: C-HMCNN's max-constraint module (MCM,
    Giunchiglia & Lukasiewicz 2020) on top of the sigmoids.

  Both take ``n_heads = H > 1`` for an ensemble of H output layers on the same
  features (logits ``(H, N, C)``, as the rare-node loss wants); scores are the
  mean of the heads' probabilities.

* **softmax heads** (``kind = "softmax"``): they carry their own negative
  log-likelihood, :meth:`loss`, and are meant for hierarchies where a sample
  has one label per level (a single path):

  - :class:`PerLevelHead`: one softmax per level.
  - :class:`MarginalizationHead`: a softmax over the leaves; an inner node's
    probability is the sum of its leaves' (bottom-up marginalisation).
  - :class:`MaskedPerLevelHead`: per-level softmax trained over the children
    of the true parent, predicted top-down among the children of the node
    predicted above.
  - :class:`HierarchicalSoftmaxHead`: a softmax per sibling group; a node's
    probability is the product of the conditionals along its path.

  For a sample with several true nodes at one level the per-level terms use
  the probability of the true *set*, ``log sum_{j in S_l} p_j``; levels without
  a true node are skipped.

The max-constraint module
-------------------------
``MCM(x)_j = max_{k in D(j)} x_k`` over the descendants-or-self ``D(j)`` of j.
With ``p = sigmoid(z)`` it makes every parent at least as probable as each of
its children. Because sigmoid is increasing, ``MCM(sigmoid(z)) =
sigmoid(MCM(z))``: the module here works on logits, and the losses see logits.
C-HMCNN's training output ``(1 - y) MCM(p) + y MCM(y p)`` becomes, in the logit
domain, ``max_{k in D(j)} z_k`` for a negative node j and ``max_{k in D(j), y_k =
1} z_k`` for a positive one (j itself is in the set, so it is never empty):
the same probabilities, the same gradients, and logs taken with
``logsigmoid`` instead of ``log(p)``.

Two vectorised implementations (:func:`max_constraint`):

* ``"dense"``: the ``(N, 1, C)`` values against the ``(C, C)``
  descendant-or-self mask, ``amax`` over the last dimension, in chunks of
  samples (C-HMCNN's formulation; O(N C^2));
* ``"sparse"``: one gather of the ``nnz`` (ancestor, descendant) pairs and one
  ``scatter_reduce(amax)`` (O(N nnz); for a FunCat tree ``nnz`` is about 4 C).
  ``"auto"`` (the default) picks it whenever ``nnz < C^2 / 4``.

Both give the same values. At exact ties the sparse path gives the gradient to
one of the tied entries (as C-HMCNN's ``torch.max`` does; its backward is one
``scatter_add`` of ``(N, C)``), the dense path shares it among them.
The pair mask of the training output depends on the labels only
(:meth:`MaxConstraint.pair_mask`), so a trainer can compute it once per
training set.

Re-weighting and re-sampling
----------------------------
:func:`inverse_frequency_weights` gives per-class weights ``(N / n_j)^power``
(``power=1``: inverse frequency, ``0.5``: its square root) normalised to mean 1;
:func:`sample_weights` per-sample drawing weights (the weight of a sample's
rarest label) and :func:`make_sampler` a ``WeightedRandomSampler`` for a
``DataLoader``. The HMC trainer draws the same weights itself with
``torch.multinomial`` (no DataLoader).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..hierarchy.graph import Hierarchy

__all__ = [
    "MLP",
    "HMCModel",
    "MultiLabelHead",
    "MaxConstraintHead",
    "PerLevelHead",
    "MarginalizationHead",
    "MaskedPerLevelHead",
    "HierarchicalSoftmaxHead",
    "MaxConstraint",
    "dropout_noise",
    "max_constraint",
    "max_constraint_training",
    "group_log_softmax",
    "descendant_pairs",
    "label_frequencies",
    "inverse_frequency_weights",
    "sample_weights",
    "make_sampler",
    "HEADS",
    "build_head",
]

MCMMethod = Literal["auto", "dense", "sparse"]
# elements of one (chunk, C, C) block in the dense max-constraint
_DENSE_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------
# Hierarchy -> index structures
# --------------------------------------------------------------------------
def _as_desc_mask(desc) -> np.ndarray:
    """``(C, C)`` bool descendant-or-self mask from a Hierarchy or a matrix."""
    if isinstance(desc, Hierarchy):
        return desc.descendant_matrix(include_self=True)
    m = np.asarray(desc.detach().cpu() if isinstance(desc, Tensor) else desc).astype(bool)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"descendant mask must be a square (C, C) matrix, got shape {m.shape}")
    if not m.diagonal().all():
        m = m.copy()
        np.fill_diagonal(m, True)
    return m


def descendant_pairs(hierarchy_or_mask) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64 of every (node, descendant-or-self) pair, sorted by node.

    From a :class:`Hierarchy` (sparse closure, no dense matrix) or a ``(C, C)``
    bool mask ``M[i, j]`` = j is i or a descendant of i.
    """
    if isinstance(hierarchy_or_mask, Hierarchy):
        c = hierarchy_or_mask.closure(include_self=True).tocsr()
        c.sort_indices()
        rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        return rows.astype(np.int64), c.indices.astype(np.int64)
    rows, cols = np.nonzero(_as_desc_mask(hierarchy_or_mask))
    return rows.astype(np.int64), cols.astype(np.int64)


def _require_tree(h: Hierarchy, what: str) -> np.ndarray:
    """``(C,)`` parent id of each node (-1 for roots); raises for a node with two parents."""
    e = h.edges
    n_par = np.bincount(e[:, 1], minlength=h.n) if len(e) else np.zeros(h.n, np.int64)
    if (n_par > 1).any():
        j = int(np.flatnonzero(n_par > 1)[0])
        raise ValueError(
            f"{what} needs a tree or forest (one parent per node); node {h.names[j]!r} has {n_par[j]} parents"
        )
    parent = np.full(h.n, -1, np.int64)
    if len(e):
        parent[e[:, 1]] = e[:, 0]
    return parent


def _level_weights(weights, n_levels: int) -> Tensor:
    if weights is None:
        return torch.ones(n_levels)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.get_default_dtype())
    if w.shape != (n_levels,):
        raise ValueError(f"level_weights must have one value per level ({n_levels}), got shape {tuple(w.shape)}")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("level_weights must be finite and >= 0")
    return w


def _check_features(x: Tensor, in_features: int) -> None:
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"features must have shape (N, {in_features}), got {tuple(x.shape)}")


def _check_targets(y: Tensor, n: int, c: int) -> Tensor:
    y = torch.as_tensor(y)
    if y.shape != (n, c):
        raise ValueError(f"targets must have shape ({n}, {c}), got {tuple(y.shape)}")
    return y


# --------------------------------------------------------------------------
# Max-constraint module
# --------------------------------------------------------------------------
def _flat(x: Tensor) -> tuple[Tensor, tuple]:
    if x.dim() < 2:
        raise ValueError(f"expected (..., N, C) values, got shape {tuple(x.shape)}")
    return x.reshape(-1, x.shape[-1]), x.shape


def _mcm_dense(x: Tensor, mask: Tensor, keep_fn=None) -> Tensor:
    n, c = x.shape
    neg = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    chunk = max(1, _DENSE_CHUNK_ELEMENTS // max(1, c * c))
    parts = []
    for s in range(0, n, chunk):
        xb = x[s:s + chunk]
        m = mask[None] if keep_fn is None else mask[None] & keep_fn(s, s + chunk)
        parts.append(torch.where(m, xb[:, None, :], neg).amax(dim=-1))
    return torch.cat(parts, 0) if parts else x.new_zeros((0, c))


class _PairMax(torch.autograd.Function):
    """``out[n, j] = max over pairs p with rows[p] = j (and keep[n, p]) of x[n, cols[p]]``.

    Forward: one gather and one ``scatter_reduce(amax)`` over the pairs, plus the
    position of each maximum (the highest column among exact ties). Backward:
    the gradient goes to that position only (as ``torch.max`` over a dimension
    does), one ``scatter_add`` of ``(N, C)`` -- much cheaper than autograd through
    ``scatter_reduce`` and the gather, whose backward passes touch all pairs.
    """

    @staticmethod
    def forward(ctx, x, rows, cols, keep):
        n, c = x.shape
        g = x.index_select(1, cols)
        if keep is not None:
            g.masked_fill_(~keep, float("-inf"))
        r = rows.expand(n, -1)
        out = x.new_full((n, c), float("-inf")).scatter_reduce_(1, r, g, "amax", include_self=False)
        hit = g == out.index_select(1, rows)
        cand = torch.where(hit, cols.expand(n, -1), -1)
        arg = torch.full((n, c), -1, dtype=torch.long, device=x.device).scatter_reduce_(
            1, r, cand, "amax", include_self=True)
        # NaN inputs match nothing: send their gradient to the node itself
        arg = torch.where(arg >= 0, arg, torch.arange(c, device=x.device))
        ctx.save_for_backward(arg)
        ctx.mark_non_differentiable(arg)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (arg,) = ctx.saved_tensors
        grad = torch.zeros_like(grad_out).scatter_add_(1, arg, grad_out)
        return grad, None, None, None


def _mcm_sparse(x: Tensor, rows: Tensor, cols: Tensor, keep: Tensor | None = None) -> Tensor:
    if x.requires_grad and torch.is_grad_enabled():
        return _PairMax.apply(x, rows, cols, keep)
    g = x.index_select(1, cols)
    if keep is not None:
        g = g.masked_fill(~keep, float("-inf"))
    out = x.new_full(x.shape, float("-inf"))
    return out.scatter_reduce_(1, rows.expand(x.shape[0], -1), g, "amax", include_self=False)


def max_constraint(x: Tensor, desc_mask: Tensor) -> Tensor:
    """``MCM(x)_j = max_{k: desc_mask[j, k]} x_k`` over the last dimension (reference, dense).

    ``x`` ``(..., C)`` (probabilities or logits); ``desc_mask`` ``(C, C)`` bool,
    ``desc_mask[j, k]`` = k is j or a descendant of j (the diagonal is added if
    missing). One batched ``amax`` over ``(chunk, C, C)`` blocks. The
    :class:`MaxConstraint` module does the same with precomputed buffers and a
    sparse path for large C.
    """
    m = torch.as_tensor(desc_mask, device=x.device).bool() | torch.eye(x.shape[-1], dtype=torch.bool, device=x.device)
    if m.shape != (x.shape[-1], x.shape[-1]):
        raise ValueError(f"desc_mask must have shape ({x.shape[-1]}, {x.shape[-1]}), got {tuple(m.shape)}")
    flat, shape = _flat(x)
    return _mcm_dense(flat, m).reshape(shape)


def max_constraint_training(x: Tensor, targets: Tensor, desc_mask: Tensor) -> Tensor:
    """C-HMCNN's training output ``(1 - y) MCM(x) + y MCM(y x)`` (reference, dense).

    For probabilities ``x = p`` this is the formula as written. For any values it
    is computed as ``max_{k in D(j)} x_k`` for ``y_j = 0`` and ``max_{k in D(j),
    y_k = 1} x_k`` for ``y_j = 1``, which equals it for probabilities and is its
    logit-domain form for logits (sigmoid is increasing). ``targets`` ``(N, C)``
    broadcast against ``x`` ``(..., N, C)``.
    """
    c = x.shape[-1]
    m = torch.as_tensor(desc_mask, device=x.device).bool() | torch.eye(c, dtype=torch.bool, device=x.device)
    y = torch.as_tensor(targets, device=x.device) > 0.5
    y = y.expand(x.shape).reshape(-1, c)
    flat, shape = _flat(x)

    def keep(a, b):  # (chunk, C, C): pair (j, k) is kept unless y_j = 1 and y_k = 0
        yb = y[a:b]
        return ~yb[:, :, None] | yb[:, None, :]

    return _mcm_dense(flat, m, keep).reshape(shape)


class MaxConstraint(nn.Module):
    """The max-constraint module with its index buffers computed once.

    Built from a :class:`Hierarchy` or a ``(C, C)`` descendant-or-self mask.
    ``method``: ``"sparse"`` (gather + ``scatter_reduce`` over the ``nnz``
    (node, descendant-or-self) pairs), ``"dense"`` (masked ``amax`` over
    ``(N, C, C)`` in chunks) or ``"auto"`` (sparse when ``nnz < C^2 / 4``).

    :meth:`forward` is ``MCM(x)``; :meth:`training_output` is C-HMCNN's training
    output (see :func:`max_constraint_training`). Inputs ``(..., N, C)``.
    """

    def __init__(self, hierarchy_or_mask, *, method: MCMMethod = "auto"):
        super().__init__()
        if method not in ("auto", "dense", "sparse"):
            raise ValueError(f"method must be 'auto', 'dense' or 'sparse', got {method!r}")
        rows, cols = descendant_pairs(hierarchy_or_mask)
        c = hierarchy_or_mask.n if isinstance(hierarchy_or_mask, Hierarchy) else np.shape(hierarchy_or_mask)[0]
        self.n_nodes = int(c)
        self.nnz = int(rows.size)
        if method == "auto":
            method = "sparse" if self.nnz < c * c / 4 else "dense"
        self.method = method
        self.register_buffer("rows", torch.from_numpy(rows), persistent=False)
        self.register_buffer("cols", torch.from_numpy(cols), persistent=False)
        if method == "dense":
            m = torch.zeros(c, c, dtype=torch.bool)
            m[self.rows, self.cols] = True
            self.register_buffer("mask", m, persistent=False)
        else:
            self.mask = None

    def extra_repr(self) -> str:
        return f"n_nodes={self.n_nodes}, pairs={self.nnz}, method={self.method!r}"

    def _check(self, x: Tensor) -> None:
        if x.shape[-1] != self.n_nodes:
            raise ValueError(f"expected {self.n_nodes} nodes in the last dimension, got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        flat, shape = _flat(x)
        if self.method == "dense":
            return _mcm_dense(flat, self.mask).reshape(shape)
        return _mcm_sparse(flat, self.rows, self.cols).reshape(shape)

    def pair_mask(self, targets: Tensor) -> Tensor:
        """``(N, nnz)`` bool: which (node, descendant) pairs enter the training output's max.

        A pair (j, k) is dropped when ``y_j = 1`` and ``y_k = 0``. Depends on the
        labels only, so a trainer can compute it once per training set and pass it
        to :meth:`training_output` (``pairs=``) with each batch.
        """
        y = torch.as_tensor(targets)
        y = y > 0.5 if y.dtype != torch.bool else y
        y = y.to(self.cols.device)
        return y.index_select(1, self.cols) | ~y.index_select(1, self.rows)

    def training_output(self, x: Tensor, targets: Tensor, *, pairs: Tensor | None = None) -> Tensor:
        """``(1 - y) MCM(x) + y MCM(y x)`` in the form valid for logits (module docs).

        ``pairs``: the batch's :meth:`pair_mask`, if precomputed (sparse method).
        """
        self._check(x)
        y = torch.as_tensor(targets, device=x.device)
        if y.shape != x.shape[-2:]:
            raise ValueError(f"targets shape {tuple(y.shape)} != (N, C) of values {tuple(x.shape)}")
        flat, shape = _flat(x)
        reps = flat.shape[0] // y.shape[0]  # an ensemble (H, N, C): the same labels for every head
        if self.method == "dense" or pairs is None:
            y = y > 0.5 if y.dtype != torch.bool else y
            if reps > 1:
                y = y.repeat(reps, 1)
        if self.method == "dense":
            return _mcm_dense(flat, self.mask, lambda a, b: ~y[a:b, :, None] | y[a:b, None, :]).reshape(shape)
        if pairs is None:
            pairs = y.index_select(1, self.cols) | ~y.index_select(1, self.rows)
        elif reps > 1:
            pairs = pairs.repeat(reps, 1)
        if pairs.shape != (flat.shape[0], self.nnz):
            raise ValueError(f"pairs must have shape (N, {self.nnz}), got {tuple(pairs.shape)}")
        return _mcm_sparse(flat, self.rows, self.cols, pairs).reshape(shape)


# --------------------------------------------------------------------------
# Grouped softmax
# --------------------------------------------------------------------------
def group_log_softmax(z: Tensor, groups: Tensor, n_groups: int | None = None) -> Tensor:
    """Log-softmax of ``z`` ``(N, C)`` within groups of columns, ``groups`` ``(C,)`` int in ``[0, G)``.

    ``out[n, j] = z[n, j] - log sum_{k: g_k = g_j} exp z[n, k]``, vectorised with
    scatter ops (no loop over groups); stable (shifted by the group maximum).
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, C), got shape {tuple(z.shape)}")
    g = torch.as_tensor(groups, device=z.device, dtype=torch.long)
    if g.shape != (z.shape[1],):
        raise ValueError(f"groups must have shape ({z.shape[1]},), got {tuple(g.shape)}")
    n_groups = int(g.max()) + 1 if n_groups is None else int(n_groups)
    idx = g.expand(z.shape[0], -1)
    with torch.no_grad():  # the shift cancels out of the value and the gradient
        m = z.new_full((z.shape[0], n_groups), float("-inf")).scatter_reduce(1, idx, z, "amax", include_self=True)
        m = m.gather(1, idx)
    e = torch.exp(z - m)
    s = z.new_zeros((z.shape[0], n_groups)).scatter_add(1, idx, e)
    return z - m - torch.log(s.gather(1, idx))


# --------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------
def dropout_noise(x: Tensor, p: float) -> Tensor:
    """Dropout's multiplier for ``x`` (same shape): ``1[u < 1 - p] / (1 - p)`` with ``u`` uniform
    on [0, 1) from the global generator -- the distribution of ``F.dropout``'s mask, drawn about
    2.5x faster on CPU than its ``bernoulli_``. Every dropout of an MLP here draws its mask
    with this function, so a stacked step and the single model draw the same masks."""
    keep = 1.0 - p
    return (torch.rand_like(x) < keep).to(x.dtype).div_(keep)


def mlp_blocks(x: Tensor, layers, activation: str, dropout: float, training: bool) -> Tensor:
    """``x`` through each layer, then ``relu`` (or ``tanh``), then dropout when ``dropout > 0``
    (``x * dropout_noise(x, dropout)`` in training)."""
    act = torch.relu if activation == "relu" else torch.tanh
    for lin in layers:
        x = act(lin(x))
        if dropout > 0 and training:
            x = x * dropout_noise(x, dropout)
    return x


class MLP(nn.Module):
    """Feature extractor: ``n_hidden`` blocks ``Linear -> activation -> Dropout``.

    C-HMCNN's network with ``num_layers = 3`` is ``MLP(F, hidden, n_hidden=2)``
    followed by a head's output layer. ``n_hidden = 0`` is the identity
    (a linear model on the inputs).
    """

    def __init__(self, in_features: int, hidden: int = 500, n_hidden: int = 2, *, dropout: float = 0.7,
                 activation: Literal["relu", "tanh"] = "relu"):
        super().__init__()
        if n_hidden < 0 or hidden < 1 or in_features < 1:
            raise ValueError(f"need in_features >= 1, hidden >= 1, n_hidden >= 0; got {in_features}, {hidden}, {n_hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        self.in_features = in_features
        self.out_features = hidden if n_hidden else in_features
        self.dropout, self.activation = dropout, activation
        dims = [in_features] + [hidden] * n_hidden
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        return mlp_blocks(x, self.layers, self.activation, self.dropout, self.training)


class HMCModel(nn.Module):
    """``head(backbone(x))``; ``scores`` / ``predict`` / ``loss`` forward to the head."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def kind(self) -> str:
        return self.head.kind

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def scores(self, logits: Tensor) -> Tensor:
        return self.head.scores(logits)


# --------------------------------------------------------------------------
# Sigmoid heads
# --------------------------------------------------------------------------
class _SigmoidHead(nn.Module):
    kind = "sigmoid"

    def __init__(self, in_features: int, n_nodes: int, n_heads: int = 1):
        super().__init__()
        if n_heads < 1:
            raise ValueError(f"n_heads must be >= 1, got {n_heads}")
        self.in_features, self.n_nodes, self.n_heads = in_features, n_nodes, n_heads
        self.linear = nn.Linear(in_features, n_heads * n_nodes)

    def forward(self, x: Tensor) -> Tensor:
        """Raw logits ``(N, C)``, or ``(H, N, C)`` for ``n_heads = H > 1``."""
        _check_features(x, self.in_features)
        z = self.linear(x)
        if self.n_heads == 1:
            return z
        return z.view(x.shape[0], self.n_heads, self.n_nodes).transpose(0, 1)

    def _constrain(self, z: Tensor) -> Tensor:
        return z

    def constrained_logits(self, z: Tensor) -> Tensor:
        """Logits whose sigmoid is the prediction (identity here; MCM'd in :class:`MaxConstraintHead`)."""
        return self._constrain(z)

    def training_logits(self, z: Tensor, targets: Tensor) -> Tensor:
        """What the loss sees (identity here)."""
        return z

    def scores(self, z: Tensor) -> Tensor:
        """``(N, C)`` node probabilities (mean over heads of ``sigmoid(constrained_logits)``)."""
        p = torch.sigmoid(self._constrain(z))
        return p.mean(0) if z.dim() == 3 else p

    def predict(self, z: Tensor, threshold=0.5) -> Tensor:
        """Bool ``(N, C)``: ``scores >= threshold`` (scalar or ``(C,)``, e.g. PCDB thresholds)."""
        t = torch.as_tensor(threshold, dtype=torch.float64, device=z.device)
        return self.scores(z).double() >= t


class MultiLabelHead(_SigmoidHead):
    """Hierarchy-agnostic multi-label head: one sigmoid per node (train with BCE or any loss)."""

    def __init__(self, in_features: int, n_nodes: int, *, n_heads: int = 1):
        super().__init__(in_features, n_nodes, n_heads)


class MaxConstraintHead(_SigmoidHead):
    """C-HMCNN's output layer: sigmoids constrained by the max-constraint module.

    :meth:`scores` ``= sigmoid(MCM(z)) = MCM(sigmoid(z))``: a parent's score is
    at least each descendant's. :meth:`training_logits` is C-HMCNN's training
    output in logit form (module docs), to be fed to BCE (C-HMCNN) or any other
    loss on logits.
    """

    def __init__(self, in_features: int, hierarchy_or_mask, *, n_heads: int = 1, method: MCMMethod = "auto"):
        mcm = MaxConstraint(hierarchy_or_mask, method=method)
        super().__init__(in_features, mcm.n_nodes, n_heads)
        self.mcm = mcm

    def _constrain(self, z: Tensor) -> Tensor:
        return self.mcm(z)

    def training_logits(self, z: Tensor, targets: Tensor, *, pairs: Tensor | None = None) -> Tensor:
        return self.mcm.training_output(z, targets, pairs=pairs)


# --------------------------------------------------------------------------
# Softmax heads
# --------------------------------------------------------------------------
class _SoftmaxHead(nn.Module):
    kind = "softmax"

    def __init__(self, in_features: int, hierarchy: Hierarchy, n_outputs: int, level_weights=None):
        super().__init__()
        if not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"hierarchy must be a Hierarchy, got {type(hierarchy).__name__}")
        self.in_features, self.n_nodes = in_features, hierarchy.n
        self.n_levels = hierarchy.num_levels
        self.linear = nn.Linear(in_features, n_outputs)
        self.register_buffer("level", torch.as_tensor(hierarchy.depth, dtype=torch.long), persistent=False)
        self.register_buffer("level_weights", _level_weights(level_weights, self.n_levels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.in_features)
        return self.linear(x)

    def training_logits(self, z: Tensor, targets: Tensor) -> Tensor:
        return z

    def log_probs(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def scores(self, z: Tensor) -> Tensor:
        """``(N, C)`` node probabilities."""
        return torch.exp(self.log_probs(z))

    def _level_nll(self, logp: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
        """``mean_n sum_l w_l * -log sum_{j in level l, y_j} p_j`` (levels without a true node skipped).

        ``weight`` ``(C,)``: optional class weights; a level's term is multiplied
        by the largest weight among its true nodes.
        """
        yb = y > 0.5
        n = logp.shape[0]
        masked = logp.masked_fill(~yb, float("-inf"))
        idx = self.level.expand(n, -1)
        lvl = logp.new_full((n, self.n_levels), float("-inf")).scatter_reduce(
            1, idx, masked, "amax", include_self=True)
        has = torch.isfinite(lvl)
        # logsumexp of the true nodes per level, stable with the per-level max
        shift = torch.where(has, lvl, torch.zeros_like(lvl)).detach()
        e = torch.exp(masked - shift.gather(1, idx))
        s = logp.new_zeros((n, self.n_levels)).scatter_add(1, idx, e)
        lse = torch.log(torch.where(has, s, torch.ones_like(s))) + shift
        term = torch.where(has, -lse, torch.zeros_like(lse)) * self.level_weights
        if weight is not None:
            wl = logp.new_zeros((n, self.n_levels)).scatter_reduce(
                1, idx, torch.where(yb, weight.to(logp.dtype).expand(n, -1), torch.zeros_like(logp)), "amax",
                include_self=True)
            term = term * torch.where(has, wl, torch.ones_like(wl))
        return term.sum(1).mean()

    def loss(self, z: Tensor, targets: Tensor, *, class_weight: Tensor | None = None) -> Tensor:
        """Per-level negative log-likelihood, weighted by ``level_weights`` (default ones)."""
        y = _check_targets(targets, z.shape[0], self.n_nodes).to(z.device)
        return self._level_nll(self.log_probs(z), y, class_weight)

    def _per_level_argmax(self, scores: Tensor) -> Tensor:
        n = scores.shape[0]
        idx = self.level.expand(n, -1)
        best = scores.new_full((n, self.n_levels), float("-inf")).scatter_reduce(1, idx, scores, "amax", include_self=True)
        hit = scores == best.gather(1, idx)
        # one node per level: the first maximum (lowest id) among ties
        col = torch.arange(self.n_nodes, device=scores.device).expand(n, -1)
        first = torch.full((n, self.n_levels), self.n_nodes, device=scores.device, dtype=torch.long).scatter_reduce(
            1, idx, torch.where(hit, col, self.n_nodes), "amin", include_self=True)
        return col == first.gather(1, idx)

    def predict(self, z: Tensor) -> Tensor:
        """Bool ``(N, C)``: the most probable node of every level."""
        return self._per_level_argmax(self.log_probs(z))


class PerLevelHead(_SoftmaxHead):
    """One softmax per level (level = depth); loss summed over levels (``level_weights``).

    For hierarchies where each sample has exactly one label per level. A level
    holding a single node (a root) has probability 1 and costs nothing.
    """

    def __init__(self, in_features: int, hierarchy: Hierarchy, *, level_weights=None):
        super().__init__(in_features, hierarchy, hierarchy.n, level_weights)

    def log_probs(self, z: Tensor) -> Tensor:
        return group_log_softmax(z, self.level, self.n_levels)


class MarginalizationHead(_SoftmaxHead):
    """Bottom-up marginalisation: softmax over the leaves, ``p(node) = sum of its leaves' p``.

    ``forward`` gives ``(N, L)`` leaf logits; ``log_probs`` / ``scores`` give
    ``(N, C)`` node (log-)probabilities via the ``(L, C)`` leaf -> ancestor-or-self
    matrix (one matrix product). The loss sums the per-level negative
    log-likelihoods with ``level_weights``. In a tree p(parent) is the sum of its
    children's p; in a DAG a leaf's mass reaches every ancestor.
    """

    def __init__(self, in_features: int, hierarchy: Hierarchy, *, level_weights=None):
        leaves = np.asarray(hierarchy.leaves)
        super().__init__(in_features, hierarchy, len(leaves), level_weights)
        anc = hierarchy.ancestor_matrix(include_self=True)[leaves]  # (L, C)
        self.register_buffer("leaves", torch.as_tensor(leaves, dtype=torch.long), persistent=False)
        self.register_buffer("leaf_to_node", torch.as_tensor(anc, dtype=torch.get_default_dtype()), persistent=False)

    def log_probs(self, z: Tensor) -> Tensor:
        p = torch.softmax(z, dim=-1) @ self.leaf_to_node.to(z.dtype)
        return torch.log(p.clamp_min(torch.finfo(z.dtype).tiny))

    def scores(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1) @ self.leaf_to_node.to(z.dtype)


class HierarchicalSoftmaxHead(_SoftmaxHead):
    """A softmax per sibling group; ``log p(j) = sum over j's path of log p(node | parent)``.

    Needs a tree or forest (the roots form one sibling group). The path sums are
    one ``index_add`` over the (node, ancestor-or-self) pairs, so the leaf
    probabilities sum to 1. Loss: negative log-likelihood of the true path,
    ``-sum_j y_j log p(j | parent(j))`` (``level_weights`` weight the levels'
    conditionals). :meth:`predict` picks the most probable leaf and its ancestors.
    """

    def __init__(self, in_features: int, hierarchy: Hierarchy, *, level_weights=None):
        parent = _require_tree(hierarchy, type(self).__name__)
        super().__init__(in_features, hierarchy, hierarchy.n, level_weights)
        # sibling groups: the roots share group 0, children of node p form group p + 1
        self.register_buffer("group", torch.as_tensor(parent + 1, dtype=torch.long), persistent=False)
        self.register_buffer("parent", torch.as_tensor(parent, dtype=torch.long), persistent=False)
        rows, cols = descendant_pairs(hierarchy)  # (ancestor-or-self, node)
        self.register_buffer("pair_node", torch.as_tensor(cols), persistent=False)
        self.register_buffer("pair_anc", torch.as_tensor(rows), persistent=False)
        is_leaf = np.zeros(hierarchy.n, bool)
        is_leaf[np.asarray(hierarchy.leaves)] = True
        self.register_buffer("is_leaf", torch.as_tensor(is_leaf), persistent=False)
        anc = torch.zeros(hierarchy.n, hierarchy.n, dtype=torch.bool)
        anc[self.pair_node, self.pair_anc] = True
        self.register_buffer("anc_or_self", anc, persistent=False)

    def conditional_log_probs(self, z: Tensor) -> Tensor:
        """``(N, C)`` ``log p(j | parent(j))`` (softmax within each sibling group)."""
        return group_log_softmax(z, self.group, self.n_nodes + 1)

    def log_probs(self, z: Tensor) -> Tensor:
        cond = self.conditional_log_probs(z)
        return cond.new_zeros(cond.shape).index_add(1, self.pair_node, cond[:, self.pair_anc])

    def loss(self, z: Tensor, targets: Tensor, *, class_weight: Tensor | None = None) -> Tensor:
        y = _check_targets(targets, z.shape[0], self.n_nodes).to(device=z.device, dtype=z.dtype)
        w = self.level_weights.to(z.dtype)[self.level]
        if class_weight is not None:
            w = w * class_weight.to(z.dtype)
        return -(y * w * self.conditional_log_probs(z)).sum(1).mean()

    def predict(self, z: Tensor) -> Tensor:
        """Bool ``(N, C)``: the most probable leaf (joint probability) and its ancestors."""
        lp = self.log_probs(z).masked_fill(~self.is_leaf, float("-inf"))
        return self.anc_or_self[lp.argmax(1)]


class MaskedPerLevelHead(HierarchicalSoftmaxHead):
    """Masked per-level classifier (tree or forest).

    Training: the level-l softmax restricted to the children of the true parent
    (the siblings of the true node), summed over levels with ``level_weights`` --
    the sibling-group likelihood of :class:`HierarchicalSoftmaxHead`.
    Prediction (:meth:`predict`): top-down; level 0 takes the best root, each
    next level the best child of the node predicted above (one masked argmax per
    level, vectorised over samples); it stops at a leaf. ``scores``: path
    probabilities, as the hierarchical softmax.
    """

    def predict(self, z: Tensor) -> Tensor:
        n = z.shape[0]
        out = torch.zeros(n, self.n_nodes, dtype=torch.bool, device=z.device)
        cur = torch.full((n,), -1, dtype=torch.long, device=z.device)  # -1: "above the roots"
        alive = torch.ones(n, dtype=torch.bool, device=z.device)
        rows = torch.arange(n, device=z.device)
        for _ in range(self.n_levels):
            allowed = self.parent[None, :] == cur[:, None]  # children of the current node
            has = allowed.any(1) & alive
            if not bool(has.any()):
                break
            nxt = z.masked_fill(~allowed, float("-inf")).argmax(1)
            out[rows[has], nxt[has]] = True
            cur = torch.where(has, nxt, cur)
            alive = has
        return out


HEADS = {
    "mlp": MultiLabelHead,
    "mcm-mlp": MaxConstraintHead,
    "per-level": PerLevelHead,
    "marginal": MarginalizationHead,
    "masked-per-level": MaskedPerLevelHead,
    "hsoftmax": HierarchicalSoftmaxHead,
}


def build_head(name: str, in_features: int, hierarchy: Hierarchy, *, n_heads: int = 1, level_weights=None,
               mcm_method: MCMMethod = "auto") -> nn.Module:
    """A head by name: ``mlp`` (:class:`MultiLabelHead`), ``mcm-mlp`` (:class:`MaxConstraintHead`),
    ``per-level``, ``marginal``, ``masked-per-level``, ``hsoftmax``."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    if name == "mlp":
        return MultiLabelHead(in_features, hierarchy.n, n_heads=n_heads)
    if name == "mcm-mlp":
        return MaxConstraintHead(in_features, hierarchy, n_heads=n_heads, method=mcm_method)
    if n_heads != 1:
        raise ValueError(f"head {name!r} has a single output layer (n_heads=1), got n_heads={n_heads}")
    return HEADS[name](in_features, hierarchy, level_weights=level_weights)


# --------------------------------------------------------------------------
# Re-weighting and re-sampling
# --------------------------------------------------------------------------
def _labels(y, mask=None) -> np.ndarray:
    a = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if a.ndim != 2:
        raise ValueError(f"labels must be (N, C), got shape {a.shape}")
    a = a != 0
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (a.shape[1],):
            raise ValueError(f"mask must have shape ({a.shape[1]},), got {m.shape}")
        a = a & m
    return a


def label_frequencies(y) -> np.ndarray:
    """``(C,)`` int64: number of samples carrying each node."""
    return _labels(y).sum(0).astype(np.int64)


def inverse_frequency_weights(y, *, power: float = 1.0, mask=None) -> np.ndarray:
    """Per-class weights ``w_j ∝ (N / n_j)^power``, normalised to mean 1 over classes with ``n_j > 0``.

    ``power=1``: inverse frequency; ``0.5``: its square root; ``0``: ones.
    Classes with no sample (or outside ``mask``) get 1. Returns float64 ``(C,)``.
    """
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    a = _labels(y, mask)
    n = max(a.shape[0], 1)
    counts = a.sum(0).astype(np.float64)
    w = np.ones(a.shape[1])
    seen = counts > 0
    if seen.any():
        raw = (n / counts[seen]) ** power
        w[seen] = raw / raw.mean()
    return w


def sample_weights(y, *, power: float = 1.0, mask=None) -> np.ndarray:
    """Per-sample drawing probabilities ``(N,)`` for re-sampling, summing to 1.

    A sample's weight is that of its rarest label, ``max_{j in S_i} (1 / n_j)^power``
    (``power=1``: inverse frequency, ``0.5``: square root; with one label per
    level the rarest is the deepest). ``mask`` restricts the labels considered
    (e.g. the evaluated nodes: the root is carried by every sample); a sample
    without any gets the smallest weight of the others.
    """
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    a = _labels(y, mask)
    counts = a.sum(0).astype(np.float64)
    per_class = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0) ** power
    w = np.where(a, per_class[None, :], 0.0).max(1) if a.shape[1] else np.zeros(a.shape[0])
    none = ~a.any(1)
    if none.all():
        w = np.ones(a.shape[0])
    elif none.any():
        w[none] = w[~none].min()
    return w / w.sum()


def make_sampler(y, *, power: float = 1.0, mask=None, num_samples: int | None = None,
                 generator: torch.Generator | None = None) -> torch.utils.data.WeightedRandomSampler:
    """A ``WeightedRandomSampler`` drawing samples by :func:`sample_weights` (with replacement)."""
    w = sample_weights(y, power=power, mask=mask)
    return torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(w, dtype=torch.float64), num_samples or len(w), replacement=True, generator=generator)
