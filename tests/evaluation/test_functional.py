"""Tests for conehier.evaluation.functional: against scikit-learn and hand counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from conehier.evaluation import functional as fm


# --------------------------------------------------------------------------
# Hand-built trees and random data
# --------------------------------------------------------------------------
def tree_matrices(parent):
    """Brute-force (ancestors, depth, dist, lca_depth) of a rooted tree given parent ids."""
    c = len(parent)
    anc = np.zeros((c, c), dtype=bool)
    for i in range(c):
        p = parent[i]
        while p >= 0:
            anc[i, p] = True
            p = parent[p]
    depth = anc.sum(1)
    self_anc = anc | np.eye(c, dtype=bool)
    lca = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            lca[i, j] = depth[self_anc[i] & self_anc[j]].max()
    dist = depth[:, None] + depth[None, :] - 2 * lca
    return anc, depth, dist.astype(float), lca


# CHAMP Figure 1 tree: N1 root; N2, N3 under N1; N4, N6 under N2; N5, N7 under N3;
# N8, N9 under N7; N10 under N4. Node Nk has index k - 1.
PAPER_PARENT = [-1, 0, 0, 1, 2, 1, 2, 6, 6, 3]
ANC, DEPTH, DIST, LCA = tree_matrices(PAPER_PARENT)
NO_ROOT = np.arange(10) != 0


def nodes(*names, c=10):
    row = np.zeros(c, dtype=bool)
    row[[n - 1 for n in names]] = True
    return row


def random_data(seed, n=40, c=7, p=0.3, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < p
    y[0] = True  # every column has a positive
    s = rng.random((n, c))
    if ties:
        s = np.round(s, 1)
    return y, s, rng


SEEDS = range(5)


# --------------------------------------------------------------------------
# P / R / F1, TPR / TNR
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_prf_matches_sklearn(seed, zero_division):
    y, s, rng = random_data(seed, n=12, c=6)
    y[0] = False
    y[:, 2] = False  # a column with no positives
    yp = rng.random(y.shape) < 0.3
    yp[:, 2] = False  # ... and no predictions: zero_division applies
    for average in ("micro", "macro", None):
        ours = fm.precision_recall_f1(y, yp, average=average, zero_division=zero_division)
        ref = skm.precision_recall_fscore_support(y, yp, average=average, zero_division=zero_division)[:3]
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b)
    mask = np.array([True, False, True, True, False, True])
    ours = fm.precision_recall_f1(y, yp, average="macro", evaluate=mask)
    ref = skm.precision_recall_fscore_support(y[:, mask], yp[:, mask], average="macro", zero_division=0)[:3]
    np.testing.assert_allclose(ours, ref)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 15),
    st.integers(2, 6),  # sklearn reads a single column as binary, not multilabel
    st.integers(0, 2**31 - 1),
    st.sampled_from(["micro", "macro"]),
)
def test_prf_property_sklearn(n, c, seed, average):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.4
    yp = rng.random((n, c)) < 0.4
    ours = fm.precision_recall_f1(y, yp, average=average)
    ref = skm.precision_recall_fscore_support(y, yp, average=average, zero_division=0)[:3]
    np.testing.assert_allclose(ours, ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_tpr_tnr_matches_sklearn(seed):
    y, _, rng = random_data(seed)
    yp = rng.random(y.shape) < 0.4
    for average in ("micro", "macro"):
        tpr, tnr = fm.tpr_tnr(y, yp, average=average)
        assert tpr == pytest.approx(skm.recall_score(y, yp, average=average, zero_division=0))
        assert tnr == pytest.approx(skm.recall_score(~y, ~yp, average=average, zero_division=0))


def test_tpr_tnr_hand():
    y = np.array([[1, 0, 0], [1, 1, 0]])
    yp = np.array([[1, 1, 0], [0, 1, 0]])
    # tp = 2, fn = 1, tn = 2, fp = 1
    assert fm.tpr_tnr(y, yp) == pytest.approx((2 / 3, 2 / 3))
    # per node TPR: 1/2, 1, 0 (no positives -> 0); TNR: 0 (no negatives), 0/1, 1
    assert fm.tpr_tnr(y, yp, average="macro") == pytest.approx((0.5, 1 / 3))


def test_prf_per_level():
    y, _, rng = random_data(3, c=6)
    yp = rng.random(y.shape) < 0.4
    levels = np.array([0, 1, 1, 2, 2, 2])
    mask = levels > 0
    out = fm.precision_recall_f1_per_level(y, yp, levels, average="macro", evaluate=mask)
    assert sorted(out) == [1, 2]
    for level, cols in ((1, [1, 2]), (2, [3, 4, 5])):
        ref = skm.precision_recall_fscore_support(y[:, cols], yp[:, cols], average="macro", zero_division=0)[:3]
        np.testing.assert_allclose(out[level], ref)
    micro = fm.per_level(fm.tpr_tnr, y, yp, levels)
    assert micro[0] == fm.tpr_tnr(y, yp, evaluate=levels == 0)


# --------------------------------------------------------------------------
# Ranking metrics
# --------------------------------------------------------------------------
RANK_Y = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
RANK_S = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])


def test_ranking_hand_values():
    # row 0: top-2 {0, 1} -> 1 hit, P = 1/2, R = 1/2; row 1: top-2 {3, 2} -> P = 1/2, R = 1;
    # row 2 has no true node and is skipped
    assert fm.hit_at_k(RANK_Y, RANK_S, 1) == pytest.approx(0.5)
    assert fm.hit_at_k(RANK_Y, RANK_S, 2) == pytest.approx(1.0)
    assert fm.precision_at_k(RANK_Y, RANK_S, 2) == pytest.approx(0.5)
    assert fm.recall_at_k(RANK_Y, RANK_S, 2) == pytest.approx(0.75)
    assert fm.f1_at_k(RANK_Y, RANK_S, 2) == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    # k larger than the number of nodes is capped
    assert fm.precision_at_k(RANK_Y, RANK_S, 10) == pytest.approx((2 / 4 + 1 / 4) / 2)
    # dropping node 0 from evaluation: row 0 top-1 becomes node 1 -> miss
    mask = np.array([False, True, True, True])
    assert fm.hit_at_k(RANK_Y, RANK_S, 1, evaluate=mask) == pytest.approx(0.0)
    assert np.isnan(fm.hit_at_k(RANK_Y[2:], RANK_S[2:], 1))


def test_topk_ties_lower_index_first():
    y = np.array([[0, 1, 0]])
    s = np.array([[0.5, 0.5, 0.5]])
    assert fm.hit_at_k(y, s, 1) == 0.0  # node 0 wins the tie
    assert fm.hit_at_k(y, s, 2) == 1.0


def naive_topk(y, s, k):
    p, r, h = [], [], []
    for yi, si in zip(y, s):
        if not yi.any():
            continue
        top = set(sorted(range(len(si)), key=lambda j: (-si[j], j))[:k])
        true = set(np.flatnonzero(yi))
        p.append(len(top & true) / min(k, len(si)))
        r.append(len(top & true) / len(true))
        h.append(float(bool(top & true)))
    return np.mean(p), np.mean(r), np.mean(h)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3])
def test_ranking_matches_naive(seed, k):
    y, s, _ = random_data(seed, ties=True)
    p, r, h = naive_topk(y, s, k)
    assert fm.precision_at_k(y, s, k) == pytest.approx(p)
    assert fm.recall_at_k(y, s, k) == pytest.approx(r)
    assert fm.hit_at_k(y, s, k) == pytest.approx(h)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 2])
def test_hit_at_k_per_level_matches_sklearn(seed, k):
    """Single label per level: hit@k of a level is sklearn's top-k accuracy on its columns."""
    rng = np.random.default_rng(seed)
    # level 0: nodes 0-2 (roots), level 1: nodes 3-8 (two children each)
    parent = np.array([-1, -1, -1, 0, 0, 1, 1, 2, 2])
    levels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    n = 30
    leaf = rng.integers(3, 9, size=n)
    y = np.zeros((n, 9), dtype=bool)
    y[np.arange(n), leaf] = True
    y[np.arange(n), parent[leaf]] = True
    s = rng.random((n, 9))
    out = fm.hit_at_k_per_level(y, s, levels, k)
    for level, cols in ((0, np.arange(3)), (1, np.arange(3, 9))):
        labels = np.argmax(y[:, cols], axis=1)
        ref = skm.top_k_accuracy_score(labels, s[:, cols], k=k, labels=np.arange(cols.size))
        assert out[level] == pytest.approx(ref)


