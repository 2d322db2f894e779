import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch

from conehier.data.hmc import load_hmc
from conehier.evaluation.functional import rare_node_recall
from conehier.hmc_cli import add_hmc_parser, cmd_hmc, config_from_args
from conehier.losses.multilabel import CHAMPLoss, RareNodeLoss
from conehier.models.heads import max_constraint
from conehier.training.hmc import (
    HMC_LOSSES,
    HMCConfig,
    HMCTrainer,
    build_model,
    chmcnn_config,
    evaluate_hmc,
    fit_hmc,
    make_loss,
    run_hmc,
    summarize,
    tune_thresholds,
)

TERMS = ["01", "01/01", "01/02", "02", "02/01", "02/02", "02/02/01", "02/02/02", "03"]
LEAVES = ["01/01", "01/02", "02/01", "02/02/01", "02/02/02", "03"]


def _write_toy(root, name="cellcycle_FUN", sizes=(240, 100, 100), n_features=8, seed=0, noise=0.4):
    """Tiny ARFF files under ``root/hmc`` named like a real data set; learnable labels."""
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(len(LEAVES), n_features)) * 2
    splits = ("train", "valid", "test") if name.endswith("_FUN") else ("train", "test")
    files = {"train": f"{name}.train.arff", "valid": f"{name}.valid.arff", "test": f"{name}.test.arff"}
    if not name.endswith("_FUN"):
        files = {"train": f"{name}_train.arff", "test": f"{name}_test.arff"}
    (root / "hmc").mkdir(parents=True, exist_ok=True)
    for split, n in zip(splits, sizes):
        lines = ["@RELATION toy"] + [f"@ATTRIBUTE f{k} numeric" for k in range(n_features)]
        lines += ["@ATTRIBUTE class hierarchical " + ",".join(TERMS), "@DATA"]
        for _ in range(n):
            k = rng.integers(1, 3)
            labs = rng.choice(len(LEAVES), size=k, replace=False)
            x = proto[labs].sum(0) + noise * rng.normal(size=n_features)
            lines.append(",".join(f"{v:.4f}" for v in x) + "," + "@".join(LEAVES[i] for i in labs))
        (root / "hmc" / files[split]).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = _write_toy(tmp_path_factory.mktemp("toy"))
    return load_hmc("cellcycle_FUN", data_dir=root, download=False)


@pytest.fixture(scope="module")
def toy_novalid(tmp_path_factory):
    root = _write_toy(tmp_path_factory.mktemp("toy_nv"), name="Diatoms", sizes=(300, 100))
    return load_hmc("Diatoms", data_dir=root, download=False)


def fast(**kw) -> HMCConfig:
    base = dict(hidden=32, layers=2, dropout=0.0, lr=1e-2, weight_decay=0.0, batch_size=16, epochs=3, retrain=False)
    base.update(kw)
    return HMCConfig(**base)


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------
def test_trainer_learns_a_toy_problem(toy):
    untrained = fit_hmc(toy, fast(epochs=1, lr=1e-6))
    r = fit_hmc(toy, fast(epochs=15))
    assert r.metrics["auprc"] > 0.9
    assert r.metrics["auprc"] > untrained.metrics["auprc"] + 0.2
    assert r.metrics["macro_f1"] > 0.7
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    assert r.final_train == "train" and r.threshold_source == "pcdb(valid)"
    assert r.seconds_per_epoch > 0 and r.samples_per_second > 0
    for k in ("auprc", "auprc_macro", "macro_f1", "rare_recall", "auprc_rare", "micro_f1"):
        assert 0.0 <= r.metrics[k] <= 1.0
    s = r.test_scores
    e = toy.hierarchy.edges
    assert (s[:, e[:, 0]] >= s[:, e[:, 1]]).all()  # max-constraint: consistent scores


