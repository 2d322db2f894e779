"""Embedding tables: one point per node on the model's space, scored by an energy.

Geometries
----------
* ``order`` — order embeddings in R^d, ``E(u, v) = ||max(0, u - v)||``.
* ``euclidean-cones`` / ``euclidean-cones-cosine`` — Euclidean entailment cones in
  R^d, points kept outside the inner ball ``||x|| >= K``.
* ``hyperbolic-cones`` — hyperbolic entailment cones on the Poincaré ball, points in
  the annulus ``eps_K <= ||x|| <= 1 - eps``. Parametrised either directly on the ball
  (a geoopt ``ManifoldParameter``, trained by Riemannian SGD/Adam) or, with
  ``parametrization="exp0"``, as Euclidean vectors ``w`` mapped by
  ``x = exp_0(w) = tanh(||w||) w / ||w||`` and trained with Adam (thesis 6.1.3).
* ``poincare`` — Poincaré embeddings (Nickel & Kiela 2017); trained with the
  distance softmax loss; scored for is-a by ``(1 + alpha (||u|| - ||v||)) d(u, v)``.

All scoring is one gather and one vectorised energy over any index shape.
"""

from __future__ import annotations

import math

import geoopt
import torch
from torch import nn

from ..geometry.energies import get_energy, poincare_distance
from ..geometry.functional import (
    euclidean_inner_radius,
    hyperbolic_inner_radius,
    project_out_of_inner_ball,
    project_to_ball,
)

GEOMETRIES = ("order", "euclidean-cones", "euclidean-cones-cosine", "hyperbolic-cones", "poincare")
BALL_GEOMETRIES = ("hyperbolic-cones", "poincare")

#: margin between the inner ball and the points kept outside it (as the reference code)
INNER_MARGIN = 1e-5


