import math

import geoopt
import pytest
import torch

from conehier.geometry.energies import hyperbolic_cone_energy, poincare_distance
from conehier.geometry.functional import hyperbolic_inner_radius
from conehier.models.embedding import GEOMETRIES, EmbeddingModel


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_init_lands_in_domain_and_scores_batches(geometry, dtype):
    m = EmbeddingModel(50, 4, geometry, dtype=dtype).init_random_(torch.Generator().manual_seed(0))
    pts = m.points()
    norms = pts.norm(dim=-1)
    if m.is_hyperbolic:
        assert (norms < 1).all()
    if m.inner_radius:
        assert (norms >= m.inner_radius - 1e-6).all()
    pairs = torch.randint(50, (7, 11, 2), generator=torch.Generator().manual_seed(1))
    e = m(pairs)
    assert e.shape == (7, 11) and e.dtype == dtype and torch.isfinite(e).all()
    e.sum().backward()
    assert torch.isfinite(m.weight.grad).all()
    assert m.is_a_energy(pairs).shape == (7, 11)


def test_scores_equal_the_energy_of_gathered_points():
    m = EmbeddingModel(10, 3, "hyperbolic-cones").init_random_(torch.Generator().manual_seed(0))
    pairs = torch.tensor([[0, 1], [2, 3], [4, 4]])
    pts = m.points()
    ref = hyperbolic_cone_energy(pts[pairs[:, 0]], pts[pairs[:, 1]], K=0.1)
    assert torch.allclose(m(pairs), ref)
    assert m(pairs)[2] == 0  # coincident points


def test_ball_parameter_is_a_manifold_parameter_and_exp0_maps_into_ball():
    m = EmbeddingModel(5, 2, "hyperbolic-cones")
    assert isinstance(m.weight, geoopt.ManifoldParameter)
    e = EmbeddingModel(5, 2, "hyperbolic-cones", parametrization="exp0")
    assert not isinstance(e.weight, geoopt.ManifoldParameter)
    with torch.no_grad():
        e.weight.copy_(torch.tensor([[3.0, 4.0]] * 5))  # ||w|| = 5 -> tanh(5)
    assert torch.allclose(e.points().norm(dim=-1), torch.full((5,), math.tanh(5.0)))
    pts = torch.tensor([[0.3, 0.4]] * 5)
    e.set_points_(pts)
    assert torch.allclose(e.points(), pts, atol=1e-6)


def test_project_keeps_annulus():
    m = EmbeddingModel(3, 2, "hyperbolic-cones")
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0, 0.0], [0.01, 0.0], [5.0, 0.0]]))
    m.project_()
    n = m.points().norm(dim=-1)
    assert (n >= hyperbolic_inner_radius(0.1)).all() and (n < 1).all()


def test_poincare_is_a_score():
    m = EmbeddingModel(2, 2, "poincare", alpha=10.0)
    m.set_points_(torch.tensor([[0.1, 0.0], [0.5, 0.0]]))
    d = poincare_distance(torch.tensor([0.1, 0.0]), torch.tensor([0.5, 0.0]))
    assert torch.allclose(m.is_a_energy(torch.tensor([[0, 1]])), (1 + 10 * (0.1 - 0.5)) * d)
    assert torch.allclose(m(torch.tensor([[0, 1]])), d.reshape(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distance_matches_the_geometry(dtype):
    pts = torch.tensor([[0.1, 0.0], [0.5, 0.0], [0.0, -0.3]], dtype=dtype)
    pairs = torch.tensor([[[0, 1], [1, 2]], [[2, 2], [0, 2]]])
    for geometry in ("hyperbolic-cones", "poincare"):
        m = EmbeddingModel(3, 2, geometry, dtype=dtype)
        m.set_points_(pts)
        d = m.distance(pairs)
        ref = poincare_distance(pts[pairs[..., 0]], pts[pairs[..., 1]])
        assert d.shape == (2, 2) and d.dtype == dtype and torch.allclose(d, ref)
        # hand value: d(0.1 e1, 0.5 e1) = 2 artanh((0.5 - 0.1) / (1 - 0.05))
        assert math.isclose(d[0, 0].item(), 2 * math.atanh(0.4 / 0.95), rel_tol=1e-5)
    m = EmbeddingModel(3, 2, "order", dtype=dtype)
    m.set_points_(pts)
    assert torch.allclose(m.distance(pairs), torch.tensor([[0.4, math.hypot(0.5, 0.3)], [0.0, math.hypot(0.1, 0.3)]],
                                                           dtype=dtype))
    assert m.distance(pairs)[1, 0] == 0  # coincident points


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown geometry"):
        EmbeddingModel(3, 2, "spherical")
    with pytest.raises(ValueError, match="shape"):
        EmbeddingModel(3, 2, "order").set_points_(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingModel(2, 2, "order").set_points_(torch.tensor([[float("nan"), 0], [0, 0]]))
