"""Training the HMC heads on images (a CNN backbone) or on features (a linear layer / MLP).

Data (:class:`CNNData`, :func:`load_cnn_data`) comes from a SPEC:

* ``ethec:DIR``: ETHEC images (:mod:`conehier.data.ethec_images`), split files
  in ``DIR``, images under ``DIR`` or ``image_dir``; the model is
  ``head(backbone(image))`` with a torchvision backbone
  (:mod:`conehier.models.backbones`), fine-tuned entirely (``finetune="all"``)
  or frozen with only the head trained (``"last"``);
* ``features:DIR``: a :class:`~conehier.data.feature_cache.FeatureCache`
  (penultimate CNN features); the model is ``head(MLP(x))``;
* ``hmc:NAME``: an HMC benchmark (:func:`~conehier.data.hmc.load_hmc`),
  ``head(MLP(x))`` as well.

``MLP`` with ``hidden=0`` is the identity: the head's linear layer sits on
the features directly (a linear classifier).

Heads (:data:`CNN_HEADS`, the rows of thesis Table 4.16): ``flat`` (one
sigmoid per label, hierarchy-agnostic, decisions by thresholds tuned on
validation: ``pcdb`` per class, ``ofadb`` one for all), ``per-level``,
``marginalization``, ``masked``, ``hierarchical-softmax`` (one label per level,
:mod:`conehier.models.heads`). Losses: :class:`~conehier.training.hmc.HMCLoss`
(BCE for ``flat``, the head's negative log-likelihood otherwise), with
optional inverse-frequency class weights; optional re-sampling by the inverse
frequency of a sample's rarest label (``sampling``).

Protocol (:func:`train_cnn`): ``epochs`` epochs of SGD (thesis: lr 0.01,
batch 64, 100 epochs) over the training split; every ``eval_every`` epochs the
validation split is scored and the model with the best validation
``select_metric`` (``micro_f1`` for softmax heads, ``auprc`` for ``flat``) is
kept; it is evaluated on test. A checkpoint (``OUT/checkpoint.pt``, end of
every epoch: model, optimizer, scaler, RNG state, history, best weights) lets
an interrupted run resume where it stopped.

Metrics (:func:`classification_metrics`) over the evaluated nodes, with
levels numbered ``1..L`` from the top evaluated level: ``micro_f1`` (and
``micro_precision`` / ``micro_recall``, ``macro_f1``) of the predicted label
sets (the per-level argmax for softmax heads; for one label per level m-P =
m-R = m-F1), ``micro_f1_level_<i>``, ``hit@k`` for k = 1, 3, 5 (the mean over
levels of the per-level hit@k: is the true label of the level among its k
best-scored labels) with ``hit@k_level_<i>``, and ``auprc`` (pooled average
precision of the node scores) / ``auprc_macro``.

Speed: ``batch_size`` is the global batch; under ``torchrun`` each of the
``W`` processes takes ``batch_size / W`` (:mod:`conehier.training.distributed`);
CUDA when present (mixed precision with ``amp``), a ``DataLoader`` with
``num_workers`` and pinned memory for images; features are indexed in whole
batches (no per-sample Python work).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..evaluation.functional import (
    apply_threshold,
    average_precision,
    hit_at_k_per_level,
    precision_recall_f1,
    precision_recall_f1_per_level,
)
from ..hierarchy.graph import Hierarchy
from ..models.heads import MLP, HMCModel, build_head, sample_weights
from .distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, make_sampler, wrap_ddp
from ..jsonutil import to_jsonable
from .hmc import HMCConfig, HMCLoss, tune_thresholds
from .config import ConfigBase

__all__ = [
    "CNN_HEADS",
    "CNNConfig",
    "CNNData",
    "CNNResult",
    "SplitData",
    "build_cnn_model",
    "classification_metrics",
    "evaluation_levels",
    "load_cnn_data",
    "predict",
    "train_cnn",
]

#: CLI head name -> :data:`conehier.models.heads.HEADS` key
CNN_HEADS = {
    "flat": "mlp",
    "per-level": "per-level",
    "marginalization": "marginal",
    "masked": "masked-per-level",
    "hierarchical-softmax": "hsoftmax",
}
CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
_WEIGHT_POWER = {None: None, "none": None, "inverse": 1.0, "sqrt": 0.5}
# config fields that may change when resuming from a checkpoint
_RUNTIME_FIELDS = {"epochs", "device", "threads", "num_workers", "eval_batch_size", "amp"}


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass
class CNNConfig(ConfigBase):
    """One training run (module docs). ``backbone`` applies to image data only."""

    head: str = "per-level"
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    allow_random: bool = False
    finetune: str = "all"
    hidden: int = 0
    n_hidden: int = 1
    dropout: float = 0.0
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 100
    class_weight: str | None = None
    sampling: str | None = None
    threshold: str | float = "pcdb"
    level_weights: list | None = None
    select_metric: str | None = None
    eval_every: int = 1
    eval_batch_size: int = 256
    amp: bool = True
    num_workers: int = 0
    seed: int = 0
    device: str | None = None
    threads: int | None = None

    def __post_init__(self):
        if self.head not in CNN_HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(CNN_HEADS)}")
        if self.finetune not in ("all", "last"):
            raise ValueError(f"finetune must be 'all' or 'last', got {self.finetune!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        for name in ("class_weight", "sampling"):
            if getattr(self, name) not in _WEIGHT_POWER:
                raise ValueError(f"{name} must be None, 'inverse' or 'sqrt', got {getattr(self, name)!r}")
        if isinstance(self.threshold, str) and self.threshold not in ("pcdb", "ofadb"):
            try:
                self.threshold = float(self.threshold)
            except ValueError:
                raise ValueError(f"threshold must be 'pcdb', 'ofadb' or a number, got {self.threshold!r}") from None
        if self.select_metric not in (None, "micro_f1", "auprc", "loss"):
            raise ValueError(f"select_metric must be micro_f1, auprc or loss, got {self.select_metric!r}")
        checks = [
            (self.lr > 0, "lr must be > 0"), (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"), (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.hidden >= 0 and self.n_hidden >= 1, "hidden must be >= 0 and n_hidden >= 1"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"), (self.momentum >= 0, "momentum must be >= 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"), (self.num_workers >= 0, "num_workers must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def softmax(self) -> bool:
        return self.head != "flat"

    @property
    def selection(self) -> str:
        return self.select_metric or ("micro_f1" if self.softmax else "auprc")


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
@dataclass
class SplitData:
    """One split: ``Y`` ``(N, C)`` uint8 labels and either ``X`` ``(N, F)`` features or ``images``
    (a data set of ``(image, key, label_path)`` items)."""

    Y: np.ndarray
    X: np.ndarray | None = None
    images: object | None = None

    def __len__(self) -> int:
        return int(self.Y.shape[0])


@dataclass
class CNNData:
    """Splits ``train``, ``test`` and optionally ``val`` over one ``hierarchy``; ``eval_mask`` ``(C,)``."""

    name: str
    hierarchy: Hierarchy
    splits: dict
    eval_mask: np.ndarray
    kind: str  # "images" | "features"

    def __post_init__(self):
        for s in ("train", "test"):
            if s not in self.splits:
                raise ValueError(f"{self.name}: no {s!r} split (have {', '.join(self.splits) or 'none'})")
        c = self.hierarchy.n
        for s, sp in self.splits.items():
            if sp.Y.ndim != 2 or sp.Y.shape[1] != c:
                raise ValueError(f"{self.name}: labels of split {s!r} must be (N, {c}), got {sp.Y.shape}")
            if self.kind == "features":
                if sp.X is None or sp.X.ndim != 2 or sp.X.shape[0] != sp.Y.shape[0]:
                    raise ValueError(f"{self.name}: features of split {s!r} must be (N, F) with N = {sp.Y.shape[0]}")
                if not np.isfinite(sp.X).all():
                    raise ValueError(f"{self.name}: split {s!r} has NaN or infinite features")

    @property
    def n_features(self) -> int | None:
        x = self.splits["train"].X
        return None if x is None else int(x.shape[1])


def _from_hmc(name: str, data_dir=None) -> CNNData:
    from ..data.hmc import load_hmc

    ds = load_hmc(name, data_dir)
    if ds.X_valid is None:
        ds = ds.split_validation(0.2, 0)
    splits = {"train": SplitData(ds.Y_train, ds.X_train), "val": SplitData(ds.Y_valid, ds.X_valid),
              "test": SplitData(ds.Y_test, ds.X_test)}
    return CNNData(f"hmc:{ds.name}", ds.hierarchy, splits, np.asarray(ds.eval_mask, bool), "features")


def _from_features(directory) -> CNNData:
    from ..data.feature_cache import FeatureCache

    cache = FeatureCache.load(directory)
    h = cache.hierarchy
    Y = cache.label_matrix(h)
    names = {"valid": "val"}
    splits = {}
    for s, rows in cache.splits.items():
        splits[names.get(s, s)] = SplitData(Y[rows], np.asarray(cache.X[rows], dtype=np.float32))
    return CNNData(f"features:{directory}", h, splits, np.ones(h.n, bool), "features")


def _from_ethec(directory, image_dir=None, resize: int = 448, crop: int = 224) -> CNNData:
    from ..data.ethec_images import load_ethec_images

    parts = load_ethec_images(directory, image_dir=image_dir, resize=resize, crop=crop)
    h = parts["train"].hierarchy
    splits = {s: SplitData(ds.label_matrix(), images=ds) for s, ds in parts.items()}
    return CNNData(f"ethec:{directory}", h, splits, np.ones(h.n, bool), "images")


def load_cnn_data(spec: str, *, data_dir=None, image_dir=None, resize: int = 448, crop: int = 224) -> CNNData:
    """``hmc:NAME`` | ``features:DIR`` | ``ethec:DIR`` -> :class:`CNNData` (module docs)."""
    kind, sep, arg = str(spec).partition(":")
    if not sep or not arg:
        raise ValueError(f"data SPEC must be hmc:NAME, features:DIR or ethec:DIR, got {spec!r}")
    if image_dir is not None and kind != "ethec":
        raise ValueError("an image directory only applies to ethec:DIR data")
    if kind == "hmc":
        return _from_hmc(arg, data_dir)
    if kind == "features":
        return _from_features(arg)
    if kind == "ethec":
        return _from_ethec(arg, image_dir, resize, crop)
    raise ValueError(f"unknown data kind {kind!r} in {spec!r}: use hmc:NAME, features:DIR or ethec:DIR")


class _FeatureBatches(torch.utils.data.Dataset):
    """Batched indexing: ``ds[list of rows] -> (X[rows], rows)`` (used with a ``BatchSampler``)."""

    def __init__(self, X: Tensor):
        self.X = X

    def __len__(self):
        return self.X.shape[0]

    def __getitem__(self, rows):
        idx = torch.as_tensor(rows, dtype=torch.long)
        return self.X[idx], idx


class _IndexedImages(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0], i


def _loader(split: SplitData, batch_size: int, sampler, *, num_workers: int, pin: bool, seed: int):
    """Batches ``(inputs, row indices)`` of a split, in ``sampler`` order (or in order)."""
    if split.X is not None:
        ds = _FeatureBatches(torch.as_tensor(np.ascontiguousarray(split.X), dtype=torch.float32))
        base = sampler if sampler is not None else torch.utils.data.SequentialSampler(range(len(split)))
        bs = torch.utils.data.BatchSampler(base, batch_size, drop_last=False)
        return torch.utils.data.DataLoader(ds, sampler=bs, batch_size=None, pin_memory=pin)
    return torch.utils.data.DataLoader(
        _IndexedImages(split.images), batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
        pin_memory=pin, persistent_workers=False, generator=torch.Generator().manual_seed(seed),
        drop_last=False)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
def build_cnn_model(config: CNNConfig, data: CNNData) -> HMCModel:
    """``head(backbone(x))``: a torchvision backbone for images, an MLP (``hidden=0``: identity) for features."""
    if data.kind == "images":
        from ..models.backbones import build_backbone

        backbone, dim = build_backbone(config.backbone, weights=config.weights, allow_random=config.allow_random)
        if config.finetune == "last":
            backbone.freeze()
    else:
        f = data.n_features
        backbone = MLP(f, max(config.hidden, 1), config.n_hidden if config.hidden else 0, dropout=config.dropout)
        dim = backbone.out_features
    head = build_head(CNN_HEADS[config.head], dim, data.hierarchy, level_weights=config.level_weights)
    return HMCModel(backbone, head)


def _hmc_config(config: CNNConfig) -> HMCConfig:
    return HMCConfig(model=CNN_HEADS[config.head], loss="nll" if config.softmax else "bce",
                     class_weight=config.class_weight, level_weights=config.level_weights)


def _optimizer(model: nn.Module, config: CNNConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
def evaluation_levels(hierarchy: Hierarchy, eval_mask) -> np.ndarray:
    """``(C,)`` int level number of every node: 1 for the top evaluated depth, 2 below, ...; 0 if not evaluated."""
    m = np.asarray(eval_mask, bool)
    depth = np.asarray(hierarchy.depth)
    uniq = np.unique(depth[m])
    lv = np.zeros(hierarchy.n, np.int64)
    lv[m] = np.searchsorted(uniq, depth[m]) + 1
    return lv


def classification_metrics(y_true, scores, y_pred, levels, eval_mask, *, ks=(1, 3, 5)) -> dict:
    """Metrics of predicted label sets ``y_pred`` and node ``scores`` (module docs).

    ``y_true`` / ``y_pred`` ``(N, C)`` {0, 1}; ``scores`` ``(N, C)``; ``levels``
    from :func:`evaluation_levels`; ``eval_mask`` ``(C,)`` bool.
    """
    y = np.asarray(y_true) != 0
    pred = np.asarray(y_pred) != 0
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(eval_mask, bool)
    lv = np.asarray(levels)
    p, r, f = precision_recall_f1(y, pred, average="micro", evaluate=m)
    _, _, mf = precision_recall_f1(y, pred, average="macro", evaluate=m)
    out = {"micro_f1": float(f), "micro_precision": float(p), "micro_recall": float(r), "macro_f1": float(mf)}
    for lev, (_, _, fl) in precision_recall_f1_per_level(y, pred, lv, average="micro", evaluate=m).items():
        out[f"micro_f1_level_{lev}"] = float(fl)
    for k in ks:
        per = hit_at_k_per_level(y, s, lv, k, evaluate=m)
        vals = [v for v in per.values() if not math.isnan(v)]
        out[f"hit@{k}"] = float(np.mean(vals)) if vals else float("nan")
        for lev, v in per.items():
            out[f"hit@{k}_level_{lev}"] = float(v)
    out["auprc"] = float(average_precision(y, s, average="micro", evaluate=m))
    out["auprc_macro"] = float(average_precision(y, s, average="macro", evaluate=m))
    return out


@torch.no_grad()
def predict(model: HMCModel, split: SplitData, *, device, batch_size: int = 256, num_workers: int = 0,
            amp: bool = False, loss_fn: Callable | None = None):
    """``(scores (N, C) float64, argmax predictions (N, C) bool or None, mean loss or nan)`` of ``model`` (eval mode).

    Predictions are the head's per-level choice for softmax heads, ``None`` for sigmoid heads (threshold the scores).
    """
    model.eval()
    loader = _loader(split, batch_size, None, num_workers=num_workers, pin=device.type == "cuda", seed=0)
    Y = torch.as_tensor(split.Y)
    scores, preds, loss_sum = [], [], 0.0
    softmax = model.head.kind == "softmax"
    for xb, idx in loader:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            z = model(xb.to(device, non_blocking=True))
        z = z.float()
        scores.append(model.head.scores(z).double().cpu())
        if softmax:
            preds.append(model.head.predict(z).cpu())
        if loss_fn is not None:
            loss_sum += float(loss_fn(z, Y[idx].to(device, torch.float32))) * len(idx)
    c = model.head.n_nodes
    S = torch.cat(scores).numpy() if scores else np.zeros((0, c))
    P = (torch.cat(preds).numpy() if preds else np.zeros((0, c), bool)) if softmax else None
    return S, P, (loss_sum / max(len(split), 1)) if loss_fn is not None else float("nan")


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------
@dataclass
class CNNResult:
    """Outcome of :func:`train_cnn` (rank 0). ``metrics``: test metrics of the selected model."""

    data: str
    config: dict
    metrics: dict
    valid_metrics: dict
    best_epoch: int
    epochs_trained: int
    threshold_source: str
    seconds_per_epoch: float
    samples_per_second: float
    wall_seconds: float
    device: str
    world_size: int
    history: list = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return to_jsonable(d)

    def save(self, out: str | os.PathLike, *, plot: bool = True) -> Path:
        """Write ``OUT/results.json`` (and ``OUT/training_curves.png``); returns the JSON path."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        path.write_text(json.dumps(self.to_dict(), indent=2))
        if plot and self.history:
            plot_history(self.history, save=out / "training_curves.png", title=f"{self.config['head']} on {self.data}",
                         best_epoch=self.best_epoch)
        return path