def test_label_count_stats():
    yp = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    st_ = fm.label_count_stats(yp)
    assert st_ == pytest.approx({"min": 0.0, "max": 3.0, "mean": 5 / 3, "std": np.std([2, 0, 3])})
    st_mask = fm.label_count_stats(yp, evaluate=np.array([False, True, True, True]))
    assert st_mask == pytest.approx({"min": 0.0, "max": 2.0, "mean": 1.0, "std": np.std([1, 0, 2])})


# --------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(seed, ties):
    y, s, _ = random_data(seed, ties=ties)
    for average in ("micro", "macro"):
        ref = skm.average_precision_score(y, s, average=average)
        assert fm.average_precision(y, s, average=average) == pytest.approx(ref)
    np.testing.assert_allclose(fm.average_precision(y, s, average=None), skm.average_precision_score(y, s, average=None))
    # the C-HMCNN convention with a node mask
    mask = np.array([False, True, True, False, True, True, True])
    ref = skm.average_precision_score(y[:, mask], s[:, mask], average="micro")
    assert fm.average_precision(y, s, evaluate=mask) == pytest.approx(ref)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_binary_ap_property_sklearn(n, seed, decimals):
    rng = np.random.default_rng(seed)
    y = rng.random((n, 1)) < 0.4
    y[0] = True
    s = np.round(rng.normal(size=(n, 1)), decimals)
    assert fm.average_precision(y, s) == pytest.approx(skm.average_precision_score(y[:, 0], s[:, 0]))


