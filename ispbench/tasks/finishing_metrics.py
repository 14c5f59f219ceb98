"""Photo-finishing metrics: PSNR, SSIM and LPIPS (RLPixTuner Tables 1, 3, 4).

All functions take ``(B, 3, H, W)`` (or ``(3, H, W)``) tensors in [0, 1] and return one value per
image ``(B,)``. NaN/Inf in ``pred`` or ``target`` are refused with a ``ValueError`` naming the
argument and the count (a NaN image would otherwise score NaN dB and poison a table's mean).
Nothing falls back silently: LPIPS needs torchvision's AlexNet weights, which this
project cannot download; without them :class:`LPIPS` raises :class:`LPIPSUnavailable` telling you
which file to place where.

Example:
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> psnr(x, x.clamp(0, 1) * 0.9).shape
    torch.Size([2])
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ispbench.ops.checks import require_finite, unchecked

#: The torchvision AlexNet ImageNet weights that LPIPS(net="alex") builds its backbone from.
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


def _check(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"pred and target must be torch tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.dim() == 3:
        pred = pred[None]
    if target.dim() == 3:
        target = target[None]
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be (B, C, H, W) of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    require_finite("pred", pred)
    require_finite("target", target)
    return pred, target


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, ``(B,)``."""
    pred, target = _check(pred, target)
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def psnr_from_mse(err: torch.Tensor, data_range: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """PSNR in dB from per-image MSEs ``(B,)`` (see :func:`psnr`; for callers that also need the MSE)."""
    return 10.0 * torch.log10(data_range**2 / (err + eps))


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(range^2 / MSE)``, ``(B,)``.

    ``eps`` caps identical images at ``10 log10(range^2 / eps)`` = 100 dB (range 1).
    """
    return psnr_from_mse(mse(pred, target), data_range, eps)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, mean over channels, ``(B,)``.

    Gaussian window 11, sigma 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, sample covariances
    (N/(N-1)), mean over the valid region (no padding): the same as
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    data_range=1, channel_axis=-1)`` (its default ``use_sample_covariance=True``).
    """
    pred, target = _check(pred, target)
    x, y = pred.double(), target.double()
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images must be at least {win_size}x{win_size} for SSIM, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = _gaussian_window(win_size, sigma, x.dtype, x.device)
    kx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kx, groups=c), ky, groups=c)

    ux, uy = filt(x), filt(y)
    uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).to(pred.dtype if pred.is_floating_point() else torch.float32)


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here because the AlexNet backbone weights are missing."""


def alexnet_weights_path() -> Path:
    """Where torchvision looks for the AlexNet weights: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> bool:
    """Whether :class:`LPIPS` can be built without downloading anything."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    return alexnet_weights_path().is_file()


class LPIPS:
    """LPIPS (Zhang et al. 2018) with the AlexNet backbone, as the paper reports it.

    The ``lpips`` package ships its linear-layer weights but builds the AlexNet backbone from
    torchvision's ImageNet weights, which it would download. We never download and never use a
    random backbone: if ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` is missing,
    the constructor raises :class:`LPIPSUnavailable` with the exact file and place.

    Call with ``(B, 3, H, W)`` images in [0, 1]; returns ``(B,)`` distances (lower is better).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        path = alexnet_weights_path()
        try:
            import lpips
        except ImportError as err:  # pragma: no cover - lpips is a dependency
            raise LPIPSUnavailable("the `lpips` package is not installed: pip install lpips") from err
        if not path.is_file():
            raise LPIPSUnavailable(
                f"LPIPS needs torchvision's AlexNet ImageNet weights, which are not downloaded automatically: "
                f"download {ALEXNET_URL} and place it at {path} (i.e. torch.hub.get_dir()/checkpoints/{ALEXNET_FILE}; "
                f"set $TORCH_HOME to move torch.hub.get_dir())"
            )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = _check(pred, target)
        p = pred.float().to(self.device) * 2 - 1
        t = target.float().to(self.device) * 2 - 1
        return self.model(p, t).flatten().cpu()


def all_metrics(pred: torch.Tensor, target: torch.Tensor, lpips_model: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """``{"PSNR": (B,), "SSIM": (B,), "LPIPS": (B,) or NaN}``; LPIPS NaN when no model is given."""
    pred, target = _check(pred, target)
    with unchecked():  # checked once above, not again by each metric
        out = {"PSNR": psnr(pred, target), "SSIM": ssim(pred, target)}
        if lpips_model is not None:
            out["LPIPS"] = lpips_model(pred, target)
    if lpips_model is None:
        out["LPIPS"] = torch.full((pred.shape[0],), math.nan)
    return out


__all__ = ["mse", "psnr", "ssim", "LPIPS", "LPIPSUnavailable", "lpips_available", "alexnet_weights_path", "all_metrics"]
