"""Colour helpers shared by the ISP modules: luminance and a differentiable RGB <-> HSV.

All functions take images ``(B, 3, H, W)`` (float32 or float64, RGB, values in [0, 1]) and are
differentiable almost everywhere (at ties between channels the gradient picks one branch).

Example:
    >>> import torch
    >>> from ispbench.ops.color import luminance, rgb_to_hsv, hsv_to_rgb
    >>> x = torch.rand(2, 3, 4, 4)
    >>> luminance(x).shape
    torch.Size([2, 1, 4, 4])
    >>> torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Luminance weights of AdaptiveISP eq. 20 (R, G, B).
LUM_WEIGHTS: tuple[float, float, float] = (0.27, 0.67, 0.06)


def _check_image(image: Tensor, name: str = "image") -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {image.dtype}")


def luminance(image: Tensor) -> Tensor:
    """Luminance ``0.27 R + 0.67 G + 0.06 B`` (AdaptiveISP eq. 20).

    Each product is rounded, then they are summed left to right, ``(0.27 R + 0.67 G) + 0.06 B``:
    bit for bit what ``(image * w).sum(1, keepdim=True)`` gives, without the full-size weighted
    temporary (and unlike ``add(..., alpha=w)``, which may fuse a multiply-add).

    Args:
        image: ``(B, 3, H, W)``.

    Returns:
        ``(B, 1, H, W)``, same dtype and device.

    Example:
        >>> luminance(torch.ones(1, 3, 2, 2)).flatten().tolist()  # doctest: +SKIP
        [1.0, 1.0, 1.0, 1.0]
    """
    _check_image(image)
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return torch.mul(r, LUM_WEIGHTS[0]).add_(torch.mul(g, LUM_WEIGHTS[1])).add_(torch.mul(b, LUM_WEIGHTS[2]))


def luminance_np(image: np.ndarray) -> np.ndarray:
    """NumPy counterpart of :func:`luminance` for channel-last images: ``0.27 R + 0.67 G + 0.06 B``.

    Same order of operations as :func:`luminance` (products, then a left-to-right sum), computed
    in the image's dtype (the weights are cast to it).

    Args:
        image: ``(..., 3)`` float array (e.g. ``(H, W, 3)``), RGB.

    Returns:
        ``(...)``, the image's dtype.

    Example:
        >>> luminance_np(np.ones((2, 2, 3), np.float32)).shape
        (2, 2)
    """
    image = np.asarray(image)
    if image.ndim < 1 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (..., 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"image must be a floating-point array, got {image.dtype}")
    w = np.asarray(LUM_WEIGHTS, dtype=image.dtype)
    return w[0] * image[..., 0] + w[1] * image[..., 1] + w[2] * image[..., 2]


def rgb_to_hsv(image: Tensor, eps: float = 1e-8) -> Tensor:
    """RGB to HSV, hue in [0, 1) (fraction of a turn), saturation and value in [0, 1].

    Grey pixels (max == min) get hue 0 and saturation 0, as ``tf.image.rgb_to_hsv`` and
    kornia do (this matters for the saturation module, see :func:`ispbench.ops.modules.saturation`).

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        eps: guard of the divisions.

    Returns:
        ``(B, 3, H, W)`` stacked (H, S, V).
    """
    _check_image(image)
    r, g, b = image[:, 0], image[:, 1], image[:, 2]
    v, arg = image.max(dim=1)
    mn = image.min(dim=1).values
    c = v - mn
    s = torch.where(v > 0, c / v.clamp_min(eps), torch.zeros_like(v))
    c_safe = torch.where(c > 0, c, torch.ones_like(c))
    h_r = torch.remainder((g - b) / c_safe, 6.0)
    h_g = (b - r) / c_safe + 2.0
    h_b = (r - g) / c_safe + 4.0
    h = torch.where(arg == 0, h_r, torch.where(arg == 1, h_g, h_b))
    h = torch.where(c > 0, h / 6.0, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(image: Tensor) -> Tensor:
    """HSV (hue in [0, 1)) to RGB; the inverse of :func:`rgb_to_hsv`.

    Uses the continuous form ``x_c = v - v s clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 h) mod 6`` and n = 5, 3, 1 for R, G, B.

    Args:
        image: ``(B, 3, H, W)`` stacked (H, S, V).

    Returns:
        ``(B, 3, H, W)`` RGB.
    """
    _check_image(image)
    h, s, v = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)
    a = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v - v * s * a
