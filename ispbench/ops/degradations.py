"""Synthetic image degradations for all-in-one restoration: noise, rain, haze, blur and low light.

Pure, batched PyTorch functions on images ``(B, 3, H, W)`` (float32 or float64, RGB, values in
[0, 1]). Functions that draw random numbers take a ``torch.Generator`` and are deterministic given
it: the numbers are drawn on the generator's device and then moved to the image's, so a CPU
generator gives the same degradation whatever device the image sits on.

* :func:`gaussian_noise`: additive white Gaussian noise, ``sigma`` on the 0-255 scale (15 / 25 / 50
  in the denoising benchmarks).
* :func:`signal_dependent_noise`: heteroscedastic Gaussian approximation of Poisson-Gaussian sensor
  noise, variance ``shot * x + read**2``.
* :func:`rain_streaks`: sparse random seeds smeared along a line (a motion-blur kernel of a given
  length and angle) and screen-blended over the image.
* :func:`haze`: the atmospheric scattering model ``I = J t + A (1 - t)``;
  :func:`depth_like_transmission` gives a smooth pseudo-depth transmission map ``t = exp(-beta d)``.
* :func:`motion_blur_kernel` (camera-shake trajectories, disks, anisotropic Gaussians) and
  :func:`blur` (depthwise convolution, reflect padding).
* :func:`low_light`: darkening ``exposure * x ** gamma``.

The deterministic ones (:func:`haze`, :func:`blur`, :func:`low_light`) are differentiable with
respect to the image and their parameters.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.rand(2, 3, 32, 32, generator=g)
    >>> noisy = gaussian_noise(clean, 25.0, g)
    >>> kernel = motion_blur_kernel(9, g)              # (9, 9), sums to 1
    >>> blurred = blur(clean, kernel)
    >>> t = depth_like_transmission(32, 32, 1.2, g)    # (1, 1, 32, 32)
    >>> hazy = haze(clean, t, 0.9)
    >>> dark = low_light(clean, 0.2, 1.5)
    >>> rainy = rain_streaks(clean, g, density=0.004, length=12.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ispbench.ops.checks import require_finite, require_finite_number

__all__ = [
    "KERNEL_KINDS",
    "blur",
    "depth_like_transmission",
    "gaussian_noise",
    "haze",
    "low_light",
    "motion_blur_kernel",
    "rain_streaks",
    "signal_dependent_noise",
]

#: Blur kernels :func:`motion_blur_kernel` draws.
KERNEL_KINDS: tuple[str, ...] = ("motion", "defocus", "gaussian")

# Values may leave [0, 1] by float rounding of an upstream resize; more than this is refused.
_RANGE_TOLERANCE = 1e-4
# A normalised kernel's sum may differ from 1 by float32 rounding.
_KERNEL_SUM_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------------------------
# input checks and random draws
# ----------------------------------------------------------------------------------------------


def _check_image(img: Tensor, name: str = "img") -> None:
    if not isinstance(img, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(img).__name__}")
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {img.dtype}")
    require_finite(name, img)
    if img.numel():
        lo, hi = float(img.detach().min()), float(img.detach().max())
        if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"{name} must have values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _param(name: str, value: float | Tensor, img: Tensor, *, low: float, high: float = math.inf,
           low_open: bool = False, expected: str = "a number or a tensor broadcastable to (B, 3, H, W)") -> Tensor:
    """``value`` as a tensor of ``img``'s dtype/device that broadcasts against ``img``, range-checked.

    Tensors keep their autograd graph (they are only cast), so parameters can be differentiated.
    """
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if value.ndim not in (0, 4):
            raise ValueError(f"{name} must be {expected}, got shape {tuple(value.shape)}")
        try:
            shape = torch.broadcast_shapes(value.shape, img.shape)
        except RuntimeError:
            shape = None
        if shape != img.shape:
            raise ValueError(f"{name} must be {expected}; shape {tuple(value.shape)} does not broadcast "
                             f"to the image's {tuple(img.shape)}")
        require_finite(name, value)
        tensor = value.to(dtype=img.dtype, device=img.device)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        require_finite_number(name, value)
        tensor = torch.tensor(float(value), dtype=img.dtype, device=img.device)
    else:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    if tensor.numel():
        lo, hi = float(tensor.detach().min()), float(tensor.detach().max())
        too_low = lo <= low if low_open else lo < low
        if too_low or hi > high:
            bracket = "(" if low_open else "["
            raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}], got range [{lo:.4g}, {hi:.4g}]")
    return tensor


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_number(name: str, value: float, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    require_finite_number(name, value)
    value = float(value)
    if (value <= low if low_open else value < low) or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value}")
    return value


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal numbers drawn on the generator's device, returned in ``like``'s dtype/device."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(like)


def _rand(shape: tuple[int, ...], generator: torch.Generator, like: Tensor | None = None) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device (float64 unless ``like`` is given)."""
    dtype = torch.float64 if like is None or like.dtype not in (torch.float32, torch.float64) else like.dtype
    values = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
    return values if like is None else values.to(like)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(_rand((1,), generator)[0])


