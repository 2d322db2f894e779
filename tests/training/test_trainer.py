import numpy as np
import pytest
import torch

from conehier.data.builtin import toy_tree
from conehier.hierarchy.splits import split_edges
from conehier.models.embedding import EmbeddingModel
from conehier.pipeline import link_eval
from conehier.sampling import NegativeSampler
from conehier.training.config import TrainConfig
from conehier.training.trainer import EmbeddingTrainer, make_optimizer


def _setup(tmp_path=None, epochs=6, geometry="hyperbolic-cones", optimizer="rsgd", lr=0.01):
    param = "exp0" if optimizer in ("adam", "row-adam") and geometry == "hyperbolic-cones" else "ball"
    h = toy_tree(3, 3)
    split = split_edges(h, train_percent=50, seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, optimizer=optimizer, eval_every=2, seed=3)
    model = EmbeddingModel(h.n, 3, geometry, parametrization=param).init_random_(torch.Generator().manual_seed(0))
    sampler = NegativeSampler(h, k_parent=2, k_child=2)
    tr = EmbeddingTrainer(model, split.train, sampler, cfg, evaluate=lambda m: link_eval(m, split),
                          checkpoint_dir=tmp_path, progress=False)
    return tr


def test_training_lowers_the_loss_and_keeps_best_epoch():
    tr = _setup(epochs=8, geometry="order", optimizer="adam", lr=0.05)
    state = tr.fit()
    losses = [r["loss"] for r in state.history]
    assert losses[-1] < losses[0]
    assert state.best is not None and state.best["epoch"] in (2, 4, 6, 8)
    best_f1 = max(r["valid_f1"] for r in state.history if "valid_f1" in r)
    assert state.best["metrics"]["valid_f1"] == best_f1


@pytest.mark.parametrize("optimizer", ["rsgd", "row-adam", "row-rsgd"])
def test_resume_gives_the_same_result(tmp_path, optimizer):
    full = _setup(tmp_path / "a", epochs=6, optimizer=optimizer)
    full.fit()
    part = _setup(tmp_path / "b", epochs=6, optimizer=optimizer)
    part.config.epochs = 4  # "interrupted" after epoch 4 (a checkpoint is written at every evaluation)
    part.fit()
    resumed = _setup(tmp_path / "b", epochs=6, optimizer=optimizer)
    resumed.fit(resume=True)
    assert resumed.state.epoch == 6 and len(resumed.state.history) == 6
    assert torch.equal(resumed.model.weight, full.model.weight)
    assert [r["loss"] for r in resumed.state.history] == [r["loss"] for r in full.state.history]


def test_same_seed_same_numbers():
    a, b = _setup(epochs=3), _setup(epochs=3)
    a.fit()
    b.fit()
    assert torch.equal(a.model.weight, b.model.weight)


def test_bad_inputs():
    tr = _setup()
    with pytest.raises(ValueError, match="outside"):
        EmbeddingTrainer(tr.model, np.array([[0, 999]]), tr.sampler, tr.config, progress=False)
    with pytest.raises(ValueError, match="ignores the Poincar"):
        make_optimizer(EmbeddingModel(3, 2, "hyperbolic-cones"), "adam", 0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(EmbeddingModel(3, 2, "order"), "lbfgs", 0.1)


def test_divergence_is_reported():
    tr = _setup(epochs=1, geometry="order", optimizer="sgd", lr=1e30)
    with torch.no_grad():
        tr.model.weight.mul_(1e30)
    with pytest.raises(FloatingPointError):
        tr.fit()
