"""Attention-aware Learning baseline (Qin et al., ECCV 2022) on the same fixed 10-stage pipeline.

Qin et al. predict an ISP's hyper-parameters **per image** with a CNN whose per-stage predictions
attend to the image features and to each other (the stages of a pipeline interact). Our
re-implementation, small enough for a CPU:

* encoder: 64x64 down-sample of the linear input, ``log2`` brightness-normalised
  (``x / mean(x)`` plus the log mean as an extra plane, so dark and bright inputs look alike),
  four Conv(3x3, s2)-BN-LeakyReLU layers 16-32-64-128 -> 16 spatial tokens + 1 global token;
* one learned query per pipeline stage; cross-attention (4 heads) from the stage queries to the
  image tokens, then self-attention among the stage queries (stage interactions);
* per stage a 128-64-n_params MLP head, :func:`ispbench.ops.squash` into range, bias set so
  every stage starts at its identity.

Trained exactly like :class:`~ispbench.detection_baselines.hpo.HPOISP` by
:mod:`ispbench.detection_baselines.train` (same pipeline, data, frozen detector, loss); only the
parameter model differs. This is a simplified re-implementation from the paper's description, not
the authors' code.

    ispbench train attention --iterations 300 --lr 1e-3 --export ispbench/weights/attention_embedded.pt
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ispbench import ops

from .pipeline import FIXED_PIPELINE, render_pipeline


class AttentionISP(nn.Module):
    """Per-image parameters of a fixed pipeline from an attention CNN: (B, 3, H, W) -> (B, 3, H, W)."""

    method = "attention"

    def __init__(self, pipeline: Sequence[str] = FIXED_PIPELINE, width: int = 128, heads: int = 4) -> None:
        super().__init__()
        self.pipeline = list(pipeline)
        self.width = width
        chans, layers, prev = (16, 32, 64, width), [], 4
        for c in chans:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
            prev = c
        self.encoder = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.zeros(1, 17, width))
        self.queries = nn.Parameter(torch.randn(1, len(self.pipeline), width) * 0.02)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.heads = nn.ModuleDict()
        for name in self.pipeline:
            head = nn.Sequential(nn.Linear(width, 64), nn.LeakyReLU(0.2), nn.Linear(64, ops.n_params(name)))
            nn.init.normal_(head[-1].weight, std=1e-3)
            with torch.no_grad():
                head[-1].bias.copy_(ops.identity_raw(name, ops.n_params(name)))
            self.heads[name] = head

    def config(self) -> dict:
        return {"method": self.method, "pipeline": self.pipeline, "kwargs": {"width": self.width}}

    def encode(self, linear: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(linear.clamp(0, 1), size=(64, 64), mode="area")
        mean = small.mean((1, 2, 3), keepdim=True).clamp_min(1e-4)
        norm = (small / mean).clamp(0, 8) / 8
        logm = (torch.log2(mean) / 10).expand(-1, 1, 64, 64)
        feats = self.encoder(torch.cat([norm, logm], 1))  # (B, C, 4, 4)
        tokens = feats.flatten(2).transpose(1, 2)  # (B, 16, C)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + self.pos
        return tokens

    def params(self, linear: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image in-range parameters ``{name: (B, n)}``."""
        tokens = self.encode(linear)
        q = self.queries.expand(linear.shape[0], -1, -1)
        h = self.norm1(q + self.cross(q, tokens, tokens, need_weights=False)[0])
        h = self.norm2(h + self.self_attn(h, h, h, need_weights=False)[0])
        return {name: ops.squash(name, self.heads[name](h[:, i])) for i, name in enumerate(self.pipeline)}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        return render_pipeline(linear, self.pipeline, self.params(linear))


__all__ = ["AttentionISP"]