def plot_history(history: list, *, save=None, title: str | None = None, best_epoch: int | None = None):
    """Training loss and validation micro-F1 per epoch (:func:`conehier.reporting.plots.plot_training_curves`);
    ``best_epoch`` (the selected epoch) is marked."""
    from types import SimpleNamespace

    from ..reporting.plots import plot_training_curves

    rows = [{"epoch": h["epoch"], "loss": h["loss"], "valid_f1": h.get("valid_micro_f1")} for h in history]
    src = SimpleNamespace(history=rows, metrics={} if best_epoch is None else {"best_epoch": best_epoch})
    fig = plot_training_curves(src, title=title)
    fig.axes[1].set_ylabel("validation micro-F1")
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=150, bbox_inches="tight")
    return fig


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def _check_resume(saved: dict, config: CNNConfig, path: Path) -> None:
    now = config.to_dict()
    for k, v in saved.items():
        if k in _RUNTIME_FIELDS:
            continue
        if now.get(k) != v:
            raise ValueError(f"checkpoint {path} was written with {k}={v!r}, this run has {k}={now.get(k)!r}: "
                             "use another output directory or resume=False")


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(new)
    return new < best if metric == "loss" else new > best


def train_cnn(data: CNNData, config: CNNConfig | None = None, *, out: str | os.PathLike | None = None,
              resume: bool = True, log: Callable[[str], None] | None = None,
              dist_info: DistInfo | None = None, plot: bool = True) -> CNNResult | None:
    """Train ``config.head`` on ``data``, select on validation, evaluate on test (module docs).

    Under ``torchrun`` (``WORLD_SIZE > 1``) every process calls this; DDP
    synchronises the gradients, rank 0 evaluates, writes ``out`` and returns
    the :class:`CNNResult` (other ranks return ``None``). ``out``: checkpoint
    directory (``checkpoint.pt``, ``best.pt``; results are written by
    :meth:`CNNResult.save`, with the training-curve plot unless ``plot=False``);
    ``resume``: continue from ``out/checkpoint.pt``.
    """
    cfg = config or CNNConfig()
    t_start = time.perf_counter()
    own_group = dist_info is None
    info = dist_info or init_distributed(cfg.device)
    try:
        return _train(data, cfg, info, Path(out) if out is not None else None, resume, log, t_start, plot)
    finally:
        if own_group:
            cleanup(info)


