import numpy as np
import pytest
import torch

from conehier.data.builtin import toy_tree
from conehier.hierarchy import Hierarchy
from conehier.sampling import NegativeSampler, sample_negatives


def _in_closure(h, pairs):
    keys = set((h.closure_edges() @ [h.n, 1]).tolist())
    return np.array([p * h.n + c in keys for p, c in pairs])


@pytest.mark.parametrize("per_level", [False, True])
def test_negatives_never_positive(per_level):
    h = toy_tree(4, 3)
    pos = torch.as_tensor(h.closure_edges())
    s = NegativeSampler(h, k_parent=5, k_child=5, per_level=per_level)
    neg = s.sample(pos, torch.Generator().manual_seed(0))
    assert neg.shape == (len(pos), 10, 2)
    flat = neg.reshape(-1, 2).numpy()
    assert not _in_closure(h, flat).any()
    assert (flat[:, 0] != flat[:, 1]).all()
    # first 5 keep the child, last 5 keep the parent (the root has no negative child: it swaps)
    r = pos[:, 0] != 0
    assert (neg[:, :5, 1] == pos[:, None, 1]).all() and (neg[r, 5:, 0] == pos[r, None, 0]).all()


def test_pick_per_level_draws_distinct_levels():
    h = toy_tree(4, 3)  # 5 levels
    pos = torch.as_tensor(h.closure_edges())
    s = NegativeSampler(h, k_parent=5, k_child=5, per_level=True, max_rounds=10_000)
    neg = s.sample(pos, torch.Generator().manual_seed(1))
    depth = torch.as_tensor(h.depth)
    # corrupted children: resampling keeps the level, so each positive's 5 children span 5 levels
    # unless a level had no valid candidate (only possible for the root level)
    lv = depth[neg[pos[:, 0] != 0, 5:, 1]]  # (the root's rows corrupt parents instead)
    distinct = torch.tensor([len(set(r.tolist())) for r in lv])
    assert (distinct >= 4).all() and (distinct == 5).float().mean() > 0.5
    # uniform sampling draws mostly leaves (81 of 121 nodes); per-level spreads them
    uni = NegativeSampler(h, k_parent=5, k_child=5).sample(pos, torch.Generator().manual_seed(1))
    assert (depth[uni[:, 5:, 1]] == 4).float().mean() > 0.5
    assert (lv == 4).float().mean() < 0.3


def test_candidate_masks_and_seed():
    h = toy_tree(3, 3)
    child_only = np.zeros(h.n, bool)
    child_only[h.leaves] = True  # "images": may replace children, never parents
    s = NegativeSampler(h, parent_candidates=~child_only, child_candidates=None)
    pos = torch.as_tensor(h.closure_edges())
    neg = s.sample(pos, torch.Generator().manual_seed(0))
    assert not child_only[neg[:, :5, 0].numpy()].any()
    again = s.sample(pos, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)
    a = sample_negatives(h, h.closure_edges()[:10], k=2, seed=4)
    assert a.shape == (40, 2) and np.array_equal(a, sample_negatives(h, h.closure_edges()[:10], k=2, seed=4))


def test_impossible_negative_is_a_clear_error():
    h = Hierarchy.from_edges([("a", "b")])
    s = NegativeSampler(h, k_parent=1, k_child=1, max_rounds=8)
    with pytest.raises(RuntimeError, match=r"could not draw a negative for the positive \(0, 1\)"):
        s.sample(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        s.sample(torch.tensor([0, 1]))


def test_root_positive_corrupts_the_other_end():
    h = toy_tree(2, 2)  # the root is an ancestor of every node: no negative child exists for it
    pos = torch.as_tensor(h.closure_edges())
    neg = NegativeSampler(h, k_parent=2, k_child=2).sample(pos, torch.Generator().manual_seed(0))
    flat = neg.reshape(-1, 2).numpy()
    assert not _in_closure(h, flat).any() and (flat[:, 0] != flat[:, 1]).all()
    root_rows = (pos[:, 0] == 0).numpy()
    assert (neg[root_rows, :, 1] == pos[root_rows, None, 1]).all()  # all four corrupt the parent


def test_is_positive_is_exact():
    h = toy_tree(3, 4)
    s = NegativeSampler(h)
    u, v = torch.meshgrid(torch.arange(h.n), torch.arange(h.n), indexing="ij")
    got = s.is_positive(u.reshape(-1), v.reshape(-1)).reshape(h.n, h.n).numpy()
    want = h.descendant_matrix() | np.eye(h.n, dtype=bool)
    assert np.array_equal(got, want)
