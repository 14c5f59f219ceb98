"""Denoise (NLM): the fast path (symmetric offset pairs, hand-written backward) against the former
implementation ``_nlm_reference`` and a per-pixel definition; gradchecks; the search-window option."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ispbench.ops import apply
from ispbench.ops import modules as M

F64 = torch.float64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def rand(*shape, seed=0, dtype=F64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def nlm_brute(x: np.ndarray, strength: float, window: int) -> np.ndarray:
    """Per-pixel NLM written out (tiny images only): ``window`` search, 5 x 5 patch, replicate padding."""
    _, h, w = x.shape
    rs, rp = window // 2, 2
    lum = 0.27 * x[0] + 0.67 * x[1] + 0.06 * x[2]
    lp = np.pad(lum, rs + rp, mode="edge")
    xp = np.pad(x, ((0, 0), (rs, rs), (rs, rs)), mode="edge")
    hh = 2 * (0.1 * strength) ** 2
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            ref = lp[i + rs : i + rs + 5, j + rs : j + rs + 5]
            num, den = np.zeros(3), 0.0
            for dy in range(-rs, rs + 1):
                for dx in range(-rs, rs + 1):
                    cand = lp[i + rs + dy : i + rs + dy + 5, j + rs + dx : j + rs + dx + 5]
                    wgt = math.exp(-np.mean((ref - cand) ** 2) / hh)
                    num += wgt * xp[:, i + rs + dy, j + rs + dx]
                    den += wgt
            out[:, i, j] = num / den
    return out


@pytest.fixture(params=["one strip", "strips"])
def strips(request, monkeypatch):
    """Run each test with whole images and with images cut into 16-row strips (CPU work split)."""
    if request.param == "strips":
        monkeypatch.setattr(M, "_NLM_CPU_BUDGET", 1)
    return request.param


# ------------------------------------------------------------------------------ fast == former


@pytest.mark.parametrize("shape", [(3, 3, 40, 13), (1, 3, 3, 4), (2, 3, 17, 33)])
def test_fast_equals_reference(shape, strips):
    x = rand(*shape, seed=1)
    strength = torch.tensor([0.05, 0.4, 1.0][: shape[0]], dtype=F64)
    assert torch.allclose(M._nlm(x, strength), M._nlm_reference(x, strength), atol=1e-12, rtol=0)


def test_fast_gradients_equal_reference(strips):
    x = rand(2, 3, 37, 12, seed=2).requires_grad_(True)
    s = torch.tensor([0.3, 0.9], dtype=F64, requires_grad=True)
    upstream = torch.randn(2, 3, 37, 12, generator=torch.Generator().manual_seed(3), dtype=F64)
    fast = torch.autograd.grad((M._nlm(x, s) * upstream).sum(), (x, s))
    ref = torch.autograd.grad((M._nlm_reference(x, s) * upstream).sum(), (x, s))
    for a, b in zip(fast, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-11, rtol=1e-9)
    assert ref[1].abs().min() > 1e-3  # the strength gradient is not trivially zero


def test_float32_close_to_float64_reference():
    x = rand(2, 3, 33, 20, seed=4)
    s = torch.tensor([0.5, 1.0], dtype=F64)
    y32 = M._nlm(x.float(), s.float())
    assert y32.dtype == torch.float32 and y32.shape == x.shape
    assert (y32.double() - M._nlm_reference(x, s)).abs().max() < 1e-5


def test_module_equals_reference_with_zero_strength_rows():
    x = rand(3, 3, 12, 10, seed=5)
    p = torch.tensor([[0.0], [0.6], [0.2]], dtype=F64)
    y = apply("denoise", x, p)
    assert torch.equal(y[0], x[0])  # strength 0: the exact identity, not computed
    assert torch.allclose(y[1:], M._nlm_reference(x[1:], p[1:, 0]), atol=1e-12)


# ------------------------------------------------------------------------------ gradients


def test_gradcheck_fast_path():
    x = rand(1, 3, 4, 5, seed=6).requires_grad_(True)
    s = torch.tensor([0.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(M._nlm, (x, s), eps=1e-6, atol=1e-5)


def test_gradcheck_strength_only_and_small_window():
    # the image without gradient (a trainer's pool image) takes the shorter backward pass
    x = rand(2, 3, 7, 6, seed=7)
    s = torch.tensor([0.4, 0.8], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: M._nlm(x, b), (s,), eps=1e-6, atol=1e-5, fast_mode=True)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: M._nlm(a, b, 5), (xg, s), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradient_through_zero_strength_rows_is_identity():
    x = rand(2, 3, 6, 6, seed=8).requires_grad_(True)
    p = torch.tensor([[0.0], [0.5]], dtype=F64, requires_grad=True)
    g = torch.autograd.grad(apply("denoise", x, p)[0].sum(), (x, p))
    assert torch.equal(g[0][0], torch.ones_like(x[0])) and torch.equal(g[0][1], torch.zeros_like(x[1]))
    assert g[1][0, 0] == 0


def test_double_backward_is_refused():
    x = rand(1, 3, 6, 6, seed=9).requires_grad_(True)
    s = torch.tensor([0.5], dtype=F64, requires_grad=True)
    (gx,) = torch.autograd.grad(M._nlm(x, s).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()


# ------------------------------------------------------------------------------ search-window option


@pytest.mark.parametrize("window", [3, 5])
def test_search_window_matches_per_pixel_definition(window):
    x = rand(1, 3, 6, 5, seed=10)
    for strength in (0.3, 1.0):
        with M.nlm_search_window(window):
            y = apply("denoise", x, torch.tensor([[strength]], dtype=F64))
        assert np.allclose(y[0].numpy(), nlm_brute(x[0].numpy(), strength, window), atol=1e-10)


def test_search_window_difference_on_photo_as_documented():
    photos = pytest.importorskip("ispbench.data.photos")
    pytest.importorskip("skimage")
    img = torch.from_numpy(photos.load_photo("astronaut")).permute(2, 0, 1)[None].double()
    clean = torch.nn.functional.interpolate(img, size=(160, 160), mode="area")
    noise = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    noisy = (clean + noise).clamp(0, 1)
    p = torch.tensor([[0.5]], dtype=F64)
    full = apply("denoise", noisy, p)
    documented = {5: (0.010, 0.39), 3: (0.016, 0.42)}  # nlm_search_window's docstring
    for window, (mean, worst) in documented.items():
        with M.nlm_search_window(window):
            d = (apply("denoise", noisy, p) - full).abs()
        assert abs(d.mean().item() - mean) < 0.001 and abs(d.max().item() - worst) < 0.01
    assert (full - clean).pow(2).mean() < 0.5 * (noisy - clean).pow(2).mean()


def test_search_window_context_default_and_identity():
    x = rand(1, 3, 9, 9, seed=11)
    p = torch.tensor([[0.8]], dtype=F64)
    default = apply("denoise", x, p)
    with M.nlm_search_window(1):
        assert torch.equal(apply("denoise", x, p), x)
    with pytest.raises(KeyError), M.nlm_search_window(3):
        raise KeyError("leaves the context")
    assert torch.equal(apply("denoise", x, p), default)  # back to the authors' 11 x 11
    with M.nlm_search_window(11):
        assert torch.equal(apply("denoise", x, p), default)


@pytest.mark.parametrize("bad", [0, 4, -3, 2.0, True, "5"])
def test_search_window_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="odd int >= 1"):
        with M.nlm_search_window(bad):
            pass


def test_scaled_search_window():
    assert [M.scaled_search_window(s) for s in (64, 160, 256, 512, 768)] == [3, 3, 5, 11, 17]
    with pytest.raises(ValueError, match="positive int"):
        M.scaled_search_window(0)


# ------------------------------------------------------------------------------ shapes, dtypes, errors


def test_shapes_dtypes_and_refusals():
    for dtype in (torch.float32, F64):
        x = rand(2, 3, 9, 14, seed=12, dtype=dtype)
        y = apply("denoise", x, torch.tensor([[0.5], [1.0]], dtype=dtype))
        assert y.shape == x.shape and y.dtype == dtype
        assert y.min() >= 0 and y.max() <= 1
    x = rand(2, 3, 9, 14, seed=12)
    with pytest.raises(ValueError, match=r"params for 'denoise' must have shape \(B, 1\)"):
        apply("denoise", x, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        apply("denoise", x, torch.tensor([[float("nan")], [0.5]]))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="image"):
        apply("denoise", bad, torch.full((2, 1), 0.5))


@CUDA
def test_cuda_fast_equals_reference():
    x = rand(2, 3, 24, 19, seed=13)
    s = torch.tensor([0.4, 0.9], dtype=F64)
    y = M._nlm(x.cuda(), s.cuda()).cpu()
    assert torch.allclose(y, M._nlm_reference(x, s), atol=1e-12)
    xg, sg = x.cuda().requires_grad_(True), s.cuda().requires_grad_(True)
    fast = torch.autograd.grad(M._nlm(xg, sg).sum(), (xg, sg))
    xr, sr = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
    ref = torch.autograd.grad(M._nlm_reference(xr, sr).sum(), (xr, sr))
    for a, b in zip(fast, ref, strict=True):
        assert torch.allclose(a.cpu(), b, atol=1e-10)
