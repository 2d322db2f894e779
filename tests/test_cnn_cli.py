import json

import numpy as np
import pytest
import torch

from conehier.cli import build_parser, main
from conehier.data.ethec_images import write_synthetic_ethec
from conehier.data.feature_cache import FeatureCache

LEAVES = [("A", "A1", "Ga", "Ga_x"), ("A", "A1", "Ga", "Ga_y"), ("A", "A2", "Gb", "Gb_z"), ("B", "B1", "Gc", "Gc_w")]


@pytest.fixture(autouse=True)
def _setup(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ethec_dir(tmp_path_factory):
    return write_synthetic_ethec(tmp_path_factory.mktemp("ethec"), per_leaf=(2, 1, 1), size=32, seed=2)


def _cache(d, n=48, dim=8):
    rng = np.random.default_rng(0)
    d.mkdir(parents=True)
    lab = rng.integers(0, len(LEAVES), n)
    np.save(d / "features.npy", (rng.normal(size=(4, dim))[lab] * 3 + rng.normal(size=(n, dim))).astype(np.float32))
    (d / "labels.json").write_text(json.dumps({
        "keys": [f"k{i}" for i in range(n)], "label_paths": [list(LEAVES[k]) for k in lab],
        "splits": {"train": list(range(24)), "val": list(range(24, 36)), "test": list(range(36, 48))}}))
    (d / "meta.json").write_text(json.dumps({"backbone": "synthetic", "weights": "none", "dim": dim}))
    return d


def test_registered():
    args = build_parser().parse_args(["train-cnn", "--data", "hmc:x", "--head", "masked", "--out", "o"])
    assert args.command == "train-cnn" and args.head == "masked" and args.batch_size == 64 and args.lr == 0.01
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-cnn", "--data", "hmc:x", "--head", "softmax", "--out", "o"])


def test_train_cnn_on_features_writes_results_and_resumes(tmp_path, capsys):
    cache = _cache(tmp_path / "cache")
    out = tmp_path / "run"
    argv = ["train-cnn", "--data", f"features:{cache}", "--head", "hierarchical-softmax", "--out", str(out),
            "--batch-size", "8", "--lr", "0.1", "--quiet"]
    assert main(argv + ["--epochs", "3"]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["metrics"]
    for k in ("micro_f1", "micro_f1_level_1", "micro_f1_level_4", "hit@3", "hit@5", "auprc"):
        assert 0.0 <= m[k] <= 1.0
    assert res["config"]["head"] == "hierarchical-softmax" and res["wall_seconds"] > 0
    assert len(res["history"]) == 3
    assert {p.name for p in out.iterdir()} >= {"results.json", "checkpoint.pt", "best.pt", "training_curves.png"}
    text = capsys.readouterr().out
    assert "test micro-F1" in text and "L4" in text
    # the checkpoint is resumed: two more epochs only
    assert main(argv + ["--epochs", "5"]) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert len(res2["history"]) == 5 and res2["history"][:3] == res["history"]


def test_ethec_images_and_feature_cache_cli(ethec_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    base = ["--resize", "32", "--crop", "32", "--workers", "0"]
    assert main(["extract-features", "--ethec", str(ethec_dir), "--out", str(cache), "--backbone", "resnet18",
                 "--random-init", "--quiet", "--resize", "32", "--crop", "32", "--workers", "0"]) == 0
    c = FeatureCache.load(cache)
    assert c.X.shape == (24, 512) and c.meta["backbone"] == "resnet18"
    assert "24 computed" in capsys.readouterr().out
    out = tmp_path / "img"
    assert main(["train-cnn", "--data", f"ethec:{ethec_dir}", "--head", "per-level", "--backbone", "resnet18",
                 "--random-init", "--epochs", "1", "--batch-size", "6", "--out", str(out), "--quiet", *base]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["backbone"] == "resnet18" and res["config"]["weights"] is None
    assert "micro_f1_level_4" in res["metrics"]


def test_clear_errors(ethec_dir, tmp_path, capsys):
    # ImageNet weights neither cached nor downloadable (offline) and no --random-init
    code = main(["train-cnn", "--data", f"ethec:{ethec_dir}", "--head", "flat", "--backbone", "resnet18",
                 "--out", str(tmp_path / "o"), "--resize", "32", "--crop", "32", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "ImageNet weights IMAGENET1K_V1 for resnet18 are not in the torch hub cache" in err
    assert "--random-init" in err
    code = main(["train-cnn", "--data", "hmc:cellcycle_FUN", "--head", "flat", "--backbone", "resnet50",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--backbone applies to ethec: images" in capsys.readouterr().err
    code = main(["train-cnn", "--data", f"ethec:{tmp_path / 'none'}", "--head", "flat", "--out", str(tmp_path / "o")])
    assert code == 2 and "not found" in capsys.readouterr().err
