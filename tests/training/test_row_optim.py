import torch

from conehier.training.row_optim import RowAdam, RowOptimizer, RowRSGD


def test_row_adam_equals_adam_when_every_row_is_touched():
    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ref = torch.optim.Adam([w1], lr=0.1)
    ours = RowAdam(w2, lr=0.1)
    rows = torch.arange(5)
    for step in range(4):
        g = torch.randn(5, 3, dtype=torch.float64)
        w1.grad = g.clone()
        ref.step()
        ours.step(rows, g)
    assert torch.allclose(w1, w2)


def test_row_adam_leaves_untouched_rows_alone():
    w = torch.nn.Parameter(torch.zeros(4, 2))
    opt = RowAdam(w, lr=0.5)
    opt.step(torch.tensor([1, 3]), torch.ones(2, 2))
    assert torch.equal(w[0], torch.zeros(2)) and torch.equal(w[2], torch.zeros(2))
    assert torch.allclose(w[1], torch.full((2,), -0.5))  # first Adam step moves by lr * sign(grad)


def test_row_rsgd_uses_the_inverse_poincare_metric():
    w = torch.nn.Parameter(torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
    opt = RowOptimizer(RowRSGD(w, lr=1.0))
    opt.param_groups[0]["lr"] = 2.0
    opt.step(torch.tensor([0]), torch.tensor([[1.0, 0.0]]))
    # (1 - 0.25)^2 / 4 = 0.140625; x <- 0.5 - 2 * 0.140625
    assert torch.allclose(w[0], torch.tensor([0.5 - 2 * 0.140625, 0.0]))
    state = opt.state_dict()
    assert state["lr"] == 2.0
