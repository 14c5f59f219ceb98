"""Embedded restoration data: IRPO's five degradations applied to the embedded photos.

IRPO trains one all-in-one restoration model on five tasks (denoising, deraining, dehazing,
deblurring, low-light enhancement) and tests it in and out of distribution. Its datasets cannot
ship with this project, so the ``embedded`` profile degrades crops of the embedded photos
(:mod:`ispbench.data.photos`, same disjoint ``train`` / ``val`` / ``test`` split by photo) with the
synthetic degradations of :mod:`ispbench.ops.degradations`. Every parameter is drawn per image
from the ranges of :data:`DEGRADATION_RANGES` (``U(a, b)`` uniform, ``logU(a, b)`` log-uniform).

In-domain kinds (:data:`DEGRADATIONS`; the paper's training sets they stand in for):

* ``denoise_15`` / ``denoise_25`` / ``denoise_50`` (BSD400 + WED, tested on BSD68): additive white
  Gaussian noise of sigma 15 / 25 / 50 on the 0-255 scale.
* ``derain`` (Rain100L, light rain): streaks of density ``U(0.002, 0.005)`` seeds per pixel,
  length ``U(8, 16)`` px, angle ``U(-20, 20)`` degrees from vertical (+-4 jitter), brightness
  ``U(0.5, 0.8)``.
* ``dehaze`` (RESIDE-OTS, homogeneous fog): ``I = J t + A (1 - t)`` with a pseudo-depth
  transmission, ``beta ~ U(0.3, 1.1)``, grey airlight ``U(0.75, 0.95)`` +- 0.03 per channel.
* ``deblur`` (GoPro, camera shake): a random camera-shake kernel of odd size 5 ... 11 px (shake
  paths of 2 to 10 px).
* ``lowlight`` (LOL): ``exposure * x ** gamma`` with exposure ``U(0.1, 0.35)``, gamma ``U(1.2, 1.8)``,
  then the sensor noise of :data:`ispbench.data.camera.SENSOR` at ISO ``logU(400, 1600)``.

Out-of-distribution kinds (:data:`OOD_DEGRADATIONS`; the paper's OOD test sets they stand in for):

* ``real_noise`` (SIDD): signal-dependent, per-channel sensor noise at ISO ``logU(3200, 12800)``
  (SIDD's phones go up to ISO 10000), applied in linear light (the photo is linearised with gamma
  2.2, noised, re-encoded): the shadows are noisier than the highlights and red / blue noisier than
  green, unlike the white Gaussian noise of training.
* ``dense_rain`` (GT-Rain): density ``U(0.006, 0.012)``, length ``U(18, 30)`` px, angle
  ``U(-30, 30)``, brightness ``U(0.7, 0.9)``, and the veil heavy rain leaves (a uniform haze of
  transmission ``U(0.85, 0.95)``, airlight ``U(0.8, 0.95)``).
* ``nonuniform_haze`` (RRSHID): patchy haze (``depth_like_transmission(..., nonuniform=True)``),
  ``beta ~ U(0.5, 1.4)``.
* ``other_blur`` (ReLoBlur): defocus disks or anisotropic Gaussians (half each) instead of camera
  shake, odd size 5 ... 11 px.
* ``lowlight_street`` (LoLi-Street): darker (exposure ``U(0.05, 0.2)``, gamma ``U(1.5, 2.2)``)
  with the colour cast of street lights (per-channel exposure factors ``U(0.55, 1) ** 3``, the
  largest scaled to 1) and the sensor noise at ISO ``logU(3200, 6400)``.

Sensor noise (:func:`sensor_noise`): for :data:`~ispbench.data.camera.SENSOR` at ISO ``s`` the
analog gain is ``g = s / base_iso`` and a normalised raw value ``x_raw`` holds
``x_raw * full_well / g`` electrons, so shot noise has variance ``x_raw * g / full_well``; read
noise is ``read_noise_e * g / full_well`` and ADC noise ``adc_noise_dn / (white - black)``. After
white balance (``x = x_raw / sensitivity_c``) channel ``c`` has ``shot_c = g / (full_well *
sensitivity_c)`` and ``read_c = sqrt((read_noise_e g / full_well)^2 + (adc / (white - black))^2) /
sensitivity_c``: at ISO 3200, green ``shot = 0.0016``, ``read = 0.0032`` (std 0.028 at mid-grey),
red and blue 1 / 0.60 and 1 / 0.75 times that. ``real_noise`` applies these in linear light, so the
re-encoded noise is strongest in the shadows; over ISO 3200-12800 its PSNR is about 24-30 dB.

Sizes: each split's photos x kinds x ``crops_per_photo`` square crops of ``size`` px (default
128; the clean crop of one photo and crop index is shared by every kind). ``train`` has 6 photos,
``val`` 2, ``test`` 3; ``RestorationSet("train", crops_per_photo=24)`` holds 1,008 pairs, 378 MiB.

Mean PSNR of degraded vs clean, ``val`` photos, 4 crops per photo, 128 px (dB; the tests assert
ranges around these at 48 px):

===========  =====  ===================  =====
in-domain    dB     out-of-distribution  dB
===========  =====  ===================  =====
denoise_15   25.0   real_noise           26.9
denoise_25   20.7   dense_rain           15.6
denoise_50   15.2   nonuniform_haze      12.8
derain       26.4   other_blur           24.5
dehaze       15.1   lowlight_street       6.9
deblur       24.3
lowlight      8.2
===========  =====  ===================  =====

The low-light kinds sit at or below 8 dB on purpose: LOL's own low / normal-light pairs are about
8 dB apart.

Example:
    >>> ds = RestorationSet("val", crops_per_photo=1, size=32)
    >>> len(ds)                                   # 2 photos x 7 kinds x 1 crop
    14
    >>> degraded, clean, kind_index = ds[0]       # (3, 32, 32), (3, 32, 32), int
    >>> ds.kind[0], ds.task[0]
    ('denoise_15', 'denoise')
    >>> worst = ds.subset([3, 5])                 # same attributes, two samples
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ispbench.data import photos
from ispbench.data.camera import SENSOR, SensorParams
from ispbench.ops import degradations as D
from ispbench.ops.raw import gamma_compression, gamma_expansion

__all__ = [
    "DEGRADATIONS",
    "DEGRADATION_RANGES",
    "OOD_DEGRADATIONS",
    "TASKS",
    "TASK_OF",
    "RestorationSet",
    "degrade",
    "sensor_noise",
]

#: The five restoration tasks.
TASKS: tuple[str, ...] = ("denoise", "derain", "dehaze", "deblur", "lowlight")
#: In-domain degradation kinds (training and in-domain tests).
DEGRADATIONS: tuple[str, ...] = ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze", "deblur", "lowlight")
#: Out-of-distribution kinds, one per task (the OOD tests).
OOD_DEGRADATIONS: tuple[str, ...] = ("real_noise", "dense_rain", "nonuniform_haze", "other_blur", "lowlight_street")
#: kind -> the task that undoes it.
TASK_OF: dict[str, str] = {
    "denoise_15": "denoise", "denoise_25": "denoise", "denoise_50": "denoise", "derain": "derain",
    "dehaze": "dehaze", "deblur": "deblur", "lowlight": "lowlight",
    "real_noise": "denoise", "dense_rain": "derain", "nonuniform_haze": "dehaze", "other_blur": "deblur",
    "lowlight_street": "lowlight",
}
_ALL_KINDS: tuple[str, ...] = DEGRADATIONS + OOD_DEGRADATIONS

#: kind -> parameter -> ``(low, high)`` of its uniform draw (``iso``: log-uniform; ``kernel_size``:
#: odd sizes from low to high, uniformly; denoise sigmas are fixed).
DEGRADATION_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "denoise_15": {"sigma": (15.0, 15.0)},
    "denoise_25": {"sigma": (25.0, 25.0)},
    "denoise_50": {"sigma": (50.0, 50.0)},
    "derain": {"density": (0.002, 0.005), "length": (8.0, 16.0), "angle_deg": (-20.0, 20.0),
               "intensity": (0.5, 0.8)},
    "dehaze": {"beta": (0.3, 1.1), "airlight": (0.75, 0.95), "airlight_tint": (-0.03, 0.03)},
    "deblur": {"kernel_size": (5, 11)},
    "lowlight": {"exposure": (0.1, 0.35), "gamma": (1.2, 1.8), "iso": (400.0, 1600.0)},
    "real_noise": {"iso": (3200.0, 12800.0)},
    "dense_rain": {"density": (0.006, 0.012), "length": (18.0, 30.0), "angle_deg": (-30.0, 30.0),
                   "intensity": (0.7, 0.9), "veil_transmission": (0.85, 0.95), "airlight": (0.8, 0.95)},
    "nonuniform_haze": {"beta": (0.5, 1.4), "airlight": (0.75, 0.95), "airlight_tint": (-0.03, 0.03)},
    "other_blur": {"kernel_size": (5, 11)},
    "lowlight_street": {"exposure": (0.05, 0.2), "gamma": (1.5, 2.2), "cast": (0.55, 1.0),
                        "iso": (3200.0, 6400.0)},
}

# distinguishes the degradation streams from any other use of the same (seed, photo, crop)
_DEGRADATION_STREAM = 0x1A2B0


def sensor_noise(iso: float, sensor: SensorParams = SENSOR) -> tuple[Tensor, Tensor]:
    """Per-channel ``(shot, read)`` of ``sensor`` at ``iso`` for a white-balanced image in [0, 1].

    ``shot_c = g / (full_well * sensitivity_c)`` and ``read_c = sqrt((read_noise_e * g / full_well)^2
    + (adc_noise_dn / (white - black))^2) / sensitivity_c`` with ``g = iso / base_iso`` (derivation
    in the module docstring); the inputs of :func:`ispbench.ops.degradations.signal_dependent_noise`.

    Args:
        iso: sensitivity, > 0.
        sensor: the simulated sensor.

    Returns:
        ``(shot, read)``, each ``(1, 3, 1, 1)`` float64.

    Example:
        >>> shot, read = sensor_noise(3200.0)
        >>> round(float(shot[0, 1]), 5), round(float(read[0, 1]), 5)
        (0.0016, 0.0032)
    """
    if isinstance(iso, bool) or not isinstance(iso, (int, float)) or not math.isfinite(iso) or iso <= 0:
        raise ValueError(f"iso must be a finite number > 0, got {iso!r}")
    gain = float(iso) / sensor.base_iso
    sensitivity = torch.tensor(sensor.sensitivity, dtype=torch.float64).view(1, 3, 1, 1)
    read_raw = math.hypot(sensor.read_noise_e * gain / sensor.full_well_e,
                          sensor.adc_noise_dn / (sensor.white_level - sensor.black_level))
    return gain / (sensor.full_well_e * sensitivity), read_raw / sensitivity


# ----------------------------------------------------------------------------------------------
# one function per kind: (1, 3, H, W) image, generator -> degraded image
# ----------------------------------------------------------------------------------------------


def _uniform(generator: torch.Generator, bounds: tuple[float, float]) -> float:
    u = float(torch.rand((1,), generator=generator, device=generator.device, dtype=torch.float64)[0])
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _log_uniform(generator: torch.Generator, bounds: tuple[float, float]) -> float:
    return math.exp(_uniform(generator, (math.log(bounds[0]), math.log(bounds[1]))))


def _odd_size(generator: torch.Generator, bounds: tuple[float, float]) -> int:
    sizes = list(range(int(bounds[0]), int(bounds[1]) + 1, 2))
    index = int(torch.randint(len(sizes), (1,), generator=generator, device=generator.device)[0])
    return sizes[index]


def _airlight(generator: torch.Generator, ranges: dict[str, tuple[float, float]], like: Tensor) -> Tensor:
    grey = _uniform(generator, ranges["airlight"])
    tint = [_uniform(generator, ranges["airlight_tint"]) for _ in range(3)]
    return torch.tensor([grey + t for t in tint], dtype=like.dtype, device=like.device).clamp(0, 1).view(1, 3, 1, 1)


def _noisy_at_iso(img: Tensor, iso: float, generator: torch.Generator) -> Tensor:
    shot, read = sensor_noise(iso)
    return D.signal_dependent_noise(img, shot.to(img), read.to(img), generator)


def _denoise(sigma: float) -> Callable[[Tensor, torch.Generator], Tensor]:
    def apply(img: Tensor, generator: torch.Generator) -> Tensor:
        return D.gaussian_noise(img, sigma, generator)

    return apply


def _rain(kind: str) -> Callable[[Tensor, torch.Generator], Tensor]:
    ranges = DEGRADATION_RANGES[kind]

    def apply(img: Tensor, generator: torch.Generator) -> Tensor:
        params = {name: _uniform(generator, ranges[name]) for name in ("density", "length", "angle_deg", "intensity")}
        if "veil_transmission" in ranges:  # heavy rain also scatters light into a veil
            t = _uniform(generator, ranges["veil_transmission"])
            img = D.haze(img, t, _uniform(generator, ranges["airlight"]))
        return D.rain_streaks(img, generator, **params)

    return apply


def _haze(kind: str, nonuniform: bool) -> Callable[[Tensor, torch.Generator], Tensor]:
    ranges = DEGRADATION_RANGES[kind]

    def apply(img: Tensor, generator: torch.Generator) -> Tensor:
        beta = _uniform(generator, ranges["beta"])
        airlight = _airlight(generator, ranges, img)
        t = D.depth_like_transmission(img.shape[2], img.shape[3], beta, generator, nonuniform=nonuniform)
        return D.haze(img, t.to(img), airlight)

    return apply


def _blur(kind: str, kernel_kinds: tuple[str, ...]) -> Callable[[Tensor, torch.Generator], Tensor]:
    ranges = DEGRADATION_RANGES[kind]

    def apply(img: Tensor, generator: torch.Generator) -> Tensor:
        size = _odd_size(generator, ranges["kernel_size"])
        # reflect padding needs the image larger than half the kernel
        size = min(size, 2 * ((min(img.shape[2], img.shape[3]) - 1) // 2) - 1)
        choice = int(torch.randint(len(kernel_kinds), (1,), generator=generator, device=generator.device)[0])
        return D.blur(img, D.motion_blur_kernel(max(size, 3), generator, kind=kernel_kinds[choice]).to(img))

    return apply


def _lowlight(img: Tensor, generator: torch.Generator) -> Tensor:
    ranges = DEGRADATION_RANGES["lowlight"]
    exposure = _uniform(generator, ranges["exposure"])
    gamma = _uniform(generator, ranges["gamma"])
    dark = D.low_light(img, exposure, gamma)
    return _noisy_at_iso(dark, _log_uniform(generator, ranges["iso"]), generator)


def _lowlight_street(img: Tensor, generator: torch.Generator) -> Tensor:
    ranges = DEGRADATION_RANGES["lowlight_street"]
    exposure = _uniform(generator, ranges["exposure"])
    cast = torch.tensor([_uniform(generator, ranges["cast"]) ** 3 for _ in range(3)], dtype=img.dtype)
    per_channel = (exposure * cast / cast.max()).to(img.device).view(1, 3, 1, 1)
    dark = D.low_light(img, per_channel, _uniform(generator, ranges["gamma"]))
    return _noisy_at_iso(dark, _log_uniform(generator, ranges["iso"]), generator)


def _real_noise(img: Tensor, generator: torch.Generator) -> Tensor:
    # the sensor's noise is signal-dependent in linear light, not in the photo's sRGB-like encoding
    linear = gamma_expansion(img).clamp(0.0, 1.0)
    noisy = _noisy_at_iso(linear, _log_uniform(generator, DEGRADATION_RANGES["real_noise"]["iso"]), generator)
    return gamma_compression(noisy).clamp(0.0, 1.0)


_APPLY: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "denoise_15": _denoise(15.0),
    "denoise_25": _denoise(25.0),
    "denoise_50": _denoise(50.0),
    "derain": _rain("derain"),
    "dehaze": _haze("dehaze", nonuniform=False),
    "deblur": _blur("deblur", ("motion",)),
    "lowlight": _lowlight,
    "real_noise": _real_noise,
    "dense_rain": _rain("dense_rain"),
    "nonuniform_haze": _haze("nonuniform_haze", nonuniform=True),
    "other_blur": _blur("other_blur", ("defocus", "gaussian")),
    "lowlight_street": _lowlight_street,
}


def _check_kind(kind: str, name: str = "kind") -> None:
    if kind not in _APPLY:
        raise ValueError(f"unknown degradation {name} {kind!r}; valid kinds: in-domain {list(DEGRADATIONS)}, "
                         f"out-of-distribution {list(OOD_DEGRADATIONS)}")


def degrade(clean: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Degrade clean images with one kind of degradation, parameters drawn per image.

    The parameter ranges of each kind are in :data:`DEGRADATION_RANGES` (and the module docstring).
    Images are degraded one after the other from ``generator``, so image ``i`` depends on the
    images before it in the batch; :class:`RestorationSet` gives each sample its own generator.

    Args:
        clean: ``(B, 3, H, W)`` in [0, 1], ``H, W >= 8``.
        kind: one of :data:`DEGRADATIONS` or :data:`OOD_DEGRADATIONS`.
        generator: the source of the parameters and the noise.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device.

    Raises:
        ValueError: for an unknown ``kind`` (the message lists the valid ones) or a bad image.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> degrade(torch.rand(2, 3, 32, 32), "dehaze", g).shape
        torch.Size([2, 3, 32, 32])
    """
    _check_kind(kind)
    if not isinstance(clean, Tensor) or clean.ndim != 4 or clean.shape[1] != 3:
        shape = tuple(clean.shape) if isinstance(clean, Tensor) else type(clean).__name__
        raise ValueError(f"clean must be a tensor of shape (B, 3, H, W), got {shape}")
    if clean.shape[2] < 8 or clean.shape[3] < 8:
        raise ValueError(f"clean must be at least 8 x 8 pixels, got {clean.shape[2]} x {clean.shape[3]}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    apply = _APPLY[kind]
    return torch.cat([apply(clean[i : i + 1], generator) for i in range(clean.shape[0])])


# ----------------------------------------------------------------------------------------------
# the dataset
# ----------------------------------------------------------------------------------------------


def _degradation_seed(seed: int, photo_index: int, kind: str, crop: int) -> int:
    """A 63-bit seed for sample ``(photo, kind, crop)``: independent of which kinds a set holds and in what order."""
    entropy = [seed, photo_index, _ALL_KINDS.index(kind), crop, _DEGRADATION_STREAM]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) & (2**63 - 1)