def test_same_seed_same_numbers(toy):
    cfg = fast(epochs=2, dropout=0.5, sampling="sqrt")
    a, b = fit_hmc(toy, cfg), fit_hmc(toy, cfg)
    assert a.metrics == b.metrics
    assert np.array_equal(a.test_scores, b.test_scores)
    assert a.history == b.history
    c = fit_hmc(toy, dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(a.test_scores, c.test_scores)
    # the global RNG is left alone
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    fit_hmc(toy, fast(epochs=1))
    assert torch.equal(torch.rand(1), x)


def test_early_stopping_then_retrain_on_train_and_valid(toy):
    r = fit_hmc(toy, fast(epochs=None, max_epochs=6, patience=2, retrain=True))
    evals = [h for h in r.history if "valid_auprc" in h]
    assert 1 <= r.best_epoch <= 6 and len(evals) == len(r.history) <= 6
    best = max(evals, key=lambda h: h["valid_auprc"])
    assert r.best_epoch == best["epoch"]
    assert r.epochs_trained == r.best_epoch and r.final_train == "train+valid"
    assert r.threshold_source == "pcdb(valid)"
    assert r.samples_per_second == pytest.approx(340 / r.seconds_per_epoch)


def test_early_stopping_without_retrain_keeps_the_best_epoch(toy):
    tr = HMCTrainer(fast(epochs=None, max_epochs=5, patience=5, retrain=False))
    r = tr.fit(toy)
    from conehier.training.hmc import predict_scores
    from conehier.evaluation.functional import average_precision

    s = predict_scores(tr.model_, toy.X_valid)
    best = max(h["valid_auprc"] for h in r.history)
    assert average_precision(toy.Y_valid, s, evaluate=toy.eval_mask) == pytest.approx(best)
    assert r.final_train == "train"


def test_fixed_epochs_on_train_and_valid_use_threshold_half(toy):
    r = fit_hmc(toy, fast(epochs=2, retrain=True))
    assert r.final_train == "train+valid" and r.threshold_source.startswith("0.5")
    assert r.metrics["macro_f1"] == r.metrics["macro_f1_05"]
    r2 = fit_hmc(toy, fast(epochs=2, retrain=False, threshold=0.3))
    assert r2.threshold_source == "fixed 0.3"


def test_data_set_without_validation_file(toy_novalid):
    r = fit_hmc(toy_novalid, fast(epochs=None, max_epochs=3, patience=3, retrain=True))
    assert r.final_train == "train" and r.threshold_source == "pcdb(valid)"  # held-out split, then full train
    r2 = fit_hmc(toy_novalid, fast(epochs=2, retrain=True))
    assert r2.final_train == "train" and r2.threshold_source.startswith("0.5")


@pytest.mark.parametrize("model,loss", [
    ("mlp", "bce"), ("mcm-mlp", "bce"), ("mcm-mlp", "champ-hard"), ("mcm-mlp", "champ-soft"),
    ("mcm-mlp", "sigmoidf1"), ("mcm-mlp", "rare-node"), ("mlp", "rare-node"), ("mcm-mlp", "focal"),
    ("mcm-mlp", "asl"), ("per-level", "nll"), ("marginal", "nll"), ("masked-per-level", "nll"),
    ("hsoftmax", "nll"),
])
def test_every_head_and_loss_trains(toy, model, loss):
    r = fit_hmc(toy, fast(model=model, loss=loss, epochs=2))
    assert all(np.isfinite(v) for v in r.metrics.values())
    assert r.metrics["auprc"] > 0.3
    assert r.test_scores.shape == toy.Y_test.shape


def test_reweighting_and_resampling_run(toy):
    for kw in (dict(class_weight="inverse"), dict(class_weight="sqrt", loss="focal"), dict(sampling="inverse"),
               dict(model="hsoftmax", loss="nll", class_weight="inverse")):
        r = fit_hmc(toy, fast(epochs=1, **kw))
        assert np.isfinite(r.metrics["auprc"])


# --------------------------------------------------------------------------
# losses as the trainer builds them
# --------------------------------------------------------------------------
def _batch(toy, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, toy.n_labels, generator=g)
    y = torch.as_tensor(toy.Y_train[:n], dtype=torch.float32)
    return z, y


def test_mcm_bce_is_chmcnn_bce_on_the_training_output(toy):
    cfg = fast(model="mcm-mlp", loss="bce")
    model = build_model(cfg, toy.n_features, toy.hierarchy)
    loss = make_loss(cfg, model, toy.hierarchy, toy.eval_mask, toy.Y_train)
    z, y = _batch(toy)
    mask = torch.as_tensor(toy.hierarchy.descendant_matrix(include_self=True))
    p = torch.sigmoid(z.double())
    yd = y.double()
    train_out = (1 - yd) * max_constraint(p, mask) + yd * max_constraint(yd * p, mask)
    m = torch.as_tensor(toy.eval_mask)
    ref = torch.nn.BCELoss()(train_out[:, m], yd[:, m])
    assert float(loss(z, y)) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("name", ["champ-hard", "champ-soft"])
def test_precomputed_champ_weights_equal_the_champ_module(toy, name):
    cfg = fast(model="mlp", loss=name, loss_options={"beta": 2.0})
    model = build_model(cfg, toy.n_features, toy.hierarchy)
    loss = make_loss(cfg, model, toy.hierarchy, toy.eval_mask, toy.Y_train)
    z, y = _batch(toy)
    extras = loss.prepare(toy.Y_train[:12])
    m = toy.eval_mask
    dist = toy.hierarchy.tree_distance_matrix()[np.ix_(m, m)]
    ref = CHAMPLoss(dist, soft=name == "champ-soft", beta=2.0, reduction="mean")(z[:, m], y[:, m])
    assert float(loss(z, y, *extras)) == pytest.approx(float(ref), rel=1e-5)


def test_rare_node_loss_uses_an_ensemble_of_two_heads(toy):
    cfg = fast(model="mcm-mlp", loss="rare-node")
    assert cfg.heads == 2
    model = build_model(cfg, toy.n_features, toy.hierarchy)
    assert model.head.n_heads == 2
    loss = make_loss(cfg, model, toy.hierarchy, toy.eval_mask, toy.Y_train)
    x = torch.as_tensor(toy.X_train[:10])
    y = torch.as_tensor(toy.Y_train[:10], dtype=torch.float32)
    z = model(x)
    assert z.shape == (2, 10, toy.n_labels)
    m = torch.as_tensor(toy.eval_mask)
    ref = RareNodeLoss.from_labels(toy.Y_train[:, toy.eval_mask])(model.head.training_logits(z, y)[..., m], y[:, m])
    assert float(loss(z, y).detach()) == pytest.approx(float(ref.detach()), rel=1e-6)


def test_class_weight_is_a_positive_weight(toy):
    from conehier.models.heads import inverse_frequency_weights

    cfg = fast(model="mlp", loss="bce", class_weight="inverse")
    model = build_model(cfg, toy.n_features, toy.hierarchy)
    loss = make_loss(cfg, model, toy.hierarchy, toy.eval_mask, toy.Y_train)
    z, y = _batch(toy)
    m = toy.eval_mask
    w = torch.as_tensor(inverse_frequency_weights(toy.Y_train[:, m]), dtype=torch.float32)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z[:, m], y[:, m], pos_weight=w)
    assert float(loss(z, y)) == pytest.approx(float(ref), rel=1e-6)


