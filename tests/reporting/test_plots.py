"""Tests for conehier.reporting.plots: what is drawn, on tiny hand-made point sets (no training).

The geometry is checked on the artists themselves: every drawn geodesic arc is
re-fitted with a circle through three of its samples, which must be orthogonal to
the unit circle (``|c|^2 = 1 + r^2``) and carry all the other samples.
"""

from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import matplotlib.legend  # noqa: E402
import matplotlib.text  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from conehier.data.builtin import toy_tree  # noqa: E402
from conehier.geometry.energies import euclidean_cone_aperture, hyperbolic_cone_aperture  # noqa: E402
from conehier.geometry.functional import hyperbolic_inner_radius  # noqa: E402
from conehier.reporting import plots as P  # noqa: E402

K = 0.1


# ----------------------------------------------------------------------------- fixtures
def radial_layout(h, radii):
    """A hand-made embedding of a tree: each subtree in its own angular sector."""
    ang = np.zeros(h.n)
    width = np.full(h.n, 2 * np.pi)
    for level in h.nodes_per_level()[1:]:
        for v in level:
            p = int(h.parents(v)[0])
            kids = list(h.children(p))
            width[v] = width[p] / len(kids)
            ang[v] = ang[p] - width[p] / 2 + width[v] * (kids.index(v) + 0.5)
    r = np.asarray(radii, dtype=float)[h.depth]
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


@pytest.fixture
def tree():
    return toy_tree(2, 3)  # 13 nodes, 12 edges


@pytest.fixture
def disk_points(tree):
    xy = radial_layout(tree, [0.0, 0.45, 0.8])
    xy[0] = [0.03, -0.02]  # the root just off the origin (its cone needs an axis)
    return xy


def by_gid(fig, gid, cls=None):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    if cls is not None:
        found = [a for a in found if isinstance(a, cls)]
    return found


def one(fig, gid, cls=None):
    found = by_gid(fig, gid, cls)
    assert len(found) == 1, f"expected one artist {gid!r}, found {len(found)}"
    return found[0]


def circle_through(p, q, s):
    """Centre and radius of the circle through three points."""
    a = 2 * np.array([q - p, s - p])
    b = np.array([q @ q - p @ p, s @ s - p @ p])
    c = np.linalg.solve(a, b)
    return c, float(np.linalg.norm(p - c))


def cross(u, v):
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def psi_hyperbolic(x):
    r = np.linalg.norm(x, axis=-1)
    return np.arcsin(np.clip(K * (1 - r * r) / r, -1, 1))


# ----------------------------------------------------------------------------- geodesics
def test_geodesics_exact_on_random_pairs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (200, 2))
    y = rng.uniform(-1, 1, (200, 2))
    x *= (rng.uniform(0.01, 0.99, 200) / np.linalg.norm(x, axis=1))[:, None]
    y *= (rng.uniform(0.01, 0.99, 200) / np.linalg.norm(y, axis=1))[:, None]
    arcs = P.poincare_geodesics(x, y, n_points=50)
    assert arcs.points.shape == (200, 50, 2)
    np.testing.assert_allclose(arcs.points[:, 0], x, atol=1e-12)
    np.testing.assert_allclose(arcs.points[:, -1], y, atol=1e-12)
    assert (np.linalg.norm(arcs.points, axis=-1) < 1).all()
    assert not arcs.straight.any()
    c, r = arcs.center, arcs.radius
    np.testing.assert_allclose(np.sum(c * c, 1), 1 + r * r, rtol=1e-9)
    dist = np.linalg.norm(arcs.points - c[:, None, :], axis=-1)
    np.testing.assert_allclose(dist, np.broadcast_to(r[:, None], dist.shape), rtol=1e-7)
    # the sampled arc is the short one inside the disk: it never goes around the circle
    step = np.linalg.norm(np.diff(arcs.points, axis=1), axis=-1).sum(1)
    chord = np.linalg.norm(y - x, axis=1)
    assert (step >= chord - 1e-12).all() and (step <= chord * math.pi / 2 + 1e-9).all()


