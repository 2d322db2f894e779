"""Training and evaluation of joint image-label embeddings (thesis sections 5.6, 6.2).

Graph and sampling
------------------
The joint graph is the label hierarchy with every training image as a leaf under
each of its labels. Positives are its transitive closure: every label-label
closure edge ``(a, b)`` and every ``(a, C + j)`` with ``a`` a label of image ``j``
(the label matrix is closed under ancestors). Each positive gets ``k_parent``
corrupted parents ``(u', v)`` and ``k_child`` corrupted children ``(u, v')``
(5 + 5) from :class:`~conehier.sampling.NegativeSampler`, pick-per-level over the
label levels plus the image level. Parents are drawn from the labels only (never an
image, and never a label that is an ancestor of every label, e.g. a synthetic
root), so no image-image pair is ever drawn; a drawn pair is never a positive.

Loss and optimisers
-------------------
Max-margin loss (thesis eq. 2.3), summed over the batch:
``L = sum_pos E(u, v) + sum_neg max(0, margin - E(u', v'))``. Optimisers (thesis
6.2.1, 6.2.5): ``"adam"`` (default) with separate learning rates for the label
table (``lr_labels``) and for ``W`` (``lr_W``), hyperbolic labels parametrised by
``exp_0``; or the Riemannian ``"radam"`` / ``"rsgd"`` (geoopt) with the labels as
points on the ball. Labels are projected back into their domain after each step.

Decision rules (:func:`predict_labels`), from scores ``s = -E`` ``(N, C)``
--------------------------------------------------------------------------
* ``"level-argmax"`` (single-path labels): per evaluated level ``l`` the label of
  highest score (lowest energy, thesis eq. 5.1) is predicted when its score is at
  least ``t_l``; ``t_l`` is tuned on validation to maximise the level's micro-F1
  (:func:`tune_level_thresholds`), ``-inf`` keeps every argmax (a level where the
  paths may stop, e.g. Diatoms' deepest one, gets a finite ``t_l``);
* ``"threshold"`` (multi-path / multi-label): every label with score ``>= t``, ``t``
  tuned on validation per node (``"pcdb"``) or globally (``"ofadb"``);
* ``"auto"``: ``"level-argmax"`` when no training sample has two labels on one
  level, else ``"threshold"``.

The same rules apply to any score matrix (e.g. sigmoid outputs of an HMC head), so
joint models and heads are compared with the same :func:`classification_metrics`.

Metrics (:func:`classification_metrics`) over the evaluated nodes
-----------------------------------------------------------------
``micro_f1`` / ``macro_f1`` of the predicted label sets
(:func:`~conehier.evaluation.functional.precision_recall_f1`), ``micro_f1_level_<i>``
on the ``i``-th evaluated level (1 = the top one below a synthetic root),
``hit@k`` pooled over (sample, level) pairs with a true label on the level (is a
true label among the level's ``k`` best scored labels; thesis eq. 4.6 per level),
``auprc`` pooled micro average precision (C-HMCNN's AU(PRC)), ``auprc_macro``.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import geoopt
import numpy as np
import torch

from ..evaluation.functional import (
    average_precision,
    hit_at_k_per_level,
    ofadb_threshold,
    pcdb_thresholds,
    precision_recall_f1,
)
from ..evaluation.protocols import reconstruction
from ..hierarchy.graph import Hierarchy
from ..losses.margin import max_margin_loss
from ..models.joint import JOINT_GEOMETRIES, JointEmbeddingModel
from ..sampling import NegativeSampler
from .trainer import epoch_generator, resolve_device
from .config import ConfigBase

__all__ = [
    "DECISIONS",
    "JOINT_DEFAULTS",
    "JointConfig",
    "JointResult",
    "JointTrainer",
    "build_joint_model",
    "check_features",
    "check_label_matrix",
    "classification_metrics",
    "default_eval_mask",
    "evaluated_levels",
    "fit_joint",
    "joint_graph",
    "make_joint_optimizer",
    "predict_labels",
    "resolve_decision",
    "tune_decision",
    "tune_level_thresholds",
]

DECISIONS = ("auto", "level-argmax", "threshold")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHECKPOINT = "joint_checkpoint.pt"

#: Per-geometry defaults. Thesis 6.2.1: Euclidean cones margin 1.0, lr 1e-2 for labels and 1e-3
#: for W, batch 100, 5 + 5 pick-per-level negatives; order embeddings margin 1.0 (sec. 6.1). For
#: hyperbolic cones the thesis used lr 1e-4 for labels (margin not given); on Diatoms (dim 100,
#: 15 epochs) margin 1.0 with lr 1e-3 gave test micro-F1 0.482 against 0.242 with margin 0.1 / lr 1e-4.
JOINT_DEFAULTS: dict[str, dict] = {
    "order": {"lr_labels": 1e-2, "lr_W": 1e-3, "margin": 1.0},
    "euclidean-cones": {"lr_labels": 1e-2, "lr_W": 1e-3, "margin": 1.0},
    "euclidean-cones-cosine": {"lr_labels": 1e-2, "lr_W": 1e-3, "margin": 1.0},
    "hyperbolic-cones": {"lr_labels": 1e-3, "lr_W": 1e-3, "margin": 1.0},
}


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass
class JointConfig(ConfigBase):
    """Everything a joint run depends on. ``None`` learning rates / margin take
    :data:`JOINT_DEFAULTS` of the geometry.

    ``hidden`` / ``dropout``: an optional hidden layer of the image map (0: the thesis's
    linear ``W``) and dropout (on its hidden layer, or on the input features of a linear map). ``optimizer``: ``"adam"`` (separate ``lr_labels`` / ``lr_W``), ``"radam"`` or
    ``"rsgd"`` (geoopt, Riemannian on the ball). ``label_init``: ``"random"`` or
    ``"embed"`` (a label-only run of :func:`conehier.pipeline.embed` with the same
    geometry, ``label_init_epochs`` epochs, 90% of the non-basic edges).
    ``eval_every``: validation every that many epochs; the best epoch (validation
    micro-F1 of the decision rule) is kept; ``patience``: stop after that many
    evaluations without improvement (``None``: never). ``decision`` / ``threshold``:
    see the module docs.
    """

    geometry: str = "hyperbolic-cones"
    dim: int = 10
    K: float = 0.1
    margin: float | None = None
    squared: bool = False
    bias: bool = True
    hidden: int = 0
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 100
    optimizer: str = "adam"
    lr_labels: float | None = None
    lr_W: float | None = None
    weight_decay: float = 0.0
    k_parent: int = 5
    k_child: int = 5
    per_level: bool = True
    label_init: str = "random"
    label_init_epochs: int = 200
    label_scale: float = 1e-3
    image_scale: float = 1.0
    eval_every: int = 1
    patience: int | None = None
    decision: str = "auto"
    threshold: str = "ofadb"
    reconstruction: bool = True
    seed: int = 0
    device: str | None = None
    dtype: str = "float32"
    threads: int | None = None

    def __post_init__(self):
        if self.geometry not in JOINT_GEOMETRIES:
            raise ValueError(f"unknown geometry {self.geometry!r}; choose one of {JOINT_GEOMETRIES}")
        d = JOINT_DEFAULTS[self.geometry]
        for k in ("lr_labels", "lr_W", "margin"):
            if getattr(self, k) is None:
                setattr(self, k, d[k])
        checks = [
            (self.dim >= 1, "dim must be >= 1"),
            (self.hidden >= 0 and 0 <= self.dropout < 1, "need hidden >= 0 and dropout in [0, 1)"),
            (self.K > 0, "K must be > 0"),
            (self.margin >= 0, "margin must be >= 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr_labels >= 0 and self.lr_W >= 0, "learning rates must be >= 0"),
            (self.k_parent >= 0 and self.k_child >= 0 and self.k_parent + self.k_child >= 1,
             "need k_parent + k_child >= 1 negatives"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1 (or None)"),
            (self.optimizer in ("adam", "radam", "rsgd"), f"optimizer must be adam, radam or rsgd, got {self.optimizer!r}"),
            (self.label_init in ("random", "embed"), f"label_init must be 'random' or 'embed', got {self.label_init!r}"),
            (self.decision in DECISIONS, f"decision must be one of {DECISIONS}, got {self.decision!r}"),
            (self.threshold in ("pcdb", "ofadb"), f"threshold must be 'pcdb' or 'ofadb', got {self.threshold!r}"),
            (self.dtype in _DTYPES, f"dtype must be float32 or float64, got {self.dtype!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# --------------------------------------------------------------------------
# Input checks and the joint graph
# --------------------------------------------------------------------------
def check_features(X, n_features: int | None = None, *, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D float array; raises ``ValueError`` for a wrong shape or NaN/inf."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, expected {n_features}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr


def check_label_matrix(Y, hierarchy: Hierarchy, n_samples: int | None = None, *, name: str = "Y") -> np.ndarray:
    """``(N, C)`` 0/1 labels over ``hierarchy``'s nodes as bool, closed under ancestors."""
    y = np.asarray(Y)
    if y.ndim != 2 or y.shape[1] != hierarchy.n:
        raise ValueError(f"{name} must have shape (N, {hierarchy.n}) (one column per hierarchy node), got {y.shape}")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} rows for {n_samples} samples")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be a binary (0/1) label matrix")
    return hierarchy.close_labels(y.astype(bool))


