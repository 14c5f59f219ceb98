"""Write Bayer mosaics as DNG files LibRaw reads, and read any raw file as linear RGB with rawpy.

:func:`write_dng` writes a minimal, uncompressed, little-endian DNG 1.4 (one IFD, 16-bit CFA
strips) with tifffile: the tags LibRaw needs to decode it (CFA pattern, black/white levels, a
colour matrix, as-shot neutral) plus ISO / exposure time / camera name, so synthetic raw data
(e.g. from :func:`ispbench.ops.raw.unprocess`) goes through the same reading path as real
camera files.

:func:`read_raw_linear` decodes a raw file (DNG, CR2, NEF, ARW, ...) to linear float RGB with
the fixed rawpy settings in :data:`RAWPY_SETTINGS`, which data cards quote.

Saturation is reported, never silent: counts above the white level warn
(:class:`ispbench.ops.checks.SaturationWarning`, with the count, the fraction and the file) when
written and when read (LibRaw clips them to the white level); counts a 16-bit DNG cannot hold
(e.g. 24-bit counts) or negative counts are refused with a ``ValueError``.

Example:
    >>> import numpy as np, tempfile, os
    >>> bayer = np.full((32, 32), 1000, np.uint16)
    >>> path = os.path.join(tempfile.mkdtemp(), "x.dng")
    >>> write_dng(path, bayer, black_level=64, white_level=4095)       # doctest: +ELLIPSIS
    PosixPath(...)
    >>> rgb, meta = read_raw_linear(path, white_balance="none")
    >>> rgb.shape, meta["white_level"]
    ((32, 32, 3), 4095)
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ispbench.atomic import atomic_path
from ispbench.ops.checks import warn_saturation

__all__ = ["write_dng", "read_raw_linear", "RAWPY_SETTINGS", "XYZ_TO_LINEAR_SRGB"]

#: XYZ (D65) -> linear sRGB. As a DNG ``ColorMatrix1`` it declares "camera RGB = linear sRGB",
#: the default for synthetic mosaics made from sRGB images.
XYZ_TO_LINEAR_SRGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)

#: rawpy ``postprocess`` settings used by :func:`read_raw_linear` (keys are rawpy argument names;
#: values given as names so a data card can print them). ``use_camera_wb`` / ``user_wb``,
#: ``demosaic_algorithm``, ``output_color`` and ``half_size`` are per call.
RAWPY_SETTINGS: dict[str, Any] = {
    "gamma": (1, 1),  # no gamma curve: output is linear in scene light
    "no_auto_bright": True,  # no histogram-based brightening; white level -> 65535
    "bright": 1.0,
    "output_bps": 16,  # 16-bit output, divided by 65535 -> float32 in [0, 1]
    "user_black": None,  # black level as read from the file (per channel)
    "user_sat": None,  # white (saturation) level as read from the file
    "adjust_maximum_thr": 0.0,  # never replace the white level by the data maximum (LibRaw's 0.75 default would)
    "use_auto_wb": False,
    "highlight_mode": "Clip",  # values over white are clipped (no reconstruction)
    "fbdd_noise_reduction": "Off",
    "median_filter_passes": 0,
    "four_color_rgb": False,
    "no_auto_scale": False,  # scale black..white to the 16-bit range (needed for [0, 1] output)
    "demosaic_algorithm": "AHD",  # default; LibRaw's adaptive homogeneity-directed demosaic
    "output_color": "sRGB",  # linear sRGB primaries (gamma (1,1)); "raw" = camera RGB
}

_CFA_CODES = {"R": 0, "G": 1, "B": 2}


def _rational(x: float, signed: bool = False, denominator: int = 10000) -> tuple[int, int]:
    if not math.isfinite(x):
        raise ValueError(f"DNG rational must be finite, got {x}")
    f = Fraction(x).limit_denominator(denominator)
    if not signed and f < 0:
        raise ValueError(f"DNG unsigned rational must be >= 0, got {x}")
    return f.numerator, f.denominator


def write_dng(
    path: str | os.PathLike,
    bayer: np.ndarray,
    *,
    pattern: str = "RGGB",
    black_level: float | Sequence[float] = 0,
    white_level: int = 65535,
    as_shot_neutral: Sequence[float] | None = None,
    color_matrix: Sequence[Sequence[float]] | np.ndarray | None = None,
    iso: int | None = None,
    exposure_time: float | None = None,
    camera: str = "ispbench synthetic",
) -> Path:
    """Write a Bayer mosaic as an uncompressed DNG that LibRaw/rawpy decodes.

    Written atomically (temporary file, then rename) via :func:`ispbench.atomic.atomic_path`.

    Args:
        path: target ``.dng`` file.
        bayer: ``(H, W)`` uint16 mosaic (or another integer dtype with values in [0, 65535]), H and W
            even and >= 22 (LibRaw's minimum); values are sensor counts (``black_level .. white_level``).
            Counts above ``white_level`` are written but warned about (:class:`~ispbench.ops.checks.SaturationWarning`:
            LibRaw clips them on reading); counts above 65535 (more than 16 bits, e.g. 24-bit data)
            or below 0 raise ``ValueError``: rescale them first.
        pattern: CFA layout of the top-left 2x2 block, one of RGGB, BGGR, GRBG, GBRG.
        black_level: one number, or four numbers in the order of the 2x2 CFA block (row by row).
        white_level: saturation count (<= 65535).
        as_shot_neutral: camera-space (R, G, B) response to the scene's white, e.g.
            ``1 / wb_gains``; ``None`` writes (1, 1, 1).
        color_matrix: 3x3 XYZ -> camera matrix (DNG ``ColorMatrix1``, illuminant D65). ``None``
            writes :data:`XYZ_TO_LINEAR_SRGB` (camera RGB = linear sRGB).
        iso: ISO speed (EXIF ISOSpeedRatings, in IFD0), or ``None``.
        exposure_time: seconds (EXIF ExposureTime, in IFD0), or ``None``.
        camera: written as Make, Model and UniqueCameraModel.

    Returns:
        The path written.
    """
    import tifffile

    bayer = np.asarray(bayer)
    if bayer.ndim != 2 or not np.issubdtype(bayer.dtype, np.integer):
        raise ValueError(
            f"bayer must be a (H, W) uint16 array (integer sensor counts), got shape {bayer.shape} dtype {bayer.dtype}"
        )
    if bayer.dtype != np.uint16 and bayer.size:
        lo, hi = int(bayer.min()), int(bayer.max())
        if lo < 0 or hi > 65535:
            bits = max(1, hi.bit_length())
            raise ValueError(
                f"bayer counts of {path} span [{lo}, {hi}] ({bits}-bit data), outside the 16-bit range [0, 65535] "
                f"a DNG of 16-bit CFA strips holds; casting would wrap or clip them: rescale the counts "
                f"(e.g. counts >> {max(0, bits - 16)}) and the black/white levels first"
            )
        bayer = bayer.astype(np.uint16)
    h, w = bayer.shape
    if h % 2 or w % 2 or h < 22 or w < 22:
        raise ValueError(
            f"bayer must have even H and W of at least 22 (LibRaw treats smaller images as not raw), got {bayer.shape}"
        )
    pattern = pattern.upper()
    if sorted(pattern) != ["B", "G", "G", "R"] or pattern not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        raise ValueError(f"pattern must be one of RGGB, BGGR, GRBG, GBRG, got {pattern!r}")
    blacks = [float(black_level)] if np.ndim(black_level) == 0 else [float(b) for b in black_level]
    if len(blacks) not in (1, 4):
        raise ValueError(f"black_level must be one number or 4 (2x2 CFA order), got {black_level!r}")
    if not (0 < int(white_level) <= 65535) or max(blacks) >= white_level:
        raise ValueError(f"white_level must be in (max black level, 65535], got {white_level} (black {blacks})")
    warn_saturation(f"write_dng bayer -> {path}", int(np.count_nonzero(bayer > int(white_level))), bayer.size,
                    int(white_level), "white level",
                    "are written as they are, but LibRaw clips them to it on reading", stacklevel=3)
    cm = np.asarray(XYZ_TO_LINEAR_SRGB if color_matrix is None else color_matrix, dtype=np.float64)
    if cm.shape != (3, 3):
        raise ValueError(f"color_matrix must be 3x3 (XYZ -> camera), got shape {cm.shape}")
    neutral = (1.0, 1.0, 1.0) if as_shot_neutral is None else tuple(float(v) for v in as_shot_neutral)
    if len(neutral) != 3 or min(neutral) <= 0:
        raise ValueError(f"as_shot_neutral must be 3 positive numbers (R, G, B), got {as_shot_neutral!r}")

    def flat(pairs):
        return tuple(v for p in pairs for v in p)

    tags = [
        (50706, 1, 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, 1, 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (271, 2, 0, camera, True),  # Make
        (272, 2, 0, camera, True),  # Model
        (50708, 2, 0, camera, True),  # UniqueCameraModel
        (33421, 3, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, 1, 4, tuple(_CFA_CODES[c] for c in pattern), True),  # CFAPattern
        (50710, 1, 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, 3, 1, (1,), True),  # CFALayout: rectangular
        (50717, 4, 1, (int(white_level),), True),  # WhiteLevel
        (50721, 10, 9, flat(_rational(v, signed=True) for v in cm.ravel()), True),  # ColorMatrix1
        (50778, 3, 1, (21,), True),  # CalibrationIlluminant1: D65
        (50728, 5, 3, flat(_rational(v) for v in neutral), True),  # AsShotNeutral
    ]
    if len(blacks) == 1:
        tags.append((50714, 5, 1, _rational(blacks[0]), True))  # BlackLevel
    else:
        tags.append((50713, 3, 2, (2, 2), True))  # BlackLevelRepeatDim
        tags.append((50714, 5, 4, flat(_rational(b) for b in blacks), True))
    if iso is not None:
        tags.append((34855, 3, 1, (int(iso),), True))  # ISOSpeedRatings
    if exposure_time is not None:
        tags.append((33434, 5, 1, _rational(float(exposure_time), denominator=1_000_000), True))  # ExposureTime

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            bayer,
            byteorder="<",
            bigtiff=False,
            photometric=32803,  # CFA
            planarconfig=1,
            compression=None,
            subfiletype=0,
            metadata=None,
            software=False,
            extratags=tags,
        )
    return Path(path)


def read_raw_linear(
    path: str | os.PathLike,
    *,
    white_balance: str | Sequence[float] = "camera",
    half_size: bool = False,
    demosaic_algorithm: str = "AHD",
    output_color: str = "sRGB",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a raw file to linear RGB in [0, 1] with rawpy (LibRaw) and :data:`RAWPY_SETTINGS`.

    Settings: gamma (1, 1) (linear), ``no_auto_bright=True`` (the file's white level maps to
    1.0; no histogram stretch), ``output_bps=16`` then divided by 65535, black and white levels as
    read from the file (``user_black=None``, ``user_sat=None``, ``adjust_maximum_thr=0``: the white
    level is never replaced by the image's own maximum), highlights clipped, no noise
    reduction or median filtering, demosaic ``demosaic_algorithm`` (``"AHD"`` default; also
    ``"LINEAR"`` bilinear, ``"VNG"``, ``"PPG"``, ``"DCB"``, ``"AAHD"``...), output colour space
    ``output_color``: ``"sRGB"`` (linear sRGB primaries, through the file's colour matrix) or
    ``"raw"`` (camera RGB, no colour matrix).

    Args:
        path: raw file.
        white_balance: ``"camera"`` (as-shot multipliers), ``"none"`` (unit multipliers: camera
            RGB unbalanced), or explicit multipliers ``(r, g, b)`` / ``(r, g, b, g2)``.
        half_size: decode at half resolution (2x2 CFA blocks -> one pixel, no demosaic).
        demosaic_algorithm: rawpy ``DemosaicAlgorithm`` name.
        output_color: ``"sRGB"`` or ``"raw"``.

    Returns:
        ``(rgb, metadata)``: ``(H, W, 3)`` float32 linear RGB in [0, 1]; metadata with ``iso``,
        ``exposure_time``, ``camera``, ``black_level`` (per channel list), ``white_level``,
        ``pattern`` (e.g. ``"RGGB"``, ``None`` if not Bayer), ``camera_whitebalance``,
        ``rawpy_settings``. Unknown values are ``None``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: rawpy/LibRaw cannot decode it (the message names the file).

    Warns:
        SaturationWarning: some raw counts exceed the file's white level (count, fraction, file):
            they are clipped to 1.0.
    """
    import rawpy

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"raw file not found: {path}")
    settings = dict(RAWPY_SETTINGS, demosaic_algorithm=demosaic_algorithm, output_color=output_color)
    try:
        algo = getattr(rawpy.DemosaicAlgorithm, demosaic_algorithm.upper())
    except AttributeError:
        raise ValueError(f"unknown demosaic_algorithm {demosaic_algorithm!r}") from None
    colors = {"srgb": rawpy.ColorSpace.sRGB, "raw": rawpy.ColorSpace.raw}
    if output_color.lower() not in colors:
        raise ValueError(f"output_color must be 'sRGB' or 'raw', got {output_color!r}")
    kwargs: dict[str, Any] = dict(
        gamma=(1, 1), no_auto_bright=True, bright=1.0, output_bps=16, user_black=None, user_sat=None,
        adjust_maximum_thr=0.0,
        use_auto_wb=False, highlight_mode=rawpy.HighlightMode.Clip,
        fbdd_noise_reduction=rawpy.FBDDNoiseReductionMode.Off, median_filter_passes=0,
        four_color_rgb=False, no_auto_scale=False, demosaic_algorithm=algo,
        output_color=colors[output_color.lower()], half_size=half_size,
    )
    if isinstance(white_balance, str):
        if white_balance == "camera":
            kwargs["use_camera_wb"] = True
        elif white_balance == "none":
            kwargs["user_wb"] = [1.0, 1.0, 1.0, 1.0]
        else:
            raise ValueError(f"white_balance must be 'camera', 'none' or multipliers, got {white_balance!r}")
        settings["white_balance"] = white_balance
    else:
        wb = [float(v) for v in white_balance]
        if len(wb) == 3:
            wb = [wb[0], wb[1], wb[2], wb[1]]
        if len(wb) != 4:
            raise ValueError(f"white_balance multipliers must be (r, g, b) or (r, g, b, g2), got {white_balance!r}")
        kwargs["user_wb"] = wb
        settings["white_balance"] = wb
    try:
        with rawpy.imread(str(path)) as raw:
            meta = _metadata(raw, path)  # before postprocess: half_size rewrites the CFA description
            n_over, total = _counts_over_white(raw, meta["white_level"])
            rgb16 = raw.postprocess(**kwargs)
    except (rawpy.LibRawError, OSError) as err:
        raise ValueError(f"rawpy/LibRaw cannot read raw file {path}: {type(err).__name__}: {err}") from err
    # LibRaw clips counts above the white level (highlight_mode Clip): say so
    warn_saturation(f"read_raw_linear {path}", n_over, total, meta["white_level"], "white level",
                    "were clipped to it (1.0) by LibRaw", stacklevel=3)
    settings["half_size"] = half_size
    meta["rawpy_settings"] = settings
    return rgb16.astype(np.float32) / 65535.0, meta


