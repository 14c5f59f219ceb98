"""The camera's default static ISP: fixed modules, fixed parameters, the same for every image.

This is the "camera RGB" baseline of AdaptiveISP (a hand-tuned, non-adaptive ISP) for the
embedded dataset, and it also renders the normal-light sRGB images the embedded detector is
trained on, so the detector sees this ISP's output in good light.

Pipeline (exactly, in this order), on linear camera RGB ``x`` of shape ``(B, 3, H, W)``:

1. Fixed white balance: ``x_c <- x_c * wb_c`` with ``wb = DAYLIGHT_WB = 1 / sensitivity`` of
   the embedded camera (:data:`ispbench.data.camera.SENSOR`), i.e. ``(1/0.60, 1, 1/0.75)``:
   a daylight calibration, not adapted to the scene's light (so warm low-light illuminants
   keep their cast).
2. Global exposure: luminance ``Y = 0.27 R + 0.67 G + 0.06 B`` (AdaptiveISP eq. 20) of the
   white-balanced image; per-image digital gain ``g = clip(target_mean / mean(Y), min_gain,
   max_gain)`` with ``target_mean = 0.18``, ``min_gain = 0.25``, ``max_gain = 4`` (a camera's
   digital gain is limited: severely under-exposed frames stay dark). ``x <- clip(g x, 0, 1)``.
3. sRGB transfer curve (IEC 61966-2-1): ``12.92 x`` for ``x <= 0.0031308``, else
   ``1.055 x^(1/2.4) - 0.055``.
4. Clamp to ``[0, 1]``.

No denoising, no sharpening, no tone curve beyond the sRGB gamma.

Non-finite input is refused (``ValueError`` naming ``linear`` and the count of NaN/Inf values):
the global exposure mean of step 2 would spread one NaN pixel over the whole image.

Example:
    >>> import torch
    >>> srgb = default_isp(torch.rand(2, 3, 64, 64) * 0.2)
    >>> srgb.shape, bool(srgb.min() >= 0), bool(srgb.max() <= 1)
    (torch.Size([2, 3, 64, 64]), True, True)
"""

from __future__ import annotations

import torch

from ispbench.data.camera import SENSOR
from ispbench.ops.checks import require_finite, require_finite_number
from ispbench.ops.color import luminance

#: The fixed white-balance gains for R, G and B, from the embedded sensor's daylight calibration.
DAYLIGHT_WB: tuple[float, float, float] = tuple(1.0 / s for s in SENSOR.sensitivity)  # type: ignore[assignment]
TARGET_MEAN = 0.18
MIN_GAIN = 0.25
MAX_GAIN = 4.0


def srgb_gamma(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB encoding of linear values in ``[0, 1]`` (any shape)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def default_isp(
    linear: torch.Tensor,
    wb_gains: tuple[float, float, float] = DAYLIGHT_WB,
    target_mean: float = TARGET_MEAN,
    min_gain: float = MIN_GAIN,
    max_gain: float = MAX_GAIN,
) -> torch.Tensor:
    """Apply the static default ISP (see the module docstring for the exact pipeline).

    Args:
        linear: ``(B, 3, H, W)`` (or ``(3, H, W)``) float linear camera RGB in ``[0, 1]``.
        wb_gains: fixed per-channel white-balance gains.
        target_mean: luminance the digital gain aims for.
        min_gain, max_gain: limits of the per-image digital gain.

    Returns:
        sRGB image of the same shape, float in ``[0, 1]``. Deterministic.

    Raises:
        ValueError: wrong shape, bad gains, NaN/Inf in ``linear`` (counted) or in the settings.
    """
    if not isinstance(linear, torch.Tensor):
        raise TypeError(f"linear must be a torch.Tensor, got {type(linear).__name__}")
    single = linear.ndim == 3
    x = linear[None] if single else linear
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"linear must be (B, 3, H, W) or (3, H, W); got {tuple(linear.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"linear must be a float tensor in [0, 1], got dtype {x.dtype}")
    require_finite_number("wb_gains", tuple(wb_gains))
    require_finite_number("target_mean", target_mean)
    require_finite_number("min_gain, max_gain", (min_gain, max_gain))
    if not 0 < min_gain <= max_gain:
        raise ValueError(f"need 0 < min_gain <= max_gain, got {min_gain}, {max_gain}")
    require_finite("linear", linear)
    wb = torch.as_tensor(wb_gains, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = x.clamp(0.0, 1.0) * wb
    mean_y = luminance(x).mean(dim=(1, 2, 3)).clamp_min(1e-6)
    gain = (target_mean / mean_y).clamp(min_gain, max_gain).view(-1, 1, 1, 1)
    out = srgb_gamma((x * gain).clamp(0.0, 1.0))
    return out[0] if single else out
