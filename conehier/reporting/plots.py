"""2-D pictures of hierarchy embeddings, training curves and per-label performance.

Pictures of embeddings
    :func:`plot_poincare_disk` (Poincaré embeddings, hyperbolic entailment cones),
    :func:`plot_euclidean_cones`, :func:`plot_order_embedding`,
    :func:`plot_joint_embedding` (label nodes over image points) and the dispatcher
    :func:`plot_embedding`, which picks the picture from a result's geometry.
Other figures
    :func:`plot_training_curves` (loss and link-prediction F1 per epoch) and
    :func:`plot_per_label_performance` (F1 of each label against its number of
    training samples, one panel per level; thesis Fig. 4.1).
Geometry of what is drawn (pure numpy, exact, vectorised; tested on their own)
    :func:`poincare_geodesics`, :func:`hyperbolic_cone_regions`,
    :func:`euclidean_cone_wedges`, :func:`order_quadrants`.

Every plot returns its :class:`matplotlib.figure.Figure` and writes it with
``save="out.png"`` (any format matplotlib knows from the suffix: ``.png``,
``.pdf``, ``.svg``, ...). Figures are built with :class:`matplotlib.figure.Figure`,
not ``pyplot``, so nothing is left open in a global figure registry and any backend
(or none) works; pass ``ax=`` to draw an embedding into an axes of your own.
matplotlib is imported inside the functions only.

Artists carry a ``gid`` so that a test (or a user) can find what was drawn:
``"edges"``, ``"cones"``, ``"cone_boundaries"``, ``"inner_ball"``,
``"unit_circle"``, ``"level<k>"`` (the nodes of level ``k``), ``"images"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "GeodesicArcs",
    "HyperbolicCones",
    "poincare_geodesics",
    "hyperbolic_cone_regions",
    "euclidean_cone_wedges",
    "order_quadrants",
    "top_groups",
    "plot_poincare_disk",
    "plot_euclidean_cones",
    "plot_order_embedding",
    "plot_joint_embedding",
    "plot_training_curves",
    "plot_per_label_performance",
    "plot_embedding",
    "plot_command",
    "add_plot_parser",
    "short_name",
]

#: geometry of a result -> the picture drawn by :func:`plot_embedding`
DEFAULT_KIND = {
    "hyperbolic-cones": "disk",
    "poincare": "disk",
    "euclidean-cones": "cones",
    "euclidean-cones-cosine": "cones",
    "order": "order",
}
KINDS = ("disk", "cones", "order", "curves")

_TINY = 1e-300
#: ``cone_levels="auto"``: cones for the top levels holding at most this many nodes
_CONE_BUDGET = 13
#: ``label_levels="auto"``: labels for the top levels holding at most this many nodes
_LABEL_BUDGET = 40


# =============================================================================
# geometry of what is drawn (numpy, float64)
# =============================================================================


def _points(x, name: str = "points", *, ball: bool = False) -> np.ndarray:
    """``x`` as a finite float64 ``(n, 2)`` array (a clear error otherwise)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == 2:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 2:
        d = a.shape[-1] if a.ndim >= 1 else 0
        raise ValueError(f"{name} must be 2-D points of shape (n, 2), got shape {a.shape}"
                         + (f" (a {d}-dimensional embedding cannot be drawn as is)" if a.ndim == 2 else ""))
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    if ball:
        norms = np.linalg.norm(a, axis=1)
        if len(a) and norms.max() >= 1:
            raise ValueError(f"{name} must lie in the open unit disk, max norm is {norms.max():.6g}")
    return a


def _mobius_add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Möbius addition ``x (+) y`` in the Poincaré ball (curvature -1), broadcast over leading dims."""
    xy = np.sum(x * y, axis=-1, keepdims=True)
    x2 = np.sum(x * x, axis=-1, keepdims=True)
    y2 = np.sum(y * y, axis=-1, keepdims=True)
    num = (1 + 2 * xy + y2) * x + (1 - x2) * y
    den = 1 + 2 * xy + x2 * y2
    return num / np.maximum(den, _TINY)


def _rotate(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    return np.concatenate([c * v[..., :1] - s * v[..., 1:], s * v[..., :1] + c * v[..., 1:]], axis=-1)


def _wrap(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``(-pi, pi]``."""
    return np.pi - np.mod(np.pi - a, 2 * np.pi)


@dataclass(frozen=True)
class GeodesicArcs:
    """Hyperbolic geodesic segments between point pairs of the Poincaré disk.

    ``points`` ``(E, n, 2)``: samples from the first point to the second (both
    included). ``center`` ``(E, 2)`` and ``radius`` ``(E,)``: the circle carrying each
    arc, orthogonal to the unit circle (``|center|^2 = 1 + radius^2``); ``straight``
    ``(E,)`` marks pairs collinear with the origin, whose geodesic is a diameter
    (``center`` NaN, ``radius`` inf).
    """

    points: np.ndarray
    center: np.ndarray
    radius: np.ndarray
    straight: np.ndarray


def poincare_geodesics(x, y, *, n_points: int = 64, collinear_tol: float = 1e-9) -> GeodesicArcs:
    """The geodesic segments ``x[i] -> y[i]`` of the Poincaré disk, exactly, for all pairs at once.

    The geodesic through ``x`` and ``y`` is the circle through both that is
    orthogonal to the unit circle. Its centre ``c`` solves the 2x2 linear system
    ``2 <c, x> = 1 + |x|^2``, ``2 <c, y> = 1 + |y|^2`` (``|c - p|^2 = r^2 = |c|^2 - 1``
    for ``p = x, y``); when ``x``, ``y`` and the origin are collinear
    (``|x0 y1 - x1 y0| <= collinear_tol |x| |y|``) it is the diameter through them.

    The drawn samples ``gamma(t) = x (+) tanh(t artanh|v|) v/|v|`` with
    ``v = (-x) (+) y`` (Möbius addition), ``t`` in ``[0, 1]``, lie on that circle or
    diameter for every ``t`` without round-off blow-up when the circle is huge
    (nearly collinear points); ``t`` is uniform in hyperbolic arc length.
    """
    x = _points(x, "x", ball=True)
    y = _points(y, "y", ball=True)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    v = _mobius_add(-x, y)
    nv = np.linalg.norm(v, axis=1)
    a = np.arctanh(np.minimum(nv, 1 - 1e-16))
    t = np.linspace(0.0, 1.0, n_points)
    s = np.tanh(t[None, :] * a[:, None])  # (E, n) Euclidean norm of the Möbius step
    direction = v / np.maximum(nv, _TINY)[:, None]
    pts = _mobius_add(x[:, None, :], s[..., None] * direction[:, None, :])
    pts[:, 0], pts[:, -1] = x, y  # the exact endpoints (the formula gives them to a few ulp)

    det = x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]
    scale = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    straight = np.abs(det) <= collinear_tol * scale
    bx, by = (1 + np.sum(x * x, 1)) / 2, (1 + np.sum(y * y, 1)) / 2
    safe = np.where(straight, 1.0, det)
    center = np.stack([(bx * y[:, 1] - by * x[:, 1]) / safe, (x[:, 0] * by - y[:, 0] * bx) / safe], axis=1)
    center[straight] = np.nan
    radius = np.where(straight, np.inf, np.sqrt(np.maximum(np.sum(center * center, 1) - 1, 0.0)))
    return GeodesicArcs(points=pts, center=center, radius=radius, straight=straight)


