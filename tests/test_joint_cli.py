import importlib.util
import json

import numpy as np
import pytest

from conehier.cli import build_parser, main
from conehier.joint_cli import load_joint_data

TERMS = ["01", "01/01", "01/02", "02", "02/01", "02/02"]
LEAVES = ["01/01", "01/02", "02/01", "02/02"]


def _write_arff(root, name="Diatoms", sizes=(120, 60), F=6, seed=0):
    """Tiny Diatoms-named ARFF files (train/test, no valid file) with learnable labels."""
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(len(LEAVES), F)) * 2
    (root / "hmc").mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "test"), sizes):
        lines = ["@RELATION toy"] + [f"@ATTRIBUTE f{k} numeric" for k in range(F)]
        lines += ["@ATTRIBUTE class hierarchical " + ",".join(TERMS), "@DATA"]
        for _ in range(n):
            i = rng.integers(0, len(LEAVES))
            x = proto[i] + 0.3 * rng.normal(size=F)
            lines.append(",".join(f"{v:.4f}" for v in x) + "," + LEAVES[i])
        (root / "hmc" / f"{name}_{split}.arff").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return _write_arff(tmp_path_factory.mktemp("joint_cli"))


def _run(args):
    return main(["train-joint", *args])


def test_train_joint_hmc_writes_results_checkpoint_plots_and_resumes(toy_root, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data", "hmc:Diatoms", "--data-dir", str(toy_root), "--geometry", "euclidean-cones", "--dim", "2",
              "--out", str(out), "--lr-W", "0.01", "--quiet"]
    assert _run([*common, "--epochs", "2"]) == 0
    r = json.loads((out / "results.json").read_text())
    m = r["metrics"]
    for k in ("micro_f1", "micro_f1_level_1", "micro_f1_level_2", "hit@3", "hit@5", "auprc"):
        assert 0 <= m[k] <= 1
    assert r["config"]["geometry"] == "euclidean-cones" and r["config"]["dim"] == 2
    assert r["wall_seconds"] > 0 and r["epochs"] == 2 and r["decision"] == "level-argmax"
    assert r["data"]["n_train"] == 96 and r["data"]["n_valid"] == 24 and r["data"]["n_test"] == 60
    assert 0 <= r["reconstruction"]["f1"] <= 1
    assert (out / "checkpoints" / "joint_checkpoint.pt").is_file()
    assert (out / "training_curves.png").stat().st_size > 0
    assert (out / "joint_embedding.png").stat().st_size > 0  # dim 2
    assert "micro-F1" in capsys.readouterr().out
    # resume: two more epochs on top of the checkpoint
    assert _run([*common, "--epochs", "4", "--no-plots"]) == 0
    r2 = json.loads((out / "results.json").read_text())
    assert [h["epoch"] for h in r2["history"]] == [1, 2, 3, 4]
    assert r2["history"][:2] == r["history"][:2]


def test_train_joint_errors(toy_root, tmp_path, capsys):
    assert _run(["--data", "nope", "--geometry", "order", "--dim", "2", "--out", str(tmp_path)]) == 2
    assert "hmc:NAME" in capsys.readouterr().err
    assert _run(["--data", "features:" + str(tmp_path / "missing"), "--geometry", "order", "--dim", "2",
                 "--out", str(tmp_path)]) == 2
    assert _run(["--data", "hmc:Diatoms", "--data-dir", str(toy_root), "--backbone", "resnet18",
                 "--geometry", "order", "--dim", "2", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-joint", "--data", "hmc:x", "--geometry", "poincare", "--dim", "2",
                                   "--out", "o"])


@pytest.mark.skipif(importlib.util.find_spec("conehier.data.feature_cache") is None,
                    reason="the feature cache module is not there")
def test_train_joint_from_feature_cache(tmp_path):
    from conehier.data.feature_cache import FeatureCache

    rng = np.random.default_rng(0)
    paths = [("A", "A1"), ("A", "A2"), ("B", "B1")]
    proto = rng.normal(size=(3, 8)) * 2
    k = rng.integers(0, 3, 90)
    X = (proto[k] + 0.3 * rng.normal(size=(90, 8))).astype(np.float32)
    d = tmp_path / "cache"
    d.mkdir()
    np.save(d / "features.npy", X)
    (d / "meta.json").write_text(json.dumps({"backbone": "toy", "dim": 8, "n": 90}))
    (d / "labels.json").write_text(json.dumps({
        "keys": [f"img{i}" for i in range(90)], "label_paths": [list(paths[i]) for i in k],
        "splits": {"train": list(range(60)), "val": list(range(60, 75)), "test": list(range(75, 90))}}))
    assert FeatureCache.load(d).X.shape == (90, 8)
    data = load_joint_data(f"features:{d}")
    assert len(data["X_train"]) == 60 and len(data["X_valid"]) == 15 and data["Y_test"].shape == (15, 5)
    out = tmp_path / "run"
    assert main(["train-joint", "--data", f"features:{d}", "--geometry", "order", "--dim", "3", "--epochs", "3",
                 "--out", str(out), "--quiet", "--no-plots"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["data"]["n_test"] == 15 and "micro_f1_level_2" in r["metrics"]


@pytest.mark.data
def test_load_joint_data_real_hmc(data_root):
    d = load_joint_data("hmc:ImCLEF07A", data_dir=data_root)
    assert d["X_train"].shape == (8000, 80) and d["X_valid"].shape == (2000, 80) and d["X_test"].shape == (1006, 80)
    assert d["Y_train"].shape[1] == d["hierarchy"].n == 97


def test_train_joint_on_ethec_images_end_to_end(tmp_path, monkeypatch, capsys):
    """Synthetic ETHEC JPEGs -> ResNet-18 (random weights) -> feature cache -> joint hyperbolic cones
    -> one predicted label per level, from the command line; a second run reuses the cache."""
    from conehier.data.ethec_images import write_synthetic_ethec
    from conehier.data.feature_cache import FeatureCache

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no ImageNet weights here
    monkeypatch.setenv("CONEHIER_OFFLINE", "1")
    d = write_synthetic_ethec(tmp_path / "ethec", per_leaf=(2, 1, 1), size=32, seed=0)
    cache = tmp_path / "cache"

    def args(out, *extra):
        return ["train-joint", "--data", f"ethec:{d}", "--backbone", "resnet18", "--resize", "32", "--crop", "32",
                "--cache-dir", str(cache), "--geometry", "hyperbolic-cones", "--dim", "4", "--epochs", "2",
                "--out", str(out), "--quiet", "--no-plots", "--threads", "1", *extra]

    # without weights and without --random-init: a clear error naming the weights, nothing trained
    assert main(args(tmp_path / "run0")) == 2
    err = capsys.readouterr().err
    assert "weights" in err.lower() and "--random-init" in err
    assert not (tmp_path / "run0" / "results.json").exists()

    assert main(args(tmp_path / "run", "--random-init")) == 0
    fc = FeatureCache.load(cache)
    assert fc.X.shape[1] == 512 and fc.meta["backbone"] == "resnet18"
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    m = r["metrics"]
    assert {f"micro_f1_level_{i}" for i in range(1, 5)} <= set(m)
    for k in ("micro_f1", "hit@3", "hit@5", "auprc"):
        assert 0.0 <= m[k] <= 1.0
    X = np.array(fc.X)
    assert main(args(tmp_path / "run2", "--random-init")) == 0  # same cache: its rows are reused
    np.testing.assert_array_equal(FeatureCache.load(cache).X, X)
    r2 = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert r2["metrics"] == m  # seeded: the same numbers
