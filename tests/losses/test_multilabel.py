"""Tests for conehier.losses.multilabel: hand-computed values, references, gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conehier.losses import multilabel as ml

DTYPES = [torch.float32, torch.float64]
LN2 = math.log(2.0)


# --------------------------------------------------------------------------
# Small hand-built trees
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


# CHAMP Figure 1: N1 root; N2, N3 under N1; N4, N6 under N2; N5, N7 under N3;
# N8, N9 under N7; N10 under N4. Node Nk has index k - 1.
PAPER_PARENT = [-1, 0, 0, 1, 2, 1, 2, 6, 6, 3]
PAPER_ANC, PAPER_DEPTH, PAPER_DIST, PAPER_LCA = tree_matrices(PAPER_PARENT)

# root 0 with children 1 and 2
SMALL_DIST = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0]])


def random_tree(rng, c):
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, c)]
    return tree_matrices(parent)


def random_closed_labels(rng, anc, n, p=0.3):
    y = rng.random((n, anc.shape[0])) < p
    return y | ((y.astype(int) @ anc.astype(int)) > 0)


def brute_severity(y, dist, beta, soft, dist_max):
    n, c = y.shape
    out = np.zeros((n, c))
    for i in range(n):
        s = np.flatnonzero(y[i])
        for j in range(c):
            if len(s) == 0:
                d = dist_max
            elif y[i, j]:
                d = 0.0
            elif soft:
                d = len(s) / np.sum(1.0 / dist[j, s])
            else:
                d = dist[j, s].min()
            out[i, j] = beta * d / dist_max
    return out


def assert_finite_grad(fn, z):
    z = z.clone().requires_grad_(True)
    loss = fn(z)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()


EXTREME = [-1e4, -60.0, -5.0, 0.0, 5.0, 60.0, 1e4]


def extreme_batch(dtype, c=3):
    vals = torch.tensor(EXTREME, dtype=dtype)
    z = vals[:, None].expand(len(EXTREME), c).clone()
    y = torch.zeros_like(z)
    y[::2, 0] = 1
    y[1::2, 0] = 1
    y[::3, 1] = 1
    return z, y


# --------------------------------------------------------------------------
# BCE, focal, ASL
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_hand_value(dtype):
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=dtype)
    y = torch.tensor([[1.0, 0.0]], dtype=dtype)
    # node 0: -2 log(1/2); node 1: -log(1 - 3/4) = log 4
    out = ml.bce_with_logits(z, y, pos_weight=torch.tensor([2.0, 5.0]), reduction="none")
    torch.testing.assert_close(out, torch.tensor([[2 * LN2, math.log(4.0)]], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_matches_torch(dtype, reduction):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, dtype=dtype) * 5
    y = (torch.rand(6, 4, generator=g) < 0.4).to(dtype)
    pw = torch.rand(4, generator=g, dtype=dtype) * 3
    ref = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction=reduction)
    torch.testing.assert_close(ml.bce_with_logits(z, y, pos_weight=pw, reduction=reduction), ref)
    mod = ml.WeightedBCELoss(pw, reduction=reduction).to(dtype)
    torch.testing.assert_close(mod(z, y), ref)


def test_batchmean_reduction():
    z = torch.zeros(4, 3)
    y = torch.ones(4, 3)
    assert ml.bce_with_logits(z, y, reduction="batchmean").item() == pytest.approx(3 * LN2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_hand_value(dtype):
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=dtype)  # p = 1/2, 3/4
    y = torch.tensor([[1.0, 1.0]], dtype=dtype)
    out = ml.focal_loss(z, y, gamma=2.0, alpha=0.25, reduction="none")
    expected = [0.25 * 0.25 * LN2, 0.25 * (0.25**2) * -math.log(0.75)]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=dtype))
    # gamma = 0 and no alpha is plain BCE
    torch.testing.assert_close(
        ml.focal_loss(z, y, gamma=0.0, alpha=None), ml.bce_with_logits(z, y)
    )


def test_focal_matches_torchvision():
    tv_ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 7, generator=g) * 3
    y = (torch.rand(5, 7, generator=g) < 0.3).float()
    ref = tv_ops.sigmoid_focal_loss(z, y, alpha=0.25, gamma=2.0, reduction="mean")
    torch.testing.assert_close(ml.FocalLoss()(z, y), ref)


def asl_reference(z, y, gamma_pos, gamma_neg, clip, eps=1e-8):
    """ASL written as in the reference implementation (probabilities, clamped logs)."""
    p = torch.sigmoid(z)
    xs_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    loss = y * torch.log(p.clamp(min=eps)) * (1 - p) ** gamma_pos
    loss = loss + (1 - y) * torch.log(xs_neg.clamp(min=eps)) * (1 - xs_neg) ** gamma_neg
    return -loss


@pytest.mark.parametrize("dtype", DTYPES)
def test_asl_hand_value(dtype):
    z = torch.tensor([[math.log(3.0), math.log(3.0)]], dtype=dtype)  # p = 3/4
    y = torch.tensor([[1.0, 0.0]], dtype=dtype)
    out = ml.asymmetric_loss(z, y, gamma_pos=1.0, gamma_neg=2.0, clip=0.05, reduction="none")
    # positive: (1/4) * -log(3/4); negative: p_m = 0.70, 0.70^2 * -log(0.30)
    expected = [0.25 * -math.log(0.75), 0.7**2 * -math.log(0.3)]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=dtype))


@pytest.mark.parametrize("params", [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (2.0, 1.0, 0.0), (0.0, 0.0, 0.2)])
def test_asl_matches_reference(params):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(8, 5, generator=g) < 0.3).double()
    out = ml.AsymmetricLoss(gamma_pos=params[0], gamma_neg=params[1], clip=params[2], reduction="sum")(z, y)
    torch.testing.assert_close(out, asl_reference(z, y, *params).sum())


def test_asl_reduces_to_bce():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 6, generator=g)
    y = (torch.rand(4, 6, generator=g) < 0.5).float()
    out = ml.asymmetric_loss(z, y, gamma_pos=0, gamma_neg=0, clip=0)
    torch.testing.assert_close(out, ml.bce_with_logits(z, y))


def test_asl_detach_focusing_changes_gradient_only():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(3, 4, generator=g) < 0.5).double()
    grads, values = [], []
    for detach in (False, True):
        zz = z.clone().requires_grad_(True)
        v = ml.asymmetric_loss(zz, y, gamma_pos=1, detach_focusing=detach)
        v.backward()
        grads.append(zz.grad)
        values.append(v.detach())
    torch.testing.assert_close(values[0], values[1])
    assert not torch.allclose(grads[0], grads[1])


# --------------------------------------------------------------------------
# CHAMP
# --------------------------------------------------------------------------
def test_paper_tree_distances():
    n2, n6, n8, n9 = 1, 5, 7, 8
    assert PAPER_DIST[n8, n2] == 4 and PAPER_DIST[n8, n6] == 5 and PAPER_DIST[n8, n9] == 2
    assert PAPER_DIST.max() == 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_champ_paper_worked_example(dtype):
    """Figure 1: S = {N2, N6, N9}, j = N8 at distances 4, 5, 2; beta = 1."""
    y = torch.zeros(1, 10, dtype=dtype)
    y[0, [1, 5, 8]] = 1
    dist = torch.tensor(PAPER_DIST, dtype=dtype)
    n8 = 7
    s_hard = ml.champ_severity(y, dist, beta=1.0)
    s_soft = ml.champ_severity(y, dist, beta=1.0, soft=True)
    harmonic = 3 / (1 / 4 + 1 / 5 + 1 / 2)  # = 60 / 19
    assert s_hard[0, n8].item() == pytest.approx(2 / 6)
    assert s_soft[0, n8].item() == pytest.approx(harmonic / 6)
    assert harmonic == pytest.approx(60 / 19)
    # true labels carry no severity
    assert torch.all(s_hard[0, [1, 5, 8]] == 0) and torch.all(s_soft[0, [1, 5, 8]] == 0)

    z = torch.zeros(1, 10, dtype=dtype)  # p = 1/2 everywhere
    hard = ml.champ_loss(z, y, dist, beta=1.0, reduction="none")
    soft = ml.champ_loss(z, y, dist, beta=1.0, soft=True, reduction="none")
    assert hard[0, n8].item() == pytest.approx((1 + 1 / 3) * LN2)
    assert soft[0, n8].item() == pytest.approx((1 + 10 / 19) * LN2)
    assert hard[0, 1].item() == pytest.approx(LN2)  # a true label: plain -log p


@pytest.mark.parametrize("dtype", DTYPES)
def test_champ_small_tree_hand_values(dtype):
    dist = torch.tensor(SMALL_DIST, dtype=dtype)  # dist_max = 2
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    z = torch.zeros(2, 3, dtype=dtype)
    beta = 0.5
    # hard: sample 0 node 2: min(1, 2) = 1 -> s = 0.5 * 1/2; sample 1 nodes 1, 2: d = 1
    sev = ml.champ_severity(y, dist, beta=beta)
    torch.testing.assert_close(sev, torch.tensor([[0, 0, 0.25], [0, 0.25, 0.25]], dtype=dtype))
    # soft: sample 0 node 2: harmonic of (1, 2) = 4/3 -> s = 0.5 * 2/3
    sev_soft = ml.champ_severity(y, dist, beta=beta, soft=True)
    torch.testing.assert_close(sev_soft, torch.tensor([[0, 0, 1 / 3], [0, 0.25, 0.25]], dtype=dtype))
    loss = ml.champ_loss(z, y, dist, beta=beta, reduction="batchmean")
    expected = (2 + 1.25 + 1 + 1.25 + 1.25) * LN2 / 2
    assert loss.item() == pytest.approx(expected)
    total = ml.champ_loss(z, y, dist, beta=beta, soft=True, reduction="sum")
    assert total.item() == pytest.approx((2 + 4 / 3 + 1 + 1.25 + 1.25) * LN2)


def test_champ_scalings_hand_values():
    dist = torch.tensor(SMALL_DIST)
    y = torch.tensor([[1.0, 0.0, 0.0]])  # nodes 1, 2 at distance 1 -> x = 1/2
    beta = 0.4
    expected = {
        "linear": beta * 0.5,
        "one_plus_beta": (1 + beta) * 0.5,
        "quadratic": beta * 0.25,
        "appendix": beta * (1.5**2 - 1),
    }
    for scaling, value in expected.items():
        sev = ml.champ_severity(y, dist, beta=beta, scaling=scaling)
        torch.testing.assert_close(sev, torch.tensor([[0.0, value, value]]))


def test_champ_empty_sample_uses_dist_max():
    dist = torch.tensor(SMALL_DIST)
    y = torch.zeros(1, 3)
    for soft in (False, True):
        torch.testing.assert_close(ml.champ_severity(y, dist, beta=0.7, soft=soft), torch.full((1, 3), 0.7))


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("fallback", [False, True])
def test_champ_severity_matches_brute_force(soft, fallback, monkeypatch):
    if fallback:  # force the chunked masked-min path
        monkeypatch.setattr(ml, "_MAX_DISTANCE_LEVELS", 0)
        monkeypatch.setattr(ml, "_CHUNK_ELEMENTS", 200)
    rng = np.random.default_rng(5)
    anc, _, dist, _ = random_tree(rng, 15)
    y = random_closed_labels(rng, anc, 9)
    y[0] = False  # an empty sample
    out = ml.champ_severity(torch.tensor(y, dtype=torch.float64), torch.tensor(dist), beta=0.8, soft=soft)
    np.testing.assert_allclose(out.numpy(), brute_severity(y, dist, 0.8, soft, dist.max()), atol=1e-12)


def test_champ_severity_generic_real_distances():
    """Many distinct (non-tree) distances take the chunked path; still the masked min."""
    rng = np.random.default_rng(6)
    a = rng.random((12, 12)) * 5 + 0.1
    dist = np.triu(a, 1) + np.triu(a, 1).T
    y = rng.random((7, 12)) < 0.3
    out = ml.champ_severity(torch.tensor(y).double(), torch.tensor(dist), beta=1.0)
    np.testing.assert_allclose(out.numpy(), brute_severity(y, dist, 1.0, False, dist.max()), atol=1e-12)


def test_champ_beta_zero_is_bce_and_dist_max_override():
    rng = np.random.default_rng(7)
    anc, _, dist, _ = random_tree(rng, 8)
    y = torch.tensor(random_closed_labels(rng, anc, 5), dtype=torch.float32)
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ml.champ_loss(z, y, dist, beta=0.0), ml.bce_with_logits(z, y))
    s1 = ml.champ_severity(y, dist, beta=1.0, dist_max=2 * dist.max())
    s2 = ml.champ_severity(y, dist, beta=0.5)
    torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_champ_asymmetric(dtype):
    dist = torch.tensor(SMALL_DIST, dtype=dtype)
    y = torch.tensor([[1.0, 1.0, 0.0]], dtype=dtype)
    z = torch.tensor([[0.0, 0.0, math.log(3.0)]], dtype=dtype)  # node 2: p = 3/4
    out = ml.champ_asymmetric_loss(
        z, y, dist, beta=1.0, gamma_pos=0.0, gamma_neg=2.0, clip=0.05, reduction="none"
    )
    s = 0.5  # d = 1, dist_max = 2
    expected = [LN2, LN2, (1 + s) * 0.7**2 * -math.log(0.3)]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=dtype))
    # beta = 0 is plain ASL
    g = torch.Generator().manual_seed(8)
    zr = torch.randn(4, 3, generator=g, dtype=dtype)
    yr = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=dtype)
    torch.testing.assert_close(
        ml.champ_asymmetric_loss(zr, yr, dist, beta=0.0), ml.asymmetric_loss(zr, yr)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_champ_modules_match_functions(dtype, soft):
    rng = np.random.default_rng(9)
    anc, _, dist, _ = random_tree(rng, 10)
    y = torch.tensor(random_closed_labels(rng, anc, 6), dtype=dtype)
    z = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), dtype=dtype) * 4
    kw = dict(beta=0.6, soft=soft, scaling="quadratic")
    mod = ml.CHAMPLoss(dist, reduction="batchmean", **kw).to(dtype)
    torch.testing.assert_close(mod(z, y), ml.champ_loss(z, y, dist, reduction="batchmean", **kw))
    torch.testing.assert_close(mod.severity(y), ml.champ_severity(y, dist, **kw))
    amod = ml.CHAMPAsymmetricLoss(dist, gamma_pos=1.0, **kw)
    torch.testing.assert_close(amod(z, y), ml.champ_asymmetric_loss(z, y, dist, gamma_pos=1.0, **kw))
    assert "dist" not in mod.state_dict()  # derived from the hierarchy, not saved


# --------------------------------------------------------------------------
# sigmoidF1 / unboundedF1
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_unbounded_f1_hand_value(dtype):
    ln3 = math.log(3.0)
    z = torch.tensor([[0.0, ln3], [-ln3, 0.0]], dtype=dtype)  # p = [[.5, .75], [.25, .5]]
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    # label 0: tp = .5, fp = .25, fn = .5 -> F1 = 4/7; label 1: tp = .5, fp = .75, fn = .5 -> 4/9
    per_label = ml.unbounded_f1_loss(z, y, reduction="none")
    torch.testing.assert_close(per_label, torch.tensor([3 / 7, 5 / 9], dtype=dtype))
    assert ml.UnboundedF1Loss()(z, y).item() == pytest.approx(1 - (4 / 7 + 4 / 9) / 2)
    # the default sigmoidF1 (beta = 1, eta = 0) is unboundedF1
    torch.testing.assert_close(ml.sigmoid_f1_loss(z, y, reduction="none"), per_label)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_f1_hand_value(dtype):
    beta, eta = 2.0, 0.5
    a = math.log(3.0) / beta - eta  # S(a) = 3/4
    z = torch.tensor([[-eta, a], [-eta - a - eta, -eta]], dtype=dtype)  # S = [[.5, .75], [.25, .5]]
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    out = ml.SigmoidF1Loss(beta=beta, eta=eta, reduction="sum")(z, y)
    assert out.item() == pytest.approx(3 / 7 + 5 / 9)


def test_f1_zero_over_zero_and_reduction_errors():
    z = torch.full((3, 2), -1e4, requires_grad=True)
    y = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    out = ml.sigmoid_f1_loss(z, y, reduction="none")
    # label 0: no positives, nothing predicted -> F1 := 0; label 1: tp = 0 -> F1 = 0
    torch.testing.assert_close(out, torch.ones(2))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="batch-level"):
        ml.unbounded_f1_loss(z, y, reduction="batchmean")


# --------------------------------------------------------------------------
# Rare-node weighting
# --------------------------------------------------------------------------
def test_node_weights_hand_values():
    # N = 4, C = 5, counts [4, 3, 2, 1, 0]; raw N/(C n) = 4/15, 6/15, 12/15 on nodes 1..3
    y = np.zeros((4, 5), dtype=bool)
    y[:, 0] = True
    y[:3, 1] = True
    y[:2, 2] = True
    y[:1, 3] = True
    w = ml.node_weights(y, omega=1.0, w_max=5.0, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 2.0, 5.0, 1.0], dtype=torch.float64))
    w2 = ml.node_weights(torch.tensor(y), omega=0.5, w_max=2.5)
    assert w2.dtype == torch.get_default_dtype()
    torch.testing.assert_close(w2, torch.tensor([1.0, 0.5, 1.0, 2.5, 1.0]))
    # a single frequency among the rescaled nodes -> omega
    torch.testing.assert_close(ml.node_weights(y[:, [0, 3, 4]], omega=0.3), torch.tensor([1.0, 0.3, 1.0]))
    with pytest.raises(ValueError, match="omega"):
        ml.node_weights(y, omega=3.0, w_max=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ensemble_uncertainty_hand_values(dtype):
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    # columns: agreeing 1/2; disagreeing 0 vs 1; agreeing 0.2
    probs = torch.tensor([[[0.5, 0.0, 0.2]], [[0.5, 1.0, 0.2]]], dtype=dtype)
    u = {m: ml.ensemble_uncertainty(probs, m)[0] for m in ("confidence", "entropy", "aleatoric", "epistemic")}
    torch.testing.assert_close(u["confidence"], torch.tensor([1.0, 1.0, 0.4], dtype=dtype))
    torch.testing.assert_close(u["entropy"], torch.tensor([1.0, 1.0, h(0.2) / LN2], dtype=dtype))
    torch.testing.assert_close(u["aleatoric"], torch.tensor([1.0, 0.0, h(0.2) / LN2], dtype=dtype))
    torch.testing.assert_close(u["epistemic"], torch.tensor([0.0, 1.0, 0.0], dtype=dtype))
    # three heads 0, 1, 1: pair divergences log 2, log 2, 0 -> mean 2/3
    three = torch.tensor([0.0, 1.0, 1.0], dtype=dtype)[:, None, None]
    assert ml.ensemble_uncertainty(three).item() == pytest.approx(2 / 3)
    assert ml.ensemble_uncertainty(three[:1]).item() == 0.0  # a single head
    with pytest.raises(ValueError, match="uncertainty mode"):
        ml.ensemble_uncertainty(probs, "bald")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rare_node_loss_hand_values(dtype):
    ln3 = math.log(3.0)
    y = torch.tensor([[1.0, 0.0]], dtype=dtype)
    w = torch.tensor([3.0, 2.0], dtype=dtype)
    # identical heads -> epistemic u = 0 -> focal weight omega_f
    z = torch.zeros(2, 1, 2, dtype=dtype)
    pos = ml.rare_node_loss(z, y, w, reduction="sum")
    assert pos.item() == pytest.approx(0.25 * LN2 * (3 + 1))
    allw = ml.rare_node_loss(z, y, w, weight_terms="all", reduction="sum")
    assert allw.item() == pytest.approx(0.25 * LN2 * (3 + 2))
    # disagreeing heads p = 3/4 and 1/4: u = (h(1/2) - h(3/4)) / log 2
    z2 = torch.tensor([[[ln3, ln3]], [[-ln3, -ln3]]], dtype=dtype)
    h34 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    u = (LN2 - h34) / LN2
    bce = (-math.log(0.75) - math.log(0.25)) / 2  # same for y = 1 and y = 0 here
    out = ml.rare_node_loss(z2, y, w, k=2, omega_f=0.25, reduction="none")
    expected = [3 * (0.25 + u**2) * bce, 1 * (0.25 + u**2) * bce]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=dtype))
    conf = ml.rare_node_loss(z2, y, None, k=1, omega_f=0.0, uncertainty="confidence", reduction="none")
    torch.testing.assert_close(conf, torch.tensor([[bce, bce]], dtype=dtype))  # u = 1


def test_rare_node_single_head_is_weighted_bce():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(5, 4, generator=g) < 0.4).double()
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    out = ml.rare_node_loss(z, y, w, omega_f=0.25)
    torch.testing.assert_close(out, 0.25 * ml.bce_with_logits(z, y, pos_weight=w))


def test_rare_node_uncertainty_is_detached_by_default():
    g = torch.Generator().manual_seed(11)
    z = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(4, 5, generator=g) < 0.4).double()
    w = ml.node_weights(y.numpy().astype(bool), dtype=torch.float64)
    z1 = z.clone().requires_grad_(True)
    ml.rare_node_loss(z1, y, w).backward()
    # reference: the same loss with the focal weight computed as a constant
    z2 = z.clone().requires_grad_(True)
    with torch.no_grad():
        focal = 0.25 + ml.ensemble_uncertainty(torch.sigmoid(z)) ** 2
    bce = -(y * F.logsigmoid(z2) + (1 - y) * F.logsigmoid(-z2)).mean(0)
    (focal * (y * w + 1 - y) * bce).mean().backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    z3 = z.clone().requires_grad_(True)
    ml.rare_node_loss(z3, y, w, detach_uncertainty=False).backward()
    assert not torch.allclose(z1.grad, z3.grad)


def test_rare_node_module():
    rng = np.random.default_rng(12)
    y_train = rng.random((20, 6)) < 0.3
    mod = ml.RareNodeLoss.from_labels(y_train, omega=0.5, w_max=4.0, uncertainty="entropy", reduction="sum")
    z = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(2))
    y = torch.tensor(rng.random((3, 6)) < 0.3)
    ref = ml.rare_node_loss(
        z, y, ml.node_weights(y_train, omega=0.5, w_max=4.0), uncertainty="entropy", reduction="sum"
    )
    torch.testing.assert_close(mod(z, y), ref)
    with pytest.raises(ValueError, match="weight_terms"):
        ml.RareNodeLoss(weight_terms="negative")


# --------------------------------------------------------------------------
# Gradients and bad input
# --------------------------------------------------------------------------
def _loss_fns():
    dist = SMALL_DIST
    return {
        "bce": lambda z, y: ml.bce_with_logits(z, y, pos_weight=2.0),
        "focal": lambda z, y: ml.focal_loss(z, y),
        "focal_half_gamma": lambda z, y: ml.focal_loss(z, y, gamma=0.5),
        "asl": lambda z, y: ml.asymmetric_loss(z, y, gamma_pos=1.0),
        "asl_noclip": lambda z, y: ml.asymmetric_loss(z, y, clip=0.0, gamma_neg=0.5),
        "champ_hard": lambda z, y: ml.champ_loss(z, y, dist),
        "champ_soft": lambda z, y: ml.champ_loss(z, y, dist, soft=True, scaling="appendix"),
        "champ_asl": lambda z, y: ml.champ_asymmetric_loss(z, y, dist, soft=True),
        "sigmoid_f1": lambda z, y: ml.sigmoid_f1_loss(z, y, beta=10.0, eta=1.0),
        "unbounded_f1": lambda z, y: ml.unbounded_f1_loss(z, y),
        "rare_node": lambda z, y: ml.rare_node_loss(z, y, torch.tensor([2.0, 1.0, 3.0], dtype=z.dtype)),
        "rare_node_ensemble": lambda z, y: ml.rare_node_loss(
            torch.stack([z, 0.5 * z, -z]), y, detach_uncertainty=False, uncertainty="epistemic"
        ),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(_loss_fns()))
def test_finite_values_and_gradients(dtype, name):
    z, y = extreme_batch(dtype)
    fn = _loss_fns()[name]
    assert_finite_grad(lambda zz: fn(zz, y), z)
    out = fn(z, y)
    assert out.dtype == dtype


def test_bad_input_raises():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape"):
        ml.bce_with_logits(z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        ml.bce_with_logits(z, torch.zeros(2, 3), reduction="avg")
    with pytest.raises(TypeError, match="floating"):
        ml.focal_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pos_weight"):
        ml.bce_with_logits(z, torch.zeros(2, 3), pos_weight=torch.ones(4))
    with pytest.raises(ValueError, match="dist"):
        ml.champ_loss(z, torch.zeros(2, 3), np.zeros((4, 4)))
    bad = SMALL_DIST.copy()
    bad[0, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        ml.CHAMPLoss(bad)
    with pytest.raises(ValueError, match="scaling"):
        ml.champ_loss(z, torch.zeros(2, 3), SMALL_DIST, scaling="cubic")
    with pytest.raises(ValueError, match="2-D"):
        ml.champ_loss(torch.zeros(3), torch.zeros(3), SMALL_DIST)
    with pytest.raises(ValueError, match="clip"):
        ml.asymmetric_loss(z, torch.zeros(2, 3), clip=1.5)