def joint_graph(hierarchy: Hierarchy, Y: np.ndarray) -> dict:
    """The joint graph of ``hierarchy`` and ``N`` images with ancestor-closed labels ``Y`` ``(N, C)``.

    Returns ``positives`` ``(P, 2)`` (its transitive closure: label-label closure edges,
    then ``(label, C + j)``), ``levels`` ``(C + N,)`` (images one level below the deepest
    label level), ``parent_candidates`` / ``child_candidates`` ``(C + N,)`` bool masks.
    """
    C, N = hierarchy.n, Y.shape[0]
    lab = hierarchy.closure_edges()
    j, a = np.nonzero(Y)
    img = np.stack([a.astype(np.int64), C + j.astype(np.int64)], axis=1)
    positives = np.concatenate([lab, img]) if len(lab) else img
    levels = np.concatenate([hierarchy.depth, np.full(N, hierarchy.num_levels, np.int64)])
    n_desc = np.bincount(lab[:, 0], minlength=C) if len(lab) else np.zeros(C, np.int64)
    universal = n_desc >= C - 1  # ancestor of every other label: never a negative parent
    parents = np.zeros(C + N, bool)
    parents[:C] = ~universal if (~universal).any() else True
    children = np.ones(C + N, bool)
    return {"positives": positives, "levels": levels, "parent_candidates": parents, "child_candidates": children}


