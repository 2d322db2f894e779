"""Tests for conehier.geometry.functional: stability helpers and projections."""

import math

import pytest
import torch

from conehier.geometry import functional as F

DTYPES = [torch.float32, torch.float64]


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


# ---------------------------------------------------------------- constants


def test_eps_constants():
    assert F.eps_for(torch.float32) == 1e-5
    assert F.eps_for(torch.float64) == 1e-10
    assert F.min_norm_for(torch.float32) == 1e-15
    # min_norm**2 must stay a normal number (it is used as a clamp on squared norms)
    assert F.min_norm_for(torch.float32) ** 2 > torch.finfo(torch.float32).tiny
    # 1 - eps is representable and distinct from 1 in each dtype
    for dt in DTYPES:
        assert torch.tensor(1 - F.eps_for(dt), dtype=dt) < 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_unsupported_dtype_raises(dtype):
    with pytest.raises(TypeError, match="float32 and float64"):
        F.eps_for(dtype)


def test_check_float_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="share a dtype"):
        F.check_float(x, x.double(), names=("u", "v"))
    with pytest.raises(ValueError, match="same last dimension"):
        F.check_float(x, torch.zeros(4, 2), names=("u", "v"))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.check_float(x.long(), names=("u",))
    with pytest.raises(ValueError, match="0-d"):
        F.check_float(torch.tensor(1.0), names=("u",))
    with pytest.raises(TypeError, match="torch.Tensor"):
        F.check_float([1.0, 2.0], names=("u",))


