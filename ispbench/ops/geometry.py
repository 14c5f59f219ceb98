"""Letterbox geometry: resize keeping the aspect ratio, pad onto a canvas, map boxes in and out.

One implementation for every caller; each passes its own padding value and resampling:

* the detection evaluation (:mod:`ispbench.tasks.detection_eval`) pads sRGB outputs with
  ultralytics' grey ``114/255`` and resamples ``"bilinear"`` (antialiased when shrinking);
* the prepared-dataset reader (:func:`ispbench.data.prepared.resize_sample`) pads linear images
  with ``0`` (black, as the AdaptiveISP code does) and resamples ``"area"`` when shrinking.

A :class:`LetterboxLayout` records where the resized image sits on the canvas; a pixel
``(x, y)`` of the input maps to ``(x * nw / W + left, y * nh / H + top)``.

Example:
    >>> import torch
    >>> out, layout = letterbox(torch.rand(1, 3, 100, 200), 100, pad_value=0.0)
    >>> out.shape, layout.resized, layout.pad
    (torch.Size([1, 3, 100, 100]), (50, 100), (25, 0))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

#: Resampling methods of :func:`resize_image`.
RESAMPLE_METHODS = ("bilinear", "area")

__all__ = [
    "RESAMPLE_METHODS",
    "LetterboxLayout",
    "boxes_from_letterbox",
    "boxes_to_letterbox",
    "fit_size",
    "letterbox",
    "rect_canvas",
    "resize_image",
    "resize_longest",
]


class LetterboxLayout(NamedTuple):
    """Where a resized image sits on its letterbox canvas (all in pixels, ``(rows, columns)``).

    Attributes:
        orig: ``(H, W)`` of the input image.
        resized: ``(nh, nw)`` of the resized image.
        pad: ``(top, left)`` offset of the resized image on the canvas.
        canvas: ``(Hc, Wc)`` of the canvas.
    """

    orig: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """``(nh / H, nw / W)``: the vertical and horizontal scale factors."""
        return self.resized[0] / self.orig[0], self.resized[1] / self.orig[1]


def _target_hw(size: int | tuple[int, int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        th, tw = int(size), int(size)
    else:
        th, tw = int(size[0]), int(size[1])
    if th <= 0 or tw <= 0:
        raise ValueError(f"{name}: expected positive sizes, got {size!r}")
    return th, tw


def fit_size(h: int, w: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """``(nh, nw)`` of an ``h x w`` image scaled (aspect kept) to fit inside ``size``.

    Args:
        h, w: input size in pixels.
        size: an int ``S`` (the longer side becomes ``S``) or a box ``(Hb, Wb)``.

    Returns:
        ``(max(1, round(h * s)), max(1, round(w * s)))`` with ``s = min(Hb / h, Wb / w)``.
    """
    th, tw = _target_hw(size)
    s = th / max(h, w) if th == tw else min(th / h, tw / w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize_image(images: torch.Tensor, size: tuple[int, int], method: str = "bilinear") -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size = (h, w)``; returns ``images`` itself if already that size.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        size: output ``(h, w)``.
        method: ``"bilinear"``: bilinear (``align_corners=False``), antialiased when shrinking
            (the detection evaluation); ``"area"``: area averaging when shrinking either side,
            plain bilinear otherwise (the prepared-dataset reader).

    Returns:
        ``(B, C, h, w)``.
    """
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"method: expected one of {', '.join(RESAMPLE_METHODS)}, got {method!r}")
    h, w = images.shape[-2:]
    nh, nw = int(size[0]), int(size[1])
    if (nh, nw) == (h, w):
        return images
    down = nh < h or nw < w
    if method == "area" and down:
        return F.interpolate(images, size=(nh, nw), mode="area")
    return F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=method == "bilinear" and down)


def resize_longest(images: torch.Tensor, size: int, method: str = "bilinear") -> torch.Tensor:
    """Resize ``(B, C, H, W)`` so that the longer side is ``size``, keeping the aspect ratio.

    Args:
        images: ``(B, C, H, W)``.
        size: the longer side after resizing.
        method: see :func:`resize_image`.

    Returns:
        ``(B, C, nh, nw)`` with ``max(nh, nw) == size``.
    """
    h, w = images.shape[-2:]
    return resize_image(images, fit_size(h, w, size), method)