# --------------------------------------------------------------------------
# Decision rules and metrics
# --------------------------------------------------------------------------
def default_eval_mask(hierarchy: Hierarchy) -> np.ndarray:
    """``(C,)`` bool: every node but those that are ancestors of all other nodes (a synthetic
    root, always true and never informative); all nodes if that would leave none."""
    clo = hierarchy.closure_edges()
    n_desc = np.bincount(clo[:, 0], minlength=hierarchy.n) if len(clo) else np.zeros(hierarchy.n, np.int64)
    m = n_desc < hierarchy.n - 1
    return m if m.any() else np.ones(hierarchy.n, bool)


def evaluated_levels(hierarchy: Hierarchy, eval_mask: np.ndarray | None = None) -> list[np.ndarray]:
    """Ids of the evaluated nodes of each level that has any, top level first."""
    m = np.ones(hierarchy.n, bool) if eval_mask is None else np.asarray(eval_mask, bool)
    return [ids[m[ids]] for ids in hierarchy.nodes_per_level() if m[ids].any()]


def _level_top(scores: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the best scored node of ``nodes`` (ties: first) and its score."""
    sub = scores[:, nodes]
    k = np.argmax(sub, axis=1)
    return nodes[k], sub[np.arange(len(sub)), k]


def tune_level_thresholds(y_true, scores, level_nodes: list[np.ndarray]) -> np.ndarray:
    """``(L,)`` thresholds ``t_l`` for ``"level-argmax"``, each maximising its level's micro-F1.

    On level ``l`` with ``P`` true labels in all, keeping the argmax of the samples with
    top score ``>= t`` gives ``F1(t) = 2 tp(t) / (P + k(t))`` (``k`` kept, ``tp`` of them
    right); candidates are the distinct top scores and ``+inf`` (keep none). The
    lowest candidate is replaced by ``-inf`` (keep all, also on unseen data).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, np.float64)
    out = np.empty(len(level_nodes))
    for i, nodes in enumerate(level_nodes):  # a loop over levels only
        top, val = _level_top(s, nodes)
        right = y[np.arange(len(y)), top]
        P = int(y[:, nodes].sum())
        if P == 0 or len(y) == 0:
            out[i] = np.inf
            continue
        order = np.argsort(-val, kind="stable")
        v, r = val[order], right[order]
        tp = np.cumsum(r)
        k = np.arange(1, len(v) + 1)
        end = np.ones(len(v), bool)
        end[:-1] = v[1:] != v[:-1]
        f1 = np.where(end, 2 * tp / (P + k), -1.0)
        b = int(np.argmax(f1))
        if f1[b] <= 0:
            out[i] = np.inf
        else:
            out[i] = -np.inf if b == len(v) - 1 else v[b]
    return out


