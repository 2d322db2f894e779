import json

import numpy as np
import pytest
import torch

from conehier.data.ethec_images import load_ethec_images, write_synthetic_ethec
from conehier.data.feature_cache import FeatureCache, ethec_feature_cache, extract_features
from conehier.models.backbones import build_backbone, image_transforms


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ethec_dir(tmp_path_factory):
    return write_synthetic_ethec(tmp_path_factory.mktemp("ethec"), size=32, seed=1)


def test_ethec_cache_files_and_values(ethec_dir, tmp_path):
    out = tmp_path / "cache"
    cache = ethec_feature_cache(ethec_dir, out, backbone="resnet18", weights=None, resize=32, crop=32, batch_size=10,
                                progress=False, seed=7)
    assert {p.name for p in out.iterdir()} == {"features.npy", "meta.json", "labels.json"}
    assert isinstance(cache.X, np.memmap) and cache.X.dtype == np.float32 and cache.X.shape == (48, 512)
    assert {k: len(v) for k, v in cache.splits.items()} == {"train": 24, "val": 12, "test": 12}
    assert sorted(np.concatenate(list(cache.splits.values()))) == list(range(48))
    m = cache.meta
    assert (m["backbone"], m["weights"], m["dim"], m["computed"], m["reused"]) == ("resnet18", "random(seed=7)", 512,
                                                                                   48, 0)
    assert m["resize"] == 32 and m["crop"] == 32 and "created" in m
    # the rows are the backbone's features of those images (same seed -> same random weights)
    parts = load_ethec_images(ethec_dir, transforms=image_transforms(False, resize=32, crop=32))
    torch.manual_seed(7)
    net, _ = build_backbone("resnet18", weights=None)
    val = parts["val"]
    x = torch.stack([val[i][0] for i in range(3)])
    with torch.no_grad():
        want = net.eval()(x).numpy()
    rows = cache.rows(val.keys[:3])
    np.testing.assert_array_equal(rows, cache.splits["val"][:3])
    np.testing.assert_allclose(cache.X[rows], want, rtol=1e-4, atol=1e-5)
    assert [cache.label_paths[r] for r in rows] == val.label_paths[:3]
    # hierarchy and labels
    h = cache.hierarchy
    assert h.num_levels == 4 and h.n == 15
    y = cache.label_matrix()
    assert y.shape == (48, 15) and (y.sum(1) == 4).all()
    # loading again gives the same
    again = FeatureCache.load(out)
    assert again.keys == cache.keys and np.array_equal(again.X, cache.X)


def test_reuse_by_model_and_image(ethec_dir, tmp_path):
    out = tmp_path / "cache"
    kw = dict(backbone="resnet18", weights=None, resize=32, crop=32, progress=False, seed=0)
    first = ethec_feature_cache(ethec_dir, out, splits=("val",), **kw)
    assert first.meta["computed"] == 12
    both = ethec_feature_cache(ethec_dir, out, splits=("train", "val"), **kw)
    assert (both.meta["computed"], both.meta["reused"]) == (24, 12)  # only the new images ran through the CNN
    np.testing.assert_array_equal(both.X[both.rows(first.keys)], first.X)
    same = ethec_feature_cache(ethec_dir, out, splits=("train", "val"), **kw)
    assert (same.meta["computed"], same.meta["reused"]) == (0, 36)
    # another model in the same directory: refused, unless overwrite
    with pytest.raises(ValueError, match="holds features of resnet18 .* not of resnet18 \\(random\\(seed=1\\)\\)"):
        ethec_feature_cache(ethec_dir, out, splits=("val",), **{**kw, "seed": 1})
    new = ethec_feature_cache(ethec_dir, out, splits=("val",), overwrite=True, **{**kw, "seed": 1})
    assert new.meta["computed"] == 12 and len(new) == 12


class _Plain(torch.utils.data.Dataset):
    """A data set with no keys / label_paths attributes: items only."""

    def __init__(self, n, size=16):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], f"img{i}", ("a", f"b{i % 2}")


def test_generic_dataset(tmp_path):
    cache = extract_features("resnet18", _Plain(7), tmp_path / "c", weights=None, batch_size=3, progress=False)
    assert list(cache.splits) == ["all"] and cache.keys == [f"img{i}" for i in range(7)]
    assert cache.X.shape == (7, 512) and cache.hierarchy.n == 3
    two = extract_features("resnet18", {"a": _Plain(4), "b": _Plain(2)}, tmp_path / "d", weights=None,
                           progress=False)
    # keys shared between splits are stored once
    assert len(two) == 4 and two.splits["b"].tolist() == [0, 1]


def test_errors(tmp_path, ethec_dir):
    with pytest.raises(FileNotFoundError, match="not a feature cache: missing features.npy, meta.json, labels.json"):
        FeatureCache.load(tmp_path)
    cache = extract_features("resnet18", _Plain(2), tmp_path / "c", weights=None, progress=False)
    with pytest.raises(KeyError, match="'nope' is not in the feature cache"):
        cache.rows(["img0", "nope"])
    with pytest.raises(ValueError, match="no data sets"):
        extract_features("resnet18", {}, tmp_path / "e", weights=None)
    # offline without weights and without allow_random: the clear error of build_backbone
    from conehier.models.backbones import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="--random-init"):
        ethec_feature_cache(ethec_dir, tmp_path / "f", backbone="resnet18", resize=32, crop=32)
    # a broken cache: labels and features disagree
    d = tmp_path / "c"
    lab = json.loads((d / "labels.json").read_text())
    lab["keys"].append("extra")
    lab["label_paths"].append(["a"])
    (d / "labels.json").write_text(json.dumps(lab))
    with pytest.raises(ValueError, match="inconsistent"):
        FeatureCache.load(d)


class _Keyed(_Plain):
    """Keys and label paths known up front (as ETHECImages): only new keys are loaded."""

    def __init__(self, n, leaf="b"):
        super().__init__(n)
        self.keys = [f"img{i}" for i in range(n)]
        self.label_paths = [("a", f"{leaf}{i % 2}") for i in range(n)]
        self.loaded = 0

    def __getitem__(self, i):
        self.loaded += 1
        return self.x[i], self.keys[i], self.label_paths[i]


def test_known_keys_skip_loading_and_labels_must_agree(tmp_path):
    first = _Keyed(3)
    extract_features("resnet18", first, tmp_path / "c", weights=None, progress=False)
    more = _Keyed(5)
    cache = extract_features("resnet18", more, tmp_path / "c", weights=None, progress=False)
    assert more.loaded == 2 and (cache.meta["computed"], cache.meta["reused"]) == (2, 3)
    with pytest.raises(ValueError, match=r"image 'img0' has label path \('a', 'c0'\) but \('a', 'b0'\) in the cache"):
        extract_features("resnet18", _Keyed(5, leaf="c"), tmp_path / "c", weights=None, progress=False)


def test_non_finite_features_are_an_error(tmp_path, monkeypatch):
    import conehier.models.backbones as bb

    class _NaN(torch.nn.Module):
        name, weights = "nan-net", "random"

        def forward(self, x):
            out = torch.zeros(x.shape[0], 4)
            out[-1, 0] = float("nan")
            return out

    monkeypatch.setattr(bb, "build_backbone", lambda *a, **k: (_NaN(), 4))
    with pytest.raises(ValueError, match=r"non-finite features from nan-net .* \['img2'\]"):
        extract_features("resnet18", _Plain(3), tmp_path / "c", weights=None, progress=False)
