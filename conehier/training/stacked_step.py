"""One training step of a :class:`~conehier.training.hmc_stacked.StackedHMC` with hand-written
backpropagation through the MLP and the Adam update fused with the weight gradient.

Why: at C-HMCNN's batch size of 4 a step of an MLP is memory-bound, not
arithmetic-bound. With autograd and ``torch.optim.Adam`` about ten
parameter-sized arrays pass through memory per step: the weights are read by the
forward product and by the input gradient, the weight gradient ``G = X^T D`` (a
rank-B outer product) is written by one batched product and read back by Adam,
which also reads and writes the weights and both moments -- and neither the
rank-4 product nor Adam's separate pass runs near the memory bandwidth. Here
the weight gradient is never stored; one compiled loop per weight matrix computes

    g = X^T D + wd * W                     (X (M, B, I) layer input, D (M, B, O) output gradient)
    m <- m + (1 - beta1) (g - m)
    v <- beta2 v + (1 - beta2) g^2
    W <- W - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

which is ``torch.optim.Adam`` (L2 weight decay, ``amsgrad=False``) to float
rounding. On CPU each weight's update is a graph compiled by TorchInductor
(``torch.compile``): one vectorised loop over the weight matrix and its moments.
Where that is not possible (no C++ compiler, another device, or a stack too small
to repay the compilation) the same formula runs as eager torch ops.
For B > ``RANK_LIMIT`` the weight gradient is one batched matrix product (BLAS)
and only the Adam update is fused.

The step itself (:meth:`FusedStackStep.step`):

* forward without autograd through the hidden layers, keeping each layer's input
  and its gate ``act'(a) * dropout mask / (1 - p)`` (the mask is
  :func:`~conehier.models.heads.dropout_noise` of the layer's shape from the
  global generator, as the autograd path draws it, so a seeded run draws the
  same masks);
* the output layers' logits are autograd leaves; the per-model losses (any
  :class:`~conehier.training.hmc.HMCLoss`, max-constraint included) are
  differentiated by autograd down to them only;
* backward by hand: ``dX = D W^T`` with the weights before their update, then
  the fused update of that layer, from the output layer down.

``tests/training/test_stacked_step.py`` checks the parameters after several
steps against autograd + ``torch.optim.Adam`` (dropout on).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..models.heads import dropout_noise

__all__ = ["COMPILE_MIN_PARAMS", "RANK_LIMIT", "FusedStackStep", "adam_rank_update", "adam_update", "adam_update_all",
           "fused_kernels_compiled"]

#: Stacks with fewer parameters run the update eagerly unless ``compile=True``: compiling
#: (seconds per new stack shape) only pays for itself over many steps of a large stack.
COMPILE_MIN_PARAMS = 100_000

#: Largest batch for which the weight gradient is formed inside the fused kernel
#: (B multiply-adds per weight); larger batches use one BLAS product.
RANK_LIMIT = 16


def adam_update(g: Tensor, p: Tensor, m: Tensor, v: Tensor, lr_t: Tensor, c2: Tensor,
                beta1: float, beta2: float, eps: float, wd: float) -> None:
    """In place: Adam with L2 weight decay on ``p`` given its gradient ``g`` (same shape).

    ``lr_t = lr / (1 - beta1^t)``, ``c2 = sqrt(1 - beta2^t)`` (0-dim tensors, so a
    compiled kernel is not specialised on the step number).
    """
    g = g + wd * p
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    p.sub_(lr_t * m / (v.sqrt() / c2 + eps))


def adam_rank_update(x: Tensor, d: Tensor, p: Tensor, m: Tensor, v: Tensor, lr_t: Tensor, c2: Tensor,
                     beta1: float, beta2: float, eps: float, wd: float) -> None:
    """In place: Adam on stacked weights ``p`` ``(M, I, O)`` whose gradient is ``x^T d``.

    ``x`` ``(M, B, I)``, ``d`` ``(M, B, O)``; the gradient ``sum_b x[m, b, i] d[m, b, j]``
    is formed element by element inside the update (never stored when compiled).
    """
    g = (x.transpose(-1, -2).unsqueeze(-1) * d.unsqueeze(-3)).sum(-2)
    adam_update(g, p, m, v, lr_t, c2, beta1, beta2, eps, wd)


def adam_update_all(kinds: tuple[str, ...], params: list[Tensor], exp_avgs: list[Tensor],
                    exp_avg_sqs: list[Tensor], xs: list[Tensor | None], ds: list[Tensor], lr_t: Tensor, c2: Tensor,
                    beta1: float, beta2: float, eps: float, wd: float) -> None:
    """Eager updates of several parameters. Per parameter ``kinds[k]``: ``"rank"`` (weight,
    gradient ``xs[k]^T ds[k]`` as one batched product), ``"bias"`` (gradient ``ds[k]``
    summed over the batch) or ``"grad"`` (``ds[k]`` is the gradient)."""
    for kind, p, m, v, x, d in zip(kinds, params, exp_avgs, exp_avg_sqs, xs, ds):
        g = torch.bmm(x.transpose(1, 2), d) if kind == "rank" else d.sum(1, keepdim=True) if kind == "bias" else d
        adam_update(g, p, m, v, lr_t, c2, beta1, beta2, eps, wd)


_COMPILED: dict[str, Callable] = {}
_COMPILE_FAILED: list[str] = []
#: distinct parameter shapes one process may compile an update for
_RECOMPILE_LIMIT = 64


def _compiled_call(name: str, fn: Callable, args: tuple) -> bool:
    """``fn(*args)`` compiled (one graph per function and shapes); False where compiling
    has failed in this process (then the caller runs the eager form; one warning)."""
    if _COMPILE_FAILED:
        return False
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=False)
    try:
        with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT):
            _COMPILED[name](*args)
        return True
    except Exception as exc:  # no C++ compiler, unsupported platform: the same formula, eager
        _COMPILE_FAILED.append(f"{type(exc).__name__}: {exc}"[:300])
        warnings.warn(f"the fused Adam update could not be compiled ({_COMPILE_FAILED[-1]}); "
                      "running it as eager torch ops (same results, slower)", RuntimeWarning, stacklevel=3)
        return False


def fused_kernels_compiled() -> bool:
    """False once compiling the fused update has failed in this process."""
    return not _COMPILE_FAILED


class FusedStackStep:
    """Training steps of a ``StackedHMC`` with its own Adam state (module docs).

    ``stack``: the stacked network (hidden ``layers``, per-segment ``outputs``,
    ``segments``, ``dropout``, ``activation``); ``lr``, ``weight_decay``,
    ``betas``, ``eps``: Adam's settings (``torch.optim.Adam`` defaults).
    ``compile``: compile the fused update (default: on CPU, for stacks of at least
    :data:`COMPILE_MIN_PARAMS` parameters).
    """

    def __init__(self, stack, *, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, compile: bool | None = None):
        if stack.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {stack.activation!r}")
        self.stack = stack
        self.lr, self.wd, self.eps = float(lr), float(weight_decay), float(eps)
        self.beta1, self.beta2 = (float(b) for b in betas)
        params = stack.stacked_parameters()
        self.state = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for p in params}
        self.t = 0
        self._grad_buffers: dict[int, Tensor] = {}
        if compile is None:
            compile = params[0].device.type == "cpu" and sum(p.numel() for p in params) >= COMPILE_MIN_PARAMS
        self.compile = bool(compile)

    def subset(self, stack, models) -> "FusedStackStep":
        """The step of ``stack = self.stack.subset(models)``: same settings and step
        count, Adam's moments cut to the rows of ``models``."""
        new = FusedStackStep(stack, lr=self.lr, weight_decay=self.wd, betas=(self.beta1, self.beta2), eps=self.eps,
                             compile=self.compile)
        new.t = self.t
        old_params = self.stack.stacked_parameters()
        for k in (0, 1):
            cut = self.stack.select_rows([self.state[id(p)][k] for p in old_params], models)
            for p, t in zip(stack.stacked_parameters(), cut):
                new.state[id(p)][k].copy_(t)
        return new

    # ------------------------------------------------------------ pieces
    def _queue(self, queue: list, p: Tensor, x: Tensor | None, d: Tensor) -> None:
        """Queue the update of weight ``p`` (``x`` = layer input) or bias ``p`` (``x=None``) from output gradient ``d``."""
        if x is None:
            queue.append(("bias", p, None, d))
        elif x.shape[1] <= RANK_LIMIT:
            queue.append(("rank", p, x, d))
        else:  # a real matrix product: BLAS, into a kept buffer (a fresh large tensor each step
            # costs page faults that halve the product's speed)
            buf = self._grad_buffers.get(id(p))
            if buf is None:
                buf = self._grad_buffers[id(p)] = torch.empty_like(p)
            queue.append(("grad", p, None, torch.bmm(x.transpose(1, 2), d, out=buf)))

    def _hidden_forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Layer inputs ``[x, h_1, ...]`` and gates ``dh_k/da_k`` of the hidden layers (no autograd)."""
        st = self.stack
        inputs, gates = [x], []
        h = x
        for lin in st.layers:
            a = torch.baddbmm(lin.bias, h, lin.weight)
            noise = dropout_noise(a, st.dropout) if st.dropout > 0 else None  # the mask mlp_blocks draws
            if st.activation == "relu":  # relu(a) * noise = a * gate with gate = 1[a > 0] * noise
                gate = (a > 0).to(a.dtype)
                if noise is not None:
                    gate.mul_(noise)
                h = a * gate if noise is not None else torch.relu(a)
            else:
                h = torch.tanh(a)
                gate = 1 - h * h
                if noise is not None:
                    h = h * noise
                    gate = gate * noise
            inputs.append(h)
            gates.append(gate)
        return inputs, gates

    # ------------------------------------------------------------ the step
    def step(self, x: Tensor, per_model_losses: Callable[[list[Tensor]], Tensor]) -> Tensor:
        """One step on the batch ``x`` ``(M, B, F)``; returns the ``(M,)`` per-model losses (detached).

        ``per_model_losses(zs)`` maps the per-segment logits (as ``StackedHMC.forward``
        returns them) to the ``(M,)`` losses; the step minimises their sum.
        """
        st = self.stack
        with torch.no_grad():
            inputs, gates = self._hidden_forward(x)
            h = inputs[-1]
            leaves, zs = [], []
            for (a, b), lin in zip(st.segments, st.outputs):
                leaves.append(torch.baddbmm(lin.bias, h[a:b], lin.weight))
        for (a, b), z, nh in zip(st.segments, leaves, st.n_heads):
            z.requires_grad_(True)
            zs.append(z.view(b - a, z.shape[1], nh, st.n_nodes).transpose(1, 2) if nh > 1 else z)
        per = per_model_losses(zs)
        grads = torch.autograd.grad(per.sum(), leaves)
        with torch.no_grad():
            queue: list = []
            need_dh = len(st.layers) > 0
            dh = torch.empty_like(h) if need_dh else None
            for (a, b), lin, dz in zip(st.segments, st.outputs, grads):
                if need_dh:
                    torch.bmm(dz, lin.weight.transpose(1, 2), out=dh[a:b])
                self._queue(queue, lin.weight, h[a:b], dz)
                self._queue(queue, lin.bias, None, dz)
            for k in range(len(st.layers) - 1, -1, -1):
                lin = st.layers[k]
                da = dh * gates[k]
                if k > 0:
                    dh = torch.bmm(da, lin.weight.transpose(1, 2))
                self._queue(queue, lin.weight, inputs[k], da)
                self._queue(queue, lin.bias, None, da)
            self.t += 1
            lr_t = torch.tensor(self.lr / (1 - self.beta1 ** self.t), dtype=h.dtype, device=h.device)
            c2 = torch.tensor(math.sqrt(1 - self.beta2 ** self.t), dtype=h.dtype, device=h.device)
            self._apply(queue, lr_t, c2)
        return per.detach()

    def _apply(self, queue: list, lr_t: Tensor, c2: Tensor) -> None:
        """Every queued update. Compiled: one graph per weight (the rank-B gradient fused into
        its update; separate graphs run at memory speed, one graph for all weights does not)
        and one for all biases; else :func:`adam_update_all` eagerly."""
        hyper = (self.beta1, self.beta2, self.eps, self.wd)
        state = self.state
        if self.compile:
            rest = []
            for kind, p, x, d in queue:
                m, v = state[id(p)]
                if kind == "rank":
                    done = _compiled_call("rank", adam_rank_update, (x, d, p.data, m, v, lr_t, c2, *hyper))
                elif kind == "grad":
                    done = _compiled_call("grad", adam_update, (d, p.data, m, v, lr_t, c2, *hyper))
                else:
                    done = False
                if not done:
                    rest.append((kind, p, x, d))
            if rest and all(k == "bias" for k, *_ in rest) and not _COMPILE_FAILED:
                kinds, ps, xs, ds = zip(*rest)
                if _compiled_call("bias", adam_update_all, (kinds, [p.data for p in ps], [state[id(p)][0] for p in ps],
                                                            [state[id(p)][1] for p in ps], list(xs), list(ds), lr_t,
                                                            c2, *hyper)):
                    return
            queue = rest
        if queue:
            kinds, ps, xs, ds = zip(*queue)
            adam_update_all(kinds, [p.data for p in ps], [state[id(p)][0] for p in ps], [state[id(p)][1] for p in ps],
                            list(xs), list(ds), lr_t, c2, *hyper)
