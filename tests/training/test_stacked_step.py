import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

import conehier.training.stacked_step as ss
from conehier.data.hmc import load_hmc
from conehier.training.hmc import HMCConfig
from conehier.training.hmc_stacked import AutogradStackStep, StackedHMCTrainer
from conehier.training.stacked_step import (
    FusedStackStep,
    adam_rank_update,
    adam_update,
    adam_update_all,
)

from .test_hmc import _write_toy

HYPER = (0.9, 0.999, 1e-8, 1e-3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = _write_toy(tmp_path_factory.mktemp("toy_step"))
    return load_hmc("cellcycle_FUN", data_dir=root, download=False)


def _coeffs(t, lr, dtype):
    return (torch.tensor(lr / (1 - 0.9 ** t), dtype=dtype), torch.tensor(math.sqrt(1 - 0.999 ** t), dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_update_is_torch_adam(dtype):
    g0 = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 5, 7, generator=g0, dtype=dtype)
    ref = p0.clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=1e-2, weight_decay=HYPER[3])
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t in range(1, 6):
        g = torch.randn(3, 5, 7, generator=g0, dtype=dtype)
        ref.grad = g.clone()
        opt.step()
        adam_update(g, p, m, v, *_coeffs(t, 1e-2, dtype), *HYPER)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(p, ref.detach(), atol=tol, rtol=0)
    st = opt.state[ref]
    torch.testing.assert_close(m, st["exp_avg"], atol=tol, rtol=0)
    torch.testing.assert_close(v, st["exp_avg_sq"], atol=tol, rtol=0)


def test_adam_update_by_hand_first_step():
    # step 1: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| + eps)
    p = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    g = torch.tensor([0.5, -4.0, 0.0], dtype=torch.float64)
    m, v = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    adam_update(g, p, m, v, *_coeffs(1, 0.1, torch.float64), 0.9, 0.999, 1e-8, 0.0)
    torch.testing.assert_close(p, torch.tensor([0.9, -1.9, 0.0], dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(m, 0.1 * g)
    torch.testing.assert_close(v, 0.001 * g * g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_update_uses_the_outer_product_gradient(dtype):
    g0 = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, generator=g0, dtype=dtype)
    d = torch.randn(2, 4, 3, generator=g0, dtype=dtype)
    p0 = torch.randn(2, 6, 3, generator=g0, dtype=dtype)
    a = [p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)]
    b = [p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)]
    for t in (1, 2):
        adam_rank_update(x, d, *a, *_coeffs(t, 1e-2, dtype), *HYPER)
        adam_update(torch.bmm(x.transpose(1, 2), d), *b, *_coeffs(t, 1e-2, dtype), *HYPER)
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w)


def test_update_all_kinds():
    g0 = torch.Generator().manual_seed(2)
    x, d = torch.randn(1, 3, 4, generator=g0), torch.randn(1, 3, 5, generator=g0)
    w, bias, full = torch.randn(1, 4, 5, generator=g0), torch.randn(1, 1, 5, generator=g0), torch.randn(2, 2)
    gfull = torch.randn(2, 2, generator=g0)
    ps = [w.clone(), bias.clone(), full.clone()]
    ms, vs = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    adam_update_all(("rank", "bias", "grad"), ps, ms, vs, [x, None, None], [d, d, gfull], *_coeffs(1, 1e-2, torch.float32),
                    *HYPER)
    refs = [w.clone(), bias.clone(), full.clone()]
    for r, g in zip(refs, [x[0].T @ d[0], d.sum(1, keepdim=True), gfull]):
        adam_update(g.reshape(r.shape), r, torch.zeros_like(r), torch.zeros_like(r), *_coeffs(1, 1e-2, torch.float32),
                    *HYPER)
    for p, r in zip(ps, refs):
        torch.testing.assert_close(p, r)


# --------------------------------------------------------------------------
# the fused step is the autograd step
# --------------------------------------------------------------------------
def _cfg(**kw):
    base = dict(hidden=24, layers=3, dropout=0.5, lr=1e-2, weight_decay=1e-3, batch_size=4, epochs=1)
    base.update(kw)
    return HMCConfig(**base)


