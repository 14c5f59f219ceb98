"""AdaIR / IRPO at test time: export and load a restoration model, restore images.

:func:`load_model` reads what ``ispbench train irpo-pretrain --export PATH`` (or a GRPO run) wrote,
or a training checkpoint ``last.pt``, with ``weights_only=True``. A post-trained model can be
exported as a *difference* from its starting model (``export_model(..., base=...)``: the tensors that
changed, about 2% of AdaIR under the authors' trainable set, and the base file's name and SHA-256);
:func:`load_model` finds the base beside the file, checks its hash and applies the difference. Test time uses the deterministic
path (:class:`~.network.AdaIR` with ``stochastic=False``), as the authors' test script does;
:func:`make_restore_fn` with ``stochastic=True`` scores the policy's sampled path instead.

Example:
    >>> model = load_model("ispbench/weights/adair_embedded.pt")      # doctest: +SKIP
    >>> restored = make_restore_fn(model)(degraded)                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
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


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_model(model: AdaIR, path: str | Path, *, metadata: dict | None = None, base: str | Path | None = None) -> Path:
    """Write config + weights (float32) + metadata atomically.

    ``base``: an exported model in the same folder as ``path`` that ``model`` started from; only the tensors
    that differ from it are written, with its file name and SHA-256 (what :func:`load_model` checks).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": EXPORT_FORMAT, "config": model.config.to_dict(), "metadata": metadata or {}}
    if base is not None:
        base = Path(base)
        if base.resolve().parent != Path(path).resolve().parent:
            raise ValueError(f"base {base} must sit in the same folder as {path} (it is found by name at load time)")
        base_model = load_model(base)
        if base_model.config != model.config:
            raise ValueError(f"base {base}: its AdaIR config differs from the model's; a difference needs the same architecture")
        reference = base_model.state_dict()
        state = {k: v for k, v in state.items() if not torch.equal(v, reference[k].cpu())}
        payload["base"] = {"file": base.name, "sha256": file_sha256(base)}
    payload["state_dict"] = state
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
        if "base" in payload:  # a difference from another export: start from it
            state = {**_base_state(path, payload["base"]), **state}
    elif {"model", "config"} <= set(payload):
        state, metadata = payload["model"], {"train_args": payload.get("args", {}), "iterations": payload.get("iteration")}
    else:
        raise ValueError(f"{path}: not an AdaIR export ({EXPORT_FORMAT}) or training checkpoint (keys {sorted(payload)[:8]})")
    model = AdaIR(AdaIRConfig.from_dict(payload["config"]))
    model.load_state_dict(state)
    model.metadata = metadata
    return model.to(device).eval()


def _base_state(path: Path, base: dict) -> dict[str, torch.Tensor]:
    base_path = path.parent / base["file"]
    if not base_path.is_file():
        raise FileNotFoundError(f"{path} stores only its difference from {base['file']}, expected beside it at {base_path}")
    if file_sha256(base_path) != base["sha256"]:
        raise ValueError(f"{path} was written as a difference from {base_path} with SHA-256 {base['sha256'][:12]}..., "
                         f"but that file now has {file_sha256(base_path)[:12]}...: it changed since")
    return load_model(base_path).state_dict()


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


__all__ = ["EXPORT_FORMAT", "PRETRAINED_WEIGHTS", "export_model", "file_sha256", "load_model", "make_restore_fn", "pad_to_multiple"]