def resolve_decision(decision: str, Y_train: np.ndarray, level_nodes: list[np.ndarray]) -> str:
    """``"auto"`` -> ``"level-argmax"`` if no sample has two labels on one level, else ``"threshold"``."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if decision != "auto":
        return decision
    y = np.asarray(Y_train).astype(bool)
    single = all(int(y[:, nodes].sum(1).max(initial=0)) <= 1 for nodes in level_nodes)
    return "level-argmax" if single else "threshold"


def tune_decision(decision: str, y_valid, scores_valid, level_nodes, eval_mask, threshold: str = "ofadb"):
    """Thresholds of a resolved decision rule tuned on validation scores: ``(L,)`` for
    ``"level-argmax"``, ``(C,)`` (``"pcdb"``) or a float (``"ofadb"``) for ``"threshold"``."""
    if decision == "level-argmax":
        return tune_level_thresholds(y_valid, scores_valid, level_nodes)
    if decision != "threshold":
        raise ValueError(f"decision must be 'level-argmax' or 'threshold', got {decision!r}")
    if threshold == "ofadb":
        return float(ofadb_threshold(y_valid, scores_valid, evaluate=eval_mask))
    return np.asarray(pcdb_thresholds(y_valid, scores_valid), np.float64)  # +inf where no positive


def predict_labels(scores, decision: str, thresholds, level_nodes: list[np.ndarray]) -> np.ndarray:
    """``(N, C)`` bool predicted label sets of a resolved decision rule (module docs)."""
    s = np.asarray(scores, np.float64)
    pred = np.zeros(s.shape, bool)
    if decision == "level-argmax":
        t = np.full(len(level_nodes), -np.inf) if thresholds is None else np.asarray(thresholds, np.float64)
        if t.shape != (len(level_nodes),):
            raise ValueError(f"level-argmax needs {len(level_nodes)} level thresholds, got shape {t.shape}")
        rows = np.arange(len(s))
        for i, nodes in enumerate(level_nodes):
            top, val = _level_top(s, nodes)
            keep = val >= t[i]
            pred[rows[keep], top[keep]] = True
        return pred
    if decision == "threshold":
        t = np.asarray(0.0 if thresholds is None else thresholds, np.float64)
        return s >= t
    raise ValueError(f"decision must be 'level-argmax' or 'threshold', got {decision!r}")


def classification_metrics(y_true, scores, pred, level_nodes: list[np.ndarray], eval_mask=None,
                           ks: tuple[int, ...] = (1, 3, 5)) -> dict:
    """Micro/macro F1 (overall and per level), pooled hit@k and AU(PRC) (module docs).

    ``y_true`` ``(N, C)`` 0/1, ``scores`` ``(N, C)`` (higher = more likely), ``pred``
    ``(N, C)`` bool predicted sets, ``level_nodes`` from :func:`evaluated_levels`.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, np.float64)
    C = y.shape[1]
    m = np.ones(C, bool) if eval_mask is None else np.asarray(eval_mask, bool)
    _, _, uf = precision_recall_f1(y, pred, average="micro", evaluate=m)
    _, _, mf = precision_recall_f1(y, pred, average="macro", evaluate=m)
    out = {"micro_f1": float(uf), "macro_f1": float(mf)}
    lv = np.full(C, -1, np.int64)
    for i, nodes in enumerate(level_nodes):
        lv[nodes] = i
        lm = np.zeros(C, bool)
        lm[nodes] = True
        out[f"micro_f1_level_{i + 1}"] = float(precision_recall_f1(y, pred, average="micro", evaluate=lm)[2])
    in_levels = lv >= 0
    counts = np.array([y[:, nodes].any(1).sum() for nodes in level_nodes], np.float64)
    for k in ks:
        per = hit_at_k_per_level(y, s, lv, k, evaluate=in_levels)
        vals = np.array([per.get(i, np.nan) for i in range(len(level_nodes))], np.float64)
        ok = counts > 0
        out[f"hit@{k}"] = float((vals[ok] * counts[ok]).sum() / counts[ok].sum()) if ok.any() else float("nan")
        for i in range(len(level_nodes)):
            out[f"hit@{k}_level_{i + 1}"] = float(vals[i])
    out["auprc"] = float(average_precision(y, s, average="micro", evaluate=m))
    out["auprc_macro"] = float(average_precision(y, s, average="macro", evaluate=m))
    out["labels_per_sample"] = float(pred[:, m].sum(1).mean()) if len(pred) else float("nan")
    return out