def test_geodesics_collinear_with_origin_are_diameters():
    x = np.array([[0.5, 0.5], [0.0, 0.0], [0.3, 0.0], [0.2, 0.1]])
    y = np.array([[-0.25, -0.25], [0.0, 0.9], [0.9, 0.0], [0.2 + 1e-13, 0.1 + 1e-13]])
    arcs = P.poincare_geodesics(x, y, n_points=9)
    assert arcs.straight[:3].all()
    pts = arcs.points[:3]
    assert np.abs(cross(pts - x[:3, None, :], y[:3, None, :] - x[:3, None, :])).max() < 1e-12  # on the line x-y
    assert np.abs(cross(pts[0], np.array([1.0, 1.0]))).max() < 1e-12  # and that line runs through 0
    np.testing.assert_allclose(pts[:, -1], y[:3], atol=1e-12)
    np.testing.assert_allclose(arcs.points[3, -1], y[3], atol=1e-12)  # coincident-ish points: no blow-up
    assert np.isfinite(arcs.points).all()


def test_geodesics_nearly_collinear_stay_accurate():
    x = np.array([[0.5, 0.0]])
    y = np.array([[-0.7, 1e-7]])
    arcs = P.poincare_geodesics(x, y, n_points=33)
    assert not arcs.straight[0] and arcs.radius[0] > 1e5
    mid = arcs.points[0, 1:-1]
    assert (np.linalg.norm(mid, axis=1) < 1).all()
    # every sample on the huge circle: |p - c| = r to the precision a circle of that size allows
    d = np.linalg.norm(mid - arcs.center[0], axis=1)
    np.testing.assert_allclose(d, arcs.radius[0], rtol=1e-9)