def _counts_over_white(raw, white_level: int) -> tuple[int, int]:
    """``(values above the white level, values)`` of the visible raw data; ``(0, 0)`` where
    LibRaw exposes no raw array (e.g. some non-Bayer formats)."""
    try:
        visible = raw.raw_image_visible
    except Exception:  # noqa: BLE001 - no raw array to inspect: nothing to report
        return 0, 0
    return int(np.count_nonzero(visible > white_level)), int(visible.size)


def _metadata(raw, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "iso": None, "exposure_time": None, "camera": None,
        "black_level": [int(v) for v in raw.black_level_per_channel],
        "white_level": int(raw.white_level),
        "pattern": None,
        "camera_whitebalance": [float(v) for v in raw.camera_whitebalance],
    }
    try:
        pat = np.asarray(raw.raw_pattern)
        desc = raw.color_desc.decode()
        if pat.shape == (2, 2):
            meta["pattern"] = "".join(desc[i] for i in pat.ravel())
    except Exception:  # noqa: BLE001 - non-Bayer sensors (Foveon, linear DNG) have no pattern
        pass
    other = getattr(raw, "other", None)
    if other is not None:
        iso = float(getattr(other, "iso_speed", 0) or 0)
        shutter = float(getattr(other, "shutter_speed", 0) or 0)
        meta["iso"] = iso if iso > 0 else None
        meta["exposure_time"] = shutter if shutter > 0 else None
    tiff = _tiff_metadata(path)
    meta["camera"] = tiff.get("camera")
    for key in ("iso", "exposure_time"):  # LibRaw ignores these tags in DNG IFD0; read them ourselves
        if meta[key] is None:
            meta[key] = tiff.get(key)
    return meta


