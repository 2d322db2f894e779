"""Seeded training and evaluation of HMC heads on an :class:`~conehier.data.hmc.HMCDataset`.

Protocol (:class:`HMCTrainer`, :func:`fit_hmc`)
----------------------------------------------
* ``epochs=None`` (default): train on the training split, evaluate the pooled
  AU(PRC) on the validation split every ``eval_every`` epochs and stop after
  ``patience`` evaluations without improvement (at most ``max_epochs``); the
  best epoch is kept. With ``retrain=True`` (C-HMCNN's protocol: pick the
  number of epochs on valid, retrain on train + valid) a fresh model (same
  seed) is then trained on train + valid for that many epochs; otherwise the
  best-epoch model is the final one.
* ``epochs=E``: no selection; train for E epochs on train + valid
  (``retrain=True``, as C-HMCNN's ``main.py`` with its published epoch counts)
  or on train only (``retrain=False``).

Data sets without a validation file (Diatoms, ImCLEF07A/D): with early stopping
``valid_fraction`` of train is held out (:meth:`HMCDataset.split_validation`,
split seed 0 for every run) and the final model is retrained on the whole
training file; with fixed epochs the whole training file is used.

Decision thresholds (``macro_f1``, ``micro_f1``, ``rare_recall``):
``threshold="pcdb"`` (default) tunes one F1-optimal threshold per node on the
validation scores of a model that did *not* train on them (the best-epoch model
of the selection phase, or the final model when ``retrain=False``); nodes
without a validation positive keep 0.5. ``"ofadb"`` tunes one global threshold
the same way; a number is used as is. When no such held-out scores exist
(fixed epochs with ``retrain=True``) the threshold is 0.5. The result says which
(``threshold_source``); ``macro_f1_05`` is always the macro F1 at 0.5.

Metrics (:func:`evaluate_hmc`), over the evaluated nodes (``eval_mask``):
``auprc`` pooled micro average precision (C-HMCNN's AU(PRC)), ``auprc_macro``
mean per-node AP (nodes with a test positive), ``auprc_frequent`` /
``auprc_rare`` pooled AP of the 20% most / least frequent nodes,
``macro_f1`` / ``micro_f1`` / ``macro_precision`` / ``macro_recall`` at the
thresholds above, ``rare_recall`` pooled recall on the 20% least frequent
nodes. Node frequencies always come from the training file's labels.

Losses: elementwise losses (``bce``, ``focal``, ``asl``, ``champ-hard``,
``champ-soft``) are averaged over the ``N x C_eval`` (sample, evaluated node)
cells, as C-HMCNN's ``BCELoss`` (so CHAMP with ``beta=0`` is exactly BCE);
``sigmoidf1`` is its batch-level macro loss; ``rare-node`` uses an ensemble of
``n_heads`` (default 2) output layers on the same backbone; softmax heads use
their own likelihood (``loss="nll"``). A max-constraint head feeds C-HMCNN's
training output to any of them. ``loss_options`` go to the loss's constructor.

Speed: the training split lives in two tensors; each epoch draws one
permutation (or a weighted draw with replacement for ``sampling``), gathers
the shuffled tensors once and slices batches from them (no DataLoader);
fused Adam where available; one CPU thread by default (fastest for tiny
batches). Hierarchy-derived index buffers are built once with the model.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..evaluation.functional import (
    apply_threshold,
    average_precision,
    average_precision_by_frequency,
    ofadb_threshold,
    pcdb_thresholds,
    precision_recall_f1,
    rare_node_recall,
)
from ..losses.multilabel import (
    AsymmetricLoss,
    FocalLoss,
    RareNodeLoss,
    SigmoidF1Loss,
    rare_node_loss,
    sigmoid_f1_loss,
)
from ..models.heads import HEADS, MLP, HMCModel, build_head, inverse_frequency_weights, sample_weights
from ..jsonutil import to_jsonable
from .config import ConfigBase

__all__ = [
    "CHMCNN_SETTINGS",
    "HMC_LOSSES",
    "HMC_MODELS",
    "HMCConfig",
    "HMCLoss",
    "HMCResult",
    "HMCTrainer",
    "build_model",
    "chmcnn_config",
    "evaluate_hmc",
    "fit_hmc",
    "make_loss",
    "predict_scores",
    "run_hmc",
    "summarize",
    "tune_thresholds",
]

HMC_MODELS: tuple[str, ...] = tuple(HEADS)
HMC_LOSSES: tuple[str, ...] = ("bce", "champ-hard", "champ-soft", "sigmoidf1", "rare-node", "focal", "asl", "nll")
_WEIGHTINGS = {None: None, "none": None, "inverse": 1.0, "sqrt": 0.5}
#: Largest (N x pairs) bool mask :class:`HMCLoss` precomputes for a max-constraint head.
PAIR_MASK_BYTES = 1 << 29

#: C-HMCNN's per-data-set settings (``main.py`` of github.com/EGiunchiglia/C-HMCNN):
#: hidden width, number of epochs (trained on train + valid) and learning rate.
#: Everything else is shared: 3 layers, dropout 0.7, ReLU, Adam, weight decay 1e-5, batch 4.
CHMCNN_SETTINGS: dict[str, dict] = {
    "cellcycle_FUN": {"hidden": 500, "epochs": 106, "lr": 1e-4},
    "derisi_FUN": {"hidden": 500, "epochs": 67, "lr": 1e-4},
    "eisen_FUN": {"hidden": 500, "epochs": 110, "lr": 1e-4},
    "expr_FUN": {"hidden": 1250, "epochs": 20, "lr": 1e-4},
    "gasch1_FUN": {"hidden": 1000, "epochs": 42, "lr": 1e-4},
    "gasch2_FUN": {"hidden": 500, "epochs": 123, "lr": 1e-4},
    "seq_FUN": {"hidden": 2000, "epochs": 13, "lr": 1e-4},
    "spo_FUN": {"hidden": 250, "epochs": 115, "lr": 1e-4},
    "cellcycle_GO": {"hidden": 1000, "epochs": 62, "lr": 1e-4},
    "derisi_GO": {"hidden": 500, "epochs": 91, "lr": 1e-4},
    "eisen_GO": {"hidden": 500, "epochs": 123, "lr": 1e-4},
    "expr_GO": {"hidden": 4000, "epochs": 70, "lr": 1e-4},
    "gasch1_GO": {"hidden": 500, "epochs": 122, "lr": 1e-4},
    "gasch2_GO": {"hidden": 500, "epochs": 177, "lr": 1e-4},
    "seq_GO": {"hidden": 9000, "epochs": 45, "lr": 1e-4},
    "spo_GO": {"hidden": 500, "epochs": 103, "lr": 1e-4},
    "Diatoms": {"hidden": 2000, "epochs": 474, "lr": 1e-5},
    "ImCLEF07A": {"hidden": 1000, "epochs": 592, "lr": 1e-5},
    "ImCLEF07D": {"hidden": 1000, "epochs": 588, "lr": 1e-5},
}


# --------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------
@dataclass
class HMCConfig(ConfigBase):
    """Everything one HMC training run depends on (defaults: C-HMCNN's cellcycle_FUN settings).

    ``model``: a head of :data:`~conehier.models.heads.HEADS` on an MLP with
    ``layers - 1`` hidden layers of width ``hidden`` (C-HMCNN's ``num_layers``).
    ``loss``: one of :data:`HMC_LOSSES` (``None``: ``bce`` for sigmoid heads,
    ``nll`` for softmax heads). ``epochs``: fixed epochs, or ``None`` for early
    stopping (module docs). ``class_weight`` / ``sampling``: ``"inverse"`` or
    ``"sqrt"`` frequency re-weighting (positive terms) / re-sampling.
    ``n_heads``: output layers (``None``: 2 for ``rare-node``, else 1).
    ``threads``: torch CPU threads during the run (``None``: leave as is).
    """

    model: str = "mcm-mlp"
    loss: str | None = "bce"
    hidden: int = 500
    layers: int = 3
    dropout: float = 0.7
    activation: str = "relu"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 4
    epochs: int | None = None
    max_epochs: int = 200
    patience: int = 20
    eval_every: int = 1
    retrain: bool = True
    threshold: str | float = "pcdb"
    n_heads: int | None = None
    class_weight: str | None = None
    sampling: str | None = None
    loss_options: dict = field(default_factory=dict)
    level_weights: list | None = None
    valid_fraction: float = 0.2
    mcm_method: str = "auto"
    seed: int = 0
    threads: int | None = 1
    device: str = "cpu"

    def __post_init__(self):
        if self.model not in HEADS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(HEADS)}")
        softmax = self.model not in ("mlp", "mcm-mlp")
        if self.loss is None:
            self.loss = "nll" if softmax else "bce"
        if self.loss not in HMC_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(HMC_LOSSES)}")
        if softmax and self.loss != "nll":
            raise ValueError(f"model {self.model!r} is a softmax head trained by its own likelihood: use loss 'nll'")
        if not softmax and self.loss == "nll":
            raise ValueError(f"loss 'nll' is for softmax heads; model {self.model!r} needs a multi-label loss")
        for name in ("class_weight", "sampling"):
            if getattr(self, name) not in _WEIGHTINGS:
                raise ValueError(f"{name} must be None, 'inverse' or 'sqrt', got {getattr(self, name)!r}")
        if self.class_weight not in (None, "none") and self.loss in ("sigmoidf1", "rare-node"):
            raise ValueError(f"class_weight does not apply to loss {self.loss!r} (batch-level F1 / its own node weights)")
        if isinstance(self.threshold, str) and self.threshold not in ("pcdb", "ofadb"):
            try:
                self.threshold = float(self.threshold)
            except ValueError:
                raise ValueError(f"threshold must be 'pcdb', 'ofadb' or a number, got {self.threshold!r}") from None
        checks = [
            (self.hidden >= 1, "hidden must be >= 1"),
            (self.layers >= 1, "layers must be >= 1"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs is None or self.epochs >= 1, "epochs must be >= 1 (or None for early stopping)"),
            (self.max_epochs >= 1 and self.patience >= 1 and self.eval_every >= 1,
             "max_epochs, patience and eval_every must be >= 1"),
            (0 < self.valid_fraction < 1, "valid_fraction must be in (0, 1)"),
            (self.n_heads is None or self.n_heads >= 1, "n_heads must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def heads(self) -> int:
        return self.n_heads if self.n_heads is not None else (2 if self.loss == "rare-node" else 1)


def chmcnn_config(dataset: str, *, published_epochs: bool = False, **overrides) -> HMCConfig:
    """:class:`HMCConfig` with C-HMCNN's settings for ``dataset`` (hidden width, lr; with
    ``published_epochs`` also its epoch count, trained on train + valid).

    Data sets C-HMCNN did not use (church, pheno) get the defaults (hidden 500,
    lr 1e-4); asking for their published epochs raises ``LookupError``.
    """
    s = CHMCNN_SETTINGS.get(_canonical_name(dataset))
    base: dict = {}
    if s is not None:
        base.update(hidden=s["hidden"], lr=s["lr"])
    if published_epochs:
        if s is None:
            raise LookupError(f"C-HMCNN published no epoch count for {dataset!r}; known: {', '.join(CHMCNN_SETTINGS)}")
        base.update(epochs=s["epochs"], retrain=True)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return HMCConfig(**base)


def _canonical_name(name: str) -> str:
    n = name[4:] if name.lower().startswith("hmc:") else name
    return {k.lower(): k for k in CHMCNN_SETTINGS}.get(n.lower(), n)


@dataclass
class HMCResult:
    """Outcome of one run. ``history``: per evaluated epoch of the selection phase
    (``epoch``, ``loss``, ``valid_auprc``) or per epoch of a fixed-epoch run (``loss``).
    ``stack_models``: how many models were trained together in one stack
    (:mod:`~conehier.training.hmc_stacked`; timings are then the stack's divided by it)."""

    dataset: str
    config: dict
    metrics: dict
    best_epoch: int
    epochs_trained: int
    final_train: str
    threshold_source: str
    seconds_per_epoch: float
    samples_per_second: float
    wall_seconds: float
    cpu_seconds_per_epoch: float = float("nan")
    history: list = field(default_factory=list)
    stack_models: int = 1
    test_scores: np.ndarray | None = field(default=None, repr=False)
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("test_scores", "model")}
        return to_jsonable(d)


# --------------------------------------------------------------------------
# Model and loss
# --------------------------------------------------------------------------
def build_model(config: HMCConfig, n_features: int, hierarchy) -> HMCModel:
    """MLP backbone (``layers - 1`` hidden layers) + the configured head."""
    n_hidden = config.layers - 1
    backbone = MLP(n_features, config.hidden, n_hidden, dropout=config.dropout, activation=config.activation)
    head = build_head(config.model, backbone.out_features, hierarchy, n_heads=config.heads,
                      level_weights=config.level_weights, mcm_method=config.mcm_method)
    return HMCModel(backbone, head)


def _column_selector(mask: np.ndarray):
    """A slice when the evaluated columns are contiguous (a view, no copy), else an index tensor."""
    idx = np.flatnonzero(mask)
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return torch.as_tensor(idx, dtype=torch.long)


class HMCLoss:
    """``loss(logits, targets, *extras) -> scalar`` for a model's head and ``config.loss``.

    ``targets`` is the float ``(N, C)`` label batch; ``extras`` are per-sample
    tensors from :meth:`prepare` (sliced with the batch). Sigmoid heads: the
    head's training logits (C-HMCNN's training output for a max-constraint head),
    restricted to the evaluated columns, go to the configured loss (module docs);
    softmax heads use their likelihood over all columns.

    CHAMP's severities depend on the labels only, so :meth:`prepare` computes
    them once per training set (with :func:`~conehier.losses.multilabel.champ_severity`)
    as the per-cell weights ``1 + s`` of the negative terms, and the step is one
    weighted BCE: the same value as :class:`~conehier.losses.multilabel.CHAMPLoss`
    with ``reduction="mean"``.
    """

    def __init__(self, config: HMCConfig, model: HMCModel, hierarchy, eval_mask: np.ndarray, y_train: np.ndarray,
                 device: torch.device | str = "cpu"):
        self.device = device = torch.device(device)
        self.config, self.head = config, model.head
        self.name = config.loss
        self._extras: list[str] = []  # names of the tensors prepare() returned, in order
        opts = dict(config.loss_options or {})
        power = _WEIGHTINGS[config.class_weight]
        self.softmax = self.head.kind == "softmax"
        m = np.asarray(eval_mask, bool)
        self.cw = None
        if self.softmax:
            if power is not None:
                self.cw = torch.as_tensor(inverse_frequency_weights(y_train, power=power), dtype=torch.float32,
                                          device=device)
            return
        sel = _column_selector(m)
        self.sel = sel.to(device) if isinstance(sel, Tensor) else sel
        self.eval_mask = m
        y_tr = np.asarray(y_train)[:, m]
        if power is not None:
            self.cw = torch.as_tensor(inverse_frequency_weights(y_tr, power=power), dtype=torch.float32, device=device)
        self.opts = opts
        self.mod = None
        if self.name in ("champ-hard", "champ-soft"):
            self.dist = hierarchy.tree_distance_matrix()[np.ix_(m, m)]
            unknown = set(opts) - {"beta", "scaling", "dist_max"}
            if unknown:
                raise ValueError(f"unknown CHAMP option(s) {sorted(unknown)}; use beta, scaling, dist_max")
        elif self.name == "focal":
            self.mod = FocalLoss(reduction="none", **opts).to(device)
        elif self.name == "asl":
            self.mod = AsymmetricLoss(reduction="none", **opts).to(device)
        elif self.name == "sigmoidf1":
            self.mod = SigmoidF1Loss(**opts).to(device)
        elif self.name == "rare-node":
            self.mod = RareNodeLoss.from_labels(y_tr, **opts).to(device)

    def prepare(self, Y: np.ndarray) -> list[Tensor]:
        """Per-sample tensors for the ``(N, C)`` labels of a training set, sliced with each batch.

        For a max-constraint head the ``(N, nnz)`` pair mask of its training output
        (when it takes at most ``PAIR_MASK_BYTES``); for CHAMP the ``(N, C_eval)``
        weights ``1 + s`` of the negative terms.
        """
        self._extras = []
        if self.softmax:
            return []
        out = []
        mcm = getattr(self.head, "mcm", None)
        if mcm is not None and mcm.method == "sparse" and len(Y) * mcm.nnz <= PAIR_MASK_BYTES:
            out.append(mcm.pair_mask(torch.as_tensor(np.asarray(Y) != 0)).to(self.device))
            self._extras.append("pairs")
        if self.name in ("champ-hard", "champ-soft"):
            out.append(self._champ_weights(Y))
            self._extras.append("champ")
        return out

    def _champ_weights(self, Y: np.ndarray) -> Tensor:
        from ..losses.multilabel import champ_severity

        ye = torch.as_tensor(np.asarray(Y)[:, self.eval_mask], dtype=torch.float32)
        sev = torch.cat([
            champ_severity(ye[s:s + 4096], torch.as_tensor(self.dist, dtype=torch.float32),
                           soft=self.name == "champ-soft", **self.opts)
            for s in range(0, ye.shape[0], 4096)
        ]) if ye.shape[0] else ye
        w = 1.0 + sev * (1.0 - ye)
        return w.to(self.device)

    def _elementwise(self, z: Tensor, y: Tensor, extras, dims=None) -> Tensor:
        """The configured loss of one batch: a scalar (``dims=None``), or averaged over
        ``dims`` only (the per-model losses of a stack, see :meth:`per_model`)."""
        def reduce(fn, **kw):  # fn(..., reduction=...) -> mean over everything or over dims
            return fn(reduction="mean", **kw) if dims is None else fn(reduction="none", **kw).mean(dim=dims)

        if self.name == "bce":
            return reduce(lambda **kw: F.binary_cross_entropy_with_logits(z, y, pos_weight=self.cw,
                                                                          **{**self.opts, **kw}))
        if self.name in ("champ-hard", "champ-soft"):
            w = extras["champ"] if "champ" in extras else self._champ_weights_for(y)
            if self.cw is not None:
                w = w * torch.where(y > 0.5, self.cw, torch.ones_like(self.cw))
            return reduce(lambda **kw: F.binary_cross_entropy_with_logits(z, y, weight=w, **kw))
        if self.name == "sigmoidf1":
            if dims is None:
                return self.mod(z, y)
            # batch-level: one soft F1 per (model, label) over that model's batch
            return sigmoid_f1_loss(z, y, beta=self.mod.beta, eta=self.mod.eta, reduction="none").mean(dim=-1)
        loss = self.mod(z, y)
        if self.cw is not None:
            loss = loss * torch.where(y > 0.5, self.cw, torch.ones_like(self.cw))
        return loss.mean() if dims is None else loss.mean(dim=dims)

    def _champ_weights_for(self, y: Tensor) -> Tensor:
        """CHAMP weights of a batch whose weights were not prepared (``y`` ``(..., N, C_eval)``)."""
        from ..losses.multilabel import champ_severity

        flat = y.reshape(-1, y.shape[-1])
        sev = champ_severity(flat, torch.as_tensor(self.dist, dtype=y.dtype, device=y.device),
                             soft=self.name == "champ-soft", **self.opts)
        return (1.0 + sev * (1.0 - flat)).reshape(y.shape)

    def __call__(self, z: Tensor, y: Tensor, *extras: Tensor) -> Tensor:
        if self.softmax:
            return self.head.loss(z, y, class_weight=self.cw)
        named = dict(zip(self._extras, extras)) if extras else {}
        if "pairs" in named:
            t = self.head.training_logits(z, y, pairs=named["pairs"])[..., self.sel]
        else:
            t = self.head.training_logits(z, y)[..., self.sel]
        extras = named
        ye = y[:, self.sel]
        if self.name == "rare-node":
            return self.mod(t, ye)
        if t.dim() == 3:  # an ensemble of output layers: mean of the per-head losses
            return torch.stack([self._elementwise(t[h], ye, extras) for h in range(t.shape[0])]).mean()
        return self._elementwise(t, ye, extras)

    def per_model(self, z: Tensor, y: Tensor, *extras: Tensor) -> Tensor:
        """``(M,)`` losses of a stack of M models of this configuration, each on its own batch.

        ``z``: raw head logits ``(M, B, C)``, or ``(M, H, B, C)`` for H output heads;
        ``y``: ``(M, B, C)`` float labels (model m's batch); ``extras``: the
        :meth:`prepare` tensors gathered with the same ``(M, B)`` sample indices.
        Entry m equals ``self(z[m], y[m], *(e[m] for e in extras))`` (the same
        math, batched: the training output is one flattened max-constraint call,
        batch statistics -- sigmoidF1's counts, rare-node's ensemble uncertainty --
        stay per model). Sigmoid heads only.
        """
        if self.softmax:
            raise ValueError("per_model is for sigmoid heads; softmax heads are not stacked")
        if y.dim() != 3 or z.dim() not in (3, 4) or z.shape[0] != y.shape[0] or z.shape[-2:] != y.shape[-2:]:
            raise ValueError(f"per_model needs z (M, B, C) or (M, H, B, C) and y (M, B, C); "
                             f"got {tuple(z.shape)} and {tuple(y.shape)}")
        named = dict(zip(self._extras, extras)) if extras else {}
        m, b, c = y.shape
        h = z.shape[1] if z.dim() == 4 else 1
        z4 = z.reshape(m, h, b, c)

        def per_head(t):  # (M, B, ...) -> (M, H, B, ...) -> flat rows
            return t[:, None].expand(m, h, *t.shape[1:]).reshape(m * h * b, -1)

        kw = {"pairs": per_head(named["pairs"])} if "pairs" in named else {}
        t = self.head.training_logits(z4.reshape(-1, c), per_head(y), **kw).reshape(m, h, b, c)[..., self.sel]
        ye = y[..., self.sel]
        if self.name == "rare-node":
            mod = self.mod
            return rare_node_loss(t, ye, mod.node_weight, k=mod.k, omega_f=mod.omega_f, uncertainty=mod.uncertainty,
                                  weight_terms=mod.weight_terms, detach_uncertainty=mod.detach_uncertainty,
                                  reduction="none").mean(dim=(-2, -1))
        ex = {k: v[:, None] for k, v in named.items() if k == "champ"}  # (M, 1, B, C_eval): broadcast over heads
        return self._elementwise(t, ye[:, None].expand_as(t), ex, dims=(-2, -1)).mean(dim=1)


def make_loss(config: HMCConfig, model: HMCModel, hierarchy, eval_mask: np.ndarray, y_train: np.ndarray,
              device: torch.device | str = "cpu") -> HMCLoss:
    """The :class:`HMCLoss` of ``config`` for ``model``, trained on labels ``y_train``."""
    return HMCLoss(config, model, hierarchy, eval_mask, y_train, device)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
@torch.no_grad()
def predict_scores(model: HMCModel, X, *, batch_size: int = 4096, device=None) -> np.ndarray:
    """``(N, C)`` float64 node scores of ``model`` (eval mode) on features ``X``."""
    model.eval()
    dev = device or next(model.parameters()).device
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X, dtype=torch.float32)
    out = []
    for s in range(0, X.shape[0], batch_size):
        out.append(model.scores(model(X[s:s + batch_size].to(dev))).double().cpu())
    if not out:
        return np.zeros((0, model.head.n_nodes))
    return torch.cat(out).numpy()