def _aperture(x: np.ndarray, K: float, hyperbolic: bool) -> np.ndarray:
    """``psi(x)`` from :mod:`conehier.geometry.energies` (the same function the energies use)."""
    import torch

    from ..geometry.energies import euclidean_cone_aperture, hyperbolic_cone_aperture

    fn = hyperbolic_cone_aperture if hyperbolic else euclidean_cone_aperture
    with torch.no_grad():
        return fn(torch.as_tensor(x, dtype=torch.float64), K=K).numpy().astype(np.float64)


@dataclass(frozen=True)
class HyperbolicCones:
    """Hyperbolic entailment cones of disk points (see :func:`hyperbolic_cone_regions`).

    ``apex`` ``(N, 2)``, ``psi`` ``(N,)`` half-apertures; ``boundaries`` ``(N, 2, n, 2)``:
    the two boundary geodesic rays, each sampled from the apex to its ideal point on
    the unit circle (index 0: rotated by ``+psi`` from the axis, 1: by ``-psi``);
    ``ideal`` ``(N, 2, 2)`` those ideal points; ``center`` ``(N, 2, 2)`` and
    ``radius`` ``(N, 2)`` the boundary circles (``|center|^2 = 1 + radius^2``; NaN /
    inf for a straight boundary, ``psi = 0``); ``polygons`` ``(N, m, 2)`` the closed
    cone regions: ray 0, the arc of the unit circle between the ideal points, ray 1
    back to the apex.
    """

    apex: np.ndarray
    psi: np.ndarray
    boundaries: np.ndarray
    ideal: np.ndarray
    center: np.ndarray
    radius: np.ndarray
    polygons: np.ndarray


def hyperbolic_cone_regions(x, *, K: float = 0.1, n_points: int = 64, n_arc: int = 48) -> HyperbolicCones:
    """The entailment cones of points ``x`` (``(N, 2)``, inside the disk, nonzero) of the Poincaré disk.

    The cone at ``x`` is bounded by the two geodesics leaving ``x`` at angle
    ``psi(x) = arcsin(K (1 - |x|^2) / |x|)`` (``pi/2`` inside the inner ball) on
    either side of its axis, the geodesic ray from ``x`` away from the origin (the
    radius through ``x``). The disk is conformal, so the boundary ray with unit
    initial direction ``u = rot(x/|x|, +-psi)`` is ``s -> x (+) s u`` for ``s`` in
    ``[0, 1]``, reaching the unit circle at ``x (+) u``. Its circle has centre
    ``c = x + (1 - |x|^2) / (2 <x, n>) n`` with ``n = rot90(u)``.
    """
    x = _points(x, "x", ball=True)
    r = np.linalg.norm(x, axis=1)
    if len(x) and r.min() <= 1e-12:
        raise ValueError("the cone of the origin has no axis: drop points at the origin")
    psi = _aperture(x, K, hyperbolic=True)
    axis = x / r[:, None]
    s = np.linspace(0.0, 1.0, n_points)
    signs = np.array([1.0, -1.0])
    u = _rotate(axis[:, None, :], signs[None, :] * psi[:, None])  # (N, 2, 2)
    rays = _mobius_add(x[:, None, None, :], s[None, None, :, None] * u[:, :, None, :])  # (N, 2, n, 2)
    rays[:, :, 0] = x[:, None, :]
    ideal = rays[:, :, -1]
    ideal = ideal / np.linalg.norm(ideal, axis=-1, keepdims=True)
    rays[:, :, -1] = ideal

    nrm = _rotate(u, np.full(u.shape[:-1], np.pi / 2))
    xn = np.sum(x[:, None, :] * nrm, axis=-1)
    straight = np.abs(xn) <= 1e-12 * r[:, None]
    lam = (1 - r * r)[:, None] / (2 * np.where(straight, 1.0, xn))
    center = np.where(straight[..., None], np.nan, x[:, None, :] + lam[..., None] * nrm)
    radius = np.where(straight, np.inf, np.abs(lam))

    phi = np.arctan2(x[:, 1], x[:, 0])
    beta = _wrap(np.arctan2(ideal[..., 1], ideal[..., 0]) - phi[:, None])  # (N, 2), beta0 >= 0 >= beta1
    tt = np.linspace(0.0, 1.0, n_arc)[None, :]
    ang = phi[:, None] + beta[:, :1] + tt * (beta[:, 1:] - beta[:, :1])
    arc = np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    polygons = np.concatenate([rays[:, 0], arc[:, 1:-1], rays[:, 1, ::-1]], axis=1)
    return HyperbolicCones(apex=x, psi=psi, boundaries=rays, ideal=ideal, center=center, radius=radius,
                           polygons=polygons)


def euclidean_cone_wedges(x, *, K: float = 0.1, radius: float = 10.0, n_arc: int = 48):
    """Euclidean entailment cones of points ``x`` (``(N, 2)``, nonzero) as wedge polygons.

    The cone at ``x`` has apex ``x``, axis ``x/|x|`` (away from the origin) and
    half-aperture ``psi(x) = arcsin(K / |x|)`` (``pi/2`` inside the inner ball
    ``|x| <= K``). Returns ``(psi (N,), axis_angle (N,), polygons (N, n_arc + 1, 2))``:
    the apex followed by ``n_arc`` points at distance ``radius`` from it, from angle
    ``axis_angle - psi`` to ``axis_angle + psi`` (choose ``radius`` past the view so
    the wedge is cut by the axes).
    """
    x = _points(x, "x")
    r = np.linalg.norm(x, axis=1)
    if len(x) and r.min() <= 1e-12:
        raise ValueError("the cone of the origin has no axis: drop points at the origin")
    psi = _aperture(x, K, hyperbolic=False)
    phi = np.arctan2(x[:, 1], x[:, 0])
    ang = phi[:, None] + psi[:, None] * np.linspace(-1.0, 1.0, n_arc)[None, :]
    rim = x[:, None, :] + radius * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    return psi, phi, np.concatenate([x[:, None, :], rim], axis=1)


def order_quadrants(x, corner) -> np.ndarray:
    """The translated positive orthants ``{y : y >= x}`` (what an order embedding entails), cut at
    ``corner`` = (x_max, y_max): ``(N, 4, 2)`` polygons ``x, (X, x1), (X, Y), (x0, Y)``."""
    x = _points(x, "x")
    X, Y = float(corner[0]), float(corner[1])
    X = np.maximum(X, x[:, 0])
    Y = np.maximum(Y, x[:, 1])
    return np.stack(
        [x, np.stack([X, x[:, 1]], 1), np.stack([X, Y], 1), np.stack([x[:, 0], Y], 1)], axis=1
    )


# =============================================================================
# shared drawing helpers
# =============================================================================


def short_name(name: str) -> str:
    """Display form of a node name: WordNet ``"even-toed_ungulate.n.01"`` -> ``"even-toed ungulate"``."""
    s = str(name)
    parts = s.rsplit(".", 2)
    if len(parts) == 3 and len(parts[1]) == 1 and parts[1].isalpha() and parts[2].isdigit():
        s = parts[0]
    return s.replace("_", " ")


@dataclass
class _Scene:
    """Points, the hierarchy facts a picture needs, and a colour per node."""

    xy: np.ndarray
    edges: np.ndarray
    levels: np.ndarray
    names: list[str] | None
    colors: np.ndarray | None = None  # (n, 4) RGBA per node
    groups: np.ndarray | None = None  # (n,) top-ancestor id per node (color_by="top"), -1: none

    @property
    def n(self) -> int:
        return len(self.xy)

    @property
    def num_levels(self) -> int:
        return int(self.levels.max()) + 1 if self.n else 0