def rect_canvas(h: int, w: int, size: int, stride: int = 32, pad: float = 0.5) -> tuple[int, int]:
    """Canvas of ultralytics' rectangular validation batches (and the authors' YOLOv3 ``test.py``).

    The image is scaled so its longer side is ``size``; each canvas side is that side in
    strides plus ``pad`` stride, rounded up: ``ceil(side / stride + pad) * stride``. With the
    default ``pad=0.5`` a 160x160 image sits in a 192x192 canvas, a 512x341 one in 544x384.

    Returns:
        ``(Hc, Wc)``.
    """
    s = size / max(h, w)
    return (
        int(math.ceil(h * s / stride + pad)) * stride,
        int(math.ceil(w * s / stride + pad)) * stride,
    )


def letterbox(
    images: torch.Tensor,
    size: int | tuple[int, int],
    *,
    pad_value: float,
    rect: bool = False,
    stride: int = 32,
    method: str = "bilinear",
) -> tuple[torch.Tensor, LetterboxLayout]:
    """Resize (aspect kept, fitting inside ``size``) and pad centrally onto a canvas.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        size: an int ``S`` (longer side ``S``, canvas ``S x S``) or ``(Hc, Wc)`` (fit inside, canvas
            ``Hc x Wc``).
        pad_value: fill of the border (detection evaluation: 114/255; prepared datasets: 0).
        rect: ``True``: the canvas is ultralytics' validation canvas :func:`rect_canvas` (half a
            stride of extra border; needs an int ``size``).
        stride: the detector stride (for ``rect``).
        method: resampling, see :func:`resize_image`.

    Returns:
        ``(padded (B, C, Hc, Wc), layout)``; the resized image occupies
        ``padded[..., top:top + nh, left:left + nw]``, everything else is ``pad_value``.
    """
    h, w = int(images.shape[-2]), int(images.shape[-1])
    if rect:
        if not isinstance(size, (int, np.integer)):
            raise ValueError(f"size: rect=True needs an int size, got {size!r}")
        ch, cw = rect_canvas(h, w, int(size), stride)
    else:
        ch, cw = _target_hw(size)
    nh, nw = fit_size(h, w, size)
    resized = resize_image(images, (nh, nw), method)
    top, left = (ch - nh) // 2, (cw - nw) // 2
    out = F.pad(resized, (left, cw - nw - left, top, ch - nh - top), value=pad_value)
    return out, LetterboxLayout((h, w), (nh, nw), (top, left), (ch, cw))


def boxes_to_letterbox(boxes: torch.Tensor, layout: LetterboxLayout) -> torch.Tensor:
    """Normalised ``cx, cy, w, h`` boxes ``(N, 4)`` of the input -> normalised to the canvas.

    Args:
        boxes: ``(N, 4)`` normalised to the input image (a copy is returned, same dtype).
        layout: from :func:`letterbox`.

    Returns:
        ``(N, 4)`` normalised to the canvas ``(Hc, Wc)``.
    """
    (nh, nw), (top, left), (ch, cw) = layout.resized, layout.pad, layout.canvas
    out = boxes.clone()
    out[:, 0] = (boxes[:, 0] * nw + left) / cw
    out[:, 1] = (boxes[:, 1] * nh + top) / ch
    out[:, 2] = boxes[:, 2] * nw / cw
    out[:, 3] = boxes[:, 3] * nh / ch
    return out


def boxes_from_letterbox(detections: torch.Tensor, layout: LetterboxLayout) -> torch.Tensor:
    """Detections ``(n, >= 4)`` with ``x1, y1, x2, y2`` in canvas pixels -> pixels of the input.

    Args:
        detections: ``(n, k)``, the first four columns corners in canvas pixels (other columns,
            e.g. score and class, are copied).
        layout: from :func:`letterbox`.

    Returns:
        ``(n, k)``, corners in pixels of the input ``(H, W)``, clipped to the image.
    """
    (h, w), (nh, nw), (top, left) = layout.orig, layout.resized, layout.pad
    d = detections.clone()
    d[:, [0, 2]] = ((d[:, [0, 2]] - left) * (w / nw)).clamp(0, w)
    d[:, [1, 3]] = ((d[:, [1, 3]] - top) * (h / nh)).clamp(0, h)
    return d