# ---------------------------------------------------------------- dot / norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "sx,sy", [((5, 4), (5, 4)), ((3, 1, 4), (1, 6, 4)), ((4,), (7, 4)), ((4,), (4,)), ((0, 4), (0, 4))]
)
def test_dot_matches_sum_and_broadcasts(dtype, sx, sy):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(sx, generator=g, dtype=dtype), torch.randn(sy, generator=g, dtype=dtype)
    ref = (x * y).sum(-1)
    out = F.dot(x, y)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_safe_norm_value_and_gradient(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=g, dtype=dtype)
    x[0] = 0
    torch.testing.assert_close(F.safe_norm(x), torch.linalg.vector_norm(x, dim=-1))
    assert F.safe_norm(x)[0] == 0  # exact, not clamped
    gr = _grad(F.safe_norm, x)
    assert torch.isfinite(gr).all()
    assert (gr[0] == 0).all()
    torch.testing.assert_close(gr[1:], x[1:] / x[1:].norm(dim=-1, keepdim=True))
    # keepdim and another dim
    assert F.safe_norm(x, keepdim=True).shape == (6, 1)
    torch.testing.assert_close(F.safe_norm(x, dim=0), torch.linalg.vector_norm(x, dim=0))
    # tiny but non-zero vectors still have a unit-norm gradient
    t = torch.full((1, 3), 1e-12, dtype=dtype)
    torch.testing.assert_close(_grad(F.safe_norm, t).norm(), torch.tensor(1.0, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_safe_atan2(dtype):
    g = torch.Generator().manual_seed(2)
    y, x = torch.randn(50, generator=g, dtype=dtype), torch.randn(50, generator=g, dtype=dtype)
    torch.testing.assert_close(F.safe_atan2(y, x), torch.atan2(y, x))
    z = torch.zeros(2, dtype=dtype)
    xs = torch.tensor([0.0, -0.0], dtype=dtype)
    assert (F.safe_atan2(z, xs) == 0).all()  # torch.atan2(0, -0) would be pi
    yy, xx = z.clone().requires_grad_(), xs.clone().requires_grad_()
    gy, gx = torch.autograd.grad(F.safe_atan2(yy, xx).sum(), (yy, xx))
    assert (gy == 0).all() and (gx == 0).all()


# ---------------------------------------------------------------- clamped inverse functions


@pytest.mark.parametrize("dtype", DTYPES)
def test_arcsin_arccos_clamped_values_exact(dtype):
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=dtype)
    xc = x.clamp(-1, 1)
    torch.testing.assert_close(F.arcsin_clamped(x), torch.asin(xc))
    torch.testing.assert_close(F.arccos_clamped(x), torch.acos(xc))
    assert F.arcsin_clamped(torch.tensor(1.0, dtype=dtype)) == pytest.approx(math.pi / 2)
    assert F.arccos_clamped(torch.tensor(-1.0, dtype=dtype)) == pytest.approx(math.pi)
    # the value path is the same with gradients enabled
    xr = x.clone().requires_grad_()
    torch.testing.assert_close(F.arcsin_clamped(xr).detach(), torch.asin(xc))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,ref", [(F.arcsin_clamped, torch.asin), (F.arccos_clamped, torch.acos)])
def test_arcsin_arccos_clamped_gradients(dtype, fn, ref):
    eps = F.eps_for(dtype)
    edge = torch.tensor([-2.0, -1.0, -1 + eps / 2, 1 - eps / 2, 1.0, 2.0], dtype=dtype)
    g = _grad(fn, edge)
    assert torch.isfinite(g).all()
    assert (g == 0).all()  # outside [-1 + eps, 1 - eps]
    # bounded by 1 / sqrt(2 eps) just inside
    near = torch.tensor([-1 + 2 * eps, 1 - 2 * eps], dtype=dtype)
    assert (_grad(fn, near).abs() <= 1 / math.sqrt(2 * eps) * 1.01).all()
    inner = torch.linspace(-0.99, 0.99, 21, dtype=dtype)
    torch.testing.assert_close(_grad(fn, inner), _grad(ref, inner))


@pytest.mark.parametrize("dtype", DTYPES)
def test_artanh_clamped(dtype):
    eps = F.eps_for(dtype)
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=dtype)
    out = F.artanh_clamped(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:4], torch.atanh(x[1:4]))
    assert out[-1] == pytest.approx(math.atanh(1 - eps), rel=1e-3)
    assert torch.isfinite(_grad(F.artanh_clamped, x)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sqrt_clamped(dtype):
    x = torch.tensor([-1.0, 0.0, 1e-20, 0.25, 4.0], dtype=dtype)
    torch.testing.assert_close(F.sqrt_clamped(x), x.clamp_min(0).sqrt())
    g = _grad(F.sqrt_clamped, x)
    assert torch.isfinite(g).all()
    assert g[0] == 0 and g[1] == 0
    torch.testing.assert_close(g[3:], 0.5 / x[3:].sqrt())


# ---------------------------------------------------------------- projections


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_to_ball(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 5, generator=g, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True) * torch.linspace(0, 3, 200, dtype=dtype)[:, None]
    y = F.project_to_ball(x)
    eps = F.eps_for(dtype)
    n = y.norm(dim=-1)
    assert (n <= 1 - eps + 4 * torch.finfo(dtype).eps).all()
    inside = x.norm(dim=-1) <= 1 - eps
    assert torch.equal(y[inside], x[inside])
    # direction preserved
    cos = F.dot(x[~inside], y[~inside]) / (x[~inside].norm(dim=-1) * n[~inside])
    torch.testing.assert_close(cos, torch.ones_like(cos))
    # custom eps, keyword-only
    assert (F.project_to_ball(x, eps=0.1).norm(dim=-1) <= 0.9 + 1e-6).all()
    with pytest.raises(TypeError):
        F.project_to_ball(x, 0.1)
    assert torch.isfinite(_grad(F.project_to_ball, x)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_out_of_inner_ball(dtype):
    K = 0.1
    rad = F.hyperbolic_inner_radius(K)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(100, 4, generator=g, dtype=dtype)
    x = x / x.norm(dim=-1, keepdim=True) * torch.linspace(0, 0.5, 100, dtype=dtype)[:, None]
    y = F.project_out_of_inner_ball(x, radius=rad)
    n = y.norm(dim=-1)
    assert (n >= rad * (1 - 4 * torch.finfo(dtype).eps)).all()
    outside = x.norm(dim=-1) >= rad
    assert torch.equal(y[outside], x[outside])
    # the zero vector gets a fixed direction
    assert y[0].norm() == pytest.approx(rad, rel=1e-6)
    assert torch.isfinite(_grad(lambda t: F.project_out_of_inner_ball(t, radius=rad), x)).all()


def test_inner_radius():
    for K in [0.01, 0.1, 0.5, 2.0]:
        r = F.hyperbolic_inner_radius(K)
        assert 0 < r < 1
        assert K * (1 - r * r) / r == pytest.approx(1.0)
        rt = F.hyperbolic_inner_radius(torch.tensor(K, dtype=torch.float64))
        assert float(rt) == pytest.approx(r)
        assert F.euclidean_inner_radius(K) == K


def test_check_in_ball():
    F.check_in_ball(torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="outside the open Poincaré ball"):
        F.check_in_ball(torch.tensor([[0.5, 0.5], [1.0, 0.0]]), name="emb")
    with pytest.raises(ValueError, match="NaN"):
        F.check_in_ball(torch.tensor([[float("nan"), 0.0]]))
