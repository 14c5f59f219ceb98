"""Raw-domain operations: Bayer mosaic/demosaic, levels, gains, CCM, and Brooks et al. unprocessing.

Implements, in batched differentiable PyTorch, the raw-image synthesis of Brooks et al. 2019,
"Unprocessing Images for Learned Raw Denoising" (CVPR), which AdaptiveISP uses to make its raw
COCO training data, and the matching forward ISP:

* :func:`unprocess`: sRGB -> inverse smoothstep tone map -> gamma expansion (x^2.2) -> inverse CCM
  (random camera) -> inverse white-balance / brightness gains (highlight-safe) -> clip -> mosaic.
* :func:`process`: raw -> WB gains -> clip -> bilinear demosaic -> CCM -> gamma compression
  (x^(1/2.2)) -> smoothstep tone map.
* :func:`random_noise_levels` / :func:`add_noise`: the heteroscedastic Gaussian approximation of
  Poisson-Gaussian sensor noise with Brooks' log-linear shot/read relation.

The AdaptiveISP authors' raw COCO is ``unprocess(image, mosaic_output=False, scale=0.9)``: the
sRGB image is first multiplied by 0.9 and no mosaic is applied (3-channel linear camera RGB).

Bayer images are ``(B, 1, H, W)`` with ``H`` and ``W`` even; RGB images ``(B, 3, H, W)``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> srgb = 0.1 + 0.7 * torch.rand(2, 3, 16, 16, generator=g)
    >>> raw, meta = unprocess(srgb, g, mosaic_output=False)
    >>> back = process(raw, meta["gains"], meta["ccm"], demosaic=False)
    >>> bool((back - srgb).abs().max() < 1e-3)
    True
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F

from ispbench.ops.checks import warn_saturation

__all__ = [
    "BayerPattern",
    "XYZ2CAMS",
    "RGB2XYZ",
    "mosaic",
    "demosaic_bilinear",
    "bayer_masks",
    "apply_black_white_level",
    "invert_black_white_level",
    "apply_wb_gains",
    "apply_bayer_gains",
    "apply_ccm",
    "random_ccm",
    "random_gains",
    "inverse_smoothstep",
    "smoothstep",
    "gamma_expansion",
    "gamma_compression",
    "safe_invert_gains",
    "unprocess",
    "process",
    "random_noise_levels",
    "add_noise",
]


class BayerPattern(str, Enum):
    """Colour filter array layout, read row by row over the top-left 2x2 block."""

    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Colour index (0 R, 1 G, 2 B) at (0,0), (0,1), (1,0), (1,1)."""
        return tuple("RGB".index(c) for c in self.value)  # type: ignore[return-value]


#: XYZ -> camera matrices of the four cameras used by Brooks et al. 2019 to draw random CCMs
#: (typed in as data from the paper's published values).
XYZ2CAMS: tuple[tuple[tuple[float, float, float], ...], ...] = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)

#: Linear sRGB (D65) -> XYZ.
RGB2XYZ: tuple[tuple[float, float, float], ...] = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)


# --------------------------------------------------------------------------- checks


def _as_pattern(pattern: BayerPattern | str) -> BayerPattern:
    try:
        return BayerPattern(pattern.upper() if isinstance(pattern, str) else pattern)
    except ValueError:
        raise ValueError(f"pattern must be one of {[p.value for p in BayerPattern]}, got {pattern!r}") from None


