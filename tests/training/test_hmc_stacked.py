import dataclasses

import numpy as np
import pytest
import torch

from conehier.data.hmc import load_hmc
from conehier.losses.multilabel import ensemble_uncertainty, rare_node_loss, sigmoid_f1_loss
from conehier.training.hmc import HMCConfig, HMCTrainer, build_model, fit_hmc, make_loss
from conehier.training.hmc_stacked import (
    DEFAULT_STACK_MODELS,
    StackedHMC,
    StackedHMCTrainer,
    StackedLinear,
    default_stack_models,
    fit_stacked,
    plan_stacks,
    segment_key,
    stack_key,
    stack_speed,
)

from .test_hmc import _write_toy

ROW = [("mlp", "bce"), ("mcm-mlp", "bce"), ("mcm-mlp", "champ-hard"), ("mcm-mlp", "champ-soft"),
       ("mcm-mlp", "rare-node"), ("mcm-mlp", "sigmoidf1")]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = _write_toy(tmp_path_factory.mktemp("toy_stacked"))
    return load_hmc("cellcycle_FUN", data_dir=root, download=False)


@pytest.fixture(scope="module")
def toy_novalid(tmp_path_factory):
    root = _write_toy(tmp_path_factory.mktemp("toy_stacked_nv"), name="Diatoms", sizes=(300, 100))
    return load_hmc("Diatoms", data_dir=root, download=False)


def fast(**kw) -> HMCConfig:
    base = dict(hidden=16, layers=3, dropout=0.0, lr=1e-2, weight_decay=1e-3, batch_size=16, epochs=2, retrain=True)
    base.update(kw)
    return HMCConfig(**base)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _assert_same_run(stacked, single, tol=1e-5):
    assert stacked.epochs_trained == single.epochs_trained
    assert stacked.best_epoch == single.best_epoch
    np.testing.assert_allclose(stacked.test_scores, single.test_scores, atol=tol)
    np.testing.assert_allclose(_weights(stacked.model).numpy(), _weights(single.model).numpy(), atol=tol)
    ls = [h["loss"] for h in stacked.history]
    lr = [h["loss"] for h in single.history]
    np.testing.assert_allclose(ls, lr, rtol=1e-5, atol=1e-6)
    for k, v in single.metrics.items():
        assert stacked.metrics[k] == pytest.approx(v, abs=1e-4), k


# --------------------------------------------------------------------------
# the stack is M independent runs
# --------------------------------------------------------------------------
def test_stack_of_a_whole_row_matches_separate_trainer_runs(toy):
    """6 configurations x 2 seeds, dropout 0: one stacked Adam == 12 HMCTrainer runs (same init and batches)."""
    cfgs = [fast(model=m, loss=l, seed=s) for m, l in ROW for s in (0, 1)]
    results = StackedHMCTrainer(cfgs).fit(toy)
    assert len(results) == len(cfgs)
    for c, r in zip(cfgs, results):
        assert r.config == c.to_dict()
        assert r.stack_models == len(cfgs)
        _assert_same_run(r, fit_hmc(toy, c))


def test_stack_order_is_free_results_come_back_in_input_order(toy):
    # interleaved segments: the trainer regroups them, results keep the caller's order
    cfgs = [fast(model="mcm-mlp", loss="bce", seed=0), fast(model="mlp", loss="bce", seed=0),
            fast(model="mcm-mlp", loss="bce", seed=1), fast(model="mcm-mlp", loss="rare-node", seed=2)]
    tr = StackedHMCTrainer(cfgs)
    assert [cfgs[i].seed for i in tr.order] == [0, 1, 0, 2]
    results = tr.fit(toy)
    for c, r in zip(cfgs, results):
        assert (r.config["model"], r.config["loss"], r.config["seed"]) == (c.model, c.loss, c.seed)
        _assert_same_run(r, fit_hmc(toy, c))


def test_early_stopping_per_model_matches_trainer(toy):
    cfgs = [fast(model=m, loss=l, seed=s, epochs=None, max_epochs=5, patience=2)
            for m, l in [("mcm-mlp", "bce"), ("mcm-mlp", "sigmoidf1")] for s in (0, 3)]
    results = StackedHMCTrainer(cfgs).fit(toy)
    for c, r in zip(cfgs, results):
        single = fit_hmc(toy, c)
        assert r.threshold_source == single.threshold_source == "pcdb(valid)"
        _assert_same_run(r, single)
        assert [h.get("valid_auprc") for h in r.history] == pytest.approx(
            [h.get("valid_auprc") for h in single.history], abs=1e-6)