def _scene(points, hierarchy, edges, levels, names, *, ball: bool = False, color_by: str = "level",
           cmap="viridis") -> _Scene:
    xy = _points(points, ball=ball)
    n = len(xy)
    if hierarchy is not None:
        if hierarchy.n != n:
            raise ValueError(f"the hierarchy has {hierarchy.n} nodes but there are {n} points")
        if edges is None:
            edges = hierarchy.transitive_reduction()
        if levels is None:
            levels = hierarchy.depth
        if names is None:
            names = list(hierarchy.names)
    edges = np.zeros((0, 2), np.int64) if edges is None else np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(edges) and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"edges refer to node ids outside [0, {n})")
    levels = np.zeros(n, np.int64) if levels is None else np.asarray(levels, dtype=np.int64).reshape(-1)
    if len(levels) != n:
        raise ValueError(f"levels has {len(levels)} entries for {n} points")
    if n and levels.min() < 0:
        raise ValueError("levels must be >= 0")
    if names is not None and len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} points")
    sc = _Scene(xy, edges, levels, None if names is None else list(names))
    if color_by == "level":
        sc.colors = _level_colors(sc.num_levels, cmap)[levels] if n else np.zeros((0, 4))
    elif color_by == "top":
        sc.groups = top_groups(edges, levels)
        sc.colors = _group_colors(sc.groups, levels)
    else:
        raise ValueError(f"color_by must be 'level' or 'top', got {color_by!r}")
    return sc


