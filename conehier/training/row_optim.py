"""Row-sparse optimisers for embedding tables: update only the rows a batch touches.

A batch of pairs touches ``U`` distinct rows of an ``(n, d)`` table, often far
fewer than ``n``. Instead of a dense gradient and a dense optimiser step over the
whole table, the trainer gathers the ``U`` rows once (``torch.unique``), runs the
energy on them, and these optimisers update just those rows in place, followed
by the model's projection of the same rows. This is "lazy" Adam (moments of
untouched rows are not decayed, as ``torch.optim.SparseAdam``) and Riemannian
SGD on the Poincaré ball (``x <- proj(x - lr (1 - ||x||^2)^2 / 4 * grad)``, the
retraction used by Nickel & Kiela and Ganea et al.).
"""

from __future__ import annotations

import torch


class RowAdam:
    """Lazy Adam on the rows of one table. ``step(rows, grad)`` with ``rows`` (U,) unique ids, ``grad`` (U, d)."""

    def __init__(self, weight: torch.Tensor, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.weight = weight
        self.lr, self.betas, self.eps = float(lr), tuple(betas), float(eps)
        self.exp_avg = torch.zeros_like(weight)
        self.exp_avg_sq = torch.zeros_like(weight)
        self.step_count = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Update ``weight[rows]``; returns the new rows (U, d)."""
        b1, b2 = self.betas
        self.step_count += 1
        m = self.exp_avg.index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = self.exp_avg_sq.index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.exp_avg.index_copy_(0, rows, m)
        self.exp_avg_sq.index_copy_(0, rows, v)
        c1 = 1 - b1**self.step_count
        c2 = 1 - b2**self.step_count
        denom = v.div_(c2).sqrt_().add_(self.eps)
        new = self.weight.index_select(0, rows).addcdiv_(m, denom, value=-self.lr / c1)
        self.weight.index_copy_(0, rows, new)
        return new

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "step_count": self.step_count,
                "lr": self.lr, "betas": self.betas, "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_count = int(state["step_count"])


class RowRSGD:
    """Riemannian SGD on the Poincaré ball (curvature -1), row-sparse.

    ``x <- x - lr * (1 - ||x||^2)^2 / 4 * grad`` (the inverse metric tensor times the
    Euclidean gradient); the model's projection then puts the rows back into the ball.
    On Euclidean tables (``ball=False``) it is plain SGD.
    """

    def __init__(self, weight: torch.Tensor, lr: float = 1e-3, ball: bool = True):
        self.weight, self.lr, self.ball = weight, float(lr), ball

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        x = self.weight.index_select(0, rows)
        if self.ball:
            scale = (1 - (x * x).sum(-1, keepdim=True)).clamp_min(0).pow(2) / 4
            grad = grad * scale
        new = x.add_(grad, alpha=-self.lr)
        self.weight.index_copy_(0, rows, new)
        return new

    def state_dict(self) -> dict:
        return {"lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        pass


class RowOptimizer:
    """Wraps a row optimiser so the trainer can treat it like ``torch.optim`` (lr via ``param_groups``)."""

    def __init__(self, inner):
        self.inner = inner
        self.param_groups = [{"lr": inner.lr}]

    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        self.inner.lr = self.param_groups[0]["lr"]
        return self.inner.step(rows, grad)

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.param_groups[0]["lr"] = state["lr"]