def _train(data: CNNData, cfg: CNNConfig, info: DistInfo, out: Path | None, resume: bool, log, t_start: float,
           plot: bool = True):
    say = (lambda msg: log(msg)) if (log is not None and info.is_main) else (lambda msg: None)
    dev = info.device
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is the global batch: it must be divisible by the "
                         f"{info.world_size} processes")
    if data.kind == "features" and cfg.finetune == "last" and cfg.hidden:
        raise ValueError("finetune='last' freezes a CNN backbone; on features use hidden=0 for a linear layer")
    local_bs = cfg.batch_size // info.world_size
    has_val = "val" in data.splits
    train = data.splits["train"]
    levels = evaluation_levels(data.hierarchy, data.eval_mask)

    torch.manual_seed(cfg.seed)
    model = build_cnn_model(cfg, data).to(dev)
    if info.rank:
        torch.manual_seed(cfg.seed + info.rank)  # different dropout / augmentation per process
    ddp = wrap_ddp(model, info)
    opt = _optimizer(model, cfg)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = HMCLoss(_hmc_config(cfg), model, data.hierarchy, data.eval_mask, train.Y, dev)
    power = _WEIGHT_POWER[cfg.sampling]
    weights = sample_weights(train.Y, power=power, mask=data.eval_mask) if power is not None else None
    sampler = make_sampler(len(train), info, seed=cfg.seed, weights=weights)
    pin = dev.type == "cuda"
    loader = _loader(train, local_bs, sampler, num_workers=cfg.num_workers, pin=pin, seed=cfg.seed + info.rank)
    Y_train = torch.as_tensor(train.Y, dtype=torch.float32)

    start, history, best = 0, [], {"value": None, "epoch": 0}
    best_state = None
    train_seconds, samples_seen = 0.0, 0
    ckpt = out / CHECKPOINT if out is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=dev, weights_only=False)
        _check_resume(st["config"], cfg, ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        scaler.load_state_dict(st["scaler"])
        start, history, best = st["epoch"], st["history"], st["best"]
        train_seconds, samples_seen = st["train_seconds"], st["samples_seen"]
        best_state = st.get("best_state")
        _set_rng_state(st["rng"][min(info.rank, len(st["rng"]) - 1)], dev)
        say(f"resumed from {ckpt} after epoch {start}")

    for epoch in range(start, cfg.epochs):
        ddp.train()
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum, steps, n_seen = 0.0, 0, 0
        for xb, idx in loader:
            xb = xb.to(dev, non_blocking=True)
            yb = Y_train[idx].to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                z = ddp(xb)
            loss = loss_fn(z.float(), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}, step {steps + 1}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += float(loss.detach())
            steps += 1
            n_seen += len(idx)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        samples_seen += n_seen * info.world_size
        row = {"epoch": epoch + 1, "loss": all_reduce_mean(loss_sum / max(steps, 1), info), "seconds": seconds}
        if info.is_main and has_val and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            vm, vloss = _evaluate(model, data, "val", cfg, dev, levels, loss_fn, threshold=0.5)
            row.update({"valid_loss": vloss, "valid_micro_f1": vm["micro_f1"], "valid_auprc": vm["auprc"]})
            value = vloss if cfg.selection == "loss" else vm[cfg.selection]
            if _better(cfg.selection, value, best["value"]):
                best = {"value": value, "epoch": epoch + 1}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if out is not None:
                    out.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": best_state, "epoch": epoch + 1, "config": cfg.to_dict()}, out / BEST)
        history.append(row)
        say(f"epoch {epoch + 1:4d}/{cfg.epochs}  loss {row['loss']:.5f}"
            + (f"  valid micro-F1 {row['valid_micro_f1']:.4f}  AU(PRC) {row['valid_auprc']:.4f}"
               if "valid_micro_f1" in row else "") + f"  ({seconds:.1f} s)")
        rngs = _gather_rng(info, dev)
        if info.is_main and ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        "epoch": epoch + 1, "history": history, "best": best, "best_state": best_state,
                        "train_seconds": train_seconds, "samples_seen": samples_seen, "rng": rngs,
                        "config": cfg.to_dict()}, tmp)
            os.replace(tmp, ckpt)
        barrier(info)

    if not info.is_main:
        return None
    last_epoch = len(history)
    if best_state is not None:
        model.load_state_dict(best_state)
        best_epoch = best["epoch"]
    else:
        best_epoch = last_epoch
    threshold, source = 0.5, "argmax per level" if cfg.softmax else "0.5"
    vmetrics: dict = {}
    if not cfg.softmax:
        if isinstance(cfg.threshold, float):
            threshold, source = cfg.threshold, f"{cfg.threshold:g}"
        elif has_val:
            s_val, _, _ = predict(model, data.splits["val"], device=dev, batch_size=cfg.eval_batch_size,
                                  num_workers=cfg.num_workers, amp=cfg.amp)
            threshold = tune_thresholds(data.splits["val"].Y, s_val, data.eval_mask, cfg.threshold)
            source = f"{cfg.threshold}(valid)"
    if has_val:
        vmetrics, vloss = _evaluate(model, data, "val", cfg, dev, levels, loss_fn, threshold)
        vmetrics["loss"] = vloss
    metrics, tloss = _evaluate(model, data, "test", cfg, dev, levels, loss_fn, threshold)
    metrics["loss"] = tloss
    result = CNNResult(
        data=data.name, config=cfg.to_dict(), metrics=metrics, valid_metrics=vmetrics, best_epoch=int(best_epoch),
        epochs_trained=last_epoch, threshold_source=source,
        seconds_per_epoch=train_seconds / max(last_epoch, 1),
        samples_per_second=samples_seen / train_seconds if train_seconds > 0 else float("nan"),
        wall_seconds=time.perf_counter() - t_start, device=str(dev), world_size=info.world_size,
        history=history, model=model)
    if out is not None:
        result.save(out, plot=plot)
    return result


def _gather_rng(info: DistInfo, dev: torch.device) -> list:
    st = _rng_state(dev)
    if not info.distributed:
        return [st]
    import torch.distributed as dist

    allst = [None] * info.world_size
    dist.all_gather_object(allst, st)
    return allst


def _evaluate(model, data: CNNData, split: str, cfg: CNNConfig, dev, levels, loss_fn, threshold):
    sp = data.splits[split]
    S, P, loss = predict(model, sp, device=dev, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers,
                         amp=cfg.amp, loss_fn=loss_fn)
    if P is None:
        P = apply_threshold(S, threshold)
    return classification_metrics(sp.Y, S, P, levels, data.eval_mask), loss