def top_groups(edges, levels) -> np.ndarray:
    """The top ancestor of every node: ``(n,)`` ids of the roots, or of the root's children when
    there is a single root (the root and nodes above the top level: their own id; nodes no
    parent reaches: -1). In a DAG a node with parents under different tops takes one of them."""
    levels = np.asarray(levels, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    n = len(levels)
    if n == 0:
        return np.zeros(0, np.int64)
    top = 0 if np.count_nonzero(levels == 0) > 1 else 1
    group = np.where(levels <= top, np.arange(n), -1)
    child_level = levels[edges[:, 1]] if len(edges) else np.zeros(0, np.int64)
    for lvl in range(top + 1, int(levels.max()) + 1):  # parents sit on lower levels: already assigned
        e = edges[child_level == lvl]
        known = group[e[:, 0]] >= 0
        group[e[known, 1]] = group[e[known, 0]]
    return group


def _group_colors(groups: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Qualitative colours per top group; the root above a single-root hierarchy and nodes with no
    group in dark grey."""
    import matplotlib

    top = 0 if np.count_nonzero(levels == 0) > 1 else 1
    tops = np.unique(groups[(groups >= 0) & (levels[np.maximum(groups, 0)] == top)]) if len(groups) else groups
    k = len(tops)
    if k <= 10:
        palette = np.asarray(matplotlib.colormaps["tab10"](np.arange(10)))
    elif k <= 20:
        palette = np.asarray(matplotlib.colormaps["tab20"](np.arange(20)))
    else:
        palette = np.asarray(matplotlib.colormaps["hsv"](np.linspace(0, 1, k, endpoint=False)))
    colors = np.tile(np.array([0.2, 0.2, 0.2, 1.0]), (len(groups), 1))
    rank = np.searchsorted(tops, groups)
    ok = (groups >= 0) & (rank < k)
    ok[ok] &= tops[rank[ok]] == groups[ok]
    colors[ok] = palette[rank[ok] % len(palette)]
    return colors


def _level_colors(num_levels: int, cmap="viridis") -> np.ndarray:
    import matplotlib

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    if num_levels <= 1:
        return np.asarray([cm(0.0)])
    return np.asarray(cm(np.linspace(0.0, 0.88, num_levels)))


def _select(spec, levels: np.ndarray, nodes, *, auto_budget: int) -> np.ndarray:
    """Node ids chosen by ``nodes`` (explicit ids) or a level spec.

    ``spec``: ``None`` (none), ``"all"``, ``"auto"`` (the top levels holding at most
    ``auto_budget`` nodes, at least the top one), an int ``k`` (levels ``0..k-1``) or a
    sequence of levels.
    """
    n = len(levels)
    if nodes is not None:
        ids = np.unique(np.asarray(list(nodes), dtype=np.int64))
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"node ids must be within [0, {n})")
        return ids
    if spec is None or spec is False or n == 0:
        return np.zeros(0, np.int64)
    if spec is True or (isinstance(spec, str) and spec == "all"):
        return np.arange(n)
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"level spec must be None, 'all', 'auto', an int or a list of levels, got {spec!r}")
        counts = np.bincount(levels)
        k = max(1, int(np.searchsorted(np.cumsum(counts), auto_budget, side="right")))
        return np.flatnonzero(levels < k)
    if isinstance(spec, (int, np.integer)):
        return np.flatnonzero(levels < int(spec))
    return np.flatnonzero(np.isin(levels, np.asarray(list(spec), dtype=np.int64)))


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    return fig, ax


def _save(fig, save, dpi: int = 200):
    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return fig


def _auto_marker_size(n: int) -> float:
    return float(np.clip(2400.0 / max(n, 1), 2.0, 36.0))


def _draw_nodes(ax, sc: _Scene, *, marker_size, level_names, legend, label_format=None, zorder: float = 3.0,
                alpha: float = 1.0):
    """Scatter the nodes, one artist per level (deepest first, top levels on top), coloured by
    ``sc.colors``, larger for the top levels; a legend by level (and by top group)."""
    from matplotlib.lines import Line2D

    L = sc.num_levels
    base = _auto_marker_size(sc.n) if marker_size is None else float(marker_size)
    handles = []
    for lvl in range(L - 1, -1, -1):
        idx = np.flatnonzero(sc.levels == lvl)
        if len(idx) == 0:
            continue
        grow = 1.0 + 2.0 * (1.0 - lvl / max(L - 1, 1)) if L > 1 else 2.0
        size = base * grow
        label = level_names[lvl] if level_names is not None and lvl < len(level_names) else f"level {lvl}"
        h = ax.scatter(sc.xy[idx, 0], sc.xy[idx, 1], s=size, c=sc.colors[idx], alpha=alpha,
                       edgecolors="white" if size >= 12 else "none", linewidths=0.4,
                       zorder=zorder + 0.01 * (L - lvl), label=f"{label} ({len(idx)})", gid=f"level{lvl}")
        handles.append((h, label, len(idx), size))
    if not (legend and handles):
        return
    kw = dict(frameon=False, fontsize=8, handletextpad=0.3, borderaxespad=0.2, title_fontsize=8,
              loc="upper left")
    if sc.groups is None:
        items = [Line2D([], [], ls="", marker="o", ms=5.5, color=h.get_facecolors()[0], label=f"{lab} ({k})")
                 for h, lab, k, _ in handles[::-1]]
        leg = ax.legend(handles=items, bbox_to_anchor=(1.0, 1.0), title="level (nodes)", **kw)
        leg._legend_box.align = "left"
        return
    fmt = label_format or short_name
    grey = "0.45"
    items = [Line2D([], [], ls="", marker="o", ms=max(1.5, min(8.0, math.sqrt(sz))), color=grey,
                    label=f"{lab} ({k})") for h, lab, k, sz in handles[::-1]]
    leg = ax.legend(handles=items, bbox_to_anchor=(1.0, 1.0), title="level (nodes)", **kw)
    leg._legend_box.align = "left"
    ax.add_artist(leg)
    top_level = 0 if np.count_nonzero(sc.levels == 0) > 1 else 1
    tops = [g for g in np.unique(sc.groups) if g >= 0 and sc.levels[g] == top_level]
    if len(tops) <= 20:
        gitems = [Line2D([], [], ls="", marker="o", ms=5.5, color=sc.colors[g],
                         label=f"{fmt(sc.names[g]) if sc.names else g} ({np.count_nonzero(sc.groups == g)})")
                  for g in tops]
        # stacked under the level legend: its height estimated from the 8 pt font (rows of ~1.45 em)
        ax.apply_aspect()  # the final axes box (an equal aspect shrinks it)
        height_pt = ax.bbox.height * 72.0 / ax.figure.dpi
        below = 1.0 - ((len(items) + 1) * 8 * 1.45 + 24) / max(height_pt, 1.0)
        g_leg = ax.legend(handles=gitems, bbox_to_anchor=(1.0, below), title="subtree (nodes)", **kw)
        g_leg._legend_box.align = "left"


def _place_labels(ax, xy: np.ndarray, texts: Sequence[str], *, avoid: np.ndarray, prefer: np.ndarray | None,
                  fontsize: float = 7.0, offset: float = 3.5, drop_overlapping: bool = True, colors=None,
                  zorder: float = 6.0):
    """Greedy label placement in display space, top-priority labels first.

    Each label tries 8 directions around its point at three distances (the two farther
    ones drawn with a thin leader line) and takes the position of least cost: overlap
    with labels placed before it (heavy), points under the text box, leaving the axes,
    distance, and the angle to ``prefer`` (``(N, 2)`` preferred directions). Text boxes
    are estimated from the font size. A label that cannot avoid overlapping an earlier
    one by more than 5 % of its box is dropped when ``drop_overlapping``.
    """
    from matplotlib import patheffects

    if len(xy) == 0:
        return []
    fig = ax.figure
    ax.apply_aspect()
    trans = ax.transData
    P = trans.transform(xy)
    A = trans.transform(avoid) if len(avoid) else np.zeros((0, 2))
    px = fig.dpi / 72.0
    bb = ax.bbox
    dirs8 = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=float)
    rings = np.array([1.0, 3.5, 6.5])
    dirs = np.tile(dirs8, (len(rings), 1))
    ring = np.repeat(np.arange(len(rings)), 8)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    off = offset * px * rings[ring, None] * unit * np.array([1.0, 0.9])
    placed = []  # (x0, y0, x1, y1)
    artists = []
    pe = [patheffects.withStroke(linewidth=2.2, foreground="white")]
    for i, (p, text) in enumerate(zip(P, texts)):
        w = 0.6 * fontsize * px * max(len(text), 1) + 3 * px  # a little air around each label
        h = 1.25 * fontsize * px
        # box lower-left per candidate: left / centred / right of the anchor, likewise vertically
        cx = p[0] + off[:, 0] - w * (1 - dirs[:, 0]) / 2
        cy = p[1] + off[:, 1] - h * (1 - dirs[:, 1]) / 2
        boxes = np.stack([cx, cy, cx + w, cy + h], axis=1)
        clash = np.zeros(len(boxes))
        for q in placed:
            ox = np.clip(np.minimum(boxes[:, 2], q[2]) - np.maximum(boxes[:, 0], q[0]), 0, None)
            oy = np.clip(np.minimum(boxes[:, 3], q[3]) - np.maximum(boxes[:, 1], q[1]), 0, None)
            clash += ox * oy / (w * h)
        out = ((boxes[:, 0] < bb.x0) | (boxes[:, 2] > bb.x1) | (boxes[:, 1] < bb.y0) | (boxes[:, 3] > bb.y1))
        cost = 20.0 * clash + 50.0 * out + 0.7 * ring
        if len(A):
            inside = ((A[None, :, 0] > boxes[:, None, 0]) & (A[None, :, 0] < boxes[:, None, 2])
                      & (A[None, :, 1] > boxes[:, None, 1]) & (A[None, :, 1] < boxes[:, None, 3]))
            cost += 0.25 * np.minimum(inside.sum(1), 8)
        if prefer is not None:
            pd = prefer[i] / max(np.linalg.norm(prefer[i]), 1e-12)
            cost += 0.6 * (1 - unit @ pd) / 2
        k = int(np.argmin(cost))
        if drop_overlapping and (clash[k] > 0.05 or out[k]):
            continue
        placed.append(boxes[k])
        ha = {1: "left", 0: "center", -1: "right"}[int(dirs[k, 0])]
        va = {1: "bottom", 0: "center", -1: "top"}[int(dirs[k, 1])]
        color = colors[i] if colors is not None else "0.1"
        arrow = None if ring[k] == 0 else dict(arrowstyle="-", lw=0.5, color=color, alpha=0.7, shrinkA=1.0,
                                               shrinkB=2.0)
        t = ax.annotate(text, xy=xy[i], xytext=tuple(off[k] / px), textcoords="offset points", ha=ha, va=va,
                        fontsize=fontsize, zorder=zorder, path_effects=pe, color=color, annotation_clip=False,
                        arrowprops=arrow)
        artists.append(t)
    return artists


def _draw_labels(ax, sc: _Scene, ids: np.ndarray, *, label_format, fontsize, prefer_fn):
    if sc.names is None or len(ids) == 0:
        return []
    fmt = label_format or short_name
    order = ids[np.lexsort((ids, sc.levels[ids]))]  # top levels first: they win the space
    texts = [fmt(sc.names[i]) for i in order]
    prefer = prefer_fn(sc.xy[order]) if prefer_fn is not None else None
    cols = [tuple(np.asarray(sc.colors[i][:3]) * 0.55) for i in order]
    return _place_labels(ax, sc.xy[order], texts, avoid=sc.xy, prefer=prefer, fontsize=fontsize, colors=cols)


def _line_style(n_edges: int, edge_alpha, edge_width):
    a = edge_alpha if edge_alpha is not None else float(np.clip(9.0 / math.sqrt(max(n_edges, 1)), 0.25, 0.7))
    w = edge_width if edge_width is not None else (0.8 if n_edges <= 300 else 0.45)
    return a, w


def _cone_alpha(n_cones: int, cone_alpha):
    if cone_alpha is not None:
        return cone_alpha
    return float(np.clip(0.35 / math.sqrt(max(n_cones, 1)), 0.03, 0.12))


def _title(ax, title):
    if title:
        ax.set_title(title, fontsize=10, pad=6)


# =============================================================================
# embedding pictures
# =============================================================================


def plot_poincare_disk(
    points,
    hierarchy=None,
    *,
    edges=None,
    levels=None,
    names=None,
    K: float = 0.1,
    cone_levels="auto",
    cone_nodes=None,
    show_inner_ball: bool = True,
    label_levels="auto",
    label_nodes=None,
    level_names: Sequence[str] | None = None,
    label_format: Callable[[str], str] | None = None,
    fontsize: float = 7.0,
    marker_size: float | None = None,
    edge_alpha: float | None = None,
    edge_width: float | None = None,
    cone_alpha: float | None = None,
    n_points: int = 64,
    cmap="viridis",
    color_by: str = "level",
    legend: bool = True,
    title: str | None = None,
    ax=None,
    figsize=(7.0, 7.0),
    save=None,
    dpi: int = 200,
):
    """Points of the Poincaré disk with the hierarchy's edges as hyperbolic geodesics.

    ``points`` ``(n, 2)`` inside the unit disk; ``hierarchy`` (a :class:`Hierarchy`)
    gives the basic edges (its transitive reduction), the levels (colours, legend)
    and the names (labels) unless ``edges`` / ``levels`` / ``names`` are passed.

    Cones (hyperbolic entailment cones with constant ``K``, see
    :func:`hyperbolic_cone_regions`) are drawn for the nodes picked by ``cone_nodes``
    (ids) or ``cone_levels``: ``None`` (no cones: Poincaré embeddings), ``"all"``,
    ``"auto"`` (the top levels holding at most 13 nodes), an
    int ``k`` (levels ``0..k-1``) or a list of levels. Nodes (and their cones and
    labels) are coloured by level (``color_by="level"``, colormap ``cmap``) or by their
    top ancestor (``color_by="top"``: the roots, or the root's children for a single
    root; see :func:`top_groups`), with a second legend naming those subtrees; the
    top levels are drawn larger either way. The inner ball of radius
    ``eps_K`` (where the aperture would exceed ``pi/2``) is shaded when
    ``show_inner_ball`` and cones are drawn. Labels: ``label_nodes`` /
    ``label_levels`` likewise (``"auto"``: the top levels with <= 40 nodes; labels that
    would overlap are dropped).
    """
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.patches import Circle

    from ..geometry.functional import hyperbolic_inner_radius

    sc = _scene(points, hierarchy, edges, levels, names, ball=True, color_by=color_by, cmap=cmap)
    fig, ax = _new_axes(ax, figsize)
    ax.set_aspect("equal")
    ax.set_xlim(-1.03, 1.03)
    ax.set_ylim(-1.03, 1.03)
    ax.set_axis_off()
    ax.add_patch(Circle((0, 0), 1.0, facecolor="0.985", edgecolor="0.15", linewidth=1.0, zorder=0, gid="unit_circle"))

    cone_ids = _select(cone_levels, sc.levels, cone_nodes, auto_budget=_CONE_BUDGET)
    cone_ids = cone_ids[np.linalg.norm(sc.xy[cone_ids], axis=1) > 1e-12]
    if show_inner_ball and (len(cone_ids) or cone_levels is not None):
        ax.add_patch(Circle((0, 0), hyperbolic_inner_radius(K), facecolor="0.82", edgecolor="0.6",
                            linewidth=0.5, linestyle=(0, (2, 2)), alpha=0.7, zorder=0.5, gid="inner_ball"))
    if len(cone_ids):
        cones = hyperbolic_cone_regions(sc.xy[cone_ids], K=K, n_points=n_points)
        cc = sc.colors[cone_ids].copy()
        ca = _cone_alpha(len(cone_ids), cone_alpha)
        fc = cc.copy()
        fc[:, 3] = ca
        ax.add_collection(PolyCollection(list(cones.polygons), facecolors=fc, edgecolors="none", zorder=0.8,
                                         gid="cones"), autolim=False)
        bc = np.repeat(cc, 2, axis=0)
        bc[:, 3] = min(1.0, 2.5 * ca + 0.15)
        ax.add_collection(LineCollection(list(cones.boundaries.reshape(-1, n_points, 2)), colors=bc,
                                         linewidths=0.5, zorder=0.9, gid="cone_boundaries"), autolim=False)

    if len(sc.edges):
        arcs = poincare_geodesics(sc.xy[sc.edges[:, 0]], sc.xy[sc.edges[:, 1]], n_points=n_points)
        a, w = _line_style(len(sc.edges), edge_alpha, edge_width)
        ax.add_collection(LineCollection(list(arcs.points), colors="0.3", alpha=a, linewidths=w, zorder=1,
                                         gid="edges"), autolim=False)

    _draw_nodes(ax, sc, marker_size=marker_size, level_names=level_names, legend=legend, label_format=label_format)
    label_ids = _select(label_levels, sc.levels, label_nodes, auto_budget=_LABEL_BUDGET)
    _draw_labels(ax, sc, label_ids, label_format=label_format, fontsize=fontsize, prefer_fn=_tangential)
    _title(ax, title)
    return _save(fig, save, dpi)


def _tangential(xy: np.ndarray) -> np.ndarray:
    """Preferred label direction for radial layouts: across the radius (off the node's own cone
    and off the edge to its parent), on the counter-clockwise side."""
    r = np.linalg.norm(xy, axis=1, keepdims=True)
    radial = np.where(r > 1e-9, xy / np.maximum(r, 1e-12), np.array([[0.0, -1.0]]))
    return np.stack([-radial[:, 1], radial[:, 0]], axis=1) - 0.35 * radial


def _view_limits(xy: np.ndarray, *, include_origin: bool, pad: float = 0.06, extra: float = 0.0):
    pts = xy if not include_origin else np.vstack([xy, np.zeros((1, 2))])
    lo, hi = pts.min(0) - extra, pts.max(0) + extra
    span = np.maximum(hi - lo, 1e-9)
    return lo - pad * span, hi + pad * span


def plot_euclidean_cones(
    points,
    hierarchy=None,
    *,
    edges=None,
    levels=None,
    names=None,
    K: float = 0.1,
    cone_levels="auto",
    cone_nodes=None,
    show_inner_ball: bool = True,
    label_levels="auto",
    label_nodes=None,
    level_names: Sequence[str] | None = None,
    label_format: Callable[[str], str] | None = None,
    fontsize: float = 7.0,
    marker_size: float | None = None,
    edge_alpha: float | None = None,
    edge_width: float | None = None,
    cone_alpha: float | None = None,
    cmap="viridis",
    color_by: str = "level",
    legend: bool = True,
    title: str | None = None,
    ax=None,
    figsize=(7.0, 7.0),
    save=None,
    dpi: int = 200,
):
    """Euclidean entailment cones: points, straight edges, and for the chosen nodes the wedge
    of half-angle ``psi(x) = arcsin(K / |x|)`` with apex ``x`` and axis along ``x`` (away from
    the origin); the inner ball of radius ``K`` shaded. Node/label/cone selection as in
    :func:`plot_poincare_disk`."""
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.patches import Circle

    sc = _scene(points, hierarchy, edges, levels, names, color_by=color_by, cmap=cmap)
    fig, ax = _new_axes(ax, figsize)
    lo, hi = _view_limits(sc.xy, include_origin=True, extra=K if show_inner_ball else 0.0)
    ax.set_aspect("equal")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    _light_axes(ax)

    if show_inner_ball:
        ax.add_patch(Circle((0, 0), K, facecolor="0.82", edgecolor="0.6", linewidth=0.5, linestyle=(0, (2, 2)),
                            alpha=0.7, zorder=0.5, gid="inner_ball"))
    cone_ids = _select(cone_levels, sc.levels, cone_nodes, auto_budget=_CONE_BUDGET)
    cone_ids = cone_ids[np.linalg.norm(sc.xy[cone_ids], axis=1) > 1e-12]
    if len(cone_ids):
        reach = 3.0 * float(np.max(hi - lo)) + float(np.max(np.abs(np.concatenate([lo, hi]))))
        psi, phi, polys = euclidean_cone_wedges(sc.xy[cone_ids], K=K, radius=reach)
        cc = sc.colors[cone_ids].copy()
        ca = _cone_alpha(len(cone_ids), cone_alpha)
        fc = cc.copy()
        fc[:, 3] = ca
        ec = cc.copy()
        ec[:, 3] = min(1.0, 2.5 * ca + 0.15)
        ax.add_collection(PolyCollection(list(polys), facecolors=fc, edgecolors="none", zorder=0.8, gid="cones"),
                          autolim=False)
        bnd = np.stack([polys[:, [1, 0, -1]]], axis=0)[0]  # rim start -> apex -> rim end
        ax.add_collection(LineCollection(list(bnd), colors=ec, linewidths=0.5, zorder=0.9, gid="cone_boundaries"),
                          autolim=False)

    if len(sc.edges):
        a, w = _line_style(len(sc.edges), edge_alpha, edge_width)
        segs = np.stack([sc.xy[sc.edges[:, 0]], sc.xy[sc.edges[:, 1]]], axis=1)
        ax.add_collection(LineCollection(list(segs), colors="0.3", alpha=a, linewidths=w, zorder=1, gid="edges"),
                          autolim=False)
    _draw_nodes(ax, sc, marker_size=marker_size, level_names=level_names, legend=legend, label_format=label_format)
    label_ids = _select(label_levels, sc.levels, label_nodes, auto_budget=_LABEL_BUDGET)
    _draw_labels(ax, sc, label_ids, label_format=label_format, fontsize=fontsize, prefer_fn=_tangential)
    _title(ax, title)
    return _save(fig, save, dpi)


def _light_axes(ax):
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    for s in ("left", "bottom"):
        ax.spines[s].set_linewidth(0.6)
        ax.spines[s].set_color("0.4")
    ax.tick_params(labelsize=7, width=0.6, length=2.5, colors="0.3")


def plot_order_embedding(
    points,
    hierarchy=None,
    *,
    edges=None,
    levels=None,
    names=None,
    cone_levels="auto",
    cone_nodes=None,
    label_levels="auto",
    label_nodes=None,
    level_names: Sequence[str] | None = None,
    label_format: Callable[[str], str] | None = None,
    fontsize: float = 7.0,
    marker_size: float | None = None,
    edge_alpha: float | None = None,
    edge_width: float | None = None,
    cone_alpha: float | None = None,
    cmap="viridis",
    color_by: str = "level",
    legend: bool = True,
    title: str | None = None,
    ax=None,
    figsize=(7.0, 7.0),
    save=None,
    dpi: int = 200,
):
    """Order embeddings: points, straight edges, and for the chosen nodes (``cone_nodes`` /
    ``cone_levels``, as in :func:`plot_poincare_disk`) the translated positive orthant
    ``{y : y >= x}`` holding what ``x`` entails (``v`` is below ``u`` iff ``v >= u``
    coordinate-wise)."""
    from matplotlib.collections import LineCollection, PolyCollection

    sc = _scene(points, hierarchy, edges, levels, names, color_by=color_by, cmap=cmap)
    fig, ax = _new_axes(ax, figsize)
    lo, hi = _view_limits(sc.xy, include_origin=False)
    ax.set_aspect("equal")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    _light_axes(ax)

    cone_ids = _select(cone_levels, sc.levels, cone_nodes, auto_budget=_CONE_BUDGET)
    if len(cone_ids):
        span = float(np.max(hi - lo))
        polys = order_quadrants(sc.xy[cone_ids], hi + 2 * span)
        cc = sc.colors[cone_ids].copy()
        ca = 0.07 if cone_alpha is None else cone_alpha  # nested orthants stack up
        fc = cc.copy()
        fc[:, 3] = ca
        ec = cc.copy()
        ec[:, 3] = min(1.0, 2.5 * ca + 0.2)
        ax.add_collection(PolyCollection(list(polys), facecolors=fc, edgecolors="none", zorder=0.8, gid="cones"),
                          autolim=False)
        bnd = polys[:, [1, 0, 3]]  # the two boundary rays through the corner x
        ax.add_collection(LineCollection(list(bnd), colors=ec, linewidths=0.6, zorder=0.9, gid="cone_boundaries"),
                          autolim=False)
    if len(sc.edges):
        a, w = _line_style(len(sc.edges), edge_alpha, edge_width)
        segs = np.stack([sc.xy[sc.edges[:, 0]], sc.xy[sc.edges[:, 1]]], axis=1)
        ax.add_collection(LineCollection(list(segs), colors="0.3", alpha=a, linewidths=w, zorder=1, gid="edges"),
                          autolim=False)
    _draw_nodes(ax, sc, marker_size=marker_size, level_names=level_names, legend=legend, label_format=label_format)
    label_ids = _select(label_levels, sc.levels, label_nodes, auto_budget=_LABEL_BUDGET)
    _draw_labels(ax, sc, label_ids, label_format=label_format, fontsize=fontsize,
                 prefer_fn=lambda p: np.tile([[-1.0, -0.6]], (len(p), 1)))
    _title(ax, title)
    return _save(fig, save, dpi)


def _clamp_norms(x: np.ndarray, max_norm: float | None) -> tuple[np.ndarray, np.ndarray]:
    if max_norm is None:
        return x, np.zeros(len(x), bool)
    r = np.linalg.norm(x, axis=1)
    over = r > max_norm
    scale = np.where(over, max_norm / np.maximum(r, _TINY), 1.0)
    return x * scale[:, None], over


def plot_joint_embedding(
    label_points,
    image_points,
    image_labels,
    hierarchy=None,
    *,
    geometry: str = "euclidean",
    edges=None,
    levels=None,
    names=None,
    clamp_norm="auto",
    color_images_by: str = "top",
    max_images: int | None = 20000,
    image_size: float = 4.0,
    image_alpha: float = 0.25,
    label_levels="auto",
    label_nodes=None,
    level_names: Sequence[str] | None = None,
    label_format: Callable[[str], str] | None = None,
    fontsize: float = 7.0,
    marker_size: float | None = None,
    cmap="viridis",
    image_cmap="tab10",
    legend: bool = True,
    seed: int = 0,
    title: str | None = None,
    ax=None,
    figsize=(7.0, 7.0),
    save=None,
    dpi: int = 200,
):
    """A joint image-label embedding: label nodes (and edges) drawn over semi-transparent image points.

    ``label_points`` ``(C, 2)``, ``image_points`` ``(N, 2)``, ``image_labels`` ``(N,)``
    (the label id each image is attached to, usually its most specific label).
    ``geometry``: ``"euclidean"`` / ``"order"`` (straight edges) or ``"poincare"``
    (the unit disk, geodesic edges).

    Images are trained to sit deep inside their labels' cones/orthants, far beyond the
    label embeddings, so a faithful picture shows a dot of labels in a sea of images.
    Image norms are clamped for display, as in the thesis's Fig. 6.5 (which clamped
    them to 500 units): an image point with ``|y| > clamp_norm`` is drawn at
    ``y * clamp_norm / |y|`` (its direction, which is what the cone energies look at,
    is kept). ``"auto"`` (our choice, not the thesis's): ``1.3 x`` the largest label
    norm (Euclidean / order), ``0.995`` on the disk; ``clamp_norm=500`` gives the
    thesis's setting; ``None``: no clamping. Images are coloured by the top ancestor of their label
    (``color_images_by="top"``, needs ``hierarchy``: its root, or the root's child
    when there is a single root) or by label (``"label"``); at most ``max_images``
    (a seeded subsample) are drawn.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle

    if geometry not in ("euclidean", "order", "poincare"):
        raise ValueError(f"geometry must be 'euclidean', 'order' or 'poincare', got {geometry!r}")
    ball = geometry == "poincare"
    sc = _scene(label_points, hierarchy, edges, levels, names, ball=ball, cmap=cmap)
    img = _points(image_points, "image_points", ball=ball)
    lab = np.asarray(image_labels, dtype=np.int64).reshape(-1)
    if len(lab) != len(img):
        raise ValueError(f"image_labels has {len(lab)} entries for {len(img)} image points")
    if len(lab) and (lab.min() < 0 or lab.max() >= sc.n):
        raise ValueError(f"image_labels must be label ids within [0, {sc.n})")
    if max_images is not None and len(img) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(img), max_images, replace=False))
        img, lab = img[keep], lab[keep]
    if isinstance(clamp_norm, str):
        if clamp_norm != "auto":
            raise ValueError(f"clamp_norm must be a number, 'auto' or None, got {clamp_norm!r}")
        clamp_norm = 0.995 if ball else 1.3 * float(np.linalg.norm(sc.xy, axis=1).max(initial=0.0))
    img, _ = _clamp_norms(img, clamp_norm)

    if color_images_by == "top":
        if not len(sc.edges):
            raise ValueError("color_images_by='top' needs the hierarchy (or edges and levels)")
        group = top_groups(sc.edges, sc.levels)[lab]
        fmt = label_format or short_name
        group_names = {int(g): fmt(sc.names[int(g)]) if sc.names and g >= 0 else str(g) for g in np.unique(group)}
    elif color_images_by == "label":
        group = lab
        group_names = None
    else:
        raise ValueError(f"color_images_by must be 'top' or 'label', got {color_images_by!r}")

    fig, ax = _new_axes(ax, figsize)
    ax.set_aspect("equal")
    if ball:
        ax.set_xlim(-1.03, 1.03)
        ax.set_ylim(-1.03, 1.03)
        ax.set_axis_off()
        ax.add_patch(Circle((0, 0), 1.0, facecolor="0.985", edgecolor="0.15", linewidth=1.0, zorder=0,
                            gid="unit_circle"))
    else:
        lo, hi = _view_limits(np.vstack([sc.xy, img]), include_origin=geometry == "euclidean")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        _light_axes(ax)

    import matplotlib

    icm = matplotlib.colormaps[image_cmap] if isinstance(image_cmap, str) else image_cmap
    uniq = np.unique(group)
    rank = np.searchsorted(uniq, group)
    ncol = getattr(icm, "N", 256)
    icolors = np.asarray(icm((rank % ncol) / max(ncol - 1, 1) if ncol >= 256 else rank % ncol))
    order = np.random.default_rng(seed + 1).permutation(len(img))  # no group painted last over all others
    ax.scatter(img[order, 0], img[order, 1], s=image_size, c=icolors[order], alpha=image_alpha, edgecolors="none",
               zorder=0.7, gid="images", rasterized=len(img) > 2000)
    if len(sc.edges):
        if ball:
            segs = poincare_geodesics(sc.xy[sc.edges[:, 0]], sc.xy[sc.edges[:, 1]]).points
        else:
            segs = np.stack([sc.xy[sc.edges[:, 0]], sc.xy[sc.edges[:, 1]]], axis=1)
        a, w = _line_style(len(sc.edges), None, None)
        ax.add_collection(LineCollection(list(segs), colors="0.15", alpha=a, linewidths=w, zorder=1, gid="edges"),
                          autolim=False)
    _draw_nodes(ax, sc, marker_size=marker_size, level_names=level_names, legend=legend, label_format=label_format)
    if legend and group_names is not None and len(uniq) <= 12:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", ms=5, color=icolors[np.flatnonzero(group == g)[0]], alpha=0.8,
                          label=group_names[int(g)]) for g in uniq]
        first = ax.get_legend()
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False, fontsize=8,
                  title="images by ancestor", title_fontsize=8)
        if first is not None:
            ax.add_artist(first)
    label_ids = _select(label_levels, sc.levels, label_nodes, auto_budget=_LABEL_BUDGET)
    _draw_labels(ax, sc, label_ids, label_format=label_format, fontsize=fontsize, prefer_fn=_tangential)
    _title(ax, title)
    return _save(fig, save, dpi)


