"""RLPixTuner's photo-finishing state representation: the parts that are not learned (Sec. 3.3).

The policy sees, at step ``t`` of an episode:

* ``cur64``/``goal64``: the current image ``I_t`` and the goal ``I_g`` resized to 64x64 (area
  interpolation); the dual-path CNN (:mod:`.networks`) encodes them.
* ``vec``: a flat vector of pre-computed features, laid out by :class:`StateLayout`:

  - ``hist``: RGB histograms (``bins`` per channel, normalised to sum to ``bins``) of ``I_t`` and
    ``I_g``: ``2 * 3 * bins`` values (a Linear layer maps them, F^S).
  - ``stats``: mean luminance, median luminance, contrast (luminance std) and saturation
    (mean of ``max - min`` over RGB) of ``I_t`` and ``I_g``: 8 values (F^S).
  - ``pyramid``: a 3-level Laplacian pyramid of each image (at up to ``analysis_size`` = 256 px
    per side, see below; the authors use full resolution); each band's
    absolute value is average-pooled onto a 4x4 grid per channel (3 x 3 x 16 per image, x10 so
    it is O(1)); the authors feed the pyramid to capture high frequencies lost at 64x64.
  - ``history``: all actions so far ``a_{1:t}`` (``max_steps x 9``, zero-padded) and the RMS
    distances ``l_{0:t}`` between image and goal (``max_steps``, zero-padded) (F^H).
  - ``params``: the current parameters (the last action, or the initial parameters) and the
    step index ``t / max_steps``. The authors' code always puts these in the observation; so do
    we, in every ablation (an absolute-parameter action needs to know where it starts).

Every per-image feature is computed from **one** copy of the image, :func:`analysis_image`: the image
area-downsampled to at most ``analysis_size`` per side (read once at full resolution), or the image
itself when it is already that small (the policy trains on 64 px crops, where nothing is
downsampled). The 64x64 copy is taken from that copy too, so a 720p frame costs one full-resolution
read (a few percent of one pipeline render on a CPU) and the rest works on at most 256x256 pixels.

Luminance is ``0.27 R + 0.67 G + 0.06 B`` (project convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ispbench.ops.color import luminance

POLICY_SIZE = 64
N_PARAMS = 9


def resize_to(img: torch.Tensor, size: int = POLICY_SIZE) -> torch.Tensor:
    """Area-resize ``(B, 3, H, W)`` to ``(B, 3, size, size)`` (bilinear if upsampling)."""
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    if img.shape[-1] >= size and img.shape[-2] >= size:
        return F.adaptive_avg_pool2d(img, size)
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


def rgb_histograms(img: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Per-channel histograms over [0, 1], ``(B, 3 * bins)``, each channel summing to ``bins``."""
    b, c = img.shape[:2]
    # clamp(x, 0, 1) * bins, truncated, capped at bins - 1: the same bin as clamping x * bins to
    # [0, bins - 1] before truncating (one temporary fewer)
    idx = (img * bins).clamp_(0, bins - 1).long().flatten(2)  # (B, 3, N)
    counts = torch.zeros(b, c, bins, dtype=img.dtype, device=img.device)
    counts.scatter_add_(2, idx, img.new_ones(()).expand(idx.shape))
    counts = counts / idx.shape[-1] * bins
    return counts.flatten(1)


def photo_stats(img: torch.Tensor) -> torch.Tensor:
    """``(B, 4)``: mean luminance, median luminance, contrast (luminance std), saturation."""
    lum = luminance(img).flatten(1)
    sat = (img.amax(1) - img.amin(1)).flatten(1).mean(1)
    return torch.stack([lum.mean(1), lum.median(1).values, lum.std(1), sat], 1)


def laplacian_pyramid_features(img: torch.Tensor, levels: int = 3, grid: int = 4) -> torch.Tensor:
    """Pooled magnitudes of a ``levels``-band Laplacian pyramid, ``(B, levels * 3 * grid**2)``.

    Band ``k`` is ``G_k - up(G_{k+1})`` with ``G_0`` the image and ``G_{k+1}`` a 2x average-pool
    of ``G_k``. Each ``|band|`` is average-pooled to ``grid x grid`` and multiplied by 10.
    """
    feats = []
    g = img
    for _ in range(levels):
        if min(g.shape[-2:]) < 2 * grid:
            feats.append(img.new_zeros(img.shape[0], 3 * grid * grid))
            continue
        down = F.avg_pool2d(g, 2, ceil_mode=True)
        up = F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False)
        band = (g - up).abs_()
        feats.append(10.0 * F.adaptive_avg_pool2d(band, grid).flatten(1))
        g = down
    return torch.cat(feats, 1)