def test_average_precision_macro_skips_nodes_without_positives():
    y, s, _ = random_data(0)
    y[:, 3] = False
    per_node = fm.average_precision(y, s, average=None)
    assert np.isnan(per_node[3])
    keep = np.arange(7) != 3
    ref = skm.average_precision_score(y[:, keep], s[:, keep], average=None)
    np.testing.assert_allclose(per_node[keep], ref)
    assert fm.average_precision(y, s, average="macro") == pytest.approx(ref.mean())
    masked = fm.average_precision(y, s, average=None, evaluate=keep & (np.arange(7) != 0))
    assert np.isnan(masked[0]) and masked[1] == pytest.approx(ref[1])


def test_average_precision_hand():
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[0.9], [0.8], [0.7], [0.1]])
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    assert fm.average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2)
    s_tie = np.array([[0.9], [0.7], [0.7], [0.1]])
    # ranks 2-3 tie: the second positive gets precision 2/3 at the group end
    assert fm.average_precision(y, s_tie) == pytest.approx((1 + 2 / 3) / 2)
    s_tie2 = np.array([[0.8], [0.8], [0.7], [0.1]])
    assert fm.average_precision(y, s_tie2) == pytest.approx((1 / 2 + 2 / 3) / 2)


# --------------------------------------------------------------------------
# CHAMP hierarchical metrics (paper tree)
# --------------------------------------------------------------------------
# sample 0: truth = path to N9, prediction {N1, N3, N7, N8, N2}
# sample 1: truth {N1, N2, N6}, prediction {N10} (not ancestor-closed)
HY = np.stack([nodes(1, 3, 7, 9), nodes(1, 2, 6)])
HP = np.stack([nodes(1, 3, 7, 8, 2), nodes(10)])


def test_lca_depth_hand():
    lca = fm.nearest_true_lca_depth(HY, HP, DIST, LCA, evaluate=NO_ROOT)
    # sample 0 (S = {N3, N7, N9}): N3 -> itself, depth 1; N7 -> depth 2; N8 -> nearest N7 (1), LCA N7,
    # depth 2; N2 -> nearest N3 (2), LCA N1, depth 0. Sample 1: N10 -> nearest N2 (2), LCA N2, depth 1.
    expected = np.full((2, 10), np.nan)
    expected[0, [2, 6, 7, 1]] = [1, 2, 2, 0]
    expected[1, 9] = 1
    np.testing.assert_array_equal(lca, expected)
    assert fm.mean_lca_depth(HY, HP, DIST, LCA, evaluate=NO_ROOT) == pytest.approx(6 / 5)


def test_lca_depth_ties_take_deepest_lca():
    # N8 is at distance 2 from both N3 (LCA N3, depth 1) and N9 (LCA N7, depth 2)
    y = nodes(3, 9)[None]
    yp = nodes(8)[None]
    assert fm.mean_lca_depth(y, yp, DIST, LCA) == 2.0