# ----------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------


def gaussian_noise(img: Tensor, sigma: float | Tensor, generator: torch.Generator) -> Tensor:
    """Additive white Gaussian noise, ``clip(x + sigma / 255 * n, 0, 1)`` with ``n ~ N(0, 1)``.

    ``sigma`` is on the 0-255 scale of the denoising benchmarks (15, 25, 50 for BSD68 / Urban100).
    The clamp makes the effective noise slightly weaker near black and white.

    Args:
        img: ``(B, 3, H, W)`` in [0, 1].
        sigma: noise standard deviation on the 0-255 scale, >= 0; a number or a tensor that
            broadcasts to ``(B, 3, H, W)`` (e.g. ``(B, 1, 1, 1)`` for one sigma per image).
        generator: the source of the noise.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> gaussian_noise(torch.full((1, 3, 8, 8), 0.5), 15.0, g).shape
        torch.Size([1, 3, 8, 8])
    """
    _check_image(img)
    _check_generator(generator)
    sigma_t = _param("sigma", sigma, img, low=0.0)
    return (img + sigma_t / 255.0 * _randn(tuple(img.shape), generator, img)).clamp(0.0, 1.0)


def signal_dependent_noise(img: Tensor, shot: float | Tensor, read: float | Tensor,
                           generator: torch.Generator) -> Tensor:
    """Heteroscedastic Gaussian noise: ``clip(x + sqrt(shot * x + read**2) * n, 0, 1)``.

    The Gaussian approximation of Poisson-Gaussian sensor noise (shot noise grows with the signal,
    read noise does not), with both terms in units of the normalised signal ``x``.

    Args:
        img: ``(B, 3, H, W)`` in [0, 1] (the signal the sensor records).
        shot: variance per unit of signal, >= 0; a number or a tensor broadcastable to
            ``(B, 3, H, W)`` (e.g. ``(1, 3, 1, 1)`` for per-channel terms).
        read: standard deviation of the signal-independent part, >= 0; same shapes as ``shot``.
        generator: the source of the noise.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> signal_dependent_noise(torch.full((1, 3, 8, 8), 0.2), 0.002, 0.004, g).shape
        torch.Size([1, 3, 8, 8])
    """
    _check_image(img)
    _check_generator(generator)
    shot_t = _param("shot", shot, img, low=0.0)
    read_t = _param("read", read, img, low=0.0)
    std = (shot_t * img.clamp_min(0.0) + read_t * read_t).sqrt()
    return (img + std * _randn(tuple(img.shape), generator, img)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# rain
# ----------------------------------------------------------------------------------------------


def _splat(points: Tensor, weights: Tensor, size: int) -> Tensor:
    """Bilinearly splat ``(N, 2)`` (x, y) points with ``(N,)`` weights onto a ``(size, size)`` grid."""
    points = points.clamp(0.0, size - 1.0)
    base = points.floor()
    frac = points - base
    base = base.long()
    # one spare row and column take the far corners of points on the last pixel (weight 0 there)
    canvas = torch.zeros((size + 1) * (size + 1), dtype=weights.dtype, device=weights.device)
    for dx in (0, 1):
        for dy in (0, 1):
            wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            index = (base[:, 1] + dy) * (size + 1) + base[:, 0] + dx
            canvas.index_add_(0, index, weights * wx * wy)
    return canvas.view(size + 1, size + 1)[:size, :size]


def _streak_kernel(length: float, angle_deg: float) -> Tensor:
    """A one-pixel-wide anti-aliased line of ``length`` px at ``angle_deg`` from vertical, ``(k, k)`` float64.

    Pixels on the line get about 1 (the splat weight is the sampling step), so a seed of strength
    ``s`` draws a streak of brightness about ``s``; the ends fade to 60 % (rain streaks taper).
    """
    size = 2 * math.ceil(length / 2.0) + 1
    n = max(2, math.ceil(2.0 * length) + 1)
    s = torch.linspace(-length / 2.0, length / 2.0, n, dtype=torch.float64)
    theta = math.radians(angle_deg)
    centre = (size - 1) / 2.0
    points = torch.stack([centre + s * math.sin(theta), centre + s * math.cos(theta)], dim=1)
    taper = 0.6 + 0.4 * torch.cos(math.pi * s / max(length, 1e-6))
    return _splat(points, taper * (length / (n - 1)), size)


def rain_streaks(img: Tensor, generator: torch.Generator, *, density: float = 0.004, length: float = 12.0,
                 angle_deg: float = 0.0, intensity: float = 0.7, angle_jitter_deg: float = 4.0) -> Tensor:
    """Synthetic rain: sparse seeds smeared into parallel streaks, screen-blended over the image.

    Each pixel of a canvas ``length`` px larger than the image seeds a streak with probability
    ``density`` (strength ``U(0.5, 1)``); the seeds are convolved with a line kernel of ``length``
    px at ``angle_deg + U(-angle_jitter_deg, angle_jitter_deg)`` from vertical (one angle per image:
    the streaks of one image are parallel), and the rain layer ``r = intensity * clip(streaks, 0, 1)``
    is blended like light: ``out = 1 - (1 - x)(1 - r)``. The canvas margin lets streaks enter from
    outside the frame. Denser rain: higher ``density``, longer ``length``, higher ``intensity``.

    Args:
        img: ``(B, 3, H, W)`` in [0, 1].
        generator: the source of the seeds and the angle jitter.
        density: fraction of pixels that seed a streak, in (0, 1].
        length: streak length in pixels, >= 1.
        angle_deg: streak direction from vertical in degrees (positive: leaning right as it falls).
        intensity: brightness of a full-strength streak, in [0, 1].
        angle_jitter_deg: half-width of the per-image angle jitter in degrees, >= 0.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> rainy = rain_streaks(torch.rand(2, 3, 32, 32), g, density=0.01, length=15.0, angle_deg=10.0)
        >>> rainy.shape
        torch.Size([2, 3, 32, 32])
    """
    _check_image(img)
    _check_generator(generator)
    density = _check_number("density", density, low=0.0, high=1.0, low_open=True)
    length = _check_number("length", length, low=1.0)
    angle_deg = _check_number("angle_deg", angle_deg, low=-math.inf)
    intensity = _check_number("intensity", intensity, low=0.0, high=1.0)
    angle_jitter_deg = _check_number("angle_jitter_deg", angle_jitter_deg, low=0.0)
    b, _, h, w = img.shape
    angles = [angle_deg + _uniform(generator, -angle_jitter_deg, angle_jitter_deg) for _ in range(b)]
    kernels = torch.stack([_streak_kernel(length, a) for a in angles])  # (B, k, k)
    k = kernels.shape[-1]
    seeds = _rand((b, 1, h + k - 1, w + k - 1), generator, img) < density
    strength = 0.5 + 0.5 * _rand((b, 1, h + k - 1, w + k - 1), generator, img)
    seeds = (seeds * strength).view(1, b, h + k - 1, w + k - 1)
    weight = kernels.flip(-1, -2)[:, None].to(img)  # flipped: a true convolution
    streaks = F.conv2d(seeds, weight, groups=b).view(b, 1, h, w)
    rain = intensity * streaks.clamp(0.0, 1.0)
    # screen blend 1 - (1 - x)(1 - r), written so that r = 0 returns x exactly
    return (img + rain * (1.0 - img)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# haze
# ----------------------------------------------------------------------------------------------


def haze(img: Tensor, transmission: float | Tensor, airlight: float | Tensor) -> Tensor:
    """Atmospheric scattering model (Koschmieder): ``I = J * t + A * (1 - t)``.

    Differentiable in the image, the transmission and the airlight.

    Args:
        img: ``(B, 3, H, W)`` clean scene radiance ``J`` in [0, 1].
        transmission: ``t`` in [0, 1]: ``(B, 1, H, W)`` or anything broadcastable to
            ``(B, 3, H, W)`` (``(1, 1, H, W)``, a number, ...). 1 = no haze, 0 = only airlight.
        airlight: atmospheric light ``A`` in [0, 1]: ``(B, 3, 1, 1)``, ``(B, 1, 1, 1)`` or a number.

    Returns:
        ``(B, 3, H, W)`` hazy image in [0, 1], same dtype and device.

    Example:
        >>> hazy = haze(torch.rand(1, 3, 8, 8), torch.full((1, 1, 8, 8), 0.6), 0.9)
        >>> hazy.shape
        torch.Size([1, 3, 8, 8])
    """
    _check_image(img)
    t = _param("transmission", transmission, img, low=0.0, high=1.0,
               expected="a number in [0, 1] or a tensor broadcastable to (B, 3, H, W), e.g. (B, 1, H, W)")
    a = _param("airlight", airlight, img, low=0.0, high=1.0,
               expected="a number in [0, 1] or a tensor like (B, 3, 1, 1)")
    return img * t + a * (1.0 - t)


def _smooth_noise(height: int, width: int, grid: int, generator: torch.Generator) -> Tensor:
    """Low-frequency noise ``(1, 1, H, W)`` float32: a ``grid x grid`` normal field, bicubic upsampled,
    standardised to zero mean and unit standard deviation."""
    coarse = torch.randn((1, 1, grid, grid), generator=generator, device=generator.device)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (field - field.mean()) / field.std().clamp_min(1e-6)


def depth_like_transmission(height: int, width: int, beta: float, generator: torch.Generator, *,
                            nonuniform: bool = False) -> Tensor:
    """A smooth transmission map ``t = exp(-beta * density * depth)`` from a pseudo-depth, ``(1, 1, H, W)``.

    The pseudo-depth mimics an outdoor scene: far at the top, near at the bottom (a vertical
    gradient from 1 to 0.2 whose horizon is tilted by up to ``+-0.3``), plus low-frequency noise
    (a 4 x 4 field, standard deviation 0.08) for scene structure; clipped to [0.05, 1.2]. The
    density is 1 (homogeneous fog, as in RESIDE), or with ``nonuniform=True`` the patchy field
    ``exp(0.9 * N)`` of a 5 x 5 smooth normal field ``N`` (about 0.4x ... 2.5x: dense banks next
    to clear gaps, the non-homogeneous haze of RRSHID / NH-HAZE).

    Args:
        height: rows, >= 1.
        width: columns, >= 1.
        beta: scattering coefficient per unit depth, >= 0 (about 0.5 light ... 2 thick haze).
        generator: the source of the tilt and the noise fields.
        nonuniform: add the strong patchy density variation.

    Returns:
        ``(1, 1, H, W)`` float32 in (0, 1] on the generator's device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = depth_like_transmission(16, 24, 1.0, g, nonuniform=True)
        >>> t.shape, bool(t.min() > 0), bool(t.max() <= 1)
        (torch.Size([1, 1, 16, 24]), True, True)
    """
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    beta = _check_number("beta", beta, low=0.0)
    _check_generator(generator)
    device = generator.device
    y = torch.linspace(0.0, 1.0, height, device=device)[:, None]
    x = torch.linspace(-0.5, 0.5, width, device=device)[None, :]
    tilt = _uniform(generator, -0.3, 0.3)
    depth = 0.2 + 0.8 * (1.0 - (y + tilt * x)).clamp(0.0, 1.0)
    depth = (depth[None, None] + 0.08 * _smooth_noise(height, width, 4, generator)).clamp(0.05, 1.2)
    density = torch.exp(0.9 * _smooth_noise(height, width, 5, generator)) if nonuniform else 1.0
    return torch.exp(-beta * density * depth).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# blur
# ----------------------------------------------------------------------------------------------


def _shake_kernel(size: int, generator: torch.Generator) -> Tensor:
    """Camera shake: a smooth random walk (random accelerations, integrated twice) rasterised."""
    steps = 4 * size
    direction = _uniform(generator, 0.0, 2.0 * math.pi)
    velocity = torch.tensor([math.cos(direction), math.sin(direction)], dtype=torch.float64)
    # inertia (the shared initial velocity) keeps the path a stroke rather than a blob; the
    # accelerations make it curve and change speed
    acceleration = torch.randn((steps, 2), generator=generator, device=generator.device, dtype=torch.float64).cpu()
    path = torch.cumsum(velocity + 0.25 * torch.cumsum(acceleration, 0), 0)
    path = path - (path.max(0).values + path.min(0).values) / 2.0
    extent = float((path.max(0).values - path.min(0).values).max())
    span = (size - 1) * _uniform(generator, 0.5, 1.0)  # shake length: half to all of the kernel
    path = path * (span / max(extent, 1e-9)) + (size - 1) / 2.0
    kernel = _splat(path, torch.full((steps,), 1.0 / steps, dtype=torch.float64), size)
    return kernel / kernel.sum()


def _pixel_grid(size: int, supersample: int = 1) -> tuple[Tensor, Tensor]:
    """``(x, y)`` offsets from the kernel centre of a (super-sampled) pixel grid, float64."""
    n = size * supersample
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / supersample - size / 2.0
    return coords[None, :].expand(n, n), coords[:, None].expand(n, n)


def _disk_kernel(size: int, generator: torch.Generator) -> Tensor:
    """Defocus: a uniform disk of radius ``U(0.5, 1) * size / 2``, anti-aliased by 8 x 8 supersampling."""
    radius = max(1.0, _uniform(generator, 0.5, 1.0) * size / 2.0)
    supersample = 8
    x, y = _pixel_grid(size, supersample)
    inside = ((x * x + y * y) <= radius * radius).double()
    kernel = inside.view(size, supersample, size, supersample).mean(dim=(1, 3))
    return kernel / kernel.sum()


def _gaussian_kernel(size: int, generator: torch.Generator) -> Tensor:
    """Anisotropic Gaussian: standard deviations ``U(0.06, 0.17) * size`` (so +-3 sigma about fits), random rotation."""
    sigma_u = max(0.5, _uniform(generator, 0.06, 0.17) * size)
    sigma_v = max(0.5, _uniform(generator, 0.06, 0.17) * size)
    theta = _uniform(generator, 0.0, math.pi)
    x, y = _pixel_grid(size)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    kernel = torch.exp(-0.5 * ((u / sigma_u) ** 2 + (v / sigma_v) ** 2))
    return kernel / kernel.sum()


def motion_blur_kernel(size: int, generator: torch.Generator, *, kind: str = "motion") -> Tensor:
    """A random normalised blur kernel ``(size, size)`` (non-negative, sums to 1).

    Kinds (:data:`KERNEL_KINDS`):

    * ``"motion"``: camera shake (GoPro-like). A random walk of ``4 * size`` sub-pixel steps with
      a random initial direction and random accelerations (integrated twice, so the path is smooth),
      scaled to span ``U(0.5, 1)`` of the kernel and rasterised by bilinear splatting.
    * ``"defocus"``: a uniform disk of radius ``U(0.5, 1) * size / 2`` (anti-aliased).
    * ``"gaussian"``: an anisotropic Gaussian, standard deviations ``U(0.06, 0.17) * size``
      (at least 0.5 px), rotated by ``U(0, 180)`` degrees.

    Args:
        size: kernel side in pixels, odd, >= 3.
        generator: the source of the kernel's shape.
        kind: ``"motion"``, ``"defocus"`` or ``"gaussian"``.

    Returns:
        ``(size, size)`` float32 on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> k = motion_blur_kernel(11, g, kind="defocus")
        >>> k.shape, round(float(k.sum()), 4)
        (torch.Size([11, 11]), 1.0)
    """
    size = _check_positive_int("size", size, minimum=3)
    if size % 2 == 0:
        raise ValueError(f"size must be odd (the kernel has a centre pixel), got {size}")
    _check_generator(generator)
    makers = {"motion": _shake_kernel, "defocus": _disk_kernel, "gaussian": _gaussian_kernel}
    if kind not in makers:
        raise ValueError(f"kind must be one of {list(KERNEL_KINDS)}, got {kind!r}")
    return makers[kind](size, generator).float()


def blur(img: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel with a blur kernel (depthwise ``conv2d``), reflect padding.

    A true convolution (the kernel is flipped before ``conv2d``'s cross-correlation), so a kernel
    drawn as a camera path moves content along that path. Differentiable in the image and the kernel.

    Args:
        img: ``(B, 3, H, W)`` in [0, 1], with ``H, W > k // 2`` (reflect padding).
        kernel: ``(k, k)`` shared by the batch, or ``(B, k, k)`` one per image; ``k`` odd,
            non-negative, each kernel summing to 1.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device as ``img``.

    Example:
        >>> delta = torch.zeros(3, 3); delta[1, 1] = 1.0
        >>> x = torch.rand(1, 3, 8, 8)
        >>> torch.equal(blur(x, delta), x)
        True
    """
    _check_image(img)
    if not isinstance(kernel, Tensor):
        raise TypeError(f"kernel must be a torch.Tensor (k, k) or (B, k, k), got {type(kernel).__name__}")
    if not kernel.is_floating_point():
        raise TypeError(f"kernel must be a floating-point tensor, got {kernel.dtype}")
    b, c, h, w = img.shape
    if kernel.ndim not in (2, 3) or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
        raise ValueError(f"kernel must be (k, k) or (B, k, k) with k odd, got {tuple(kernel.shape)}")
    if kernel.ndim == 3 and kernel.shape[0] != b:
        raise ValueError(f"kernel of shape (B, k, k) must have B = {b} (the batch), got {tuple(kernel.shape)}")
    require_finite("kernel", kernel)
    if float(kernel.detach().min()) < 0.0:
        raise ValueError(f"kernel must be non-negative, got minimum {float(kernel.detach().min()):.4g}")
    sums = kernel.detach().sum(dim=(-2, -1)).flatten()
    worst = float((sums - 1.0).abs().max())
    if worst > _KERNEL_SUM_TOLERANCE:
        raise ValueError(f"kernel must sum to 1 (a normalised blur kernel), got sums {sums.tolist()[:4]}")
    k = kernel.shape[-1]
    pad = k // 2
    if pad >= h or pad >= w:
        raise ValueError(f"img of size {h}x{w} is too small for a {k}x{k} kernel with reflect padding "
                         f"(need H and W > {pad})")
    if k == 1:
        return img * kernel.reshape(-1, 1, 1, 1).to(img)
    per_image = kernel.to(img).flip(-1, -2).reshape(-1, 1, k, k).expand(b, 1, k, k)  # (B, 1, k, k)
    weight = per_image.repeat_interleave(c, dim=0)  # (B * 3, 1, k, k): one filter per channel
    padded = F.pad(img.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(padded, weight, groups=b * c).view(b, c, h, w)
    return out.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# low light
# ----------------------------------------------------------------------------------------------


def low_light(img: Tensor, exposure: float | Tensor, gamma: float | Tensor) -> Tensor:
    """Darkening: ``exposure * x ** gamma``.

    ``gamma >= 1`` darkens the mid-tones more than the highlights (a low-light capture loses the
    shadows first); ``exposure`` scales everything (a per-channel ``(B, 3, 1, 1)`` exposure gives
    the colour cast of a coloured light). Differentiable in the image, exposure and gamma.

    Args:
        img: ``(B, 3, H, W)`` in [0, 1].
        exposure: in (0, 1]; a number, ``(B, 1, 1, 1)`` or ``(B, 3, 1, 1)``.
        gamma: >= 1; a number or ``(B, 1, 1, 1)``.

    Returns:
        ``(B, 3, H, W)`` in [0, exposure], same dtype and device.

    Example:
        >>> low_light(torch.full((1, 3, 4, 4), 0.5), 0.2, 2.0)[0, 0, 0, 0].item()  # 0.2 * 0.25
        0.05000000074505806
    """
    _check_image(img)
    exposure_t = _param("exposure", exposure, img, low=0.0, high=1.0, low_open=True,
                        expected="a number in (0, 1] or a tensor like (B, 3, 1, 1)")
    gamma_t = _param("gamma", gamma, img, low=1.0, expected="a number >= 1 or a tensor like (B, 1, 1, 1)")
    # rounding may leave a few values a hair below 0, where a fractional power is NaN
    return exposure_t * img.clamp_min(0.0) ** gamma_t
