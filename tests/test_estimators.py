import numpy as np
import pytest

from conehier import ConeClassifier, Hierarchy, UnknownLabelError
from conehier.estimators import NotFittedError, labels_to_matrix

PATHS = [("A", "A1"), ("A", "A2"), ("B", "B1"), ("B", "B2")]


def data(n=160, F=6, seed=0, noise=0.3):
    rng = np.random.default_rng(0)
    proto = rng.normal(size=(len(PATHS), F)) * 2
    rng = np.random.default_rng(seed)
    leaf = rng.integers(0, len(PATHS), n)
    X = (proto[leaf] + noise * rng.normal(size=(n, F))).astype(np.float32)
    return X, [PATHS[i] for i in leaf]


FAST = dict(dim=4, epochs=12, lr_W=1e-2, lr_labels=1e-2, device="cpu", threads=1)


@pytest.fixture(scope="module")
def fitted():
    X, y = data()
    return ConeClassifier("hyperbolic-cones", **FAST).fit(X, y)


def test_fit_predict_score_with_label_paths(fitted):
    Xt, yt = data(n=60, seed=1)
    pred = fitted.predict(Xt)
    assert pred.shape == (60, 2)
    acc = np.mean([tuple(p) == t for p, t in zip(pred.tolist(), yt)])
    assert acc > 0.9
    assert fitted.score(Xt, yt) > 0.9
    s = fitted.predict_scores(Xt)
    assert s.shape == (60, fitted.hierarchy_.n)
    np.testing.assert_allclose(s, -fitted.predict_energies(Xt))
    # predict = lowest energy per level
    lv = fitted.levels_
    assert pred[0, 1] == fitted.classes_[lv[1][np.argmin(fitted.predict_energies(Xt[:1])[0, lv[1]])]]
    m = fitted.evaluate(Xt, yt)
    assert {"micro_f1", "micro_f1_level_1", "micro_f1_level_2", "hit@3", "hit@5", "auprc"} <= set(m)
    assert fitted.decision_ == "level-argmax"
    assert fitted.n_features_in_ == 6 and len(fitted.history_) == 12
    assert fitted.predict_label_matrix(Xt).shape == (60, fitted.hierarchy_.n)


def test_label_matrix_multipath_dag():
    # a DAG: "AB" has two parents; samples carry two paths
    h = Hierarchy.from_edges([("A", "A1"), ("A", "AB"), ("B", "AB"), ("B", "B1")])
    rng = np.random.default_rng(0)
    proto = rng.normal(size=(3, 5)) * 2
    k = rng.integers(0, 3, 150)
    X = (proto[k] + 0.3 * rng.normal(size=(150, 5))).astype(np.float32)
    Y = np.zeros((150, h.n), np.uint8)
    Y[k == 0, h.index("A1")] = 1
    Y[k == 1, h.index("AB")] = 1  # closed on the way in: A and B too
    Y[k == 2, h.index("B1")] = 1
    Y[k == 0, h.index("B1")] = 1  # multi-label
    clf = ConeClassifier("euclidean-cones", **FAST).fit(X, Y, hierarchy=h)
    assert clf.decision_ == "threshold"
    Yc = h.close_labels(Y)
    assert clf.score(X, Yc) > 0.8
    assert clf.predict_label_matrix(X).shape == Y.shape
    # label paths with several paths per sample give the same matrix
    y_paths = [[("A", "A1"), ("B", "B1")]]
    M, _ = labels_to_matrix(y_paths, h)
    assert M[0].tolist() == [bool(v) for v in h.close_labels(np.eye(h.n, dtype=np.uint8)[[h.index("A1")]] +
                                                            np.eye(h.n, dtype=np.uint8)[[h.index("B1")]])[0]]


def test_sklearn_contract():
    clf = ConeClassifier("order", dim=3, epochs=2)
    assert clf.get_params()["dim"] == 3 and clf.get_params()["geometry"] == "order"
    assert not any(k.endswith("_") for k in vars(clf))  # init stores arguments only
    assert clf.set_params(dim=5) is clf and clf.dim == 5
    with pytest.raises(ValueError, match="invalid parameter"):
        clf.set_params(dims=5)
    with pytest.raises(NotFittedError, match="not fitted"):
        clf.predict(np.zeros((2, 3)))
    assert "dim=5" in repr(clf)
    sklearn_base = pytest.importorskip("sklearn.base")
    c2 = sklearn_base.clone(clf)
    assert c2.get_params() == clf.get_params() and c2 is not clf


def test_bad_input(fitted):
    X, y = data(n=20)
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ConeClassifier(**FAST).fit(Xn, y)
    with pytest.raises(ValueError, match="2-D"):
        ConeClassifier(**FAST).fit(X[0], y)
    with pytest.raises(ValueError, match="samples"):
        ConeClassifier(**FAST).fit(X, y[:5])
    with pytest.raises(ValueError, match="expected 6"):
        fitted.predict(X[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict_scores(Xn)
    with pytest.raises(UnknownLabelError, match="'C1'"):
        fitted.score(X[:2], [("A", "A1"), ("A", "C1")])
    with pytest.raises(ValueError, match="not an ancestor"):
        fitted.score(X[:2], [("A", "B1"), ("A", "A1")])
    with pytest.raises(ValueError, match="hierarchy"):
        ConeClassifier(**FAST).fit(X, np.zeros((20, 6)))
    with pytest.raises(ValueError, match="geometry"):
        ConeClassifier("poincare").fit(X, y)


def test_seeded_and_validation_data():
    X, y = data(n=80)
    a = ConeClassifier("order", **{**FAST, "epochs": 2}).fit(X, y)
    b = ConeClassifier("order", **{**FAST, "epochs": 2}).fit(X, y)
    np.testing.assert_array_equal(a.predict_scores(X), b.predict_scores(X))
    Xv, yv = data(n=30, seed=3)
    c = ConeClassifier("order", **{**FAST, "epochs": 2}).fit(X, y, validation_data=(Xv, yv))
    assert c.result_.valid_metrics["micro_f1"] == pytest.approx(c.evaluate(Xv, yv)["micro_f1"])