class RestorationSet(torch.utils.data.Dataset):
    """Precomputed (degraded, clean) pairs: every photo of a split x every kind x ``crops_per_photo`` crops.

    Samples are ordered photo-major, then kind, then crop index. The clean crop of (photo, crop
    index) is a :func:`ispbench.data.photos.random_crop` (side ``U(0.3, 1)`` of the photo's short
    side, resized to ``size``, random horizontal flip) from a NumPy generator seeded with ``(seed,
    photo, crop)``, so every kind degrades the same clean crops. Its degraded version comes from a
    ``torch.Generator`` seeded with ``(seed, photo, kind, crop)``: sample contents do not depend on
    the other samples, the kinds chosen or their order. Photos and kinds are indexed globally
    (in :func:`ispbench.data.photos.photo_names` and ``DEGRADATIONS + OOD_DEGRADATIONS``).

    Attributes:
        clean, degraded: ``(N, 3, size, size)`` float32 in [0, 1].
        photo, kind, task: per-sample names (lists of ``N`` strings).
        crop: ``(N,)`` int64 crop index within its photo.
        kind_index: ``(N,)`` int64 index of the sample's kind in :attr:`kinds`.
        split, kinds, size, seed, crops_per_photo, ood: how the set was built.

    Args:
        split: ``train``, ``val`` or ``test`` (disjoint photos, :data:`ispbench.data.photos.SPLITS`).
        kinds: degradation kinds; default :data:`DEGRADATIONS`, or :data:`OOD_DEGRADATIONS` with ``ood=True``.
        crops_per_photo: crops per photo and kind, >= 1.
        size: side of the square crops in pixels, >= 16.
        seed: base seed, >= 0.
        ood: take :data:`OOD_DEGRADATIONS` when ``kinds`` is not given.

    Example:
        >>> ds = RestorationSet("test", kinds=("derain", "deblur"), crops_per_photo=2, size=32)
        >>> len(ds), ds.clean.shape
        (12, torch.Size([12, 3, 32, 32]))
    """

    def __init__(self, split: str = "train", kinds: Sequence[str] | None = None, crops_per_photo: int = 8,
                 size: int = 128, seed: int = 0, *, ood: bool = False) -> None:
        names = photos.photo_names(split)  # validates split
        kinds = tuple(OOD_DEGRADATIONS if ood else DEGRADATIONS) if kinds is None else kinds
        if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
            raise ValueError(f"kinds must be a non-empty sequence of degradation kinds, got {kinds!r}")
        kinds = tuple(kinds)
        for kind in kinds:
            _check_kind(kind, "in kinds:")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"kinds must not repeat a kind, got {list(kinds)}")
        for name, value, minimum in (("crops_per_photo", crops_per_photo, 1), ("size", size, 16), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        self.split, self.kinds, self.ood = split, kinds, bool(ood)
        self.crops_per_photo, self.size, self.seed = int(crops_per_photo), int(size), int(seed)

        all_photos = photos.photo_names()
        n = len(names) * len(kinds) * self.crops_per_photo
        # filled in place: stacking per-sample lists would hold every image twice at the peak
        self.clean = torch.empty((n, 3, self.size, self.size), dtype=torch.float32)
        self.degraded = torch.empty_like(self.clean)
        self.photo: list[str] = []
        self.kind: list[str] = []
        crop_ids: list[int] = []
        kind_ids: list[int] = []
        row = 0
        with torch.no_grad():
            for name in names:
                photo_index = all_photos.index(name)
                image = photos.load_photo(name)
                crops = []
                for c in range(self.crops_per_photo):
                    rng = np.random.default_rng([self.seed, photo_index, c])
                    crop = photos.random_crop(image, self.size, rng)
                    # the area resize may overshoot [0, 1] by float rounding
                    crops.append(torch.from_numpy(crop.transpose(2, 0, 1).copy()).clamp_(0.0, 1.0))
                for k, kind in enumerate(kinds):
                    for c, crop in enumerate(crops):
                        generator = torch.Generator().manual_seed(_degradation_seed(self.seed, photo_index, kind, c))
                        self.degraded[row] = degrade(crop[None], kind, generator)[0]
                        self.clean[row] = crop
                        self.photo.append(name)
                        self.kind.append(kind)
                        crop_ids.append(c)
                        kind_ids.append(k)
                        row += 1
        self.task: list[str] = [TASK_OF[k] for k in self.kind]
        self.crop = np.asarray(crop_ids, dtype=np.int64)
        self.kind_index = np.asarray(kind_ids, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        """``(degraded (3, size, size), clean (3, size, size), kind_index)`` of sample ``index``."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a RestorationSet of {n} samples")
        return self.degraded[index], self.clean[index], int(self.kind_index[index])

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> RestorationSet:
        """A new set holding only samples ``indices`` (in that order), with the same attributes.

        For worst-sample selection: ``ds.subset(np.argsort(psnr)[:k])``.

        Args:
            indices: integer sample indices in ``[0, len(self))`` (a list, NumPy array or tensor).

        Returns:
            A :class:`RestorationSet` whose tensors and per-sample attributes are those rows.
        """
        idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D sequence of ints, got dtype {idx.dtype} shape {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices must be in [0, {len(self)}), got range [{idx.min()}, {idx.max()}]")
        new = object.__new__(type(self))
        new.split, new.kinds, new.ood = self.split, self.kinds, self.ood
        new.crops_per_photo, new.size, new.seed = self.crops_per_photo, self.size, self.seed
        rows = torch.from_numpy(idx)
        new.clean, new.degraded = self.clean[rows], self.degraded[rows]
        new.photo = [self.photo[i] for i in idx]
        new.kind = [self.kind[i] for i in idx]
        new.task = [self.task[i] for i in idx]
        new.crop, new.kind_index = self.crop[idx], self.kind_index[idx]
        return new

    def __repr__(self) -> str:
        return (f"RestorationSet(split={self.split!r}, kinds={list(self.kinds)}, samples={len(self)}, "
                f"size={self.size}, seed={self.seed})")
