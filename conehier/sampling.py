"""Negative sampling for is-a pairs, vectorised in torch (CPU or CUDA).

A positive ``(u, v)`` says "v is-a u" (u the ancestor). A negative corrupts one
end: ``(u', v)`` (corrupted parent) or ``(u, v')`` (corrupted child), and is
never a true closure edge nor a self pair. With ``per_level=True`` (the thesis's
pick-per-level strategy) the ``j``-th corruption of a positive is drawn from
level ``(r + j) mod L`` for a random offset ``r``, so the ``k`` corruptions of one
positive come from ``k`` different levels (cycling when ``k > L``); otherwise
the corrupted end is uniform over the candidate nodes.

Candidate masks restrict which nodes may replace each end, e.g. images in a
joint image-label graph may replace a child but never a parent, so no
image-image pair is ever drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from .hierarchy.graph import Hierarchy


class _Pool:
    """Nodes allowed at one end, grouped by level for pick-per-level draws."""

    def __init__(self, mask: np.ndarray, levels: np.ndarray | None, device):
        nodes = np.flatnonzero(mask)
        if nodes.size == 0:
            raise ValueError("no candidate nodes to corrupt with: the candidate mask is all False")
        if levels is None:
            lv = np.zeros(nodes.size, np.int64)
        else:
            _, lv = np.unique(levels[nodes], return_inverse=True)  # compact non-empty levels
        order = np.argsort(lv, kind="stable")
        counts = np.bincount(lv)
        self.nodes = torch.as_tensor(nodes[order], device=device)
        self.start = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), device=device)
        self.count = torch.as_tensor(counts, device=device)
        self.num_levels = len(counts)
        self.size = nodes.size

    def draw_levels(self, level: torch.Tensor, gen) -> torch.Tensor:
        u = torch.rand(level.shape, generator=gen, device=level.device, dtype=torch.float64)
        idx = self.start[level] + (u * self.count[level]).long().clamp_max(self.count[level] - 1)
        return self.nodes[idx]

    def draw_uniform(self, shape, gen, device) -> torch.Tensor:
        return self.nodes[torch.randint(self.size, shape, generator=gen, device=device)]


class NegativeSampler:
    """Draws ``k_parent + k_child`` negatives per positive pair.

    Parameters
    ----------
    hierarchy:
        Gives the node count, the closure (the pairs never drawn) and the levels.
    closure_edges:
        Optional ``(M, 2)`` ancestor/descendant pairs to forbid instead of the
        hierarchy's closure (e.g. a joint graph with image nodes).
    n_nodes, levels:
        Override the hierarchy's node count / ``(n,)`` levels (joint graphs).
    parent_candidates, child_candidates:
        ``(n,)`` bool masks of the nodes that may replace the parent / child.
    """

    def __init__(
        self,
        hierarchy: Hierarchy | None = None,
        *,
        k_parent: int = 5,
        k_child: int = 5,
        per_level: bool = False,
        closure_edges: np.ndarray | None = None,
        n_nodes: int | None = None,
        levels: np.ndarray | None = None,
        parent_candidates: np.ndarray | None = None,
        child_candidates: np.ndarray | None = None,
        device: str | torch.device = "cpu",
        max_rounds: int = 64,
    ):
        if hierarchy is None and (closure_edges is None or n_nodes is None):
            raise ValueError("give a hierarchy, or closure_edges and n_nodes")
        n = int(n_nodes if n_nodes is not None else hierarchy.n)
        given = closure_edges is not None
        clo = np.asarray(closure_edges if given else hierarchy.closure_edges(), dtype=np.int64)
        if per_level and levels is None:
            if hierarchy is None:
                raise ValueError("per_level sampling needs levels (or a hierarchy)")
            levels = hierarchy.depth
        self.n = n
        self.k_parent, self.k_child = int(k_parent), int(k_child)
        self.per_level = per_level
        self.device = torch.device(device)
        self.max_rounds = max_rounds
        keys = clo[:, 0] * n + clo[:, 1] if clo.size else np.zeros(0, np.int64)
        if given:  # the hierarchy's closure edges are already sorted and unique
            keys = np.unique(keys)
        self._keys = torch.as_tensor(keys, device=self.device)
        lv = np.asarray(levels) if (per_level and levels is not None) else None
        pm = np.ones(n, bool) if parent_candidates is None else np.asarray(parent_candidates, bool)
        cm = np.ones(n, bool) if child_candidates is None else np.asarray(child_candidates, bool)
        for m, side in ((pm, "parent"), (cm, "child")):
            if m.shape != (n,):
                raise ValueError(f"{side}_candidates must have shape ({n},), got {m.shape}")
        self._pools = (_Pool(pm, lv, self.device), _Pool(cm, lv, self.device))
        # can node v get any negative parent / node u any negative child?
        if clo.size:
            anc_in_pool = np.bincount(clo[:, 1], weights=pm[clo[:, 0]], minlength=n)
            desc_in_pool = np.bincount(clo[:, 0], weights=cm[clo[:, 1]], minlength=n)
        else:
            anc_in_pool = desc_in_pool = np.zeros(n)
        self._can_parent = torch.as_tensor(pm.sum() - anc_in_pool - pm > 0, device=self.device)
        self._can_child = torch.as_tensor(cm.sum() - desc_in_pool - cm > 0, device=self.device)

    def is_positive(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """True where ``(u, v)`` is a forbidden pair: a closure edge or ``u == v``."""
        q = u * self.n + v
        if self._keys.numel() == 0:
            return u == v
        pos = torch.searchsorted(self._keys, q).clamp_max(self._keys.numel() - 1)
        return (self._keys[pos] == q) | (u == v)

    def _corrupt(self, fixed: torch.Tensor, k: int, pool: _Pool, side: int, gen) -> torch.Tensor:
        b = fixed.shape[0]
        if k == 0:
            return fixed.new_zeros((b, 0))
        dev = fixed.device
        if self.per_level:
            offset = torch.randint(pool.num_levels, (b, 1), generator=gen, device=dev)
            level = (offset + torch.arange(k, device=dev)) % pool.num_levels
            cand = pool.draw_levels(level, gen)
        else:
            level = None
            cand = pool.draw_uniform((b, k), gen, dev)
        fixed_k = fixed[:, None].expand(b, k)

        def bad_of(c):
            return self.is_positive(c, fixed_k) if side == 0 else self.is_positive(fixed_k, c)

        bad = bad_of(cand)
        rounds = 0
        while bool(bad.any()):
            rounds += 1
            if rounds > self.max_rounds:
                i = int(bad.any(1).nonzero()[0, 0])
                end = "parent" if side == 0 else "child"
                raise RuntimeError(
                    f"could not draw a negative {end} for the positive with fixed node {int(fixed[i])}: every "
                    "candidate forms a true edge (the hierarchy is too small or the candidate mask too narrow)"
                )
            if level is not None and rounds <= self.max_rounds // 2:
                new = pool.draw_levels(level[bad], gen)
            else:  # a level with no valid candidate: fall back to any node
                new = pool.draw_uniform((int(bad.sum()),), gen, dev)
            cand = cand.masked_scatter(bad, new)
            bad = bad_of(cand)
        return cand

    def _pairs(self, pos: torch.Tensor, k: int, side: int, gen) -> torch.Tensor:
        u, v = pos[:, 0], pos[:, 1]
        if side == 0:
            c = self._corrupt(v, k, self._pools[0], 0, gen)
            return torch.stack([c, v[:, None].expand_as(c)], dim=-1)
        c = self._corrupt(u, k, self._pools[1], 1, gen)
        return torch.stack([u[:, None].expand_as(c), c], dim=-1)

    def sample(self, positives: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, k_parent + k_child, 2)`` negatives for ``(B, 2)`` positives.

        Row ``i`` holds ``k_parent`` pairs ``(u', v_i)`` then ``k_child`` pairs
        ``(u_i, v')``. Where one end cannot be corrupted at all (e.g. the child
        of a root that is an ancestor of every node), those slots corrupt the
        other end instead.
        """
        positives = torch.as_tensor(positives, device=self.device)
        if positives.ndim != 2 or positives.shape[1] != 2:
            raise ValueError(f"positives must have shape (B, 2), got {tuple(positives.shape)}")
        u, v = positives[:, 0], positives[:, 1]
        feas_p, feas_c = self._can_parent[v], self._can_child[u]
        stuck = ~(feas_p | feas_c)
        if bool(stuck.any()):
            i = int(stuck.nonzero()[0, 0])
            raise RuntimeError(
                f"could not draw a negative for the positive ({int(u[i])}, {int(v[i])}): every candidate at "
                "either end forms a true edge (the hierarchy is too small or the candidate masks too narrow)"
            )
        out = positives.new_empty((positives.shape[0], self.k_parent + self.k_child, 2))
        for slots, k, side in (
            (slice(0, self.k_parent), self.k_parent, torch.where(feas_p, 0, 1)),
            (slice(self.k_parent, None), self.k_child, torch.where(feas_c, 1, 0)),
        ):
            if k == 0:
                continue
            for s in (0, 1):
                rows = side == s
                if bool(rows.all()):
                    out[:, slots] = self._pairs(positives, k, s, generator)
                elif bool(rows.any()):
                    out[rows, slots] = self._pairs(positives[rows], k, s, generator)
        return out


def sample_negatives(
    hierarchy: Hierarchy, positives: np.ndarray, *, k: int = 5, seed: int = 0, per_level: bool = False, **kwargs
) -> np.ndarray:
    """``(B * 2k, 2)`` fixed negatives (``k`` corrupted parents + ``k`` children each) as numpy."""
    sampler = NegativeSampler(hierarchy, k_parent=k, k_child=k, per_level=per_level, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    pos = torch.as_tensor(np.asarray(positives, dtype=np.int64).reshape(-1, 2))
    return sampler.sample(pos, gen).reshape(-1, 2).numpy()