def _run_steps(toy, cfgs, engine, n_steps=12, batch=4, compile=None, device="cpu"):
    tr = StackedHMCTrainer(cfgs, engine=engine)
    dev = torch.device(device)
    torch.manual_seed(0)
    stack, opt, scfgs = tr._new_stack(toy, dev)
    if engine == "fused" and compile is not None:
        opt = FusedStackStep(stack, lr=scfgs[0].lr, weight_decay=scfgs[0].weight_decay, compile=compile)
    losses, extras = tr._losses(stack, scfgs, toy, toy.Y_train, dev)
    X = torch.as_tensor(toy.X_train, dtype=torch.float32, device=dev)
    Y = torch.as_tensor(toy.Y_train, dtype=torch.float32, device=dev)
    torch.manual_seed(1)  # dropout masks (torch.manual_seed seeds the CUDA generators too)
    pers = []
    for s in range(n_steps):
        idx = (torch.arange(batch) + s * batch).expand(len(scfgs), batch) % X.shape[0]
        pers.append(opt.step(X[idx], lambda zs: torch.cat([
            fn.per_model(z, Y[idx[a:b]], *(e[idx[a:b]] for e in ex))
            for (a, b), z, fn, ex in zip(stack.segments, zs, losses, extras)])))
    return [p.detach().clone() for p in stack.stacked_parameters()], torch.stack(pers) if pers else None


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fused_step_matches_autograd_and_adam_with_dropout(toy, activation):
    cfgs = [_cfg(model=m, loss=l, seed=s, activation=activation)
            for m, l in (("mlp", "bce"), ("mcm-mlp", "rare-node"), ("mcm-mlp", "sigmoidf1"), ("mcm-mlp", "champ-soft"))
            for s in range(2)]
    pa, la = _run_steps(toy, cfgs, "autograd")
    pf, lf = _run_steps(toy, cfgs, "fused")
    torch.testing.assert_close(lf, la, atol=1e-5, rtol=1e-5)
    for a, f in zip(pa, pf):
        torch.testing.assert_close(f, a, atol=1e-5, rtol=1e-4)
    assert any((a != p0).any() for a, p0 in zip(pa, _run_steps(toy, cfgs, "autograd", n_steps=0)[0]))


@pytest.mark.parametrize("layers", [1, 2])
def test_fused_step_shallow_models(toy, layers):
    cfgs = [_cfg(model="mcm-mlp", loss="bce", layers=layers, seed=s) for s in range(2)]
    pa, _ = _run_steps(toy, cfgs, "autograd")
    pf, _ = _run_steps(toy, cfgs, "fused")
    for a, f in zip(pa, pf):
        torch.testing.assert_close(f, a, atol=1e-5, rtol=1e-4)


def test_large_batches_use_a_matrix_product_and_agree(toy):
    cfgs = [_cfg(model="mcm-mlp", loss="bce", batch_size=32, seed=s) for s in range(2)]
    pa, _ = _run_steps(toy, cfgs, "autograd", n_steps=4, batch=32)
    pf, _ = _run_steps(toy, cfgs, "fused", n_steps=4, batch=32)
    assert 32 > ss.RANK_LIMIT
    for a, f in zip(pa, pf):
        torch.testing.assert_close(f, a, atol=1e-5, rtol=1e-4)


