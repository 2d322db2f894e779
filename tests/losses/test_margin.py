import math

import pytest
import torch

from conehier.losses.margin import MaxMarginLoss, distance_softmax_loss, max_margin_loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_margin_hand_computed(dtype):
    pos = torch.tensor([0.0, 0.5], dtype=dtype)
    neg = torch.tensor([[0.2, 1.0], [0.0, 0.05]], dtype=dtype)
    # margin 0.1: row 0: 0 + (0 + 0) ; row 1: 0.5 + (0.1 + 0.05)
    assert torch.isclose(max_margin_loss(pos, neg, 0.1), torch.tensor(0.65, dtype=dtype))
    assert torch.allclose(max_margin_loss(pos, neg, 0.1, "none"), torch.tensor([0.0, 0.65], dtype=dtype))
    assert torch.isclose(MaxMarginLoss(0.1, "mean")(pos, neg), torch.tensor(0.325, dtype=dtype))


def test_distance_softmax_hand_computed():
    pos, neg = torch.tensor([1.0]), torch.tensor([[2.0, 3.0]])
    ref = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3)))
    assert math.isclose(distance_softmax_loss(pos, neg).item(), ref, rel_tol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match="neg must have shape"):
        max_margin_loss(torch.zeros(3), torch.zeros(4, 2), 0.1)
    with pytest.raises(ValueError, match="reduction"):
        max_margin_loss(torch.zeros(3), torch.zeros(3, 2), 0.1, "avg")