# --------------------------------------------------------------------------
# Model and optimiser
# --------------------------------------------------------------------------
def build_joint_model(config: JointConfig, n_labels: int, n_features: int, device=None) -> JointEmbeddingModel:
    """A seeded, randomly initialised :class:`JointEmbeddingModel` for ``config``."""
    ball = config.geometry == "hyperbolic-cones" and config.optimizer in ("radam", "rsgd")
    model = JointEmbeddingModel(n_labels, n_features, config.dim, config.geometry, K=config.K, squared=config.squared,
                                bias=config.bias, hidden=config.hidden, dropout=config.dropout,
                                parametrization="ball" if ball else "exp0",
                                dtype=_DTYPES[config.dtype])
    gen = torch.Generator().manual_seed(int(config.seed))
    model.reset_parameters_(gen, label_scale=config.label_scale, image_scale=config.image_scale)
    return model.to(resolve_device(device if device is not None else config.device))


def make_joint_optimizer(model: JointEmbeddingModel, config: JointConfig) -> torch.optim.Optimizer:
    """Two parameter groups, labels (``lr_labels``) and ``W`` (``lr_W``, ``weight_decay``)."""
    groups = [
        {"params": list(model.labels.parameters()), "lr": config.lr_labels, "weight_decay": 0.0},
        {"params": list(model.W.parameters()), "lr": config.lr_W, "weight_decay": config.weight_decay},
    ]
    if config.optimizer == "adam":
        if model.labels.parametrization == "ball":
            raise ValueError("Adam ignores the Poincaré ball: use parametrization 'exp0' or a Riemannian optimizer")
        return torch.optim.Adam(groups)
    if config.optimizer == "radam":
        return geoopt.optim.RiemannianAdam(groups, lr=config.lr_labels)
    if config.optimizer == "rsgd":
        return geoopt.optim.RiemannianSGD(groups, lr=config.lr_labels)
    raise ValueError(f"optimizer must be adam, radam or rsgd, got {config.optimizer!r}")


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------
@dataclass
class JointState:
    """What a checkpoint holds besides the model and the optimiser."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None  # {"epoch", "metrics"}
    best_state: dict | None = None
    since_best: int = 0
    wall_seconds: float = 0.0


class JointTrainer:
    """Trains a :class:`JointEmbeddingModel` on images ``X`` ``(N, F)`` with labels ``Y`` ``(N, C)``.

    Every epoch draws its permutation and negatives from a generator seeded by
    ``(seed, epoch)``, so a run resumed from a checkpoint continues exactly as the
    uninterrupted one. ``evaluate(model) -> dict`` runs every ``eval_every`` epochs and
    after the last; the epoch with the highest ``valid_f1`` is kept.
    """

    def __init__(self, model: JointEmbeddingModel, X, Y, hierarchy: Hierarchy, config: JointConfig, *,
                 evaluate: Callable[[JointEmbeddingModel], dict] | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = None):
        self.model, self.config, self.hierarchy = model, config, hierarchy
        self.device = model.device
        X = check_features(X, model.n_features, name="X")
        Y = check_label_matrix(Y, hierarchy, len(X))
        if hierarchy.n != model.n_labels:
            raise ValueError(f"the model has {model.n_labels} labels, the hierarchy {hierarchy.n} nodes")
        self.X = torch.as_tensor(np.ascontiguousarray(X), dtype=model.dtype, device=self.device)
        g = joint_graph(hierarchy, Y)
        self.positives = torch.as_tensor(g["positives"], device=self.device)
        self.sampler = NegativeSampler(
            closure_edges=g["positives"], n_nodes=hierarchy.n + len(X), levels=g["levels"],
            per_level=config.per_level, parent_candidates=g["parent_candidates"],
            child_candidates=g["child_candidates"], k_parent=config.k_parent, k_child=config.k_child,
            device=self.device,
        )
        self.optimizer = make_joint_optimizer(model, config)
        self.evaluate = evaluate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress, self.log = progress, log
        self.state = JointState()

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "state": self.state.__dict__, "config": self.config.to_dict()}, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> bool:
        path = Path(path) if path else (self.checkpoint_dir / CHECKPOINT if self.checkpoint_dir else None)
        if path is None or not path.is_file():
            return False
        ck = torch.load(path, map_location=self.device, weights_only=False)
        saved = dict(ck.get("config", {}))
        now = self.config.to_dict()
        keys = [k for k in now if k not in ("epochs", "patience", "eval_every", "device", "threads")]
        diff = [k for k in keys if k in saved and saved[k] != now[k]]
        if diff:
            raise ValueError(f"the checkpoint {path} was made with other settings ({', '.join(diff)}): "
                             "use another output directory or the same settings")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = JointState(**ck["state"])
        return True

    # ------------------------------------------------------------------ loop
    def train_epoch(self, epoch: int) -> float:
        """One pass over the positives (``epoch`` 0-based); returns the summed loss."""
        c, model = self.config, self.model
        model.train()
        gen = epoch_generator(c.seed, epoch, self.device)
        pos = self.positives[torch.randperm(len(self.positives), generator=gen, device=self.device)]
        neg = self.sampler.sample(pos, gen)
        pairs = torch.cat([pos[:, None, :], neg], dim=1)  # (P, 1 + k, 2)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for s in range(0, len(pairs), c.batch_size):
            e = model(pairs[s:s + c.batch_size], self.X)
            loss = max_margin_loss(e[:, 0], e[:, 1:], c.margin, reduction="sum")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            model.project_()
            total += loss.detach()
        value = float(total)
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} in epoch {epoch + 1}: lower the learning rates")
        return value

    def fit(self, resume: bool = True) -> JointState:
        c = self.config
        if resume and self.checkpoint_dir is not None:
            self.load_checkpoint()
        st = self.state
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.epochs, initial=st.epoch, desc=f"joint {c.geometry}", file=sys.stderr,
                       dynamic_ncols=True, leave=False)
        try:
            for epoch in range(st.epoch, c.epochs):
                if c.patience is not None and st.since_best >= c.patience:
                    break
                t0 = time.perf_counter()
                loss = self.train_epoch(epoch)
                secs = time.perf_counter() - t0
                row = {"epoch": epoch + 1, "loss": loss, "seconds": secs}
                last = epoch + 1 == c.epochs
                if self.evaluate is not None and ((epoch + 1) % c.eval_every == 0 or last):
                    metrics = self.evaluate(self.model)
                    row.update(metrics)
                    if st.best is None or metrics.get("valid_f1", -1) > st.best["metrics"].get("valid_f1", -1):
                        st.best = {"epoch": epoch + 1, "metrics": dict(metrics)}
                        st.best_state = copy.deepcopy(self.model.state_dict())
                        st.since_best = 0
                    else:
                        st.since_best += 1
                    if self.log is not None:
                        self.log(f"epoch {epoch + 1:4d}  loss {loss:.4g}  valid F1 {metrics.get('valid_f1', float('nan')):.4f}"
                                 f"  (best {st.best['metrics'].get('valid_f1', float('nan')):.4f} @ {st.best['epoch']})")
                st.history.append(row)
                st.epoch = epoch + 1
                st.wall_seconds += secs
                if self.checkpoint_dir is not None and ("valid_f1" in row or last):
                    self.save_checkpoint()
                if bar is not None:
                    bar.set_postfix({"loss": f"{loss:.4g}"})
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return st

    def restore_best(self) -> None:
        """Load the best validation epoch's weights into the model."""
        if self.state.best_state is not None:
            self.model.load_state_dict(self.state.best_state)


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------
@dataclass
class JointResult:
    """A trained joint model with its decision rule (thresholds tuned on validation)."""

    model: JointEmbeddingModel
    config: JointConfig
    hierarchy: Hierarchy
    eval_mask: np.ndarray
    decision: str
    thresholds: object
    history: list
    best_epoch: int
    epochs_trained: int
    valid_metrics: dict
    train_seconds: float
    wall_seconds: float
    label_init: dict | None = None

    @property
    def level_nodes(self) -> list[np.ndarray]:
        return evaluated_levels(self.hierarchy, self.eval_mask)

    def energies(self, X) -> np.ndarray:
        """``(N, C)`` float64 energies of every (label, image) pair."""
        X = check_features(X, self.model.n_features)
        return self.model.energy_matrix(torch.as_tensor(X, dtype=self.model.dtype)).double().cpu().numpy()

    def scores(self, X) -> np.ndarray:
        """``(N, C)`` float64 scores ``-E`` (higher = more likely)."""
        return -self.energies(X)

    def predict(self, X) -> np.ndarray:
        """``(N, C)`` bool predicted label sets of the decision rule."""
        return predict_labels(self.scores(X), self.decision, self.thresholds, self.level_nodes)

    def evaluate(self, X, Y) -> dict:
        """:func:`classification_metrics` on ``(X, Y)``."""
        y = check_label_matrix(Y, self.hierarchy, len(X))
        s = self.scores(X)
        pred = predict_labels(s, self.decision, self.thresholds, self.level_nodes)
        return classification_metrics(y, s, pred, self.level_nodes, self.eval_mask)

    def reconstruction(self, positives: str = "basic") -> dict:
        """Graph reconstruction of the label part (:func:`~conehier.evaluation.protocols.reconstruction`)."""
        return reconstruction(self.model.label_energy, self.hierarchy, positives=positives,
                              max_nodes=max(self.hierarchy.n, 5000), device=self.model.device)


