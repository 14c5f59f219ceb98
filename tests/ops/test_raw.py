"""Raw domain: Bayer mosaic/demosaic, levels, gains, CCM, Brooks et al. unprocessing and noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ispbench.ops import raw as R
from ispbench.ops.checks import SaturationWarning
from ispbench.ops.raw import BayerPattern


def smooth_image(b=2, h=32, w=40, seed=0, dtype=torch.float64, lo=0.15, hi=0.75) -> torch.Tensor:
    """Natural-ish sRGB: smooth, mildly saturated blobs (bilinear upsampling of a coarse grid)."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(b, 1, 4, 5, generator=g, dtype=dtype)
    tint = 0.25 * (torch.rand(b, 3, 4, 5, generator=g, dtype=dtype) - 0.5)
    coarse = (grey + tint).clamp(0, 1)
    x = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1)
    return lo + (hi - lo) * x


@pytest.mark.parametrize("pattern", list(BayerPattern))
def test_mosaic_layout_and_demosaic_keeps_samples(pattern):
    rgb = torch.ones(1, 3, 4, 6) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    bayer = R.mosaic(rgb, pattern)
    assert bayer.shape == (1, 1, 4, 6)
    block = [int(v) for v in bayer[0, 0, :2, :2].flatten()]
    assert "".join("RGB"[v - 1] for v in block) == pattern.value
    assert torch.equal(bayer[..., :2, :2], bayer[..., 2:4, 4:6])
    # string names work too; demosaic of a constant-colour mosaic is that constant everywhere
    torch.testing.assert_close(R.demosaic_bilinear(R.mosaic(rgb, pattern.value), pattern.value), rgb)
    x = torch.rand(2, 3, 6, 8, generator=torch.Generator().manual_seed(1))
    d = R.demosaic_bilinear(R.mosaic(x, pattern), pattern)
    m = R.bayer_masks(pattern, 6, 8)
    torch.testing.assert_close(d * m, x * m)


def test_demosaic_is_bilinear_on_planes():
    """Bilinear interpolation reproduces an affine ramp exactly away from the border."""
    i = torch.arange(10, dtype=torch.float64).view(1, 1, 10, 1)
    j = torch.arange(12, dtype=torch.float64).view(1, 1, 1, 12)
    rgb = torch.cat([0.1 + 0.02 * i + 0.01 * j, 0.5 - 0.01 * i + 0.02 * j, 0.3 + 0.0 * i + 0.03 * j], dim=1)
    d = R.demosaic_bilinear(R.mosaic(rgb, "BGGR"), "BGGR")
    torch.testing.assert_close(d[..., 1:-1, 1:-1], rgb[..., 1:-1, 1:-1])
    # hand value: green at a red site = mean of 4 neighbours
    bayer = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    d = R.demosaic_bilinear(bayer, "RGGB")
    assert d[0, 1, 2, 2].item() == pytest.approx((bayer[0, 0, 1, 2] + bayer[0, 0, 3, 2] + bayer[0, 0, 2, 1] + bayer[0, 0, 2, 3]).item() / 4)
    assert d[0, 2, 2, 2].item() == pytest.approx((bayer[0, 0, 1, 1] + bayer[0, 0, 1, 3] + bayer[0, 0, 3, 1] + bayer[0, 0, 3, 3]).item() / 4)


