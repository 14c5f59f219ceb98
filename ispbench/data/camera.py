"""A simulated raw camera for the embedded (generated) detection dataset.

The camera turns linear scene radiance into a 14-bit RGGB Bayer raw frame, and turns that raw
frame back into the linear-RGB form the real raw loaders produce (subtract black level,
normalise by the white level, bilinear demosaic with :mod:`ispbench.ops.raw`). Every number of the model lives in
:class:`SensorParams` / :class:`ExposureProgram` and is written into the dataset's metadata.

Signal model (per photosite, all quantities per exposure):

1. Expected photo-electrons: ``e = radiance * sensitivity[c] * lux * t * K`` with ``radiance``
   the scene's linear RGB radiance (a reflectance-like value, 1 = white under the light),
   ``sensitivity`` the sensor's per-channel response, ``lux`` the scene illuminance, ``t`` the
   exposure time in seconds and ``K`` (:attr:`SensorParams.electrons_per_lux_second`).
2. Shot noise: ``Poisson(e)``, clipped at the full-well capacity; plus Gaussian read noise
   before the amplifier (``read_noise_e`` electrons).
3. Analog gain: ``ISO / base_iso * (white - black) / full_well`` DN per electron; plus Gaussian
   ADC noise after the amplifier (``adc_noise_dn`` DN); plus the black level.
4. 14-bit quantisation: round, clip to ``[0, white_level]``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> radiance = np.full((3, 8, 8), 0.2, np.float32)
    >>> raw = capture(radiance, lux=500.0, exposure_time=0.01, iso=100, rng=rng)
    >>> raw.dtype, raw.shape
    (dtype('uint16'), (8, 8))
    >>> linear = raw_to_linear(raw)           # (3, 8, 8) float32 in [0, 1]
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ispbench.ops import raw as raw_ops

#: Bayer pattern of the simulated sensor.
PATTERN = "RGGB"


@dataclasses.dataclass(frozen=True)
class SensorParams:
    """The simulated sensor (a generic 14-bit CMOS sensor; numbers in the range of real ones)."""

    bits: int = 14
    black_level: int = 512
    white_level: int = 16383
    full_well_e: float = 20000.0
    base_iso: float = 100.0
    #: Gaussian read noise before the analog gain, electrons (scaled by the gain).
    read_noise_e: float = 2.0
    #: Gaussian noise after the analog gain (ADC / row noise), DN.
    adc_noise_dn: float = 2.0
    #: Photo-electrons per (unit radiance x lux x second) for a channel of sensitivity 1.
    electrons_per_lux_second: float = 4000.0
    #: Per-channel sensor response (R, G, B) to a white scene under a neutral light. The static
    #: ISP's fixed white balance is the inverse of this (a daylight calibration).
    sensitivity: tuple[float, float, float] = (0.60, 1.00, 0.75)
    pattern: str = PATTERN

    @property
    def dn_per_electron_base(self) -> float:
        """Conversion gain at the base ISO, DN per electron."""
        return (self.white_level - self.black_level) / self.full_well_e


@dataclasses.dataclass(frozen=True)
class ExposureProgram:
    """The camera's auto-exposure: a program line over shutter time and ISO, and the metering target.

    The program meters the mean green raw signal and asks for ``target`` of the raw range. Like a
    phone camera's program line it spends exposure in four legs: below ``handheld_time`` it only
    changes the shutter (ISO ``min_iso``); then it raises the ISO to ``handheld_iso`` at
    ``handheld_time``; then it lengthens the shutter to ``max_time``; then it raises the ISO to
    ``max_iso``. When both are at their limits the frame comes out under-exposed (dark *and*
    noisy). ``handheld_time`` / ``handheld_iso`` of ``None`` skip the middle legs (shutter first,
    up to ``max_time``, then ISO).
    """

    target: float = 0.18
    min_time: float = 1.0 / 8000.0
    max_time: float = 1.0 / 60.0
    min_iso: float = 100.0
    max_iso: float = 800.0
    handheld_time: float | None = None
    handheld_iso: float | None = None


#: Default sensor.
SENSOR = SensorParams()
#: The camera's auto-exposure in every light: 1/8000-1/60 s at ISO 100, ISO 100-800 at 1/60 s,
#: 1/60-1/15 s at ISO 800, ISO 800-6400 at 1/15 s; darker scenes come out under-exposed.
AUTO_PROGRAM = ExposureProgram(max_time=1.0 / 15.0, max_iso=6400.0, handheld_time=1.0 / 60.0, handheld_iso=800.0)


def auto_exposure(
    metered: float, lux: float, program: ExposureProgram, sensor: SensorParams = SENSOR
) -> tuple[float, float]:
    """Pick ``(exposure_time_s, iso)`` for a scene.

    Args:
        metered: mean green raw response of the scene per lux (mean of ``radiance * sensitivity``
            over the green channel), > 0.
        lux: scene illuminance, > 0.
        program: limits and target.
        sensor: the sensor.

    Returns:
        ``(t, iso)``; ``iso`` is rounded to a third of a stop as a camera would.
    """
    if metered <= 0 or lux <= 0:
        raise ValueError(f"metered and lux must be > 0, got metered={metered}, lux={lux}")
    # DN above black wanted, per unit of (t * iso / base_iso).
    want_dn = program.target * (sensor.white_level - sensor.black_level)
    per_t = metered * lux * sensor.electrons_per_lux_second * sensor.dn_per_electron_base
    exposure = want_dn / per_t * sensor.base_iso  # t * iso wanted
    t1 = program.handheld_time if program.handheld_time is not None else program.max_time
    iso1 = program.handheld_iso if program.handheld_iso is not None else program.min_iso
    if exposure <= t1 * program.min_iso:  # leg 1: shutter only
        t, iso = max(exposure / program.min_iso, program.min_time), program.min_iso
    elif exposure <= t1 * iso1:  # leg 2: ISO at the handheld shutter
        t, iso = t1, exposure / t1
    elif exposure <= program.max_time * iso1:  # leg 3: longer shutter at the handheld ISO
        t, iso = exposure / iso1, iso1
    else:  # leg 4: ISO at the longest shutter, then under-exposure
        t, iso = program.max_time, min(exposure / program.max_time, program.max_iso)
    iso = min(max(iso, program.min_iso), program.max_iso)
    iso = float(100.0 * 2.0 ** (round(3 * math.log2(iso / 100.0)) / 3.0))  # 1/3-stop steps
    iso = min(max(iso, program.min_iso), program.max_iso)
    return float(t), iso


def mosaic(rgb: torch.Tensor, pattern: str = PATTERN) -> torch.Tensor:
    """Sample ``(B, 3, H, W)`` RGB on the Bayer pattern -> ``(B, 1, H, W)`` (:func:`ispbench.ops.raw.mosaic`)."""
    return raw_ops.mosaic(rgb, pattern)


def demosaic_bilinear(bayer: torch.Tensor, pattern: str = PATTERN) -> torch.Tensor:
    """Bilinear demosaic ``(B, 1, H, W)`` -> ``(B, 3, H, W)`` (:func:`ispbench.ops.raw.demosaic_bilinear`).

    Sampled sites keep their exact values; missing ones are the mean of the nearest same-colour
    neighbours (reflect-101 borders).
    """
    return raw_ops.demosaic_bilinear(bayer, pattern)


def capture(
    radiance: np.ndarray,
    lux: float,
    exposure_time: float,
    iso: float,
    rng: np.random.Generator,
    sensor: SensorParams = SENSOR,
) -> np.ndarray:
    """Expose the sensor to a linear scene and read a noisy 14-bit Bayer frame.

    Args:
        radiance: ``(3, H, W)`` float linear scene radiance, >= 0 (1 = white), even ``H``, ``W``.
        lux: scene illuminance, > 0.
        exposure_time: seconds, > 0.
        iso: sensitivity; analog gain is ``iso / base_iso``.
        rng: NumPy generator (the only source of randomness).
        sensor: the sensor.

    Returns:
        ``(H, W)`` uint16 raw frame (black level included, values in ``[0, white_level]``).
    """
    if radiance.ndim != 3 or radiance.shape[0] != 3 or radiance.shape[1] % 2 or radiance.shape[2] % 2:
        raise ValueError(f"radiance must be (3, H, W) with even H, W; got {radiance.shape}")
    if lux <= 0 or exposure_time <= 0 or iso <= 0:
        raise ValueError(f"lux, exposure_time and iso must be > 0; got {lux}, {exposure_time}, {iso}")
    sens = np.asarray(sensor.sensitivity, np.float64)[:, None, None]
    electrons_rgb = np.clip(radiance, 0, None) * sens * (lux * exposure_time * sensor.electrons_per_lux_second)
    h, w = radiance.shape[1:]
    electrons = np.empty((h, w), np.float64)
    for (dy, dx), ch in _pattern_sites(sensor.pattern).items():
        electrons[dy::2, dx::2] = electrons_rgb[ch, dy::2, dx::2]
    signal = np.minimum(rng.poisson(electrons).astype(np.float64), sensor.full_well_e)
    signal += rng.normal(0.0, sensor.read_noise_e, size=signal.shape)
    gain = sensor.dn_per_electron_base * iso / sensor.base_iso
    dn = signal * gain + rng.normal(0.0, sensor.adc_noise_dn, size=signal.shape) + sensor.black_level
    return np.clip(np.rint(dn), 0, sensor.white_level).astype(np.uint16)


def raw_to_linear(raw: np.ndarray | torch.Tensor, sensor: SensorParams = SENSOR) -> torch.Tensor:
    """Raw frame(s) to the loaders' linear RGB: subtract black, normalise, clip, demosaic.

    Args:
        raw: ``(H, W)`` or ``(B, H, W)`` uint16/int/float raw values with the black level.
        sensor: gives black level, white level and pattern.

    Returns:
        ``(3, H, W)`` or ``(B, 3, H, W)`` float32 linear camera RGB in ``[0, 1]`` (no white
        balance: the sensor's own colour response, like the real raw loaders).
    """
    t = torch.as_tensor(np.asarray(raw, dtype=np.float32) if isinstance(raw, np.ndarray) else raw).float()
    single = t.ndim == 2
    if single:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"raw must be (H, W) or (B, H, W); got {tuple(t.shape)}")
    norm = ((t - sensor.black_level) / (sensor.white_level - sensor.black_level)).clamp_(0.0, 1.0)
    rgb = demosaic_bilinear(norm[:, None], sensor.pattern).clamp_(0.0, 1.0)
    return rgb[0] if single else rgb


def _pattern_sites(pattern: str) -> dict[tuple[int, int], int]:
    pattern = pattern.upper()
    if sorted(pattern) != sorted("RGGB") or len(pattern) != 4:
        raise ValueError(f"pattern must be one of RGGB, BGGR, GRBG, GBRG; got {pattern!r}")
    index = {"R": 0, "G": 1, "B": 2}
    return {(0, 0): index[pattern[0]], (0, 1): index[pattern[1]], (1, 0): index[pattern[2]], (1, 1): index[pattern[3]]}
