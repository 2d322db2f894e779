"""HMC ARFF loader: real benchmarks (``$CONEHIER_DATA/hmc``) and tiny hand-written files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from conehier.data.hmc import (
    GO_ROOTS,
    HMC_DATASETS,
    ArffFormatError,
    hmc_files,
    load_hmc,
    load_hmc_files,
    read_arff,
)
from conehier.data.hmc import _url_for
from conehier.data.paths import DataNotFoundError
from conehier.hierarchy import UnknownLabelError

REAL = ("cellcycle_FUN", "pheno_GO", "Diatoms", "ImCLEF07A")


# --------------------------------------------------------------- data fixture
def _require_hmc(root: Path | None, names) -> Path:
    """``root`` if it holds every file of ``names``; else fail under ``CI=true``, skip otherwise."""
    missing = [f for n in names for f in hmc_files(n).values() if root is None or not (root / "hmc" / f).is_file()]
    if missing:
        where = root / "hmc" if root is not None else "$CONEHIER_DATA/hmc"
        msg = f"HMC reference data missing: {', '.join(missing[:4])} not in {where} (set CONEHIER_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="module")
def hmc_root(data_root) -> Path:
    """The data root (conftest's ``data_root``: ``$CONEHIER_DATA``) holding the HMC files used here."""
    return _require_hmc(data_root, REAL)


@pytest.fixture(scope="module")
def real(hmc_root):
    """Each real data set loaded once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_hmc(name, data_dir=hmc_root, download=False)
        return cache[name]

    return get


def test_missing_data_fails_under_ci_and_skips_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cellcycle_FUN.train.arff"):
        _require_hmc(tmp_path, ["cellcycle_FUN"])
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _require_hmc(tmp_path, ["cellcycle_FUN"])
    with pytest.raises(pytest.skip.Exception):
        _require_hmc(None, ["Diatoms"])


# ------------------------------------------------------------------ real data
def test_cellcycle_fun_shapes(real):
    d = real("cellcycle_FUN")
    assert d.splits == {"train": 1628, "valid": 848, "test": 1281}
    assert d.n_features == 77 and len(d.feature_names) == 77
    for X, Y in ((d.X_train, d.Y_train), (d.X_valid, d.Y_valid), (d.X_test, d.Y_test)):
        assert X.dtype == np.float32 and X.shape[1] == 77
        assert Y.dtype == np.uint8 and Y.shape == (len(X), d.hierarchy.n)
        assert np.isfinite(X).all()
    h = d.hierarchy
    assert h.n == 500 and int(d.eval_mask.sum()) == 499
    assert h.names[0] == "root" and not d.eval_mask[0]
    assert h.is_tree and [h.names[r] for r in h.roots] == ["root"]
    # a path's parent is the path without its last segment
    assert [h.names[p] for p in h.parents("01/01/03")] == ["01/01"]
    assert [h.names[p] for p in h.parents("01")] == ["root"]
    assert d.valid_source == "file" and "cellcycle_FUN" in repr(d)


def test_cellcycle_matches_a_direct_reading(real, hmc_root):
    """Raw values, imputation, scaling and labels against a plain re-implementation."""
    d = real("cellcycle_FUN")

    def naive(split):
        X, labels = [], []
        lines = (hmc_root / "hmc" / f"cellcycle_FUN.{split}.arff").read_text().splitlines()
        start = next(i for i, l in enumerate(lines) if l.strip().upper() == "@DATA")
        for l in lines[start + 1:]:
            if l.strip():
                v = l.strip().split(",")
                X.append([np.nan if x == "?" else float(x) for x in v[:-1]])
                labels.append(v[-1].split("@"))
        return np.array(X), labels

    Xtr, _ = naive("train")
    mean = np.nanmean(Xtr, 0)
    imp = np.where(np.isnan(Xtr), mean, Xtr)
    std = imp.std(0)
    for split, X, Y in (("valid", d.X_valid, d.Y_valid), ("test", d.X_test, d.Y_test), ("train", d.X_train, d.Y_train)):
        raw, labels = naive(split)
        ref = (np.where(np.isnan(raw), mean, raw) - mean) / std
        np.testing.assert_allclose(X, ref, rtol=1e-5, atol=1e-5)
        Yref = np.zeros_like(Y)
        for r, labs in enumerate(labels):
            for lab in labs:
                segs = lab.split("/")
                for k in range(1, len(segs) + 1):
                    Yref[r, d.hierarchy.index("/".join(segs[:k]))] = 1
            Yref[r, d.hierarchy.index("root")] = 1
        np.testing.assert_array_equal(Y, Yref)


def test_pheno_go_is_a_dag_and_skips_the_go_roots(real, hmc_root):
    import networkx as nx

    d = real("pheno_GO")
    h = d.hierarchy
    n_parents = np.bincount(h.edges[:, 1], minlength=h.n)
    assert n_parents.max() > 1 and not h.is_forest
    assert [h.names[r] for r in h.roots] == ["root"]
    skipped = {h.names[i] for i in np.flatnonzero(~d.eval_mask)}
    assert skipped == {"root", *GO_ROOTS}
    assert int(d.eval_mask.sum()) == h.n - 4
    assert {h.names[c] for c in h.children("root")} == set(GO_ROOTS)
    # 69 nominal {w,n,s,r} attributes, one-hot, not scaled: 0/1 with at most one 1 per attribute
    assert d.n_features == 69 * 4 and d.feature_names[:4] == tuple(f"2-deoxyglucose={c}" for c in "wnsr")
    for X in (d.X_train, d.X_valid, d.X_test):
        assert set(np.unique(X)) <= {0.0, 1.0}
        assert (X.reshape(len(X), 69, 4).sum(-1) <= 1).all()
    # labels against networkx ancestors of the raw class values
    g = h.to_networkx()
    lines = (hmc_root / "hmc" / "pheno_GO.test.arff").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().upper() == "@DATA")
    rows = [l.strip().rsplit(",", 1)[1].split("@") for l in lines[start + 1:] if l.strip()]
    for r in range(0, len(rows), 37):
        want = set()
        for lab in rows[r]:
            i = h.index(lab)
            want |= {i} | nx.ancestors(g, i)
        assert set(np.flatnonzero(d.Y_test[r])) == want


@pytest.mark.parametrize("name", REAL)
def test_labels_closed_under_ancestors(real, name):
    d = real(name)
    root = d.hierarchy.index("root")
    for Y in (d.Y_train, d.Y_valid, d.Y_test):
        if Y is None:
            continue
        np.testing.assert_array_equal(Y, d.hierarchy.close_labels(Y))
        assert Y[:, root].all()  # every instance has a label, so its root is set


# (features, evaluated nodes): C-HMCNN's input_dims / output_dims; church and pheno, which it does
# not list, as measured here. expr_FUN has no public training file.
DIMS = {"cellcycle_FUN": (77, 499), "church_FUN": (31, 499), "derisi_FUN": (63, 499), "eisen_FUN": (79, 461),
        "gasch1_FUN": (173, 499), "gasch2_FUN": (52, 499), "pheno_FUN": (276, 455), "seq_FUN": (529, 499),
        "spo_FUN": (86, 499)}


@pytest.mark.parametrize("name", sorted(DIMS))
def test_every_fun_set_loads(data_root, name):
    _require_hmc(data_root, [name])
    d = load_hmc(name, data_dir=data_root, download=False)
    assert (d.n_features, int(d.eval_mask.sum())) == DIMS[name]
    assert d.hierarchy.is_tree and set(d.splits) == {"train", "valid", "test"}
    for X, Y in ((d.X_train, d.Y_train), (d.X_valid, d.Y_valid), (d.X_test, d.Y_test)):
        assert np.isfinite(X).all()
        np.testing.assert_array_equal(Y, d.hierarchy.close_labels(Y))


@pytest.mark.parametrize("name, n_features, n_eval", [("Diatoms", 371, 398), ("ImCLEF07A", 80, 96)])
def test_image_sets_have_no_valid_file_and_are_standardised(real, name, n_features, n_eval):
    # feature / node counts are C-HMCNN's input_dims / output_dims for these sets
    d = real(name)
    assert d.X_valid is None and d.Y_valid is None and d.valid_source == "none"
    assert set(d.splits) == {"train", "test"}
    assert d.n_features == n_features and int(d.eval_mask.sum()) == n_eval
    assert d.hierarchy.is_tree
    for X in (d.X_train, d.X_test):
        assert X.dtype == np.float32 and np.isfinite(X).all()
    X = d.X_train.astype(np.float64)
    varying = X.max(0) > X.min(0)
    assert varying.sum() > 0.9 * n_features
    np.testing.assert_allclose(X[:, varying].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(X[:, varying].std(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(X[:, ~varying], 0.0)


def test_split_validation_matches_sklearn_and_refits(real, hmc_root):
    from sklearn.model_selection import train_test_split

    d = real("Diatoms")
    v = d.split_validation(0.2, seed=0)
    n = d.splits["train"]
    n_val = math.ceil(0.2 * n)
    assert v.splits == {"train": n - n_val, "valid": n_val, "test": d.splits["test"]}
    assert v.valid_source == "split(fraction=0.2, seed=0)"
    tr, va = train_test_split(np.arange(n), test_size=0.2, random_state=0)
    np.testing.assert_array_equal(v.Y_train, d.Y_train[tr])
    np.testing.assert_array_equal(v.Y_valid, d.Y_train[va])
    np.testing.assert_array_equal(v.Y_test, d.Y_test)
    # statistics refitted on the reduced training split
    X = v.X_train.astype(np.float64)
    varying = X.max(0) > X.min(0)
    np.testing.assert_allclose(X[:, varying].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(X[:, varying].std(0), 1.0, atol=1e-4)
    raw_val = d._raw.X["train"][va]
    np.testing.assert_allclose(v.X_valid, (raw_val - v.feature_mean) / v.feature_scale, rtol=1e-5, atol=1e-5)
    # seeded: same seed same split, other seed another one; also through load_hmc
    np.testing.assert_array_equal(d.split_validation(0.2, seed=0).Y_valid, v.Y_valid)
    assert not np.array_equal(d.split_validation(0.2, seed=1).Y_valid, v.Y_valid)
    w = load_hmc("diatoms", data_dir=hmc_root, download=False, valid_fraction=0.2, seed=0)
    np.testing.assert_array_equal(w.X_valid, v.X_valid)
    with pytest.raises(ValueError, match="already has a validation split"):
        v.split_validation()
    with pytest.raises(ValueError, match="fraction"):
        d.split_validation(1.5)
    with pytest.raises(ValueError, match="own validation file"):
        load_hmc("cellcycle_FUN", data_dir=hmc_root, download=False, valid_fraction=0.2)


def test_hmc_prefix_and_registry(real, hmc_root):
    from conehier.data.registry import load_spec

    s = load_spec("hmc:cellcycle_FUN", data_dir=hmc_root, download=False)
    assert s.samples == {"train": 1628, "valid": 848, "test": 1281}
    assert s.hierarchy.n == 500
    assert load_hmc("hmc:CellCycle_fun", data_dir=hmc_root, download=False).name == "cellcycle_FUN"


# ------------------------------------------------------------ names and files
def test_names_files_and_urls():
    assert "cellcycle_FUN" in HMC_DATASETS and "pheno_GO" in HMC_DATASETS and "ImCLEF07A" in HMC_DATASETS
    assert hmc_files("cellcycle_FUN") == {s: f"cellcycle_FUN.{s}.arff" for s in ("train", "valid", "test")}
    assert hmc_files("Diatoms") == {"train": "Diatoms_train.arff", "test": "Diatoms_test.arff"}
    assert hmc_files("imclef07a") == {"train": "ImCLEF07A_Train.arff", "test": "ImCLEF07A_Test.arff"}
    base = "https://raw.githubusercontent.com/EGiunchiglia/C-HMCNN/master/HMC_data/"
    assert _url_for("cellcycle_FUN.valid.arff") == base + "datasets_FUN/cellcycle_FUN/cellcycle_FUN.valid.arff"
    assert _url_for("pheno_GO.train.arff") == base + "datasets_GO/pheno_GO/pheno_GO.train.arff"
    assert _url_for("Diatoms_test.arff") == base + "others/Diatoms_test.arff"
    assert _url_for("ImCLEF07A_Train.arff") == base + "others/ImCLEF07A_Train.arff"
    assert _url_for("expr_FUN.train.arff") is None  # not published
    with pytest.raises(ValueError, match="did you mean 'cellcycle_FUN'"):
        hmc_files("cellcycle_FN")


def test_missing_data_dir_names_the_expected_path(tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        load_hmc("cellcycle_FUN", data_dir=tmp_path, download=False)
    msg = str(exc.value)
    assert str(tmp_path / "hmc") in msg and "cellcycle_FUN.train.arff" in msg


# ------------------------------------------------------------ tiny ARFF files
HEADER = """% a tiny HMC file
@RELATION tiny
@ATTRIBUTE x1 numeric
@ATTRIBUTE colour {red,green,'dark blue'}
@ATTRIBUTE x2 NUMERIC
@ATTRIBUTE class hierarchical 01,01/01,01/02,02,02/01/05

@DATA
"""
TRAIN = HEADER + """1.0,red,?,01/01
3.0,?,4,02@01/02
?,'dark blue',8,02/01/05
% a comment line

2.0,green,6,01
"""
TEST = HEADER + """?,green,10,02/01
5,red,?,01/02@02/01/05
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tiny_paths_file_labels(tmp_path):
    a = read_arff(_write(tmp_path, "t.train.arff", TRAIN))
    h = a.hierarchy
    # root first, then by depth and name; the undeclared prefix 02/01 is added
    assert h.names == ["root", "01", "02", "01/01", "01/02", "02/01", "02/01/05"]
    assert [h.names[p] for p in h.parents("02/01/05")] == ["02/01"]
    assert a.lines.tolist() == [9, 10, 11, 14]
    want = {0: {"root", "01", "01/01"}, 1: {"root", "01", "02", "01/02"},
            2: {"root", "02", "02/01", "02/01/05"}, 3: {"root", "01"}}
    for r, labs in want.items():
        assert {h.names[i] for i in np.flatnonzero(a.Y[r])} == labs
    assert a.Y.dtype == np.uint8


def test_tiny_imputation_scaling_and_onehot(tmp_path):
    d = load_hmc_files(_write(tmp_path, "t.train.arff", TRAIN), _write(tmp_path, "t.test.arff", TEST))
    assert d.feature_names == ("x1", "colour=red", "colour=green", "colour=dark blue", "x2")
    assert d.X_valid is None and d.splits == {"train": 4, "test": 2}
    # x1 = 1, 3, ?, 2: mean 2 -> imputed 1, 3, 2, 2: std sqrt(0.5)
    # x2 = ?, 4, 8, 6: mean 6 -> imputed 6, 4, 8, 6: std sqrt(2)
    r2 = math.sqrt(2)
    np.testing.assert_allclose(d.feature_mean, [2, 0, 0, 0, 6])
    np.testing.assert_allclose(d.feature_scale, [math.sqrt(0.5), 1, 1, 1, r2])
    np.testing.assert_allclose(d.X_train, [[-r2, 1, 0, 0, 0],
                                           [r2, 0, 0, 0, -r2],
                                           [0, 0, 0, 1, r2],
                                           [0, 0, 1, 0, 0]], rtol=1e-6, atol=1e-6)
    # test imputed and scaled with the TRAINING statistics
    np.testing.assert_allclose(d.X_test, [[0, 0, 1, 0, 4 / r2], [3 / math.sqrt(0.5), 1, 0, 0, 0]], rtol=1e-6)
    assert d.X_train.dtype == np.float32
    # scale_onehot standardises the one-hot columns too
    s = load_hmc_files(tmp_path / "t.train.arff", tmp_path / "t.test.arff", scale_onehot=True)
    np.testing.assert_allclose(s.feature_mean[1:4], [0.25, 0.25, 0.25])
    np.testing.assert_allclose(s.X_train.std(0), 1.0, rtol=1e-6)


def test_tiny_constant_column_is_only_centred(tmp_path):
    text = """@relation c
@attribute k numeric
@attribute z numeric
@attribute class hierarchical a,b
@data
5,1,a
5,?,b
5,3,a
"""
    tr = _write(tmp_path, "c.train.arff", text)
    te = _write(tmp_path, "c.test.arff", text.replace("5,1,a", "7,1,a"))
    d = load_hmc_files(tr, te)
    np.testing.assert_array_equal(d.X_train[:, 0], 0)
    np.testing.assert_allclose(d.X_test[:, 0], [2, 0, 0])
    assert d.feature_scale[0] == 1


def test_tiny_go_edges_dag(tmp_path):
    text = """@RELATION go
@ATTRIBUTE a numeric
@ATTRIBUTE class hierarchical root/GO0003674,root/B,GO0003674/C,B/C,C/D
@DATA
1,D
2,B
"""
    d = load_hmc_files(_write(tmp_path, "g.train.arff", text), _write(tmp_path, "g.test.arff", text), kind="edges")
    h = d.hierarchy
    assert h.names == ["root", "B", "GO0003674", "C", "D"]
    assert sorted(h.names[p] for p in h.parents("C")) == ["B", "GO0003674"]
    assert d.eval_mask.tolist() == [False, True, False, True, True]
    assert d.Y_train.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]


