"""Tests of the static default ISP baseline."""

from __future__ import annotations

import pytest
import torch

from ispbench.data.default_isp import DAYLIGHT_WB, default_isp, srgb_gamma


def test_shape_range_and_determinism():
    x = torch.rand(3, 3, 16, 20, generator=torch.Generator().manual_seed(0)) * 0.3
    y = default_isp(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, default_isp(x.clone()))
    assert default_isp(x[0]).shape == (3, 16, 20)
    torch.testing.assert_close(default_isp(x[0]), y[0])


def test_hand_computed_pixel():
    # A grey-world-neutral camera patch: camera RGB = 0.09 * sensitivity -> after WB all 0.09.
    x = torch.tensor([0.09 * 0.60, 0.09, 0.09 * 0.75]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    y = default_isp(x)
    # luminance 0.09 -> gain 2 -> 0.18 -> sRGB 1.055 * 0.18 ** (1 / 2.4) - 0.055 = 0.4614
    torch.testing.assert_close(y, torch.full_like(y, 1.055 * 0.18 ** (1 / 2.4) - 0.055), atol=1e-5, rtol=0)
    assert DAYLIGHT_WB == pytest.approx((1 / 0.6, 1.0, 1 / 0.75))


def test_gain_is_limited_so_very_dark_frames_stay_dark():
    dark = torch.full((1, 3, 4, 4), 0.001)
    y = default_isp(dark)  # gain capped at 4: G = 0.004 -> sRGB ~ 0.0507
    assert y[0, 1].mean().item() == pytest.approx(srgb_gamma(torch.tensor(0.004)).item(), rel=1e-4)
    assert y.mean() < 0.1


def test_srgb_gamma_is_continuous_and_monotonic():
    x = torch.linspace(0, 1, 1001)
    y = srgb_gamma(x)
    assert torch.all(y[1:] >= y[:-1])
    assert y[0] == 0 and y[-1] == pytest.approx(1.0)
    assert srgb_gamma(torch.tensor(0.0031308)).item() == pytest.approx(0.0031308 * 12.92, rel=1e-4)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="linear"):
        default_isp(torch.rand(2, 4, 8, 8))
    with pytest.raises(TypeError, match="linear"):
        default_isp(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="linear"):
        default_isp([[0.1]])
