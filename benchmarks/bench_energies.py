"""Throughput of the is-a energies: pairs/second, forward and forward+backward.

    PYTHONPATH=. python benchmarks/bench_energies.py [--threads 2] [--dim 10]
        [--sizes 4096 65536 262144] [--dtype float32] [--min-time 0.5] [--rounds 5]

For every energy (the fused cone energies also with ``fused=False``, the plain
autograd reference, i.e. the version before optimisation) prints the best
throughput, in million pairs/s, of the forward pass alone (under ``no_grad``)
and of forward + backward (gradients for both ``u`` and ``v``), on random points
of the Poincaré ball (norms in [0.1, 0.9]).

Measurements are interleaved over several rounds and the best time is kept: with
2 torch threads on 2 cores, any other busy process makes every parallel op wait for
a time slice and throughput can drop 10-50x while it runs. The load average is
printed before and after; rerun when the machine is idle.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from conehier.geometry import energies as en

CASES = {
    "order": en.order_energy,
    "euclidean-cones": en.euclidean_cone_energy,
    "euclidean-cones[plain]": functools.partial(en.euclidean_cone_energy, fused=False),
    "euclidean-cones-cosine": en.euclidean_cone_cosine_energy,
    "hyperbolic-cones": en.hyperbolic_cone_energy,
    "hyperbolic-cones[plain]": functools.partial(en.hyperbolic_cone_energy, fused=False),
    "poincare": en.poincare_distance,
}


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def _points(n: int, d: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True)
    return x * (0.1 + 0.8 * torch.rand(n, 1, generator=gen, dtype=dtype))


def make_case(fn, n: int, d: int, dtype: torch.dtype, gen: torch.Generator):
    """(forward, forward+backward) closures for one energy and batch size."""
    u = _points(n, d, dtype, gen).requires_grad_()
    v = _points(n, d, dtype, gen).requires_grad_()
    ones = torch.ones(n, dtype=dtype)

    def forward():
        with torch.no_grad():
            fn(u, v)

    def forward_backward():
        torch.autograd.grad(fn(u, v), (u, v), ones)

    return forward, forward_backward


def run(cases: dict, rounds: int, min_time: float) -> dict:
    """Best seconds per call for each case and pass, over interleaved rounds that
    each spend about ``min_time / rounds`` seconds per measurement."""
    best = {}
    for key, passes in cases.items():
        for fn in passes:  # warm-up: allocator, first-call overheads
            fn()
        best[key] = [float("inf")] * len(passes)
    per_round = min_time / rounds
    for _ in range(rounds):
        for key, passes in cases.items():
            for k, fn in enumerate(passes):
                spent, reps = 0.0, 0
                while spent < per_round or reps < 2:
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                    best[key][k] = min(best[key][k], dt)
                    spent, reps = spent + dt, reps + 1
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 65536, 262144])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; best is kept")
    ap.add_argument("--energies", nargs="+", default=list(CASES), choices=list(CASES))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, d={args.dim}, "
        f"dtype={args.dtype}; million pairs/s, best of {args.rounds} interleaved rounds"
    )
    print(f"load average before: {_loadavg()}")
    cases = {
        (name, n): make_case(CASES[name], n, args.dim, dtype, gen)
        for name in args.energies
        for n in args.sizes
    }
    best = run(cases, args.rounds, args.min_time)
    print(f"{'energy':<26}{'batch':>8}{'forward':>12}{'fwd+bwd':>12}")
    for (name, n), (t_f, t_fb) in best.items():
        print(f"{name:<26}{n:>8}{n / t_f / 1e6:>12.2f}{n / t_fb / 1e6:>12.2f}")
    print(f"load average after: {_loadavg()}")


if __name__ == "__main__":
    main()
