"""Multi-process training with PyTorch DistributedDataParallel, launched by ``torchrun``.

``torchrun --standalone --nproc_per_node N -m conehier.cli train-cnn ...`` sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads
them and joins the process group (``nccl`` on CUDA, ``gloo`` on CPU); without
them it returns a single-process :class:`DistInfo` and initialises nothing.

The global batch is the same for any number of processes: every process draws
the same seeded permutation of the training set per epoch (``seed + epoch``,
:class:`torch.utils.data.DistributedSampler`, or :class:`WeightedDistributedSampler`
for re-sampling) and takes every ``world``-th index, so the ``world`` local
batches of ``B / world`` samples make up the batch a single process would take.
DDP averages the gradients, which with equal local batches and a loss that is
a per-sample mean is the gradient of the global batch: with deterministic
layers (no dropout, no batch norm: its statistics are per-process unless
converted to ``SyncBatchNorm`` on CUDA) the parameters after k steps match the
single-process run up to float rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init_distributed", "cleanup", "wrap_ddp", "all_reduce_mean", "barrier",
           "make_sampler", "WeightedDistributedSampler", "unwrap"]


@dataclass(frozen=True)
class DistInfo:
    """This process' place in the job: ``rank`` of ``world_size``, its ``device`` and the ``backend``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick the device.

    ``device``: ``"cpu"``, ``"cuda"`` (this process' ``cuda:LOCAL_RANK`` when
    distributed) or ``None`` (CUDA when available, else CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(want)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, backend)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, info: DistInfo, *, sync_batchnorm: bool = True) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed (batch norm -> ``SyncBatchNorm`` on CUDA), else ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if sync_batchnorm and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``model``)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(value: float | torch.Tensor, info: DistInfo) -> float:
    """Mean of a scalar over the processes (the value itself for one process)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1)
    if not info.distributed:
        return float(t)
    t = t.to(info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


class WeightedDistributedSampler(torch.utils.data.Sampler):
    """Re-sampling for any number of processes: per epoch, ``num_samples`` draws with replacement
    from ``weights`` (seeded by ``seed + epoch``, identical on every process); this process takes
    draws ``rank, rank + world, ...`` (``num_samples`` rounded up to a multiple of ``world``)."""

    def __init__(self, weights, num_samples: int, *, rank: int = 0, world_size: int = 1, seed: int = 0):
        w = torch.as_tensor(weights, dtype=torch.float64)
        if w.dim() != 1 or not bool((w >= 0).all()) or float(w.sum()) <= 0:
            raise ValueError("weights must be a 1-D non-negative vector with a positive sum")
        self.weights, self.rank, self.world, self.seed, self.epoch = w, rank, world_size, seed, 0
        self.total = -(-int(num_samples) // world_size) * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.total // self.world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        idx = torch.multinomial(self.weights, self.total, replacement=True, generator=g)
        return iter(idx[self.rank::self.world].tolist())


def make_sampler(n: int, info: DistInfo, *, seed: int, shuffle: bool = True, weights=None):
    """The training sampler: a ``DistributedSampler`` (also for one process, so the global
    permutation does not depend on the number of processes) or, with ``weights``, a
    :class:`WeightedDistributedSampler`."""
    if weights is not None:
        return WeightedDistributedSampler(weights, n, rank=info.rank, world_size=info.world_size, seed=seed)
    return torch.utils.data.DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank,
                                               shuffle=shuffle, seed=seed, drop_last=False)
