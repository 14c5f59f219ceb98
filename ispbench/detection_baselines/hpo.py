"""Hyperparameter Optimization baseline (Tseng et al., SIGGRAPH 2019) on a fixed 10-stage pipeline.

AdaptiveISP compares against static hand-crafted pipelines whose parameters are tuned for the
detector (Table 1 "Hyperparameter Optimization", Table 5: 10 stages). Tseng et al. optimise a
black-box ISP's hyper-parameters through a differentiable *proxy*; our modules are differentiable
already, so the proxy is the ISP itself: one parameter vector, **the same for every image**,
optimised with Adam by back-propagating the frozen detector's loss through the pipeline.

Pipeline: :data:`~ispbench.detection_baselines.pipeline.FIXED_PIPELINE` (or any order or subset
of the pool). Parameters start at each module's identity (:func:`ispbench.ops.identity_raw`) and
are kept in range with :func:`ispbench.ops.squash`. The trainer is
:mod:`ispbench.detection_baselines.train`:

    ispbench train hpo --iterations 300 --lr 0.05 --export ispbench/weights/hpo_embedded.pt
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ispbench import ops

from .pipeline import FIXED_PIPELINE, check_pipeline, render_pipeline


class HPOISP(nn.Module):
    """Fixed pipeline with one learned parameter vector shared by all images.

    ``forward(linear (B, 3, H, W)) -> (B, 3, H, W)``; :meth:`params` gives the in-range values.
    """

    method = "hpo"

    def __init__(self, pipeline: Sequence[str] = FIXED_PIPELINE) -> None:
        super().__init__()
        self.pipeline = check_pipeline(pipeline, "HPOISP")
        self.raw = nn.ParameterDict({name: nn.Parameter(ops.identity_raw(name, ops.n_params(name))) for name in self.pipeline})

    def config(self) -> dict:
        return {"method": self.method, "pipeline": self.pipeline}

    def params(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """The in-range parameters ``{name: (batch, n)}`` (the same row for every image)."""
        return {name: ops.squash(name, raw.view(1, -1)).expand(batch, -1) for name, raw in self.raw.items()}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        return render_pipeline(linear, self.pipeline, self.params(linear.shape[0]))


__all__ = ["HPOISP"]