def test_models_that_finish_leave_the_stack_and_still_match_trainer(toy):
    """Early stopping at different epochs: models out of patience leave the stack
    (phase A) and models past their own epochs leave the retraining stack (phase B);
    every model still equals its own HMCTrainer run."""
    cfgs = [fast(model="mcm-mlp", loss=l, seed=s, epochs=None, max_epochs=12, patience=1)
            for l in ("bce", "sigmoidf1") for s in (0, 3)]
    lines = []
    results = StackedHMCTrainer(cfgs, log=lines.append).fit(toy)
    stopped = [len(r.history) for r in results]
    assert len(set(stopped)) > 1 and len({r.best_epoch for r in results}) > 1, (stopped, lines)
    for c, r in zip(cfgs, results):
        _assert_same_run(r, fit_hmc(toy, c))


def test_early_stopping_without_retraining_and_split_validation(toy_novalid):
    cfgs = [fast(model="mcm-mlp", loss=l, seed=s, epochs=None, max_epochs=4, patience=2, retrain=False)
            for l in ("bce", "champ-hard") for s in (0, 1)]
    for c, r in zip(cfgs, StackedHMCTrainer(cfgs).fit(toy_novalid)):
        single = fit_hmc(toy_novalid, c)
        assert r.final_train == single.final_train == "train"
        _assert_same_run(r, single)


def test_fixed_epochs_on_train_tunes_thresholds_on_valid(toy):
    cfgs = [fast(seed=s, retrain=False, threshold=t) for s, t in ((0, "pcdb"), (1, "ofadb"), (2, 0.3))]
    for c, r in zip(cfgs, StackedHMCTrainer(cfgs).fit(toy)):
        single = fit_hmc(toy, c)
        assert r.threshold_source == single.threshold_source
        _assert_same_run(r, single)


def test_class_weights_sampling_and_other_losses_match(toy):
    cfgs = [fast(loss="bce", class_weight="sqrt", seed=0), fast(loss="focal", seed=1),
            fast(loss="asl", seed=2, sampling="inverse"), fast(loss="champ-soft", class_weight="inverse", seed=3),
            fast(loss="bce", n_heads=2, seed=4), fast(loss="sigmoidf1", n_heads=2, seed=5)]
    for c, r in zip(cfgs, StackedHMCTrainer(cfgs).fit(toy)):
        _assert_same_run(r, fit_hmc(toy, c))


def test_dropout_runs_are_seeded_and_learn(toy):
    cfgs = [fast(model="mcm-mlp", loss="bce", seed=s, dropout=0.5, epochs=12) for s in (0, 1)]
    a = StackedHMCTrainer(cfgs).fit(toy)
    b = StackedHMCTrainer(cfgs).fit(toy)
    c = StackedHMCTrainer(cfgs, seed=7).fit(toy)
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.test_scores, rb.test_scores)
    assert not np.allclose(a[0].test_scores, c[0].test_scores)
    assert all(r.metrics["auprc"] > 0.9 for r in a)
    assert a[0].history[-1]["loss"] < a[0].history[0]["loss"]


def test_fit_stacked_groups_by_size_and_splits_stacks(toy):
    cfgs = [fast(hidden=16, seed=0), fast(hidden=8, seed=0), fast(hidden=16, seed=1, loss="champ-hard"),
            fast(hidden=8, seed=1)]
    lines = []
    results = fit_stacked(toy, cfgs, max_models=1, log=lines.append)
    assert sum(l.startswith("--- stack of 1 model") for l in lines) == 4
    results2 = fit_stacked(toy, cfgs)
    assert [r.stack_models for r in results2] == [2, 2, 2, 2]
    for c, r, r2 in zip(cfgs, results, results2):
        assert r.config["hidden"] == c.hidden
        single = fit_hmc(toy, c)
        _assert_same_run(r, single)
        _assert_same_run(r2, single)
    with pytest.raises(ValueError, match="max_models"):
        fit_stacked(toy, cfgs, max_models=0)


