import numpy as np
import pytest

from conehier.data.builtin import toy_tree
from conehier.hierarchy.splits import EdgeSplit, split_edges


def _keys(a, n):
    return set((a[:, 0] * n + a[:, 1]).tolist())


def test_split_partitions_non_basic_edges():
    h = toy_tree(4, 3)
    s = split_edges(h, valid_percent=10, test_percent=10, train_percent=30, seed=3)
    n, m = h.n, len(h.non_basic_edges())
    basic, nb = _keys(h.transitive_reduction(), n), _keys(h.non_basic_edges(), n)
    tr, va, te = _keys(s.train, n), _keys(s.valid, n), _keys(s.test, n)
    assert basic <= tr
    assert len(va) == len(te) == int(0.1 * m)
    assert len(tr - basic) == int(0.3 * m)
    assert va <= nb and te <= nb and not (va & te) and not (va & tr) and not (te & tr)
    # fixed negatives: 10 per positive, none in the closure
    assert len(s.valid_neg) == 10 * len(s.valid) and len(s.test_neg) == 10 * len(s.test)
    clo = _keys(h.closure_edges(), n)
    assert not (_keys(s.valid_neg, n) & clo) and not (_keys(s.test_neg, n) & clo)


def test_split_is_seeded(tmp_path):
    h = toy_tree(3, 4)
    a = split_edges(h, train_percent=50, seed=1)
    b = split_edges(h, train_percent=50, seed=1)
    c = split_edges(h, train_percent=50, seed=2)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "valid", "test", "valid_neg"))
    assert not np.array_equal(a.valid, c.valid)
    a.save(tmp_path / "s")
    back = EdgeSplit.load(tmp_path / "s")
    assert np.array_equal(back.test_neg, a.test_neg) and back.train_percent == 50


def test_split_bad_percentages():
    h = toy_tree(2, 2)
    with pytest.raises(ValueError, match="train_percent"):
        split_edges(h, train_percent=120)
    with pytest.raises(ValueError, match="exceed"):
        split_edges(h, valid_percent=60, test_percent=60)


def test_ethec_split_sizes(data_root):
    from conehier.data.ethec import load_ethec

    h = load_ethec(data_root).hierarchy
    s = split_edges(h, valid_percent=5, test_percent=5, train_percent=50, seed=0)
    assert len(s.valid) == 62 and len(s.test) == 62
    assert len(s.train) == 717 + int(0.5 * 1257)
