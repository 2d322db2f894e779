import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conehier.hierarchy import CycleError, Hierarchy, HierarchyError, UnknownLabelError

#        a
#      /   \
#     b     c
#    / \     \
#   d   e     f
#        \   /
#          g        (g has two parents: a DAG)
EDGES = [("a", "b"), ("a", "c"), ("b", "d"), ("b", "e"), ("c", "f"), ("e", "g"), ("f", "g")]


@pytest.fixture
def dag():
    return Hierarchy.from_edges(EDGES)


@pytest.fixture
def tree():
    return Hierarchy.from_edges([(p, c) for p, c in EDGES if (p, c) != ("f", "g")])


def test_constructors_agree(dag):
    parent_map = {"b": "a", "c": "a", "d": "b", "e": "b", "f": "c", "g": ["e", "f"]}
    assert Hierarchy.from_parent_map(parent_map).to_edge_list() and set(
        Hierarchy.from_parent_map(parent_map).to_edge_list()
    ) == set(EDGES)
    g = nx.DiGraph(EDGES)
    assert set(Hierarchy.from_networkx(g).to_edge_list()) == set(EDGES)
    ids = Hierarchy(dag.names, dag.edges)
    assert ids == dag
    back = Hierarchy.from_networkx(dag.to_networkx())
    assert back == dag


def test_from_label_paths_level_major_ids():
    rows = [["F1", "S1", "G1", "G1_x"], ["F1", "S1", "G2", "G2_y"], ["F2", "S2", "G3", "G3_z"], ["F1", "S1", None, None]]
    h = Hierarchy.from_label_paths(rows)
    assert h.names[:2] == ["F1", "F2"]
    assert [len(x) for x in h.nodes_per_level()] == [2, 2, 3, 3]
    assert list(h.depth) == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
    rooted = Hierarchy.from_label_paths(rows, root="all")
    assert rooted.is_tree and rooted.names[0] == "all" and rooted.num_levels == 5


def test_roots_leaves_levels(dag):
    ix = dag.index
    assert dag.decode(dag.roots) == ["a"]
    assert set(dag.decode(dag.leaves)) == {"d", "g"}
    assert dag.depth[ix("g")] == 3  # longest path a-b-e-g / a-c-f-g
    assert [set(dag.decode(x)) for x in dag.nodes_per_level()] == [{"a"}, {"b", "c"}, {"d", "e", "f"}, {"g"}]
    assert not dag.is_tree and dag.is_forest is False


def test_closure_matches_networkx(dag):
    g = nx.DiGraph(dag.to_edge_list(names=False))
    ref = set(nx.transitive_closure_dag(g).edges)
    assert set(map(tuple, dag.closure_edges().tolist())) == ref
    assert dag.closure().nnz == len(ref)
    assert dag.ancestors("g") == {dag.index(x) for x in "abcef"}
    assert dag.descendants("b", include_self=True) == {dag.index(x) for x in "bdeg"}
    m = dag.ancestor_matrix()
    assert m[dag.index("g"), dag.index("a")] and not m[dag.index("a"), dag.index("g")]
    assert np.array_equal(dag.descendant_matrix(), m.T)


def test_reduction_and_non_basic():
    # add redundant edges a->g and b->g: the reduction drops them
    h = Hierarchy.from_edges(EDGES + [("a", "g"), ("b", "g"), ("a", "d")])
    basic = set(h.to_edge_list(basic=True))
    assert basic == set(EDGES)
    g = nx.DiGraph(h.to_edge_list())
    assert basic == set(nx.transitive_reduction(g).edges)
    nb = h.non_basic_edges()
    assert len(nb) == h.closure().nnz - len(EDGES)
    assert h.reduced().stats()["edges"] == len(EDGES)
    assert h.is_edge_in_closure(["a", "g"], ["g", "a"]).tolist() == [True, False]


def test_lca_tree_and_dag(dag, tree):
    ix = tree.index
    assert tree.decode(tree.lca(["d", "d", "f", "g"], ["g", "e", "g", "g"])) == ["b", "b", "a", "g"]
    assert tree.lca_depth(ix("d"), ix("g")) == 1
    # in the DAG, g's ancestors include c and f: lca(f, g) = f, lca(d, g) = b
    assert dag.decode(dag.lca(["f", "d", "c"], ["g", "g", "g"])) == ["f", "b", "c"]
    forest = Hierarchy.from_edges([("a", "b"), ("x", "y")])
    assert forest.lca("b", "y") == -1 and forest.lca_depth("b", "y") == -1
    m = dag.lca_depth_matrix()
    i, j = np.meshgrid(np.arange(dag.n), np.arange(dag.n), indexing="ij")
    assert np.array_equal(m, dag.lca_depth(i, j))


