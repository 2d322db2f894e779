import numpy as np
import pytest
import torch

from conehier.hierarchy import Hierarchy
from conehier.training.joint import (
    JointConfig,
    JointTrainer,
    build_joint_model,
    classification_metrics,
    default_eval_mask,
    evaluated_levels,
    fit_joint,
    joint_graph,
    predict_labels,
    resolve_decision,
    tune_decision,
    tune_level_thresholds,
)

PATHS = [("A", "A1"), ("A", "A2"), ("B", "B1"), ("B", "B2")]


def toy(n=160, F=6, seed=0, noise=0.3, root=None):
    """Separable clusters, one per leaf of a 2-level tree; Y (n, C) closed labels."""
    h = Hierarchy.from_label_paths(PATHS, root=root)
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(len(PATHS), F)) * 2
    leaf = rng.integers(0, len(PATHS), n)
    X = (proto[leaf] + noise * rng.normal(size=(n, F))).astype(np.float32)
    Y = np.zeros((n, h.n), np.uint8)
    for j, (a, b) in enumerate(PATHS):
        Y[leaf == j, h.index(a)] = 1
        Y[leaf == j, h.index(b)] = 1
    if root is not None:
        Y[:, h.index(root)] = 1
    return h, X, Y


def test_joint_graph_positives_levels_candidates():
    h, X, Y = toy(n=5, root="r")
    g = joint_graph(h, Y)
    C = h.n
    pos = {tuple(p) for p in g["positives"].tolist()}
    assert {tuple(p) for p in h.closure_edges().tolist()} <= pos
    for j in range(5):
        for a in np.flatnonzero(Y[j]):
            assert (a, C + j) in pos
    assert len(pos) == len(g["positives"]) == len(h.closure_edges()) + Y.sum()
    assert (g["levels"][C:] == h.num_levels).all()
    assert not g["parent_candidates"][C:].any()  # images are never parents
    assert not g["parent_candidates"][h.index("r")]  # the root is everyone's ancestor
    assert g["child_candidates"].all()


def test_trainer_negatives_never_image_image_nor_positive():
    h, X, Y = toy(n=40, root="r")
    cfg = JointConfig(geometry="order", dim=3, epochs=1, device="cpu")
    model = build_joint_model(cfg, h.n, X.shape[1])
    tr = JointTrainer(model, X, Y, h, cfg)
    neg = tr.sampler.sample(tr.positives, torch.Generator().manual_seed(0))
    assert neg.shape == (len(tr.positives), 10, 2)
    C = h.n
    assert (neg[..., 0] < C).all()  # parents are labels: no image-image pair
    keys = set((tr.positives[:, 0] * (C + 40) + tr.positives[:, 1]).tolist())
    flat = neg.reshape(-1, 2)
    assert not (set((flat[:, 0] * (C + 40) + flat[:, 1]).tolist()) & keys)
    assert (flat[:, 0] != flat[:, 1]).all()
    # pick-per-level: the child corruptions reach images and labels
    kids = neg[:, 5:, 1]
    assert (kids >= C).any() and (kids < C).any()


def test_tune_level_thresholds_by_hand():
    # one level with nodes 0, 1; 4 samples; sample 3 has no label on the level
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4], [0.5, 0.6]])
    # argmax: 0 (right, 0.9), 1 (right, 0.8), 1 (wrong, 0.4), 1 (wrong, 0.6); P = 3
    # keep >= 0.9: 2*1/(3+1)=0.5; >= 0.8: 2*2/(3+2)=0.8; >= 0.6: 4/6; >= 0.4: 4/7 -> t = 0.8
    t = tune_level_thresholds(y, s, [np.array([0, 1])])
    assert t[0] == pytest.approx(0.8)
    pred = predict_labels(s, "level-argmax", t, [np.array([0, 1])])
    assert pred.tolist() == [[True, False], [False, True], [False, False], [False, False]]
    # keeping everything is best: -inf (also keeps unseen lower scores)
    t2 = tune_level_thresholds(y[:3], s[:3] * [[1, 1], [1, 1], [1, 0]], [np.array([0, 1])])
    assert t2[0] == -np.inf
    # no true label on the level: predict nothing
    assert tune_level_thresholds(np.zeros((2, 2)), s[:2], [np.array([0, 1])])[0] == np.inf