def test_bad_shapes_refused():
    with pytest.raises(ValueError, match="even H and W"):
        R.demosaic_bilinear(torch.rand(1, 1, 5, 6))
    with pytest.raises(ValueError, match="even H and W"):
        R.mosaic(torch.rand(1, 3, 4, 7))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        R.demosaic_bilinear(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        R.mosaic(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="pattern must be one of"):
        R.mosaic(torch.rand(1, 3, 4, 4), "RGBG")
    with pytest.raises(ValueError, match=r"ccm must have shape \(B, 3, 3\)"):
        R.apply_ccm(torch.rand(2, 3, 4, 4), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError, match=r"gains must have shape \(B, 3\)"):
        R.apply_wb_gains(torch.rand(2, 3, 4, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="white level must exceed"):
        R.apply_black_white_level(torch.rand(4), 100, 50)


def test_levels_gains_ccm():
    raw = torch.tensor([[[[64.0, 1023.0], [543.5, 2000.0]]]])
    with pytest.warns(SaturationWarning, match="1 of 4 values"):
        x = R.apply_black_white_level(raw, 64, 1023)  # 2000 > white 1023: clipped, and reported
    torch.testing.assert_close(x, torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]]))
    y = R.apply_black_white_level(raw, 64, 1023, clip=False)
    torch.testing.assert_close(R.invert_black_white_level(y, 64, 1023), raw)
    rgb = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    gains = torch.tensor([[2.0, 1.0, 0.5], [1.0, 3.0, 1.0]], dtype=torch.float64)
    out = R.apply_wb_gains(rgb, gains)
    torch.testing.assert_close(out[1, 1], 3 * rgb[1, 1])
    torch.testing.assert_close(out[0, 2], 0.5 * rgb[0, 2])
    # Bayer gains equal mosaic(gains * rgb)
    torch.testing.assert_close(R.apply_bayer_gains(R.mosaic(rgb, "GBRG"), gains, "GBRG"), R.mosaic(out, "GBRG"))
    ccm = torch.stack([torch.eye(3, dtype=torch.float64), torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)])
    c = R.apply_ccm(rgb, ccm)
    torch.testing.assert_close(c[0], rgb[0])
    torch.testing.assert_close(c[1], rgb[1, [1, 2, 0]])


def test_random_draws_follow_brooks():
    g = torch.Generator().manual_seed(0)
    ccm = R.random_ccm(g, batch_size=64, dtype=torch.float64)
    assert ccm.shape == (64, 3, 3)
    torch.testing.assert_close(ccm.sum(-1), torch.ones(64, 3, dtype=torch.float64))
    assert R.random_ccm(torch.Generator().manual_seed(5)).shape == (3, 3)
    torch.testing.assert_close(R.random_ccm(torch.Generator().manual_seed(5)), R.random_ccm(torch.Generator().manual_seed(5)))
    rgb_gain, red, blue = R.random_gains(g, batch_size=4000, dtype=torch.float64)
    assert red.min() >= 1.9 and red.max() <= 2.4 and blue.min() >= 1.5 and blue.max() <= 1.9
    assert (1 / rgb_gain).mean().item() == pytest.approx(0.8, abs=0.01)
    assert (1 / rgb_gain).std().item() == pytest.approx(0.1, abs=0.01)
    shot, read = R.random_noise_levels(g, batch_size=4000, dtype=torch.float64)
    assert shot.min() >= 1e-4 and shot.max() <= 0.012
    ls, lr = shot.log(), read.log()
    slope = ((ls - ls.mean()) * (lr - lr.mean())).sum() / ((ls - ls.mean()) ** 2).sum()
    assert slope.item() == pytest.approx(2.18, abs=0.05)
    resid = lr - (2.18 * ls + 1.20)
    assert resid.mean().item() == pytest.approx(0.0, abs=0.02)
    assert resid.std().item() == pytest.approx(0.26, abs=0.02)


def test_add_noise_variance():
    x = torch.full((2, 1, 200, 200), 0.5, dtype=torch.float64)
    shot = torch.tensor([0.01, 0.001], dtype=torch.float64)
    read = torch.tensor([1e-4, 1e-5], dtype=torch.float64)
    y = R.add_noise(x, shot, read, torch.Generator().manual_seed(0))
    for b in range(2):
        expected = (shot[b] * 0.5 + read[b]).item()
        assert (y[b] - x[b]).var().item() == pytest.approx(expected, rel=0.05)
    y2 = R.add_noise(x, shot, read, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)