def test_compiled_update_equals_eager(toy):
    cfgs = [_cfg(model="mcm-mlp", loss="bce", hidden=8, dropout=0.0, seed=s) for s in range(2)]
    pe, le = _run_steps(toy, cfgs, "fused", n_steps=5, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # where compiling is impossible the eager fallback runs
        pc, lc = _run_steps(toy, cfgs, "fused", n_steps=5, compile=True)
    torch.testing.assert_close(lc, le, atol=1e-6, rtol=1e-6)
    for a, b in zip(pe, pc):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


def test_compile_failure_falls_back_to_eager_with_one_warning(toy, monkeypatch):
    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(ss, "_COMPILED", {})
    monkeypatch.setattr(ss, "_COMPILE_FAILED", [])
    monkeypatch.setattr(torch, "compile", broken)
    cfgs = [_cfg(model="mlp", loss="bce", hidden=8, seed=s) for s in range(2)]
    pe, _ = _run_steps(toy, cfgs, "fused", n_steps=3, compile=False)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as rec:
        pc, _ = _run_steps(toy, cfgs, "fused", n_steps=3, compile=True)
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    assert not ss.fused_kernels_compiled()
    for a, b in zip(pe, pc):
        torch.testing.assert_close(b, a)


def test_fused_trainer_matches_autograd_trainer(toy):
    cfgs = [_cfg(model=m, loss="bce", dropout=0.3, hidden=16, epochs=2, seed=s, batch_size=8)
            for m in ("mlp", "mcm-mlp") for s in range(2)]
    ra = StackedHMCTrainer(cfgs, engine="autograd").fit(toy)
    rf = StackedHMCTrainer(cfgs, engine="fused").fit(toy)
    for a, f in zip(ra, rf):
        np.testing.assert_allclose(f.test_scores, a.test_scores, atol=1e-5)
        assert f.metrics["auprc"] == pytest.approx(a.metrics["auprc"], abs=1e-4)


def test_bad_engine_and_activation_are_named(toy):
    with pytest.raises(ValueError, match="engine must be one of"):
        StackedHMCTrainer([_cfg()], engine="jit")
    tr = StackedHMCTrainer([_cfg()], engine="fused")
    stack, _, _ = tr._new_stack(toy, torch.device("cpu"))
    stack.activation = "gelu"
    with pytest.raises(ValueError, match="activation must be"):
        FusedStackStep(stack, lr=1e-3)


def test_autograd_step_is_the_reference_interface(toy):
    tr = StackedHMCTrainer([_cfg(seed=0)], engine="autograd")
    _, opt, _ = tr._new_stack(toy, torch.device("cpu"))
    assert isinstance(opt, AutogradStackStep)
    tr = StackedHMCTrainer([_cfg(seed=0)], engine="auto")
    _, opt, _ = tr._new_stack(toy, torch.device("cpu"))
    assert isinstance(opt, FusedStackStep) and not opt.compile  # a tiny stack: eager update


# --------------------------------------------------------------------------
# a step cut to fewer models (the stack shrinks as models finish)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_subset_step_continues_the_kept_models(toy, engine):
    """Cutting stack + optimiser state to models [0, 2, 3] and stepping on: the kept
    models move exactly as they do in the full stack (dropout 0, same batches)."""
    cfgs = [_cfg(model=m, loss=l, seed=s, dropout=0.0)
            for m, l in (("mlp", "bce"), ("mcm-mlp", "rare-node")) for s in range(2)]
    tr = StackedHMCTrainer(cfgs, engine=engine)
    dev = torch.device("cpu")
    stack, opt, scfgs = tr._new_stack(toy, dev)
    losses, extras = tr._losses(stack, scfgs, toy, toy.Y_train, dev)
    X = torch.as_tensor(toy.X_train, dtype=torch.float32)
    Y = torch.as_tensor(toy.Y_train, dtype=torch.float32)
    batches = [torch.randint(0, len(X), (len(cfgs), 4), generator=torch.Generator().manual_seed(s)) for s in range(6)]

    def run(stack, opt, losses, extras, idxs):
        for idx in idxs:
            opt.step(X[idx], lambda zs: torch.cat([fn.per_model(z, Y[idx[a:b]], *(e[idx[a:b]] for e in ex))
                                                   for (a, b), z, fn, ex in zip(stack.segments, zs, losses, extras)]))

    run(stack, opt, losses, extras, batches[:3])
    keep = [0, 2, 3]
    sub = stack.subset(keep)
    sub_opt = opt.subset(sub, keep)
    assert sub.n_models == 3 and sub.segments == [(0, 1), (1, 3)] and sub.configs == [scfgs[m] for m in keep]
    for p, q in zip(sub.stacked_parameters(), stack.select_rows(stack.stacked_parameters(), keep)):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    run(stack, opt, losses, extras, batches[3:])
    run(sub, sub_opt, losses, extras, [b[keep] for b in batches[3:]])
    for p, q in zip(sub.stacked_parameters(), stack.select_rows(stack.stacked_parameters(), keep)):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert (sub_opt.t if engine == "fused" else 1) == (opt.t if engine == "fused" else 1)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
@pytest.mark.parametrize("batch", [4, 32])
def test_fused_step_matches_autograd_on_cuda(toy, batch):
    """On CUDA the fused step runs its update eagerly; it still equals autograd + Adam there
    (dropout on: both draw their masks from the CUDA generator in the same order), and with
    dropout off both equal the CPU run."""
    cfgs = [_cfg(model=m, loss=l, seed=s) for m, l in (("mlp", "bce"), ("mcm-mlp", "rare-node"),
                                                         ("mcm-mlp", "champ-soft")) for s in range(2)]
    pa, la = _run_steps(toy, cfgs, "autograd", batch=batch, device="cuda")
    pf, lf = _run_steps(toy, cfgs, "fused", batch=batch, device="cuda")
    assert all(p.device.type == "cuda" for p in pf)
    torch.testing.assert_close(lf, la, atol=1e-5, rtol=1e-5)
    for a, f in zip(pa, pf):
        torch.testing.assert_close(f, a, atol=1e-5, rtol=1e-4)
    still = [dataclasses.replace(c, dropout=0.0) for c in cfgs]
    pc, _ = _run_steps(toy, still, "fused", batch=batch)
    pg, _ = _run_steps(toy, still, "fused", batch=batch, device="cuda")
    for c, g in zip(pc, pg):
        torch.testing.assert_close(g.cpu(), c, atol=1e-4, rtol=1e-3)