# --------------------------------------------------------------------------
# config, evaluation, summaries
# --------------------------------------------------------------------------
def test_config_validation():
    assert HMCConfig(model="hsoftmax", loss=None).loss == "nll"
    assert HMCConfig(loss=None).loss == "bce"
    assert HMCConfig(threshold="0.4").threshold == 0.4
    for kw, msg in [
        (dict(model="svm"), "unknown model"),
        (dict(loss="hinge"), "unknown loss"),
        (dict(model="per-level", loss="bce"), "softmax head"),
        (dict(model="mlp", loss="nll"), "softmax heads"),
        (dict(class_weight="log"), "class_weight"),
        (dict(loss="sigmoidf1", class_weight="inverse"), "does not apply"),
        (dict(threshold="best"), "threshold"),
        (dict(dropout=1.0), "dropout"),
        (dict(epochs=0), "epochs"),
    ]:
        with pytest.raises(ValueError, match=msg):
            HMCConfig(**kw)
    cfg = HMCConfig(loss="champ-soft", loss_options={"beta": 2})
    assert HMCConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown HMCConfig"):
        HMCConfig.from_dict({"hidden_dim": 3})
    assert set(HMC_LOSSES) >= {"bce", "champ-hard", "champ-soft", "sigmoidf1", "rare-node", "focal", "asl"}


def test_chmcnn_config():
    c = chmcnn_config("cellcycle_FUN")
    assert (c.hidden, c.layers, c.dropout, c.lr, c.weight_decay, c.batch_size) == (500, 3, 0.7, 1e-4, 1e-5, 4)
    assert c.epochs is None
    p = chmcnn_config("hmc:cellcycle_fun", published_epochs=True)
    assert p.epochs == 106 and p.retrain
    assert chmcnn_config("Diatoms").lr == 1e-5 and chmcnn_config("seq_FUN").hidden == 2000
    assert chmcnn_config("church_FUN").hidden == 500
    with pytest.raises(LookupError, match="church_FUN"):
        chmcnn_config("church_FUN", published_epochs=True)
    assert chmcnn_config("cellcycle_FUN", hidden=16, lr=None).hidden == 16


