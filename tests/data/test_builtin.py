from conehier.data.builtin import cifar10_hierarchy, fashion_mnist_hierarchy, toy_tree


def test_toy_tree_sizes():
    h = toy_tree(4, 3)
    assert h.n == 1 + 3 + 9 + 27 + 81 and h.is_tree
    assert [len(x) for x in h.nodes_per_level()] == [1, 3, 9, 27, 81]
    assert toy_tree(3, 7).n == 1 + 7 + 49 + 343
    assert toy_tree(0, 5).n == 1


def test_cifar10():
    h = cifar10_hierarchy()
    assert h.is_tree and h.decode(h.roots) == ["entity"]
    assert sorted(h.decode(h.leaves)) == sorted(
        ["cat", "deer", "dog", "horse", "bird", "frog", "automobile", "truck", "airplane", "ship"]
    )
    assert h.decode(h.parents("frog")) == ["non-mammal"] and h.num_levels == 4


def test_fashion_mnist():
    h = fashion_mnist_hierarchy()
    assert h.is_tree and h.num_levels == 3 and len(h.leaves) == 10
    assert h.decode(h.parents("bag")) == ["bottom-wear and accessories"]