def test_tone_and_gamma_inverses():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(R.inverse_smoothstep(R.smoothstep(x)), x)
    torch.testing.assert_close(R.gamma_compression(R.gamma_expansion(x[1:])), x[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_without_mosaic(dtype):
    x = smooth_image(dtype=dtype)
    g = torch.Generator().manual_seed(1)
    raw, meta = R.unprocess(x, g, mosaic_output=False)
    assert raw.shape == x.shape and raw.dtype == dtype
    assert raw.min() >= 0 and raw.max() <= 1
    assert meta["ccm"].shape == (2, 3, 3) and meta["gains"].shape == (2, 3)
    back = R.process(raw, meta["gains"], meta["ccm"], demosaic=False)
    assert back.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(back, x, atol=tol, rtol=0)


def test_round_trip_adaptiveisp_scale():
    x = smooth_image(seed=3)
    raw, meta = R.unprocess(x, torch.Generator().manual_seed(2), mosaic_output=False, scale=0.9)
    back = R.process(raw, meta["gains"], meta["ccm"], demosaic=False)
    torch.testing.assert_close(back, 0.9 * x, atol=1e-9, rtol=0)
    assert meta["scale"] == 0.9 and meta["mosaic"] is False


def test_round_trip_with_mosaic_is_close_not_exact():
    # bilinear demosaicing interpolates 2 of 3 colours per pixel: smooth images come back closely,
    # never exactly (edges would show zipper/colour fringes)
    x = smooth_image(h=64, w=64, seed=4)
    raw, meta = R.unprocess(x, torch.Generator().manual_seed(3), pattern="GRBG")
    assert raw.shape == (2, 1, 64, 64) and meta["pattern"] == "GRBG"
    back = R.process(raw, meta["gains"], meta["ccm"], pattern="GRBG")
    err = (back - x).abs()
    assert err.mean().item() < 2e-3
    assert err.max().item() < 5e-2  # worst at the image corners
    assert err.max().item() > 1e-6  # really lossy


def test_highlights_are_not_exactly_invertible():
    # sRGB whose linear value is 0.93 (> 0.9, where Brooks' safe gain inversion tapers off)
    x = R.smoothstep(R.gamma_compression(torch.full((1, 3, 4, 4), 0.93, dtype=torch.float64)))
    gains = torch.tensor([[2.0, 1.2, 1.8]], dtype=torch.float64)
    raw, meta = R.unprocess(x, mosaic_output=False, ccm=torch.eye(3, dtype=torch.float64), gains=gains)
    back = R.process(raw, meta["gains"], meta["ccm"], demosaic=False)
    assert (back - x).min() > 1e-3  # safe inversion + clip: bright pixels come back brighter


def test_per_sample_no_leakage():
    x = smooth_image(b=3, h=8, w=8, seed=5)
    ccm = R.random_ccm(torch.Generator().manual_seed(0), batch_size=3, dtype=torch.float64)
    gains = torch.rand(3, 3, dtype=torch.float64) + 1
    raw, meta = R.unprocess(x, ccm=ccm, gains=gains)
    out = R.process(raw, meta["gains"], meta["ccm"])
    for i in range(3):
        r_i, m_i = R.unprocess(x[i : i + 1], ccm=ccm[i : i + 1], gains=gains[i : i + 1])
        torch.testing.assert_close(raw[i : i + 1], r_i)
        torch.testing.assert_close(out[i : i + 1], R.process(r_i, m_i["gains"], m_i["ccm"]))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(7)
    bayer = torch.rand(1, 1, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: R.demosaic_bilinear(b, "GBRG"), (bayer,))
    x = (0.2 + 0.5 * torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    ccm = R.random_ccm(g, batch_size=1, dtype=torch.float64)
    gains = torch.tensor([[1.5, 1.1, 1.7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda im: R.unprocess(im, ccm=ccm, gains=gains)[0], (x,))
    lin = (0.05 + 0.4 * torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    cam2rgb = torch.linalg.inv(ccm).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda im, m: R.process(im, gains, m, demosaic=False), (lin, cam2rgb))
    b = (0.05 + 0.4 * torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda im: R.process(im, gains, cam2rgb.detach()), (b,))
