"""Tests of the ten AdaptiveISP modules: hand-computed values per equation, identities,
batch independence, dtypes/devices, gradchecks, parameter clamping and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ispbench.ops import (
    MAX_PARAMS,
    MODULE_COST_MS,
    MODULE_NAMES,
    PARAM_RANGES,
    apply,
    hsv_to_rgb,
    identity_params,
    luminance,
    n_params,
    param_ranges,
    rgb_to_hsv,
    squash,
)

F64 = torch.float64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def px(*rgb, dtype=F64):
    """A (1, 3, 1, 1) image holding one pixel."""
    return torch.tensor(rgb, dtype=dtype).view(1, 3, 1, 1)


def typical(name: str, batch: int, dtype=F64, seed: int = 0) -> torch.Tensor:
    """Per-sample parameters strictly inside the range, away from clamps and singularities."""
    g = torch.Generator().manual_seed(seed)
    lows = torch.tensor([r[0] for r in PARAM_RANGES[name]], dtype=dtype)
    highs = torch.tensor([r[1] for r in PARAM_RANGES[name]], dtype=dtype)
    u = torch.rand(batch, n_params(name), generator=g, dtype=dtype)
    if name == "ccm":
        return identity_params(name, batch, dtype=dtype) + 0.2 * (u - 0.5)
    if name == "exposure":
        return 0.3 * (u - 0.5)
    if name in ("sharpen_blur",):
        return 0.6 + 0.6 * u
    if name == "denoise":
        return 0.5 + 0.5 * u
    return lows + (highs - lows) * (0.2 + 0.6 * u)


def image(batch=2, h=6, w=6, dtype=F64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.2 + 0.6 * torch.rand(batch, 3, h, w, generator=g, dtype=torch.float64)).to(dtype)


# ------------------------------------------------------------------------------ registry facts


def test_names_counts_costs():
    assert MODULE_NAMES == (
        "exposure", "white_balance", "ccm", "gamma", "denoise",
        "sharpen_blur", "tone", "contrast", "saturation", "desaturation",
    )
    assert [n_params(n) for n in MODULE_NAMES] == [1, 3, 9, 1, 1, 1, 8, 1, 1, 1]
    assert MAX_PARAMS == 9
    assert MODULE_COST_MS["denoise"] == 10 and MODULE_COST_MS["sharpen_blur"] == 6.3
    assert set(MODULE_COST_MS) == set(MODULE_NAMES)
    assert all(len(PARAM_RANGES[n]) == n_params(n) for n in MODULE_NAMES)
    assert param_ranges("sharpen_blur", "code") == [(0.0, 10.0)]


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="valid names: exposure, white_balance"):
        apply("vignette", image(), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="valid names"):
        n_params("vignette")


def test_wrong_shape_refused_with_message():
    with pytest.raises(ValueError, match=r"params for 'ccm' must have shape \(B, 9\), got \(4, 3\)"):
        apply("ccm", image(batch=4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"params for 'exposure' must have shape \(B, 1\), got \(3, 1\)"):
        apply("exposure", image(batch=2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"params for 'gamma' must have shape \(B, 1\), got \(2,\)"):
        apply("gamma", image(batch=2), torch.ones(2))
    with pytest.raises(ValueError, match=r"image must have shape \(B, 3, H, W\)"):
        apply("gamma", torch.rand(2, 4, 5, 5), torch.ones(2, 1))
    with pytest.raises(ValueError, match="variant must be one of"):
        apply("gamma", image(), torch.ones(2, 1), variant="tf")


# ------------------------------------------------------------------------------ hand computations


def test_exposure_eq12():
    x = torch.tensor([0.25, 0.5, 0.8], dtype=F64).view(1, 3, 1, 1)
    y = apply("exposure", x, torch.tensor([[1.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.tensor([0.5, 1.0, 1.0], dtype=F64))  # 1.6 clamped
    y = apply("exposure", x, torch.tensor([[1.0]], dtype=F64), clamp=False)
    assert torch.allclose(y.flatten(), torch.tensor([0.5, 1.0, 1.6], dtype=F64))
    y = apply("exposure", x, torch.tensor([[-2.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.tensor([0.0625, 0.125, 0.2], dtype=F64))


def test_white_balance_eq13_and_code_variant():
    x = px(0.2, 0.4, 0.6)
    y = apply("white_balance", x, torch.tensor([[1.5, 1.0, 0.7]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.tensor([0.3, 0.4, 0.42], dtype=F64))
    gains = torch.tensor([[1.5, 1.2, 0.8]], dtype=F64)
    y = apply("white_balance", x, gains, variant="code")
    scale = 1e-5 + 0.27 * 1.0 + 0.67 * 1.2 + 0.06 * 0.8  # R gain fixed to 1
    assert torch.allclose(y.flatten(), torch.tensor([0.2, 0.48, 0.48], dtype=F64) / scale)
    # a grey keeps its luminance in the code variant
    grey = px(0.5, 0.5, 0.5)
    assert torch.allclose(luminance(apply("white_balance", grey, gains, variant="code")), luminance(grey), atol=1e-5)


def test_ccm_eq14_rows_normalised():
    x = px(0.2, 0.4, 0.6)
    m = torch.tensor([[2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.5]], dtype=F64)
    y = apply("ccm", x, m)
    assert torch.allclose(y.flatten(), torch.tensor([0.2, 0.3, 0.6], dtype=F64))
    m = torch.tensor([[1.5, -0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]], dtype=F64)
    assert torch.allclose(apply("ccm", x, m).flatten(), torch.tensor([0.1, 0.4, 0.6], dtype=F64))


def test_gamma_eq15_with_guard():
    x = torch.tensor([0.25, 0.0, 1.0], dtype=F64).view(1, 3, 1, 1)
    y = apply("gamma", x, torch.tensor([[2.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.tensor([0.0625, 1e-6, 1.0], dtype=F64))
    y = apply("gamma", x, torch.tensor([[0.5]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.tensor([0.5, math.sqrt(1e-3), 1.0], dtype=F64))


def test_sharpen_blur_eq17_delta():
    x = torch.zeros(1, 3, 5, 5, dtype=F64)
    x[:, :, 2, 2] = 1.0
    y = apply("sharpen_blur", x, torch.tensor([[0.0]], dtype=F64))  # pure blur
    assert torch.allclose(y[0, :, 2, 2], torch.full((3,), 5 / 13, dtype=F64))
    assert torch.allclose(y[0, :, 1, 1], torch.full((3,), 1 / 13, dtype=F64))
    assert float(y[0, 0, 0, 0]) == 0.0
    y = apply("sharpen_blur", x, torch.tensor([[0.5]], dtype=F64))
    assert torch.allclose(y[0, :, 2, 2], torch.full((3,), 0.5 + 0.5 * 5 / 13, dtype=F64))
    y = apply("sharpen_blur", x, torch.tensor([[2.0]], dtype=F64))  # sharpen: 2 - 5/13 > 1, -1/13 < 0
    assert float(y[0, 0, 2, 2]) == 1.0 and float(y[0, 0, 1, 2]) == 0.0
    y = apply("sharpen_blur", x, torch.tensor([[2.0]], dtype=F64), clamp=False)
    assert torch.allclose(y[0, 0, 1, 2], torch.tensor(-1 / 13, dtype=F64))
    # code variant accepts factors up to 10; paper clamps them to 2
    y10 = apply("sharpen_blur", x, torch.tensor([[10.0]], dtype=F64), variant="code", clamp=False)
    assert torch.allclose(y10[0, 0, 1, 2], torch.tensor(-9 / 13, dtype=F64))
    y_paper = apply("sharpen_blur", x, torch.tensor([[10.0]], dtype=F64), clamp=False)
    assert torch.allclose(y_paper[0, 0, 1, 2], torch.tensor(-1 / 13, dtype=F64))
    # a constant image is unchanged at the borders too (replicate padding)
    c = torch.full((1, 3, 4, 4), 0.3, dtype=F64)
    assert torch.allclose(apply("sharpen_blur", c, torch.tensor([[0.0]], dtype=F64)), c)


def test_tone_eq18():
    slopes = torch.tensor([[2.0, 1, 1, 1, 1, 1, 1, 1]], dtype=F64)  # sum 9
    x = torch.tensor([0.0625, 0.25, 1.0], dtype=F64).view(1, 3, 1, 1)
    y = apply("tone", x, slopes)
    assert torch.allclose(y.flatten(), torch.tensor([1 / 9, 3 / 9, 1.0], dtype=F64))
    # agrees with the sum of clipped ramps on random values
    xr = torch.rand(2, 3, 5, 5, dtype=F64)
    p = typical("tone", 2)
    ref = sum(torch.clamp(8 * xr - i, 0, 1) * p[:, i].view(2, 1, 1, 1) for i in range(8)) / p.sum(1).view(2, 1, 1, 1)
    assert torch.allclose(apply("tone", xr, p), ref)


def test_contrast_eq19_20():
    x = px(0.25, 0.25, 0.25)
    target = 0.5 - math.cos(math.pi * 0.25) / 2
    y = apply("contrast", x, torch.tensor([[1.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.full((3,), target, dtype=F64), atol=1e-5)
    y = apply("contrast", x, torch.tensor([[-1.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.full((3,), 0.5 - target, dtype=F64), atol=1e-5)
    y = apply("contrast", px(0.0, 0.0, 0.0), torch.tensor([[1.0]], dtype=F64))  # safe divide
    assert torch.equal(y, torch.zeros_like(y))


def test_saturation_code_formula():
    x = px(0.6, 0.4, 0.2)
    s, m = 0.4 / 0.6, (0.5 - 0.1) * 0.8
    s2 = s + (1 - s) * m
    sat = torch.tensor([0.6, 0.6 - 0.2 * s2 / s, 0.6 - 0.4 * s2 / s], dtype=F64)
    y = apply("saturation", x, torch.tensor([[1.0]], dtype=F64))
    assert torch.allclose(y.flatten(), sat)
    y = apply("saturation", x, torch.tensor([[0.5]], dtype=F64))
    assert torch.allclose(y.flatten(), 0.5 * x.flatten() + 0.5 * sat)
    # equals an explicit HSV round trip
    xr = image(2, 5, 5)
    p = typical("saturation", 2)
    hsv = rgb_to_hsv(xr)
    s_, v_ = hsv[:, 1:2], hsv[:, 2:3]
    s_new = s_ + (1 - s_) * (0.5 - (0.5 - v_).abs()) * 0.8
    ref = torch.lerp(xr, hsv_to_rgb(torch.cat([hsv[:, :1], s_new, v_], 1)), p.view(2, 1, 1, 1))
    assert torch.allclose(apply("saturation", xr, p), ref)
    assert torch.allclose(apply("saturation", xr, p, variant="code"), ref)


def test_saturation_grey_pixels():
    grey = px(0.4, 0.4, 0.4)
    one = torch.ones(1, 1, dtype=F64)
    assert torch.allclose(apply("saturation", grey, one), grey)  # paper variant: stays grey
    m = (0.5 - 0.1) * 0.8  # code: hue 0 -> (v, v(1-m), v(1-m))
    code = apply("saturation", grey, one, variant="code")
    assert torch.allclose(code.flatten(), torch.tensor([0.4, 0.4 * (1 - m), 0.4 * (1 - m)], dtype=F64))


def test_desaturation_eq22():
    x = px(0.2, 0.4, 0.6)
    lum = 0.27 * 0.2 + 0.67 * 0.4 + 0.06 * 0.6
    y = apply("desaturation", x, torch.tensor([[1.0]], dtype=F64))
    assert torch.allclose(y.flatten(), torch.full((3,), lum, dtype=F64))
    y = apply("desaturation", x, torch.tensor([[0.5]], dtype=F64))
    assert torch.allclose(y.flatten(), 0.5 * x.flatten() + 0.5 * lum)


def _nlm_brute(x: np.ndarray, strength: float) -> np.ndarray:
    """Per-pixel NLM, the definition written out (tiny images only)."""
    _, h, w = x.shape
    lum = 0.27 * x[0] + 0.67 * x[1] + 0.06 * x[2]
    lp = np.pad(lum, 7, mode="edge")
    xp = np.pad(x, ((0, 0), (5, 5), (5, 5)), mode="edge")
    hh = 2 * (0.1 * strength) ** 2
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            ref = lp[i + 5 : i + 10, j + 5 : j + 10]
            num, den = np.zeros(3), 0.0
            for dy in range(-5, 6):
                for dx in range(-5, 6):
                    cand = lp[i + 5 + dy : i + 10 + dy, j + 5 + dx : j + 10 + dx]
                    wgt = math.exp(-np.mean((ref - cand) ** 2) / hh)
                    num += wgt * xp[:, i + 5 + dy, j + 5 + dx]
                    den += wgt
            out[:, i, j] = num / den
    return out


def test_denoise_matches_per_pixel_definition():
    x = image(1, 5, 6)
    for strength in (0.3, 1.0):
        y = apply("denoise", x, torch.tensor([[strength]], dtype=F64))
        assert np.allclose(y[0].numpy(), _nlm_brute(x[0].numpy(), strength), atol=1e-10)


def test_denoise_reduces_noise_and_keeps_constants():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    clean = torch.stack([xx, yy, 0.5 * (xx + yy)])[None].double()
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = apply("denoise", noisy, torch.tensor([[0.5]], dtype=F64))
    assert (y - clean).pow(2).mean() < 0.25 * (noisy - clean).pow(2).mean()
    c = torch.full((1, 3, 7, 7), 0.3, dtype=F64)
    assert torch.allclose(apply("denoise", c, torch.tensor([[0.7]], dtype=F64)), c)


# ------------------------------------------------------------------------------ generic properties


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_identity_params_give_identity(name):
    x = image(2, 6, 7)
    y = apply(name, x, identity_params(name, 2, dtype=F64))
    assert torch.allclose(y, x, atol=1e-3 if name == "gamma" else 1e-12)  # gamma: max(x, 1e-3)
    if name == "gamma":
        assert torch.allclose(y, x.clamp_min(1e-3))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_no_leak_across_batch(name):
    x = image(3, 6, 7)
    p = typical(name, 3)
    batched = apply(name, x, p)
    for b in range(3):
        alone = apply(name, x[b : b + 1], p[b : b + 1])
        assert torch.allclose(batched[b : b + 1], alone, atol=1e-12)
    # different parameters do give different outputs (the test can fail)
    if name != "denoise":
        assert not torch.allclose(batched[0], apply(name, x[:1], p[1:2])[0])


@pytest.mark.parametrize("name", MODULE_NAMES)
@pytest.mark.parametrize("variant", ["paper", "code"])
def test_float32_matches_float64_and_stays_in_range(name, variant):
    x = image(2, 6, 6)
    p = typical(name, 2)
    y64 = apply(name, x, p, variant=variant)
    y32 = apply(name, x.float(), p.float(), variant=variant)
    assert y32.dtype == torch.float32 and y64.dtype == F64
    assert torch.allclose(y32.double(), y64, atol=1e-4)
    assert y64.min() >= 0 and y64.max() <= 1


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_extreme_params_keep_output_in_range(name):
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    lows = torch.tensor([[r[0] for r in PARAM_RANGES[name]]], dtype=F64)
    highs = torch.tensor([[r[1] for r in PARAM_RANGES[name]]], dtype=F64)
    for p in (lows.expand(2, -1), highs.expand(2, -1)):
        y = apply(name, x, p)
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_out_of_range_params_are_clamped(name):
    x = image(2, 6, 6)
    lows = torch.tensor([[r[0] for r in PARAM_RANGES[name]]], dtype=F64).expand(2, -1)
    highs = torch.tensor([[r[1] for r in PARAM_RANGES[name]]], dtype=F64).expand(2, -1)
    assert torch.equal(apply(name, x, highs + 5.0), apply(name, x, highs))
    assert torch.equal(apply(name, x, lows - 5.0), apply(name, x, lows))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_squash_maps_into_range(name):
    raw = torch.tensor([[-50.0] * n_params(name), [0.0] * n_params(name), [50.0] * n_params(name)], dtype=F64)
    p = squash(name, raw)
    lows = torch.tensor([r[0] for r in PARAM_RANGES[name]], dtype=F64)
    highs = torch.tensor([r[1] for r in PARAM_RANGES[name]], dtype=F64)
    assert torch.allclose(p[0], lows) and torch.allclose(p[2], highs)
    if name == "gamma":
        assert torch.allclose(p[1], torch.ones(1, dtype=F64))
    else:
        assert torch.allclose(p[1], (lows + highs) / 2)
    with pytest.raises(ValueError, match=r"must have shape \(B, "):
        squash(name, torch.zeros(2, n_params(name) + 1))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_gradcheck_image_and_params(name):
    shape = (1, 3, 5, 5) if name == "denoise" else (2, 3, 6, 6)
    x = image(*shape[:1], *shape[2:]).requires_grad_(True)
    p = typical(name, shape[0]).requires_grad_(True)
    fast = name in ("denoise", "sharpen_blur")  # random projections: the full Jacobian is slow here
    for variant in (("paper", "code") if name in ("white_balance", "saturation") else ("paper",)):
        assert torch.autograd.gradcheck(
            lambda a, b, variant=variant: apply(name, a, b, variant=variant), (x, p), eps=1e-6, atol=1e-5, fast_mode=fast
        )


def test_hsv_round_trip():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    hsv = rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1
    assert torch.allclose(hsv_to_rgb(hsv), x)
    red = rgb_to_hsv(px(1.0, 0.0, 0.0)).flatten()
    assert torch.allclose(red, torch.tensor([0.0, 1.0, 1.0], dtype=F64))
    blue = rgb_to_hsv(px(0.0, 0.0, 0.5)).flatten()
    assert torch.allclose(blue, torch.tensor([2 / 3, 1.0, 0.5], dtype=F64))


@CUDA
@pytest.mark.parametrize("name", MODULE_NAMES)
def test_cuda_matches_cpu(name):
    x = image(2, 8, 8, dtype=torch.float32)
    p = typical(name, 2, dtype=torch.float32)
    y_cpu = apply(name, x, p)
    y_gpu = apply(name, x.cuda(), p.cuda())
    assert y_gpu.is_cuda
    assert torch.allclose(y_gpu.cpu(), y_cpu, atol=1e-5)
