import json

import numpy as np
import pytest

from conehier.data.ethec import load_ethec
from conehier.data.paths import DataNotFoundError
from conehier.hierarchy import HierarchyError


def test_ethec_merged_hierarchy(data_root):
    e = load_ethec(data_root)
    s = e.hierarchy.stats()
    assert s["nodes_per_level"] == [6, 21, 135, 561] and s["nodes"] == 723
    assert s["edges"] == 717 and s["closure_edges"] == 1_974 and s["non_basic_edges"] == 1_257
    assert e.samples_per_split() == {"val": 5_286, "test": 5_049}
    assert e.missing_splits == ("train",)
    val = e.splits["val"]
    assert val.labels.shape == (5_286, 4)
    # label paths are consistent with the hierarchy: each level's label is a child of the one above
    h = e.hierarchy
    for j in range(3):
        assert all(val.labels[i, j] in h.parents(val.labels[i, j + 1]) for i in range(0, 5_286, 97))
    assert (h.depth[val.labels] == np.arange(4)).all()
    assert val.image_files[0].endswith(".JPG") and "/" in val.image_files[0]


def _write(dirpath, name, records):
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / name).write_text(json.dumps(records))


def test_ethec_bad_records(tmp_path):
    rec = {"image_path": "p", "image_name": "a.jpg", "family": "F", "subfamily": "S", "genus": "G", "specific_epithet": "x"}
    _write(tmp_path / "ethec", "val.json", {"t1": rec})
    _write(tmp_path / "ethec", "test.json", {"t2": dict(rec, genus="")})
    with pytest.raises(HierarchyError, match="'t2' in test.json has an empty genus"):
        load_ethec(tmp_path, download=False)
    _write(tmp_path / "ethec", "test.json", {"t3": {k: v for k, v in rec.items() if k != "family"}})
    with pytest.raises(HierarchyError, match="lacks the field 'family'"):
        load_ethec(tmp_path, download=False)
    with pytest.raises(DataNotFoundError, match="val.json"):
        load_ethec(tmp_path / "none", download=False)
