import math

import numpy as np
import pytest
import torch

from conehier.geometry.energies import euclidean_cone_energy, hyperbolic_cone_energy, order_energy
from conehier.models.joint import JOINT_GEOMETRIES, JointEmbeddingModel


def _model(geometry="euclidean-cones", C=5, F=4, d=3, dtype=torch.float64, **kw):
    m = JointEmbeddingModel(C, F, d, geometry, dtype=dtype, **kw)
    m.reset_parameters_(torch.Generator().manual_seed(0), label_scale=0.5, image_scale=1.0)
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_image_points_linear_and_exp0_by_hand(dtype):
    m = _model("order", dtype=dtype)
    X = torch.randn(6, 4, dtype=dtype, generator=torch.Generator().manual_seed(1))
    z = X @ m.W.weight.T + m.W.bias
    torch.testing.assert_close(m.image_points(X), z)
    h = _model("hyperbolic-cones", dtype=dtype)
    with torch.no_grad():
        h.W.bias.fill_(0.1)
    z = X @ h.W.weight.T + h.W.bias
    r = z.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(h.image_points(X), torch.tanh(r) * z / r)
    # far out: clipped inside the ball, finite gradients
    Xb = (X * 1e4).requires_grad_()
    p = h.image_points(Xb)
    assert (p.norm(dim=-1) < 1).all()
    p.sum().backward()
    assert torch.isfinite(Xb.grad).all()


@pytest.mark.parametrize("geometry", JOINT_GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_energies_of_gathered_points(geometry, dtype):
    C = 5
    m = _model(geometry, C=C, dtype=dtype)
    X = torch.randn(7, 4, dtype=dtype, generator=torch.Generator().manual_seed(2))
    pairs = torch.tensor([[[0, 1], [0, C + 3], [2, C + 0]], [[1, C + 3], [4, 2], [3, C + 6]]])
    e = m(pairs, X)
    assert e.shape == (2, 3) and e.dtype == dtype
    lab, img = m.label_points(), m.image_points(X)
    table = torch.cat([lab, img])
    u, v = table[pairs[..., 0]], table[pairs[..., 1]]
    if geometry == "order":
        ref = order_energy(u, v)
    elif geometry == "hyperbolic-cones":
        ref = hyperbolic_cone_energy(u, v, K=0.1)
    elif geometry == "euclidean-cones":
        ref = euclidean_cone_energy(u, v, K=0.1)
    else:
        ref = m.pair_energy(u, v)
    torch.testing.assert_close(e, ref)


def test_order_energy_by_hand():
    m = JointEmbeddingModel(2, 2, 2, "order", bias=False, dtype=torch.float64)
    with torch.no_grad():
        m.labels.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
        m.W.weight.copy_(torch.eye(2))
    X = torch.tensor([[0.5, 1.0], [2.0, 3.0]], dtype=torch.float64)
    E = m.energy_matrix(X)
    # E(u, v) = ||max(0, u - v)||: label 1 = (1, 2) over image (0.5, 1) -> ||(0.5, 1)|| = sqrt(1.25)
    expected = torch.tensor([[0.0, math.sqrt(1.25)], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(E, expected)


@pytest.mark.parametrize("geometry,hidden", [("order", 8), ("hyperbolic-cones", 8), ("euclidean-cones", 0)])
def test_energy_matrix_chunks_equal_pairwise(geometry, hidden):
    C = 6
    m = _model(geometry, C=C, hidden=hidden, dropout=0.5)  # dropout: off when scoring
    X = torch.randn(11, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    full = m.energy_matrix(X)
    small = m.energy_matrix(X, chunk_elements=1)  # one image per chunk
    torch.testing.assert_close(full, small)
    assert m.training  # restored
    m.eval()
    n, c = torch.meshgrid(torch.arange(11), torch.arange(C), indexing="ij")
    pairs = torch.stack([c, C + n], dim=-1)
    torch.testing.assert_close(m(pairs, X), full)
    sub = m.energy_matrix(X, labels=torch.tensor([4, 1]))
    torch.testing.assert_close(sub, full[:, [4, 1]])


def test_cone_energy_zero_inside_cone():
    m = JointEmbeddingModel(1, 2, 2, "euclidean-cones", bias=False, dtype=torch.float64)
    with torch.no_grad():
        m.labels.weight.copy_(torch.tensor([[1.0, 0.0]]))
        m.W.weight.copy_(torch.eye(2))
    X = torch.tensor([[3.0, 0.1], [-1.0, 0.0]], dtype=torch.float64)
    E = m.energy_matrix(X)[:, 0]
    assert E[0] == 0  # along the axis, inside the cone
    # behind the apex: angle pi minus aperture arcsin(K / ||u||) = arcsin(0.1)
    assert E[1].item() == pytest.approx(math.pi - math.asin(0.1))


def test_init_labels_by_name_and_errors():
    m = _model("hyperbolic-cones", C=3, d=2)
    pts = np.array([[0.3, 0.1], [0.0, 0.5], [0.2, -0.4], [0.6, 0.0]])
    m.init_labels_(pts, names=["b", "x", "a", "c"], label_names=["a", "b", "c"])
    torch.testing.assert_close(m.label_points(), torch.as_tensor(pts[[2, 0, 3]]), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="lacks 1 label"):
        m.init_labels_(pts, names=["b", "x", "a", "d"], label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="shape"):
        m.init_labels_(np.zeros((3, 5)))


def test_bad_input():
    with pytest.raises(ValueError, match="unknown joint geometry"):
        JointEmbeddingModel(3, 4, 2, "poincare")
    with pytest.raises(ValueError, match="hidden"):
        JointEmbeddingModel(3, 4, 2, "order", dropout=1.5)
    m = _model()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        m.image_points(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        m.energy_matrix(np.zeros((3, 2)))


def test_seeded_init_and_projection():
    a, b = _model("euclidean-cones"), _model("euclidean-cones")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    with torch.no_grad():
        a.labels.weight.zero_()
    a.project_()
    assert (a.label_points().norm(dim=-1) >= 0.1).all()  # out of the inner ball of radius K


def test_gradients_reach_labels_and_W():
    m = _model("hyperbolic-cones", C=4, hidden=5)
    X = torch.randn(3, 4, dtype=torch.float64)
    e = m(torch.tensor([[0, 4], [1, 5], [2, 6], [3, 0]]), X)
    e.sum().backward()
    assert m.labels.weight.grad is not None and torch.isfinite(m.labels.weight.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.W.parameters())
