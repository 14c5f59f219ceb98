"""Build, load and run the detection baselines (:class:`.hpo.HPOISP`, :class:`.attention.AttentionISP`,
:class:`.reconfigisp.ReconfigDiscreteISP`).

    model = load_baseline(default_weights("hpo"))      # shipped ispbench/weights/hpo_embedded.pt
    isp = make_isp_fn(model)                            # linear (B, 3, H, W) -> output, for evaluate_isp
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ispbench.paths import WEIGHTS_DIR
from ispbench.training.checkpoint import safe_load

from .attention import AttentionISP
from .hpo import HPOISP
from .reconfigisp import ReconfigDiscreteISP

#: Exported-file format written by ``ispbench train hpo|attention|reconfigisp --export``.
EXPORT_FORMAT = "ispbench.baseline/1"


def build_model(method: str, pipeline: Sequence[str], **kwargs) -> nn.Module:
    """``hpo`` -> :class:`HPOISP`, ``attention`` -> :class:`AttentionISP` (``kwargs``: its width/heads),
    ``reconfigisp`` -> :class:`ReconfigDiscreteISP` (an HPOISP; ``kwargs``: its ``denoise_window``)."""
    if method == "hpo":
        return HPOISP(pipeline)
    if method == "attention":
        return AttentionISP(pipeline, **kwargs)
    if method == "reconfigisp":
        return ReconfigDiscreteISP(pipeline, **kwargs)
    raise ValueError(f"method must be 'hpo', 'attention' or 'reconfigisp', got {method!r}")


def load_baseline(path: str | Path, device: str = "cpu") -> nn.Module:
    """Load an exported baseline (``--export``) or a training checkpoint (``last.pt``); eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"baseline weights {path} not found; train them with `ispbench train <hpo|attention|reconfigisp> --export {path}`"
        )
    payload = safe_load(path, what="detection baseline")
    config = payload["config"]
    model = build_model(config["method"], config["pipeline"], **config.get("kwargs", {}))
    state = payload["state_dict"] if "state_dict" in payload else payload["model"]  # export / training checkpoint
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()


def default_weights(method: str) -> Path:
    """Shipped checkpoint of a baseline: ``ispbench/weights/<method>_embedded.pt``."""
    return WEIGHTS_DIR / f"{method}_embedded.pt"


def make_isp_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``linear -> output`` under ``no_grad`` and eval mode, for ``evaluate_isp``.

    The model's device is that of its first parameter (CPU for a model without any, e.g. a ReconfigISP search
    that kept only skips: the identity pipeline).
    """
    model.eval()

    def isp(linear: torch.Tensor) -> torch.Tensor:
        first = next(iter(model.parameters()), None)
        with torch.no_grad():
            return model(linear.to(first.device if first is not None else "cpu"))

    return isp


__all__ = ["EXPORT_FORMAT", "build_model", "default_weights", "load_baseline", "make_isp_fn"]
