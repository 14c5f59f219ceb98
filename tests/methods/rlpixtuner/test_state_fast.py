"""RLPixTuner state features: one full-resolution pass per image, unchanged features at training sizes.

``_reference_features`` is a frozen copy of the feature code as it was before the single-copy
rewrite (the code the shipped policy was trained with); at or below ``analysis_size`` per side the
features must be bit-identical to it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ispbench.methods.rlpixtuner.env as env_module
from ispbench.methods.rlpixtuner.env import FinishingEnv
from ispbench.methods.rlpixtuner.state import (
    StateLayout,
    analysis_image,
    image_features,
    laplacian_pyramid_features,
    photo_stats,
    rgb_histograms,
)
from ispbench.ops.color import luminance
from ispbench.ops.finishing import finish

# ------------------------------------------------------------------ the pre-rewrite code, frozen


def _ref_resize(img, size=64):
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    if img.shape[-1] >= size and img.shape[-2] >= size:
        return F.adaptive_avg_pool2d(img, size)
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


def _ref_hist(img, bins=16):
    b, c = img.shape[:2]
    idx = (img.clamp(0, 1) * bins).long().clamp_max(bins - 1).flatten(2)
    counts = torch.zeros(b, c, bins, dtype=img.dtype, device=img.device)
    counts.scatter_add_(2, idx, torch.ones_like(idx, dtype=img.dtype))
    counts = counts / idx.shape[-1] * bins
    return counts.flatten(1)


def _ref_stats(img):
    lum = luminance(img).flatten(1)
    sat = (img.amax(1) - img.amin(1)).flatten(1).mean(1)
    return torch.stack([lum.mean(1), lum.median(1).values, lum.std(1), sat], 1)


def _ref_pyramid(img, levels=3, grid=4):
    feats = []
    g = img
    for _ in range(levels):
        if min(g.shape[-2:]) < 2 * grid:
            feats.append(img.new_zeros(img.shape[0], 3 * grid * grid))
            continue
        down = F.avg_pool2d(g, 2, ceil_mode=True)
        up = F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False)
        band = (g - up).abs()
        feats.append(10.0 * F.adaptive_avg_pool2d(band, grid).flatten(1))
        g = down
    return torch.cat(feats, 1)


def _reference_features(img, layout):
    img = img.float()
    small = _ref_resize(img)
    h, w = img.shape[-2:]
    a = layout.analysis_size
    if h > a or w > a:
        img = F.adaptive_avg_pool2d(img, (min(h, a), min(w, a)))
    return {
        "small": small,
        "hist": _ref_hist(img, layout.bins),
        "stats": _ref_stats(img),
        "pyramid": _ref_pyramid(img, layout.pyramid_levels, layout.pyramid_grid),
    }


# ------------------------------------------------------------------ tests


def _image(b, h, w, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)
    # exact bin edges and the [0, 1] borders, where a histogram rewrite would first go wrong
    x.view(-1)[:64] = torch.arange(64, dtype=torch.float64) / 16.0 % 1.0
    x.view(-1)[64:70] = torch.tensor([0.0, 1.0, 1.0, 0.9999999, 1e-9, 0.5])
    return x.to(dtype)


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 48, 80), (1, 256, 256), (2, 256, 100), (1, 17, 33), (1, 5, 9),
                                   (1, 64, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_features_at_or_below_analysis_size_are_bit_identical_to_before(shape, dtype):
    b, h, w = shape
    x = _image(b, h, w, seed=h * w, dtype=dtype)
    layout = StateLayout()
    new, ref = image_features(x, layout), _reference_features(x, layout)
    assert new.keys() == ref.keys()
    for key in ref:
        assert new[key].dtype == torch.float32
        assert torch.equal(new[key], ref[key]), key


@pytest.mark.parametrize("bins", [16, 10, 7, 1])
def test_histograms_bit_identical_with_out_of_range_values(bins):
    x = _image(2, 20, 24, seed=bins) * 1.6 - 0.3  # values below 0 and above 1
    x[0, 0, 0, :4] = torch.tensor([float("inf"), -float("inf"), -0.0, 1e30])
    assert torch.equal(rgb_histograms(x, bins), _ref_hist(x, bins))
    h = rgb_histograms(x, bins).view(2, 3, bins)
    assert torch.allclose(h.sum(-1), torch.full((2, 3), float(bins)))


def test_stats_and_pyramid_unchanged():
    x = _image(2, 40, 56, seed=3)
    assert torch.equal(photo_stats(x), _ref_stats(x))
    assert torch.equal(laplacian_pyramid_features(x), _ref_pyramid(x))
    assert torch.equal(laplacian_pyramid_features(x, 2, 2), _ref_pyramid(x, 2, 2))


def test_large_image_features_come_from_one_area_downsampled_copy():
    layout = StateLayout()
    x = _image(1, 300, 520, seed=5)
    a = analysis_image(x, layout.analysis_size)
    assert a.shape == (1, 3, 256, 256) and a.dtype == torch.float32
    assert torch.equal(a, F.adaptive_avg_pool2d(x, (256, 256)))
    feats, of_copy = image_features(x, layout), image_features(a, layout)
    for key in feats:
        assert torch.equal(feats[key], of_copy[key]), key
    # on a smooth image the 64x64 copy is close to the direct area average (the bins differ slightly)
    smooth = F.interpolate(torch.rand(1, 3, 8, 13, generator=torch.Generator().manual_seed(6)), size=(300, 520),
                           mode="bilinear", align_corners=False)
    diff = image_features(smooth, layout)["small"] - F.adaptive_avg_pool2d(smooth, 64)
    assert diff.abs().max() < 0.02 and diff.abs().mean() < 0.002
    # only the side that is too large is reduced
    assert analysis_image(_image(1, 100, 400), 256).shape == (1, 3, 100, 256)


def test_a_block_upsampled_image_has_the_features_of_its_source():
    # 2x2 blocks of values k/256: the area average is exact, so the features match bit for bit
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, 257, (1, 3, 128, 256), generator=g).float() / 256
    big = src.repeat_interleave(2, 2).repeat_interleave(2, 3)  # 256 x 512: only the width is reduced
    big = torch.cat([big, big], 2)[:, :, :512]  # 512 x 512
    layout = StateLayout()
    expect = image_features(torch.cat([src, src], 2), layout)
    got = image_features(big, layout)
    for key in expect:
        assert torch.equal(got[key], expect[key]), key


def test_one_full_resolution_read_per_image(monkeypatch):
    layout = StateLayout()
    big_reads = []
    for name in ("adaptive_avg_pool2d", "avg_pool2d", "interpolate"):
        orig = getattr(F, name)

        def spy(inp, *args, _orig=orig, _name=name, **kwargs):
            if max(inp.shape[-2:]) > layout.analysis_size:
                big_reads.append(_name)
            return _orig(inp, *args, **kwargs)

        monkeypatch.setattr(F, name, spy)
    image_features(torch.rand(1, 3, 720, 1280), layout)
    assert big_reads == ["adaptive_avg_pool2d"]


def test_float64_large_image_is_pooled_without_a_float32_copy_and_close():
    x64 = _image(1, 400, 300, seed=9, dtype=torch.float64)
    layout = StateLayout()
    a = analysis_image(x64, layout.analysis_size)
    assert a.dtype == torch.float32
    assert torch.allclose(a, F.adaptive_avg_pool2d(x64.float(), (256, 256)), atol=1e-6)
    f64, f32 = image_features(x64, layout), image_features(x64.float(), layout)
    for key in f64:
        assert torch.allclose(f64[key], f32[key], atol=1e-4), key


def test_goal_features_once_per_episode(monkeypatch):
    calls = []
    orig = env_module.image_features

    def counting(img, layout):
        calls.append(img.data_ptr())
        return orig(img, layout)

    monkeypatch.setattr(env_module, "image_features", counting)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    goal = finish(x, torch.full((2, 9), 0.2))
    env = FinishingEnv(max_steps=3)
    env.reset(x, goal)
    assert len(calls) == 2  # the goal and I_0
    for _ in range(3):
        env.step(torch.full((2, 9), 0.1))
    assert len(calls) == 5  # one per step: the current image only