def test_average_hierarchical_cost_hand():
    # sample 0: dist(j, S) = 0, 0, 1, 2 for N3, N7, N8, N2; |S| = 3 -> 1
    # sample 1: dist(N10, {N2, N6}) = 2; |S| = 2 -> 1
    assert fm.average_hierarchical_cost(HY, HP, DIST, evaluate=NO_ROOT) == pytest.approx(1.0)
    # paper example: S = {N2, N6, N9}, predicted {N8}: dist(N8, S) = 2 -> 2/3
    assert fm.average_hierarchical_cost(nodes(2, 6, 9)[None], nodes(8)[None], DIST) == pytest.approx(2 / 3)
    # samples with an empty truth are skipped
    y = np.stack([nodes(2, 6, 9), np.zeros(10, bool)])
    yp = np.stack([nodes(8), nodes(5)])
    assert fm.average_hierarchical_cost(y, yp, DIST) == pytest.approx(2 / 3)


def test_hierarchical_prf_hand():
    # closed, root dropped: sample 0 T = {N3, N7, N9}, P = {N3, N7, N8, N2}: |P∩T| = 2
    # sample 1 T = {N2, N6}, P = {N10, N4, N2}: |P∩T| = 1
    hp, hr, hf = fm.hierarchical_precision_recall_f1(HY, HP, ANC, evaluate=NO_ROOT)
    assert (hp, hr) == pytest.approx((3 / 7, 3 / 5))
    assert hf == pytest.approx(2 * (3 / 7) * (3 / 5) / (3 / 7 + 3 / 5))
    closed = fm.ancestor_closure(HP, ANC)
    np.testing.assert_array_equal(closed[1], nodes(1, 2, 4, 10))


def naive_hierarchical(y, yp, parent, mask):
    def close(row):
        out = set()
        for j in np.flatnonzero(row):
            while j >= 0:
                out.add(j)
                j = parent[j]
        return {j for j in out if mask[j]}

    inter = n_pred = n_true = 0
    for t, p in zip(y, yp):
        ct, cp = close(t), close(p)
        inter += len(ct & cp)
        n_pred += len(cp)
        n_true += len(ct)
    return inter / n_pred, inter / n_true


@pytest.mark.parametrize("seed", SEEDS)
def test_hierarchical_prf_matches_naive(seed):
    rng = np.random.default_rng(seed)
    c = 12
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, c)]
    anc, _, dist, lca = tree_matrices(parent)
    y = rng.random((20, c)) < 0.2
    yp = rng.random((20, c)) < 0.2
    mask = np.arange(c) != 0
    hp, hr, _ = fm.hierarchical_precision_recall_f1(y, yp, anc, evaluate=mask)
    assert (hp, hr) == pytest.approx(naive_hierarchical(y, yp, parent, mask))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fallback", [False, True])
def test_ahc_and_lca_match_naive(seed, fallback, monkeypatch):
    monkeypatch.setattr(fm, "_CHUNK_ELEMENTS", 300)  # several chunks
    if fallback:  # the masked-min path used for many distinct distances
        monkeypatch.setattr(fm, "_MAX_DISTANCE_LEVELS", 0)
    rng = np.random.default_rng(seed)
    c = 11
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, c)]
    _, _, dist, lca = tree_matrices(parent)
    y = rng.random((15, c)) < 0.25
    yp = rng.random((15, c)) < 0.25
    costs, depths = [], []
    for t, p in zip(y, yp):
        s = np.flatnonzero(t)
        if s.size == 0:
            continue
        costs.append(sum(dist[j, s].min() for j in np.flatnonzero(p)) / s.size)
        for j in np.flatnonzero(p):
            near = s[dist[j, s] == dist[j, s].min()]
            depths.append(lca[j, near].max())
    assert fm.average_hierarchical_cost(y, yp, dist) == pytest.approx(np.mean(costs))
    assert fm.mean_lca_depth(y, yp, dist, lca) == pytest.approx(np.mean(depths))


