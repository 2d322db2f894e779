import numpy as np
import pytest

from conehier.data.paths import DataNotFoundError
from conehier.data.wordnet import load_mammal_closure_tsv, load_wordnet


def _keys(a, n):
    return a[:, 0] * n + a[:, 1]


@pytest.fixture(scope="module")
def noun(data_root):
    return load_wordnet("noun", data_root)


def test_noun_closure_counts(noun):
    s = noun.hierarchy.stats()
    assert s["nodes"] == 82_114 and s["edges"] == 84_363
    assert s["closure_edges"] == 661_127 and s["non_basic_edges"] == 576_764


def test_noun_published_split_is_consistent(noun):
    h = noun.hierarchy
    clo = np.sort(_keys(h.closure_edges(), h.n))
    split = noun.split(25)
    assert len(split.train) == 228_554
    train = _keys(split.train, h.n)
    for pos in (split.valid, split.test):
        k = _keys(pos, h.n)
        assert np.isin(k, clo).all()  # every valid/test positive is a closure edge ...
        assert not np.isin(k, train).any()  # ... absent from training
    for neg in (split.valid_neg, split.test_neg):
        assert not np.isin(_keys(neg, h.n), clo).any()  # no published negative is a closure edge
    assert len(split.valid_neg) == 10 * len(split.valid)


def test_noun_derived_train_file_matches_published(noun, tmp_path, monkeypatch):
    """The rebuilt 50% file equals the one shipped in shared/data (same seeded procedure)."""
    from conehier.data import wordnet

    monkeypatch.setenv("CONEHIER_CACHE", str(tmp_path))
    path = wordnet.derive_noun_training_file(noun, "train_50percent")
    ours = np.loadtxt(path, dtype=np.int64)
    published = noun.pairs("train_50percent")
    n = noun.hierarchy.n
    assert np.array_equal(np.sort(_keys(ours, n)), np.sort(_keys(published, n)))


def test_mammal(data_root):
    m = load_wordnet("mammal", data_root)
    h = m.hierarchy
    assert h.n == 1_179 and h.closure().nnz == 5_361
    assert np.array_equal(np.sort(_keys(m.full_transitive, h.n)), _keys(h.closure_edges(), h.n))
    named = load_mammal_closure_tsv(data_root)
    assert named.n == 1_180 and named.decode(named.roots) == ["mammal.n.01"]
    assert named.closure().nnz == 6_540
    assert set(named.names) - {"mammal.n.01"} == set(h.names)
    with pytest.raises(ValueError, match="train_percent in"):
        m.split(30)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        load_wordnet("mammal", tmp_path / "nowhere", download=False)
    msg = str(exc.value)
    assert "mammal_closure.tsv.vocab" in msg and str(tmp_path / "nowhere" / "wordnet") in msg
    assert "CONEHIER_DATA" in msg
    with pytest.raises(ValueError, match="unknown WordNet closure"):
        load_wordnet("verbs", tmp_path)
