"""IRPO's three rewards for a restored image, each a named function returning one value per image ``(B,)``.

* **General** (:func:`general_reward`, the authors' code): ``0.4 clamp(PSNR / 40) + 0.3 clamp(SSIM)
  + 0.3 (1 - clamp(d))`` with ``d`` LPIPS-AlexNet. LPIPS needs torchvision's AlexNet weights
  (:func:`ispbench.tasks.finishing_metrics.alexnet_weights_path`); without them nothing falls back
  silently: :func:`perceptual_distance` ``("lpips")`` raises, and the embedded profile asks for
  ``"gmsd"`` by name: the gradient magnitude similarity deviation (Xue et al. 2014), a weight-free
  full-reference distance in [0, ~0.4], recorded as a stand-in in every result that uses it.
* **Expert** (:mod:`ispbench.tasks.quality_judge`): a 1-5 score from a judge; IRPO's authors use a
  vision-language model (Qwen-VL); the embedded stand-in is a no-reference judge.
* **Restoration-specific** (:func:`restoration_reward`): one term per degradation, after the paper's
  figure (the formulas and weights are not public, so these are **the project's definitions**), each
  in [0, 1], 1 = the restoration matches the clean image in that respect:

  - ``denoise``: gradient consistency ``1 - mean|grad R - grad C| / (mean|grad C| + mean|grad R - grad C|)``;
  - ``derain``: anisotropy consistency: rain streaks are oriented, so the structure tensor's
    coherence ``(l1 - l2) / (l1 + l2)`` (7x7 window) of R should match C's: ``1 - mean|coh R - coh C|``;
  - ``dehaze``: contrast closeness ``1 - |std R - std C| / std C`` of the luminance (clamped);
  - ``deblur``: sharpness closeness ``exp(-|log(var lap R / var lap C)|)`` of the Laplacian's variance;
  - ``lowlight``: exposure and colour: ``0.5 (1 - |mean R - mean C| / mean C) + 0.5 cos(mean RGB R, mean RGB C)``.

Everything is computed without gradient by the GRPO trainer; the functions are differentiable anyway.

Example:
    >>> import torch
    >>> c = torch.rand(2, 3, 32, 32)
    >>> general_reward(c, c, perceptual="gmsd").tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from ispbench.ops.color import luminance
from ispbench.tasks.finishing_metrics import LPIPS, psnr, ssim

#: Weights of the general reward (the authors' ``--grpo_w_psnr/ssim/lpips``).
GENERAL_WEIGHTS = {"psnr": 0.4, "ssim": 0.3, "perceptual": 0.3}
PERCEPTUAL = ("lpips", "gmsd")
TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")


def _prewitt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3.0
    kx = kx.view(1, 1, 3, 3)
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(x, kx), F.conv2d(x, kx.transpose(-1, -2))


def gmsd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude similarity deviation ``(B,)`` of ``(B, 3, H, W)`` images in [0, 1] (0 = identical).

    Luminance, 2x average-pooled, Prewitt gradient magnitudes ``m``; ``GMS = (2 m_p m_t + c) / (m_p^2 + m_t^2 + c)``
    with ``c = 170 / 255^2`` (the paper's constant for 8-bit images); GMSD is the standard deviation of GMS.
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred and target must be (B, 3, H, W) of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    c = 170.0 / 255.0**2
    mags = []
    for img in (pred, target):
        y = F.avg_pool2d(luminance(img.clamp(0, 1)), 2)
        gx, gy = _prewitt(y)
        mags.append(torch.sqrt(gx * gx + gy * gy + 1e-12))
    gms = (2 * mags[0] * mags[1] + c) / (mags[0] ** 2 + mags[1] ** 2 + c)
    return gms.flatten(1).std(1, unbiased=False)


def perceptual_distance(kind: str, *, device: str = "cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The general reward's perceptual distance: ``"lpips"`` (AlexNet weights required: raises
    :class:`~ispbench.tasks.finishing_metrics.LPIPSUnavailable` naming the file when absent) or ``"gmsd"``."""
    if kind == "lpips":
        return LPIPS(device=device)
    if kind == "gmsd":
        return gmsd
    raise ValueError(f"perceptual must be one of {list(PERCEPTUAL)}, got {kind!r}")


def general_reward(restored: torch.Tensor, clean: torch.Tensor, *, perceptual: str | Callable = "lpips") -> torch.Tensor:
    """``(B,)`` ``0.4 clamp(PSNR/40, 0, 1) + 0.3 clamp(SSIM, 0, 1) + 0.3 (1 - clamp(d, 0, 1))`` (the authors' weights).

    ``perceptual``: ``"lpips"``, ``"gmsd"`` or a callable distance ``(pred, target) -> (B,)``. ``restored`` is
    scored as it is, not clamped (the authors' code scores the raw network output).
    """
    distance = perceptual_distance(perceptual) if isinstance(perceptual, str) else perceptual
    w = GENERAL_WEIGHTS
    return (w["psnr"] * (psnr(restored, clean) / 40.0).clamp(0, 1) + w["ssim"] * ssim(restored, clean).clamp(0, 1)
            + w["perceptual"] * (1.0 - distance(restored, clean).clamp(0, 1)))


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _prewitt(luminance(x))


