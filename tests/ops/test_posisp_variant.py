"""The ``"posisp"`` range variant of the module pool (POS-ISP's authors' ranges)."""

from __future__ import annotations

import torch

from ispbench import ops


def test_posisp_ranges():
    assert ops.param_ranges("white_balance", "posisp") == [(1 / 1.1, 1.1)] * 3
    assert ops.param_ranges("sharpen_blur", "posisp") == [(1e-5, 10.0)]
    assert ops.param_ranges("gamma", "posisp") == ops.param_ranges("gamma", "paper")
    assert ops.param_ranges("ccm", "posisp") == ops.param_ranges("ccm", "paper")


def test_posisp_squash_is_linear_for_gamma_too():
    raw = torch.tensor([[-30.0], [0.0], [30.0]])
    assert torch.allclose(ops.squash("gamma", raw, "posisp")[:, 0], torch.tensor([1 / 3, (1 / 3 + 3) / 2, 3.0]))
    assert torch.allclose(ops.squash("gamma", raw[1:2], "paper"), torch.ones(1, 1))  # log-symmetric in "paper"
    p = torch.tensor([[0.5], [2.0]])
    assert torch.allclose(ops.squash("gamma", ops.unsquash("gamma", p, variant="posisp"), "posisp"), p, atol=1e-5)


def test_posisp_white_balance_keeps_a_grey_level():
    grey = torch.full((1, 3, 4, 4), 0.4)
    gains = torch.tensor([[1.1, 0.95, 1 / 1.1]])
    out = ops.apply("white_balance", grey, gains, variant="posisp")
    lum = ops.luminance(out)
    assert torch.allclose(lum, torch.full_like(lum, 0.4), atol=1e-6)
    ratio = out[0, :, 0, 0] / out[0, 1, 0, 0]
    assert torch.allclose(ratio, gains[0] / gains[0, 1])  # the gains' ratios are kept


def test_posisp_variant_is_differentiable():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[1.05, 1.0, 0.95], [0.93, 1.08, 1.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ops.apply("white_balance", a * 0.5, b, variant="posisp"), (x, p))