def _label_init(config: JointConfig, hierarchy: Hierarchy, device, log) -> tuple[np.ndarray, list[str], dict]:
    from ..pipeline import embed  # the pipeline imports the training package: import when needed

    t0 = time.perf_counter()
    res = embed(hierarchy, model=config.geometry, dim=config.dim, train_percent=90, epochs=config.label_init_epochs,
                seed=config.seed, K=config.K, dtype=config.dtype, device=str(device), threads=config.threads,
                progress=False)
    info = {"epochs": config.label_init_epochs, "seconds": time.perf_counter() - t0,
            "test_f1": res.metrics.get("test_f1"),
            "reconstruction_f1": (res.metrics.get("reconstruction") or {}).get("f1")}
    if log is not None:
        log(f"label-only init: link-prediction test F1 {info['test_f1']}, {info['seconds']:.1f} s")
    return res.embeddings, res.names, info


def fit_joint(X_train, Y_train, hierarchy: Hierarchy, config: JointConfig | None = None, *, X_valid=None,
              Y_valid=None, eval_mask=None, label_init=None, checkpoint_dir=None, progress: bool = False,
              log: Callable[[str], None] | None = None) -> JointResult:
    """Train a joint model on ``(X_train, Y_train)`` and tune its decision rule on ``(X_valid, Y_valid)``.

    ``Y_*``: ``(N, C)`` 0/1 labels over ``hierarchy``'s nodes (closed under ancestors
    here). ``eval_mask``: ``(C,)`` nodes that count (default all). ``label_init``: an
    :class:`~conehier.pipeline.EmbedResult` (or anything with ``embeddings`` and
    ``names``) to start the labels from; otherwise ``config.label_init``. Without a
    validation set the last epoch is kept and thresholds are tuned on the training set.
    With ``checkpoint_dir`` the run checkpoints there and resumes.
    """
    t_start = time.perf_counter()
    cfg = config or JointConfig()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        X_train = check_features(X_train, name="X_train")
        Ytr = check_label_matrix(Y_train, hierarchy, len(X_train), name="Y_train")
        has_valid = X_valid is not None
        if has_valid:
            if Y_valid is None:
                raise ValueError("X_valid needs Y_valid")
            X_valid = check_features(X_valid, X_train.shape[1], name="X_valid")
            Yva = check_label_matrix(Y_valid, hierarchy, len(X_valid), name="Y_valid")
        m = np.ones(hierarchy.n, bool) if eval_mask is None else np.asarray(eval_mask, bool)
        if m.shape != (hierarchy.n,):
            raise ValueError(f"eval_mask must have shape ({hierarchy.n},), got {m.shape}")
        level_nodes = evaluated_levels(hierarchy, m)
        decision = resolve_decision(cfg.decision, Ytr, level_nodes)
        model = build_joint_model(cfg, hierarchy.n, X_train.shape[1])
        device = model.device
        init_info = None
        if label_init is not None:
            model.init_labels_(label_init.embeddings, list(label_init.names), hierarchy.names)
            init_info = {"source": "given"}
        elif cfg.label_init == "embed":
            ckpt_done = checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT).is_file()
            if not ckpt_done:  # a resumed run loads its labels from the checkpoint
                pts, names, init_info = _label_init(cfg, hierarchy, device, log)
                model.init_labels_(pts, names, hierarchy.names)
        Xv_t = torch.as_tensor(np.ascontiguousarray(X_valid if has_valid else X_train), dtype=model.dtype)
        Yv = Yva if has_valid else Ytr

        def evaluate(mdl: JointEmbeddingModel) -> dict:
            s = -mdl.energy_matrix(Xv_t).double().cpu().numpy()
            th = tune_decision(decision, Yv, s, level_nodes, m, cfg.threshold)
            pred = predict_labels(s, decision, th, level_nodes)
            mt = classification_metrics(Yv, s, pred, level_nodes, m, ks=(3,))
            row = {"valid_f1": mt["micro_f1"], "valid_auprc": mt["auprc"], "valid_hit@3": mt["hit@3"]}
            if cfg.reconstruction:
                r = reconstruction(mdl.label_energy, hierarchy, max_nodes=max(hierarchy.n, 5000), device=mdl.device)
                row["reconstruction_f1"] = r["f1"]
            return row

        trainer = JointTrainer(model, X_train, Ytr, hierarchy, cfg, evaluate=evaluate if has_valid else None,
                               checkpoint_dir=checkpoint_dir, progress=progress, log=log)
        st = trainer.fit(resume=True)
        trainer.restore_best()
        s_val = -model.energy_matrix(Xv_t).double().cpu().numpy()
        thresholds = tune_decision(decision, Yv, s_val, level_nodes, m, cfg.threshold)
        pred = predict_labels(s_val, decision, thresholds, level_nodes)
        valid_metrics = classification_metrics(Yv, s_val, pred, level_nodes, m)
        best_epoch = st.best["epoch"] if st.best else st.epoch
    finally:
        torch.set_num_threads(old_threads)
    return JointResult(model=model, config=cfg, hierarchy=hierarchy, eval_mask=m, decision=decision,
                       thresholds=thresholds, history=st.history, best_epoch=int(best_epoch),
                       epochs_trained=int(st.epoch), valid_metrics=valid_metrics, train_seconds=st.wall_seconds,
                       wall_seconds=time.perf_counter() - t_start, label_init=init_info)