def _tiff_metadata(path: Path) -> dict[str, Any]:
    """Camera name, ISO and exposure time from the first TIFF IFD and its EXIF IFD.

    DNG, CR2, NEF, ARW ... are TIFF-based; anything tifffile cannot parse gives ``{}``.
    """
    out: dict[str, Any] = {}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            values = {t.code: t.value for t in tags}
            exif = values.get(34665)
            if isinstance(exif, dict):
                for code, name in ((34855, "ISOSpeedRatings"), (33434, "ExposureTime")):
                    if code not in values and name in exif:
                        values[code] = exif[name]
    except Exception:  # noqa: BLE001 - not TIFF-based (e.g. RAF, CRW): leave unknown
        return out
    parts = [str(values[c]).strip() for c in (271, 272) if c in values and str(values[c]).strip()]
    if parts:
        out["camera"] = parts[1] if len(parts) == 2 and parts[1].startswith(parts[0]) else " ".join(parts)
    iso = values.get(34855)
    if isinstance(iso, (tuple, list)):
        iso = iso[0] if iso else None
    if iso:
        out["iso"] = float(iso)
    exposure = values.get(33434)
    if isinstance(exposure, (tuple, list)) and len(exposure) == 2 and exposure[1]:
        out["exposure_time"] = exposure[0] / exposure[1]
    elif isinstance(exposure, (int, float)) and exposure > 0:
        out["exposure_time"] = float(exposure)
    return out
