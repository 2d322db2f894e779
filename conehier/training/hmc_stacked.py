"""Train many HMC models at once as one stacked (vectorised) ensemble.

At C-HMCNN's batch size of 4 one model's training step is a handful of tiny
matrix products, bound by per-op overhead; a benchmark row trains 18 such
models (6 configurations x 3 seeds). :class:`StackedHMCTrainer` trains M models
whose sizes and optimiser settings agree as **one** network with a leading
model axis:

* every linear layer is a :class:`StackedLinear` with weight ``(M, in, out)``
  and bias ``(M, 1, out)``: ``y[m] = x[m] @ W[m] + b[m]`` (``torch.baddbmm``);
* each model draws its own mini-batch order from its own generator seeded with
  its ``config.seed`` -- the same ``randperm`` stream as :class:`HMCTrainer`
  -- so a step gathers ``X[idx]`` with ``idx`` ``(M, B)`` into ``(M, B, F)``;
  dropout masks are drawn for the whole ``(M, B, hidden)`` tensor, independent
  per model;
* models are ordered into contiguous *segments* of equal head / loss
  configuration; each segment has its own stacked output layer (``(Mg, hidden,
  H C)``, so a 2-head rare-node model sits beside 1-head models) and its own
  :class:`~conehier.training.hmc.HMCLoss`, whose :meth:`~HMCLoss.per_model`
  returns the ``(Mg,)`` per-model losses (the max-constraint training output
  as one flattened batched op; sigmoidF1's counts and the rare-node ensemble
  uncertainty per model);
* the step minimises ``sum_m L_m``; model m's parameters get exactly
  ``dL_m/dtheta_m``, and one Adam over the stacked tensors is element-wise,
  hence identical to M independent Adam optimisers
  (``tests/training/test_hmc_stacked.py`` checks this against :class:`HMCTrainer`);
* the step itself (``engine``): on CPU by default
  :class:`~conehier.training.stacked_step.FusedStackStep` (backward through the
  MLP by hand, the Adam update fused with the rank-B weight gradient into one
  compiled kernel per step), else :class:`AutogradStackStep` (autograd +
  ``torch.optim.Adam``, fused where available); both give the same numbers up
  to float rounding.

Initial weights are those :class:`HMCTrainer` would use: each model is built by
:func:`~conehier.training.hmc.build_model` under its own seed and copied into
the stack, so with dropout 0 a stacked run reproduces the separate runs (up to
float rounding of batched vs. single products); with dropout the masks come
from the stack's generator (seeded by ``seed``, default the first config's).

Protocol and results are those of :class:`HMCTrainer` (its module docs):
fixed epochs on train (+ valid), or early stopping per model on its own valid
AU(PRC) (each model keeps its best epoch) and retraining for each model's own
number of epochs (the state of model m is taken at its epoch ``e_m``). A model
that is done -- out of patience, or past its own ``e_m`` -- leaves the stack
(:meth:`StackedHMC.subset`, with its optimiser state cut to the remaining rows),
so the later epochs cost only what the remaining models need; the remaining
models' steps are unchanged, except that their dropout masks are then drawn
for the smaller stack. One :class:`~conehier.training.hmc.HMCResult` per
config; its ``seconds_per_epoch`` is the stack's time per model-epoch,
``wall_seconds`` the stack's divided by M (amortised per model), and
``stack_models`` is M.

Cost: the stack removes per-op overhead; the fused step removes the stored
weight gradient and runs Adam as one vectorised pass (at batch 4 a step is
bound by streaming the weights and Adam's moments, so on the CPU
:func:`fit_stacked` trains stacks of at most :data:`DEFAULT_STACK_MODELS` models,
one after the other, whose state stays close to the core; on a GPU one stack);
:func:`stack_speed` measures the per-epoch time of a stack against one model,
:func:`stack_step_seconds` one step of either engine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from functools import partial
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..evaluation.functional import average_precision
from ..models.heads import HMCModel, build_head, mlp_blocks, sample_weights
from .hmc import (
    _WEIGHTINGS,
    HMCConfig,
    HMCResult,
    _as_tensors,
    _make_optimizer,
    _seeded,
    _threads,
    _training_parts,
    build_model,
    evaluate_hmc,
    make_loss,
    tune_thresholds,
)
from .stacked_step import FusedStackStep

__all__ = [
    "DEFAULT_STACK_MODELS",
    "default_stack_models",
    "ENGINES",
    "STACK_FIELDS",
    "AutogradStackStep",
    "StackedHMC",
    "StackedHMCTrainer",
    "StackedLinear",
    "fit_stacked",
    "plan_stacks",
    "segment_key",
    "stack_key",
    "stack_speed",
    "stack_step_seconds",
]

#: HMCConfig fields that must agree between the models of one stack.
STACK_FIELDS: tuple[str, ...] = (
    "hidden", "layers", "dropout", "activation", "lr", "weight_decay", "batch_size", "epochs", "max_epochs",
    "patience", "eval_every", "retrain", "valid_fraction", "threads", "device",
)


#: Most models per stack by default (:func:`plan_stacks`). Small stacks are faster per model
#: than large ones on CPU: a step touches every weight and both Adam moments of its stack,
#: and a stack of a few C-HMCNN-sized models keeps that state close to the core. Measured on
#: 2 EPYC cores (both busy, fused step, batch 4), ms per model-step at 1 / 3 / 9 models:
#: cellcycle 1.9 / 1.35 / 2.05, church 2.0 / 1.37 / 1.92, pheno_GO 5.3 / 4.5 / 7.1; at batch 64
#: Diatoms 41.6 / 37.3 / 41.0; the widest (seq, 2000 hidden) 12.2 / 12.2 / 11.3.
DEFAULT_STACK_MODELS = 3


def default_stack_models(device) -> int | None:
    """Most models per stack for ``max_models="auto"``: :data:`DEFAULT_STACK_MODELS` on the CPU,
    no limit on other devices. A GPU step of small models is bound by kernel launches, so a
    larger stack costs less per model: the cellcycle_FUN row on an H200 (autograd step), ms
    per model-step at 3 / 9 / 18 models: 0.68 / 0.39 / 0.40 (fused step 0.66 / 0.45 / 0.57)."""
    return DEFAULT_STACK_MODELS if torch.device(device).type == "cpu" else None


#: Training-step engines: ``fused`` (:class:`~conehier.training.stacked_step.FusedStackStep`:
#: backpropagation by hand, Adam fused with the weight gradient), ``autograd``
#: (:class:`AutogradStackStep`: autograd + ``torch.optim.Adam``), ``auto`` (fused on CPU).
ENGINES: tuple[str, ...] = ("auto", "fused", "autograd")


class AutogradStackStep:
    """The reference step: ``zs = stack(x)``, autograd through everything, ``optimizer.step()``.

    Same interface as :class:`~conehier.training.stacked_step.FusedStackStep`.
    """

    def __init__(self, stack, optimizer: torch.optim.Optimizer):
        self.stack, self.optimizer = stack, optimizer

    def step(self, x: Tensor, per_model_losses: Callable[[list[Tensor]], Tensor]) -> Tensor:
        per = per_model_losses(self.stack(x))
        self.optimizer.zero_grad(set_to_none=True)
        per.sum().backward()
        self.optimizer.step()
        return per.detach()

    def subset(self, stack: "StackedHMC", models: Sequence[int]) -> "AutogradStackStep":
        """The step of ``stack = self.stack.subset(models)``: an optimiser of the same
        class and settings whose per-parameter state holds the rows of ``models``."""
        old = self.optimizer
        settings = {k: v for k, v in old.param_groups[0].items() if k != "params"}
        new = type(old)(stack.stacked_parameters(), **settings)
        params, new_params = self.stack.stacked_parameters(), stack.stacked_parameters()
        for p_new, (i, rows) in zip(new_params, self.stack.parameter_rows(models)):
            p_old = params[i]
            for key, t in old.state.get(p_old, {}).items():
                if isinstance(t, Tensor) and t.shape == p_old.shape:
                    t = t.index_select(0, torch.as_tensor(rows, device=t.device))
                elif isinstance(t, Tensor):  # a per-parameter value such as Adam's step count
                    t = t.clone()
                new.state[p_new][key] = t
        return AutogradStackStep(stack, new)


def stack_key(cfg: HMCConfig) -> tuple:
    """The values of :data:`STACK_FIELDS`: configs with equal keys can share a stack."""
    return tuple(getattr(cfg, f) for f in STACK_FIELDS)


def segment_key(cfg: HMCConfig) -> tuple:
    """Head and loss settings: models with equal keys share an output-layer segment and a loss."""
    return (cfg.model, cfg.loss, cfg.heads, json.dumps(cfg.loss_options, sort_keys=True), cfg.class_weight,
            cfg.mcm_method)


# --------------------------------------------------------------------------
# Stacked network
# --------------------------------------------------------------------------
class StackedLinear(nn.Module):
    """M independent linear layers: ``(M, B, in) -> (M, B, out)``, ``y[m] = x[m] W[m] + b[m]``.

    ``weight`` is ``(M, in, out)`` (the transpose of ``nn.Linear.weight`` per model),
    ``bias`` ``(M, 1, out)``.
    """

    def __init__(self, n_models: int, in_features: int, out_features: int):
        super().__init__()
        self.n_models, self.in_features, self.out_features = n_models, in_features, out_features
        self.weight = nn.Parameter(torch.zeros(n_models, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_models, 1, out_features))

    @torch.no_grad()
    def load_linears(self, linears: Sequence[nn.Linear]) -> None:
        """Copy M ``nn.Linear`` layers (model order) into the stack."""
        if len(linears) != self.n_models:
            raise ValueError(f"expected {self.n_models} layers, got {len(linears)}")
        for m, lin in enumerate(linears):
            if lin.weight.shape != (self.out_features, self.in_features):
                raise ValueError(f"layer {m} has shape {tuple(lin.weight.shape)}, expected "
                                 f"({self.out_features}, {self.in_features})")
            self.weight[m].copy_(lin.weight.T)
            self.bias[m, 0].copy_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[0] != self.n_models or x.shape[2] != self.in_features:
            raise ValueError(f"expected input ({self.n_models}, B, {self.in_features}), got {tuple(x.shape)}")
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n_models={self.n_models}, in_features={self.in_features}, out_features={self.out_features}"


class StackedHMC(nn.Module):
    """M MLP + sigmoid-head models (:func:`~conehier.training.hmc.build_model`) as one network.

    ``configs`` must share :func:`stack_key` and be ordered so that equal
    :func:`segment_key` values are contiguous (``segments``: ``(start, stop)``
    model ranges). :meth:`forward` maps ``(M, B, F)`` features to one logits
    tensor per segment, ``(Mg, B, C)`` or ``(Mg, H, B, C)`` for H output heads
    (the layout of the head's own forward, per model). ``heads`` holds one head
    module per segment, used for its max-constraint and scoring methods only
    (its own linear layer is not used).
    """

    def __init__(self, configs: Sequence[HMCConfig], n_features: int, hierarchy):
        super().__init__()
        cfgs = list(configs)
        if not cfgs:
            raise ValueError("a stack needs at least one config")
        if len({stack_key(c) for c in cfgs}) != 1:
            raise ValueError(f"configs of one stack must agree on {', '.join(STACK_FIELDS)}")
        for c in cfgs:
            if c.model not in ("mlp", "mcm-mlp"):
                raise ValueError(f"only sigmoid heads (mlp, mcm-mlp) can be stacked, got {c.model!r}")
        c0 = cfgs[0]
        self.configs, self.hierarchy = cfgs, hierarchy
        self.n_models, self.n_features, self.n_nodes = len(cfgs), int(n_features), hierarchy.n
        self.dropout, self.activation = c0.dropout, c0.activation
        dims = [self.n_features] + [c0.hidden] * (c0.layers - 1)
        self.layers = nn.ModuleList(StackedLinear(self.n_models, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_features = dims[-1]
        self.segments: list[tuple[int, int]] = []
        keys: list[tuple] = []
        for i, c in enumerate(cfgs):
            k = segment_key(c)
            if keys and k == keys[-1]:
                self.segments[-1] = (self.segments[-1][0], i + 1)
            elif k in keys:
                raise ValueError("configs with equal head / loss settings must be contiguous (see segment_key)")
            else:
                keys.append(k)
                self.segments.append((i, i + 1))
        self.n_heads = [cfgs[a].heads for a, _ in self.segments]
        self.heads = nn.ModuleList(build_head(cfgs[a].model, 1, hierarchy, n_heads=cfgs[a].heads,
                                              mcm_method=cfgs[a].mcm_method) for a, _ in self.segments)
        for h in self.heads:  # templates: their own linear layers never train
            h.requires_grad_(False)
        self.outputs = nn.ModuleList(StackedLinear(b - a, self.out_features, h * self.n_nodes)
                                     for (a, b), h in zip(self.segments, self.n_heads))

    def stacked_parameters(self) -> list[nn.Parameter]:
        """The trainable stacked tensors (hidden layers and output layers)."""
        return [p for mod in (self.layers, self.outputs) for p in mod.parameters()]

    def parameter_rows(self, models: Sequence[int]) -> list[tuple[int, list[int]]]:
        """For each stacked parameter of :meth:`subset` ``(models)``: the index of the
        parameter of this stack (:meth:`stacked_parameters` order) it is cut from and
        the rows along its leading (model) axis."""
        idx = self._check_models(models)
        n_hidden = 2 * len(self.layers)
        out = [(i, idx) for i in range(n_hidden)]
        for s, (a, b) in enumerate(self.segments):
            local = [m - a for m in idx if a <= m < b]
            if local:
                out += [(n_hidden + 2 * s, local), (n_hidden + 2 * s + 1, local)]
        return out

    def select_rows(self, tensors: Sequence[Tensor], models: Sequence[int]) -> list[Tensor]:
        """The rows of ``models`` (stack indices, increasing) of tensors laid out like
        :meth:`stacked_parameters`, laid out like those of :meth:`subset` ``(models)``
        (for the parameters and an optimiser's moments)."""
        n = 2 * (len(self.layers) + len(self.segments))
        if len(tensors) != n:
            raise ValueError(f"expected {n} tensors (stacked_parameters' layout), got {len(tensors)}")
        return [tensors[i].index_select(0, torch.as_tensor(rows, device=tensors[i].device))
                for i, rows in self.parameter_rows(models)]

    @torch.no_grad()
    def subset(self, models: Sequence[int]) -> "StackedHMC":
        """A new stack of ``models`` (stack indices, increasing) with copies of their weights."""
        idx = self._check_models(models)
        sub = StackedHMC([self.configs[m] for m in idx], self.n_features, self.hierarchy)
        sub.to(self.outputs[0].weight.device).train(self.training)
        for p, t in zip(sub.stacked_parameters(), self.select_rows(self.stacked_parameters(), idx)):
            p.copy_(t)
        return sub

    def _check_models(self, models: Sequence[int]) -> list[int]:
        idx = [int(m) for m in models]
        if not idx or any(b <= a for a, b in zip(idx[:-1], idx[1:])) or idx[0] < 0 or idx[-1] >= self.n_models:
            raise ValueError(f"models must be increasing stack indices in [0, {self.n_models}), got {idx}")
        return idx

    @torch.no_grad()
    def load_models(self, models: Sequence[HMCModel]) -> "StackedHMC":
        """Copy M :class:`HMCModel` instances (stack order) into the stack."""
        if len(models) != self.n_models:
            raise ValueError(f"expected {self.n_models} models, got {len(models)}")
        for k, layer in enumerate(self.layers):
            layer.load_linears([m.backbone.layers[k] for m in models])
        for (a, b), out in zip(self.segments, self.outputs):
            out.load_linears([m.head.linear for m in models[a:b]])
        return self

    def backbone(self, x: Tensor) -> Tensor:
        """``(M, B, F) -> (M, B, hidden)``: ``layers - 1`` blocks Linear -> activation -> dropout."""
        return mlp_blocks(x, self.layers, self.activation, self.dropout, self.training)

    def forward(self, x: Tensor) -> list[Tensor]:
        h = self.backbone(x)
        out = []
        for (a, b), lin, nh in zip(self.segments, self.outputs, self.n_heads):
            z = lin(h[a:b])  # (Mg, B, H C)
            if nh > 1:  # per model: view (B, H, C), transpose -> (H, B, C), as _SigmoidHead.forward
                z = z.view(b - a, z.shape[1], nh, self.n_nodes).transpose(1, 2)
            out.append(z)
        return out

    @torch.no_grad()
    def scores(self, X, *, max_elements: int = 1 << 24) -> np.ndarray:
        """``(M, N, C)`` float64 node scores of every model (eval mode) on ``(N, F)`` features."""
        was = self.training
        self.eval()
        dev = self.layers[0].weight.device if len(self.layers) else self.outputs[0].weight.device
        X = torch.as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X, dtype=torch.float32)
        width = max([self.out_features] + [h * self.n_nodes for h in self.n_heads])
        chunk = max(1, max_elements // (self.n_models * width))
        res = np.zeros((self.n_models, X.shape[0], self.n_nodes))
        for s in range(0, X.shape[0], chunk):
            xb = X[s:s + chunk].to(dev)
            zs = self(xb.expand(self.n_models, *xb.shape))
            for (a, b), head, z in zip(self.segments, self.heads, zs):
                p = torch.sigmoid(head.constrained_logits(z))
                res[a:b, s:s + chunk] = (p.mean(1) if z.dim() == 4 else p).double().cpu().numpy()
        self.train(was)
        return res

    def state_of(self, m: int) -> list[Tensor]:
        """Copies of model ``m``'s slices of the stacked parameters (for :meth:`load_state_of`)."""
        seg = self._segment_of(m)
        a = self.segments[seg][0]
        out = [lin.weight[m].detach().clone() for lin in self.layers] + [lin.bias[m].detach().clone()
                                                                          for lin in self.layers]
        o = self.outputs[seg]
        return out + [o.weight[m - a].detach().clone(), o.bias[m - a].detach().clone()]

    @torch.no_grad()
    def load_state_of(self, m: int, state: Sequence[Tensor]) -> None:
        seg = self._segment_of(m)
        a = self.segments[seg][0]
        k = len(self.layers)
        for i, lin in enumerate(self.layers):
            lin.weight[m].copy_(state[i])
            lin.bias[m].copy_(state[k + i])
        self.outputs[seg].weight[m - a].copy_(state[2 * k])
        self.outputs[seg].bias[m - a].copy_(state[2 * k + 1])

    def _segment_of(self, m: int) -> int:
        if not 0 <= m < self.n_models:
            raise IndexError(f"model index {m} out of range for a stack of {self.n_models}")
        return next(i for i, (a, b) in enumerate(self.segments) if a <= m < b)

    @torch.no_grad()
    def to_model(self, m: int, config: HMCConfig, hierarchy) -> HMCModel:
        """Model ``m`` as a stand-alone :class:`HMCModel` (a copy of its weights)."""
        model = build_model(config, self.n_features, hierarchy).to(self.outputs[0].weight.device)
        seg = self._segment_of(m)
        a = self.segments[seg][0]
        for lin, st in zip(model.backbone.layers, self.layers):
            lin.weight.copy_(st.weight[m].T)
            lin.bias.copy_(st.bias[m, 0])
        model.head.linear.weight.copy_(self.outputs[seg].weight[m - a].T)
        model.head.linear.bias.copy_(self.outputs[seg].bias[m - a, 0])
        return model


class _LiveStack:
    """The models of a stack still in training, with what their steps need.

    ``models``: their indices in the full stack (increasing); ``stack`` /
    ``opt``: their network and training step; ``losses`` / ``extras``: one loss
    (and its per-sample extras) per segment of ``stack``; ``gens`` /
    ``draw_ws``: each model's batch-order generator and sampling weights.
    :meth:`keep` drops the models that are done, so that later epochs cost only
    what the remaining ones need (early stopping: models out of patience;
    retraining: models past their own number of epochs).
    """

    def __init__(self, stack: StackedHMC, opt, losses: list, extras: list, gens: list, draw_ws: list):
        self.stack, self.opt, self.losses, self.extras = stack, opt, losses, extras
        self.gens, self.draw_ws = list(gens), list(draw_ws)
        self.models = np.arange(stack.n_models)

    def keep(self, wanted: np.ndarray) -> None:
        """Keep the live models ``m`` with ``wanted[m]`` (a mask over the full stack)."""
        sel = [j for j, m in enumerate(self.models) if wanted[m]]
        if len(sel) == len(self.models):
            return
        if sel:
            old = self.stack
            self.stack = old.subset(sel)
            self.opt = self.opt.subset(self.stack, sel)
            segs = sorted({old._segment_of(j) for j in sel})
            self.losses = [self.losses[k] for k in segs]
            self.extras = [self.extras[k] for k in segs]
        self.gens = [self.gens[j] for j in sel]
        self.draw_ws = [self.draw_ws[j] for j in sel]
        self.models = self.models[sel]


# --------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------
class StackedHMCTrainer:
    """Seeded trainer for M :class:`HMCConfig` that share :func:`stack_key` (module docs).

    ``fit(dataset)`` returns one :class:`HMCResult` per config, in the given
    order. ``seed``: the stack's dropout generator (default: the first config's
    seed). ``log``: a callable receiving progress lines (``None``: silent).
    ``engine``: the training step (:data:`ENGINES`; the same numbers up to float rounding).
    """

    def __init__(self, configs: Sequence[HMCConfig], *, seed: int | None = None,
                 log: Callable[[str], None] | None = None, engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.configs = list(configs)
        if not self.configs:
            raise ValueError("StackedHMCTrainer needs at least one config")
        for c in self.configs:
            if not isinstance(c, HMCConfig):
                raise TypeError(f"configs must be HMCConfig instances, got {type(c).__name__}")
        if len({stack_key(c) for c in self.configs}) != 1:
            diff = [f for f in STACK_FIELDS if len({getattr(c, f) for c in self.configs}) > 1]
            raise ValueError(f"configs of one stack must agree on {', '.join(diff)} (use fit_stacked to group them)")
        # stack order: segments contiguous, first-appearance order; self.order[j] = index of the j-th stacked config
        first: dict[tuple, int] = {}
        for i, c in enumerate(self.configs):
            first.setdefault(segment_key(c), i)
        self.order = sorted(range(len(self.configs)), key=lambda i: (first[segment_key(self.configs[i])], i))
        self.seed = self.configs[0].seed if seed is None else int(seed)
        self.log = log

    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)

    # ------------------------------------------------------------ internals
    def _new_stack(self, ds, device) -> tuple[StackedHMC, "FusedStackStep | AutogradStackStep", list]:
        cfgs = [self.configs[i] for i in self.order]
        models = []
        for c in cfgs:  # the initial weights HMCTrainer would draw for each config
            with _seeded(c.seed, device):
                models.append(build_model(c, ds.n_features, ds.hierarchy))
        stack = StackedHMC(cfgs, ds.n_features, ds.hierarchy).load_models(models).to(device)
        c0 = cfgs[0]
        if self.engine == "fused" or (self.engine == "auto" and device.type == "cpu"):
            opt = FusedStackStep(stack, lr=c0.lr, weight_decay=c0.weight_decay)
        else:
            opt = AutogradStackStep(stack, _make_optimizer(SimpleNamespace(parameters=stack.stacked_parameters),
                                                           c0, device))
        return stack, opt, cfgs

    def _losses(self, stack: StackedHMC, cfgs, ds, Y_np: np.ndarray, device):
        losses, extras, shared = [], [], {}
        for (a, _), head in zip(stack.segments, stack.heads):
            fn = make_loss(cfgs[a], SimpleNamespace(head=head), ds.hierarchy, ds.eval_mask, Y_np, device)
            ex = fn.prepare(Y_np)
            for k, name in enumerate(fn._extras):  # the pair mask depends on labels + hierarchy only: share it
                if name == "pairs":
                    ex[k] = shared.setdefault(("pairs", head.mcm.method), ex[k])
            losses.append(fn)
            extras.append(ex)
        return losses, extras

    def _train(self, live: "_LiveStack", X: Tensor, Y: Tensor, epochs: int, on_epoch=None):
        """Up to ``epochs`` epochs of the models of ``live``; ``on_epoch(epoch, mean) -> stop?``
        gets the ``(n_live,)`` mean losses and may :meth:`_LiveStack.keep` fewer models
        for the epochs after it (training stops when none is left).

        Returns (epochs run, wall seconds, CPU seconds, model-epochs) of the training loops.
        """
        n, bs = X.shape[0], self.configs[0].batch_size
        n_steps = math.ceil(n / bs)
        seconds, cpu, done, model_epochs = 0.0, 0.0, 0, 0
        for epoch in range(1, epochs + 1):
            stack, segments, losses, extras = live.stack, live.stack.segments, live.losses, live.extras
            stack.train()
            t0, c0 = time.perf_counter(), time.process_time()
            perms = torch.stack([
                torch.randperm(n, generator=g) if w is None else torch.multinomial(w, n, replacement=True, generator=g)
                for g, w in zip(live.gens, live.draw_ws)]).to(X.device)  # (M, n): model m's sample order
            total = torch.zeros(stack.n_models, device=X.device)
            for i in range(0, n, bs):
                idx = perms[:, i:i + bs]  # (M, B)
                per = live.opt.step(X[idx], lambda zs: torch.cat([
                    fn.per_model(z, Y[idx[a:b]], *(e[idx[a:b]] for e in ex))
                    for (a, b), z, fn, ex in zip(segments, zs, losses, extras)]))
                total += per
            mean = (total / n_steps).cpu().numpy()
            seconds += time.perf_counter() - t0
            cpu += time.process_time() - c0
            done, model_epochs = epoch, model_epochs + stack.n_models
            bad = np.flatnonzero(~np.isfinite(mean))
            if bad.size:
                c = self.configs[self.order[live.models[bad[0]]]]
                raise FloatingPointError(f"training loss became {mean[bad[0]]} at epoch {epoch} for "
                                         f"{c.model} + {c.loss}, seed {c.seed}")
            if on_epoch is not None and on_epoch(epoch, mean):
                break
            if not len(live.models):
                break
        return done, seconds, cpu, model_epochs

    # ---------------------------------------------------------------- fit
    def fit(self, dataset) -> list[HMCResult]:
        c0 = self.configs[0]
        device = torch.device(c0.device)
        t_start = time.perf_counter()
        with _threads(c0.threads):
            results = self._fit(dataset, device)
        wall = (time.perf_counter() - t_start) / len(results)
        for r in results:
            r.wall_seconds = wall
        return results

    def _fit(self, ds, device) -> list[HMCResult]:
        c0 = self.configs[0]
        M = len(self.configs)
        select = c0.epochs is None
        full = ds
        ds, has_valid, train_part, final_parts, final_name = _training_parts(ds, c0)
        tensors = partial(_as_tensors, device=device)
        cfgs = [self.configs[i] for i in self.order]  # stack order from here on

        def draw_weights(c, Y_np):
            power = _WEIGHTINGS[c.sampling]
            if power is None:
                return None
            return torch.as_tensor(sample_weights(Y_np, power=power, mask=ds.eval_mask), dtype=torch.float64)

        def gens():
            return [torch.Generator().manual_seed(c.seed) for c in cfgs]

        history: list[list[dict]] = [[] for _ in range(M)]
        thresholds, sources = [], []
        for c in cfgs:
            if isinstance(c.threshold, str):
                thresholds.append(0.5)
                sources.append("0.5 (no held-out validation scores)")
            else:
                thresholds.append(c.threshold)
                sources.append(f"fixed {c.threshold:g}")

        def tune_all(stack, which):
            s_val = stack.scores(ds.X_valid)
            for m in which:
                if isinstance(cfgs[m].threshold, str):
                    thresholds[m] = tune_thresholds(ds.Y_valid, s_val[m], ds.eval_mask, cfgs[m].threshold)
                    sources[m] = f"{cfgs[m].threshold}(valid)"

        best_epoch = [c0.epochs or 0] * M
        sel_seconds = sel_cpu = 0.0
        sel_epochs = [0] * M
        # ---- phase A: each model's number of epochs, on valid
        if select:
            if not has_valid:
                raise ValueError(f"{ds.name}: early stopping needs a validation split")
            with _seeded(self.seed, device):
                stack, opt, _ = self._new_stack(ds, device)
                losses, extras = self._losses(stack, cfgs, ds, ds.Y_train, device)
                X, Y = tensors(train_part)
                best_ap = np.full(M, -1.0)
                since = np.zeros(M, dtype=int)
                states: list = [None] * M
                active = np.ones(M, dtype=bool)

                live = _LiveStack(stack, opt, losses, extras, gens(), [draw_weights(c, ds.Y_train) for c in cfgs])

                def on_epoch(epoch, mean):
                    evaluate = epoch % c0.eval_every == 0 or epoch == c0.max_epochs
                    s_val = live.stack.scores(ds.X_valid) if evaluate else None
                    for j, m in enumerate(live.models):  # live models are active: keep() drops the others
                        row = {"epoch": epoch, "loss": float(mean[j])}
                        if evaluate:
                            ap = average_precision(ds.Y_valid, s_val[j], evaluate=ds.eval_mask)
                            row["valid_auprc"] = ap
                            if ap > best_ap[m]:
                                best_ap[m], best_epoch[m], since[m] = ap, epoch, 0
                                states[m] = live.stack.state_of(j)
                            else:
                                since[m] += 1
                        history[m].append(row)
                        sel_epochs[m] = epoch
                        if since[m] >= c0.patience:
                            active[m] = False
                    if evaluate:
                        self._say(f"epoch {epoch:4d}  valid AU(PRC) best " + " ".join(f"{a:.4f}" for a in best_ap)
                                  + f"  ({int(active.sum())}/{M} still improving)")
                    live.keep(active)  # the models out of patience stop training
                    return not active.any()

                _, sel_seconds, sel_cpu, sel_model_epochs = self._train(live, X, Y, c0.max_epochs, on_epoch)
                for m in range(M):
                    stack.load_state_of(m, states[m])
                tune_all(stack, range(M))

        # ---- phase B: the final models
        if select and not c0.retrain:
            final, n_final = stack, len(ds.X_train)
            epochs_trained = sel_epochs
            seconds, cpu, model_epochs = sel_seconds, sel_cpu, sel_model_epochs
        else:
            targets = np.array(best_epoch if select else [c0.epochs] * M)
            with _seeded(self.seed, device):
                final, opt, _ = self._new_stack(ds, device)
                final_y = np.concatenate([p[1] for p in final_parts])
                losses, extras = self._losses(final, cfgs, ds, final_y, device)
                X, Y = tensors(*final_parts)
                live = _LiveStack(final, opt, losses, extras, gens(), [draw_weights(c, final_y) for c in cfgs])
                last = int(targets.max())
                snap: dict[int, list] = {}

                def on_final(epoch, mean):
                    for j, m in enumerate(live.models):
                        if not select:
                            history[m].append({"epoch": epoch, "loss": float(mean[j])})
                        if targets[m] == epoch and epoch < last:  # model m is done: its final state
                            snap[m] = live.stack.state_of(j)
                    if epoch % max(1, c0.eval_every * 10) == 0 or epoch == last:
                        self._say(f"[{final_name}] epoch {epoch:4d}/{last}  loss "
                                  + " ".join(f"{v:.4f}" for v in mean))
                    if epoch < last:
                        live.keep(targets > epoch)
                    return False

                run, seconds, cpu, model_epochs = self._train(live, X, Y, last, on_final)
                if live.stack is not final:
                    for j, m in enumerate(live.models):
                        final.load_state_of(m, live.stack.state_of(j))
                for m, st in snap.items():
                    final.load_state_of(m, st)
            n_final = X.shape[0]
            epochs_trained = targets
            if not select and not c0.retrain and has_valid:
                tune_all(final, [m for m in range(M) if isinstance(cfgs[m].threshold, str)])
        # time per model-epoch (the stack shrinks as models finish)
        spe, cpe = seconds / max(1, model_epochs), cpu / max(1, model_epochs)

        test_scores = final.scores(ds.X_test)
        y_freq = full.Y_train
        results: list[HMCResult | None] = [None] * M
        for m, orig in enumerate(self.order):
            metrics = evaluate_hmc(ds.Y_test, test_scores[m], ds.eval_mask, y_freq, threshold=thresholds[m])
            results[orig] = HMCResult(
                dataset=ds.name,
                config=cfgs[m].to_dict(),
                metrics=metrics,
                best_epoch=int(best_epoch[m]),
                epochs_trained=int(epochs_trained[m]),
                final_train=final_name,
                threshold_source=sources[m],
                seconds_per_epoch=spe,
                samples_per_second=n_final / spe if spe > 0 else float("nan"),
                wall_seconds=0.0,
                cpu_seconds_per_epoch=cpe,
                history=history[m],
                test_scores=test_scores[m],
                model=final.to_model(m, cfgs[m], ds.hierarchy),
                stack_models=M,
            )
        self.stack_ = final
        return results


def fit_stacked(dataset, configs: Sequence[HMCConfig], *, max_models: int | str | None = "auto",
                log: Callable[[str], None] | None = None, engine: str = "auto") -> list[HMCResult]:
    """Train and evaluate every config in stacks, one stack after the other.

    Configs are grouped by :func:`stack_key` (first-appearance order), each
    group split into stacks of at most ``max_models`` (``"auto"``:
    :func:`default_stack_models` of the group's device; ``None``: no limit) and
    trained with :class:`StackedHMCTrainer`. Returns one
    :class:`~conehier.training.hmc.HMCResult` per config, in the given order.
    """
    configs = list(configs)
    results: list[HMCResult | None] = [None] * len(configs)
    for part in plan_stacks(configs, max_models):
        if log is not None:
            log(f"--- stack of {len(part)} model(s): " + ", ".join(
                f"{configs[i].model}+{configs[i].loss}/seed {configs[i].seed}" for i in part))
        trainer = StackedHMCTrainer([configs[i] for i in part], log=log, engine=engine)
        for i, r in zip(part, trainer.fit(dataset)):
            results[i] = r
    return results


def plan_stacks(configs: Sequence[HMCConfig], max_models: int | str | None = "auto") -> list[list[int]]:
    """Indices of the configs of each stack: grouped by :func:`stack_key` (first-appearance
    order), each group split into stacks of at most ``max_models`` (``"auto"``:
    :func:`default_stack_models` of the group's device; ``None``: no limit)."""
    if max_models != "auto" and max_models is not None and (isinstance(max_models, str) or max_models < 1):
        raise ValueError(f"max_models must be 'auto', None or >= 1, got {max_models!r}")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(stack_key(c), []).append(i)
    stacks = []
    for idx in groups.values():
        cap = default_stack_models(configs[idx[0]].device) if max_models == "auto" else max_models
        size = len(idx) if cap is None else cap
        stacks += [idx[s:s + size] for s in range(0, len(idx), size)]
    return stacks


def stack_step_seconds(dataset, configs: Sequence[HMCConfig], *, steps: int = 50,
                       repeats: int = 1, engine: str = "auto") -> tuple[float, float]:
    """Measured (wall, CPU) seconds of one training step of ``configs`` as one stack.

    Steps on the first ``steps`` batches of train + valid (median over
    ``repeats``, after a 10-step warm-up); no evaluation. Multiply by
    ``ceil(N / batch)`` and the epochs for the training cost of a run.
    """
    c0 = configs[0]
    parts = [(dataset.X_train, dataset.Y_train)]
    if dataset.X_valid is not None:
        parts.append((dataset.X_valid, dataset.Y_valid))
    X_np, Y_np = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    steps = max(1, min(steps, math.ceil(len(X_np) / c0.batch_size)))
    n = min(len(X_np), steps * c0.batch_size)
    device = torch.device(c0.device)
    with _threads(c0.threads):
        tr = StackedHMCTrainer([dataclasses.replace(c, epochs=1) for c in configs], engine=engine)
        stack, opt, scfgs = tr._new_stack(dataset, device)
        losses, extras = tr._losses(stack, scfgs, dataset, Y_np[:n], device)
        X = torch.as_tensor(X_np[:n], dtype=torch.float32, device=device)
        Y = torch.as_tensor(Y_np[:n], dtype=torch.float32, device=device)
        live = _LiveStack(stack, opt, losses, extras, [torch.Generator().manual_seed(c.seed) for c in scfgs],
                          [None] * len(scfgs))
        w = 10 * c0.batch_size
        tr._train(live, X[:w], Y[:w], 1)  # warm-up
        runs = [tr._train(live, X, Y, 1)[1:3] for _ in range(repeats)]
    wall, cpu = np.median(np.array(runs), axis=0)
    k = math.ceil(n / c0.batch_size)
    return float(wall) / k, float(cpu) / k


def stack_speed(dataset, config: HMCConfig, sizes: Sequence[int] = (1, 18), *, steps: int = 200,
                repeats: int = 3) -> dict[int, tuple[float, float]]:
    """Measured seconds per epoch (train + valid, batch ``config.batch_size``) of stacks of each size.

    The stack holds ``size`` copies of ``config`` with seeds 0..size-1; the time
    is the median over ``repeats`` of ``steps`` training steps
    (:func:`stack_step_seconds`), scaled to one epoch of ``ceil(N / batch)``
    steps. Returns ``{size: (wall, CPU) seconds per epoch}`` of the whole stack
    (divide by the size for the cost per model).
    """
    n_all = len(dataset.X_train) + (len(dataset.X_valid) if dataset.X_valid is not None else 0)
    n_epoch = math.ceil(n_all / config.batch_size)
    out = {}
    for size in sizes:
        cfgs = [dataclasses.replace(config, seed=s) for s in range(size)]
        wall, cpu = stack_step_seconds(dataset, cfgs, steps=steps, repeats=repeats)
        out[size] = (wall * n_epoch, cpu * n_epoch)
    return out
