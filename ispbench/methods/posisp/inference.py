"""POS-ISP at test time: load an exported model, decode its pipeline, process images.

:func:`load_model` reads what ``ispbench train posisp --export PATH`` (or a snapshot, or a
training checkpoint ``last.pt``) wrote, with ``weights_only=True``. The decoded pipeline is the
decoder's argmax sequence (the same for every image); only the parameters are per image.

Example:
    >>> model = load_model("ispbench/weights/posisp_embedded.pt")      # doctest: +SKIP
    >>> model.pipeline()                                               # doctest: +SKIP
    ['exposure', 'gamma', 'denoise']
    >>> srgb = model(linear)                                           # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ispbench import atomic
from ispbench.ops.modules import NLM_SEARCH
from ispbench.paths import WEIGHTS_DIR
from ispbench.training.checkpoint import safe_load

from .networks import ParameterNet, PosISP, SequenceDecoder

#: Format tag of an exported model.
EXPORT_FORMAT = "ispbench.posisp.model/1"
#: The shipped embedded detection model (seed 0 of the embedded recipe).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "posisp_embedded.pt"


def _maybe_half(state: dict, half: bool) -> dict:
    return {k: (v.half() if half and v.is_floating_point() else v) for k, v in state.items()}


def export_model(model: PosISP, path: str | Path, *, metadata: dict | None = None, half: bool = False) -> Path:
    """Write the inference model (config + weights of both nets; ``half``: float16, as shipped) atomically."""
    payload = {"format": EXPORT_FORMAT, "config": model.config(),
               "state_dict": {"decoder": _maybe_half(model.decoder.state_dict(), half),
                              "param_net": _maybe_half(model.param_net.state_dict(), half)},
               "metadata": metadata or {}}
    return atomic.torch_save(payload, path)


def _float(state: dict) -> dict:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def _build(config: dict) -> PosISP:
    dec = config["decoder"]
    net = config["param_net"]
    decoder = SequenceDecoder(dec["module_names"], hidden=dec["hidden"], step_dim=dec["step_dim"], max_length=dec["max_length"])
    param_net = ParameterNet(net["module_names"], widths=net["widths"], mlp=net["mlp"], variant=net["variant"])
    return PosISP(decoder, param_net, denoise_window=int(config.get("denoise_window", NLM_SEARCH)))


def load_model(path: str | Path | None = None, device: str = "cpu") -> PosISP:
    """Load an exported model (or a training checkpoint ``last.pt``) in eval mode.

    Raises:
        FileNotFoundError: with the command that trains one, when ``path`` does not exist.
        ValueError: when the file is neither format.
    """
    path = Path(path or DEFAULT_WEIGHTS)
    if not path.exists():
        raise FileNotFoundError(f"POS-ISP model {path} not found; train one with `ispbench train posisp --export {path}`")
    payload = safe_load(path, what="POS-ISP model")
    if payload.get("format") == EXPORT_FORMAT:
        model = _build(payload["config"])
        model.decoder.load_state_dict(_float(payload["state_dict"]["decoder"]))
        model.param_net.load_state_dict(_float(payload["state_dict"]["param_net"]))
        model.metadata = payload.get("metadata", {})
    elif {"decoder", "param_net", "config"} <= set(payload):
        model = _build(payload["config"])
        model.decoder.load_state_dict(payload["decoder"])
        model.param_net.load_state_dict(payload["param_net"])
        model.metadata = {"train_args": payload.get("args", {}), "iterations": payload.get("iteration")}
    else:
        raise ValueError(f"{path}: not a POS-ISP export ({EXPORT_FORMAT}) or training checkpoint (keys {sorted(payload)[:8]})")
    return model.to(device).eval()


def make_isp_fn(model: PosISP) -> Callable[[torch.Tensor], torch.Tensor]:
    """``linear (B, 3, H, W) -> output (B, 3, H, W)`` (no gradient) for the evaluation functions."""
    model.eval()

    @torch.no_grad()
    def isp(linear: torch.Tensor) -> torch.Tensor:
        return model(linear)

    return isp


__all__ = ["DEFAULT_WEIGHTS", "EXPORT_FORMAT", "export_model", "load_model", "make_isp_fn"]