def tune_thresholds(y_valid, scores_valid, eval_mask, method: str = "pcdb"):
    """Thresholds tuned for F1 on validation scores.

    ``"pcdb"``: ``(C,)`` per-node F1-optimal thresholds (0.5 for nodes without a
    validation positive and for non-evaluated nodes); ``"ofadb"``: one global
    micro-F1-optimal threshold over the evaluated nodes.
    """
    m = np.asarray(eval_mask, bool)
    if method == "ofadb":
        return float(ofadb_threshold(y_valid, scores_valid, evaluate=m))
    if method != "pcdb":
        raise ValueError(f"method must be 'pcdb' or 'ofadb', got {method!r}")
    t = np.asarray(pcdb_thresholds(y_valid, scores_valid), dtype=np.float64)
    t = np.where(np.isfinite(t) & m, t, 0.5)
    return t


def evaluate_hmc(y_true, scores, eval_mask, train_labels, *, threshold=0.5, fraction: float = 0.2) -> dict:
    """HMC metrics of ``scores`` against ``y_true`` over the evaluated nodes (module docs)."""
    m = np.asarray(eval_mask, bool)
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    fr = average_precision_by_frequency(y, s, train_labels, fraction=fraction, evaluate=m)
    pred = apply_threshold(s, threshold)
    mp, mr, mf = precision_recall_f1(y, pred, average="macro", evaluate=m)
    _, _, uf = precision_recall_f1(y, pred, average="micro", evaluate=m)
    _, _, f05 = precision_recall_f1(y, s >= 0.5, average="macro", evaluate=m)
    return {
        "auprc": average_precision(y, s, average="micro", evaluate=m),
        "auprc_macro": average_precision(y, s, average="macro", evaluate=m),
        "auprc_frequent": fr["frequent"],
        "auprc_rare": fr["rare"],
        "macro_f1": mf,
        "macro_precision": mp,
        "macro_recall": mr,
        "micro_f1": float(uf),
        "macro_f1_05": f05,
        "rare_recall": rare_node_recall(y, pred, train_labels, fraction=fraction, evaluate=m),
    }


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------
@contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def _seeded(seed: int, device: torch.device):
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _make_optimizer(model: nn.Module, config: HMCConfig, device: torch.device) -> torch.optim.Optimizer:
    kw = {"lr": config.lr, "weight_decay": config.weight_decay}
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # fused Adam not available for this device / version
        return torch.optim.Adam(model.parameters(), **kw)


