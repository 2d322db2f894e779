"""The :class:`Hierarchy`: a DAG of named labels with integer ids.

Nodes are ``0 .. n-1``; ``names[i]`` is the label of node ``i``. Edges point
from the more general node to the more specific one (parent -> child). All
graph queries that training and evaluation need are vectorised over numpy /
scipy.sparse arrays; :meth:`Hierarchy.to_networkx` gives a networkx view for
anything else.

Conventions
-----------
* ``depth[i]``: length of the longest path from a root to ``i`` (roots 0), so
  a child is always deeper than each of its parents; ``level`` is a synonym.
* ``closure()``: sparse ``(n, n)`` bool matrix ``C[u, v] = True`` iff ``u`` is
  a proper ancestor of ``v`` (a path ``u -> ... -> v`` exists).
* ``ancestor_matrix()``: dense ``(n, n)`` bool, ``M[i, j] = True`` iff ``j``
  is a proper ancestor of ``i`` (``C.T``); ``descendant_matrix()`` is ``C``.
* basic edges: the transitive reduction (edges not implied by others);
  non-basic edges: closure edges that are not basic.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .errors import CycleError, HierarchyError, UnknownLabelError

#: Largest n for which dense (n, n) matrices are built without being asked to.
DENSE_LIMIT = 30_000

NodeRef = "int | str"


def _csr_gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray):
    """Concatenate CSR rows ``rows`` without a Python loop.

    Returns ``(owner, values)``: ``values`` are the column indices of those rows
    and ``owner[k]`` the position in ``rows`` that ``values[k]`` came from.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = indptr[rows], indptr[rows + 1]
    counts = ends - starts
    total = int(counts.sum())
    owner = np.repeat(np.arange(rows.size), counts)
    if total == 0:
        return owner, indices[:0]
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, indices[np.repeat(starts, counts) + offsets]