# =============================================================================
# training curves, per-label performance
# =============================================================================


def _history(result) -> list[dict]:
    if isinstance(result, (list, tuple)):
        return list(result)
    if isinstance(result, dict) and "history" in result:
        return list(result["history"])
    hist = getattr(result, "history", None)
    if hist is None:
        raise TypeError(f"expected a result with .history or a list of per-epoch dicts, got {type(result).__name__}")
    return list(hist)


def plot_training_curves(result, *, title: str | None = None, figsize=(9.0, 3.2), save=None, dpi: int = 200):
    """Loss (left) and link-prediction F1 on validation and test (right) per epoch.

    ``result``: an :class:`~conehier.pipeline.EmbedResult` (or anything with a
    ``history``) or the history list itself (dicts with ``epoch``, ``loss`` and, on
    evaluation epochs, ``valid_f1`` / ``test_f1``). The epoch of best validation F1
    is marked.
    """
    from matplotlib.figure import Figure

    hist = _history(result)
    if not hist:
        raise ValueError("the history is empty: nothing to plot")
    ep = np.array([h.get("epoch", i + 1) for i, h in enumerate(hist)], dtype=float)
    loss = np.array([h.get("loss", np.nan) for h in hist], dtype=float)
    fig = Figure(figsize=figsize, layout="constrained")
    ax_l, ax_f = fig.subplots(1, 2)
    ok = np.isfinite(loss)
    ax_l.plot(ep[ok], loss[ok], color="C0", lw=1.2, gid="loss")
    if ok.any() and (loss[ok] > 0).all() and loss[ok].max() / loss[ok].min() > 20:
        ax_l.set_yscale("log")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss")
    best_ep = None
    for key, label, color in (("valid_f1", "validation", "C1"), ("test_f1", "test", "C2")):
        pts = [(e, h[key]) for e, h in zip(ep, hist) if h.get(key) is not None]
        if pts:
            e, f = np.array(pts, dtype=float).T
            ax_f.plot(e, f, marker="o", ms=2.5, lw=1.2, color=color, label=label, gid=key)
            if key == "valid_f1":
                best_ep = e[int(np.argmax(f))]
    metrics = getattr(result, "metrics", None)
    if isinstance(metrics, dict) and "best_epoch" in metrics:
        best_ep = metrics["best_epoch"]
    if best_ep is not None:
        ax_f.axvline(best_ep, color="0.5", lw=0.8, ls=":", gid="best_epoch")
        ax_f.annotate(f"best {int(best_ep)}", (best_ep, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                      color="0.35", ha="right", rotation=90, va="bottom")
    ax_f.set_xlabel("epoch")
    ax_f.set_ylabel("link-prediction F1")
    ax_f.set_ylim(-0.02, 1.02)
    if ax_f.lines:
        ax_f.legend(frameon=False, fontsize=8)
    for a in (ax_l, ax_f):
        a.spines[["top", "right"]].set_visible(False)
        a.tick_params(labelsize=8)
        a.grid(alpha=0.25, lw=0.5)
    if title is None:
        cfg = getattr(result, "config", None)
        if cfg is not None:
            spec = getattr(result, "spec", None)
            title = f"{cfg.model.geometry}, d={cfg.model.dim}" + (f", {spec}" if spec else "")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, save, dpi)