def test_tree_distance(tree, dag):
    d = tree.tree_distance_matrix()
    ix = tree.index
    assert d[ix("d"), ix("g")] == 3 and d[ix("g"), ix("f")] == 5 and d[ix("a"), ix("a")] == 0
    lca = tree.lca_depth_matrix()
    dep = tree.depth
    assert np.array_equal(d, dep[:, None] + dep[None, :] - 2 * lca)  # identity on trees
    assert dag.tree_distance_matrix()[dag.index("g"), dag.index("f")] == 1
    forest = Hierarchy.from_edges([("a", "b"), ("x", "y")])
    fd = forest.tree_distance_matrix()
    assert fd[forest.index("b"), forest.index("y")] == 4  # through a virtual root
    assert np.isinf(forest.tree_distance_matrix(virtual_root=False)[0, 2])


def test_subtree_and_export(dag, tmp_path):
    sub = dag.subtree("b")
    assert sub.names == ["b", "d", "e", "g"] and len(sub.edges) == 3
    from conehier.hierarchy import read_edge_list, write_edge_list

    p = write_edge_list(dag, tmp_path / "h.tsv")
    assert read_edge_list(p) == dag


def test_close_labels(dag):
    y = np.zeros((2, dag.n), np.uint8)
    y[0, dag.index("g")] = 1
    y[1, dag.index("d")] = 1
    out = dag.close_labels(y)
    assert set(dag.decode(np.flatnonzero(out[0]))) == set("abcefg")
    assert set(dag.decode(np.flatnonzero(out[1]))) == set("abd")
    assert out.dtype == np.uint8


# ---------------------------------------------------------------- bad input
def test_cycle_names_its_nodes():
    with pytest.raises(CycleError) as exc:
        Hierarchy.from_edges([("root", "a"), ("a", "b"), ("b", "c"), ("c", "a")])
    assert set(exc.value.cycle) == {"a", "b", "c"}
    assert "cycle" in str(exc.value) and "a" in str(exc.value)


def test_other_bad_inputs():
    with pytest.raises(HierarchyError, match="self-loop on 'x'"):
        Hierarchy.from_edges([("x", "x")])
    with pytest.raises(HierarchyError, match="duplicate label names: 'a'"):
        Hierarchy(["a", "b", "a"], [])
    with pytest.raises(HierarchyError, match="empty name"):
        Hierarchy(["a", " "], [])
    with pytest.raises(HierarchyError, match="empty"):
        Hierarchy([], [])
    with pytest.raises(HierarchyError, match="no labels"):
        Hierarchy.from_label_paths([[None]])
    with pytest.raises(UnknownLabelError, match="unknown label 'zz'"):
        Hierarchy.from_edges([("a", "zz")], names=["a", "b"])
    with pytest.raises(HierarchyError, match="outside"):
        Hierarchy(["a", "b"], [(0, 5)])


def test_unknown_label_lookup_suggests(dag):
    with pytest.raises(UnknownLabelError, match="unknown label 'gg'.*did you mean 'g'"):
        dag.index("gg")
    with pytest.raises(UnknownLabelError):
        dag.encode(["a", "nope"])
    with pytest.raises(UnknownLabelError):
        dag.index(99)
    with pytest.raises(HierarchyError, match=r"shape \(N, 7\)"):
        dag.close_labels(np.zeros((3, 2)))


# ------------------------------------------------------------ properties
@st.composite
def random_dags(draw):
    n = draw(st.integers(2, 25))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))
    edges = [(min(a, b), max(a, b)) for a, b in edges if a != b]  # i < j: acyclic
    perm = draw(st.permutations(range(n)))
    return Hierarchy([f"n{perm[i]}" for i in range(n)], np.array(edges, dtype=np.int64).reshape(-1, 2))


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_random_dags_match_networkx(h):
    g = nx.DiGraph()
    g.add_nodes_from(range(h.n))
    g.add_edges_from(h.edges.tolist())
    assert set(map(tuple, h.closure_edges().tolist())) == set(nx.transitive_closure_dag(g).edges)
    assert set(map(tuple, h.transitive_reduction().tolist())) == set(nx.transitive_reduction(g).edges)
    for v in range(h.n):
        assert h.depth[v] == nx.dag_longest_path_length(g.subgraph(nx.ancestors(g, v) | {v}))
    # every edge goes down at least one level
    e = h.edges
    assert (h.depth[e[:, 1]] > h.depth[e[:, 0]]).all()