def test_plan_stacks_caps_stacks_at_the_default_size():
    same = [fast(seed=s) for s in range(7)]
    assert DEFAULT_STACK_MODELS == 3
    assert plan_stacks(same) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_stacks(same, None) == [list(range(7))]
    mixed = [fast(hidden=16, seed=0), fast(hidden=8, seed=0), fast(hidden=16, seed=1), fast(hidden=16, seed=2),
             fast(hidden=16, seed=3)]
    assert plan_stacks(mixed) == [[0, 2, 3], [4], [1]]
    assert plan_stacks(mixed, 2) == [[0, 2], [3, 4], [1]]
    assert plan_stacks(same, "auto") == plan_stacks(same)
    on_gpu = [fast(seed=s, device="cuda") for s in range(7)]  # only planned, never run
    assert default_stack_models("cuda") is None and default_stack_models("cpu") == DEFAULT_STACK_MODELS
    assert plan_stacks(on_gpu) == [list(range(7))]
    with pytest.raises(ValueError, match="max_models"):
        plan_stacks(same, "many")


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------
def test_stacked_network_equals_its_models(toy):
    cfgs = [fast(model="mlp", seed=0), fast(model="mcm-mlp", seed=1), fast(model="mcm-mlp", loss="rare-node", seed=2)]
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(build_model(c, toy.n_features, toy.hierarchy))
    stack = StackedHMC(cfgs, toy.n_features, toy.hierarchy).load_models(models)
    assert stack.segments == [(0, 1), (1, 2), (2, 3)] and stack.n_heads == [1, 1, 2]
    x = torch.as_tensor(toy.X_test[:7])
    zs = stack(x.expand(3, *x.shape))
    assert zs[2].shape == (1, 2, 7, toy.n_labels)
    scores = stack.scores(toy.X_test, max_elements=500)  # several chunks
    for m, (model, z) in enumerate(zip(models, zs)):
        model.eval()
        with torch.no_grad():
            ref = model(x)
            torch.testing.assert_close(z[0], ref, atol=1e-6, rtol=1e-5)
            np.testing.assert_allclose(scores[m], model.scores(model(torch.as_tensor(toy.X_test))).numpy(), atol=1e-6)
        back = stack.to_model(m, cfgs[m], toy.hierarchy)
        torch.testing.assert_close(_weights(back), _weights(model))
        st = stack.state_of(m)
        stack.load_state_of(m, [torch.zeros_like(t) for t in st])
        assert float(_weights(stack.to_model(m, cfgs[m], toy.hierarchy)).abs().sum()) == 0.0
        stack.load_state_of(m, st)
        torch.testing.assert_close(_weights(stack.to_model(m, cfgs[m], toy.hierarchy)), _weights(model))


def test_subset_holds_the_rows_of_its_models(toy):
    cfgs = [fast(model="mlp", seed=0), fast(model="mcm-mlp", seed=1), fast(model="mcm-mlp", seed=2),
            fast(model="mcm-mlp", loss="rare-node", seed=3)]
    stack = StackedHMC(cfgs, toy.n_features, toy.hierarchy)
    with torch.no_grad():
        for p in stack.stacked_parameters():
            p.normal_()
    sub = stack.subset([1, 3])
    assert sub.segments == [(0, 1), (1, 2)] and sub.n_heads == [1, 2]
    # 2 hidden layers (weight, bias), then the outputs of segments mlp | mcm-mlp x2 | rare-node
    assert stack.parameter_rows([1, 3]) == [(0, [1, 3]), (1, [1, 3]), (2, [1, 3]), (3, [1, 3]), (6, [0]), (7, [0]),
                                            (8, [0]), (9, [0])]
    full, part = stack.scores(toy.X_test[:9]), sub.scores(toy.X_test[:9])
    np.testing.assert_allclose(part, full[[1, 3]], atol=1e-6)
    for j, m in enumerate([1, 3]):
        for a, b in zip(sub.state_of(j), stack.state_of(m)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for bad in ([], [2, 1], [0, 4], [1, 1]):
        with pytest.raises(ValueError, match="increasing stack indices"):
            stack.subset(bad)
    with pytest.raises(ValueError, match="stacked_parameters' layout"):
        stack.select_rows(stack.stacked_parameters()[:2], [0])


def test_stacked_linear_by_hand():
    lin = StackedLinear(2, 3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[[1., 0.], [0., 1.], [1., 1.]], [[2., 0.], [0., 0.], [0., -1.]]]))
        lin.bias.copy_(torch.tensor([[[0.5, 0.]], [[0., 1.]]]))
    x = torch.tensor([[[1., 2., 3.]], [[1., 2., 3.]]])
    torch.testing.assert_close(lin(x), torch.tensor([[[4.5, 5.]], [[2., -2.]]]))
    with pytest.raises(ValueError, match=r"expected input \(2, B, 3\)"):
        lin(torch.zeros(3, 1, 3))
    with pytest.raises(ValueError, match="expected 2 layers"):
        lin.load_linears([torch.nn.Linear(3, 2)])
    with pytest.raises(ValueError, match="shape"):
        lin.load_linears([torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)])


