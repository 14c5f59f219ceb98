"""Score an image-restoration function on a restoration set: PSNR and SSIM per sample (IRPO's tables).

``fn`` maps degraded images ``(B, 3, H, W)`` in [0, 1] to restorations of the same shape; every
sample of the set (one degraded crop: photo x degradation x crop, :mod:`ispbench.data.restoration`)
gets one row, so that tables can average per degradation and bootstrap clustered by photo.
Restorations are clamped to [0, 1] before scoring, as an image written to disk would be.

Example:
    >>> from ispbench.data.restoration import RestorationSet
    >>> data = RestorationSet("val", crops_per_photo=1, size=32)         # doctest: +SKIP
    >>> rows = evaluate_restoration(lambda x: x, data)                   # doctest: +SKIP
    >>> rows.groupby("task").psnr.mean()                                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import torch

from ispbench.tasks.finishing_metrics import psnr, ssim

RestorationFn = Callable[[torch.Tensor], torch.Tensor]


def evaluate_restoration(fn: RestorationFn, data: Any, *, batch_size: int = 16) -> pd.DataFrame:
    """One row per sample of ``data``: ``photo, kind, task, crop, psnr, ssim`` (and the input's
    ``input_psnr``, ``input_ssim``, the degraded image scored against the clean one).

    ``data``: a :class:`~ispbench.data.restoration.RestorationSet` (``degraded``, ``clean``
    ``(N, 3, H, W)`` tensors and per-sample ``photo``, ``kind``, ``task``, ``crop``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
    with torch.no_grad():
        for first in range(0, len(data), batch_size):
            degraded = data.degraded[first:first + batch_size]
            clean = data.clean[first:first + batch_size]
            restored = fn(degraded)
            if restored.shape != degraded.shape:
                raise ValueError(f"the restoration function returned {tuple(restored.shape)} for input {tuple(degraded.shape)}")
            restored = restored.float().clamp(0, 1)
            scores["psnr"] += psnr(restored, clean).tolist()
            scores["ssim"] += ssim(restored, clean).tolist()
            scores["input_psnr"] += psnr(degraded, clean).tolist()
            scores["input_ssim"] += ssim(degraded, clean).tolist()
    return pd.DataFrame({"photo": list(data.photo), "kind": list(data.kind), "task": list(data.task),
                         "crop": [int(c) for c in data.crop], **scores})


def per_task_means(rows: pd.DataFrame, *, metrics: tuple[str, ...] = ("psnr", "ssim")) -> pd.DataFrame:
    """Mean of each metric per task, plus the ``average`` row over tasks (each task weighted once,
    as the paper's all-in-one average)."""
    missing = {"task", *metrics} - set(rows.columns)
    if missing:
        raise ValueError(f"rows lack the columns {sorted(missing)}")
    means = rows.groupby("task", sort=False)[list(metrics)].mean()
    means.loc["average"] = means.mean()
    return means


__all__ = ["RestorationFn", "evaluate_restoration", "per_task_means"]
