import numpy as np
import pytest
import torch

from conehier.data.builtin import toy_tree
from conehier.hierarchy.graph import Hierarchy
from conehier.models import heads as H
from conehier.models.heads import (
    MLP,
    HierarchicalSoftmaxHead,
    HMCModel,
    MarginalizationHead,
    MaskedPerLevelHead,
    MaxConstraint,
    MaxConstraintHead,
    MultiLabelHead,
    PerLevelHead,
    build_head,
    descendant_pairs,
    group_log_softmax,
    inverse_frequency_weights,
    label_frequencies,
    make_sampler,
    max_constraint,
    max_constraint_training,
    sample_weights,
)


def small_tree() -> Hierarchy:
    # root -> a -> {b, c};  names in id order: root 0, a 1, b 2, c 3
    return Hierarchy.from_edges([("root", "a"), ("a", "b"), ("a", "c")], names=["root", "a", "b", "c"])


def unbalanced_tree() -> Hierarchy:
    # r -> {x, y}; x -> {x1, x2}; x1 -> {x1a, x1b}; y is a leaf at depth 1
    edges = [("r", "x"), ("r", "y"), ("x", "x1"), ("x", "x2"), ("x1", "x1a"), ("x1", "x1b")]
    return Hierarchy.from_edges(edges, names=["r", "x", "y", "x1", "x2", "x1a", "x1b"])


def small_dag() -> Hierarchy:
    # r -> {a, b}; a -> c; b -> c; c -> d
    return Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c"), ("c", "d")],
                                names=["r", "a", "b", "c", "d"])