def plot_per_label_performance(
    f1,
    counts,
    levels,
    *,
    level_names: Sequence[str] | None = None,
    bins: int = 20,
    cmap="viridis",
    title: str | None = None,
    figsize=None,
    save=None,
    dpi: int = 200,
):
    """F1 of each label against its number of training samples, one panel per level, with the
    marginal histograms of both (thesis Fig. 4.1).

    ``f1``, ``counts``, ``levels``: ``(C,)`` arrays (NaN F1 = label never predicted nor
    present: left out). Sample counts are on a log axis (symlog when a label has 0).
    """
    from matplotlib.figure import Figure

    f1 = np.asarray(f1, dtype=float).reshape(-1)
    counts = np.asarray(counts, dtype=float).reshape(-1)
    levels = np.asarray(levels, dtype=np.int64).reshape(-1)
    if not (len(f1) == len(counts) == len(levels)):
        raise ValueError("f1, counts and levels must have one entry per label, "
                         f"got {len(f1)}, {len(counts)}, {len(levels)}")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    finite = np.isfinite(f1)
    if finite.any() and (f1[finite].min() < 0 or f1[finite].max() > 1):
        raise ValueError("f1 must lie in [0, 1]")
    present = np.unique(levels)
    L = len(present)
    colors = _level_colors(int(levels.max()) + 1 if len(levels) else 1, cmap)
    fig = Figure(figsize=figsize or (3.3 * max(L, 1), 3.5), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(1, max(L, 1), wspace=0.02))
    cmax = max(float(counts.max(initial=1.0)), 1.0)
    zero = (counts == 0).any()
    cmin = max(float(counts[counts > 0].min(initial=1.0)), 1.0)
    edges_c = np.geomspace(cmin, max(cmax, cmin * 10), bins + 1)
    if zero:
        edges_c = np.concatenate([[0.0], edges_c])
    for sub, lvl in zip(subs, present):
        m = (levels == lvl) & finite
        gs = sub.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.04, hspace=0.04)
        ax = sub.add_subplot(gs[1, 0])
        hx = sub.add_subplot(gs[0, 0], sharex=ax)
        hy = sub.add_subplot(gs[1, 1], sharey=ax)
        col = colors[lvl]
        ax.scatter(counts[m], f1[m], s=10, color=col, alpha=0.7, edgecolors="none", gid=f"level{lvl}")
        if zero:
            ax.set_xscale("symlog", linthresh=1.0)
        else:
            ax.set_xscale("log")
        hx.hist(counts[levels == lvl], bins=edges_c, color=col, alpha=0.8)
        hy.hist(f1[m], bins=np.linspace(0, 1, bins + 1), orientation="horizontal", color=col, alpha=0.8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training samples", fontsize=8)
        ax.set_ylabel("F1", fontsize=8)
        hx.tick_params(labelbottom=False, labelsize=7)
        hy.tick_params(labelleft=False, labelsize=7)
        ax.tick_params(labelsize=7)
        for a in (ax, hx, hy):
            a.spines[["top", "right"]].set_visible(False)
        name = level_names[lvl] if level_names is not None and lvl < len(level_names) else f"level {lvl}"
        mean = float(np.mean(f1[m])) if m.any() else float("nan")
        hx.set_title(f"{name}: {int((levels == lvl).sum())} labels, mean F1 {mean:.2f}", fontsize=8.5)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, save, dpi)