class EmbeddingModel(nn.Module):
    """``n`` points in ``dim`` dimensions plus the energy that scores ``(u, v)`` pairs.

    Parameters
    ----------
    n, dim: table size.
    geometry: one of :data:`GEOMETRIES`.
    K: cone aperture constant (cones); alpha: Nickel's is-a score weight (poincare).
    squared: squared order violation (order).
    parametrization: ``"ball"`` (ManifoldParameter) or ``"exp0"`` for ball geometries.
    """

    def __init__(
        self,
        n: int,
        dim: int,
        geometry: str = "hyperbolic-cones",
        *,
        K: float = 0.1,
        alpha: float = 1000.0,
        squared: bool = False,
        parametrization: str = "ball",
        boundary_eps: float = 1e-5,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if geometry not in GEOMETRIES:
            raise ValueError(f"unknown geometry {geometry!r}; choose one of {GEOMETRIES}")
        if n < 1 or dim < 1:
            raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
        if parametrization not in ("ball", "exp0"):
            raise ValueError(f"parametrization must be 'ball' or 'exp0', got {parametrization!r}")
        self.n, self.dim, self.geometry = int(n), int(dim), geometry
        self.K, self.alpha, self.squared = float(K), float(alpha), bool(squared)
        self.boundary_eps = float(boundary_eps)
        self.parametrization = parametrization if geometry in BALL_GEOMETRIES else "euclidean"
        data = torch.zeros(n, dim, dtype=dtype)
        if self.parametrization == "ball":
            self.weight = geoopt.ManifoldParameter(data, manifold=geoopt.PoincareBall())
        else:
            self.weight = nn.Parameter(data)
        self._energy = get_energy(geometry)

    # ----------------------------------------------------------- constraints
    @property
    def is_hyperbolic(self) -> bool:
        return self.geometry in BALL_GEOMETRIES

    @property
    def inner_radius(self) -> float:
        """Radius of the ball the points are kept out of (0 when unconstrained)."""
        if self.geometry == "hyperbolic-cones":
            return hyperbolic_inner_radius(self.K) + INNER_MARGIN
        if self.geometry.startswith("euclidean-cones"):
            return euclidean_inner_radius(self.K) + INNER_MARGIN
        return 0.0

    @torch.no_grad()
    def project_(self, rows: torch.Tensor | None = None) -> "EmbeddingModel":
        """Put every point (or only ``rows``) back into its domain (in place)."""
        if rows is not None:
            sub = self.weight[rows]
            self.weight.index_copy_(0, rows, self._projected(sub))
            return self
        self.weight.copy_(self._projected(self.weight))
        return self

    def _projected(self, w: torch.Tensor) -> torch.Tensor:
        if self.parametrization == "exp0":
            lo = math.atanh(min(self.inner_radius, 1 - 1e-3)) if self.inner_radius else 0.0
            hi = math.atanh(1 - self.boundary_eps)
            if lo > 0:
                w = project_out_of_inner_ball(w, radius=lo)
            norm = w.norm(dim=-1, keepdim=True).clamp_min(1e-15)
            return torch.where(norm > hi, w / norm * hi, w)
        if self.inner_radius > 0:
            w = project_out_of_inner_ball(w, radius=self.inner_radius)
        if self.parametrization == "ball":
            w = project_to_ball(w, eps=self.boundary_eps)
        return w

    @torch.no_grad()
    def init_random_(self, generator: torch.Generator | None = None, scale: float = 1e-3) -> "EmbeddingModel":
        """Uniform in ``[-scale, scale]^d``, then projected into the domain.

        For cones, points are then given norms uniform in ``[r_in, r_in + 0.5 (1 - r_in)]``
        (random directions out of the inner ball, as the reference implementation).
        """
        w = torch.empty_like(self.weight).uniform_(-scale, scale, generator=generator)
        if self.inner_radius > 0:
            direction = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            r_in = self.inner_radius
            top = r_in + 0.5 * (1 - r_in) if self.is_hyperbolic else r_in + 0.5
            r = torch.empty(self.n, 1, dtype=w.dtype).uniform_(r_in, top, generator=generator)
            w = direction * r
            if self.parametrization == "exp0":
                w = direction * torch.atanh(r.clamp_max(1 - 1e-3))
        self.weight.data.copy_(w)
        return self.project_()

    @torch.no_grad()
    def set_points_(self, points: torch.Tensor) -> "EmbeddingModel":
        """Set the embedding from points in the model's space (ball points for ball geometries)."""
        points = torch.as_tensor(points, dtype=self.weight.dtype, device=self.weight.device)
        if points.shape != self.weight.shape:
            raise ValueError(f"points must have shape {tuple(self.weight.shape)}, got {tuple(points.shape)}")
        if not torch.isfinite(points).all():
            raise ValueError("points contain NaN or inf")
        if self.parametrization == "exp0":
            norm = points.norm(dim=-1, keepdim=True).clamp(1e-15, 1 - self.boundary_eps)
            points = points / points.norm(dim=-1, keepdim=True).clamp_min(1e-15) * torch.atanh(norm)
        self.weight.data.copy_(points)
        return self.project_()

    # ------------------------------------------------------------- scoring
    def points(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The embedded points (in the ball for ball geometries), all or ``idx`` rows."""
        return self.map_rows(self.weight if idx is None else self.weight[idx])

    def map_rows(self, w: torch.Tensor) -> torch.Tensor:
        """Parameters -> points: ``exp_0`` for the exp0 parametrization, else the identity."""
        if self.parametrization == "exp0":
            norm = w.norm(dim=-1, keepdim=True).clamp_min(1e-15)
            return torch.tanh(norm) * w / norm
        return w

    def energy_of_rows(self, rows_weight: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """Training energy when the batch's distinct rows were gathered once.

        ``rows_weight`` (U, d) parameters of the distinct nodes, ``inverse`` (..., 2)
        positions into them (``torch.unique(pairs, return_inverse=True)``) -> (...).
        """
        pts = self.map_rows(rows_weight)[inverse]
        return self.pair_energy(pts[..., 0, :], pts[..., 1, :])

    def pair_energy(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Energy of points ``u`` (general) and ``v`` (specific): ``(..., d) -> (...)``."""
        if self.geometry == "order":
            return self._energy(u, v, squared=self.squared)
        if self.geometry == "poincare":
            return poincare_distance(u, v)
        return self._energy(u, v, K=self.K)

    def _pair_points(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The points of index pairs ``(..., 2)``, flattened: ``u, v`` of shape ``(P, d)``."""
        pts = self.points(pairs.reshape(-1)).reshape(-1, 2, self.dim)
        return pts[:, 0], pts[:, 1]

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Training energy of index pairs ``(..., 2)`` -> ``(...)`` (Poincaré: the distance)."""
        return self.pair_energy(*self._pair_points(pairs)).reshape(pairs.shape[:-1])

    def is_a_energy(self, pairs: torch.Tensor) -> torch.Tensor:
        """Score for link prediction: lower means "v is-a u" more likely; ``(..., 2) -> (...)``.

        The energy itself for order embeddings and cones; for Poincaré embeddings
        Nickel & Kiela's is-a score ``(1 + alpha (||u|| - ||v||)) d(u, v)``.
        """
        u, v = self._pair_points(pairs)
        e = self.pair_energy(u, v)
        if self.geometry == "poincare":
            e = (1 + self.alpha * (u.norm(dim=-1) - v.norm(dim=-1))) * e
        return e.reshape(pairs.shape[:-1])

    def distance(self, pairs: torch.Tensor) -> torch.Tensor:
        """Distance between the two points of index pairs ``(..., 2) -> (...)``.

        Poincaré distance on the ball geometries, Euclidean distance otherwise.
        """
        u, v = self._pair_points(pairs)
        d = poincare_distance(u, v) if self.geometry in BALL_GEOMETRIES else (u - v).norm(dim=-1)
        return d.reshape(pairs.shape[:-1])

    def extra_repr(self) -> str:
        return f"n={self.n}, dim={self.dim}, geometry={self.geometry!r}, K={self.K}, parametrization={self.parametrization!r}"