def test_predict_threshold_rule_and_tuning():
    y = np.array([[1, 1, 0], [0, 1, 1]])
    s = np.array([[0.9, 0.7, 0.1], [0.2, 0.6, 0.8]])
    assert predict_labels(s, "threshold", 0.65, None).tolist() == [[1, 1, 0], [0, 0, 1]]
    t = tune_decision("threshold", y, s, None, np.ones(3, bool), "ofadb")
    assert t == pytest.approx(0.6)  # keeps all four positives, no negative
    tp = tune_decision("threshold", y, s, None, np.ones(3, bool), "pcdb")
    assert tp.shape == (3,) and tp[0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="decision"):
        predict_labels(s, "nope", None, [])


def test_classification_metrics_by_hand():
    h = Hierarchy.from_label_paths(PATHS, root="r")
    m = default_eval_mask(h)
    assert not m[h.index("r")] and m.sum() == 6
    lv = evaluated_levels(h, m)
    assert [sorted(h.decode(x)) for x in lv] == [["A", "B"], ["A1", "A2", "B1", "B2"]]
    Y = np.zeros((2, h.n), bool)
    Y[0, h.encode(["r", "A", "A1"])] = True
    Y[1, h.encode(["r", "B", "B2"])] = True
    S = np.zeros((2, h.n))
    S[0, h.encode(["A", "B", "A1", "A2", "B1", "B2"])] = [0.9, 0.1, 0.2, 0.8, 0.0, 0.1]
    S[1, h.encode(["A", "B", "A1", "A2", "B1", "B2"])] = [0.3, 0.7, 0.1, 0.2, 0.3, 0.9]
    pred = predict_labels(S, "level-argmax", None, lv)
    out = classification_metrics(Y, S, pred, lv, m)
    # level 1: both right; level 2: sample 0 wrong (A2), sample 1 right -> tp 3, fp 1, fn 1
    assert out["micro_f1_level_1"] == 1.0
    assert out["micro_f1_level_2"] == pytest.approx(0.5)
    assert out["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # hit@1 pooled over (sample, level): 3 of 4; hit@3: A1 is 2nd for sample 0 -> 4 of 4
    assert out["hit@1"] == pytest.approx(0.75)
    assert out["hit@3"] == 1.0
    assert out["labels_per_sample"] == 2.0
    assert 0 < out["auprc"] <= 1


def test_resolve_decision():
    h, X, Y = toy(n=10)
    lv = evaluated_levels(h)
    assert resolve_decision("auto", Y, lv) == "level-argmax"
    Y2 = Y.copy()
    Y2[0, h.encode(["A", "B"])] = 1
    assert resolve_decision("auto", Y2, lv) == "threshold"
    assert resolve_decision("threshold", Y, lv) == "threshold"
    with pytest.raises(ValueError):
        resolve_decision("x", Y, lv)


@pytest.mark.parametrize("geometry", ["order", "euclidean-cones", "hyperbolic-cones"])
def test_fit_joint_learns_separable_toy(geometry):
    h, X, Y = toy(n=200, root="r")
    hv, Xv, Yv = toy(n=80, seed=1, root="r")
    lr = {"hyperbolic-cones": 1e-2}.get(geometry)
    cfg = JointConfig(geometry=geometry, dim=4, epochs=15, lr_W=1e-2, lr_labels=lr, device="cpu", threads=1)
    # the same prototypes: seed 0 for the prototypes, other noise for valid
    r = fit_joint(X, Y, h, cfg, X_valid=X[:80], Y_valid=Y[:80], eval_mask=default_eval_mask(h))
    assert r.decision == "level-argmax"
    m = r.evaluate(X[80:], Y[80:])
    assert m["micro_f1"] > 0.9, m
    assert m["hit@3"] > 0.95
    assert 1 <= r.best_epoch <= 15 and r.epochs_trained == 15
    assert [h_["epoch"] for h_ in r.history] == list(range(1, 16))
    assert "reconstruction_f1" in r.history[-1]
    rec = r.reconstruction()
    assert 0 <= rec["f1"] <= 1


def test_seeded_runs_are_identical_and_float64():
    h, X, Y = toy(n=60)
    cfg = JointConfig(geometry="euclidean-cones", dim=3, epochs=2, device="cpu", dtype="float64", reconstruction=False)
    a = fit_joint(X, Y, h, cfg, X_valid=X[:20], Y_valid=Y[:20])
    b = fit_joint(X, Y, h, cfg, X_valid=X[:20], Y_valid=Y[:20])
    ea, eb = a.energies(X), b.energies(X)
    assert a.model.dtype == torch.float64
    np.testing.assert_array_equal(ea, eb)
    assert np.isfinite(ea).all()


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    h, X, Y = toy(n=60)
    base = dict(geometry="hyperbolic-cones", dim=3, device="cpu", reconstruction=False)
    full = fit_joint(X, Y, h, JointConfig(epochs=4, **base), X_valid=X[:20], Y_valid=Y[:20])
    fit_joint(X, Y, h, JointConfig(epochs=2, **base), X_valid=X[:20], Y_valid=Y[:20], checkpoint_dir=tmp_path)
    assert (tmp_path / "joint_checkpoint.pt").is_file()
    resumed = fit_joint(X, Y, h, JointConfig(epochs=4, **base), X_valid=X[:20], Y_valid=Y[:20],
                        checkpoint_dir=tmp_path)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history], rel=1e-6)
    np.testing.assert_allclose(resumed.energies(X), full.energies(X), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        fit_joint(X, Y, h, JointConfig(epochs=4, **{**base, "dim": 4}), X_valid=X[:20], Y_valid=Y[:20],
                  checkpoint_dir=tmp_path)


@pytest.mark.parametrize("optimizer", ["radam", "rsgd"])
def test_riemannian_optimizers(optimizer):
    h, X, Y = toy(n=40)
    cfg = JointConfig(geometry="hyperbolic-cones", dim=3, epochs=2, optimizer=optimizer, lr_labels=1e-2,
                      device="cpu", reconstruction=False)
    r = fit_joint(X, Y, h, cfg, X_valid=X[:10], Y_valid=Y[:10])
    assert r.model.labels.parametrization == "ball"
    assert (r.model.label_points().norm(dim=-1) < 1).all()
    assert np.isfinite(r.energies(X)).all()


def test_label_init_from_result_and_multilabel_threshold_rule():
    h, X, Y = toy(n=60)
    Y = Y.copy()
    Y[:5, h.encode(["B", "B1"])] = 1  # a few samples with two paths
    rng = np.random.default_rng(0)

    class Run:  # anything with embeddings and names, as an EmbedResult
        names = list(reversed(h.names))
        embeddings = rng.uniform(0.2, 0.5, size=(h.n, 3))

    cfg = JointConfig(geometry="euclidean-cones", dim=3, epochs=1, lr_labels=0.0, device="cpu", reconstruction=False)
    r = fit_joint(X, Y, h, cfg, X_valid=X[:20], Y_valid=Y[:20], label_init=Run)
    assert r.decision == "threshold" and isinstance(r.thresholds, float)
    expected = torch.as_tensor(Run.embeddings[::-1].copy(), dtype=torch.float32)
    torch.testing.assert_close(r.model.label_points(), expected)  # lr 0: labels unchanged
    assert r.predict(X).shape == Y.shape


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="geometry"):
        JointConfig(geometry="poincare")
    with pytest.raises(ValueError, match="optimizer"):
        JointConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="unknown JointConfig"):
        JointConfig.from_dict({"dims": 3})
    assert JointConfig(geometry="euclidean-cones").margin == 1.0  # the thesis's setting
    assert JointConfig(geometry="euclidean-cones", margin=0.2).margin == 0.2
    h, X, Y = toy(n=20)
    cfg = JointConfig(dim=2, epochs=1, device="cpu")
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_joint(Xn, Y, h, cfg)
    with pytest.raises(ValueError, match="shape"):
        fit_joint(X, Y[:, :3], h, cfg)
    with pytest.raises(ValueError, match="rows"):
        fit_joint(X, Y[:5], h, cfg)
    with pytest.raises(ValueError, match="binary"):
        fit_joint(X, Y * 2, h, cfg)
    with pytest.raises(ValueError, match="features"):
        fit_joint(X, Y, h, cfg, X_valid=X[:, :3], Y_valid=Y)


def test_label_init_by_a_label_only_run():
    h, X, Y = toy(n=40, root="r")
    cfg = JointConfig(geometry="euclidean-cones", dim=3, epochs=1, lr_labels=0.0, label_init="embed",
                      label_init_epochs=5, device="cpu", reconstruction=False)
    r = fit_joint(X, Y, h, cfg, X_valid=X[:10], Y_valid=Y[:10])
    assert r.label_init["epochs"] == 5 and r.label_init["seconds"] > 0
    from conehier import embed

    ref = embed(h, model="euclidean-cones", dim=3, train_percent=90, epochs=5, seed=0, K=0.1, device="cpu",
                progress=False)
    pos = [ref.names.index(n) for n in h.names]
    np.testing.assert_allclose(r.model.label_points().detach().numpy(), ref.embeddings[pos], rtol=1e-5, atol=1e-6)
