"""Tests for conehier.geometry.energies: hand computations, identities, invariants,
finite values/gradients at degenerate points, fused-vs-reference gradients."""

import functools
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conehier.geometry import energies as en
from conehier.geometry import functional as F

with warnings.catch_warnings():  # geoopt triggers torch.jit deprecation warnings on import
    warnings.simplefilter("ignore")
    import geoopt

DTYPES = [torch.float32, torch.float64]
K = 0.1
EPS_K = F.hyperbolic_inner_radius(K)
BALL = geoopt.PoincareBall()

ENERGY_FUNCS = {
    "order": en.order_energy,
    "order-squared": functools.partial(en.order_energy, squared=True),
    "euclidean-cones": en.euclidean_cone_energy,
    "euclidean-cones-plain": functools.partial(en.euclidean_cone_energy, fused=False),
    "euclidean-cones-cosine": en.euclidean_cone_cosine_energy,
    "hyperbolic-cones": en.hyperbolic_cone_energy,
    "hyperbolic-cones-plain": functools.partial(en.hyperbolic_cone_energy, fused=False),
    "poincare": en.poincare_distance,
}
CONES = {
    # name -> (energy, angle, aperture, inner radius)
    "euclidean": (en.euclidean_cone_energy, en.euclidean_cone_angle, en.euclidean_cone_aperture, K),
    "hyperbolic": (en.hyperbolic_cone_energy, en.hyperbolic_cone_angle, en.hyperbolic_cone_aperture, EPS_K),
}