def _check(name: str, x: Any, channels: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {channels}, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_even(name: str, x: torch.Tensor) -> None:
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise ValueError(f"{name} must have even H and W (whole 2x2 Bayer blocks), got H={h}, W={w}")


def _per_sample(name: str, value: Any, batch: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """Turn ``value`` into a ``(B, n)`` tensor (accepts (n,), (B, n), or (1, n))."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 1 and t.shape[0] == n:
        t = t.expand(batch, n)
    if t.ndim != 2 or t.shape[1] != n or t.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape (B, {n}) = ({batch}, {n}) or ({n},), got {tuple(t.shape)}")
    return t.expand(batch, n)


# --------------------------------------------------------------------------- Bayer


def bayer_masks(pattern: BayerPattern | str, h: int, w: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(1, 3, H, W)`` 0/1 masks: channel c is 1 where the CFA samples colour c."""
    pat = _as_pattern(pattern)
    masks = torch.zeros(1, 3, 2, 2, dtype=dtype, device=device)
    for k, c in enumerate(pat.channels):
        masks[0, c, k // 2, k % 2] = 1.0
    return masks.repeat(1, 1, (h + 1) // 2, (w + 1) // 2)[:, :, :h, :w]


def mosaic(rgb: torch.Tensor, pattern: BayerPattern | str = BayerPattern.RGGB) -> torch.Tensor:
    """Sample an RGB image through a Bayer colour filter array.

    Args:
        rgb: ``(B, 3, H, W)`` float, H and W even.
        pattern: :class:`BayerPattern` or its name.

    Returns:
        ``(B, 1, H, W)`` Bayer image: pixel (i, j) keeps the channel the CFA puts there.

    Example:
        >>> mosaic(torch.rand(1, 3, 4, 4), "RGGB").shape
        torch.Size([1, 1, 4, 4])
    """
    _check("rgb", rgb, 3)
    _check_even("rgb", rgb)
    m = bayer_masks(pattern, rgb.shape[2], rgb.shape[3], dtype=rgb.dtype, device=rgb.device)
    return (rgb * m).sum(dim=1, keepdim=True)


_K_RB = ((0.25, 0.5, 0.25), (0.5, 1.0, 0.5), (0.25, 0.5, 0.25))
_K_G = ((0.0, 0.25, 0.0), (0.25, 1.0, 0.25), (0.0, 0.25, 0.0))


def demosaic_bilinear(bayer: torch.Tensor, pattern: BayerPattern | str = BayerPattern.RGGB) -> torch.Tensor:
    """Bilinear demosaicing (each missing colour = mean of its nearest same-colour neighbours).

    Implemented as one depthwise 3x3 convolution of the three masked colour planes: kernel
    ``[[1,2,1],[2,4,2],[1,2,1]]/4`` for R and B, ``[[0,1,0],[1,4,1],[0,1,0]]/4`` for G. Borders use
    reflect-101 padding, which keeps the CFA phase, so edge pixels are bilinear too. Sampled
    values are kept exactly (``demosaic(mosaic(x))`` equals ``x`` at each pixel's own colour).

    Args:
        bayer: ``(B, 1, H, W)`` float, H and W even.
        pattern: :class:`BayerPattern` or its name.

    Returns:
        ``(B, 3, H, W)`` RGB.

    Example:
        >>> demosaic_bilinear(torch.rand(2, 1, 8, 6), BayerPattern.GRBG).shape
        torch.Size([2, 3, 8, 6])
    """
    _check("bayer", bayer, 1)
    _check_even("bayer", bayer)
    h, w = bayer.shape[2:]
    m = bayer_masks(pattern, h, w, dtype=bayer.dtype, device=bayer.device)
    planes = F.pad(bayer * m, (1, 1, 1, 1), mode="reflect")
    k = torch.tensor((_K_RB, _K_G, _K_RB), dtype=bayer.dtype, device=bayer.device).unsqueeze(1)
    return F.conv2d(planes, k, groups=3)


# --------------------------------------------------------------------------- levels, gains, CCM


def apply_black_white_level(raw: torch.Tensor, black: Any, white: Any, *, clip: bool = True) -> torch.Tensor:
    """Normalise sensor values: ``(raw - black) / (white - black)``, clipped to [0, 1] by default.

    ``black``/``white`` are numbers or tensors broadcastable to ``raw`` (e.g. ``(B, 1, 1, 1)``, or a
    ``(1, 1, H, W)`` per-CFA-site map). ``clip=False`` keeps noise below black (negative values).
    With ``clip=True``, counts above the white level (saturated, e.g. 24-bit counts normalised
    with a 16-bit white level) are clipped to 1 and reported with a
    :class:`~ispbench.ops.checks.SaturationWarning` (count and fraction); counts at the white
    level itself are not reported.

    Example:
        >>> apply_black_white_level(torch.tensor([512., 1023.]), 64, 1023)
        tensor([0.4672, 1.0000])
    """
    black = torch.as_tensor(black, dtype=raw.dtype, device=raw.device)
    white = torch.as_tensor(white, dtype=raw.dtype, device=raw.device)
    if torch.any(white <= black):
        raise ValueError(f"white level must exceed black level, got black={black.tolist()}, white={white.tolist()}")
    x = (raw - black) / (white - black)
    if not clip:
        return x
    n_over = int(torch.count_nonzero(raw.detach() > white))
    what = "white level" if white.numel() == 1 else "per-site white level (largest)"
    warn_saturation("apply_black_white_level raw", n_over, raw.numel(), float(white.max()), what, stacklevel=3)
    return x.clamp(0.0, 1.0)


def invert_black_white_level(x: torch.Tensor, black: Any, white: Any) -> torch.Tensor:
    """Inverse of :func:`apply_black_white_level`: ``x * (white - black) + black`` (no rounding)."""
    black = torch.as_tensor(black, dtype=x.dtype, device=x.device)
    white = torch.as_tensor(white, dtype=x.dtype, device=x.device)
    return x * (white - black) + black


def apply_wb_gains(rgb: torch.Tensor, gains: Any) -> torch.Tensor:
    """Multiply each channel by its gain. ``rgb`` ``(B, 3, H, W)``, ``gains`` ``(B, 3)`` or ``(3,)``. No clip."""
    _check("rgb", rgb, 3)
    g = _per_sample("gains", gains, rgb.shape[0], 3, rgb)
    return rgb * g[:, :, None, None]


def apply_bayer_gains(bayer: torch.Tensor, gains: Any, pattern: BayerPattern | str = BayerPattern.RGGB) -> torch.Tensor:
    """Per-colour gains on a Bayer image ``(B, 1, H, W)``; ``gains`` ``(B, 3)`` (R, G, B). No clip."""
    _check("bayer", bayer, 1)
    g = _per_sample("gains", gains, bayer.shape[0], 3, bayer)
    m = bayer_masks(pattern, bayer.shape[2], bayer.shape[3], dtype=bayer.dtype, device=bayer.device)
    return bayer * (m * g[:, :, None, None]).sum(dim=1, keepdim=True)


def apply_ccm(rgb: torch.Tensor, ccm: Any) -> torch.Tensor:
    """Colour matrix per pixel: ``out[b, i] = sum_j ccm[b, i, j] * rgb[b, j]``.

    Args:
        rgb: ``(B, 3, H, W)``.
        ccm: ``(B, 3, 3)`` or ``(3, 3)``.
    """
    _check("rgb", rgb, 3)
    m = torch.as_tensor(ccm, dtype=rgb.dtype, device=rgb.device)
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim != 3 or m.shape[1:] != (3, 3) or m.shape[0] not in (1, rgb.shape[0]):
        raise ValueError(f"ccm must have shape (B, 3, 3) = ({rgb.shape[0]}, 3, 3) or (3, 3), got {tuple(m.shape)}")
    return torch.einsum("bij,bjhw->bihw", m.expand(rgb.shape[0], 3, 3), rgb)


# --------------------------------------------------------------------------- Brooks et al. 2019


def _uniform(generator, shape, low, high) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def random_ccm(generator: torch.Generator | None = None, *, batch_size: int | None = None,
               dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Random sRGB -> camera matrix (Brooks et al. 2019, Sec. 3.2).

    A random convex combination of the four :data:`XYZ2CAMS` (weights uniform in [1e-8, 1e8],
    normalised), times :data:`RGB2XYZ`, each row normalised to sum to 1 (so white stays white).

    Returns:
        ``(3, 3)`` (``batch_size=None``) or ``(B, 3, 3)``; invert it to get camera -> sRGB.
    """
    n = 1 if batch_size is None else batch_size
    xyz2cams = torch.tensor(XYZ2CAMS, dtype=torch.float64)
    weights = _uniform(generator, (n, len(XYZ2CAMS), 1, 1), 1e-8, 1e8)
    xyz2cam = (xyz2cams * weights).sum(dim=1) / weights.sum(dim=1)
    rgb2cam = xyz2cam @ torch.tensor(RGB2XYZ, dtype=torch.float64)
    rgb2cam = rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)
    rgb2cam = rgb2cam.to(dtype=dtype, device=device)
    return rgb2cam[0] if batch_size is None else rgb2cam


def random_gains(generator: torch.Generator | None = None, *, batch_size: int | None = None,
                 dtype: torch.dtype = torch.float32, device=None):
    """Random gains (Brooks et al. 2019): ``rgb_gain = 1 / N(0.8, 0.1)``, red in U[1.9, 2.4], blue in U[1.5, 1.9].

    Returns:
        ``(rgb_gain, red_gain, blue_gain)``, each a scalar tensor or ``(B,)``.
    """
    n = 1 if batch_size is None else batch_size
    rgb_gain = 1.0 / (0.8 + 0.1 * torch.randn((n,), generator=generator, dtype=torch.float64))
    red = _uniform(generator, (n,), 1.9, 2.4)
    blue = _uniform(generator, (n,), 1.5, 1.9)
    out = [t.to(dtype=dtype, device=device) for t in (rgb_gain, red, blue)]
    return tuple(t[0] for t in out) if batch_size is None else tuple(out)


def inverse_smoothstep(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``3x^2 - 2x^3``: ``0.5 - sin(asin(1 - 2y) / 3)`` on ``clip(y, 0, 1)``."""
    y = image.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def smoothstep(image: torch.Tensor) -> torch.Tensor:
    """Global tone map ``3x^2 - 2x^3`` on ``clip(x, 0, 1)``."""
    x = image.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def gamma_expansion(image: torch.Tensor) -> torch.Tensor:
    """sRGB-like gamma to linear: ``max(x, 1e-8) ** 2.2``."""
    return image.clamp_min(1e-8) ** 2.2


def gamma_compression(image: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """Linear to display: ``max(x, 1e-8) ** (1 / gamma)``."""
    return image.clamp_min(1e-8) ** (1.0 / gamma)


def safe_invert_gains(rgb: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Divide by WB gains, tapering the division to 1 for bright pixels (Brooks' highlight-safe inversion).

    ``mask = (max(mean_c(x) - 0.9, 0) / 0.1) ** 2``; inverse gain ``max(mask + (1 - mask) / g, 1 / g)``,
    so pixels with mean above 0.9 are darkened less and do not fall below clipped values.
    ``gains`` ``(B, 3)`` are the forward gains.
    """
    inv = (1.0 / gains)[:, :, None, None]
    grey = rgb.mean(dim=1, keepdim=True)
    mask = ((grey - 0.9).clamp_min(0.0) / 0.1) ** 2
    return rgb * torch.maximum(mask + (1.0 - mask) * inv, inv)


def unprocess(image: torch.Tensor, generator: torch.Generator | None = None, *, mosaic_output: bool = True,
              scale: float = 1.0, pattern: BayerPattern | str = BayerPattern.RGGB,
              ccm: torch.Tensor | None = None, gains: torch.Tensor | None = None):
    """Turn sRGB images into plausible linear raw data (Brooks et al. 2019, Sec. 3).

    Steps: ``scale * image`` -> :func:`inverse_smoothstep` -> :func:`gamma_expansion` ->
    sRGB->camera CCM (:func:`random_ccm`) -> :func:`safe_invert_gains` with forward gains
    ``rgb_gain * (red, 1, blue)`` (:func:`random_gains`) -> clip [0, 1] -> :func:`mosaic`.
    Random draws are per sample from ``generator`` (CPU ``torch.Generator``; ``None`` = global RNG).

    AdaptiveISP's raw COCO: ``unprocess(x, g, mosaic_output=False, scale=0.9)``.

    Args:
        image: ``(B, 3, H, W)`` sRGB in [0, 1].
        generator: random source.
        mosaic_output: return a Bayer ``(B, 1, H, W)`` (H, W even) instead of ``(B, 3, H, W)``.
        scale: multiply the sRGB input first (AdaptiveISP: 0.9).
        pattern: Bayer layout for the mosaic.
        ccm: optional fixed ``(B, 3, 3)`` sRGB->camera matrix instead of a random one.
        gains: optional fixed ``(B, 3)`` forward gains instead of random ones.

    Returns:
        ``(raw, metadata)``; metadata holds ``"ccm"`` (camera->sRGB, ``(B, 3, 3)``, pass to
        :func:`process`), ``"rgb2cam"``, ``"gains"`` (forward ``(B, 3)`` gains, pass to
        :func:`process`), ``"rgb_gain"``, ``"red_gain"``, ``"blue_gain"`` (``(B,)``, NaN when
        ``gains`` was given), ``"pattern"``, ``"mosaic"``, ``"scale"``.
    """
    _check("image", image, 3)
    b = image.shape[0]
    if mosaic_output:
        _check_even("image", image)
    dd = dict(dtype=image.dtype, device=image.device)
    if ccm is None:
        rgb2cam = random_ccm(generator, batch_size=b, **dd)
    else:
        rgb2cam = torch.as_tensor(ccm, **dd).expand(b, 3, 3)
    if gains is None:
        rgb_gain, red, blue = random_gains(generator, batch_size=b, **dd)
        fwd = torch.stack([red, torch.ones_like(red), blue], dim=1) * rgb_gain[:, None]
    else:
        fwd = _per_sample("gains", gains, b, 3, image)
        rgb_gain = red = blue = torch.full((b,), float("nan"), **dd)
    x = inverse_smoothstep(image * scale)
    x = gamma_expansion(x)
    x = apply_ccm(x, rgb2cam)
    x = safe_invert_gains(x, fwd).clamp(0.0, 1.0)
    if mosaic_output:
        x = mosaic(x, pattern)
    meta = {
        "ccm": torch.linalg.inv(rgb2cam),
        "rgb2cam": rgb2cam,
        "gains": fwd,
        "rgb_gain": rgb_gain,
        "red_gain": red,
        "blue_gain": blue,
        "pattern": _as_pattern(pattern).value,
        "mosaic": mosaic_output,
        "scale": scale,
    }
    return x, meta


def process(raw: torch.Tensor, gains: Any, ccm: Any, *, demosaic: bool = True,
            pattern: BayerPattern | str = BayerPattern.RGGB) -> torch.Tensor:
    """Minimal forward ISP, the inverse of :func:`unprocess`.

    WB gains (on the mosaic if ``demosaic``) -> clip [0, 1] -> :func:`demosaic_bilinear` -> CCM
    (camera -> sRGB) -> :func:`gamma_compression` (x^(1/2.2), negatives clipped to 1e-8) ->
    :func:`smoothstep` (which clips to [0, 1]).

    ``process(*unprocess(x))`` is exact up to float rounding for pixels whose camera values were
    not clipped during unprocessing (saturated colours can go negative in camera space; pixels
    with mean above 0.9 get the highlight-safe gain). With a mosaic it is *not* exact: the bilinear
    demosaic interpolates the two missing colours at every pixel, which blurs edges and texture
    (zipper/colour fringes); only smooth images come back closely.

    Args:
        raw: ``(B, 1, H, W)`` Bayer (``demosaic=True``) or ``(B, 3, H, W)`` linear camera RGB.
        gains: ``(B, 3)`` forward WB gains (``metadata["gains"]``).
        ccm: ``(B, 3, 3)`` camera -> sRGB (``metadata["ccm"]``).
        demosaic: whether ``raw`` is a mosaic.
        pattern: Bayer layout.

    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    if demosaic:
        _check("raw", raw, 1)
        x = apply_bayer_gains(raw, gains, pattern).clamp(0.0, 1.0)
        x = demosaic_bilinear(x, pattern)
    else:
        _check("raw", raw, 3)
        x = apply_wb_gains(raw, gains).clamp(0.0, 1.0)
    x = apply_ccm(x, ccm)
    return smoothstep(gamma_compression(x))


def random_noise_levels(generator: torch.Generator | None = None, *, batch_size: int | None = None,
                        dtype: torch.dtype = torch.float32, device=None):
    """Shot and read noise levels (Brooks et al. 2019, Sec. 3.1).

    ``log(shot)`` uniform in ``[log 1e-4, log 0.012]``;
    ``log(read) = 2.18 * log(shot) + 1.20 + N(0, 0.26)``.

    Returns:
        ``(shot, read)``: scalar tensors, or ``(B,)`` with ``batch_size``.
    """
    n = 1 if batch_size is None else batch_size
    log_shot = _uniform(generator, (n,), math.log(1e-4), math.log(0.012))
    log_read = 2.18 * log_shot + 1.20 + 0.26 * torch.randn((n,), generator=generator, dtype=torch.float64)
    shot, read = (torch.exp(t).to(dtype=dtype, device=device) for t in (log_shot, log_read))
    return (shot[0], read[0]) if batch_size is None else (shot, read)


def add_noise(raw: torch.Tensor, shot: Any, read: Any, generator: torch.Generator | None = None) -> torch.Tensor:
    """Heteroscedastic Gaussian noise: ``raw + N(0, 1) * sqrt(shot * raw + read)``.

    The Poisson-Gaussian sensor model approximated with variance ``shot * x + read`` (Brooks et
    al. eq. 2); ``x`` is clipped at 0 inside the variance. The result is not clipped (real raw
    noise goes below black). ``shot``/``read`` are numbers or ``(B,)`` tensors.

    Args:
        raw: ``(B, C, H, W)`` linear raw in [0, 1].
    """
    if not isinstance(raw, torch.Tensor) or raw.ndim != 4:
        raise ValueError(f"raw must be a (B, C, H, W) tensor, got {getattr(raw, 'shape', type(raw).__name__)}")
    shot_t = torch.as_tensor(shot, dtype=raw.dtype, device=raw.device).reshape(-1, 1, 1, 1)
    read_t = torch.as_tensor(read, dtype=raw.dtype, device=raw.device).reshape(-1, 1, 1, 1)
    gen_device = generator.device if generator is not None else raw.device
    z = torch.randn(raw.shape, generator=generator, dtype=raw.dtype, device=gen_device).to(raw.device)
    return raw + z * torch.sqrt(shot_t * raw.clamp_min(0.0) + read_t)
