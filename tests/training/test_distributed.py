import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conehier.training.cnn import CNNConfig, load_cnn_data, train_cnn
from conehier.training.distributed import (
    DistInfo,
    WeightedDistributedSampler,
    all_reduce_mean,
    init_distributed,
    make_sampler,
    unwrap,
    wrap_ddp,
)

LEAVES = [("A", "A1", "Ga", "Ga_x"), ("A", "A1", "Ga", "Ga_y"), ("A", "A2", "Gb", "Gb_z"), ("B", "B1", "Gc", "Gc_w")]


def _cache(d: Path, n=64, dim=12, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    lab = rng.integers(0, len(LEAVES), n)
    X = (rng.normal(size=(len(LEAVES), dim))[lab] + rng.normal(size=(n, dim))).astype(np.float32)
    np.save(d / "features.npy", X)
    (d / "labels.json").write_text(json.dumps({
        "keys": [f"k{i}" for i in range(n)], "label_paths": [list(LEAVES[k]) for k in lab],
        "splits": {"train": list(range(32)), "val": list(range(32, 48)), "test": list(range(48, 64))}}))
    (d / "meta.json").write_text(json.dumps({"backbone": "synthetic", "weights": "none", "dim": dim}))
    return d


@pytest.fixture(autouse=True)
def _single(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    torch.set_num_threads(1)


def test_single_process_needs_no_group():
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed, info.is_main, info.backend) == (0, 1, False, True, None)
    assert all_reduce_mean(2.5, info) == 2.5
    m = torch.nn.Linear(2, 2)
    assert wrap_ddp(m, info) is m and unwrap(m) is m


def test_samplers_split_one_global_order():
    info1 = DistInfo(0, 1)
    one = make_sampler(10, info1, seed=3)
    one.set_epoch(2)
    glob = list(one)
    parts = []
    for r in range(2):
        s = make_sampler(10, DistInfo(r, 2), seed=3)
        s.set_epoch(2)
        parts.append(list(s))
    # rank r takes every 2nd index of the same permutation: local batches of B/2 make up the global batch of B
    assert parts[0] == glob[0::2] and parts[1] == glob[1::2]
    w = np.arange(1, 11, dtype=float)
    ws1 = WeightedDistributedSampler(w, 10, seed=1)
    ws = [WeightedDistributedSampler(w, 10, rank=r, world_size=2, seed=1) for r in range(2)]
    for s in (ws1, *ws):
        s.set_epoch(4)
    g = list(ws1)
    assert list(ws[0]) == g[0::2] and list(ws[1]) == g[1::2] and len(ws[0]) == 5
    ws1.set_epoch(5)
    assert list(ws1) != g
    with pytest.raises(ValueError, match="non-negative"):
        WeightedDistributedSampler([-1.0, 2.0], 4)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_gloo_matches_one_process(tmp_path):
    """torchrun --standalone --nproc_per_node 2 on CPU (gloo): same losses and parameters as one process."""
    cache = _cache(tmp_path / "cache")
    args = ["train-cnn", "--data", f"features:{cache}", "--head", "per-level", "--epochs", "2", "--batch-size", "8",
            "--lr", "0.2", "--momentum", "0.5", "--hidden", "8", "--device", "cpu", "--threads", "1", "--quiet", "--no-plot"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out2 = tmp_path / "two"
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "conehier.cli", *args,
                           "--out", str(out2)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    two = json.loads((out2 / "results.json").read_text())
    assert two["world_size"] == 2
    # the same run in this process: 4 steps per epoch of the same global batches of 8
    data = load_cnn_data(f"features:{cache}")
    one = train_cnn(data, CNNConfig(head="per-level", epochs=2, batch_size=8, lr=0.2, momentum=0.5, hidden=8,
                                    device="cpu", threads=1, num_workers=0), out=tmp_path / "one", plot=False)
    assert one.world_size == 1
    np.testing.assert_allclose([h["loss"] for h in two["history"]], [h["loss"] for h in one.history], atol=1e-5)
    st2 = torch.load(out2 / "checkpoint.pt", weights_only=False)["model"]
    st1 = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    assert set(st1) == set(st2)
    for k in st1:
        assert torch.allclose(st1[k], st2[k], atol=1e-5), k
    assert two["metrics"]["micro_f1"] == pytest.approx(one.metrics["micro_f1"], abs=1e-6)
    assert not (out2 / "training_curves.png").exists() and not (tmp_path / "one" / "training_curves.png").exists()
