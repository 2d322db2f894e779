import numpy as np
import pytest
import torch

from conehier.data.builtin import toy_tree
from conehier.evaluation.protocols import link_prediction, reconstruction, threshold_metrics


def test_link_prediction_threshold_from_valid():
    vp, vn = np.array([0.1, 0.2]), np.array([0.5, 0.6, 0.15])
    tp, tn = np.array([0.1, 0.3]), np.array([0.9, 0.19])
    r = link_prediction(vp, vn, tp, tn)
    assert r["threshold"] == 0.2 and np.isclose(r["valid_f1"], 0.8)
    # test: predicted positive {0.1, 0.19}: tp 1, fp 1, fn 1 -> F1 0.5
    assert np.isclose(r["test_f1"], 0.5) and np.isclose(r["test_accuracy"], 0.5)
    m = threshold_metrics(tp, tn, 0.2)
    assert m["tpr"] == 0.5 and m["tnr"] == 0.5


def test_midpoint_threshold_rule():
    vp, vn = np.array([0.0, 1.0]), np.array([3.0, 5.0])
    tp, tn = np.array([0.5, 1.5]), np.array([2.5, 4.0])
    edge = link_prediction(vp, vn, tp, tn)
    mid = link_prediction(vp, vn, tp, tn, rule="midpoint")
    assert edge["threshold"] == 1.0 and mid["threshold"] == 2.0  # halfway from 1 to 3
    assert edge["valid_f1"] == mid["valid_f1"] == 1.0
    assert np.isclose(edge["test_f1"], 2 / 3) and mid["test_f1"] == 1.0  # 1.5 is accepted only by the midpoint
    # nothing above the optimum: the edge itself
    assert link_prediction(vp, np.array([]), tp, tn, rule="midpoint")["threshold"] == 1.0
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        link_prediction(vp, vn, tp, tn, rule="middle")


def test_reconstruction_perfect_and_ranks():
    h = toy_tree(2, 2)
    anc = torch.as_tensor(h.ancestor_matrix())  # anc[v, u]: u ancestor of v
    basic = torch.zeros(h.n, h.n, dtype=torch.bool)
    e = h.transitive_reduction()
    basic[e[:, 0], e[:, 1]] = True

    def energy(pairs):  # 0 on basic edges, 1 on other ancestors, 2 elsewhere
        u, v = pairs[..., 0], pairs[..., 1]
        return torch.where(basic[u, v], 0.0, torch.where(anc[v, u], 1.0, 2.0))

    r = reconstruction(energy, h, positives="basic")
    assert r["f1"] == 1.0 and r["tpr"] == 1.0 and r["tnr"] == 1.0
    assert r["mean_rank"] == 1.0 and r["map"] == 1.0
    assert r["n_positive"] == 6 and r["n_negative"] == 7 * 6 - 6
    rc = reconstruction(energy, h, positives="closure")
    assert rc["f1"] == 1.0 and rc["map"] == 1.0 and rc["n_positive"] == 10


def test_reconstruction_rank_counts_only_false_candidates():
    h = toy_tree(1, 3)  # root with 3 leaves

    def energy(pairs):  # rank leaf 1 above the root for child 2
        u, v = pairs[..., 0], pairs[..., 1]
        return torch.where((u == 1) & (v == 2), 0.0, torch.where(u == 0, 0.5, 1.0))

    r = reconstruction(energy, h, positives="closure")
    # child 2: the root (true) has one false candidate (leaf 1) ahead: rank 2, AP 1/2
    assert np.isclose(r["mean_rank"], (1 + 2 + 1) / 3)
    assert np.isclose(r["map"], (1 + 0.5 + 1) / 3)


def test_reconstruction_distance_tie_break_prefers_the_parent():
    """A chain root < a < b in order embeddings: every ancestor pair has energy 0, so the
    grandparent pair (root, b) ties with the two parent edges until the distance breaks it."""
    from conehier.models.embedding import EmbeddingModel

    h = toy_tree(2, 1)
    m = EmbeddingModel(3, 2, "order")
    m.set_points_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    tied = reconstruction(m.is_a_energy, h, positives="basic")
    assert np.isclose(tied["f1"], 2 * (2 / 3) / (2 / 3 + 1))  # precision 2/3, recall 1
    broken = reconstruction(lambda p: m.is_a_energy(p) + 0.01 * m.distance(p), h, positives="basic")
    assert broken["f1"] == 1.0 and broken["tnr"] == 1.0


def test_reconstruction_takes_a_precomputed_energy_matrix():
    from conehier.evaluation.protocols import pair_matrix

    h = toy_tree(2, 2)
    anc = torch.as_tensor(h.ancestor_matrix())

    def energy(pairs):  # 0 on true ancestors, 1 elsewhere
        return torch.where(anc[pairs[..., 1], pairs[..., 0]], 0.0, 1.0)

    E = pair_matrix(energy, h.n, chunk_pairs=10)  # several column chunks
    assert E.shape == (h.n, h.n) and E[0, 1] == 0.0 and E[1, 0] == 1.0
    assert reconstruction(E, h, positives="closure") == reconstruction(energy, h, positives="closure")
    with pytest.raises(ValueError, match=r"energy matrix has shape \(3, 3\), expected \(7, 7\)"):
        reconstruction(np.zeros((3, 3)), h)
