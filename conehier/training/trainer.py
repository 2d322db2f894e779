"""Training loop for embedding models: seeded negatives per epoch, checkpoints, best epoch.

Every epoch draws its permutation and its negatives from a generator seeded by
``(seed, epoch)``, so a run resumed from a checkpoint (saved at the end of an
epoch) continues exactly as the uninterrupted run would.
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

from ..losses.margin import distance_softmax_loss, max_margin_loss
from ..models.embedding import EmbeddingModel
from ..sampling import NegativeSampler
from .config import TrainConfig
from .row_optim import RowAdam, RowOptimizer, RowRSGD

CHECKPOINT = "checkpoint.pt"


def resolve_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(model: EmbeddingModel, name: str, lr: float) -> torch.optim.Optimizer:
    """``rsgd`` / ``radam`` (geoopt; Riemannian for ball parameters), ``adam``, ``sgd`` (dense), and the
    row-sparse ``row-adam`` (lazy Adam) / ``row-rsgd`` that update only the rows a batch touches."""
    params = list(model.parameters())
    if name == "row-rsgd":
        if model.parametrization == "exp0":
            raise ValueError("row-rsgd moves points on the ball: use parametrization='ball' (or row-adam for exp0)")
        return RowOptimizer(RowRSGD(model.weight, lr=lr, ball=model.parametrization == "ball"))
    if name == "rsgd":
        return geoopt.optim.RiemannianSGD(params, lr=lr)
    if name == "radam":
        return geoopt.optim.RiemannianAdam(params, lr=lr)
    if model.parametrization == "ball":
        raise ValueError(
            f"optimizer {name!r} ignores the Poincaré ball's geometry: use 'rsgd' or 'radam', "
            "or parametrization='exp0' to train Euclidean parameters mapped into the ball"
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "row-adam":
        return RowOptimizer(RowAdam(model.weight, lr=lr))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose rsgd, radam, adam or sgd")


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return g


@dataclass
class TrainState:
    """What a checkpoint holds besides the model and optimizer."""

    epoch: int = 0  # epochs completed
    history: list = field(default_factory=list)
    best: dict | None = None  # {"epoch", "metrics"}; best weights kept in best_weights
    best_weights: torch.Tensor | None = None
    wall_seconds: float = 0.0


class EmbeddingTrainer:
    """Train ``model`` on ``train_pairs`` with negatives from ``sampler``.

    ``evaluate(model) -> dict`` is called every ``eval_every`` epochs (and after
    the last); the epoch with the highest ``valid_f1`` is kept.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        train_pairs: np.ndarray,
        sampler: NegativeSampler,
        config: TrainConfig,
        *,
        evaluate: Callable[[EmbeddingModel], dict] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool = True,
        desc: str = "train",
    ):
        self.model = model
        self.config = config
        self.device = next(model.parameters()).device
        pairs = np.asarray(train_pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ValueError(f"train_pairs must be a non-empty (E, 2) array, got shape {pairs.shape}")
        if pairs.min() < 0 or pairs.max() >= model.n:
            raise ValueError(f"train_pairs refer to node ids outside 0..{model.n - 1}")
        self.train_pairs = torch.as_tensor(pairs, device=self.device)
        self.sampler = sampler
        self.evaluate = evaluate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress = progress
        self.desc = desc
        self.optimizer = make_optimizer(model, config.optimizer, config.lr)
        self.state = TrainState()

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": self.state.__dict__,
                "config": self.config.to_dict(),
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> bool:
        path = Path(path) if path else (self.checkpoint_dir / CHECKPOINT if self.checkpoint_dir else None)
        if path is None or not path.is_file():
            return False
        ck = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = TrainState(**ck["state"])
        return True

    # ------------------------------------------------------------------ loop
    def _lr_for(self, epoch: int) -> float:
        c = self.config
        if epoch < c.burn_in_epochs:
            return c.lr * c.burn_in_factor
        if c.schedule == "constant":
            return c.lr
        span = max(c.epochs - c.burn_in_epochs, 1)
        t = (epoch - c.burn_in_epochs) / span
        if c.schedule == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * t))
        elif c.schedule == "linear":
            f = 1 - t
        else:
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'linear', got {c.schedule!r}")
        return c.lr * (c.final_lr_factor + (1 - c.final_lr_factor) * f)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the positives (epoch is 0-based). Returns the summed loss."""
        c, model = self.config, self.model
        for g in self.optimizer.param_groups:
            g["lr"] = self._lr_for(epoch)
        gen = epoch_generator(c.seed, epoch, self.device)
        pos = self.train_pairs[torch.randperm(len(self.train_pairs), generator=gen, device=self.device)]
        neg = self.sampler.sample(pos, gen)
        pairs = torch.cat([pos[:, None, :], neg], dim=1)  # (E, 1 + k, 2)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        poincare = model.geometry == "poincare"
        row_wise = isinstance(self.optimizer, RowOptimizer)
        for s in range(0, len(pairs), c.batch_size):
            batch = pairs[s:s + c.batch_size]
            if row_wise:  # gather the distinct rows once; update only them
                if batch.numel() >= 2 * model.n:  # a large batch touches (almost) every row: skip the sort
                    rows, inverse = torch.arange(model.n, device=batch.device), batch
                else:
                    rows, inverse = torch.unique(batch, return_inverse=True)
                w = model.weight.detach().index_select(0, rows).requires_grad_()
                e = model.energy_of_rows(w, inverse)
            else:
                e = model(batch)
            if poincare:
                loss = distance_softmax_loss(e[:, 0], e[:, 1:], reduction=c.loss_reduction)
            else:
                loss = max_margin_loss(e[:, 0], e[:, 1:], c.margin, reduction=c.loss_reduction)
            if row_wise:
                (grad,) = torch.autograd.grad(loss, w)
                self.optimizer.step(rows, grad)
                model.project_(rows)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                model.project_()
            total += loss.detach()
        value = float(total)
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} in epoch {epoch + 1}: lower the learning rate")
        return value

    def fit(self, resume: bool = True) -> TrainState:
        c = self.config
        if resume and self.checkpoint_dir is not None:
            self.load_checkpoint()
        start = self.state.epoch
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.epochs, initial=start, desc=self.desc, file=sys.stderr, dynamic_ncols=True, leave=False)
        try:
            for epoch in range(start, c.epochs):
                t0 = time.perf_counter()
                loss = self.train_epoch(epoch)
                secs = time.perf_counter() - t0
                row = {"epoch": epoch + 1, "loss": loss, "seconds": secs}
                last = epoch + 1 == c.epochs
                if self.evaluate is not None and ((epoch + 1) % max(c.eval_every, 1) == 0 or last):
                    metrics = self.evaluate(self.model)
                    row.update(metrics)
                    best = self.state.best
                    if best is None or metrics.get("valid_f1", -1) > best["metrics"].get("valid_f1", -1):
                        self.state.best = {"epoch": epoch + 1, "metrics": dict(metrics)}
                        self.state.best_weights = self.model.weight.detach().clone()
                self.state.history.append(row)
                self.state.epoch = epoch + 1
                self.state.wall_seconds += secs
                if self.checkpoint_dir is not None and ("valid_f1" in row or last):
                    self.save_checkpoint()
                if bar is not None:
                    post = {"loss": f"{loss:.4g}"}
                    if "valid_f1" in row:
                        post["valid_f1"] = f"{row['valid_f1']:.4f}"
                    bar.set_postfix(post)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.state

    def restore_best(self) -> None:
        """Load the weights of the best validation epoch into the model."""
        if self.state.best_weights is not None:
            with torch.no_grad():
                self.model.weight.copy_(self.state.best_weights)

    def snapshot(self) -> dict:
        return copy.deepcopy(self.state.__dict__)
