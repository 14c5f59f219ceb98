"""AdaIR / IRPO at test time: export and load a restoration model, restore images.

:func:`load_model` reads what ``ispbench train irpo-pretrain --export PATH`` (or a GRPO run) wrote,
or a training checkpoint ``last.pt``, with ``weights_only=True``. Test time uses the deterministic
path (:class:`~.network.AdaIR` with ``stochastic=False``), as the authors' test script does;
:func:`make_restore_fn` with ``stochastic=True`` scores the policy's sampled path instead.

Example:
    >>> model = load_model("ispbench/weights/adair_embedded.pt")      # doctest: +SKIP
    >>> restored = make_restore_fn(model)(degraded)                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from ispbench import atomic
from ispbench.paths import WEIGHTS_DIR
from ispbench.training.checkpoint import safe_load

from .network import AdaIR, AdaIRConfig

#: Format tag of an exported model.
EXPORT_FORMAT = "ispbench.irpo.adair/1"
#: The shipped pre-trained embedded AdaIR.
PRETRAINED_WEIGHTS = WEIGHTS_DIR / "adair_embedded.pt"


def export_model(model: AdaIR, path: str | Path, *, metadata: dict | None = None) -> Path:
    """Write config + weights (float32) + metadata atomically."""
    payload = {"format": EXPORT_FORMAT, "config": model.config.to_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "metadata": metadata or {}}
    return atomic.torch_save(payload, path)


def load_model(path: str | Path | None = None, device: str = "cpu") -> AdaIR:
    """Load an exported model or a training checkpoint (``model`` + ``config`` keys), in eval mode.

    Raises:
        FileNotFoundError: with the command that trains one.
        ValueError: when the file is neither format.
    """
    path = Path(path or PRETRAINED_WEIGHTS)
    if not path.exists():
        raise FileNotFoundError(f"AdaIR model {path} not found; train one with `ispbench train irpo-pretrain --export {path}`")
    payload = safe_load(path, what="AdaIR model")
    if payload.get("format") == EXPORT_FORMAT:
        state, metadata = payload["state_dict"], payload.get("metadata", {})
    elif {"model", "config"} <= set(payload):
        state, metadata = payload["model"], {"train_args": payload.get("args", {}), "iterations": payload.get("iteration")}
    else:
        raise ValueError(f"{path}: not an AdaIR export ({EXPORT_FORMAT}) or training checkpoint (keys {sorted(payload)[:8]})")
    model = AdaIR(AdaIRConfig.from_dict(payload["config"]))
    model.load_state_dict(state)
    model.metadata = metadata
    return model.to(device).eval()


def pad_to_multiple(x: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` on the bottom/right to multiples of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x), (h, w)


def make_restore_fn(model: AdaIR, *, stochastic: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """``degraded (B, 3, H, W) -> restored (B, 3, H, W)`` without gradient; any size (padded to multiples of 8)."""
    model.eval()
    device = next(model.parameters()).device

    @torch.no_grad()
    def restore(degraded: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(degraded.to(device))
        out = model(x, stochastic=True)[0] if stochastic else model(x)
        return out[..., :h, :w].cpu()

    return restore


__all__ = ["EXPORT_FORMAT", "PRETRAINED_WEIGHTS", "export_model", "load_model", "make_restore_fn", "pad_to_multiple"]
