import json

import numpy as np
import pytest
import torch

from conehier.data.ethec import LEVELS
from conehier.data.ethec_images import (
    ETHECImages,
    ImageLoadError,
    collate_images,
    find_image_root,
    load_ethec_images,
    read_image,
    write_synthetic_ethec,
)
from conehier.models.backbones import image_transforms


@pytest.fixture(scope="module")
def ethec_dir(tmp_path_factory):
    return write_synthetic_ethec(tmp_path_factory.mktemp("ethec"), size=32, seed=0)


def test_items_and_labels(ethec_dir):
    parts = load_ethec_images(ethec_dir, resize=32, crop=32)
    assert {k: len(v) for k, v in parts.items()} == {"train": 24, "val": 12, "test": 12}
    h = parts["train"].hierarchy
    assert all(p.hierarchy is h for p in parts.values())  # one id space for every split
    assert h.num_levels == len(LEVELS) == 4 and h.n == 2 + 3 + 4 + 6
    rec = json.loads((ethec_dir / "val.json").read_text())
    ds = parts["val"]
    img, key, path = ds[3]
    r = rec[key]
    assert path == (r["family"], r["subfamily"], r["genus"], f"{r['genus']}_{r['specific_epithet']}")
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    # ids: one node per level, level d at depth d
    assert ds.labels.shape == (12, 4)
    np.testing.assert_array_equal(np.asarray(h.depth)[ds.labels], np.tile(np.arange(4), (12, 1)))
    assert h.decode(ds.labels[3]) == list(path)
    y = ds.label_matrix()
    assert y.shape == (12, h.n) and (y.sum(1) == 4).all()
    np.testing.assert_array_equal(h.close_labels(y), y)  # a path is closed under ancestors
    # train gets augmentation, the others the deterministic transform
    torch.manual_seed(0)
    a = parts["test"][0][0]
    torch.manual_seed(1)
    assert torch.equal(a, parts["test"][0][0])


def test_image_root_discovery(tmp_path):
    d = write_synthetic_ethec(tmp_path / "e", per_leaf=(1, 1, 1), size=8, image_subdir="IMAGO_build_test_resized")
    parts = load_ethec_images(d, resize=8, crop=8)
    assert parts["train"].files[0].startswith(str(d / "IMAGO_build_test_resized"))
    # explicit image dir elsewhere
    moved = tmp_path / "imgs"
    (d / "IMAGO_build_test_resized").rename(moved)
    assert load_ethec_images(d, image_dir=moved, resize=8, crop=8)["val"][0][0].shape == (3, 8, 8)
    with pytest.raises(FileNotFoundError, match="cannot find the ETHEC images.*--image-dir"):
        load_ethec_images(d)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_image_root(d, ["x/y.jpg"], tmp_path / "nowhere")


def test_missing_split_file(tmp_path):
    d = write_synthetic_ethec(tmp_path / "e", per_leaf=(1, 1, 1), size=8)
    (d / "train.json").unlink()
    with pytest.raises(FileNotFoundError, match="train.json not found"):
        load_ethec_images(d)
    assert set(load_ethec_images(d, splits=("val", "test"), resize=8, crop=8)) == {"val", "test"}


def test_missing_and_corrupt_images_name_the_file(tmp_path):
    d = write_synthetic_ethec(tmp_path / "e", per_leaf=(2, 1, 1), size=8)
    rec = json.loads((d / "train.json").read_text())
    gone = next(iter(rec.values()))
    missing = d / gone["image_path"] / gone["image_name"]
    missing.unlink()
    msg = r"1 of 12 images of ETHEC split 'train' are missing: .*" + gone["image_name"]
    with pytest.raises(ImageLoadError, match=msg):
        load_ethec_images(d, resize=8, crop=8)
    # without the up-front check the item itself fails, naming the file and the specimen
    parts = load_ethec_images(d, resize=8, crop=8, check=False)
    with pytest.raises(ImageLoadError, match=f"{gone['image_name']} does not exist.*{gone['token']}"):
        parts["train"][0]
    # a corrupt file
    bad = list(json.loads((d / "test.json").read_text()).values())[2]
    (d / bad["image_path"] / bad["image_name"]).write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageLoadError, match=f"cannot read image .*{bad['image_name']}"):
        parts["test"][2]
    with pytest.raises(ImageLoadError, match="does not exist"):
        read_image(tmp_path / "none.jpg")


def test_class_weights_and_sampler_by_hand(ethec_dir):
    from conehier.hierarchy.graph import Hierarchy

    paths = [("F", "S", "G", "G_a")] * 3 + [("F", "S", "G", "G_b")]
    h = Hierarchy.from_label_paths(paths)
    ds = ETHECImages([f"k{i}" for i in range(4)], paths, ["x"] * 4, h, transform=lambda im: im, check=False)
    w = ds.class_weights()
    # counts: F, S, G: 4; G_a: 3; G_b: 1 -> N / n = 1, 1, 1, 4/3, 4 ; normalised to mean 1
    raw = np.array([1, 1, 1, 4 / 3, 4])
    np.testing.assert_allclose(w[h.encode(["F", "S", "G", "G_a", "G_b"])], raw / raw.mean())
    s = ds.sampler(generator=torch.Generator().manual_seed(0))
    # drawing weight = 1 / count of the rarest label: 1/3 for the G_a images, 1 for the G_b image
    np.testing.assert_allclose(s.weights.numpy(), np.array([1 / 3, 1 / 3, 1 / 3, 1]) / 2)
    with pytest.raises(ValueError, match="duplicate image keys"):
        ETHECImages(["a", "a"], paths[:2], ["x", "y"], h, check=False)
    with pytest.raises(ValueError, match="same length"):
        ETHECImages(["a"], paths[:2], ["x", "y"], h, check=False)


def test_collate_in_a_dataloader(ethec_dir):
    ds = load_ethec_images(ethec_dir, splits=("val",), transforms=image_transforms(False, resize=32, crop=16))["val"]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate_images)
    imgs, keys, paths = next(iter(loader))
    assert imgs.shape == (5, 3, 16, 16) and keys == ds.keys[:5] and paths == ds.label_paths[:5]
