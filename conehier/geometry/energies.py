r"""Is-a energies: order embeddings, Euclidean and hyperbolic entailment cones.

Convention: ``E(u, v) >= 0`` measures how far "v is-a u" is from holding, with
``u`` the MORE GENERAL node and ``v`` the more specific one; ``E = 0`` means it
holds. ``u`` and ``v`` have shape ``(..., d)`` (leading shapes broadcast), the
result has the broadcast leading shape ``(...)``. float32 and float64.

Formulas (Dhall's thesis eqs. 2.2-2.11; Vendrov et al. 2016; Ganea et al. 2018):

* order:            ``E = || max(0, u - v) ||``                         (2.2)
* Euclidean cones:  ``psi(x) = arcsin(K / ||x||)``                       (2.4)
                    ``Xi(x, y) = arccos((||y||^2 - ||x||^2 - ||x-y||^2)
                    / (2 ||x|| ||x-y||))`` = angle between ``x`` and ``y - x`` (2.5)
                    ``E = max(0, Xi(u, v) - psi(u))``                    (2.6)
* cosine space:     ``E = max(0, cos psi(u) - cos Xi(u, v))`` with
                    ``cos psi = sqrt(1 - K^2/||u||^2)``, ``cos Xi = <u, v-u> / (||u|| ||v-u||)``
                    -- the form the thesis reports as more stable (sec. 6.1.2),
                    as in its code (``-<u^, (v-u)^> + sqrt(1 - K^2/||u||^2)``).
* hyperbolic cones (Poincaré ball, curvature -1):
                    ``psi(x) = arcsin(K (1 - ||x||^2) / ||x||)``          (2.9)
                    ``Xi(x, y) = arccos((<x,y>(1+||x||^2) - ||x||^2(1+||y||^2))
                    / (||x|| ||x-y|| sqrt(1 + ||x||^2||y||^2 - 2<x,y>)))``  (2.10)
                    ``E = max(0, Xi(u, v) - psi(u))``                    (2.11)
* Poincaré distance: ``d = arcosh(1 + 2||u-v||^2 / ((1-||u||^2)(1-||v||^2)))`` (2.7)

Numerically stable forms used here (algebraically identical)
------------------------------------------------------------
With ``a = ||x||^2``, ``r = ||x||``, ``delta = y - x``, ``q = <x, delta>``,
``c = ||delta||^2`` and ``p = ||delta - (q/a) x||`` (the part of ``delta``
orthogonal to ``x``, computed as a vector so no cancellation occurs):

* numerator of (2.10) ``= (1 - a) q - a c``; the radicand
  ``1 + ||x||^2||y||^2 - 2<x,y> = (1-a)(1-||y||^2) + c`` (a sum of non-negative
  terms) and ``den^2 - num^2 = (1-a)^2 (a c - q^2) = (1-a)^2 a p^2``, hence
  ``Xi_hyp = atan2((1 - a) r p, (1 - a) q - a c)``;
* the Euclidean angle is the limit ``Xi_euc = atan2(r p, q)``;
* ``d = 2 asinh(||u - v|| / sqrt((1-||u||^2)(1-||v||^2)))`` (from ``cosh d = 1 + 2 sinh^2(d/2)``).

The atan2 forms stay accurate for nearly parallel vectors, where
``arccos(1 - ~1e-7)`` would add a ~5e-4 rad error in float32 (larger than the
aperture near the ball's boundary). Conventions at degenerate points:

* coincident points ``u == v``: ``Xi = 0``, so ``E = 0`` for every cone energy
  (the apex belongs to its cone; the is-a order is reflexive), with gradient 0.
  Ganea et al.'s code clamps ``||u - v||`` instead, which gives ``Xi ~ pi/2``.
* ``v - u`` parallel to ``u`` up to rounding (``||(v-u)_perp|| <= 16 ulp * ||v-u||``):
  ``Xi`` is exactly 0 (ahead) or pi (behind), with the zero subgradient across the axis.
* inside the inner ball (``||x|| <= K`` Euclidean, ``<= eps_K`` hyperbolic), and at
  ``x = 0``, the aperture is ``pi/2`` (``cos psi = 0``): its argument is clamped
  with :func:`~conehier.geometry.functional.arcsin_clamped`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from .functional import (
    arcsin_clamped,
    check_float,
    dot,
    eps_for,
    hyperbolic_inner_radius,
    min_norm_for,
    safe_atan2,
    safe_norm,
    sqrt_clamped,
    tiny_for,
)

__all__ = [
    "DEFAULT_K",
    "order_energy",
    "euclidean_cone_aperture",
    "euclidean_cone_angle",
    "euclidean_cone_energy",
    "euclidean_cone_cosine_energy",
    "hyperbolic_cone_aperture",
    "hyperbolic_cone_angle",
    "hyperbolic_cone_energy",
    "hyperbolic_inner_radius",
    "poincare_distance",
    "get_energy",
    "ENERGIES",
]

#: Default cone aperture constant K (Ganea et al. 2018 use K = 0.1 for both cone types).
DEFAULT_K = 0.1


def _check_K(K: float) -> float:
    if isinstance(K, torch.Tensor):
        if K.numel() != 1:
            raise ValueError("K must be a positive scalar")
        K = float(K)
    if not (isinstance(K, (int, float)) and math.isfinite(K) and K > 0):
        raise ValueError(f"K must be a positive finite number, got {K!r}")
    return float(K)


# ---------------------------------------------------------------------------
# order embeddings
# ---------------------------------------------------------------------------


def order_energy(u: torch.Tensor, v: torch.Tensor, *, squared: bool = False) -> torch.Tensor:
    """Order-violation energy (Vendrov et al. 2016; thesis eq. 2.2).

    ``E(u, v) = ||max(0, u - v)||`` (or its square with ``squared=True``); 0 iff
    ``v >= u`` coordinate-wise (reversed product order: general nodes have smaller
    coordinates). ``(..., d), (..., d) -> (...)``; gradient finite everywhere.
    """
    check_float(u, v, names=("u", "v"))
    viol = torch.relu(u - v)
    if squared:
        return dot(viol, viol)
    return safe_norm(viol)


# ---------------------------------------------------------------------------
# cone building blocks (plain autograd; also the reference for the fused kernel)
# ---------------------------------------------------------------------------


def _perp_noise_tol2(dtype: torch.dtype) -> float:
    """Squared relative size below which ``||(y-x)_perp|| / ||y-x||`` is rounding
    noise (16 ulp): such points are treated as lying exactly on the axis line, so the
    angle is exactly 0 or pi and its gradient is the zero subgradient instead of a
    unit vector in a random direction."""
    return (16 * torch.finfo(dtype).eps) ** 2


def _cone_terms(x: torch.Tensor, y: torch.Tensor):
    """``a = ||x||^2, r = ||x||, q = <x, y-x>, c = ||y-x||^2, p = ||(y-x)_perp||``."""
    delta = y - x
    a = dot(x, x)
    q = dot(x, delta)
    c = dot(delta, delta)
    r = safe_norm(x)
    coef = q / a.clamp_min(min_norm_for(x.dtype) ** 2)
    dperp = delta - coef.unsqueeze(-1) * x
    on_axis = dot(dperp, dperp) <= _perp_noise_tol2(x.dtype) * c
    p = safe_norm(torch.where(on_axis.unsqueeze(-1), 0.0, dperp))
    return a, r, q, c, p


def euclidean_cone_aperture(x: torch.Tensor, *, K: float = DEFAULT_K) -> torch.Tensor:
    """Half-aperture of the Euclidean cone at ``x``: ``psi(x) = arcsin(K / ||x||)``
    (thesis eq. 2.4); ``pi/2`` inside the inner ball ``||x|| <= K``. ``(..., d) -> (...)``."""
    K = _check_K(K)
    r = safe_norm(x).clamp_min(min_norm_for(x.dtype))
    return arcsin_clamped(K / r)


def euclidean_cone_angle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Angle ``Xi(x, y)`` in ``[0, pi]`` between the cone axis ``x`` and ``y - x``
    (thesis eq. 2.5), computed as ``atan2(||x|| ||(y-x)_perp||, <x, y-x>)``.
    0 for ``y == x`` or ``x == 0``. ``(..., d), (..., d) -> (...)``."""
    check_float(x, y, names=("x", "y"))
    a, r, q, c, p = _cone_terms(x, y)
    return safe_atan2(r * p, q)


