import json

import numpy as np
import pytest

from conehier.pipeline import EmbedResult, embed, make_config


def test_embed_toy_tree_learns_and_saves(tmp_path):
    r = embed("toy:3,3", "order", 2, train_percent=50, epochs=40, batch_size=16, lr=0.05, eval_every=10,
              progress=False, out=tmp_path / "run")
    m = r.metrics
    assert 0 <= m["test_f1"] <= 1 and m["best_epoch"] in (10, 20, 30, 40)
    assert m["valid_f1"] > 0.3  # well above the 1/11 base rate
    assert "reconstruction" in m and 0 <= m["reconstruction"]["f1"] <= 1
    back = EmbedResult.load(tmp_path / "run")
    assert np.array_equal(back.embeddings, r.embeddings) and back.metrics["test_f1"] == m["test_f1"]
    assert back.hierarchy.n == 40
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test_f1", "valid_f1", "best_epoch", "wall_seconds", "reconstruction"} <= set(saved)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint.pt").is_file()


def test_embed_reconstruction_both_protocols():
    r = embed("toy:3,2", "order", 2, train_percent=50, epochs=10, batch_size=16, lr=0.05, eval_every=10,
              progress=False, reconstruction=True, reconstruction_positives="both")
    basic, closure = r.metrics["reconstruction"], r.metrics["reconstruction_closure"]
    h = r.hierarchy
    assert basic["positives"] == "basic" and closure["positives"] == "closure"
    assert basic["n_positive"] == len(h.transitive_reduction()) == 14
    assert closure["n_positive"] == h.closure().nnz == 2 * 1 + 4 * 2 + 8 * 3  # each node's depth = its ancestors
    assert basic["n_positive"] + basic["n_negative"] == closure["n_positive"] + closure["n_negative"] == 15 * 14


def test_embed_reconstruction_distance_tie_break():
    kw = dict(train_percent=50, epochs=10, batch_size=16, lr=0.05, eval_every=10, progress=False, reconstruction=True)
    plain = embed("toy:3,2", "order", 2, **kw)
    tied = embed("toy:3,2", "order", 2, reconstruction_distance_weight=0.01, **kw)
    assert tied.config.eval.reconstruction_distance_weight == 0.01
    assert np.array_equal(plain.embeddings, tied.embeddings) and plain.metrics["test_f1"] == tied.metrics["test_f1"]
    assert 0 <= tied.metrics["reconstruction"]["f1"] <= 1 and tied.metrics["reconstruction"]["distance_weight"] == 0.01
    # a list: the weight with the best F1 is kept, as the threshold is
    chosen = embed("toy:3,2", "order", 2, reconstruction_distance_weight=[0.0, 0.01], **kw).metrics["reconstruction"]
    assert chosen["f1"] == max(plain.metrics["reconstruction"]["f1"], tied.metrics["reconstruction"]["f1"])
    assert chosen["distance_weight"] in (0.0, 0.01)
    mid = embed("toy:3,2", "order", 2, threshold="midpoint", **kw)
    assert mid.metrics["valid_f1"] == plain.metrics["valid_f1"] and mid.metrics["threshold"] >= plain.metrics["threshold"]
    with pytest.raises(ValueError, match="threshold must be 'edge' or 'midpoint'"):
        make_config("order", 2, threshold="middle")
    for bad in (-1.0, [], [0.0, -0.1]):
        with pytest.raises(ValueError, match="reconstruction_distance_weight must be >= 0"):
            make_config("order", 2, reconstruction_distance_weight=bad)


def test_embed_is_reproducible():
    kw = dict(train_percent=50, epochs=5, batch_size=16, eval_every=5, progress=False, parametrization="exp0",
              optimizer="adam", lr=0.01, init="random")
    a = embed("toy:2,3", "hyperbolic-cones", 3, **kw)
    b = embed("toy:2,3", "hyperbolic-cones", 3, **kw)
    assert np.array_equal(a.embeddings, b.embeddings)
    assert (np.linalg.norm(a.embeddings, axis=1) < 1).all()


def test_make_config_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown option 'epoch'"):
        make_config("order", 2, epoch=3)
    with pytest.raises(ValueError, match="unknown model"):
        make_config("cones", 2)


def test_poincare_init_for_hyperbolic_cones():
    r = embed("toy:2,3", "hyperbolic-cones", 2, train_percent=50, epochs=3, init="poincare", optimizer="rsgd",
              init_epochs=3, batch_size=8,
              eval_every=3, progress=False)
    assert "init" in r.metrics and r.metrics["epochs"] == 3