def test_tiny_unknown_label_names_label_file_and_line(tmp_path):
    p = _write(tmp_path, "u.train.arff", HEADER + "1,red,2,01\n2,green,3,01@03/01\n")
    with pytest.raises(UnknownLabelError) as exc:
        read_arff(p)
    msg = str(exc.value)
    assert "'03/01'" in msg and str(p) in msg and "line 10" in msg
    assert exc.value.label == "03/01"


@pytest.mark.parametrize(
    "line, match",
    [
        ("1,red,01", r"line 10: expected 4 comma-separated values .*found 3"),
        ("1,red,2,3,01", r"line 10: expected 4 .*found 5"),
        ("1,purple,2,01", r"line 10: value 'purple' of nominal attribute 'colour'"),
        ("abc,red,2,01", r"line 10: value 'abc' of numeric attribute 'x1' is not a number"),
        ("nan,red,2,01", r"line 10: attribute 'x1' has the non-finite value 'nan'"),
        ("1,'red,2,01", r"line 10: unterminated quote"),
        ("{0 1, 3 01}", r"line 10: sparse ARFF"),
    ],
)
def test_tiny_malformed_line_names_file_and_line(tmp_path, line, match):
    p = _write(tmp_path, "m.train.arff", HEADER + "1,red,2,01\n" + line + "\n")
    with pytest.raises(ArffFormatError, match=match) as exc:
        read_arff(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize(
    "text, match",
    [
        ("@RELATION x\n@ATTRIBUTE a numeric\n@ATTRIBUTE class hierarchical a\n1,a\n", "expected @relation, @attribute or @data"),
        ("@RELATION x\n@ATTRIBUTE a numeric\n@ATTRIBUTE class hierarchical a\n", "no @data line"),
        ("@RELATION x\n@ATTRIBUTE a numeric\n@DATA\n1\n", "exactly one 'hierarchical' class attribute"),
        ("@RELATION x\n@ATTRIBUTE a string\n@ATTRIBUTE class hierarchical a\n@DATA\nq,a\n", "type 'string'"),
        ("@RELATION x\n@ATTRIBUTE a {u,v\n@ATTRIBUTE class hierarchical a\n@DATA\nu,a\n", "closing"),
        ("@RELATION x\n@ATTRIBUTE a\n@ATTRIBUTE class hierarchical a\n@DATA\n1,a\n", "needs a name and a type"),
        ("@RELATION x\n@ATTRIBUTE class hierarchical\n@DATA\na\n", "declares no terms"),
        ("@RELATION x\n@ATTRIBUTE class hierarchical a,,b\n@DATA\na\n", "empty term"),
        ("@RELATION x\n@ATTRIBUTE class hierarchical a//b\n@DATA\na\n", "malformed hierarchy path"),
        ("@RELATION x\n@ATTRIBUTE class hierarchical a\n@DATA\n", "no instances"),
    ],
)
def test_tiny_malformed_header(tmp_path, text, match):
    with pytest.raises(ArffFormatError, match=match):
        read_arff(_write(tmp_path, "h.arff", text))


def test_tiny_go_edge_terms_must_be_pairs(tmp_path):
    p = _write(tmp_path, "e.arff", "@RELATION x\n@ATTRIBUTE class hierarchical root/a/b\n@DATA\na\n")
    with pytest.raises(ArffFormatError, match="not a 'parent/child' edge"):
        read_arff(p, kind="edges")


def test_tiny_splits_must_agree(tmp_path):
    tr = _write(tmp_path, "a.train.arff", TRAIN)
    other_h = _write(tmp_path, "b.test.arff", TEST.replace("02/01/05\n", "02/01/05,03\n", 1))
    with pytest.raises(ArffFormatError, match="class hierarchy .* differs"):
        load_hmc_files(tr, other_h)
    other_x = _write(tmp_path, "c.test.arff", TEST.replace("@ATTRIBUTE x2", "@ATTRIBUTE y2"))
    with pytest.raises(ArffFormatError, match="feature 4: 'y2' vs 'x2'"):
        load_hmc_files(tr, other_x)
    # the same hierarchy declared in another order is accepted
    same = _write(tmp_path, "d.test.arff", TEST.replace("01,01/01,01/02,02,02/01/05", "02/01/05,01/02,01/01,02,01"))
    assert load_hmc_files(tr, same).splits == {"train": 4, "test": 2}


def test_tiny_quoted_values_and_missing_class(tmp_path):
    text = """@RELATION 'quoted rel'
@ATTRIBUTE 'odd name' {'a, b',"c d"}
@ATTRIBUTE class hierarchical 01
@DATA
'a, b',01
"c d" , '01'
?,?
"""
    a = read_arff(_write(tmp_path, "q.arff", text))
    assert a.relation == "quoted rel"
    assert a.feature_names == ("odd name=a, b", "odd name=c d")
    np.testing.assert_array_equal(a.X, [[1, 0], [0, 1], [0, 0]])
    # an instance with a missing class value has no label at all
    np.testing.assert_array_equal(a.Y, [[1, 1], [1, 1], [0, 0]])
