"""IRPO's data selection: post-train on the samples the pre-trained model restores worst.

The authors evaluate the pre-trained AdaIR on every training image of each degradation, sort by PSNR
(ties by SSIM), keep the worst 30% per degradation and clamp the count to [100, 5000] images. Their
pool is about 80,000 training images (BSD400 + WED for three noise levels, Rain100L, RESIDE-OTS,
GoPro, LOL); ours is the embedded pool (:class:`ispbench.data.restoration.RestorationSet`, about a
thousand crops), so the clamp is scaled by ``pool size / 80,000`` (:func:`scaled_clamp`); at the
embedded sizes it never binds. ``random`` is the data ablation's alternative: the same count per
degradation, drawn uniformly.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: The authors' per-degradation clamp and the size of the training pool it was set for.
AUTHORS_CLAMP = (100, 5000)
AUTHORS_POOL = 80_000
STRATEGIES = ("worst", "random")


def scaled_clamp(pool_size: int) -> tuple[int, int]:
    """The authors' [100, 5000] scaled by ``pool_size / 80,000`` (at least 1 sample)."""
    s = pool_size / AUTHORS_POOL
    return max(1, math.floor(AUTHORS_CLAMP[0] * s)), max(1, math.ceil(AUTHORS_CLAMP[1] * s))


def select_samples(scores: pd.DataFrame, *, fraction: float = 0.3, strategy: str = "worst", seed: int = 0,
                   clamp: tuple[int, int] | None = None) -> list[int]:
    """Indices (rows of ``scores``, in ascending order) of the samples to post-train on.

    Args:
        scores: one row per pool sample with ``kind``, ``psnr``, ``ssim`` (:func:`~ispbench.tasks.
            restoration_eval.evaluate_restoration` of the pre-trained model), in the pool's order.
        fraction: share kept per degradation kind (authors: 0.3); 1.0 keeps everything.
        strategy: ``worst`` (lowest PSNR first, then lowest SSIM) or ``random`` (same counts).
        seed: for ``random``.
        clamp: ``(min, max)`` per kind; ``None`` = :func:`scaled_clamp` of the pool size.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    missing = {"kind", "psnr", "ssim"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores lack the columns {sorted(missing)}")
    lo, hi = clamp or scaled_clamp(len(scores))
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    positions = pd.Series(range(len(scores)), index=scores.index)
    for kind in dict.fromkeys(scores["kind"]):  # first-seen order: reproducible
        group = scores[scores["kind"] == kind]
        count = min(len(group), max(lo, min(hi, round(fraction * len(group)))))
        if strategy == "worst":
            picked = group.sort_values(["psnr", "ssim"], kind="stable").index[:count]
        else:
            picked = group.index[np.sort(rng.choice(len(group), size=count, replace=False))]
        chosen += positions[picked].tolist()
    return sorted(chosen)


__all__ = ["AUTHORS_CLAMP", "AUTHORS_POOL", "STRATEGIES", "scaled_clamp", "select_samples"]
