import pytest

from conehier.data.registry import load_spec
from conehier.hierarchy import write_edge_list


def test_builtin_specs(tmp_path):
    assert load_spec("toy:2,3").hierarchy.n == 13
    assert load_spec("cifar10").hierarchy.n == 17
    assert load_spec("fashion-mnist").hierarchy.n == 14
    p = write_edge_list(load_spec("cifar10").hierarchy, tmp_path / "c.tsv")
    assert load_spec(str(p)).hierarchy == load_spec("cifar10").hierarchy
    with pytest.raises(ValueError, match="unknown hierarchy spec 'bogus'"):
        load_spec("bogus")


def test_data_specs(data_root):
    assert load_spec("ethec", data_root).samples == {"val": 5_286, "test": 5_049}
    assert load_spec("wordnet-mammal", data_root).hierarchy.n == 1_179