# =============================================================================
# dispatcher and command line
# =============================================================================


def plot_embedding(result, *, kind: str | None = None, title="auto", save=None, **kwargs):
    """The picture of a 2-D embedding run chosen from its geometry.

    ``result``: an :class:`~conehier.pipeline.EmbedResult` (anything with
    ``embeddings``, ``hierarchy``, ``config.model.geometry`` / ``.K``, ``history``).
    ``kind``: ``"disk"`` (Poincaré disk; cones for hyperbolic entailment cones, none for
    Poincaré embeddings), ``"cones"`` (Euclidean cones), ``"order"`` (order
    embeddings), ``"curves"`` (:func:`plot_training_curves`); default from the
    geometry. Other keyword arguments go to the plot function.
    """
    geometry = result.config.model.geometry
    kind = kind or DEFAULT_KIND.get(geometry)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}" if kind
                         else f"no picture for geometry {geometry!r}")
    if kind == "curves":
        return plot_training_curves(result, save=save, **({} if title == "auto" else {"title": title}), **kwargs)
    if DEFAULT_KIND.get(geometry) != kind:
        raise ValueError(f"kind {kind!r} does not fit a {geometry!r} embedding (its picture is "
                         f"{DEFAULT_KIND.get(geometry)!r}, or 'curves')")
    emb = np.asarray(result.embeddings)
    if emb.ndim != 2 or emb.shape[1] != 2:
        raise ValueError(f"only 2-D embeddings can be drawn, this one is {emb.shape[-1]}-dimensional")
    if title == "auto":
        title = _auto_title(result)
    h = result.hierarchy
    K = float(result.config.model.K)
    if kind == "disk":
        if geometry == "poincare":
            kwargs.setdefault("cone_levels", None)
        return plot_poincare_disk(emb, h, K=K, title=title, save=save, **kwargs)
    if kind == "cones":
        return plot_euclidean_cones(emb, h, K=K, title=title, save=save, **kwargs)
    return plot_order_embedding(emb, h, title=title, save=save, **kwargs)


