"""Joint image-label embeddings (Dhall's thesis, sections 5.6 and 6.2).

Labels are a lookup table (an :class:`~conehier.models.embedding.EmbeddingModel`);
an image with feature vector ``x`` (``(F,)``, e.g. CNN fc7 features or the ARFF
features of an HMC data set) is embedded by a learned linear map

* Euclidean geometries (``order``, ``euclidean-cones``, ``euclidean-cones-cosine``):
  ``f_i(x) = W x (+ b)`` in ``R^d`` (thesis eq. 5.2);
* ``hyperbolic-cones``: ``f_i(x) = exp_0(W x (+ b)) = tanh(||z||) z / ||z||`` in the
  Poincaré ball ``D^d`` (curvature -1), radially clipped to ``||.|| <= 1 - eps``.

With ``dropout > 0`` the features are dropped out first (training only). With
``hidden > 0`` the map is a one-hidden-layer MLP, ``z = W_2 dropout(relu(W_1 x + b_1)) + b_2``, for raw features that are not
linearly separable (an extension: the thesis's map is linear because its fc7
features already come from a CNN trained on the data; its 4-layer variant, sec.
6.2.3, over-fitted on those features).

Labels and images live in one space and are scored by the label table's energy
``E(u, v)`` ("v is-a u", ``u`` the label): order violation, Euclidean cone or
hyperbolic cone energy (:mod:`conehier.geometry.energies`).

Node ids of the joint graph: labels ``0 .. C-1`` (the hierarchy's ids), image ``j``
of the training matrix ``X`` is node ``C + j``. Images are leaves: in every pair the
first (general) end is a label.

Classification (thesis eq. 5.1): the energies of every (label, image) pair,
``(N, C)``, are one broadcast energy call per chunk of images
(:meth:`JointEmbeddingModel.energy_matrix`); per level the predicted label is the
one with the smallest energy, and ``-E`` serves as the score for AU(PRC) / hit@k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..geometry.functional import project_to_ball
from .embedding import EmbeddingModel

__all__ = ["JOINT_GEOMETRIES", "JointEmbeddingModel"]

#: Geometries a joint model supports (Poincaré embeddings have no is-a energy for classification).
JOINT_GEOMETRIES = ("order", "euclidean-cones", "euclidean-cones-cosine", "hyperbolic-cones")


class JointEmbeddingModel(nn.Module):
    """A label table plus a linear image map into the same space.

    Parameters
    ----------
    n_labels, n_features, dim:
        ``C`` label nodes, ``F`` input features per image, embedding dimension ``d``.
    geometry:
        one of :data:`JOINT_GEOMETRIES`.
    K, squared:
        cone aperture constant; squared order violation (order embeddings).
    bias:
        ``W x + b`` instead of the thesis's ``W x``.
    hidden, dropout:
        width of an optional hidden layer of the image map (0: linear) and its dropout
        (on the input features when ``hidden == 0``).
    parametrization:
        hyperbolic labels as ``"exp0"`` Euclidean vectors (trained with Adam, the
        thesis's choice, sec. 6.2.5) or ``"ball"`` ManifoldParameters (Riemannian
        optimisers).
    """

    def __init__(
        self,
        n_labels: int,
        n_features: int,
        dim: int,
        geometry: str = "hyperbolic-cones",
        *,
        K: float = 0.1,
        squared: bool = False,
        bias: bool = True,
        hidden: int = 0,
        dropout: float = 0.0,
        parametrization: str = "exp0",
        boundary_eps: float = 1e-5,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if geometry not in JOINT_GEOMETRIES:
            raise ValueError(f"unknown joint geometry {geometry!r}; choose one of {JOINT_GEOMETRIES}")
        if n_features < 1:
            raise ValueError(f"need n_features >= 1, got {n_features}")
        if hidden < 0 or not 0 <= dropout < 1:
            raise ValueError(f"need hidden >= 0 and dropout in [0, 1), got hidden={hidden}, dropout={dropout}")
        self.labels = EmbeddingModel(n_labels, dim, geometry, K=K, squared=squared, parametrization=parametrization,
                                     boundary_eps=boundary_eps, dtype=dtype)
        if hidden:
            self.W = nn.Sequential(nn.Linear(n_features, hidden, dtype=dtype), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, dim, bias=bias, dtype=dtype))
        elif dropout:  # input dropout in front of the linear map
            self.W = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, dim, bias=bias, dtype=dtype))
        else:
            self.W = nn.Linear(n_features, dim, bias=bias, dtype=dtype)
        self.hidden, self.dropout = int(hidden), float(dropout)
        self.n_labels, self.n_features, self.dim = int(n_labels), int(n_features), int(dim)
        self.geometry = geometry
        self.boundary_eps = float(boundary_eps)

    # ---------------------------------------------------------------- set up
    @property
    def is_hyperbolic(self) -> bool:
        return self.geometry == "hyperbolic-cones"

    @property
    def _out(self) -> nn.Linear:
        return self.W[-1] if isinstance(self.W, nn.Sequential) else self.W

    @property
    def dtype(self) -> torch.dtype:
        return self._out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self._out.weight.device

    @torch.no_grad()
    def reset_parameters_(self, generator: torch.Generator | None = None, *, label_scale: float = 1e-3,
                          image_scale: float = 1.0) -> "JointEmbeddingModel":
        """Random labels (:meth:`EmbeddingModel.init_random_` with ``label_scale``) and
        ``W_ij ~ N(0, image_scale^2 / (F d))``, ``b = 0``: for standardised features the
        pre-map image vectors ``W x`` then have norms of about ``image_scale``. With a
        hidden layer of width ``H``: ``W_1 ~ N(0, 2 / F)`` (He), ``W_2 ~ N(0, image_scale^2 / (H d))``."""
        self.labels.init_random_(generator, scale=label_scale)
        layers = [m for m in self.W.modules() if isinstance(m, nn.Linear)]
        for i, lin in enumerate(layers):
            last = i == len(layers) - 1
            fan_in = lin.weight.shape[1]
            std = image_scale / math.sqrt(fan_in * self.dim) if last else math.sqrt(2.0 / fan_in)
            w = torch.randn(lin.weight.shape, generator=generator, dtype=self.dtype) * std
            lin.weight.copy_(w.to(self.device))
            if lin.bias is not None:
                lin.bias.zero_()
        return self

    @torch.no_grad()
    def init_labels_(self, points, names: list[str] | None = None, label_names: list[str] | None = None
                     ) -> "JointEmbeddingModel":
        """Set the label table from points of a label-only run (``(C', d)`` in the model's space).

        With ``names`` (the run's node names) and ``label_names`` (this model's), rows are
        matched by name: every label of this model must appear in ``names``.
        """
        pts = torch.as_tensor(np.asarray(points), dtype=self.dtype)
        if pts.ndim != 2 or pts.shape[1] != self.dim:
            raise ValueError(f"label points must have shape (n, {self.dim}), got {tuple(pts.shape)}")
        if names is not None:
            if label_names is None or len(label_names) != self.n_labels:
                raise ValueError("give this model's label_names (one per label) to match points by name")
            pos = {nm: i for i, nm in enumerate(names)}
            missing = [nm for nm in label_names if nm not in pos]
            if missing:
                raise ValueError(f"the label-only run lacks {len(missing)} label(s) of this model, e.g. {missing[:3]}")
            pts = pts[torch.as_tensor([pos[nm] for nm in label_names], dtype=torch.long)]
        self.labels.set_points_(pts.to(self.device))
        return self

    def project_(self) -> "JointEmbeddingModel":
        """Put the labels back into their domain (outside the inner ball / inside the ball)."""
        self.labels.project_()
        return self

    # ---------------------------------------------------------------- points
    def label_points(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(C, d)`` (or ``idx``-shaped) label points in the model's space."""
        return self.labels.points(idx)

    def image_points(self, X: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` features -> ``(N, d)`` image points: ``W x + b`` (Euclidean) or
        ``exp_0(W x + b)`` clipped to ``||.|| <= 1 - eps`` (hyperbolic)."""
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"features must have shape (N, {self.n_features}), got {tuple(X.shape)}")
        z = self.W(X.to(dtype=self.dtype))
        if not self.is_hyperbolic:
            return z
        norm = z.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        return project_to_ball(torch.tanh(norm) * z / norm, eps=self.boundary_eps)

    def pair_energy(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Energy of label points ``u`` over points ``v``: ``(..., d), (..., d) -> (...)`` (broadcasts)."""
        return self.labels.pair_energy(u, v)

    # ---------------------------------------------------------------- scoring
    def forward(self, pairs: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Training energies of joint-graph pairs ``(..., 2)`` -> ``(...)``.

        ``pairs[..., 0]`` are label ids (``< C``); ``pairs[..., 1]`` are label ids or
        image nodes ``C + j`` whose features are row ``j`` of ``X`` ``(N, F)``. Each
        distinct image of the batch is mapped once.
        """
        C = self.n_labels
        flat = pairs.reshape(-1, 2)
        u, v = flat[:, 0], flat[:, 1]
        is_img = v >= C
        rows, inv = torch.unique(v[is_img] - C, return_inverse=True)
        table = torch.cat([self.label_points(), self.image_points(X.index_select(0, rows))])
        vid = v.masked_scatter(is_img, C + inv)
        e = self.pair_energy(table[u], table[vid])
        return e.reshape(pairs.shape[:-1])

    @torch.no_grad()
    def energy_matrix(self, X, *, chunk_elements: int = 1 << 22, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, C)`` energies ``E(label c, image n)`` of feature rows ``X`` ``(N, F)``,
        in chunks of about ``chunk_elements / (C d)`` images (one broadcast energy call each),
        in eval mode (no dropout).

        ``labels``: optional ``(C',)`` label ids to score instead of all ``C``.
        """
        X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"features must have shape (N, {self.n_features}), got {tuple(X.shape)}")
        lab = self.label_points() if labels is None else self.label_points(labels)
        n_lab = lab.shape[0]
        step = max(1, chunk_elements // max(1, n_lab * self.dim))
        out = []
        was_training = self.training
        self.eval()  # no dropout when scoring
        try:
            for s in range(0, X.shape[0], step):
                img = self.image_points(X[s:s + step].to(self.device))
                out.append(self.pair_energy(lab.unsqueeze(0), img.unsqueeze(1)))  # (n, C)
        finally:
            self.train(was_training)
        if not out:
            return torch.zeros(0, n_lab, dtype=self.dtype, device=self.device)
        return torch.cat(out)

    def label_energy(self, pairs: torch.Tensor) -> torch.Tensor:
        """Energies of label-label pairs ``(..., 2)`` (for graph reconstruction of the label part)."""
        return self.labels.is_a_energy(pairs)

    def extra_repr(self) -> str:
        return (f"n_labels={self.n_labels}, n_features={self.n_features}, dim={self.dim}, "
                f"geometry={self.geometry!r}")
