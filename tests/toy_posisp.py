"""A toy task for POS-ISP's learning tests: dark, smooth images that only a linear gain (Exposure) restores.

Images ``x = s * P`` with a smooth, low-contrast pattern ``P`` (values 0.3-0.7: Sharpen, which keeps the mean,
cannot brighten it by clipping as it can a high-contrast texture) and a per-image darkness ``s`` in [0.04, 0.1].
The toy loss is ``100 * mean((y - 0.12 P / mean(P))^2)``: zero only after the gain ``0.12 / (s mean(P))``
(Exposure +1.3..+2.6 EV). Tone can brighten dark inputs by at most 2.9x and Gamma bends the levels, so the best
pipelines contain Exposure; every other module can only move the output away from the target.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from ispbench.training.detection import TaskBatch

SIZE, S_LOW, S_HIGH, TARGET_MEAN = 32, 0.04, 0.1, 0.12


def smooth_pattern(size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """``(3, size, size)`` in [0.3, 0.7]: bilinearly upsampled 4 x 4 noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 4, generator=g)
    return 0.3 + 0.4 * F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)[0]


class ToyTask:
    """:class:`ispbench.training.tasks.Task` of ``n`` toy images (``model`` is a placeholder module)."""

    name = "detection"

    def __init__(self, n: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pattern = smooth_pattern()
        self.s = S_LOW + (S_HIGH - S_LOW) * torch.rand(n, generator=g)
        self.images = self.s[:, None, None, None] * self.pattern
        self.target = TARGET_MEAN * self.pattern / self.pattern.mean()
        self.model = torch.nn.Identity()
        self.calls = 0

    def __len__(self) -> int:
        return len(self.s)

    def batch(self, indices: Sequence[int]) -> TaskBatch:
        idx = [int(i) for i in indices]
        return TaskBatch(self.images[idx], torch.zeros(0, 6), None, idx)

    def per_image_loss(self, images: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        self.calls += 1
        return 100.0 * (images - self.target).square().mean((1, 2, 3))
