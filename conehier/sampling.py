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


_HASH_MULT = 0x9E3779B97F4A7C15 - (1 << 64)  # Fibonacci hashing constant as a signed int64


def _hash(keys, bits: int):
    """Multiplicative hash of non-negative int64 keys into ``[0, 2**bits)`` (numpy or torch, wrapping)."""
    if isinstance(keys, np.ndarray):
        with np.errstate(over="ignore"):
            h = keys.astype(np.int64) * np.int64(_HASH_MULT)
        return (h >> np.int64(64 - bits)) & np.int64((1 << bits) - 1)
    return ((keys * _HASH_MULT) >> (64 - bits)) & ((1 << bits) - 1)


class _Pool:
    """Nodes allowed at one end, grouped by level for pick-per-level draws."""

    def __init__(self, mask: np.ndarray, levels: np.ndarray | None, device, weights: np.ndarray | None = None):
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
        self.cdf = None
        if weights is not None:
            w = np.asarray(weights, np.float64)[nodes[order]]
            if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError("sampling weights must be finite, non-negative and not all zero")
            self.cdf = torch.as_tensor(np.cumsum(w) / w.sum(), device=device)

    def draw_levels(self, level: torch.Tensor, gen) -> torch.Tensor:
        u = torch.rand(level.shape, generator=gen, device=level.device, dtype=torch.float64)
        idx = self.start[level] + (u * self.count[level]).long().clamp_max(self.count[level] - 1)
        return self.nodes[idx]

    def draw_uniform(self, shape, gen, device) -> torch.Tensor:
        if self.cdf is not None:  # weighted: inverse-CDF draw
            u = torch.rand(shape, generator=gen, device=device, dtype=torch.float64)
            return self.nodes[torch.searchsorted(self.cdf, u).clamp_max(self.size - 1)]
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
    weights:
        ``(n,)`` non-negative weights for the corrupted end instead of uniform draws,
        e.g. :func:`degree_weights` (word2vec-style ``count ** 0.75``).
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
        max_rounds: int = 16,
        weights: np.ndarray | None = None,
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
        # a hashed bit table in front of the sorted keys: most queries are answered by one
        # gather; only its ~2% false positives (and the true hits) need the binary search
        self._hash_bits = int(min(28, max(16, np.ceil(np.log2(max(len(keys), 1) * 32)))))
        table = np.zeros(1 << self._hash_bits, bool)
        table[_hash(keys, self._hash_bits)] = True
        self._table = torch.as_tensor(table, device=self.device)
        self._keys_np = keys
        self._rkeys_np = np.sort((keys % n) * n + keys // n)  # (child, parent) order
        lv = np.asarray(levels) if (per_level and levels is not None) else None
        pm = np.ones(n, bool) if parent_candidates is None else np.asarray(parent_candidates, bool)
        cm = np.ones(n, bool) if child_candidates is None else np.asarray(child_candidates, bool)
        for m, side in ((pm, "parent"), (cm, "child")):
            if m.shape != (n,):
                raise ValueError(f"{side}_candidates must have shape ({n},), got {m.shape}")
        if weights is not None and per_level:
            raise ValueError("weighted sampling (power) and per_level sampling are exclusive")
        self._pools = (_Pool(pm, lv, self.device, weights), _Pool(cm, lv, self.device, weights))
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
        hit = self._table[_hash(q, self._hash_bits)]
        idx = hit.nonzero(as_tuple=True)
        if idx[0].numel():
            qq = q[idx]
            pos = torch.searchsorted(self._keys, qq).clamp_max(self._keys.numel() - 1)
            hit = hit.index_put(idx, self._keys[pos] == qq)
        return hit | (u == v)

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
        pairs_bad = (lambda c, f: self.is_positive(c, f)) if side == 0 else (lambda c, f: self.is_positive(f, c))
        cand = cand.reshape(-1).clone()
        flat_fixed = fixed_k.reshape(-1)
        flat_level = level.reshape(-1) if level is not None else None
        idx = pairs_bad(cand, flat_fixed).nonzero().squeeze(1)  # re-draw only the bad slots
        rounds = 0
        while idx.numel():
            rounds += 1
            if rounds > self.max_rounds:  # rare: draw from the exact set of valid candidates
                bad = torch.zeros_like(cand, dtype=torch.bool)
                bad[idx] = True
                cand = self._exact_fill(cand, bad, flat_fixed, pool, side, gen)
                break
            if flat_level is not None and rounds <= self.max_rounds // 2:
                new = pool.draw_levels(flat_level[idx], gen)
            else:  # a level with no valid candidate: fall back to any node
                new = pool.draw_uniform((idx.numel(),), gen, dev)
            cand[idx] = new
            still = pairs_bad(new, flat_fixed[idx])
            idx = idx[still]
        return cand.reshape(b, k)

    def _exact_fill(self, cand, bad, fixed_k, pool: _Pool, side: int, gen) -> torch.Tensor:
        """Replace the still-bad candidates by uniform draws from each fixed node's valid set."""
        n = self.n
        stuck = fixed_k[bad]
        pool_nodes = pool.nodes.cpu().numpy()
        new = torch.empty_like(stuck)
        for f in torch.unique(stuck).tolist():  # a handful of near-universal ancestors/descendants
            keys = self._keys_np if side == 1 else self._rkeys_np
            lo, hi = np.searchsorted(keys, [f * n, (f + 1) * n])
            related = keys[lo:hi] - f * n
            valid = np.setdiff1d(pool_nodes, np.append(related, f), assume_unique=False)
            sel = stuck == f
            if valid.size == 0:
                end = "parent" if side == 0 else "child"
                raise RuntimeError(
                    f"could not draw a negative {end} for the positive with fixed node {f}: every candidate "
                    "forms a true edge (the hierarchy is too small or the candidate mask too narrow)"
                )
            pick = torch.randint(valid.size, (int(sel.sum()),), generator=gen, device=cand.device)
            new[sel] = torch.as_tensor(valid, device=cand.device)[pick]
        return cand.masked_scatter(bad, new)

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


def degree_weights(pairs: np.ndarray, n: int, power: float = 0.75) -> np.ndarray:
    """``(n,)`` weights ``count ** power`` with ``count`` a node's occurrences in ``pairs`` (at least 1)."""
    counts = np.bincount(np.asarray(pairs, np.int64).ravel(), minlength=n).astype(np.float64)
    return np.maximum(counts, 1.0) ** power


def sample_negatives(
    hierarchy: Hierarchy, positives: np.ndarray, *, k: int = 5, seed: int = 0, per_level: bool = False, **kwargs
) -> np.ndarray:
    """``(B * 2k, 2)`` fixed negatives (``k`` corrupted parents + ``k`` children each) as numpy."""
    sampler = NegativeSampler(hierarchy, k_parent=k, k_child=k, per_level=per_level, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    pos = torch.as_tensor(np.asarray(positives, dtype=np.int64).reshape(-1, 2))
    return sampler.sample(pos, gen).reshape(-1, 2).numpy()