def test_one_layer_models_stack(toy):
    cfgs = [fast(layers=1, seed=s) for s in (0, 1)]
    for c, r in zip(cfgs, StackedHMCTrainer(cfgs).fit(toy)):
        _assert_same_run(r, fit_hmc(toy, c))


# --------------------------------------------------------------------------
# per-model losses
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("model,loss,extra", [
    ("mlp", "bce", {}), ("mcm-mlp", "bce", {"class_weight": "inverse"}), ("mcm-mlp", "champ-hard", {}),
    ("mcm-mlp", "champ-soft", {"class_weight": "sqrt"}), ("mcm-mlp", "rare-node", {}),
    ("mcm-mlp", "sigmoidf1", {}), ("mcm-mlp", "focal", {}), ("mlp", "asl", {}), ("mcm-mlp", "bce", {"n_heads": 3}),
    ("mcm-mlp", "champ-hard", {"n_heads": 2}), ("mcm-mlp", "rare-node", {"n_heads": 1}),
    ("mcm-mlp", "bce", {"mcm_method": "dense"}), ("mcm-mlp", "rare-node", {"mcm_method": "dense"}),
])
def test_per_model_loss_is_the_loss_of_each_model(toy, model, loss, extra, dtype):
    cfg = fast(model=model, loss=loss, **extra)
    net = build_model(cfg, toy.n_features, toy.hierarchy)
    fn = make_loss(cfg, net, toy.hierarchy, toy.eval_mask, toy.Y_train)
    prepared = fn.prepare(toy.Y_train)
    g = torch.Generator().manual_seed(0)
    M, B, C, H = 4, 6, toy.n_labels, cfg.heads
    idx = torch.randint(0, len(toy.Y_train), (M, B), generator=g)
    y = torch.as_tensor(toy.Y_train, dtype=dtype)[idx]
    shape = (M, B, C) if H == 1 else (M, H, B, C)
    z = (3 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()
    ex = [e[idx] for e in prepared]
    per = fn.per_model(z, y, *ex)
    assert per.shape == (M,) and per.dtype == dtype
    ref = torch.stack([fn(z[m], y[m], *(e[m] for e in ex)) for m in range(M)])
    torch.testing.assert_close(per, ref, rtol=1e-5, atol=1e-6)
    # without the prepared extras (computed per batch) the same values
    torch.testing.assert_close(fn.per_model(z, y), ref, rtol=1e-5, atol=1e-6)
    # gradients: model m's logits only feel model m's loss
    (gz,) = torch.autograd.grad(per[1], z)
    assert float(gz[0].abs().sum()) == 0.0 and float(gz[1].abs().sum()) > 0.0
    assert torch.isfinite(gz).all()


def test_per_model_rejects_bad_shapes(toy):
    cfg = fast()
    net = build_model(cfg, toy.n_features, toy.hierarchy)
    fn = make_loss(cfg, net, toy.hierarchy, toy.eval_mask, toy.Y_train)
    C = toy.n_labels
    with pytest.raises(ValueError, match="per_model needs"):
        fn.per_model(torch.zeros(4, C), torch.zeros(4, C))
    with pytest.raises(ValueError, match="per_model needs"):
        fn.per_model(torch.zeros(2, 4, C), torch.zeros(3, 4, C))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_loss_functions_by_hand_and_per_model(dtype):
    # sigmoidF1 on one 2-sample batch by hand: eta=0, beta=1
    z = torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=dtype)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=dtype)
    s = torch.sigmoid(z)
    tp, fp, fn = (s * y).sum(0), (s * (1 - y)).sum(0), ((1 - s) * y).sum(0)
    by_hand = 1 - 2 * tp / (2 * tp + fn + fp)
    torch.testing.assert_close(sigmoid_f1_loss(z, y, reduction="none"), by_hand)
    zz, yy = torch.stack([z, -z]), torch.stack([y, 1 - y])
    out = sigmoid_f1_loss(zz, yy, reduction="none")
    assert out.shape == (2, 2)
    torch.testing.assert_close(out[1], sigmoid_f1_loss(-z, 1 - y, reduction="none"))
    torch.testing.assert_close(out[0], by_hand)
    # ensemble uncertainty and rare-node loss with a leading model axis
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 2, 5, 4, generator=g, dtype=dtype)  # (M, H, N, C)
    t = (torch.rand(3, 5, 4, generator=g) < 0.4).to(dtype)
    w = torch.linspace(1, 3, 4, dtype=dtype)
    for mode in ("confidence", "entropy", "aleatoric", "epistemic"):
        u = ensemble_uncertainty(torch.sigmoid(logits), mode)
        assert u.shape == (3, 5, 4)
        for m in range(3):
            torch.testing.assert_close(u[m], ensemble_uncertainty(torch.sigmoid(logits[m]), mode))
    per = rare_node_loss(logits, t, w, reduction="none")
    assert per.shape == (3, 5, 4)
    for m in range(3):
        torch.testing.assert_close(per[m], rare_node_loss(logits[m], t[m], w, reduction="none"))
    # one head, one sample, by hand: u = 0 (a single head), so L = w_y * omega_f * BCE
    one = torch.tensor([[[[0.5]]]], dtype=dtype)
    bce = -torch.log(torch.sigmoid(torch.tensor(0.5, dtype=dtype)))
    torch.testing.assert_close(rare_node_loss(one, torch.ones(1, 1, 1, dtype=dtype), torch.tensor([2.0], dtype=dtype),
                                              omega_f=0.25, reduction="none"), (2.0 * 0.25 * bce).reshape(1, 1, 1))
    with pytest.raises(ValueError, match="logits must be"):
        rare_node_loss(torch.zeros(1, 1, 1, 2, 3, dtype=dtype), torch.zeros(2, 3))


