"""RLPixTuner's nine-slider photo-finishing pipeline, differentiable, in PyTorch.

RLPixTuner (Wu et al., NeurIPS 2024, Appendix B) tunes a Lightroom-like pipeline of nine sliders,
applied in this fixed order::

    exposure -> colour balance (wb_r, wb_g, wb_b) -> saturation -> contrast
             -> highlights -> shadows -> texture

The policy emits actions in ``[-1, 1]``; each is mapped *linearly* onto the slider's natural range
(:func:`scale_actions`, :data:`SLIDER_RANGES`). The formulas follow the authors' public code
(``isp/filters.py``, read for facts only, re-derived here).

Sliders (action ``a`` -> natural parameter -> operation on an image ``x`` in [0, 1]):

* ``exposure``: EV ``e = 2a`` in [-2, 2]; ``x * 2**e``.
* ``wb_r``, ``wb_g``, ``wb_b``: gain ``g = exp(a / 2)`` in [e^-0.5, e^0.5]; ``x_c * g_c``
  (no luminance renormalisation).
* ``saturation``: factor ``s = 1 + a`` in [0, 2]; ``y + s (x - y)`` with ``y`` the Rec.601 luma
  0.299 R + 0.587 G + 0.114 B (what ``torchvision.adjust_saturation`` does, which the authors call).
* ``contrast``: ``p = a`` in [-1, 1]; ``x + p (x / L * (1 - cos(pi L)) / 2 - x)`` with ``L`` the
  luminance 0.27 R + 0.67 G + 0.06 B clipped to [0, 1] (AdaptiveISP eqs. 19-20, the authors'
  ``ContrastFilter``).
* ``highlights``: ``p = a`` in [-1, 1]; on the HSV value ``V = max(R, G, B)``:
  ``V' = 1 - (1 - V)(1 - sigmoid(13 (V - 1)) * 13 p)``.
* ``shadows``: ``p = a`` in [-1, 1]; ``V' = V (1 + (1 - sigmoid(12 V)) * 12 p)``.
* ``texture``: factor ``t = 1 + a`` in [0, 2]; ``x + (t - 1)(x - blur(x))``, blur = 3x3 kernel
  [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 with reflect-101 borders (``adjust_sharpness``-style).

Every stage's output is clipped to [0, 1] (as the authors' ``Filter.forward`` does), so the output
is always a valid image. Highlights/shadows change only the HSV value with hue and saturation
fixed, which equals scaling the RGB triple by ``clip(V', 0, 1) / V``; it is computed as
``x + (clip(V', 0, 1) - V) * x / max(V, 1e-4)`` so that ``p = 0`` is exactly the identity and the
gradient stays bounded at black pixels (pixels with ``V < 1e-4`` differ from the exact HSV
formula by less than ``7e-4``). The authors' range [-1, 1] for highlights/shadows is wide: before
the clip, the highlight curve is monotone only for ``p`` in about [-0.77, 0.15] and the shadow
curve for ``p`` in about [-0.17, 0.83]; we keep the authors' range for fidelity (the clip keeps
the output valid).

Deviations from the authors' code, all documented choices: the texture blur uses reflect-101
padding instead of leaving the one-pixel border unsharpened; the colour-balance gains are not
renormalised by luminance.

An action vector of all zeros is exactly the identity for inputs in [0, 1].

NaN/Inf in the image, the actions or the parameters are refused with a ``ValueError`` naming the
argument and the count (:func:`ispbench.ops.checks.require_finite`; a NaN action would otherwise
turn the whole image into NaN). :func:`ispbench.ops.checks.unchecked` skips the check.

Example:
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> a = torch.zeros(2, 9); a[0, 0] = 0.5      # +1 EV on the first image only
    >>> y = finish(x, a)
    >>> torch.equal(y[1], x[1])
    True
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from ispbench.ops.checks import require_finite
from ispbench.ops.color import luminance
from ispbench.ops.finishing_np import SLIDER_NAMES

__all__ = [
    "SLIDER_NAMES",
    "SLIDER_RANGES",
    "SLIDER_UNITS",
    "NUM_SLIDERS",
    "scale_actions",
    "finish",
    "finish_params",
]

NUM_SLIDERS = len(SLIDER_NAMES)

#: The natural-unit range of each slider. Action -1 maps to the first value, +1 to the second,
#: linearly in the quantity named in :data:`SLIDER_UNITS` (the WB gains are linear in log-gain).
SLIDER_RANGES: Mapping[str, tuple[float, float]] = {
    "exposure": (-2.0, 2.0),
    "wb_r": (math.exp(-0.5), math.exp(0.5)),
    "wb_g": (math.exp(-0.5), math.exp(0.5)),
    "wb_b": (math.exp(-0.5), math.exp(0.5)),
    "saturation": (0.0, 2.0),
    "contrast": (-1.0, 1.0),
    "highlights": (-1.0, 1.0),
    "shadows": (-1.0, 1.0),
    "texture": (0.0, 2.0),
}

#: What the natural parameter is, and the action -> parameter map.
SLIDER_UNITS: Mapping[str, str] = {
    "exposure": "EV stops, e = 2a; image * 2**e",
    "wb_r": "red gain, g = exp(0.5 a)",
    "wb_g": "green gain, g = exp(0.5 a)",
    "wb_b": "blue gain, g = exp(0.5 a)",
    "saturation": "saturation factor s = 1 + a (0 = grey, 1 = identity)",
    "contrast": "cosine-contrast blend p = a (0 = identity)",
    "highlights": "highlight strength p = a (0 = identity)",
    "shadows": "shadow strength p = a (0 = identity)",
    "texture": "sharpness factor t = 1 + a (0 = blurred, 1 = identity, 2 = sharpened)",
}

_LUMA_SAT = (0.299, 0.587, 0.114)  # Rec.601 luma, as torchvision.adjust_saturation / cv2 RGB2GRAY
_V_EPS = 1e-4



def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor of shape (B, 3, H, W), got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if image.shape[2] < 2 or image.shape[3] < 2:
        raise ValueError(f"image must have H, W >= 2 (reflect-padded 3x3 blur), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"image must be a floating-point tensor in [0, 1], got dtype {image.dtype}")


def _check_vector(name: str, value: torch.Tensor, batch: int) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {NUM_SLIDERS}), got {type(value).__name__}")
    if value.ndim != 2 or value.shape[1] != NUM_SLIDERS or value.shape[0] != batch:
        raise ValueError(
            f"{name} must have shape (B, {NUM_SLIDERS}) = ({batch}, {NUM_SLIDERS}) matching the image batch "
            f"(sliders {', '.join(SLIDER_NAMES)}), got {tuple(value.shape)}"
        )


def scale_actions(actions: torch.Tensor) -> torch.Tensor:
    """Map actions in [-1, 1] linearly onto each slider's natural range.

    Actions outside [-1, 1] are clamped first (the TD3 policy's tanh output and its exploration
    noise are clipped to the action box as well).

    Args:
        actions: ``(B, 9)`` float tensor, order :data:`~ispbench.ops.finishing_np.SLIDER_NAMES`.

    Returns:
        ``(B, 9)`` parameters in natural units (:data:`SLIDER_RANGES`): exposure EV, three WB gains,
        saturation factor, contrast p, highlights p, shadows p, texture factor.

    Raises:
        ValueError: wrong shape, or NaN/Inf actions (named, counted).

    Example:
        >>> scale_actions(torch.zeros(1, 9)).tolist()
        [[0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]]
    """
    if not isinstance(actions, torch.Tensor) or actions.ndim != 2 or actions.shape[1] != NUM_SLIDERS:
        shape = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
        raise ValueError(f"actions must have shape (B, {NUM_SLIDERS}), got {shape}")
    require_finite("actions", actions)  # before the clamp, which would turn an Inf into +-1
    a = actions.clamp(-1.0, 1.0)
    exposure = 2.0 * a[:, 0:1]
    gains = torch.exp(0.5 * a[:, 1:4])
    saturation = 1.0 + a[:, 4:5]
    tone = a[:, 5:8]  # contrast, highlights, shadows
    texture = 1.0 + a[:, 8:9]
    return torch.cat([exposure, gains, saturation, tone, texture], dim=1)


def _hv_scale(x: torch.Tensor, v: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
    """Replace the HSV value ``v`` of ``x`` by ``clip(v_new)`` keeping hue and saturation."""
    return x + (v_new.clamp(0.0, 1.0) - v) * (x / v.clamp_min(_V_EPS))


def _pointwise(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Stages 1-6 (everything but texture); ``p`` is ``(B, 9, 1, 1)``."""
    # 1. exposure, 2. colour balance: two clips, as in the authors' code
    # (clip(clip(x*e)*g) != clip(x*e*g) when x*e > 1 > g)
    x = (x * torch.exp2(p[:, 0:1])).clamp(0.0, 1.0)
    x = (x * p[:, 1:4]).clamp(0.0, 1.0)

    # 3. saturation: lerp from Rec.601 grey
    w = torch.tensor(_LUMA_SAT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = (x * w).sum(dim=1, keepdim=True)
    x = (x + (p[:, 4:5] - 1.0) * (x - grey)).clamp(0.0, 1.0)

    # 4. contrast (cosine S-curve on luminance, applied as a per-pixel gain)
    lum = luminance(x).clamp(0.0, 1.0)  # AdaptiveISP eq. 20 / the authors' rgb2lum
    gain = (0.5 - 0.5 * torch.cos(math.pi * lum)) / (lum + 1e-6)
    x = (x + p[:, 5:6] * (x * gain - x)).clamp(0.0, 1.0)

    # 5. highlights on HSV value
    v = x.amax(dim=1, keepdim=True)
    v_new = v + (1.0 - v) * (13.0 * p[:, 6:7]) * torch.sigmoid(13.0 * (v - 1.0))
    x = _hv_scale(x, v, v_new).clamp(0.0, 1.0)

    # 6. shadows on HSV value
    v = x.amax(dim=1, keepdim=True)
    v_new = v * (1.0 + (12.0 * p[:, 7:8]) * (1.0 - torch.sigmoid(12.0 * v)))
    return _hv_scale(x, v, v_new).clamp(0.0, 1.0)


def _reflect_rows(start: int, stop: int, height: int, device: torch.device) -> torch.Tensor:
    idx = torch.arange(start, stop, device=device).abs()  # -1 -> 1
    return torch.where(idx > height - 1, 2 * (height - 1) - idx, idx)  # height -> height - 2


def _texture(x: torch.Tensor, t: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Stage 7 for rows ``r0:r1`` of ``x`` (full image, reflect-101 borders); ``t`` is ``(B,1,1,1)``.

    ``blur = (9 * box3(x) + 4 * x) / 13`` is the [[1,1,1],[1,5,1],[1,1,1]]/13 kernel, so
    ``x - blur = 9/13 * (x - box3(x))``.
    """
    rows = x.index_select(2, _reflect_rows(r0 - 1, r1 + 1, x.shape[2], x.device))
    box = F.avg_pool2d(F.pad(rows, (1, 1, 0, 0), mode="reflect"), 3, stride=1)
    center = x[:, :, r0:r1]
    return (center + (t - 1.0) * (9.0 / 13.0) * (center - box)).clamp(0.0, 1.0)


_CHUNK_ELEMENTS = 1 << 21


def finish_params(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply the pipeline with parameters already in natural units (see :func:`scale_actions`).

    When no gradient is needed (``torch.no_grad()`` or inputs without ``requires_grad``) the image
    is processed in bands of rows, so peak memory is about three image-sized buffers plus small
    per-band temporaries; with autograd the whole graph is kept (about 40 image-sized tensors).

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1] (display-referred), ``H, W >= 2``.
        params: ``(B, 9)`` natural-unit parameters, order :data:`~ispbench.ops.finishing_np.SLIDER_NAMES`. Not clamped:
            values outside :data:`SLIDER_RANGES` extrapolate the formulas.

    Returns:
        ``(B, 3, H, W)`` image in [0, 1], same dtype and device.

    Raises:
        ValueError: wrong shapes, NaN/Inf in ``image`` or ``params`` (named, counted).
    """
    _check_image(image)
    _check_vector("params", params, image.shape[0])
    require_finite("image", image)
    require_finite("params", params)
    p = params.to(dtype=image.dtype, device=image.device)[:, :, None, None]  # (B, 9, 1, 1)
    b, _, h, w = image.shape
    t = p[:, 8:9]
    if torch.is_grad_enabled() and (image.requires_grad or p.requires_grad):
        return _texture(_pointwise(image, p), t, 0, h)

    with torch.no_grad():
        band = max(1, _CHUNK_ELEMENTS // max(1, b * 3 * w))
        out = torch.empty_like(image)
        for r0 in range(0, h, band):
            out[:, :, r0 : r0 + band] = _pointwise(image[:, :, r0 : r0 + band], p)
        # texture in place: band i is written back only after band i+1 has read its halo row
        pending = None
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            result = (r0, r1, _texture(out, t, r0, r1))
            if pending is not None:
                out[:, :, pending[0] : pending[1]] = pending[2]
            pending = result
        if pending is not None:
            out[:, :, pending[0] : pending[1]] = pending[2]
        return out


def finish(image: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Apply RLPixTuner's nine-slider finishing pipeline with per-sample actions.

    Differentiable in both ``image`` and ``actions`` (almost everywhere: clips and ``max`` have
    kinks). Works on any device and floating dtype. Without autograd the image is processed in
    bands of rows: a 3840x2160 float32 image (95 MiB) needs about 190 MiB on top of the input
    (peak RSS 0.82 GiB including torch itself, measured on a 2-core CPU); with autograd the
    graph keeps about 30 image-sized tensors (peak RSS 3.4 GiB for a 4K image, backward included).

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1], display-referred (sRGB-like).
        actions: ``(B, 9)`` in [-1, 1] (clamped), order :data:`~ispbench.ops.finishing_np.SLIDER_NAMES`; zeros = identity.

    Returns:
        ``(B, 3, H, W)`` finished image in [0, 1].

    Raises:
        ValueError: wrong shapes, NaN/Inf in ``image`` or ``actions`` (named, counted; the image is
            read once for this).

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> torch.allclose(finish(x, torch.zeros(1, 9)), x)
        True
    """
    _check_image(image)
    _check_vector("actions", actions, image.shape[0])
    return finish_params(image, scale_actions(actions))