# ----------------------------------------------------------------------------- Poincaré disk
def test_disk_draws_one_geodesic_arc_per_edge(tree, disk_points):
    fig = P.plot_poincare_disk(disk_points, tree, K=K, cone_levels=None)
    edges = tree.transitive_reduction()
    segs = one(fig, "edges", LineCollection).get_segments()
    assert len(segs) == len(edges) == 12
    for (u, v), s in zip(edges, segs):
        s = np.asarray(s)
        assert (np.linalg.norm(s, axis=1) < 1).all(), "arc leaves the unit disk"
        np.testing.assert_allclose(s[0], disk_points[u], atol=1e-12)
        np.testing.assert_allclose(s[-1], disk_points[v], atol=1e-12)
        straight = abs(cross(disk_points[u], disk_points[v])) < 1e-9
        if straight:
            assert np.abs(cross(s, s[-1] - s[0])).max() < 1e-9
            continue
        c, r = circle_through(s[0], s[len(s) // 2], s[-1])
        assert abs(c @ c - (1 + r * r)) < 1e-8 * (1 + r * r), "arc is not orthogonal to the unit circle"
        np.testing.assert_allclose(np.linalg.norm(s - c, axis=1), r, rtol=1e-8)
    assert not by_gid(fig, "cones") and not by_gid(fig, "inner_ball")
    assert one(fig, "unit_circle", Circle).get_radius() == 1.0


def test_disk_hyperbolic_cones(tree, disk_points):
    fig = P.plot_poincare_disk(disk_points, tree, K=K, cone_levels="all")
    n = tree.n
    polys = one(fig, "cones", PolyCollection).get_paths()
    bounds = [np.asarray(s) for s in one(fig, "cone_boundaries", LineCollection).get_segments()]
    assert len(polys) == n and len(bounds) == 2 * n
    psi = psi_hyperbolic(disk_points)
    for i in range(n):
        x = disk_points[i]
        axis = x / np.linalg.norm(x)
        for side, b in enumerate(bounds[2 * i: 2 * i + 2]):
            np.testing.assert_allclose(b[0], x, atol=1e-12)  # the boundary passes through its apex
            assert abs(np.linalg.norm(b[-1]) - 1) < 1e-9  # and ends on the unit circle
            assert (np.linalg.norm(b[:-1], axis=1) < 1).all()
            c, r = circle_through(b[0], b[len(b) // 2], b[-1])
            assert abs(c @ c - (1 + r * r)) < 1e-7 * (1 + r * r), "boundary is not a geodesic"
            np.testing.assert_allclose(np.linalg.norm(b - c, axis=1), r, rtol=1e-7)
            # the angle at the apex between the boundary's tangent and the axis is psi(x)
            tangent = np.array([-(x - c)[1], (x - c)[0]]) / r
            angle = math.acos(min(1.0, abs(tangent @ axis)))
            assert angle == pytest.approx(psi[i], abs=1e-9)
            # ... on the side given by the order: boundary 0 turns counter-clockwise
            assert np.sign(cross(axis, b[1] - b[0])) == (1 if side == 0 else -1)
        # the cone region holds its axis and not the opposite direction
        path = MplPath(np.asarray(polys[i].vertices))
        r0 = np.linalg.norm(x)
        assert path.contains_point(axis * (r0 + (1 - r0) / 2))
        assert not path.contains_point(-axis * 0.5)
    inner = one(fig, "inner_ball", Circle)
    assert inner.get_radius() == pytest.approx(hyperbolic_inner_radius(K))


def test_hyperbolic_cone_regions_match_library_aperture():
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.9, 0.9, (50, 2))
    x = x[(np.linalg.norm(x, axis=1) < 0.98) & (np.linalg.norm(x, axis=1) > 0.02)]
    cones = P.hyperbolic_cone_regions(x, K=0.2)
    ref = hyperbolic_cone_aperture(torch.as_tensor(x), K=0.2).numpy()
    np.testing.assert_allclose(cones.psi, ref, rtol=1e-12)
    np.testing.assert_allclose(np.sum(cones.center ** 2, -1), 1 + cones.radius ** 2, rtol=1e-9)
    # the ideal points are x (+) u: on the unit circle, symmetric about the axis
    np.testing.assert_allclose(np.linalg.norm(cones.ideal, axis=-1), 1.0, atol=1e-12)
    phi = np.arctan2(x[:, 1], x[:, 0])
    b0 = P._wrap(np.arctan2(cones.ideal[:, 0, 1], cones.ideal[:, 0, 0]) - phi)
    b1 = P._wrap(np.arctan2(cones.ideal[:, 1, 1], cones.ideal[:, 1, 0]) - phi)
    np.testing.assert_allclose(b0, -b1, atol=1e-9)
    assert (b0 >= 0).all()
    with pytest.raises(ValueError, match="origin"):
        P.hyperbolic_cone_regions([[0.0, 0.0]])


def test_disk_rejects_points_outside_the_ball(tree, disk_points):
    bad = disk_points.copy()
    bad[3] = [0.9, 0.9]
    with pytest.raises(ValueError, match="unit disk"):
        P.plot_poincare_disk(bad, tree)
    with pytest.raises(ValueError, match="shape"):
        P.plot_poincare_disk(np.zeros((13, 5)), tree)
    nan = disk_points.copy()
    nan[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        P.plot_poincare_disk(nan, tree)
    with pytest.raises(ValueError, match="13 nodes but there are 12"):
        P.plot_poincare_disk(disk_points[:12], tree)


# ----------------------------------------------------------------------------- Euclidean cones
def test_euclidean_cone_wedges(tree, disk_points):
    xy = 3 * disk_points
    fig = P.plot_euclidean_cones(xy, tree, K=K, cone_levels=2)
    ids = np.flatnonzero(tree.depth < 2)
    polys = [np.asarray(p.vertices) for p in one(fig, "cones", PolyCollection).get_paths()]
    bounds = [np.asarray(s) for s in one(fig, "cone_boundaries", LineCollection).get_segments()]
    assert len(polys) == len(bounds) == len(ids) == 4
    for i, poly, b in zip(ids, polys, bounds):
        x = xy[i]
        np.testing.assert_allclose(poly[0], x, atol=1e-12)  # apex
        np.testing.assert_allclose(b[1], x, atol=1e-12)  # both boundary rays leave the apex
        e1, e2 = b[0] - x, b[2] - x
        half = 0.5 * math.acos(np.clip(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2), -1, 1))
        assert half == pytest.approx(math.asin(min(1.0, K / np.linalg.norm(x))), abs=1e-9)
        bisector = e1 / np.linalg.norm(e1) + e2 / np.linalg.norm(e2)
        assert abs(cross(bisector, x)) < 1e-9 * np.linalg.norm(bisector) * np.linalg.norm(x)
        assert bisector @ x > 0  # the axis points away from the origin
    segs = one(fig, "edges", LineCollection).get_segments()
    assert len(segs) == 12
    assert one(fig, "inner_ball", Circle).get_radius() == K


def test_euclidean_cone_wedges_match_library_aperture():
    x = np.array([[0.05, 0.0], [0.3, 0.4], [-2.0, 1.0]])
    psi, phi, polys = P.euclidean_cone_wedges(x, K=K, radius=5.0, n_arc=17)
    np.testing.assert_allclose(psi, euclidean_cone_aperture(torch.as_tensor(x), K=K).numpy(), rtol=1e-12)
    assert psi[0] == pytest.approx(math.pi / 2)  # inside the inner ball: a half-plane
    assert polys.shape == (3, 18, 2)
    np.testing.assert_allclose(np.linalg.norm(polys[:, 1:] - x[:, None], axis=-1), 5.0)


# ----------------------------------------------------------------------------- order embeddings
def test_order_quadrants(tree):
    xy = np.stack([tree.depth + 0.2 * np.arange(tree.n) % 3, tree.depth + 0.1 * np.arange(tree.n)], 1)
    fig = P.plot_order_embedding(xy, tree, cone_nodes=[0, 2, 5])
    polys = [np.asarray(p.vertices)[:4] for p in one(fig, "cones", PolyCollection).get_paths()]
    assert len(polys) == 3
    ax = fig.axes[0]
    for i, poly in zip([0, 2, 5], polys):
        np.testing.assert_allclose(poly.min(0), xy[i])  # the quadrant's corner is the point
        np.testing.assert_allclose(poly[0], xy[i])
        assert poly[:, 0].max() >= ax.get_xlim()[1] and poly[:, 1].max() >= ax.get_ylim()[1]
        sides = np.diff(np.vstack([poly, poly[:1]]), axis=0)
        assert (np.count_nonzero(np.abs(sides) > 0, axis=1) == 1).all()  # axis-aligned
    assert len(one(fig, "edges", LineCollection).get_segments()) == 12


# ----------------------------------------------------------------------------- nodes, labels, legend
def test_levels_legend_and_labels(tree, disk_points):
    fig = P.plot_poincare_disk(disk_points, tree, level_names=["root", "a", "b"], label_levels=2)
    for lvl, count in enumerate([1, 3, 9]):
        sc = one(fig, f"level{lvl}", PathCollection)
        assert len(sc.get_offsets()) == count
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["root (1)", "a (3)", "b (9)"]
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert texts <= {"root", "0", "1", "2"} and "root" in texts and len(texts) >= 3
    fig = P.plot_poincare_disk(disk_points, tree, label_levels=None, legend=False)
    assert not fig.axes[0].texts and fig.axes[0].get_legend() is None


def test_labels_skip_overlaps_for_many_nodes():
    h = toy_tree(3, 7)  # 400 nodes
    xy = radial_layout(h, [0.0, 0.4, 0.7, 0.93])
    xy[0] = [0.01, 0.0]
    fig = P.plot_poincare_disk(xy, h, label_levels="all", fontsize=7)
    texts = fig.axes[0].texts
    assert 8 <= len(texts) < 400  # the top levels are labelled, the rest dropped
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # measure the rendered text
    boxes = [matplotlib.text.Text.get_window_extent(t) for t in texts]  # the text, not its leader line
    overlaps = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert overlaps <= len(boxes) // 10


def test_top_groups_and_color_by_top(tree, disk_points):
    g = P.top_groups(tree.transitive_reduction(), tree.depth)
    kids = tree.children(0)
    assert g[0] == 0 and all(g[k] == k for k in kids)
    for k in kids:
        assert (g[tree.children(k)] == k).all()
    # a forest: the roots are the tops
    forest = np.array([[0, 2], [1, 3], [2, 4], [3, 5]])
    np.testing.assert_array_equal(P.top_groups(forest, [0, 0, 1, 1, 2, 2]), [0, 1, 0, 1, 0, 1])
    fig = P.plot_poincare_disk(disk_points, tree, color_by="top", cone_levels="all")
    ax = fig.axes[0]
    legends = [a for a in ax.get_children() if isinstance(a, matplotlib.legend.Legend)]
    texts = sorted(t.get_text() for leg in legends for t in leg.get_texts())
    assert texts == sorted(["level 0 (1)", "level 1 (3)", "level 2 (9)", "0 (4)", "1 (4)", "2 (4)"])
    colors = one(fig, "level2").get_facecolors()
    assert len({tuple(c) for c in np.round(colors, 6)}) == 3  # one hue per subtree
    cone_colors = one(fig, "cones").get_facecolors()
    for k in kids:  # a child's cone has its subtree's hue
        sub = tree.children(k)
        np.testing.assert_allclose(cone_colors[k][:3], cone_colors[sub[0]][:3])
    with pytest.raises(ValueError, match="color_by"):
        P.plot_poincare_disk(disk_points, tree, color_by="family")


def test_crowded_labels_get_leader_lines():
    h = toy_tree(1, 6)
    xy = np.vstack([[0.0, 0.0], 5 + 0.02 * np.stack([np.cos(np.arange(6)), np.sin(np.arange(6))], 1)])
    fig = P.plot_order_embedding(xy, h, label_levels="all", cone_levels=None)
    texts = fig.axes[0].texts
    assert len(texts) == 7  # all placed, the crowded ones at a distance
    assert any(t.arrow_patch is not None for t in texts)


def test_short_name():
    assert P.short_name("even-toed_ungulate.n.01") == "even-toed ungulate"
    assert P.short_name("Papilio_arcturus") == "Papilio arcturus"
    assert P.short_name("1.0.2") == "1.0.2"


# ----------------------------------------------------------------------------- joint embeddings
def test_joint_embedding_clamps_images(tree, disk_points):
    labels = 3 * disk_points
    rng = np.random.default_rng(0)
    leaf = np.flatnonzero(tree.depth == 2)
    lab = rng.choice(leaf, 300)
    img = labels[lab] * rng.uniform(2, 20, (300, 1))
    fig = P.plot_joint_embedding(labels, img, lab, tree, clamp_norm=3.0)
    pts = one(fig, "images", PathCollection).get_offsets()
    assert len(pts) == 300
    assert np.linalg.norm(pts, axis=1).max() <= 3.0 + 1e-12
    # directions kept
    d_in = img / np.linalg.norm(img, axis=1, keepdims=True)
    d_out = np.asarray(pts) / np.linalg.norm(pts, axis=1, keepdims=True)
    assert np.allclose(np.sort(d_in[:, 0]), np.sort(d_out[:, 0]))
    assert len(one(fig, "edges", LineCollection).get_segments()) == 12
    assert one(fig, "level0", PathCollection).get_zorder() > one(fig, "images").get_zorder()
    fig = P.plot_joint_embedding(disk_points, img / 100, lab, tree, geometry="poincare", max_images=50)
    assert len(one(fig, "images").get_offsets()) == 50
    with pytest.raises(ValueError, match="image_labels"):
        P.plot_joint_embedding(labels, img, lab[:10], tree)


# ----------------------------------------------------------------------------- curves, per label
def history():
    return [{"epoch": e, "loss": 100.0 / e, **({"valid_f1": 1 - 1 / e, "test_f1": 0.9 - 1 / e} if e % 5 == 0 else {})}
            for e in range(1, 31)]


def test_training_curves():
    fig = P.plot_training_curves(history())
    ax_l, ax_f = fig.axes
    loss = one(fig, "loss")
    np.testing.assert_allclose(loss.get_ydata(), [100.0 / e for e in range(1, 31)])
    assert ax_l.get_yscale() == "log"
    valid, test = one(fig, "valid_f1"), one(fig, "test_f1")
    np.testing.assert_allclose(valid.get_xdata(), [5, 10, 15, 20, 25, 30])
    np.testing.assert_allclose(test.get_ydata(), [0.9 - 1 / e for e in (5, 10, 15, 20, 25, 30)])
    assert one(fig, "best_epoch").get_xdata()[0] == 30
    result = SimpleNamespace(history=history(), metrics={"best_epoch": 20},
                             config=SimpleNamespace(model=SimpleNamespace(geometry="order", dim=2)), spec="toy:2,3")
    fig = P.plot_training_curves(result)
    assert one(fig, "best_epoch").get_xdata()[0] == 20
    assert "order" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="empty"):
        P.plot_training_curves([])


def test_per_label_performance():
    rng = np.random.default_rng(0)
    levels = np.repeat([0, 1, 2], [4, 10, 30])
    f1 = rng.uniform(0, 1, 44)
    counts = rng.integers(0, 1000, 44)
    fig = P.plot_per_label_performance(f1, counts, levels, level_names=["family", "genus", "species"])
    scatters = [a for sub in fig.subfigs for ax in sub.axes for a in ax.collections]
    assert sorted(len(s.get_offsets()) for s in scatters) == [4, 10, 30]
    assert len(fig.subfigs) == 3 and all(len(s.axes) == 3 for s in fig.subfigs)  # panel + 2 marginals
    titles = [s.axes[1].get_title() for s in fig.subfigs]
    assert titles[0].startswith("family: 4 labels")
    with pytest.raises(ValueError, match="one entry per label"):
        P.plot_per_label_performance(f1[:3], counts, levels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        P.plot_per_label_performance(f1 + 1, counts, levels)


# ----------------------------------------------------------------------------- dispatcher, saving, CLI
def fake_result(geometry, points, h, dim=2):
    cfg = SimpleNamespace(model=SimpleNamespace(geometry=geometry, K=K, dim=dim))
    return SimpleNamespace(config=cfg, embeddings=points, hierarchy=h, history=history(),
                           metrics={"test_f1": 0.5}, spec="toy:2,3")


def test_dispatcher_picks_the_picture(tree, disk_points):
    fig = P.plot_embedding(fake_result("hyperbolic-cones", disk_points, tree))
    assert by_gid(fig, "cones") and by_gid(fig, "unit_circle")
    assert fig.axes[0].get_title() == "hyperbolic entailment cones · toy:2,3 · test F1 0.50"
    fig = P.plot_embedding(fake_result("poincare", disk_points, tree))
    assert by_gid(fig, "unit_circle") and not by_gid(fig, "cones")
    fig = P.plot_embedding(fake_result("euclidean-cones", 3 * disk_points, tree))
    assert by_gid(fig, "cones") and not by_gid(fig, "unit_circle")
    assert by_gid(fig, "inner_ball")
    fig = P.plot_embedding(fake_result("order", 3 * disk_points, tree))
    assert by_gid(fig, "cones") and not by_gid(fig, "inner_ball")
    fig = P.plot_embedding(fake_result("order", 3 * disk_points, tree), kind="curves")
    assert by_gid(fig, "loss")
    with pytest.raises(ValueError, match="2-D"):
        P.plot_embedding(fake_result("order", np.zeros((13, 5)), tree, dim=5))
    with pytest.raises(ValueError, match="does not fit"):
        P.plot_embedding(fake_result("order", 3 * disk_points, tree), kind="disk")


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
@pytest.mark.parametrize("kind", ["disk", "cones", "order", "curves", "per_label", "joint"])
def test_save_formats(tmp_path, tree, disk_points, suffix, magic, kind):
    path = tmp_path / "sub" / f"fig{suffix}"
    if kind == "disk":
        fig = P.plot_poincare_disk(disk_points, tree, save=path)
    elif kind == "cones":
        fig = P.plot_euclidean_cones(3 * disk_points, tree, save=path)
    elif kind == "order":
        fig = P.plot_order_embedding(3 * disk_points, tree, save=path)
    elif kind == "curves":
        fig = P.plot_training_curves(history(), save=path)
    elif kind == "per_label":
        fig = P.plot_per_label_performance([0.1, 0.5, 0.9], [0, 10, 100], [0, 1, 1], save=path)
    else:
        fig = P.plot_joint_embedding(disk_points, disk_points[[5, 6]] * 3, [5, 6], tree, save=path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.read_bytes()[:5].startswith(magic)


def test_no_pyplot_figures_left_open(tree, disk_points):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    P.plot_poincare_disk(disk_points, tree)
    P.plot_training_curves(history())
    assert plt.get_fignums() == before


def test_draws_into_a_given_axes(tree, disk_points):
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots(1, 2)
    out = P.plot_poincare_disk(disk_points, tree, ax=axes[1])
    assert out is fig and by_gid(fig, "edges") and not axes[0].collections


def test_plot_command(tmp_path, tree, disk_points):
    from conehier.pipeline import EmbedResult, make_config

    run = tmp_path / "run"
    EmbedResult(config=make_config("hyperbolic-cones", 2), names=tree.names, edges=tree.edges,
                embeddings=disk_points.astype(np.float32), metrics={"test_f1": 0.5}, history=history(),
                spec="toy:2,3").save(run)
    parser = argparse.ArgumentParser()
    P.add_plot_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", str(run)])
    assert args.func(args) == 0
    assert (run / "disk.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "curves.svg"
    args = parser.parse_args(["plot", str(run), "--kind", "curves", "--out", str(out)])
    assert args.func(args) == 0 and out.read_bytes()[:5] == b"<?xml"
    args = parser.parse_args(["plot", str(run), "--color-by", "top", "--cone-levels", "0", "--out",
                              str(tmp_path / "top.pdf")])
    assert args.func(args) == 0 and (tmp_path / "top.pdf").read_bytes()[:4] == b"%PDF"
    args = parser.parse_args(["plot", str(run), "--kind", "order"])
    with pytest.raises(ValueError, match="does not fit"):
        args.func(args)
