"""Hierarchies that ship with conehier (no download).

* :func:`toy_tree` — balanced trees of depth ``L`` and branching ``b`` (thesis Fig. 6.3).
* :func:`cifar10_hierarchy` — the thesis's hierarchical CIFAR-10.
* :func:`fashion_mnist_hierarchy` — the thesis's hierarchical Fashion-MNIST.
"""

from __future__ import annotations

import numpy as np

from ..hierarchy.graph import Hierarchy


def toy_tree(depth: int, branching: int) -> Hierarchy:
    """Balanced tree: a root (level 0) and ``depth`` levels below it, each node with ``branching`` children.

    Nodes: ``sum_{i=0..depth} b^i``; the root is ``"root"``, others are their
    path from the root, e.g. ``"2.0.1"``. Ids are level-major (breadth-first).
    """
    if depth < 0 or branching < 1:
        raise ValueError(f"toy_tree needs depth >= 0 and branching >= 1, got depth={depth}, branching={branching}")
    total = sum(branching**i for i in range(depth + 1))
    if total > 2_000_000:
        raise ValueError(f"toy_tree({depth}, {branching}) would have {total} nodes; keep it under 2,000,000")
    names = ["root"]
    edges = []
    level = [(0, "")]
    for _ in range(depth):
        nxt = []
        for pid, path in level:
            for c in range(branching):
                nm = f"{path}.{c}" if path else str(c)
                edges.append((pid, len(names)))
                nxt.append((len(names), nm))
                names.append(nm)
        level = nxt
    return Hierarchy(names, np.asarray(edges, dtype=np.int64).reshape(-1, 2), name=f"toy:{depth},{branching}")


CIFAR10_TREE = {
    "entity": ["living", "non-living"],
    "living": ["mammal", "non-mammal"],
    "non-living": ["vehicle", "craft"],
    "mammal": ["cat", "deer", "dog", "horse"],
    "non-mammal": ["bird", "frog"],
    "vehicle": ["automobile", "truck"],
    "craft": ["airplane", "ship"],
}

FASHION_MNIST_TREE = {
    "fashion-wear": ["top-wear", "bottom-wear and accessories", "footwear"],
    "top-wear": ["t-shirt", "pullover", "dress", "coat", "shirt"],
    "bottom-wear and accessories": ["trouser", "bag"],
    "footwear": ["sandal", "sneaker", "ankle-boot"],
}


def _from_tree(tree: dict, name: str) -> Hierarchy:
    return Hierarchy.from_edges([(p, c) for p, cs in tree.items() for c in cs], name=name)


def cifar10_hierarchy() -> Hierarchy:
    """Hierarchical CIFAR-10 (thesis section 4.1): 4 levels, 10 leaf classes."""
    return _from_tree(CIFAR10_TREE, "cifar10")


def fashion_mnist_hierarchy() -> Hierarchy:
    """Hierarchical Fashion-MNIST (thesis section 4.1): 3 levels, 10 leaf classes."""
    return _from_tree(FASHION_MNIST_TREE, "fashion-mnist")