def random_closed_labels(h: Hierarchy, n: int, seed: int = 0, p: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return h.close_labels((rng.random((n, h.n)) < p).astype(np.uint8))


def single_paths(h: Hierarchy, n: int, seed: int = 0) -> np.ndarray:
    """One random leaf per sample, closed under ancestors."""
    rng = np.random.default_rng(seed)
    leaves = np.asarray(h.leaves)
    y = np.zeros((n, h.n), np.uint8)
    y[np.arange(n), rng.choice(leaves, n)] = 1
    return h.close_labels(y)


# --------------------------------------------------------------------------
# max-constraint module
# --------------------------------------------------------------------------
def test_mcm_training_output_matches_hand_computation():
    h = small_tree()
    p = torch.tensor([[0.2, 0.3, 0.6, 0.9]], dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    # MCM(p) = [0.9, 0.9, 0.6, 0.9]; y*p = [0.2, 0.3, 0.6, 0] -> MCM = [0.6, 0.6, 0.6, 0]
    # (1 - y) MCM(p) + y MCM(y p) = [0.6, 0.6, 0.6, 0.9]
    expected = torch.tensor([[0.6, 0.6, 0.6, 0.9]], dtype=torch.float64)
    for method in ("sparse", "dense"):
        mcm = MaxConstraint(h, method=method)
        assert torch.allclose(mcm(p), torch.tensor([[0.9, 0.9, 0.6, 0.9]], dtype=torch.float64))
        assert torch.allclose(mcm.training_output(p, y), expected)
        # the logit-domain form gives the same probabilities
        z = torch.logit(p)
        assert torch.allclose(torch.sigmoid(mcm.training_output(z, y)), expected)
    mask = torch.as_tensor(h.descendant_matrix(include_self=True))
    assert torch.allclose(max_constraint_training(p, y, mask), expected)
    # the literal formula
    lit = (1 - y) * max_constraint(p, mask) + y * max_constraint(y * p, mask)
    assert torch.allclose(lit, expected)


@pytest.mark.parametrize("make_h", [lambda: toy_tree(3, 3), small_dag, unbalanced_tree])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mcm_sparse_dense_and_reference_agree(make_h, dtype):
    h = make_h()
    torch.manual_seed(0)
    z = torch.randn(7, h.n, dtype=dtype, requires_grad=True)
    y = torch.as_tensor(random_closed_labels(h, 7, seed=1))
    mask = torch.as_tensor(h.descendant_matrix(include_self=True))
    sparse, dense = MaxConstraint(h, method="sparse"), MaxConstraint(h, method="dense")
    ref = max_constraint(z, mask)
    for mod in (sparse, dense):
        out = mod(z)
        assert torch.equal(out, ref)
        tr = mod.training_output(z, y)
        assert torch.equal(tr, max_constraint_training(z, y, mask))
        g = torch.autograd.grad((tr * torch.arange(h.n, dtype=dtype)).sum(), z)[0]
        assert torch.isfinite(g).all()
    g1 = torch.autograd.grad(sparse.training_output(z, y).sum(), z)[0]
    g2 = torch.autograd.grad(dense.training_output(z, y).sum(), z)[0]
    assert torch.allclose(g1, g2)


def test_mcm_training_output_equals_the_probability_formula_on_random_inputs():
    h = toy_tree(2, 3)
    torch.manual_seed(1)
    z = torch.randn(11, h.n, dtype=torch.float64)
    y = torch.as_tensor(random_closed_labels(h, 11, seed=2), dtype=torch.float64)
    mask = torch.as_tensor(h.descendant_matrix(include_self=True))
    p = torch.sigmoid(z)
    lit = (1 - y) * max_constraint(p, mask) + y * max_constraint(y * p, mask)
    got = torch.sigmoid(MaxConstraint(h).training_output(z, y))
    assert torch.allclose(got, lit)


def test_mcm_output_is_hierarchy_consistent():
    h = small_dag()
    head = MaxConstraintHead(5, h)
    torch.manual_seed(0)
    s = head.scores(head(torch.randn(50, 5)))
    e = h.edges
    assert (s[:, e[:, 0]] >= s[:, e[:, 1]]).all()  # p(parent) >= p(child)
    assert s.shape == (50, h.n) and ((s > 0) & (s < 1)).all()


def test_mcm_dense_chunks(monkeypatch):
    monkeypatch.setattr(H, "_DENSE_CHUNK_ELEMENTS", 40)  # a couple of samples per block
    h = toy_tree(2, 2)
    z = torch.randn(9, h.n)
    y = torch.as_tensor(random_closed_labels(h, 9))
    mask = torch.as_tensor(h.descendant_matrix(include_self=True))
    d = MaxConstraint(h, method="dense")
    assert torch.equal(d(z), MaxConstraint(h, method="sparse")(z))
    assert torch.equal(d.training_output(z, y), MaxConstraint(h, method="sparse").training_output(z, y))
    assert torch.equal(max_constraint(z, mask), d(z))


def test_mcm_ensemble_and_auto_method():
    h = toy_tree(3, 3)
    mcm = MaxConstraint(h)
    assert mcm.method == "sparse" and mcm.nnz == len(descendant_pairs(h)[0])
    z = torch.randn(2, 5, h.n)
    y = torch.as_tensor(random_closed_labels(h, 5))
    out = mcm.training_output(z, y)
    assert out.shape == (2, 5, h.n)
    assert torch.equal(out[1], mcm.training_output(z[1], y))
    assert MaxConstraint(small_tree()).method == "dense"  # 4 nodes: nnz 9 > 16 / 4


def test_mcm_from_mask_and_errors():
    h = small_tree()
    m = h.descendant_matrix()  # without the diagonal: added
    mcm = MaxConstraint(m)
    assert torch.equal(mcm(torch.eye(4)), MaxConstraint(h)(torch.eye(4)))
    with pytest.raises(ValueError, match="4 nodes"):
        mcm(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="targets shape"):
        mcm.training_output(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="method"):
        MaxConstraint(h, method="fast")
    with pytest.raises(ValueError, match="square"):
        MaxConstraint(np.zeros((2, 3)))


def test_descendant_pairs_from_hierarchy_and_mask_agree():
    h = small_dag()
    r1, c1 = descendant_pairs(h)
    r2, c2 = descendant_pairs(h.descendant_matrix(include_self=True))
    assert sorted(zip(r1, c1)) == sorted(zip(r2, c2))
    assert (np.diff(r1) >= 0).all()


# --------------------------------------------------------------------------
# grouped softmax and softmax heads
# --------------------------------------------------------------------------
def test_group_log_softmax_matches_per_group_log_softmax():
    torch.manual_seed(0)
    z = torch.randn(6, 9, dtype=torch.float64) * 30  # large logits: stability
    g = torch.tensor([2, 0, 0, 1, 2, 1, 1, 0, 2])
    out = group_log_softmax(z, g)
    for k in range(3):
        cols = (g == k).nonzero().squeeze(1)
        assert torch.allclose(out[:, cols], torch.log_softmax(z[:, cols], dim=1))
    with pytest.raises(ValueError, match="groups"):
        group_log_softmax(z, g[:5])


def test_per_level_head_probabilities_loss_and_prediction():
    h = toy_tree(2, 3)
    head = PerLevelHead(4, h)
    torch.manual_seed(0)
    z = head(torch.randn(5, 4))
    assert z.shape == (5, h.n)
    p = head.scores(z)
    for nodes in h.nodes_per_level():
        assert torch.allclose(p[:, nodes].sum(1), torch.ones(5))
    y = torch.as_tensor(single_paths(h, 5), dtype=torch.float32)
    lp = head.log_probs(z)
    manual = -sum((lp[:, nodes] * y[:, nodes]).sum(1) for nodes in h.nodes_per_level()).mean()
    assert torch.allclose(head.loss(z, y), manual, atol=1e-6)
    pred = head.predict(z)
    for nodes in h.nodes_per_level():
        assert (pred[:, nodes].sum(1) == 1).all()
        assert torch.equal(pred[:, nodes].float().argmax(1), p[:, nodes].argmax(1))
    # level weights scale the level terms; a zero weight drops a level
    w = [0.0, 0.0, 1.0]
    hw = PerLevelHead(4, h, level_weights=w)
    hw.load_state_dict(head.state_dict())
    leaves = h.nodes_per_level()[2]
    assert torch.allclose(hw.loss(z, y), -(lp[:, leaves] * y[:, leaves]).sum(1).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="one value per level"):
        PerLevelHead(4, h, level_weights=[1.0])


def test_per_level_loss_skips_levels_without_labels_and_pools_several():
    h = toy_tree(1, 3)  # root + 3 children
    head = PerLevelHead(2, h)
    z = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    lp = head.log_probs(z)
    y_none = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # only the root: nothing to pay
    assert torch.allclose(head.loss(z, y_none), torch.tensor(0.0), atol=1e-7)
    y_two = torch.tensor([[1.0, 1.0, 0.0, 1.0]])  # two true nodes at level 1: log(p1 + p3)
    expected = -torch.log(lp[0, 1].exp() + lp[0, 3].exp())
    assert torch.allclose(head.loss(z, y_two), expected, atol=1e-6)


def test_marginalization_sums_children_into_parents():
    h = unbalanced_tree()
    head = MarginalizationHead(3, h)
    torch.manual_seed(0)
    z = head(torch.randn(4, 3))
    assert z.shape == (4, len(h.leaves))
    p = head.scores(z)
    assert p.shape == (4, h.n)
    for j in range(h.n):
        ch = h.children(j)
        if len(ch):
            assert torch.allclose(p[:, j], p[:, ch].sum(1), atol=1e-6)
    assert torch.allclose(p[:, np.asarray(h.leaves)].sum(1), torch.ones(4), atol=1e-6)
    assert torch.allclose(p[:, 0], torch.ones(4), atol=1e-6)
    # loss: sum over levels of -log p(true node at that level), weighted
    y = torch.as_tensor(single_paths(h, 4, seed=3), dtype=torch.float32)
    lp = torch.log(p)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    hw = MarginalizationHead(3, h, level_weights=w)
    manual = -sum(w[d] * (lp[:, nodes] * y[:, nodes]).sum(1) for d, nodes in enumerate(h.nodes_per_level())).mean()
    assert torch.allclose(hw.loss(z, y), manual, atol=1e-5)


@pytest.mark.parametrize("make_h", [unbalanced_tree, lambda: toy_tree(3, 2)])
def test_hierarchical_softmax_chain_rule(make_h):
    h = make_h()
    head = HierarchicalSoftmaxHead(3, h)
    torch.manual_seed(0)
    z = head(torch.randn(6, 3))
    p = head.scores(z)
    assert torch.allclose(p[:, np.asarray(h.leaves)].sum(1), torch.ones(6), atol=1e-6)
    cond = head.conditional_log_probs(z).exp()
    for j in range(h.n):
        ch = h.children(j)
        if len(ch):
            assert torch.allclose(cond[:, ch].sum(1), torch.ones(6), atol=1e-6)  # a softmax per sibling group
            assert torch.allclose(p[:, j], p[:, ch].sum(1), atol=1e-6)
            assert torch.allclose(p[:, ch], p[:, [j]] * cond[:, ch], atol=1e-6)  # chain rule
    # loss = -log p(deepest true node) for single paths
    y = torch.as_tensor(single_paths(h, 6, seed=4), dtype=torch.float32)
    deepest = (y * torch.as_tensor(h.depth + 1)).argmax(1)
    expected = -torch.log(p[torch.arange(6), deepest]).mean()
    assert torch.allclose(head.loss(z, y), expected, atol=1e-5)
    pred = head.predict(z)
    best_leaf = np.asarray(h.leaves)[p[:, np.asarray(h.leaves)].argmax(1).numpy()]
    anc = h.ancestor_matrix(include_self=True)
    assert np.array_equal(pred.numpy(), anc[best_leaf])


def test_softmax_heads_need_a_tree():
    with pytest.raises(ValueError, match="two|parents"):
        HierarchicalSoftmaxHead(3, small_dag())
    with pytest.raises(ValueError, match="parents"):
        MaskedPerLevelHead(3, small_dag())


def _top_down_reference(z: np.ndarray, h: Hierarchy) -> np.ndarray:
    out = np.zeros(z.shape, bool)
    for n in range(z.shape[0]):  # the slow per-sample loop, for reference only
        cand = list(h.roots)
        while cand:
            best = cand[int(np.argmax(z[n, cand]))]
            out[n, best] = True
            cand = list(h.children(best))
    return out


@pytest.mark.parametrize("make_h", [unbalanced_tree, lambda: toy_tree(3, 3)])
def test_masked_per_level_prediction_respects_the_hierarchy(make_h):
    h = make_h()
    head = MaskedPerLevelHead(4, h)
    torch.manual_seed(0)
    z = head(torch.randn(40, 4))
    pred = head.predict(z).numpy()
    assert np.array_equal(pred, _top_down_reference(z.detach().numpy(), h))
    # every predicted non-root's parent is predicted, one node per level, ending at a leaf
    e = h.edges
    assert (pred[:, e[:, 1]] <= pred[:, e[:, 0]]).all()
    depth = h.depth
    for d in range(h.num_levels):
        assert (pred[:, depth == d].sum(1) <= 1).all()
    deepest = np.where(pred, depth, -1).argmax(1)
    assert np.isin(deepest, np.asarray(h.leaves)).all()


def test_masked_per_level_training_loss_is_over_the_true_parents_children():
    h = toy_tree(2, 2)  # root, 0, 1, 0.0, 0.1, 1.0, 1.1
    head = MaskedPerLevelHead(2, h, level_weights=[1.0, 1.0, 2.0])
    z = torch.tensor([[0.0, 1.0, 2.0, 0.5, -0.5, 3.0, 4.0]])
    y = torch.zeros(1, 7)
    y[0, [0, 1, 3]] = 1  # path root -> 0 -> 0.0
    l1 = -torch.log_softmax(z[0, [1, 2]], 0)[0]  # level 1: among the root's children
    l2 = -torch.log_softmax(z[0, [3, 4]], 0)[0]  # level 2: only the children of the true parent "0"
    assert torch.allclose(head.loss(z, y), l1 + 2.0 * l2, atol=1e-6)


# --------------------------------------------------------------------------
# sigmoid heads, model, builder
# --------------------------------------------------------------------------
def test_sigmoid_heads_shapes_and_ensembles():
    h = toy_tree(2, 3)
    x = torch.randn(5, 8)
    for head in (MultiLabelHead(8, h.n), MaxConstraintHead(8, h)):
        z = head(x)
        assert z.shape == (5, h.n)
        assert head.scores(z).shape == (5, h.n)
        assert head.predict(z).dtype == torch.bool
    ens = MaxConstraintHead(8, h, n_heads=2)
    z = ens(x)
    assert z.shape == (2, 5, h.n)
    s = ens.scores(z)
    assert torch.allclose(s, torch.sigmoid(ens.mcm(z)).mean(0))
    y = torch.as_tensor(random_closed_labels(h, 5))
    assert ens.training_logits(z, y).shape == (2, 5, h.n)
    ml = MultiLabelHead(8, h.n, n_heads=3)
    assert ml(x).shape == (3, 5, h.n)
    assert torch.equal(ml.training_logits(ml(x), y), ml(x))
    # per-class thresholds
    t = torch.full((h.n,), 2.0)
    assert not MultiLabelHead(8, h.n).predict(z[0], t).any()
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        MultiLabelHead(8, h.n)(torch.randn(5, 7))


def test_mlp_and_model():
    mlp = MLP(6, 16, 2, dropout=0.5)
    assert mlp.out_features == 16 and len(mlp.layers) == 2
    assert MLP(6, 16, 0).out_features == 6
    h = toy_tree(2, 2)
    model = HMCModel(mlp, build_head("mcm-mlp", 16, h))
    model.eval()
    x = torch.randn(3, 6)
    assert torch.equal(model(x), model(x))  # no dropout in eval mode
    assert model.kind == "sigmoid" and model.scores(model(x)).shape == (3, h.n)
    assert build_head("hsoftmax", 16, h).kind == "softmax"
    with pytest.raises(ValueError, match="unknown head"):
        build_head("svm", 16, h)
    with pytest.raises(ValueError, match="n_heads"):
        build_head("per-level", 16, h, n_heads=2)
    with pytest.raises(ValueError, match="dropout"):
        MLP(6, 16, 2, dropout=1.0)


# --------------------------------------------------------------------------
# re-weighting and re-sampling
# --------------------------------------------------------------------------
Y_SMALL = np.array([
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [1, 1, 1, 0],
    [1, 0, 0, 1],
])


def test_inverse_frequency_weights():
    # counts 4, 3, 1, 1 -> N / n = 1, 4/3, 4, 4 -> normalised to mean 1
    raw = np.array([1, 4 / 3, 4, 4])
    assert np.array_equal(label_frequencies(Y_SMALL), [4, 3, 1, 1])
    assert np.allclose(inverse_frequency_weights(Y_SMALL), raw / raw.mean())
    sq = np.sqrt(raw)
    assert np.allclose(inverse_frequency_weights(Y_SMALL, power=0.5), sq / sq.mean())
    assert np.allclose(inverse_frequency_weights(Y_SMALL, power=0), 1.0)
    # a class never seen gets 1, the others keep their ratios
    y = np.c_[Y_SMALL, np.zeros(4, int)]
    w = inverse_frequency_weights(y)
    assert w[-1] == 1.0 and np.allclose(w[:4], raw / raw.mean())
    with pytest.raises(ValueError, match="power"):
        inverse_frequency_weights(Y_SMALL, power=-1)


def test_sample_weights_and_sampler():
    # rarest label per sample (root column masked out): 1/3, 1/3, 1/1, 1/1
    mask = np.array([False, True, True, True])
    w = sample_weights(Y_SMALL, mask=mask)
    raw = np.array([1 / 3, 1 / 3, 1.0, 1.0])
    assert np.allclose(w, raw / raw.sum())
    ws = sample_weights(Y_SMALL, power=0.5, mask=mask)
    assert np.allclose(ws, np.sqrt(raw) / np.sqrt(raw).sum())
    # a sample without (unmasked) labels gets the smallest weight
    y = np.vstack([Y_SMALL, [1, 0, 0, 0]])
    w5 = sample_weights(y, mask=mask)
    assert np.isclose(w5[-1], w5[:4].min())
    sampler = make_sampler(Y_SMALL, mask=mask, num_samples=2000, generator=torch.Generator().manual_seed(0))
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    counts = np.bincount(list(sampler), minlength=4) / 2000
    assert np.allclose(counts, raw / raw.sum(), atol=0.04)


def test_sparse_mcm_gradient_goes_to_one_tied_entry():
    h = small_tree()  # root -> a -> {b, c}
    z = torch.tensor([[0.0, 1.0, 2.0, 2.0]], requires_grad=True)  # b and c tie for the max below a
    out = MaxConstraint(h, method="sparse")(z)
    assert torch.equal(out.detach(), torch.tensor([[2.0, 2.0, 2.0, 2.0]]))
    g = torch.autograd.grad(out[0, 1], z)[0]
    assert g.sum() == 1 and g[0, 2:].sum() == 1 and g[0, :2].sum() == 0
    gd = torch.autograd.grad(MaxConstraint(h, method="dense")(z)[0, 1], z)[0]
    assert torch.allclose(gd, torch.tensor([[0.0, 0.0, 0.5, 0.5]]))


def test_precomputed_pair_mask_matches():
    h = toy_tree(2, 3)
    mcm = MaxConstraint(h, method="sparse")
    y = torch.as_tensor(random_closed_labels(h, 6))
    z = torch.randn(2, 6, h.n)
    pairs = mcm.pair_mask(y)
    assert pairs.shape == (6, mcm.nnz) and pairs.dtype == torch.bool
    assert torch.equal(mcm.training_output(z, y, pairs=pairs), mcm.training_output(z, y))
    with pytest.raises(ValueError, match="pairs"):
        mcm.training_output(z[0], y, pairs=pairs[:, :3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_noise_is_a_scaled_bernoulli_mask(dtype):
    x = torch.zeros(200, 500, dtype=dtype)
    torch.manual_seed(0)
    noise = H.dropout_noise(x, 0.7)
    assert noise.shape == x.shape and noise.dtype == dtype
    values = torch.unique(noise)
    assert torch.allclose(values, torch.tensor([0.0, 1 / 0.3], dtype=dtype))
    kept = (noise > 0).double().mean().item()
    assert abs(kept - 0.3) < 4 * (0.3 * 0.7 / x.numel()) ** 0.5  # Bernoulli(0.3): within 4 sigma
    assert abs(noise.double().mean().item() - 1.0) < 0.02  # E[noise] = 1: dropout keeps the mean
    torch.manual_seed(0)
    assert torch.equal(H.dropout_noise(x, 0.7), noise)  # the global generator: seeded, reproducible
    torch.manual_seed(0)  # the mask is 1[u < 1 - p] for u = torch.rand of x's shape
    assert torch.equal(noise > 0, torch.rand(200, 500, dtype=dtype) < 0.3)


def test_mlp_blocks_multiply_by_the_dropout_noise_in_training_only():
    mlp = MLP(6, 16, 2, dropout=0.5)
    x = torch.randn(3, 6)
    torch.manual_seed(3)
    out = mlp(x)
    torch.manual_seed(3)
    h = x
    for lin in mlp.layers:
        h = torch.relu(lin(h))
        h = h * H.dropout_noise(h, 0.5)
    assert torch.allclose(out, h)
    mlp.eval()
    h = x
    for lin in mlp.layers:
        h = torch.relu(lin(h))
    assert torch.equal(mlp(x), h)