def _training_parts(ds, cfg: HMCConfig):
    """The splits one run trains on: ``(ds, has_valid, train_part, final_parts, final_name)``.

    With early stopping (``epochs=None``) and no validation file, ``ds`` gets a seeded
    validation split of ``cfg.valid_fraction``. ``train_part`` is ``(X, Y)`` of the
    selection phase; ``final_parts`` the ``(X, Y)`` parts of the final training set
    (train + valid with ``retrain``, else train), named ``final_name``.
    """
    full = ds
    if ds.X_valid is None and cfg.epochs is None:
        ds = ds.split_validation(cfg.valid_fraction, seed=0)
    train_part = (ds.X_train, ds.Y_train)
    if cfg.retrain:  # final training set: everything but test
        final_parts = [(full.X_train, full.Y_train)]
        if full.X_valid is not None:
            final_parts.append((full.X_valid, full.Y_valid))
    else:
        final_parts = [train_part]
    final_name = "train+valid" if cfg.retrain and full.X_valid is not None else "train"
    return ds, ds.X_valid is not None, train_part, final_parts, final_name


def _as_tensors(*parts, device) -> tuple[Tensor, Tensor]:
    """Concatenated ``(X, Y)`` float32 tensors on ``device`` of ``(X, Y)`` numpy parts."""
    X = torch.as_tensor(np.concatenate([p[0] for p in parts]), dtype=torch.float32, device=device)
    Y = torch.as_tensor(np.concatenate([p[1] for p in parts]), dtype=torch.float32, device=device)
    return X, Y