def hyperbolic_cone_aperture(x: torch.Tensor, *, K: float = DEFAULT_K) -> torch.Tensor:
    """Half-aperture of the hyperbolic cone at ``x`` in the Poincaré ball:
    ``psi(x) = arcsin(K (1 - ||x||^2) / ||x||)`` (thesis eq. 2.9); ``pi/2`` inside
    the inner ball ``||x|| <= eps_K`` (:func:`hyperbolic_inner_radius`).
    Non-increasing in ``||x||``. ``(..., d) -> (...)``."""
    K = _check_K(K)
    a = dot(x, x)
    r = safe_norm(x).clamp_min(min_norm_for(x.dtype))
    return arcsin_clamped(K * (1 - a) / r)


def hyperbolic_cone_angle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Angle ``Xi(x, y)`` in ``[0, pi]`` at ``x`` between the cone axis (the
    direction of ``x``) and the geodesic from ``x`` to ``y`` (thesis eq. 2.10),
    computed as ``atan2((1-a) r p, (1-a) q - a c)`` (see module docstring).
    0 for ``y == x`` or ``x == 0``. ``(..., d), (..., d) -> (...)``."""
    check_float(x, y, names=("x", "y"))
    a, r, q, c, p = _cone_terms(x, y)
    one_minus_a = 1 - a
    return safe_atan2(one_minus_a * r * p, one_minus_a * q - a * c)


# ---------------------------------------------------------------------------
# fused cone energy: forward + analytic backward in one autograd.Function
# ---------------------------------------------------------------------------


class _ConeEnergy(torch.autograd.Function):
    r"""Fused ``E = max(0, Xi(x, y) - psi(x))`` for Euclidean (``hyperbolic=False``)
    or hyperbolic cones, with an analytic backward.

    The forward needs three inner products (``a = <x,x>``, ``q = <x,delta>``,
    ``c = <delta,delta>``) and the orthogonal part ``dperp = delta - (q/a) x``
    (``p = ||dperp||``); then, per row,

    * hyperbolic: ``Y = (1-a) r p``, ``X = (1-a) q - a c``, ``s = K (1-a) / r``;
    * Euclidean:  ``Y = r p``,       ``X = q``,             ``s = K / r``;
    * ``Xi = atan2(Y, X)``, ``psi = arcsin(clamp(s, -1, 1))``, ``E = relu(Xi - psi)``.

    The gradient is ``grad_y = F_q x + 2 F_c delta + (F_p/p) dperp`` and
    ``grad_x = (2 dE/da - F_q) x + (F_q - 2 F_c) delta - (F_p/p)(1 + q/a) dperp``
    (evaluated in the orthogonal basis ``{x, dperp}``), where
    ``F_*`` are the partial derivatives of ``E`` in ``q, c, p`` and ``dE/da`` is the
    total derivative in ``a`` (``r = sqrt(a)``, ``dp/dx = -(q/a) dperp/p`` since
    ``dperp`` is orthogonal to ``x``). Conventions match the autograd reference
    (``Xi = 0`` at coincident points; ``dpsi/ds = 0`` where ``|s| >= 1 - eps``).
    ``p`` below 16 ulp of ``||delta||`` is set to 0 (as in the reference).
    Products are ordered so that masked (zero) factors come first, which keeps
    every intermediate finite near ``x = 0``. First-order only: double backward raises
    (use ``fused=False`` for higher derivatives).
    """

    @staticmethod
    def forward(ctx, x, y, K: float, hyperbolic: bool):
        mn = min_norm_for(x.dtype)
        tiny = tiny_for(x.dtype)
        delta = y - x
        a = dot(x, x)
        q = dot(x, delta)
        c = dot(delta, delta)
        r = a.sqrt()
        r_s = r.clamp_min(mn)
        q_over_a = q / a.clamp_min(mn * mn)
        dperp = torch.addcmul(delta, q_over_a.unsqueeze(-1), x, value=-1.0)
        p2 = dot(dperp, dperp)
        p = torch.where(p2 <= _perp_noise_tol2(x.dtype) * c, 0.0, p2).sqrt_()
        if hyperbolic:
            ab = 1 - a
            w = ab * r  # (1 - a) r
            Y = w * p
            X = torch.addcmul(ab * q, a, c, value=-1.0)
            s = (K * ab).div_(r_s)
        else:
            Y = r * p
            X = q
            s = K / r_s
        # + tiny: X = -0 with Y = 0 (coincident points) must give Xi = 0, not pi
        xi = torch.atan2(Y, X + tiny)
        E = torch.relu_(xi.sub_(torch.asin(s.clamp(-1.0, 1.0))))
        ctx.hyperbolic, ctx.K = hyperbolic, K
        ctx.x_shape, ctx.y_shape = x.shape, y.shape
        ctx.save_for_backward(x, dperp, a, q, c, r, r_s, q_over_a, p, X, Y, s, E)
        return E

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, dperp, a, q, c, r, r_s, q_over_a, p, X, Y, s, E = ctx.saved_tensors
        hyperbolic, K = ctx.hyperbolic, ctx.K
        mn = min_norm_for(x.dtype)
        tiny = tiny_for(x.dtype)
        eps = eps_for(x.dtype)
        m = torch.where(E > 0, grad, 0.0)
        # atan2: dXi = (X dY - Y dX) / (X^2 + Y^2)
        mi = m / torch.addcmul(X * X, Y, Y).clamp_min_(tiny)
        gY = mi * X  # dE/dY
        gXn = mi * Y  # -dE/dX
        # psi = arcsin(s): dpsi/ds = 1/sqrt(1 - s^2) where |s| < 1 - eps, else 0
        t = 1 - s * s
        thr = 1 - (1 - eps) ** 2
        mdpsi = torch.where(t > thr, m * torch.rsqrt(t.clamp_min(thr)), 0.0)  # = -dE/ds
        if hyperbolic:
            ab = 1 - a
            F_q = -gXn * ab
            F_c = gXn * a
            F_p = gY * (ab * r)
            # total d/da with r = sqrt(a): dY/da = p (1 - 3a) / (2r), dX/da = -(q + c),
            # ds/da = -(K / r) (1 + a) / (2a)
            two_dE_da = (
                gY * p * (1 - 3 * a) / r_s
                + 2 * gXn * (q + c)
                + mdpsi * (K / r_s) * (1 + a) / a.clamp_min(mn * mn)
            )
        else:
            F_q = -gXn
            F_c = None
            F_p = gY * r
            # dY/da = p / (2r), ds/da = -(K / r) / (2a)
            two_dE_da = gY * p / r_s + mdpsi * (K / r_s) / a.clamp_min(mn * mn)
        gp = torch.where(p > mn, F_p / p.clamp_min(mn), 0.0)  # F_p / p
        # Rewrite delta = dperp + (q/a) x: gradients in the orthogonal basis {x, dperp},
        # which needs two passes over (..., d) per gradient and has no cancellation.
        two_F_c_q_over_a = 0.0 if F_c is None else 2 * F_c * q_over_a
        two_F_c = 0.0 if F_c is None else 2 * F_c
        needs_x, needs_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_y = None
        if needs_y:
            # grad_y = F_q x + 2 F_c delta + gp dperp
            grad_y = (F_q + two_F_c_q_over_a).unsqueeze(-1) * x
            grad_y.addcmul_((gp + two_F_c).unsqueeze(-1), dperp)
            if grad_y.shape != ctx.y_shape:
                grad_y = grad_y.sum_to_size(ctx.y_shape)
        if needs_x:
            # grad_x = (2 dE/da - F_q) x + (F_q - 2 F_c) delta - gp (1 + q/a) dperp
            grad_x = (two_dE_da - F_q + (F_q - two_F_c) * q_over_a).unsqueeze(-1) * x
            grad_x.addcmul_((F_q - two_F_c - gp * (1 + q_over_a)).unsqueeze(-1), dperp)
            if grad_x.shape != ctx.x_shape:
                grad_x = grad_x.sum_to_size(ctx.x_shape)
        return grad_x, grad_y, None, None


def _cone_energy_reference(u, v, K, hyperbolic):
    if hyperbolic:
        return torch.relu(hyperbolic_cone_angle(u, v) - hyperbolic_cone_aperture(u, K=K))
    return torch.relu(euclidean_cone_angle(u, v) - euclidean_cone_aperture(u, K=K))


def euclidean_cone_energy(
    u: torch.Tensor, v: torch.Tensor, *, K: float = DEFAULT_K, fused: bool = True
) -> torch.Tensor:
    """Euclidean entailment-cone energy (Ganea et al. 2018; thesis eq. 2.6).

    ``E(u, v) = max(0, Xi(u, v) - psi(u))``, ``psi(u) = arcsin(K / ||u||)``, ``Xi``
    the angle between ``u`` and ``v - u``. ``K`` defaults to 0.1 (Ganea et al.).
    ``fused=True`` uses an analytic backward (same values and gradients as
    ``fused=False``, the plain autograd composition, but several times faster).
    ``(..., d), (..., d) -> (...)``.
    """
    check_float(u, v, names=("u", "v"))
    K = _check_K(K)
    if fused:
        return _ConeEnergy.apply(u, v, K, False)
    return _cone_energy_reference(u, v, K, False)


def euclidean_cone_cosine_energy(
    u: torch.Tensor, v: torch.Tensor, *, K: float = DEFAULT_K
) -> torch.Tensor:
    """Euclidean cone energy in cosine space (thesis sec. 6.1.2 and its code).

    ``E(u, v) = max(0, cos psi(u) - cos Xi(u, v))`` with
    ``cos psi(u) = sqrt(max(0, 1 - K^2 / ||u||^2))`` (0 inside ``||u|| <= K``) and
    ``cos Xi = <u, v - u> / (||u|| ||v - u||)`` (1 for ``v == u``). Zero exactly
    where the angle form is zero; lies in ``[0, 2]``. ``(..., d), (..., d) -> (...)``.
    """
    check_float(u, v, names=("u", "v"))
    K = _check_K(K)
    mn = min_norm_for(u.dtype)
    delta = v - u
    a = dot(u, u)
    c = dot(delta, delta)
    q = dot(u, delta)
    coincident = c < tiny_for(u.dtype)
    den = safe_norm(u).clamp_min(mn) * safe_norm(delta).clamp_min(mn)  # ||u|| ||v - u||
    cos_xi = torch.where(coincident, 1.0, (q / den).clamp(-1.0, 1.0))
    cos_psi = sqrt_clamped(1 - K * K / a.clamp_min(mn * mn))
    return torch.relu(cos_psi - cos_xi)


def hyperbolic_cone_energy(
    u: torch.Tensor, v: torch.Tensor, *, K: float = DEFAULT_K, fused: bool = True
) -> torch.Tensor:
    """Hyperbolic entailment-cone energy on the Poincaré ball, curvature -1
    (Ganea et al. 2018; thesis eq. 2.11).

    ``E(u, v) = max(0, Xi(u, v) - psi(u))`` with ``psi(u) = arcsin(K (1-||u||^2)/||u||)``
    and ``Xi`` the angle at ``u`` between its axis and the geodesic to ``v``.
    ``K`` defaults to 0.1 (as in the paper); ``u`` should lie in the ball outside the
    inner ball of radius :func:`hyperbolic_inner_radius` ``(K)`` (inside it
    ``psi = pi/2``). ``fused=True`` (default) uses an analytic backward; ``fused=False``
    is the plain autograd reference. ``(..., d), (..., d) -> (...)``.
    """
    check_float(u, v, names=("u", "v"))
    K = _check_K(K)
    if fused:
        return _ConeEnergy.apply(u, v, K, True)
    return _cone_energy_reference(u, v, K, True)


# ---------------------------------------------------------------------------
# Poincaré distance
# ---------------------------------------------------------------------------


def poincare_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Geodesic distance on the Poincaré ball, curvature -1 (thesis eq. 2.7;
    Nickel & Kiela 2017), computed as
    ``2 asinh(||u - v|| / sqrt((1 - ||u||^2)(1 - ||v||^2)))``.
    Equal to ``geoopt.PoincareBall().dist``; symmetric; 0 with zero gradient at
    ``u == v``. Points must lie inside the ball (see ``project_to_ball``).
    ``(..., d), (..., d) -> (...)``."""
    check_float(u, v, names=("u", "v"))
    tiny = tiny_for(u.dtype)
    denom = ((1 - dot(u, u)) * (1 - dot(v, v))).clamp_min(tiny)
    return 2 * torch.asinh(safe_norm(u - v) * torch.rsqrt(denom))


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------

#: name -> energy function ``f(u, v, **kwargs) -> (...)``.
ENERGIES: dict[str, Callable[..., torch.Tensor]] = {
    "order": order_energy,
    "euclidean-cones": euclidean_cone_energy,
    "euclidean-cones-cosine": euclidean_cone_cosine_energy,
    "hyperbolic-cones": hyperbolic_cone_energy,
    "poincare": poincare_distance,
}


def get_energy(name: str) -> Callable[..., torch.Tensor]:
    """Energy function by name: ``"order"`` (``squared=False``), ``"euclidean-cones"``
    (``K=0.1``), ``"euclidean-cones-cosine"`` (``K=0.1``), ``"hyperbolic-cones"``
    (``K=0.1``), ``"poincare"`` (the distance, used as an energy-like score)."""
    try:
        return ENERGIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown energy {name!r}; choose one of {sorted(ENERGIES)}"
        ) from None