# --------------------------------------------------------------------------
# Frequent / rare nodes
# --------------------------------------------------------------------------
def test_frequency_masks_and_rare_recall():
    counts = np.array([100, 50, 50, 10, 5, 3, 1, 0, 7, 20])
    frequent, rare = fm.frequency_masks(counts, fraction=0.2)
    np.testing.assert_array_equal(np.flatnonzero(frequent), [0, 1])  # tie 50/50: lower index first
    np.testing.assert_array_equal(np.flatnonzero(rare), [6, 7])
    # root excluded: 9 nodes -> ceil(1.8) = 2
    frequent, rare = fm.frequency_masks(counts, fraction=0.2, evaluate=NO_ROOT)
    np.testing.assert_array_equal(np.flatnonzero(frequent), [1, 2])
    # training label matrix gives the same counts
    y_train = np.arange(100)[:, None] < counts[None, :]
    np.testing.assert_array_equal(fm.frequency_masks(y_train)[1], fm.frequency_masks(counts)[1])

    y = np.zeros((4, 10), dtype=bool)
    y[:, 6] = [1, 1, 0, 0]
    y[:, 7] = [1, 0, 0, 0]
    y[:, 0] = True
    s = np.zeros((4, 10))
    s[:, 6] = [0.9, 0.2, 0.1, 0.0]
    s[:, 7] = [0.8, 0.0, 0.0, 0.0]
    # rare nodes 6, 7: positives 3; predicted at 0.5: (0,6), (0,7) -> recall 2/3
    assert fm.rare_node_recall(y, s, counts, threshold=0.5) == pytest.approx(2 / 3)
    assert fm.rare_node_recall(y, s >= 0.5, counts, average="macro") == pytest.approx((1 / 2 + 1) / 2)

    by_freq = fm.average_precision_by_frequency(y, s, counts)
    rare_mask = fm.frequency_masks(counts)[1]
    assert by_freq["rare"] == pytest.approx(skm.average_precision_score(y[:, rare_mask], s[:, rare_mask], average="micro"))


# --------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------
def brute_best_f1(y, s):
    best_t, best_f = np.inf, 0.0
    for t in np.unique(s)[::-1]:  # highest first, keep the first maximum
        f = skm.f1_score(y, s >= t, zero_division=0)
        if f > best_f + 1e-12:
            best_t, best_f = t, f
    return best_t, best_f


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_best_threshold_matches_brute_force(seed, ties):
    y, s, _ = random_data(seed, n=25, c=4, ties=ties)
    t, f = fm.best_threshold_f1(y, s)
    bt, bf = brute_best_f1(y.ravel(), s.ravel())
    assert (t, f) == pytest.approx((bt, bf))
    assert skm.f1_score(y.ravel(), s.ravel() >= t) == pytest.approx(f)
    ts, fs = fm.best_threshold_f1(y, s, axis=0)
    for j in range(y.shape[1]):
        assert (ts[j], fs[j]) == pytest.approx(brute_best_f1(y[:, j], s[:, j]))
    np.testing.assert_array_equal(fm.pcdb_thresholds(y, s), ts)
    assert fm.ofadb_threshold(y, s) == t


def test_best_threshold_hand_and_edge_cases():
    y = np.array([1, 0, 1, 0])[:, None]
    s = np.array([0.9, 0.8, 0.7, 0.1])[:, None]
    # t = 0.9: F1 = 2/3; t = 0.8: 2/4; t = 0.7: 4/5; t = 0.1: 4/6
    assert fm.best_threshold_f1(y, s) == pytest.approx((0.7, 0.8))
    # no positives: predict nothing
    t, f = fm.best_threshold_f1(np.zeros((3, 2)), np.ones((3, 2)), axis=0)
    assert np.all(np.isinf(t)) and np.all(f == 0)
    # OFADB with the root column excluded
    y2 = np.array([[1, 1, 0], [1, 0, 1]])
    s2 = np.array([[0.0, 0.6, 0.2], [0.0, 0.3, 0.5]])
    assert fm.ofadb_threshold(y2, s2, evaluate=np.array([False, True, True])) == pytest.approx(0.5)
    np.testing.assert_array_equal(
        fm.apply_threshold(s2, np.array([0.5, 0.5, 0.2])), [[False, True, True], [False, False, True]]
    )


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def test_bad_input_raises():
    y = np.array([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="0/1"):
        fm.precision_recall_f1(y, np.array([[2, 0], [0, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        fm.average_precision(y, np.array([[np.nan, 0.1], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="shape"):
        fm.precision_recall_f1(y, np.ones((2, 3)))
    with pytest.raises(ValueError, match="evaluate"):
        fm.precision_recall_f1(y, y, evaluate=np.array([1, 0]))
    with pytest.raises(ValueError, match="average"):
        fm.precision_recall_f1(y, y, average="weighted")
    with pytest.raises(ValueError, match="k must"):
        fm.hit_at_k(y, y.astype(float), 0)
    with pytest.raises(ValueError, match="dist"):
        fm.average_hierarchical_cost(y, y, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        fm.label_count_stats(np.array([1, 0]))
    with pytest.raises(ValueError, match="threshold"):
        fm.apply_threshold(y.astype(float), np.array([0.5, 0.5, 0.5]))