class HMCTrainer:
    """Seeded trainer for one :class:`HMCConfig` (module docs for the protocol).

    ``fit(dataset)`` returns an :class:`HMCResult`; the trained model is
    ``result.model`` and the fitted state is kept in ``model_``, ``thresholds_``.
    ``log``: a callable receiving one line of progress text per evaluation
    (``None``: silent).
    """

    def __init__(self, config: HMCConfig | None = None, *, log: Callable[[str], None] | None = None):
        self.config = config or HMCConfig()
        self.log = log

    # ------------------------------------------------------------ internals
    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)

    def _new_model(self, ds, device):
        cfg = self.config
        model = build_model(cfg, ds.n_features, ds.hierarchy).to(device)
        opt = _make_optimizer(model, cfg, device)
        return model, opt

    def _train(self, model, opt, loss_fn, X: Tensor, Y: Tensor, epochs: int, gen: torch.Generator,
               draw_w: Tensor | None, on_epoch: Callable[[int, float], bool] | None = None):
        """Run up to ``epochs`` epochs; ``on_epoch(epoch, mean_loss) -> stop?``.

        Returns (epochs run, wall seconds, CPU seconds) of the training loops (evaluation excluded).
        """
        n, bs = X.shape[0], self.config.batch_size
        extras = loss_fn.prepare(Y.cpu().numpy()) if hasattr(loss_fn, "prepare") else []
        seconds, cpu, done = 0.0, 0.0, 0
        for epoch in range(1, epochs + 1):
            model.train()
            t0, c0 = time.perf_counter(), time.process_time()
            if draw_w is None:
                perm = torch.randperm(n, generator=gen)
            else:
                perm = torch.multinomial(draw_w, n, replacement=True, generator=gen)
            perm = perm.to(X.device)
            Xs, Ys = X.index_select(0, perm), Y.index_select(0, perm)
            Es = [e.index_select(0, perm) for e in extras]
            total = torch.zeros((), device=X.device)
            for i in range(0, n, bs):
                loss = loss_fn(model(Xs[i:i + bs]), Ys[i:i + bs], *(e[i:i + bs] for e in Es))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
            mean_loss = float(total) / math.ceil(n / bs)
            seconds += time.perf_counter() - t0
            cpu += time.process_time() - c0
            done = epoch
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"training loss became {mean_loss} at epoch {epoch}")
            if on_epoch is not None and on_epoch(epoch, mean_loss):
                break
        return done, seconds, cpu

    # ---------------------------------------------------------------- fit
    def fit(self, dataset) -> HMCResult:
        cfg = self.config
        device = torch.device(cfg.device)
        t_start = time.perf_counter()
        with _threads(cfg.threads):
            result = self._fit(dataset, device)
        result.wall_seconds = time.perf_counter() - t_start
        return result

    def _fit(self, ds, device) -> HMCResult:
        cfg = self.config
        select = cfg.epochs is None
        full = ds
        ds, has_valid, train_part, final_parts, final_name = _training_parts(ds, cfg)
        tensors = partial(_as_tensors, device=device)
        y_freq = full.Y_train  # node frequencies: the training file

        history: list[dict] = []
        thresholds, threshold_source = (cfg.threshold, f"fixed {cfg.threshold:g}") if not isinstance(
            cfg.threshold, str) else (0.5, "0.5 (no held-out validation scores)")
        best_epoch, sel_seconds, sel_cpu = 0, 0.0, 0.0

        def draw_weights(Y_np):
            power = _WEIGHTINGS[cfg.sampling]
            if power is None:
                return None
            return torch.as_tensor(sample_weights(Y_np, power=power, mask=ds.eval_mask), dtype=torch.float64)

        def tuned(model):
            s_val = predict_scores(model, ds.X_valid)
            return tune_thresholds(ds.Y_valid, s_val, ds.eval_mask, cfg.threshold), f"{cfg.threshold}(valid)"

        # ---- phase A: select the number of epochs on valid
        if select:
            if not has_valid:
                raise ValueError(f"{ds.name}: early stopping needs a validation split")
            with _seeded(cfg.seed, device):
                model, opt = self._new_model(ds, device)
                loss_fn = make_loss(cfg, model, ds.hierarchy, ds.eval_mask, ds.Y_train, device)
                X, Y = tensors(train_part)
                gen = torch.Generator().manual_seed(cfg.seed)
                best = {"auprc": -1.0, "epoch": 0, "state": None, "since": 0}

                def on_epoch(epoch, mean_loss):
                    row = {"epoch": epoch, "loss": mean_loss}
                    if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
                        s_val = predict_scores(model, ds.X_valid)
                        ap = average_precision(ds.Y_valid, s_val, evaluate=ds.eval_mask)
                        row["valid_auprc"] = ap
                        if ap > best["auprc"]:
                            best.update(auprc=ap, epoch=epoch, since=0,
                                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
                        else:
                            best["since"] += 1
                        self._say(f"epoch {epoch:4d}  loss {mean_loss:.5f}  valid AU(PRC) {ap:.4f}"
                                  f"  (best {best['auprc']:.4f} @ {best['epoch']})")
                    history.append(row)
                    return best["since"] >= cfg.patience

                _, sel_seconds, sel_cpu = self._train(model, opt, loss_fn, X, Y, cfg.max_epochs, gen,
                                                      draw_weights(ds.Y_train), on_epoch)
                best_epoch = best["epoch"]
                model.load_state_dict(best["state"])
                if isinstance(cfg.threshold, str):
                    thresholds, threshold_source = tuned(model)
            n_final_epochs = best_epoch
        else:
            n_final_epochs = cfg.epochs
            best_epoch = cfg.epochs

        # ---- phase B: the final model
        if select and not cfg.retrain:
            final_model, n_final = model, len(ds.X_train)
            epochs_trained = len(history)
            sec_per_epoch = sel_seconds / max(1, epochs_trained)
            cpu_per_epoch = sel_cpu / max(1, epochs_trained)
        else:
            with _seeded(cfg.seed, device):
                final_model, opt = self._new_model(ds, device)
                final_y = np.concatenate([p[1] for p in final_parts])
                loss_fn = make_loss(cfg, final_model, ds.hierarchy, ds.eval_mask, final_y, device)
                X, Y = tensors(*final_parts)
                gen = torch.Generator().manual_seed(cfg.seed)

                def log_epoch(epoch, mean_loss):
                    if not select:
                        history.append({"epoch": epoch, "loss": mean_loss})
                    if epoch % max(1, cfg.eval_every * 10) == 0 or epoch == n_final_epochs:
                        self._say(f"[{final_name}] epoch {epoch:4d}/{n_final_epochs}  loss {mean_loss:.5f}")
                    return False

                epochs_trained, seconds, cpu = self._train(final_model, opt, loss_fn, X, Y, n_final_epochs, gen,
                                                           draw_weights(final_y), log_epoch)
            n_final = X.shape[0]
            sec_per_epoch = seconds / max(1, epochs_trained)
            cpu_per_epoch = cpu / max(1, epochs_trained)
            if not select and not cfg.retrain and has_valid and isinstance(cfg.threshold, str):
                thresholds, threshold_source = tuned(final_model)

        test_scores = predict_scores(final_model, ds.X_test)
        metrics = evaluate_hmc(ds.Y_test, test_scores, ds.eval_mask, y_freq, threshold=thresholds)
        self.model_, self.thresholds_ = final_model, thresholds
        return HMCResult(
            dataset=ds.name,
            config=cfg.to_dict(),
            metrics=metrics,
            best_epoch=int(best_epoch),
            epochs_trained=int(epochs_trained),
            final_train=final_name,
            threshold_source=threshold_source,
            seconds_per_epoch=sec_per_epoch,
            samples_per_second=n_final / sec_per_epoch if sec_per_epoch > 0 else float("nan"),
            wall_seconds=0.0,
            cpu_seconds_per_epoch=cpu_per_epoch,
            history=history,
            test_scores=test_scores,
            model=final_model,
        )


def fit_hmc(dataset, config: HMCConfig | None = None, *, log=None, **overrides) -> HMCResult:
    """Train and evaluate one seeded run: ``HMCTrainer(config).fit(dataset)``.

    ``dataset``: an :class:`~conehier.data.hmc.HMCDataset`; ``overrides``
    replace fields of ``config``.
    """
    cfg = config or HMCConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return HMCTrainer(cfg, log=log).fit(dataset)


def summarize(results: Sequence[HMCResult]) -> dict:
    """Means over runs (seeds) of every metric, with ``<metric>_std`` (sample std, ddof=1; 0 for one run)."""
    if not results:
        raise ValueError("no results to summarise")
    keys = list(results[0].metrics)
    metrics: dict = {}
    for k in keys:
        v = np.array([r.metrics[k] for r in results], dtype=np.float64)
        metrics[k] = float(np.mean(v))
        metrics[f"{k}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    cfg = dict(results[0].config)
    cfg.pop("seed", None)
    return to_jsonable({
        "dataset": results[0].dataset,
        "config": cfg,
        "seeds": [r.config["seed"] for r in results],
        "metrics": metrics,
        "epochs": [r.epochs_trained for r in results],
        "best_epochs": [r.best_epoch for r in results],
        "seconds_per_epoch": float(np.mean([r.seconds_per_epoch for r in results])),
        "samples_per_second": float(np.mean([r.samples_per_second for r in results])),
        "cpu_seconds_per_epoch": float(np.mean([r.cpu_seconds_per_epoch for r in results])),
        "threshold_source": results[0].threshold_source,
        "final_train": results[0].final_train,
        "wall_seconds": float(sum(r.wall_seconds for r in results)),
        "per_seed": [r.to_dict() for r in results],
    })


def run_hmc(dataset, config: HMCConfig | None = None, seeds: Iterable[int] = (0,), *, data_dir=None,
            log=None) -> dict:
    """Train and evaluate ``config`` once per seed and :func:`summarize`.

    ``dataset``: an :class:`~conehier.data.hmc.HMCDataset` or a name for
    :func:`~conehier.data.hmc.load_hmc` (loaded once).
    """
    if isinstance(dataset, str):
        from ..data.hmc import load_hmc

        dataset = load_hmc(dataset, data_dir)
    cfg = config or HMCConfig()
    t0 = time.perf_counter()
    results = []
    for s in seeds:
        if log is not None:
            log(f"--- {dataset.name}: {cfg.model} + {cfg.loss}, seed {s}")
        results.append(fit_hmc(dataset, dataclasses.replace(cfg, seed=int(s)), log=log))
    out = summarize(results)
    out["wall_seconds"] = time.perf_counter() - t0
    return out