_PRETTY = {
    "hyperbolic-cones": "hyperbolic entailment cones",
    "euclidean-cones": "Euclidean entailment cones",
    "euclidean-cones-cosine": "Euclidean entailment cones (cosine)",
    "order": "order embeddings",
    "poincare": "Poincaré embeddings",
}


def _auto_title(result) -> str:
    geometry = result.config.model.geometry
    parts = [_PRETTY.get(geometry, geometry)]
    spec = getattr(result, "spec", None)
    if spec:
        parts.append(str(spec))
    m = getattr(result, "metrics", None) or {}
    rec = m.get("reconstruction") if isinstance(m, dict) else None
    if isinstance(rec, dict) and rec.get("f1") is not None:
        parts.append(f"reconstruction F1 {rec['f1']:.2f}")
    elif isinstance(m, dict) and m.get("test_f1") is not None:
        parts.append(f"test F1 {m['test_f1']:.2f}")
    return " · ".join(parts)


def add_plot_parser(subparsers):
    """Add ``conehier plot RUN_DIR [--kind disk|cones|order|curves] [--out FILE]`` to ``subparsers``."""
    p = subparsers.add_parser("plot", help="draw a saved embedding run (2-D picture or training curves)")
    p.add_argument("run_dir", help="a directory written by 'conehier embed --out' (EmbedResult.save)")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="disk | cones | order | curves (default: the picture of the run's geometry)")
    p.add_argument("--out", default=None, help="output file, .png/.pdf/.svg (default: RUN_DIR/<kind>.png)")
    p.add_argument("--label-levels", type=int, default=None, help="label the nodes of the top N levels")
    p.add_argument("--cone-levels", type=int, default=None, help="draw cones of the top N levels (0: none)")
    p.add_argument("--color-by", choices=["level", "top"], default=None,
                   help="colour nodes by level (default) or by their top ancestor's subtree")
    p.add_argument("--title", default="auto", help="figure title ('' for none)")
    p.add_argument("--dpi", type=int, default=200)
    p.set_defaults(func=plot_command)
    return p


def plot_command(args) -> int:
    """``conehier plot``: load ``args.run_dir`` and write the picture to ``args.out``."""
    from ..pipeline import EmbedResult  # the CLI layer: loading a saved run

    result = EmbedResult.load(args.run_dir)
    kind = args.kind or DEFAULT_KIND.get(result.config.model.geometry)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"{kind}.png"
    kwargs = {}
    if kind != "curves":
        if getattr(args, "label_levels", None) is not None:
            kwargs["label_levels"] = args.label_levels or None
        if getattr(args, "cone_levels", None) is not None:
            kwargs["cone_levels"] = args.cone_levels or None
        if getattr(args, "color_by", None) is not None:
            kwargs["color_by"] = args.color_by
    plot_embedding(result, kind=kind, title=getattr(args, "title", "auto"), save=out,
                   dpi=getattr(args, "dpi", 200), **kwargs)
    print(f"wrote {out}")
    return 0
