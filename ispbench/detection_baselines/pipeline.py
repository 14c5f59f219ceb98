"""The fixed pipeline both detection baselines tune (AdaptiveISP Table 1 / Table 5: 10 stages).

All ten modules of the pool in a conventional ISP order (AdaptiveISP Fig. 9, RGB domain):
exposure -> white_balance -> ccm -> denoise -> sharpen_blur -> gamma -> tone -> contrast ->
saturation -> desaturation. :func:`render_pipeline` applies a pipeline with given per-image
parameters; the parameter models are :class:`~ispbench.detection_baselines.hpo.HPOISP` (one
vector for every image) and :class:`~ispbench.detection_baselines.attention.AttentionISP` (per
image).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ispbench import ops

#: The static pipeline of both baselines (10 stages, paper Table 5).
FIXED_PIPELINE: tuple[str, ...] = (
    "exposure", "white_balance", "ccm", "denoise", "sharpen_blur",
    "gamma", "tone", "contrast", "saturation", "desaturation",
)


def render_pipeline(x: torch.Tensor, pipeline: Sequence[str], params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply ``pipeline`` in order with per-image ``params[name]`` (B, n) in range; output clipped to [0, 1].

    Args:
        x: linear images (B, 3, H, W) in [0, 1].
        pipeline: module names of :data:`ispbench.ops.MODULE_NAMES`, in order.
        params: ``{name: (B, n_params(name))}`` in each module's natural range.
    """
    for name in pipeline:
        x = ops.apply(name, x, params[name], clamp=True)
    return x.clamp(0, 1)


def check_pipeline(pipeline: Sequence[str], owner: str) -> list[str]:
    """``pipeline`` as a list; raises ``ValueError`` naming ``owner`` on a module outside the pool."""
    for name in pipeline:
        if name not in ops.MODULE_NAMES:
            raise ValueError(f"{owner}: unknown module {name!r} in pipeline; valid: {ops.MODULE_NAMES}")
    return list(pipeline)


__all__ = ["FIXED_PIPELINE", "check_pipeline", "render_pipeline"]