@dataclass(frozen=True)
class StateLayout:
    """Sizes and offsets of the pre-computed state vector (see module docstring)."""

    max_steps: int = 10
    bins: int = 16
    pyramid_levels: int = 3
    pyramid_grid: int = 4
    analysis_size: int = 256

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "hist": 2 * 3 * self.bins,
            "stats": 8,
            "pyramid": 2 * self.pyramid_levels * 3 * self.pyramid_grid**2,
            "history": self.max_steps * N_PARAMS + self.max_steps,
            "params": N_PARAMS + 1,
        }

    @property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for key, n in self.sizes.items():
            out[key] = slice(start, start + n)
            start += n
        return out

    @property
    def dim(self) -> int:
        return sum(self.sizes.values())


def analysis_image(img: torch.Tensor, size: int = 256) -> torch.Tensor:
    """The copy every image feature is computed from: ``(B, 3, min(H, size), min(W, size))`` float32.

    An image larger than ``size`` on either side is area-downsampled (``adaptive_avg_pool2d``, one
    read at full resolution, in float64 for a float64 image so that no full-size float32 copy is
    made); a smaller one is returned as ``img.float()`` (the same tensor if already float32).
    """
    h, w = img.shape[-2:]
    if h > size or w > size:
        if img.dtype != torch.float64:
            img = img.float()
        img = F.adaptive_avg_pool2d(img, (min(h, size), min(w, size)))
    return img.float()


@torch.no_grad()
def image_features(img: torch.Tensor, layout: StateLayout) -> dict[str, torch.Tensor]:
    """Per-image parts of the state: 64x64 copy, histograms, statistics, pyramid features.

    All four are computed from :func:`analysis_image` (the image area-downsampled to at most
    ``layout.analysis_size`` per side; the authors build the pyramid at full resolution, which at
    4K costs more than the rest of the policy on a CPU). Images up to ``analysis_size`` per side
    are used as they are, so their features do not depend on ``analysis_size``; for a larger one
    the 64x64 copy is the area-downsampled copy area-resized again (at 720p: 256x256, then 4x4 blocks).

    Args:
        img: ``(B, 3, H, W)`` in [0, 1], any float dtype.
        layout: gives ``bins``, ``pyramid_levels``, ``pyramid_grid`` and ``analysis_size``.

    Returns:
        ``{"small": (B, 3, 64, 64), "hist": (B, 3 * bins), "stats": (B, 4), "pyramid": (B, levels * 3 * grid**2)}``,
        float32.
    """
    img = analysis_image(img, layout.analysis_size)
    return {
        "small": resize_to(img),
        "hist": rgb_histograms(img, layout.bins),
        "stats": photo_stats(img),
        "pyramid": laplacian_pyramid_features(img, layout.pyramid_levels, layout.pyramid_grid),
    }


@torch.no_grad()
def build_vec(cur: dict[str, torch.Tensor], goal: dict[str, torch.Tensor], params: torch.Tensor,
              step: torch.Tensor, hist_actions: torch.Tensor, hist_dist: torch.Tensor,
              layout: StateLayout) -> torch.Tensor:
    """Assemble the flat state vector ``(B, layout.dim)`` from image features and episode history.

    Args:
        cur, goal: outputs of :func:`image_features`.
        params: ``(B, 9)`` current parameters; step: ``(B,)`` step index ``t``.
        hist_actions: ``(B, max_steps, 9)`` actions so far (zero-padded).
        hist_dist: ``(B, max_steps)`` RMS distances so far (zero-padded).
    """
    parts = [
        torch.cat([cur["hist"], goal["hist"]], 1),
        torch.cat([cur["stats"], goal["stats"]], 1),
        torch.cat([cur["pyramid"], goal["pyramid"]], 1),
        torch.cat([hist_actions.flatten(1), 10.0 * hist_dist], 1),
        torch.cat([params, step.float()[:, None] / layout.max_steps], 1),
    ]
    vec = torch.cat([p.float() for p in parts], 1)
    assert vec.shape[1] == layout.dim, (vec.shape, layout.dim)
    return vec


__all__ = ["StateLayout", "image_features", "analysis_image", "build_vec", "rgb_histograms", "photo_stats",
           "laplacian_pyramid_features", "resize_to", "POLICY_SIZE"]
