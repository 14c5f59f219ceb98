"""RLPixTuner's nine-slider finishing pipeline, re-implemented independently in NumPy/OpenCV.

Same sliders, ranges and formulas as :mod:`ispbench.ops.finishing` (see its docstring), written a
second time without torch so that the book can show the RL tuner treating the pipeline as a black
box, and so that each implementation checks the other. Implementation differences on purpose:

* highlights/shadows go through OpenCV's HSV conversion (``cv2.COLOR_RGB2HSV`` / ``HSV2RGB``),
  as the authors' code does, instead of the torch version's chromaticity scaling;
* saturation uses ``cv2.COLOR_RGB2GRAY`` (Rec.601 luma) as the grey image;
* texture blur uses ``cv2.filter2D`` with ``BORDER_REFLECT_101``.

The two agree within 1/255 (max abs difference; measured 2.5e-4 over 60 random images and
actions including the extremes +-1, worst at near-black pixels where the torch version
regularises ``x / V``; guaranteed below 7e-4 there).

NaN/Inf in the image or the actions are refused with a ``ValueError`` naming the argument and the
count, in the words of :func:`ispbench.ops.checks.require_finite` (a local copy, ``_require_finite``:
this module must not import ispbench).

This module must not import torch.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    >>> np.array_equal(finish(x, np.zeros(9)), x)
    True
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["SLIDER_NAMES", "scale_actions", "finish"]

#: The nine sliders, in the order both pipelines apply them. Defined here, in the module that imports
#: neither torch nor ispbench (the black box), and imported by :mod:`ispbench.ops.finishing`.
SLIDER_NAMES: tuple[str, ...] = (
    "exposure",
    "wb_r",
    "wb_g",
    "wb_b",
    "saturation",
    "contrast",
    "highlights",
    "shadows",
    "texture",
)

_BLUR = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0


def _require_finite(name: str, a: np.ndarray) -> None:
    """Refuse NaN/Inf in ``a`` (same message as ``ispbench.ops.checks.require_finite``; one read when finite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    if n_nan + n_inf:  # else a sum of finite values overflowed
        n = n_nan + n_inf
        raise ValueError(
            f"{name} has {n} non-finite value{'s' if n != 1 else ''} (NaN/Inf) of {a.size} "
            f"({n_nan} NaN, {n_inf} Inf); expected finite values"
        )


def scale_actions(actions: np.ndarray) -> np.ndarray:
    """Map a ``(9,)`` action vector in [-1, 1] (clamped) to natural units.

    Returns ``(9,)`` float64: exposure EV (2a), WB gains exp(a/2) x3, saturation 1+a,
    contrast a, highlights a, shadows a, texture 1+a.
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.shape != (9,):
        raise ValueError(f"actions must have shape (9,) (sliders {', '.join(SLIDER_NAMES)}), got {a.shape}")
    _require_finite("actions", a)  # before the clip, which would turn an Inf into +-1
    a = np.clip(a, -1.0, 1.0)
    return np.array(
        [2.0 * a[0], math.exp(0.5 * a[1]), math.exp(0.5 * a[2]), math.exp(0.5 * a[3]),
         1.0 + a[4], a[5], a[6], a[7], 1.0 + a[8]]
    )


def _set_value(x: np.ndarray, new_v: np.ndarray) -> np.ndarray:
    """Replace the HSV value channel by ``clip(new_v, 0, 1)`` via OpenCV's HSV round trip."""
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 2] = np.clip(new_v, 0.0, 1.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)


def finish(image: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Apply the nine-slider pipeline to one image.

    Args:
        image: ``(H, W, 3)`` float32 RGB in [0, 1].
        actions: ``(9,)`` actions in [-1, 1] (clamped), order :data:`SLIDER_NAMES`; zeros = identity.

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].

    Raises:
        ValueError: wrong shapes, NaN/Inf in ``image`` or ``actions`` (named, counted).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be a NumPy array of shape (H, W, 3), got {shape}")
    if image.dtype != np.float32:
        raise TypeError(f"image must be float32 in [0, 1], got dtype {image.dtype}")
    _require_finite("image", image)
    p = scale_actions(actions)
    x = image

    if p[0] != 0.0:
        x = np.clip(x * np.float32(2.0 ** p[0]), 0.0, 1.0)
    if np.any(p[1:4] != 1.0):
        x = np.clip(x * p[1:4].astype(np.float32), 0.0, 1.0)
    if p[4] != 1.0:
        grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
        x = np.clip(grey + np.float32(p[4]) * (x - grey), 0.0, 1.0)
    if p[5] != 0.0:
        lum = np.clip(x @ np.array([0.27, 0.67, 0.06], dtype=np.float32), 0.0, 1.0)[..., None]
        target = x / (lum + np.float32(1e-6)) * (0.5 - 0.5 * np.cos(np.float32(math.pi) * lum))
        x = np.clip((1.0 - np.float32(p[5])) * x + np.float32(p[5]) * target, 0.0, 1.0)
    if p[6] != 0.0:
        v = x.max(axis=2)
        mask = 1.0 / (1.0 + np.exp(-13.0 * (v - 1.0)))
        x = _set_value(x, 1.0 - (1.0 - v) * (1.0 - mask * np.float32(13.0 * p[6])))
    if p[7] != 0.0:
        v = x.max(axis=2)
        mask = 1.0 - 1.0 / (1.0 + np.exp(-12.0 * v))
        x = _set_value(x, v * (1.0 + mask * np.float32(12.0 * p[7])))
    if p[8] != 1.0:
        blurred = cv2.filter2D(x, -1, _BLUR, borderType=cv2.BORDER_REFLECT_101)
        x = np.clip(np.float32(p[8]) * x + np.float32(1.0 - p[8]) * blurred, 0.0, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32)