def gradient_consistency(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(B,)`` in [0, 1]: 1 when the luminance gradients match (noise adds gradient, over-smoothing removes it)."""
    (rx, ry), (cx, cy) = _gradients(restored), _gradients(clean)
    diff = ((rx - cx).abs() + (ry - cy).abs()).flatten(1).mean(1)
    scale = (cx.abs() + cy.abs()).flatten(1).mean(1)
    return 1.0 - diff / (scale + diff + 1e-8)


def coherence(x: torch.Tensor, window: int = 7) -> torch.Tensor:
    """``(B, 1, H, W)`` structure-tensor coherence ``(l1 - l2) / (l1 + l2)`` in [0, 1] (1 = one orientation)."""
    gx, gy = _gradients(x)
    pad = window // 2

    def smooth(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(t, (pad, pad, pad, pad), mode="replicate"), window, stride=1)

    jxx, jyy, jxy = smooth(gx * gx), smooth(gy * gy), smooth(gx * gy)
    root = torch.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy + 1e-12)
    return root / (jxx + jyy + 1e-6)


def anisotropy_consistency(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(B,)`` ``1 - mean|coherence R - coherence C|``: rain streaks left behind raise R's coherence."""
    return 1.0 - (coherence(restored) - coherence(clean)).abs().flatten(1).mean(1)


def contrast_closeness(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(B,)`` ``clamp(1 - |std R - std C| / std C, 0, 1)`` of the luminance (haze flattens contrast)."""
    sr, sc = luminance(restored).flatten(1).std(1), luminance(clean).flatten(1).std(1)
    return (1.0 - (sr - sc).abs() / (sc + 1e-6)).clamp(0, 1)


def _laplacian_variance(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(F.pad(luminance(x), (1, 1, 1, 1), mode="replicate"), k).flatten(1).var(1)


def sharpness_closeness(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(B,)`` ``exp(-|log(var lap R / var lap C)|)``: 1 at equal sharpness, lower when blurrier or over-sharpened."""
    ratio = (_laplacian_variance(restored) + 1e-8) / (_laplacian_variance(clean) + 1e-8)
    return torch.exp(-ratio.log().abs())


def exposure_colour(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(B,)`` ``0.5 clamp(1 - |mean R - mean C| / mean C) + 0.5 cos(mean RGB of R, of C)``."""
    mr, mc = restored.flatten(2).mean(2), clean.flatten(2).mean(2)  # (B, 3)
    exposure = (1.0 - (mr.mean(1) - mc.mean(1)).abs() / (mc.mean(1) + 1e-6)).clamp(0, 1)
    colour = F.cosine_similarity(mr, mc, dim=1, eps=1e-8).clamp(0, 1)
    return 0.5 * exposure + 0.5 * colour


#: The restoration-specific term of each task.
RESTORATION_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "denoise": gradient_consistency,
    "derain": anisotropy_consistency,
    "dehaze": contrast_closeness,
    "deblur": sharpness_closeness,
    "lowlight": exposure_colour,
}


def restoration_reward(restored: torch.Tensor, clean: torch.Tensor, tasks: list[str] | tuple[str, ...]) -> torch.Tensor:
    """``(B,)`` the term of each image's task (``tasks``: one of :data:`TASKS` per image)."""
    if len(tasks) != restored.shape[0]:
        raise ValueError(f"tasks: expected one task per image ({restored.shape[0]}), got {len(tasks)}")
    unknown = sorted(set(tasks) - set(RESTORATION_TERMS))
    if unknown:
        raise ValueError(f"tasks: unknown {unknown}; valid: {list(TASKS)}")
    out = torch.empty(restored.shape[0], dtype=restored.dtype, device=restored.device)
    restored = restored.clamp(0, 1)
    for task in set(tasks):
        idx = [i for i, t in enumerate(tasks) if t == task]
        out[idx] = RESTORATION_TERMS[task](restored[idx], clean[idx])
    return out


__all__ = ["GENERAL_WEIGHTS", "PERCEPTUAL", "RESTORATION_TERMS", "TASKS", "anisotropy_consistency", "coherence",
           "contrast_closeness", "exposure_colour", "general_reward", "gmsd", "gradient_consistency", "perceptual_distance",
           "restoration_reward", "sharpness_closeness"]