def test_evaluate_and_thresholds():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 6)) < 0.3).astype(np.uint8)
    y[:, 4] = 0  # no positives: PCDB falls back to 0.5
    s = np.clip(y * 0.4 + rng.random((60, 6)) * 0.6, 0, 1)
    mask = np.array([False, True, True, True, True, True])
    t = tune_thresholds(y, s, mask, "pcdb")
    assert t.shape == (6,) and t[0] == 0.5 and t[4] == 0.5 and np.isfinite(t).all()
    assert isinstance(tune_thresholds(y, s, mask, "ofadb"), float)
    m = evaluate_hmc(y, s, mask, y, threshold=t)
    for k in ("auprc", "auprc_macro", "macro_f1", "rare_recall", "auprc_rare", "auprc_frequent", "macro_f1_05"):
        assert k in m
    assert m["rare_recall"] == pytest.approx(rare_node_recall(y, s >= t, y, evaluate=mask))
    with pytest.raises(ValueError, match="pcdb"):
        tune_thresholds(y, s, mask, "best")


def test_summarize_and_run_hmc(toy):
    out = run_hmc(toy, fast(epochs=1), seeds=[0, 1])
    assert out["seeds"] == [0, 1] and len(out["per_seed"]) == 2
    a = [r["metrics"]["auprc"] for r in out["per_seed"]]
    assert out["metrics"]["auprc"] == pytest.approx(np.mean(a))
    assert out["metrics"]["auprc_std"] == pytest.approx(np.std(a, ddof=1))
    json.dumps(out)  # serialisable
    one = summarize([fit_hmc(toy, fast(epochs=1))])
    assert one["metrics"]["auprc_std"] == 0.0
    with pytest.raises(ValueError):
        summarize([])


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _parser():
    parser = argparse.ArgumentParser(prog="conehier")
    sub = parser.add_subparsers(dest="command", required=True)
    add_hmc_parser(sub)
    return parser


def test_cli_writes_results_json(tmp_path):
    root = _write_toy(tmp_path / "data")
    out = tmp_path / "run"
    args = _parser().parse_args([
        "hmc", "--dataset", "cellcycle_FUN", "--model", "mcm-mlp", "--loss", "champ-soft", "--seeds", "2",
        "--epochs", "2", "--hidden", "16", "--batch-size", "32", "--lr", "0.01", "--out", str(out),
        "--data-dir", str(root), "--quiet", "--loss-option", "beta=0.5",
    ])
    assert args.func(args) == 0
    res = json.loads((out / "results.json").read_text())
    for k in ("auprc", "auprc_macro", "macro_f1", "rare_recall"):
        assert k in res["metrics"] and f"{k}_std" in res["metrics"]
    assert res["config"]["loss"] == "champ-soft" and res["config"]["hidden"] == 16
    assert res["config"]["loss_options"] == {"beta": 0.5}
    assert res["seeds"] == [0, 1] and res["wall_seconds"] > 0 and res["epochs"] == [2, 2]


def test_cli_arguments_and_errors(tmp_path):
    p = _parser()
    a = p.parse_args(["hmc", "--dataset", "cellcycle_FUN", "--epochs", "published", "--out", "x"])
    cfg = config_from_args(a)
    assert (cfg.epochs, cfg.retrain, cfg.hidden, cfg.model, cfg.loss) == (106, True, 500, "mcm-mlp", "bce")
    a = p.parse_args(["hmc", "--dataset", "cellcycle_FUN", "--model", "hsoftmax", "--out", "x", "--no-retrain"])
    cfg = config_from_args(a)
    assert cfg.loss == "nll" and cfg.epochs is None and not cfg.retrain
    with pytest.raises(SystemExit):
        p.parse_args(["hmc", "--dataset", "x", "--epochs", "many", "--out", "x"])
    with pytest.raises(SystemExit):
        p.parse_args(["hmc", "--dataset", "x", "--loss", "hinge", "--out", "x"])
    a = p.parse_args(["hmc", "--dataset", "nosuchset", "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="unknown HMC data set"):
        cmd_hmc(a)
    a = p.parse_args(["hmc", "--dataset", "cellcycle_FUN", "--model", "per-level", "--loss", "bce", "--out", "x"])
    with pytest.raises(ValueError, match="softmax head"):
        config_from_args(a)


def test_prepared_pair_masks_and_champ_weights_change_nothing(toy):
    cfg = fast(model="mcm-mlp", loss="champ-hard", mcm_method="sparse")
    model = build_model(cfg, toy.n_features, toy.hierarchy)
    loss = make_loss(cfg, model, toy.hierarchy, toy.eval_mask, toy.Y_train)
    z, y = _batch(toy)
    z.requires_grad_(True)
    extras = loss.prepare(toy.Y_train[:12])
    assert len(extras) == 2 and extras[0].dtype == torch.bool  # pair mask, CHAMP weights
    a = loss(z, y, *extras)
    b = loss(z, y)  # computed on the fly
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)
    ga = torch.autograd.grad(a, z)[0]
    gb = torch.autograd.grad(loss(z, y), z)[0]
    assert torch.allclose(ga, gb)