def T(x, dtype):
    return torch.tensor(x, dtype=dtype)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def rand_dirs(n, d, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (x / x.norm(dim=-1, keepdim=True)).to(dtype)


def orthonormal_to(x, seed):
    """Unit vectors orthogonal to the rows of x."""
    n = rand_dirs(x.shape[0], x.shape[1], x.dtype, seed)
    xh = x / x.norm(dim=-1, keepdim=True)
    n = n - (n * xh).sum(-1, keepdim=True) * xh
    return n / n.norm(dim=-1, keepdim=True)


def rotate_from_axis(x, n, theta):
    """Unit vectors at angle theta from x (towards the unit vectors n orthogonal to x)."""
    xh = x / x.norm(dim=-1, keepdim=True)
    return torch.cos(theta)[..., None] * xh + torch.sin(theta)[..., None] * n


def literal_hyperbolic_xi(x, y):
    """Thesis eq. 2.10, written literally (float64 reference)."""
    nx2, ny2, xy = (x * x).sum(-1), (y * y).sum(-1), (x * y).sum(-1)
    num = xy * (1 + nx2) - nx2 * (1 + ny2)
    den = nx2.sqrt() * (x - y).norm(dim=-1) * torch.sqrt(1 + nx2 * ny2 - 2 * xy)
    return torch.acos((num / den).clamp(-1, 1))


def literal_euclidean_xi(x, y):
    """Thesis eq. 2.5 (law of cosines), written literally (float64 reference)."""
    nx, ny, dxy = x.norm(dim=-1), y.norm(dim=-1), (x - y).norm(dim=-1)
    return torch.acos(((ny**2 - nx**2 - dxy**2) / (2 * nx * dxy)).clamp(-1, 1))


# =================================================================== hand computations


@pytest.mark.parametrize("dtype", DTYPES)
def test_order_energy_hand(dtype):
    u, v = T([1.0, 2.0, 3.0], dtype), T([0.0, 3.0, 1.0], dtype)
    assert en.order_energy(u, v).item() == pytest.approx(math.sqrt(5), rel=1e-6)
    assert en.order_energy(u, v, squared=True).item() == pytest.approx(5.0, rel=1e-6)
    # v >= u coordinate-wise: exactly 0 (reversed product order, thesis eq. 2.1)
    assert en.order_energy(u, u + T([0.0, 1.0, 2.0], dtype)).item() == 0.0
    assert en.order_energy(u, u).item() == 0.0
    assert en.order_energy(torch.zeros(3, dtype=dtype), v).item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_euclidean_cone_hand(dtype):
    x = T([[1.0, 0.0]] * 4, dtype)
    y = T([[2.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0 + 4.0, 3.0]], dtype)
    xi = en.euclidean_cone_angle(x, y)
    expected = T([math.pi / 4, math.pi / 2, math.pi, math.atan2(3, 4)], dtype)
    torch.testing.assert_close(xi, expected, **tol(dtype))
    # K = 0.5: psi = arcsin(0.5 / 1) = pi / 6
    psi = en.euclidean_cone_aperture(x, K=0.5)
    torch.testing.assert_close(psi, torch.full((4,), math.pi / 6, dtype=dtype), **tol(dtype))
    E = en.euclidean_cone_energy(x, y, K=0.5)
    torch.testing.assert_close(E, (expected - math.pi / 6).clamp_min(0), **tol(dtype))
    assert E[0].item() == pytest.approx(math.pi / 12, rel=1e-5)
    # cosine space: cos(pi/6) - cos(pi/4)
    Ec = en.euclidean_cone_cosine_energy(x, y, K=0.5)
    assert Ec[0].item() == pytest.approx(math.sqrt(3) / 2 - math.sqrt(2) / 2, rel=1e-5)
    assert Ec[3].item() == pytest.approx(math.sqrt(3) / 2 - 0.8, rel=1e-5)  # cos(atan2(3,4)) = 4/5


@pytest.mark.parametrize("dtype", DTYPES)
def test_hyperbolic_cone_hand(dtype):
    # x = (0.5, 0), y = (0.5, 0.5): <x,y> = 1/4, |x|^2 = 1/4, |y|^2 = 1/2, |x-y| = 1/2
    # num = 1/4 * 5/4 - 1/4 * 3/2 = -1/16; den = 1/2 * 1/2 * sqrt(1 + 1/8 - 1/2) = sqrt(5/8)/4
    # cos Xi = -1/sqrt(10), i.e. Xi = pi - atan(3)
    x, y = T([0.5, 0.0], dtype), T([0.5, 0.5], dtype)
    xi = en.hyperbolic_cone_angle(x, y)
    assert xi.item() == pytest.approx(math.acos(-1 / math.sqrt(10)), rel=1e-6)
    assert xi.item() == pytest.approx(math.pi - math.atan(3), rel=1e-6)
    psi = en.hyperbolic_cone_aperture(x, K=K)  # arcsin(0.1 * 0.75 / 0.5)
    assert psi.item() == pytest.approx(math.asin(0.15), rel=1e-6)
    for fused in (True, False):
        E = en.hyperbolic_cone_energy(x, y, K=K, fused=fused)
        assert E.item() == pytest.approx(math.pi - math.atan(3) - math.asin(0.15), rel=1e-6)
    # along a diameter the geodesic is the straight line: y = 0.8 e1 is on the axis, y = 0 behind
    assert en.hyperbolic_cone_angle(x, T([0.8, 0.0], dtype)).item() == pytest.approx(0.0, abs=1e-7)
    assert en.hyperbolic_cone_angle(x, T([0.0, 0.0], dtype)).item() == pytest.approx(math.pi, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poincare_distance_hand(dtype):
    x = T([0.5, 0.0], dtype)
    assert en.poincare_distance(torch.zeros(2, dtype=dtype), x).item() == pytest.approx(
        2 * math.atanh(0.5), rel=1e-6
    )  # thesis eq. 2.8
    # through the origin: d = 2 artanh(0.5) * 2 = arcosh(1 + 2 * 1 / (0.75 * 0.75))
    d = en.poincare_distance(x, -x).item()
    assert d == pytest.approx(4 * math.atanh(0.5), rel=1e-6)
    assert d == pytest.approx(math.acosh(1 + 2 / 0.75**2), rel=1e-6)
    assert en.poincare_distance(x, x).item() == 0.0


def test_inner_radius_is_where_aperture_saturates():
    for dtype in DTYPES:
        r = T([EPS_K, 0.0], dtype)
        assert en.hyperbolic_cone_aperture(r, K=K).item() == pytest.approx(math.pi / 2, rel=1e-6)
        assert en.hyperbolic_cone_aperture(r * 1.01, K=K).item() < math.pi / 2 - 1e-2
        assert en.hyperbolic_cone_aperture(r * 0.5, K=K).item() == pytest.approx(math.pi / 2)
        assert en.euclidean_cone_aperture(T([K, 0.0], dtype), K=K).item() == pytest.approx(math.pi / 2)


# =================================================================== second ways to get the angle


def test_euclidean_angle_matches_atan2_and_law_of_cosines():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    y = torch.randn(500, 2, generator=g, dtype=torch.float64)
    dl = y - x
    cross = x[:, 0] * dl[:, 1] - x[:, 1] * dl[:, 0]
    expected = torch.atan2(cross.abs(), (x * dl).sum(-1))
    torch.testing.assert_close(en.euclidean_cone_angle(x, y), expected)
    x5 = torch.randn(500, 5, generator=g, dtype=torch.float64)
    y5 = torch.randn(500, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(en.euclidean_cone_angle(x5, y5), literal_euclidean_xi(x5, y5))
    torch.testing.assert_close(
        en.euclidean_cone_angle(x5.float(), y5.float()),
        literal_euclidean_xi(x5, y5).float(),
        rtol=1e-4,
        atol=1e-4,
    )


def _ball_points(n, d, dtype, seed, rmin=0.05, rmax=0.95):
    g = torch.Generator().manual_seed(seed)
    r = rmin + (rmax - rmin) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return (rand_dirs(n, d, torch.float64, seed + 1) * r).to(dtype)


def test_hyperbolic_angle_matches_literal_formula_and_logmap():
    x, y = _ball_points(500, 5, torch.float64, 6), _ball_points(500, 5, torch.float64, 8)
    xi = en.hyperbolic_cone_angle(x, y)
    torch.testing.assert_close(xi, literal_hyperbolic_xi(x, y))
    # Xi is the angle at x between the axis x and the geodesic's initial tangent log_x(y)
    lg = BALL.logmap(x, y)
    cos = (lg * x).sum(-1) / (lg.norm(dim=-1) * x.norm(dim=-1))
    torch.testing.assert_close(xi, torch.acos(cos.clamp(-1, 1)), rtol=1e-7, atol=1e-7)
    # float32 agrees with the float64 value
    xi32 = en.hyperbolic_cone_angle(x.float(), y.float())
    torch.testing.assert_close(xi32, xi.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_cone_quantities_rotation_invariant(dtype, cone):
    energy, angle, aperture, _ = CONES[cone]
    x, y = _ball_points(200, 4, dtype, 10), _ball_points(200, 4, dtype, 12)
    g = torch.Generator().manual_seed(13)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    Q = Q.to(dtype)
    t = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(angle(x @ Q.T, y @ Q.T), angle(x, y), **t)
    torch.testing.assert_close(aperture(x @ Q.T, K=K), aperture(x, K=K), **t)
    torch.testing.assert_close(energy(x @ Q.T, y @ Q.T, K=K), energy(x, y, K=K), **t)


def test_poincare_distance_matches_geoopt():
    for dtype, t in [
        (torch.float64, dict(rtol=1e-9, atol=1e-9)),
        (torch.float32, dict(rtol=1e-4, atol=1e-4)),
    ]:
        x, y = _ball_points(500, 6, dtype, 14, rmax=0.999), _ball_points(500, 6, dtype, 16, rmax=0.999)
        torch.testing.assert_close(en.poincare_distance(x, y), BALL.dist(x, y), **t)
        torch.testing.assert_close(en.poincare_distance(x, y), en.poincare_distance(y, x), **t)
    # near the boundary geoopt's internal artanh clamp saturates (~16.8 instead of ~23.7 for
    # orthogonal points at norm 1 - 1e-5); compare with the literal eq. 2.7 in float64 there
    x = rand_dirs(50, 3, torch.float64, 17) * (1 - 1e-5)
    y = rand_dirs(50, 3, torch.float64, 18) * (1 - 1e-5)
    a, b, d2 = (x * x).sum(-1), (y * y).sum(-1), ((x - y) ** 2).sum(-1)
    literal = torch.acosh(1 + 2 * d2 / ((1 - a) * (1 - b)))
    torch.testing.assert_close(en.poincare_distance(x, y), literal, rtol=1e-8, atol=1e-8)
    # float32 at the boundary: the conformal factor 1 - |x|^2 ~ 2e-5 is resolved to ~1e-2
    d32 = en.poincare_distance(x.float(), y.float())
    torch.testing.assert_close(d32, literal.float(), rtol=2e-3, atol=2e-2)


# =================================================================== identities


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_on_the_cone_axis(dtype):
    n = 300
    dirs = rand_dirs(n, 6, torch.float64, 20)
    g = torch.Generator().manual_seed(21)
    # hyperbolic: |u| in (eps_K, 1 - 1e-4), v = t u with |u| < |v| <= 1 - 1e-5
    ru = EPS_K * 1.001 + (1 - 1e-4 - EPS_K * 1.001) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    rv = ru + (1 - 1e-5 - ru) * torch.rand(n, 1, generator=g, dtype=torch.float64).clamp_min(1e-3)
    u, v = (dirs * ru).to(dtype), (dirs * rv).to(dtype)
    for fused in (True, False):
        assert (en.hyperbolic_cone_energy(u, v, K=K, fused=fused) == 0).all()
    # explicit near-boundary cases
    ub = T([[0.9, 0.0, 0.0], [1 - 1e-4, 0.0, 0.0]], dtype)
    vb = T([[1 - 1e-5, 0.0, 0.0]] * 2, dtype)
    assert (en.hyperbolic_cone_energy(ub, vb, K=K) == 0).all()
    rot = rand_dirs(1, 3, torch.float64, 22)[0]
    others = torch.randn(3, 2, generator=g, dtype=torch.float64)
    Qb, _ = torch.linalg.qr(torch.cat([rot[:, None], others], 1))
    # off the coordinate axes the float32 *inputs* are no longer on one ray: rounding each
    # coordinate (6e-8 relative) tilts v - u (|v - u| ~ 1e-4) by up to ~1e-3 rad, more than
    # psi(0.9999) ~ 2e-5, so only float64 can be exact there
    Eb = en.hyperbolic_cone_energy(ub @ Qb.T.to(dtype), vb @ Qb.T.to(dtype), K=K)
    assert (Eb <= (2e-3 if dtype == torch.float32 else 0)).all()
    # Euclidean: |u| > K, v = t u with t in (1, 10]
    ue = (dirs * (K * 1.001 + 3 * torch.rand(n, 1, generator=g, dtype=torch.float64))).to(dtype)
    t = (1 + 9 * torch.rand(n, 1, generator=g, dtype=torch.float64).clamp_min(1e-3)).to(dtype)
    for fused in (True, False):
        assert (en.euclidean_cone_energy(ue, t * ue, K=K, fused=fused) == 0).all()
    assert (en.euclidean_cone_cosine_energy(ue, t * ue, K=K) == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_coincident_points_have_zero_energy(dtype, cone):
    energy = CONES[cone][0]
    u = _ball_points(20, 3, dtype, 23)
    assert (energy(u, u, K=K) == 0).all()
    assert (energy(u, u, K=K, fused=False) == 0).all()
    assert (en.euclidean_cone_cosine_energy(u, u, K=K) == 0).all()


def _rotation_family(dtype, cone, r_u=0.5, n_theta=181, d=3):
    """u fixed; v_theta on the geodesic from u with initial angle theta to the axis."""
    u = rand_dirs(1, d, torch.float64, 30) * r_u
    n = orthonormal_to(u, 31)
    theta = torch.linspace(0, math.pi, n_theta, dtype=torch.float64)
    w = rotate_from_axis(u.expand(n_theta, d), n.expand(n_theta, d), theta)
    if cone == "hyperbolic":
        v = BALL.expmap(u.expand(n_theta, d), 0.3 * w)
    else:
        v = u + 0.3 * w
    return u.to(dtype), v.to(dtype), theta.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_energy_grows_as_v_rotates_away_from_axis(dtype, cone):
    energy, angle, aperture, _ = CONES[cone]
    u, v, theta = _rotation_family(dtype, cone)
    t = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    # Xi is exactly the rotation angle (geodesic's initial direction)
    torch.testing.assert_close(angle(u.expand_as(v), v), theta, **t)
    psi = aperture(u, K=K)
    E = energy(u, v, K=K)
    torch.testing.assert_close(E, (theta - psi).clamp_min(0), **t)
    assert (E[theta <= psi - 1e-3] == 0).all()
    dE = E.diff()
    assert (dE >= -1e-6).all()  # non-decreasing
    assert (dE[theta[1:] > psi + 1e-3] > 0).all()  # strictly increasing outside the cone
    if cone == "euclidean":
        Ec = en.euclidean_cone_cosine_energy(u, v, K=K)
        assert (Ec.diff() >= -1e-6).all()
        torch.testing.assert_close(Ec, (torch.cos(psi) - torch.cos(theta)).clamp_min(0), **t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_energy_grows_as_v_rotates_about_origin(dtype, cone):
    """v = R_theta(s u_hat) with s > |u|, rotated rigidly about the origin."""
    energy = CONES[cone][0]
    u = rand_dirs(1, 4, torch.float64, 32) * 0.4
    n = orthonormal_to(u, 33)
    theta = torch.linspace(0, math.pi, 361, dtype=torch.float64)
    v = 0.8 * rotate_from_axis(u.expand(361, 4), n.expand(361, 4), theta)
    E = energy(u.to(dtype), v.to(dtype), K=K)
    assert E[0] == 0
    assert (E.diff() >= -1e-6).all()
    assert E[-1] > 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_aperture_non_increasing_in_norm(dtype):
    r = torch.linspace(1e-3, 1 - 1e-5, 2000, dtype=torch.float64)
    x = (rand_dirs(1, 5, torch.float64, 34) * r[:, None]).to(dtype)
    psi_h = en.hyperbolic_cone_aperture(x, K=K)
    assert (psi_h.diff() <= 0).all()
    assert (psi_h <= math.pi / 2 + 1e-6).all() and (psi_h >= 0).all()
    assert (psi_h.diff()[r[1:].to(dtype) > EPS_K * 1.01] < 0).all()
    inside = psi_h[r.to(dtype) < EPS_K * 0.99]
    torch.testing.assert_close(inside, torch.full_like(inside, math.pi / 2))
    re = torch.linspace(1e-3, 20, 2000, dtype=torch.float64)[:, None]
    xe = (rand_dirs(1, 5, torch.float64, 35) * re).to(dtype)
    psi_e = en.euclidean_cone_aperture(xe, K=K)
    assert (psi_e.diff() <= 0).all()
    assert psi_e[-1].item() == pytest.approx(math.asin(K / 20), rel=1e-4)


# =================================================================== transitivity (property-based)


def _cone_child(x, frac, length, seed, cone):
    """A point in cone(x): initial direction at angle frac * psi(x) from x's axis,
    at hyperbolic (resp. Euclidean) distance `length` along the geodesic."""
    psi = CONES[cone][2](x, K=K)
    w = rotate_from_axis(x, orthonormal_to(x, seed), frac * psi)
    if cone == "hyperbolic":
        lam = 2 / (1 - (x * x).sum(-1, keepdim=True))  # conformal factor
        return BALL.expmap(x, w * length / lam)
    return x + length * w


@settings(max_examples=60, deadline=None)
@given(
    cone=st.sampled_from(sorted(CONES)),
    d=st.sampled_from([2, 3, 5]),
    seed=st.integers(0, 2**31 - 1),
    rx=st.floats(1.01, 8.0),
    f1=st.floats(0.0, 0.999),
    f2=st.floats(0.0, 0.999),
    l1=st.floats(1e-3, 3.0),
    l2=st.floats(1e-3, 3.0),
)
def test_transitivity(cone, d, seed, rx, f1, f2, l1, l2):
    """y in cone(x) and z in cone(y) imply z in cone(x) (Ganea et al. 2018), float64."""
    energy, angle, aperture, inner = CONES[cone]
    if cone == "hyperbolic":
        r = min(inner * rx, 0.9)
    else:
        r = inner * rx
    x = rand_dirs(1, d, torch.float64, seed) * r
    y = _cone_child(x, f1, l1, seed + 1, cone)
    z = _cone_child(y, f2, l2, seed + 2, cone)
    assert energy(x, y, K=K).item() <= 1e-9
    assert energy(y, z, K=K).item() <= 1e-9
    assert energy(x, z, K=K).item() <= 1e-9
    assert energy(x, z, K=K, fused=False).item() <= 1e-9


@pytest.mark.parametrize("cone", sorted(CONES))
def test_transitivity_float32_batch(cone):
    energy, _, _, inner = CONES[cone]
    n = 2000
    g = torch.Generator().manual_seed(40)
    rx = inner * (1.01 + 5 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    if cone == "hyperbolic":
        rx = rx.clamp_max(0.9)
    x = rand_dirs(n, 4, torch.float64, 41) * rx
    f = lambda: 0.99 * torch.rand(n, 1, generator=g, dtype=torch.float64)  # noqa: E731
    y = _cone_child(x, f().squeeze(-1), 2 * torch.rand(n, 1, generator=g, dtype=torch.float64), 42, cone)
    z = _cone_child(y, f().squeeze(-1), 2 * torch.rand(n, 1, generator=g, dtype=torch.float64), 43, cone)
    x, z = x.float(), z.float()
    assert energy(x, z, K=K).max().item() <= 1e-4


# =================================================================== finite values and gradients


def special_pairs(dtype):
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    b = 1 - 1e-5
    diag = (e1 + e2) / math.sqrt(2)
    cases = {
        "apex_exact": (EPS_K * e1, 0.5 * e1 + 0.2 * e2),
        "apex_inside": (0.99 * EPS_K * e1, 0.5 * e1 + 0.2 * e2),
        "apex_just_outside": ((1 + 1e-6) * EPS_K * e1, 0.3 * e2),
        "apex_behind": (EPS_K * e1, -0.3 * e1),
        "euclidean_apex": (K * e1, 0.2 * e2),
        "u_zero": (0 * e1, 0.3 * e1 + 0.1 * e2),
        "v_zero": (0.5 * e1, 0 * e1),
        "both_zero": (0 * e1, 0 * e1),
        "coincident": (0.5 * e1 + 0.1 * e2, 0.5 * e1 + 0.1 * e2),
        "coincident_apex": (EPS_K * e1, EPS_K * e1),
        "coincident_boundary": (b * diag, b * diag),
        "boundary_u": (b * e1, 0.5 * e2),
        "boundary_v": (0.5 * e1, b * diag),
        "boundary_both": (b * e1, b * e2),
        "boundary_axis": ((1 - 1e-4) * e1, b * e1),
        "axis_behind": (0.5 * e1, 0.2 * e1),
        "axis_ahead": (0.5 * e1, 0.8 * e1),
        "near_coincident": (0.5 * e1, 0.5 * e1 + 1e-7 * e2),
    }
    names = list(cases)
    u = torch.stack([cases[k][0] for k in names]).to(dtype)
    v = torch.stack([cases[k][1] for k in names]).to(dtype)
    return names, u, v


def _value_and_grads(fn, u, v):
    u, v = u.clone().requires_grad_(), v.clone().requires_grad_()
    E = fn(u, v)
    gu, gv = torch.autograd.grad(E.sum(), (u, v))
    return E.detach(), gu, gv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ENERGY_FUNCS))
def test_finite_values_and_gradients_at_special_points(dtype, name):
    names, u, v = special_pairs(dtype)
    E, gu, gv = _value_and_grads(ENERGY_FUNCS[name], u, v)
    finite = torch.isfinite(E) & torch.isfinite(gu).all(-1) & torch.isfinite(gv).all(-1)
    bad = [n for n, ok in zip(names, finite.tolist()) if not ok]
    assert not bad, f"non-finite value or gradient at {bad}"
    assert (E >= 0).all()
    # one pair at a time gives the same (no cross-talk through the batch)
    for i in range(len(names)):
        Ei, gui, gvi = _value_and_grads(ENERGY_FUNCS[name], u[i : i + 1], v[i : i + 1])
        torch.testing.assert_close(Ei, E[i : i + 1])
        torch.testing.assert_close(gui, gu[i : i + 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_fused_matches_reference_at_special_points(dtype, cone):
    energy = CONES[cone][0]
    names, u, v = special_pairs(dtype)
    E1, gu1, gv1 = _value_and_grads(functools.partial(energy, K=K), u, v)
    E2, gu2, gv2 = _value_and_grads(functools.partial(energy, K=K, fused=False), u, v)
    torch.testing.assert_close(E1, E2, **tol(dtype))
    # gradients agree except at kinks where the two sides of a clamp may be picked differently
    t = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(gu1, gu2, **t)
    torch.testing.assert_close(gv1, gv2, **t)


# =================================================================== fused analytic gradient


@pytest.mark.parametrize("cone", sorted(CONES))
@pytest.mark.parametrize("shapes", [((6, 4), (6, 4)), ((3, 1, 4), (1, 5, 4)), ((4,), (7, 4))])
def test_fused_gradcheck(cone, shapes):
    energy = CONES[cone][0]
    (su, sv) = shapes
    u = _ball_points(math.prod(su[:-1]), su[-1], torch.float64, 51).reshape(su).requires_grad_()
    v = _ball_points(math.prod(sv[:-1]), sv[-1], torch.float64, 52).reshape(sv).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: energy(a, b, K=K), (u, v))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cone", sorted(CONES))
def test_fused_matches_autograd_of_plain_formula(dtype, cone):
    energy = CONES[cone][0]
    n = 2000
    u = _ball_points(n, 10, dtype, 60, rmin=0.01, rmax=0.999)
    # children near u (inside and outside its cone) and arbitrary points
    near = u[: n // 2] * 1.05 + 0.05 * _ball_points(n // 2, 10, dtype, 61)
    v = torch.cat([near, _ball_points(n // 2, 10, dtype, 62)])
    if cone == "hyperbolic":
        v = F.project_to_ball(v)
    E1, gu1, gv1 = _value_and_grads(functools.partial(energy, K=K), u, v)
    E2, gu2, gv2 = _value_and_grads(functools.partial(energy, K=K, fused=False), u, v)
    assert (E1 > 0).any() and (E1 == 0).any()
    if dtype == torch.float64:
        t = dict(rtol=1e-9, atol=1e-9)
    else:
        t = dict(rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(E1, E2, **t)
    torch.testing.assert_close(gu1, gu2, **t)
    torch.testing.assert_close(gv1, gv2, **t)


def test_fused_is_first_order_only_and_reference_is_not():
    u = _ball_points(8, 3, torch.float64, 72).requires_grad_()
    v = _ball_points(8, 3, torch.float64, 73)
    (g,) = torch.autograd.grad(en.hyperbolic_cone_energy(u, v).sum(), (u,), create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), (u,))
    (g,) = torch.autograd.grad(en.hyperbolic_cone_energy(u, v, fused=False).sum(), (u,), create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), (u,))
    assert torch.isfinite(h).all()


def test_fused_only_needed_gradients():
    u = _ball_points(8, 3, torch.float64, 70).requires_grad_()
    v = _ball_points(8, 3, torch.float64, 71)
    (gu,) = torch.autograd.grad(en.hyperbolic_cone_energy(u, v).sum(), (u,))
    assert gu.shape == u.shape
    u2 = u.detach()
    v2 = v.clone().requires_grad_()
    (gv,) = torch.autograd.grad(en.hyperbolic_cone_energy(u2, v2).sum(), (v2,))
    assert gv.shape == v2.shape


# =================================================================== cosine form vs angle form


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_form_has_the_same_zero_set(dtype):
    u = _ball_points(3000, 3, dtype, 80, rmin=0.0, rmax=2.0)
    v = _ball_points(3000, 3, dtype, 81, rmin=0.0, rmax=2.0)
    Ea = en.euclidean_cone_energy(u, v, K=K)
    Ec = en.euclidean_cone_cosine_energy(u, v, K=K)
    margin = en.euclidean_cone_aperture(u, K=K) - en.euclidean_cone_angle(u, v)
    clear = (Ea > 1e-3) | (margin > 1e-3)  # away from the cone's surface
    assert torch.equal((Ea[clear] == 0), (Ec[clear] == 0))
    assert (Ec <= 2).all() and (Ec >= 0).all()


# =================================================================== shapes, registry, bad input


@pytest.mark.parametrize("name", sorted(en.ENERGIES))
def test_registry_shapes_and_defaults(name):
    f = en.get_energy(name)
    u = _ball_points(12, 5, torch.float32, 90, rmin=0.2, rmax=0.9).reshape(3, 4, 5)
    v = _ball_points(12, 5, torch.float32, 91, rmin=0.2, rmax=0.9).reshape(3, 4, 5)
    assert f(u, v).shape == (3, 4)
    assert f(u[:, :1], v[:1]).shape == (3, 4)  # broadcasting leading dims
    assert f(u[0, 0], v[0, 0]).shape == ()
    assert f(u.double(), v.double()).dtype == torch.float64
    assert f is en.ENERGIES[name]


def test_registry_names_and_kwargs():
    assert sorted(en.ENERGIES) == sorted(
        ["order", "euclidean-cones", "euclidean-cones-cosine", "hyperbolic-cones", "poincare"]
    )
    u, v = torch.tensor([0.5, 0.0]), torch.tensor([0.5, 0.5])
    assert en.get_energy("hyperbolic-cones")(u, v, K=0.2) < en.get_energy("hyperbolic-cones")(u, v)
    assert en.get_energy("order")(u, v, squared=True) == 0
    with pytest.raises(ValueError, match="unknown energy 'cones'"):
        en.get_energy("cones")


@pytest.mark.parametrize(
    "fn",
    [en.euclidean_cone_energy, en.euclidean_cone_cosine_energy, en.hyperbolic_cone_energy],
)
def test_bad_input(fn):
    u = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="K must be a positive"):
        fn(u, u, K=0.0)
    with pytest.raises(ValueError, match="K must be a positive"):
        fn(u, u, K=float("nan"))
    with pytest.raises(ValueError, match="same last dimension"):
        fn(u, torch.zeros(4, 2))
    with pytest.raises(TypeError, match="share a dtype"):
        fn(u, u.double())
    with pytest.raises(TypeError, match="float32 or float64"):
        fn(u.long(), u.long())
    with pytest.raises(TypeError):
        fn(u, u, 0.1)  # K is keyword-only