# --------------------------------------------------------------------------
# errors and helpers
# --------------------------------------------------------------------------
def test_bad_input_is_named(toy):
    with pytest.raises(ValueError, match="at least one config"):
        StackedHMCTrainer([])
    with pytest.raises(ValueError, match="hidden"):
        StackedHMCTrainer([fast(hidden=8), fast(hidden=16)])
    with pytest.raises(ValueError, match="lr, epochs"):
        StackedHMCTrainer([fast(epochs=2, lr=1e-2), fast(epochs=3, lr=1e-3)])
    with pytest.raises(TypeError, match="HMCConfig"):
        StackedHMCTrainer([{"hidden": 8}])
    with pytest.raises(ValueError, match="sigmoid heads"):
        StackedHMC([fast(model="per-level", loss="nll")], toy.n_features, toy.hierarchy)
    with pytest.raises(ValueError, match="contiguous"):
        StackedHMC([fast(loss="bce"), fast(loss="focal"), fast(loss="bce")], toy.n_features, toy.hierarchy)
    with pytest.raises(ValueError, match="expected 2 models"):
        StackedHMC([fast(), fast()], toy.n_features, toy.hierarchy).load_models([])
    with pytest.raises(IndexError, match="out of range"):
        StackedHMC([fast()], toy.n_features, toy.hierarchy).state_of(1)


def test_keys():
    a, b = fast(seed=0), fast(seed=5, loss="champ-hard")
    assert stack_key(a) == stack_key(b) and segment_key(a) != segment_key(b)
    assert segment_key(a) == segment_key(dataclasses.replace(a, seed=9))
    assert stack_key(a) != stack_key(dataclasses.replace(a, hidden=17))


def test_stack_speed_measures_each_size(toy):
    out = stack_speed(toy, fast(), sizes=(1, 3), steps=5, repeats=1)
    assert set(out) == {1, 3}
    assert all(w > 0 and c > 0 for w, c in out.values())


def test_single_config_stack_equals_trainer_fit(toy):
    c = fast(model="mcm-mlp", loss="champ-hard", seed=11)
    (r,) = StackedHMCTrainer([c]).fit(toy)
    _assert_same_run(r, HMCTrainer(c).fit(toy))
    assert r.wall_seconds > 0 and r.seconds_per_epoch > 0
    assert r.to_dict()["stack_models"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("engine", ["auto", "autograd"])
def test_stacked_trainer_on_cuda_matches_the_cpu_run(toy, engine):
    """Early stopping and retraining of a stack on CUDA (dropout 0): the same epochs, scores
    and metrics as on the CPU, up to float rounding; each model stays on its device."""
    cfgs = [fast(model=m, loss=l, seed=s, epochs=None, max_epochs=6, patience=2)
            for m, l in (("mcm-mlp", "bce"), ("mcm-mlp", "rare-node")) for s in range(2)]
    cpu = StackedHMCTrainer(cfgs, engine=engine).fit(toy)
    gpu = StackedHMCTrainer([dataclasses.replace(c, device="cuda") for c in cfgs], engine=engine).fit(toy)
    for rc, rg in zip(cpu, gpu):
        assert next(rg.model.parameters()).device.type == "cuda"
        rg.model.cpu()
        _assert_same_run(rg, rc, tol=1e-4)