class Hierarchy:
    """A directed acyclic graph of labels.

    Parameters
    ----------
    names:
        ``n`` distinct, non-empty label names; node ``i`` is ``names[i]``.
    edges:
        ``(E, 2)`` integer array of ``(parent, child)`` ids. Duplicates are
        merged; self-loops and cycles raise :class:`HierarchyError` /
        :class:`CycleError` naming the offending nodes.
    """

    def __init__(self, names: Sequence[str], edges, *, name: str | None = None):
        names = list(names)
        if len(names) == 0:
            raise HierarchyError("the hierarchy is empty: it needs at least one node")
        for i, nm in enumerate(names):
            if not isinstance(nm, str):
                raise HierarchyError(f"node {i} has a name of type {type(nm).__name__}, expected str: {nm!r}")
            if nm.strip() == "":
                raise HierarchyError(f"node {i} has an empty name")
        index = {nm: i for i, nm in enumerate(names)}
        if len(index) != len(names):
            seen, dups = set(), []
            for nm in names:
                if nm in seen and nm not in dups:
                    dups.append(nm)
                seen.add(nm)
            raise HierarchyError(f"duplicate label names: {', '.join(map(repr, dups[:10]))}")
        n = len(names)
        e = np.asarray(edges, dtype=np.int64) if len(edges) else np.zeros((0, 2), np.int64)
        if e.ndim != 2 or e.shape[1] != 2:
            raise HierarchyError(f"edges must have shape (E, 2), got {e.shape}")
        if e.size and (e.min() < 0 or e.max() >= n):
            bad = e[(e < 0).any(1) | (e >= n).any(1)][0]
            raise HierarchyError(f"edge {tuple(bad.tolist())} refers to a node id outside 0..{n - 1}")
        loops = e[:, 0] == e[:, 1]
        if loops.any():
            raise HierarchyError(f"self-loop on {names[int(e[loops][0, 0])]!r}: a label cannot be its own parent")
        keys = np.unique(e[:, 0] * n + e[:, 1])
        self._names = names
        self._index = index
        self._edges = np.stack([keys // n, keys % n], axis=1)
        self.name = name
        self._depth = self._topological_depth()

    # ------------------------------------------------------------------ build
    @classmethod
    def from_edges(cls, edges: Iterable, names: Sequence[str] | None = None, *, name: str | None = None):
        """From ``(parent, child)`` pairs of names, or of ids when ``names`` is given.

        With name pairs and ``names`` given, ``names`` fixes the id order and an
        edge naming anything else raises :class:`UnknownLabelError`.
        """
        pairs = list(edges)
        if names is not None and all(isinstance(x, (int, np.integer)) for p in pairs for x in p):
            return cls(names, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), name=name)
        for p in pairs:
            if len(p) != 2:
                raise HierarchyError(f"an edge must be a (parent, child) pair, got {p!r}")
        if names is None:
            order: dict[str, None] = {}
            for p, c in pairs:
                order.setdefault(p, None)
                order.setdefault(c, None)
            names = list(order)
        index = {nm: i for i, nm in enumerate(names)}
        ids = np.empty((len(pairs), 2), dtype=np.int64)
        for k, (p, c) in enumerate(pairs):
            for j, x in enumerate((p, c)):
                try:
                    ids[k, j] = index[x]
                except KeyError:
                    raise UnknownLabelError(x, names, where=f"in edge {k}: ({p!r}, {c!r})") from None
        return cls(names, ids, name=name)

    @classmethod
    def from_parent_map(cls, parents: Mapping, *, name: str | None = None):
        """From ``{child: parent}``, ``{child: [parents]}`` or ``{root: None}``."""
        order: dict[str, None] = {}
        pairs = []
        for child, ps in parents.items():
            if ps is None or (isinstance(ps, (list, tuple, set, frozenset)) and len(ps) == 0):
                order.setdefault(child, None)
                continue
            if isinstance(ps, str) or not isinstance(ps, Iterable):
                ps = [ps]
            for p in ps:
                order.setdefault(p, None)
                order.setdefault(child, None)
                pairs.append((p, child))
        h = cls.from_edges(pairs, names=list(order) or None, name=name) if pairs else cls(list(order), [], name=name)
        return h

    @classmethod
    def from_label_paths(cls, rows: Iterable[Sequence], *, root: str | None = None, name: str | None = None):
        """From root-to-leaf label paths, one row per sample (e.g. family, subfamily, genus, species).

        Empty or ``None`` entries end a row early. Ids are level-major: all
        level-0 labels first (in order of first appearance), then level 1, ...
        ``root`` adds one node above every first-level label.
        """
        levels: list[dict[str, None]] = []
        pairs: dict[tuple[str, str], None] = {}
        for r, row in enumerate(rows):
            prev = root
            for j, lab in enumerate(row):
                if lab is None or (isinstance(lab, str) and lab.strip() == ""):
                    break
                if not isinstance(lab, str):
                    lab = str(lab)
                while len(levels) <= j:
                    levels.append({})
                levels[j].setdefault(lab, None)
                if prev is not None:
                    pairs[(prev, lab)] = None
                prev = lab
        if not levels:
            raise HierarchyError("no labels in the label paths: the hierarchy would be empty")
        names: list[str] = [root] if root is not None else []
        seen = set(names)
        for lev in levels:
            for lab in lev:
                if lab in seen:
                    continue  # a label reused at two levels: keep its first id
                seen.add(lab)
                names.append(lab)
        return cls.from_edges(list(pairs), names=names, name=name)

    @classmethod
    def from_networkx(cls, graph, *, name: str | None = None):
        """From a ``networkx.DiGraph`` (edges parent -> child).

        Node names are the ``"name"`` node attribute where present, else ``str(node)``.
        """
        nodes = list(graph.nodes)
        names = [str(graph.nodes[v].get("name", v)) for v in nodes]
        pos = {v: i for i, v in enumerate(nodes)}
        e = np.array([(pos[u], pos[v]) for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
        return cls(names, e, name=name or graph.graph.get("name"))

    # --------------------------------------------------------------- checking
    def _topological_depth(self) -> np.ndarray:
        n = self.n
        indptr, indices = self._children_csr
        indeg = np.bincount(self._edges[:, 1], minlength=n)
        depth = np.full(n, -1, dtype=np.int64)
        frontier = np.flatnonzero(indeg == 0)
        level = 0
        while frontier.size:
            depth[frontier] = level
            _, ch = _csr_gather(indptr, indices, frontier)
            if ch.size == 0:
                break
            indeg = indeg - np.bincount(ch, minlength=n)
            ch = np.unique(ch)
            frontier = ch[indeg[ch] == 0]
            level += 1
        if (depth < 0).any():
            self._raise_cycle(np.flatnonzero(depth < 0))
        return depth

    def _raise_cycle(self, remaining: np.ndarray):
        import networkx as nx

        keep = np.zeros(self.n, bool)
        keep[remaining] = True
        sub = self._edges[keep[self._edges[:, 0]] & keep[self._edges[:, 1]]]
        g = nx.DiGraph(sub.tolist())
        cyc = nx.find_cycle(g)
        raise CycleError([self._names[u] for u, _ in cyc])

    # ----------------------------------------------------------------- basics
    @property
    def n(self) -> int:
        return len(self._names)

    def __len__(self) -> int:
        return self.n

    def __contains__(self, label) -> bool:
        if isinstance(label, (int, np.integer)):
            return 0 <= int(label) < self.n
        return label in self._index

    def __repr__(self) -> str:
        nm = f" {self.name!r}" if self.name else ""
        return f"<Hierarchy{nm}: {self.n} nodes, {len(self._edges)} edges, {self.num_levels} levels>"

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Hierarchy)
            and self._names == other._names
            and np.array_equal(self._edges, other._edges)
        )

    __hash__ = None  # mutable-looking container semantics; not hashable

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def edges(self) -> np.ndarray:
        """``(E, 2)`` int64 ``(parent, child)`` ids, sorted, as given (may include non-basic edges)."""
        return self._edges.copy()

    def index(self, label: Hashable) -> int:
        """Id of ``label`` (a name, or an id which is range-checked)."""
        if isinstance(label, (int, np.integer)):
            i = int(label)
            if not 0 <= i < self.n:
                raise UnknownLabelError(i, where=f"ids are 0..{self.n - 1}")
            return i
        try:
            return self._index[label]
        except KeyError:
            raise UnknownLabelError(label, self._index) from None

    def encode(self, labels: Iterable) -> np.ndarray:
        """Ids of a sequence of names, as an int64 array; unknown names raise."""
        return np.fromiter((self.index(x) for x in labels), dtype=np.int64)

    def decode(self, ids) -> list[str]:
        """Names of an array of ids."""
        return [self._names[int(i)] for i in np.asarray(ids).ravel()]

    def _ids(self, nodes) -> np.ndarray:
        if isinstance(nodes, (str, int, np.integer)):
            return np.array([self.index(nodes)])
        arr = np.asarray(nodes)
        if arr.dtype.kind in "iu":
            if arr.size and (arr.min() < 0 or arr.max() >= self.n):
                bad = arr[(arr < 0) | (arr >= self.n)].ravel()[0]
                raise UnknownLabelError(int(bad), where=f"ids are 0..{self.n - 1}")
            return arr.astype(np.int64)
        return self.encode(np.asarray(nodes, dtype=object).ravel()).reshape(arr.shape)

    # --------------------------------------------------------------- adjacency
    @cached_property
    def _children_csr(self):
        order = np.argsort(self._edges[:, 0], kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self._edges[:, 0], minlength=self.n))])
        return indptr, self._edges[order, 1]

    @cached_property
    def _parents_csr(self):
        order = np.argsort(self._edges[:, 1], kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self._edges[:, 1], minlength=self.n))])
        return indptr, self._edges[order, 0]

    def adjacency(self) -> sp.csr_matrix:
        """Sparse ``(n, n)`` bool matrix ``A[parent, child]`` of the given edges."""
        e = self._edges
        return sp.csr_matrix((np.ones(len(e), bool), (e[:, 0], e[:, 1])), shape=(self.n, self.n))

    def children(self, node) -> np.ndarray:
        indptr, idx = self._children_csr
        i = self.index(node)
        return idx[indptr[i]:indptr[i + 1]].copy()

    def parents(self, node) -> np.ndarray:
        indptr, idx = self._parents_csr
        i = self.index(node)
        return idx[indptr[i]:indptr[i + 1]].copy()

    @cached_property
    def roots(self) -> np.ndarray:
        """Ids of nodes without parents."""
        return np.flatnonzero(np.bincount(self._edges[:, 1], minlength=self.n) == 0)

    @cached_property
    def leaves(self) -> np.ndarray:
        """Ids of nodes without children."""
        return np.flatnonzero(np.bincount(self._edges[:, 0], minlength=self.n) == 0)

    @property
    def is_tree(self) -> bool:
        """One root and at most one parent per node (a forest if several roots)."""
        return len(self.roots) == 1 and self.is_forest

    @property
    def is_forest(self) -> bool:
        return bool((np.bincount(self._edges[:, 1], minlength=self.n) <= 1).all())

    # ------------------------------------------------------------------ levels
    @property
    def depth(self) -> np.ndarray:
        """``(n,)`` int64: longest-path distance from a root (roots are 0)."""
        return self._depth.copy()

    level = depth

    @property
    def num_levels(self) -> int:
        return int(self._depth.max()) + 1

    def nodes_per_level(self) -> list[np.ndarray]:
        """Ids of the nodes at each level, level 0 first."""
        order = np.argsort(self._depth, kind="stable")
        counts = np.bincount(self._depth, minlength=self.num_levels)
        return np.split(order, np.cumsum(counts)[:-1])

    # ----------------------------------------------------------------- closure
    @cached_property
    def _closure(self) -> sp.csr_matrix:
        n = self.n
        a = sp.csr_matrix(
            (np.ones(len(self._edges), np.float32), (self._edges[:, 0], self._edges[:, 1])), shape=(n, n)
        )
        total = a.copy()
        step = a
        for _ in range(self.num_levels):  # paths of length k = 2, 3, ...
            step = step @ a
            if step.nnz == 0:
                break
            step.data[:] = 1.0
            total = total + step
        total.data[:] = 1.0
        total = total.astype(bool)
        total.sort_indices()
        return total

    def closure(self, include_self: bool = False) -> sp.csr_matrix:
        """Sparse ``(n, n)`` bool, ``C[u, v]`` iff ``u`` is an ancestor of ``v``."""
        c = self._closure.copy()
        if include_self:
            c = (c + sp.identity(self.n, dtype=bool, format="csr")).tocsr()
        return c

    @cached_property
    def _closure_keys(self) -> np.ndarray:
        """Sorted ``ancestor * n + descendant`` of every closure edge."""
        c = self._closure.tocoo()
        return np.sort(c.row.astype(np.int64) * self.n + c.col)

    def closure_edges(self) -> np.ndarray:
        """``(M, 2)`` int64 ``(ancestor, descendant)`` pairs of the transitive closure, sorted."""
        keys = self._closure_keys
        return np.stack([keys // self.n, keys % self.n], axis=1)

    @cached_property
    def _basic_mask(self) -> np.ndarray:
        # (u, v) is redundant iff u reaches v through a path of length >= 2,
        # i.e. u is an ancestor of some parent w of v: (C @ A)[u, v] > 0.
        n = self.n
        if len(self._edges) == 0:
            return np.zeros(0, bool)
        a = sp.csr_matrix(
            (np.ones(len(self._edges), np.float32), (self._edges[:, 0], self._edges[:, 1])), shape=(n, n)
        )
        longer = (self._closure.astype(np.float32) @ a).tocsr()
        longer.sort_indices()
        hit = np.asarray(longer[self._edges[:, 0], self._edges[:, 1]]).ravel() > 0
        return ~hit

    def transitive_reduction(self) -> np.ndarray:
        """``(E', 2)`` basic edges: the minimal edge set with the same closure."""
        return self._edges[self._basic_mask].copy()

    basic_edges = transitive_reduction

    def non_basic_edges(self) -> np.ndarray:
        """``(M - E', 2)`` closure edges that are not basic, sorted."""
        keys = self._closure_keys
        basic = self.transitive_reduction()
        bkeys = basic[:, 0] * self.n + basic[:, 1]
        keep = keys[~np.isin(keys, bkeys, assume_unique=True)]
        return np.stack([keep // self.n, keep % self.n], axis=1)

    def reduced(self) -> "Hierarchy":
        """The same labels with only the basic edges."""
        return Hierarchy(self._names, self.transitive_reduction(), name=self.name)

    def is_edge_in_closure(self, parents, children) -> np.ndarray:
        """Vectorised membership: ``out[k]`` iff ``parents[k]`` is an ancestor of ``children[k]``."""
        p, c = self._ids(parents).ravel(), self._ids(children).ravel()
        keys = self._closure_keys
        q = p * self.n + c
        pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return keys[pos] == q if len(keys) else np.zeros(len(q), bool)

    def ancestors(self, node, include_self: bool = False) -> set[int]:
        i = self.index(node)
        col = self._closure_csc
        out = set(col.indices[col.indptr[i]:col.indptr[i + 1]].tolist())
        if include_self:
            out.add(i)
        return out

    def descendants(self, node, include_self: bool = False) -> set[int]:
        i = self.index(node)
        c = self._closure
        out = set(c.indices[c.indptr[i]:c.indptr[i + 1]].tolist())
        if include_self:
            out.add(i)
        return out

    @cached_property
    def _closure_csc(self) -> sp.csc_matrix:
        m = self._closure.tocsc()
        m.sort_indices()
        return m

    def _check_dense(self, what: str):
        if self.n > DENSE_LIMIT:
            raise HierarchyError(
                f"{what} would be a dense {self.n} x {self.n} matrix; use closure() (sparse) for hierarchies "
                f"over {DENSE_LIMIT} nodes"
            )

    def ancestor_matrix(self, include_self: bool = False) -> np.ndarray:
        """Dense ``(n, n)`` bool, ``M[i, j]`` iff ``j`` is an ancestor of ``i``."""
        self._check_dense("ancestor_matrix")
        m = self._closure.T.toarray()
        if include_self:
            np.fill_diagonal(m, True)
        return m

    def descendant_matrix(self, include_self: bool = False) -> np.ndarray:
        """Dense ``(n, n)`` bool, ``M[i, j]`` iff ``j`` is a descendant of ``i``."""
        return self.ancestor_matrix(include_self).T.copy()

    def close_labels(self, y) -> np.ndarray:
        """Close a ``(N, n)`` 0/1 label matrix under ancestors: ``out[s, a] = 1`` if ``a`` is an
        ancestor of a label of sample ``s``. Keeps the input dtype."""
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != self.n:
            raise HierarchyError(f"label matrix must have shape (N, {self.n}), got {y.shape}")
        anc = sp.csr_matrix(y != 0, dtype=np.float32) @ self._closure.T.astype(np.float32)
        return ((y != 0) | (anc.toarray() > 0)).astype(y.dtype)

    # ---------------------------------------------------------- LCA, distances
    def lca(self, a, b) -> np.ndarray:
        """Deepest common ancestor-or-self of each pair (ties: smallest id); -1 if none.

        ``a``, ``b``: ids or names, broadcast to the same shape. For a tree this is
        the lowest common ancestor; for a DAG the deepest of the common ancestors.
        """
        a, b = np.broadcast_arrays(self._ids(a), self._ids(b))
        shape = a.shape
        a, b = a.ravel(), b.ravel()
        anc = (self._closure_csc + sp.identity(self.n, dtype=bool, format="csc")).T.tocsr()  # row i: anc-or-self
        out = np.empty(a.size, np.int64)
        chunk = max(1, 10_000_000 // max(self.n, 1))
        score_of = self._depth.astype(np.int64) * self.n + (self.n - 1 - np.arange(self.n))
        for s in range(0, a.size, chunk):
            common = anc[a[s:s + chunk]].multiply(anc[b[s:s + chunk]]).tocsr()
            best = np.full(common.shape[0], -1, np.int64)
            if common.nnz:
                rows = np.repeat(np.arange(common.shape[0]), np.diff(common.indptr))
                np.maximum.at(best, rows, score_of[common.indices])
            out[s:s + chunk] = np.where(best >= 0, self.n - 1 - (best % self.n), -1)
        return out.reshape(shape)

    def lca_depth(self, a, b) -> np.ndarray:
        """Depth of :meth:`lca` (-1 where there is no common ancestor)."""
        l = self.lca(a, b)
        return np.where(l >= 0, self._depth[np.maximum(l, 0)], -1)

    def lca_depth_matrix(self) -> np.ndarray:
        """Dense ``(n, n)`` int64: depth of the deepest common ancestor-or-self; -1 if none."""
        self._check_dense("lca_depth_matrix")
        anc = self.ancestor_matrix(include_self=True).astype(np.float32)
        out = np.full((self.n, self.n), -1, np.int64)
        for d, nodes in reversed(list(enumerate(self.nodes_per_level()))):
            m = anc[:, nodes]
            common = (m @ m.T) > 0
            out[(out < 0) & common] = d
        return out

    def tree_distance_matrix(self, virtual_root: bool = True) -> np.ndarray:
        """Dense ``(n, n)`` float64 undirected shortest-path distances (CHAMP's ``dist``).

        Nodes in different components (a forest, e.g. ETHEC's six families) are
        joined through an implicit super-root when ``virtual_root`` is true:
        ``dist = depth_i + depth_j + 2``; otherwise ``inf``.
        """
        self._check_dense("tree_distance_matrix")
        from scipy.sparse.csgraph import shortest_path

        d = shortest_path(self.adjacency().astype(np.float64), directed=False, unweighted=True)
        if virtual_root:
            far = np.isinf(d)
            if far.any():
                via = self._depth[:, None] + self._depth[None, :] + 2.0
                d[far] = via[far]
        return d

    # ---------------------------------------------------------------- subsets
    def subtree(self, root) -> "Hierarchy":
        """The sub-hierarchy of ``root`` and all its descendants (ids renumbered in order)."""
        r = self.index(root)
        keep = np.zeros(self.n, bool)
        keep[list(self.descendants(r, include_self=True))] = True
        return self.subgraph(np.flatnonzero(keep))

    def subgraph(self, nodes) -> "Hierarchy":
        """The hierarchy induced on ``nodes`` (ids or names), keeping their relative order."""
        ids = np.unique(self._ids(nodes).ravel())
        new = np.full(self.n, -1, np.int64)
        new[ids] = np.arange(ids.size)
        e = self._edges
        keep = (new[e[:, 0]] >= 0) & (new[e[:, 1]] >= 0)
        return Hierarchy([self._names[i] for i in ids], new[e[keep]], name=self.name)

    # ----------------------------------------------------------------- export
    def to_networkx(self):
        """``networkx.DiGraph`` on ids with ``name`` and ``depth`` node attributes."""
        import networkx as nx

        g = nx.DiGraph(name=self.name)
        g.add_nodes_from((i, {"name": nm, "depth": int(d)}) for i, (nm, d) in enumerate(zip(self._names, self._depth)))
        g.add_edges_from(self._edges.tolist())
        return g

    def to_edge_list(self, names: bool = True, basic: bool = False) -> list[tuple]:
        """``(parent, child)`` pairs, as names (default) or ids."""
        e = self.transitive_reduction() if basic else self._edges
        if not names:
            return [tuple(x) for x in e.tolist()]
        return [(self._names[p], self._names[c]) for p, c in e.tolist()]

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict:
        """Counts that ``conehier info`` prints."""
        n_clo = int(self._closure.nnz)
        n_basic = int(self._basic_mask.sum())
        return {
            "name": self.name,
            "nodes": self.n,
            "nodes_per_level": [int(len(x)) for x in self.nodes_per_level()],
            "edges": int(len(self._edges)),
            "basic_edges": n_basic,
            "closure_edges": n_clo,
            "non_basic_edges": n_clo - n_basic,
            "roots": int(len(self.roots)),
            "leaves": int(len(self.leaves)),
            "depth": int(self._depth.max()),
            "levels": self.num_levels,
            "is_tree": self.is_tree,
        }
