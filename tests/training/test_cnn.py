import json

import numpy as np
import pytest
import torch

from conehier.data.ethec_images import write_synthetic_ethec
from conehier.data.feature_cache import ethec_feature_cache
from conehier.hierarchy.graph import Hierarchy
from conehier.training.cnn import (
    CNN_HEADS,
    CNNConfig,
    CNNData,
    SplitData,
    build_cnn_model,
    classification_metrics,
    evaluation_levels,
    load_cnn_data,
    train_cnn,
)

LEAVES = [("A", "A1", "Ga", "Ga_x"), ("A", "A1", "Ga", "Ga_y"), ("A", "A2", "Gb", "Gb_z"), ("B", "B1", "Gc", "Gc_w")]


def write_feature_cache(d, n=64, dim=16, seed=0, noise=1.0):
    """A feature cache on disk (features.npy, labels.json, meta.json) with learnable synthetic features."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    proto = rng.normal(size=(len(LEAVES), dim)) * 2
    lab = rng.integers(0, len(LEAVES), n)
    X = (proto[lab] + noise * rng.normal(size=(n, dim))).astype(np.float32)
    np.save(d / "features.npy", X)
    a, b = n // 2, 3 * n // 4
    (d / "labels.json").write_text(json.dumps({
        "keys": [f"k{i}" for i in range(n)], "label_paths": [list(LEAVES[k]) for k in lab],
        "splits": {"train": list(range(a)), "val": list(range(a, b)), "test": list(range(b, n))}}))
    (d / "meta.json").write_text(json.dumps({"backbone": "synthetic", "weights": "none", "dim": dim}))
    return d


@pytest.fixture(autouse=True)
def _setup(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ethec_dir(tmp_path_factory):
    return write_synthetic_ethec(tmp_path_factory.mktemp("ethec"), per_leaf=(2, 1, 1), size=32, seed=0)


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    return load_cnn_data(f"features:{write_feature_cache(tmp_path_factory.mktemp('fc'))}")


def _cfg(**kw):
    base = dict(head="per-level", epochs=3, batch_size=8, lr=0.1, device="cpu", threads=1)
    base.update(kw)
    return CNNConfig(**base)


def test_whole_image_path_on_cpu(ethec_dir, tmp_path):
    """Synthetic ETHEC JPEGs -> ResNet-18 (random) -> feature cache -> per-level head; and the head on the CNN."""
    d = ethec_dir
    cache = ethec_feature_cache(d, tmp_path / "cache", backbone="resnet18", weights=None, resize=32, crop=32,
                                progress=False)
    assert cache.X.shape == (24, 512)
    data = load_cnn_data(f"features:{tmp_path / 'cache'}")
    assert data.kind == "features" and data.n_features == 512 and data.hierarchy.num_levels == 4
    res = train_cnn(data, _cfg(epochs=3, lr=0.01), out=tmp_path / "feat_run")
    m = res.metrics
    for k in ("micro_f1", "hit@3", "hit@5", "auprc", *(f"micro_f1_level_{i}" for i in range(1, 5))):
        assert 0.0 <= m[k] <= 1.0
    assert m["micro_precision"] == pytest.approx(m["micro_f1"])  # one prediction per level: P = R = F1

    img = load_cnn_data(f"ethec:{d}", resize=32, crop=32)
    assert img.kind == "images"
    res = train_cnn(img, _cfg(backbone="resnet18", weights=None, epochs=1, batch_size=8, lr=0.01),
                    out=tmp_path / "img_run")
    assert res.epochs_trained == 1 and len(res.history) == 1 and np.isfinite(res.history[0]["loss"])
    assert {f"micro_f1_level_{i}" for i in range(1, 5)} <= set(res.metrics)
    assert (tmp_path / "img_run" / "checkpoint.pt").is_file() and (tmp_path / "img_run" / "results.json").is_file()


@pytest.mark.parametrize("head", list(CNN_HEADS))
def test_every_head_learns_the_features(feats, head, tmp_path):
    res = train_cnn(feats, _cfg(head=head, epochs=8, threshold="ofadb"))
    m = res.metrics
    assert m["micro_f1"] > 0.8 and m["auprc"] > 0.8, m  # separable synthetic classes
    assert res.history[0]["loss"] > res.history[-1]["loss"]
    assert res.threshold_source == ("ofadb(valid)" if head == "flat" else "argmax per level")


def test_metrics_by_hand():
    h = Hierarchy.from_label_paths([("a", "a1"), ("a", "a2"), ("b", "b1")])  # ids: a b a1 a2 b1
    lv = evaluation_levels(h, np.ones(h.n, bool))
    np.testing.assert_array_equal(lv, [1, 1, 2, 2, 2])
    y = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1]])
    pred = np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1]])  # sample 0: leaf wrong
    s = np.array([[0.9, 0.1, 0.3, 0.6, 0.1], [0.2, 0.8, 0.1, 0.5, 0.4]])
    m = classification_metrics(y, s, pred, lv, np.ones(5, bool))
    # 4 true, 4 predicted, 3 right
    assert m["micro_f1"] == pytest.approx(0.75)
    assert m["micro_f1_level_1"] == pytest.approx(1.0) and m["micro_f1_level_2"] == pytest.approx(0.5)
    # level 2 top-1: sample 0 picks a2 (wrong), sample 1 picks a2 (wrong) -> 0; top-3 of 3 nodes -> 1
    assert m["hit@1_level_2"] == 0.0 and m["hit@3_level_2"] == 1.0
    assert m["hit@1"] == pytest.approx((1.0 + 0.0) / 2)
    # a root that is not evaluated: levels start below it
    h2 = Hierarchy.from_label_paths([("a", "a1")], root="root")
    np.testing.assert_array_equal(evaluation_levels(h2, np.array([False, True, True])), [0, 1, 2])


def test_seeded_and_resumable(feats, tmp_path):
    cfg = _cfg(dropout=0.3, hidden=8, epochs=4)
    a = train_cnn(feats, cfg)
    b = train_cnn(feats, cfg)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]  # same seed -> same numbers
    # 2 epochs, then resume to 4: the same run as 4 epochs straight
    train_cnn(feats, _cfg(dropout=0.3, hidden=8, epochs=2), out=tmp_path / "r")
    c = train_cnn(feats, cfg, out=tmp_path / "r")
    assert [h["loss"] for h in c.history] == pytest.approx([h["loss"] for h in a.history], rel=1e-6)
    for k, v in a.model.state_dict().items():
        assert torch.allclose(v, c.model.state_dict()[k], atol=1e-6)
    with pytest.raises(ValueError, match="written with lr=0.1, this run has lr=0.5"):
        train_cnn(feats, _cfg(dropout=0.3, hidden=8, epochs=5, lr=0.5), out=tmp_path / "r")


def test_reweighting_resampling_and_frozen_backbone(feats, ethec_dir):
    res = train_cnn(feats, _cfg(class_weight="inverse", sampling="sqrt", epochs=2))
    assert np.isfinite(res.metrics["micro_f1"])
    img = load_cnn_data(f"ethec:{ethec_dir}", resize=32, crop=32)
    cfg = _cfg(backbone="resnet18", weights=None, finetune="last", epochs=1, batch_size=4)
    torch.manual_seed(cfg.seed)
    before = build_cnn_model(cfg, img).state_dict()
    res = train_cnn(img, cfg)
    after = res.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))  # frozen, BN too
    assert not torch.equal(before["head.linear.weight"], after["head.linear.weight"])


def test_hmc_benchmark(data_root, tmp_path):
    data = load_cnn_data("hmc:cellcycle_FUN", data_dir=data_root)
    assert data.kind == "features" and not data.eval_mask.all()  # the root is not evaluated
    res = train_cnn(data, _cfg(head="flat", epochs=1, batch_size=64, lr=0.05, threshold=0.5))
    levels = [k for k in res.metrics if k.startswith("micro_f1_level_")]
    assert "micro_f1_level_1" in levels and len(levels) >= 4  # FunCat levels below the root
    assert 0.0 < res.metrics["auprc"] < 1.0


def test_bad_input(tmp_path, feats):
    with pytest.raises(ValueError, match="unknown head 'tree'"):
        CNNConfig(head="tree")
    with pytest.raises(ValueError, match="finetune must be"):
        CNNConfig(finetune="some")
    with pytest.raises(ValueError, match="threshold must be"):
        CNNConfig(threshold="best")
    with pytest.raises(ValueError, match="hmc:NAME, features:DIR or ethec:DIR"):
        load_cnn_data("cifar")
    with pytest.raises(ValueError, match="unknown data kind 'imagenet'"):
        load_cnn_data("imagenet:x")
    with pytest.raises(ValueError, match="image directory only applies to ethec"):
        load_cnn_data("features:x", image_dir="y")
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        load_cnn_data(f"features:{tmp_path}")
    with pytest.raises(ValueError, match="must be divisible"):
        from conehier.training.distributed import DistInfo

        train_cnn(feats, _cfg(batch_size=7), dist_info=DistInfo(0, 2))
    h = feats.hierarchy
    X = np.zeros((3, 4), np.float32)
    X[1, 2] = np.nan
    Y = np.zeros((3, h.n), np.uint8)
    with pytest.raises(ValueError, match="split 'train' has NaN"):
        CNNData("bad", h, {"train": SplitData(Y, X), "test": SplitData(Y, X)}, np.ones(h.n, bool), "features")
    with pytest.raises(ValueError, match=r"no 'test' split"):
        CNNData("bad", h, {"train": SplitData(Y, X * 0)}, np.ones(h.n, bool), "features")
    with pytest.raises(ValueError, match=rf"labels of split 'train' must be \(N, {h.n}\)"):
        CNNData("bad", h, {"train": SplitData(Y[:, :3], X * 0), "test": SplitData(Y, X * 0)}, np.ones(h.n, bool),
                "features")


def test_evaluation_schedule_and_selection(feats):
    res = train_cnn(feats, _cfg(epochs=5, eval_every=2, select_metric="loss", lr=0.5))
    evaluated = [h["epoch"] for h in res.history if "valid_loss" in h]
    assert evaluated == [2, 4, 5]  # every 2nd epoch and the last
    losses = {h["epoch"]: h["valid_loss"] for h in res.history if "valid_loss" in h}
    assert res.best_epoch == min(losses, key=losses.get)
    assert res.valid_metrics["loss"] == pytest.approx(losses[res.best_epoch], rel=1e-5)  # the kept model
