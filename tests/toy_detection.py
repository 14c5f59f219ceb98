"""A toy detection problem that only the Exposure module solves, for the detection trainers' learning tests.

* Images ``x = s * P``: one fixed textured pattern ``P`` (3 x S x S, ``0.02 + 0.98 u^2`` with ``u`` uniform noise:
  values in [0.02, 1], mean about 0.35) times a per-image darkness ``s`` drawn from ``[S_LOW, S_HIGH]`` =
  [0.04, 0.1] (image means 0.014-0.035).
* The toy "detector" ignores the boxes: ``per_image_loss(x, targets)`` is the mean squared difference of
  ``x`` to ``TARGET_MEAN * P / mean(P)`` (a brightened copy of the pattern), differentiable in ``x``.
  Only a linear gain of ``TARGET_MEAN / (s mean(P))`` (Exposure ``+1.8..+3.1`` EV, inside its +-3.5 EV range)
  reaches zero loss. Measured best per-image losses relative to the input's: Exposure 0, Gamma 0.10 (it
  brightens too but bends the texture), Contrast 0.6, the others about 1 (CCM and White Balance keep the
  luminance); one Exposure value for every image (what HPO can do) 0.085.

:func:`install` monkeypatches ``build_detector`` and ``train_dataset`` in a trainer module (the names it
imported from :mod:`ispbench.training.detection`), so the trainers run unchanged on the toy problem.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Side of the toy images (px) and the darkness range of ``x = s * P``.
SIZE, S_LOW, S_HIGH = 32, 0.04, 0.1
#: Mean of the target image ``TARGET_MEAN * P / mean(P)``.
TARGET_MEAN = 0.12


def pattern(size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """The fixed textured pattern ``P`` (3, size, size): ``0.02 + 0.98 u^2``, ``u`` uniform per pixel (a wide range of
    levels, so that a power curve (Gamma) cannot match a linear gain)."""
    g = torch.Generator().manual_seed(seed)
    return 0.02 + 0.98 * torch.rand(3, size, size, generator=g) ** 2


def target_image(size: int = SIZE) -> torch.Tensor:
    """``TARGET_MEAN * P / mean(P)`` (3, size, size): what the toy detector wants to see."""
    p = pattern(size)
    return TARGET_MEAN * p / p.mean()


def ideal_exposure(s: float | torch.Tensor) -> float | torch.Tensor:
    """The Exposure EV ``log2(TARGET_MEAN / (s mean(P)))`` that maps ``s * P`` onto the target exactly."""
    mean = float(pattern().mean())
    if isinstance(s, torch.Tensor):
        return torch.log2(TARGET_MEAN / (s * mean))
    return math.log2(TARGET_MEAN / (s * mean))


class ToyDataset(torch.utils.data.Dataset):
    """``n`` items ``{"image": s * P, "boxes": (1, 4), "labels": (1,), "meta"}`` with ``s`` evenly in [S_LOW, S_HIGH]."""

    def __init__(self, n: int = 32, size: int = SIZE, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        p = pattern(size)
        self.s = S_LOW + (S_HIGH - S_LOW) * torch.rand(n, generator=g)
        self.items = [{"image": float(s) * p, "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]]), "labels": torch.tensor([0]),
                       "meta": {"iso": 800, "scene_id": i}} for i, s in enumerate(self.s)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class ToyDetector(nn.Module):
    """Stands in for :class:`ispbench.tasks.detector.FrozenDetector`: ``per_image_loss`` only (what the trainers call).

    ``per_image_loss(x (B, 3, H, W), targets (N, 6)) -> (B,)``: mean squared difference to the target image
    (resized to ``H x W`` when needed); ``targets`` is checked for its shape and otherwise ignored.
    """

    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        self.register_buffer("target", target_image(size))
        self.calls = 0

    def per_image_loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x: expected (B, 3, H, W), got {tuple(x.shape)}")
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise ValueError(f"targets: expected (N, 6) rows, got {tuple(targets.shape)}")
        target = self.target
        if target.shape[-2:] != x.shape[-2:]:
            target = nn.functional.interpolate(target[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        self.calls += 1
        return (x - target.to(x.dtype)).pow(2).flatten(1).mean(1)


def install(monkeypatch, trainer_module, *, n_train: int = 32, n_val: int = 8) -> tuple[ToyDataset, ToyDetector]:
    """Make ``trainer_module`` train on the toy problem (its ``train_dataset`` and ``build_detector``)."""
    data = {"train": ToyDataset(n_train, seed=0), "val": ToyDataset(n_val, seed=1), "test": ToyDataset(n_val, seed=2)}
    detector = ToyDetector()

    def train_dataset(settings, split: str = "train", n_images: int | None = None):
        return data[split]

    monkeypatch.setattr(trainer_module, "train_dataset", train_dataset)
    monkeypatch.setattr(trainer_module, "build_detector", lambda settings: detector)
    return data["train"], detector
