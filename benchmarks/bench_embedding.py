"""Training throughput of hyperbolic entailment cones on the WordNet noun closure.

Prints training pairs per second (positives plus negatives), seconds per epoch
and peak memory for dim 10 on the published 25% split (228,554 positives, 10
negatives each), float32, plus a breakdown: negative sampling, forward
(gather + energy + loss), backward, optimiser step + projection.

Usage: CONEHIER_DATA=../shared/data python benchmarks/bench_embedding.py [--epochs 3] [--batch-size 4096]
Target (issue 3): an epoch in under 2 s on 2 cores (>= 1.3 M pairs/s).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from conehier.data.wordnet import load_wordnet
from conehier.hierarchy.graph import Hierarchy
from conehier.losses.margin import max_margin_loss
from conehier.models.embedding import EmbeddingModel
from conehier.sampling import NegativeSampler
from conehier.training.trainer import epoch_generator, make_optimizer, resolve_device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", default="row-adam", choices=["row-adam", "adam", "rsgd", "row-rsgd"])
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    wn = load_wordnet("noun")
    split = wn.split(25)
    h = wn.hierarchy
    row_wise = args.optimizer.startswith("row-")
    param = "ball" if args.optimizer in ("rsgd", "row-rsgd") else "exp0"
    model = EmbeddingModel(h.n, args.dim, "hyperbolic-cones", parametrization=param).to(device)
    model.init_random_(torch.Generator().manual_seed(0))
    opt = make_optimizer(model, args.optimizer, 1e-3)
    sampler = NegativeSampler(Hierarchy(h.names, split.train), k_parent=5, k_child=5, device=device)
    train = torch.as_tensor(split.train, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device {device}, threads {args.threads}, dim {args.dim}, batch {args.batch_size}, "
          f"{args.optimizer} ({param} parametrization), {len(train):,} positives x (1 + 10)")
    for epoch in range(args.epochs):
        t = {"sample": 0.0, "forward": 0.0, "backward": 0.0, "step": 0.0}
        t0 = time.perf_counter()
        gen = epoch_generator(0, epoch, device)
        pos = train[torch.randperm(len(train), generator=gen, device=device)]
        neg = sampler.sample(pos, gen)
        pairs = torch.cat([pos[:, None, :], neg], dim=1)
        sync()
        t["sample"] = time.perf_counter() - t0
        for s in range(0, len(pairs), args.batch_size):
            batch = pairs[s:s + args.batch_size]
            a = time.perf_counter()
            if row_wise:
                if batch.numel() >= 2 * model.n:  # as the trainer: no sort when (almost) every row is touched
                    rows, inverse = torch.arange(model.n, device=batch.device), batch
                else:
                    rows, inverse = torch.unique(batch, return_inverse=True)
                w = model.weight.detach().index_select(0, rows).requires_grad_()
                e = model.energy_of_rows(w, inverse)
            else:
                e = model(batch)
            loss = max_margin_loss(e[:, 0], e[:, 1:], 0.01)
            sync()
            b = time.perf_counter()
            if row_wise:
                (grad,) = torch.autograd.grad(loss, w)
            else:
                opt.zero_grad(set_to_none=True)
                loss.backward()
            sync()
            c = time.perf_counter()
            if row_wise:
                opt.step(rows, grad)
                model.project_(rows)
            else:
                opt.step()
                model.project_()
            sync()
            d = time.perf_counter()
            t["forward"] += b - a
            t["backward"] += c - b
            t["step"] += d - c
        total = time.perf_counter() - t0
        n_pairs = pairs.shape[0] * pairs.shape[1]
        print(f"epoch {epoch + 1}: {total:.2f} s, {n_pairs / total / 1e6:.2f} M pairs/s  "
              + "  ".join(f"{k} {v:.2f}s" for k, v in t.items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS {peak:.2f} GiB" + (f", peak CUDA {torch.cuda.max_memory_allocated() / 1024**3:.2f} GiB" if device.type == "cuda" else ""))


if __name__ == "__main__":
    main()
