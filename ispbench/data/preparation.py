"""The one-off preparation kit: converting a user's download into the prepared format.

The dataset loaders' ``prepare()`` functions (``ispbench data prepare NAME --root ROOT``) use
these helpers: archive extraction (refusing path traversal), raw decoding and EXIF, target
fitting, label/split/manifest writers, and :func:`process_items`, the resumable loop over items.
The format itself and its readers are in :mod:`ispbench.data.prepared`.

Validation (every error is a :class:`~ispbench.data.prepared.DatasetFormatError` naming the file
and the field):

* annotation fields: present, of the right type, finite, in range (:func:`annotation_number`,
  :func:`check_box_xyxy`: a box may overshoot the image by at most :data:`BOX_TOLERANCE_PX` +
  :data:`BOX_TOLERANCE_FRACTION` of its side, and must keep a positive size once clipped);
* pixels: non-finite values are refused; values outside [0, 1] (float images) and raw samples
  above the file's white level are counted: up to :data:`OUT_OF_RANGE_MAX_FRACTION` of them are
  clipped with a warning (and the count is stored in the item's ``meta``), more are refused;
* settings: :func:`check_settings` refuses a re-run into a folder prepared with other settings;
* archives: corrupt or truncated zip/tar files are reported with the archive's name.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
import os
import re
import shutil
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ispbench.atomic import atomic_path, write_json, write_text
from ispbench.data.prepared import FORMAT_VERSION, IMAGE_FORMAT, DatasetFormatError, DatasetMissingError
from ispbench.ops.dng import RAWPY_SETTINGS, read_raw_linear

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

#: A box may extend past the image border by this many pixels plus :data:`BOX_TOLERANCE_FRACTION`
#: of the image side (annotation tools round, VOC counts from 1); further out it is refused.
BOX_TOLERANCE_PX = 1.0
#: ... and this fraction of the image side (see :data:`BOX_TOLERANCE_PX`).
BOX_TOLERANCE_FRACTION = 0.01

#: Largest fraction of an image's values that may lie outside [0, 1] (float goals) or above the
#: white level (raw samples) and still be clipped with a warning; above it the file is refused.
OUT_OF_RANGE_MAX_FRACTION = 0.01



class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction folder (path traversal)."""



class SettingsMismatchError(DatasetFormatError):
    """``--out`` holds a dataset prepared with other settings (e.g. another ``--max-side``)."""



# --------------------------------------------------------------------------------------------
# Validation: annotation fields, pixel ranges, sizes, settings of a re-run
# --------------------------------------------------------------------------------------------

def annotation_number(value: Any, path: str | os.PathLike, field: str, *, positive: bool = False, integer: bool = False) -> float:
    """``value`` as a finite float (an ``int`` if ``integer``), else DatasetFormatError naming file and field.

    Strings, booleans, ``None``, NaN and infinities are refused (JSON numbers only; VOC XML text
    is converted by the caller before).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DatasetFormatError(f"{path}: field '{field}' is {value!r}; expected a number")
    if not math.isfinite(float(value)):
        raise DatasetFormatError(f"{path}: field '{field}' is {value!r}; expected a finite number")
    if integer and float(value) != int(value):
        raise DatasetFormatError(f"{path}: field '{field}' is {value!r}; expected an integer")
    if positive and value <= 0:
        raise DatasetFormatError(f"{path}: field '{field}' is {value!r}; expected a positive number")
    return int(value) if integer else float(value)



def check_box_xyxy(
    box: Sequence[float], width: float, height: float, path: str | os.PathLike, field: str
) -> tuple[float, float, float, float]:
    """Check pixel corners ``x1, y1, x2, y2`` against a ``width x height`` image; return them clipped.

    Raises:
        DatasetFormatError: a corner more than :data:`BOX_TOLERANCE_PX` +
            :data:`BOX_TOLERANCE_FRACTION` x side outside the image, or no positive width and
            height once clipped (names file and field).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise DatasetFormatError(f"{path}: field '{field}' is {tuple(box)}; expected finite coordinates")
    tx = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRACTION * width
    ty = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRACTION * height
    if x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty:
        raise DatasetFormatError(
            f"{path}: field '{field}' (x1, y1, x2, y2) = ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the "
            f"{width:g}x{height:g} image (tolerance {tx:.3g} x {ty:.3g} px)"
        )
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 <= cx1 or cy2 <= cy1:
        raise DatasetFormatError(
            f"{path}: field '{field}' (x1, y1, x2, y2) = ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no positive "
            f"width and height inside the {width:g}x{height:g} image"
        )
    return cx1, cy1, cx2, cy2



def check_pixels(
    rgb: np.ndarray,
    path: str | os.PathLike,
    field: str,
    *,
    log: Callable[[str], None] | None = print,
    max_fraction: float = OUT_OF_RANGE_MAX_FRACTION,
) -> tuple[np.ndarray, int]:
    """Refuse non-finite values; clip values outside [0, 1] with a warning, refuse too many.

    Returns ``(rgb clipped to [0, 1] as float32, number of values that were outside)``.

    Raises:
        DatasetFormatError: NaN/inf anywhere, or more than ``max_fraction`` of the values outside
            [0, 1] (e.g. an HDR float TIFF where a display-referred image was expected).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(rgb)))
    if bad:
        raise DatasetFormatError(f"{path}: {field}: {bad} NaN or infinite values of {rgb.size}; expected finite values in [0, 1]")
    outside = int(np.count_nonzero((rgb < 0.0) | (rgb > 1.0)))
    if outside:
        frac = outside / rgb.size
        where = f"{path}: {field}: {outside} of {rgb.size} values ({frac:.1%}) outside [0, 1] (range {float(rgb.min()):.4g} .. {float(rgb.max()):.4g})"
        if frac > max_fraction:
            raise DatasetFormatError(
                f"{where}; more than {max_fraction:.0%} out of range, so it is not a display-referred image in [0, 1] "
                "(an HDR or unnormalised file?); convert it to 8/16-bit or [0, 1] floats first"
            )
        if log is not None:
            log(f"warning: {where}; clipped to [0, 1]")
        rgb = np.clip(rgb, 0.0, 1.0)
    return rgb, outside



def check_max_side(max_side: int | None) -> int | None:
    """``None`` (keep the resolution) or a positive int; anything else -> ValueError naming ``max_side``."""
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side <= 0:
        raise ValueError(f"max_side: expected a positive number of pixels (or None to keep the size), got {max_side!r}")
    return int(max_side)



def split_pair(folder: Path, dataset: str, names: Sequence[str] = ("train", "val")) -> dict[str, Path] | None:
    """The split lists ``folder/<name>.txt``: all of them, or ``None`` when none exists.

    Raises:
        DatasetMissingError: some but not all exist (says which exists and which is missing).
    """
    paths = {n: folder / f"{n}.txt" for n in names}
    present = [n for n, p in paths.items() if p.is_file()]
    if not present:
        return None
    if len(present) != len(paths):
        missing = [str(p) for n, p in paths.items() if n not in present]
        raise DatasetMissingError(
            f"{dataset}: found {', '.join(str(paths[n]) for n in present)} but not {', '.join(missing)}; the split "
            f"lists come together: supply {' and '.join(p.name for p in paths.values())}, or remove "
            f"{', '.join(paths[n].name for n in present)} to use the default split"
        )
    return paths



def check_settings(out: Path, name: str, settings: dict[str, Any]) -> Callable[[], None]:
    """Refuse to continue into ``out`` when it was prepared with other ``settings``.

    Compares each setting (``max_side``, decoder settings, conversion) with ``out/manifest.json``
    (written at the end of a run, or as a stub with ``"status": "incomplete"`` once the first
    item is complete). Returns a callable that writes that stub when no manifest exists yet;
    pass it to :func:`process_items` as ``after_first``.

    Raises:
        SettingsMismatchError: a setting differs (names it, both values, and how to redo).
        DatasetFormatError: the manifest is unreadable or belongs to another dataset or version.
    """
    path = out / "manifest.json"
    if not path.is_file():
        def stub() -> None:
            if not path.is_file():
                write_json(path, {"dataset": name, "format_version": FORMAT_VERSION, "image_format": IMAGE_FORMAT,
                                  "status": "incomplete", **jsonable(settings)})
        return stub
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc}); delete {out} and prepare again") from exc
    redo = f"prepare into another --out folder, or delete {out} and run again"
    if not isinstance(manifest, dict) or manifest.get("dataset") != name:
        found = manifest.get("dataset") if isinstance(manifest, dict) else manifest
        raise SettingsMismatchError(f"{path}: field 'dataset' is {found!r}, this run prepares {name!r}; {redo}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SettingsMismatchError(
            f"{path}: field 'format_version' is {manifest.get('format_version')!r}, this ispbench writes {FORMAT_VERSION}; {redo}"
        )
    wanted = jsonable(settings)
    for key, value in wanted.items():
        if key in manifest and manifest[key] != value:
            shown = value if key == "max_side" else "this version's"
            flag = f" (--max-side {value})" if key == "max_side" and value is not None else ""
            raise SettingsMismatchError(
                f"{path}: {out} was prepared with {key}={manifest[key]!r} but this run uses {key}={shown!r}{flag}; "
                "its files would not match the manifest. Re-run with the same setting, or "
                f"{redo}"
            )
    return lambda: None



# --------------------------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------------------------

def write_png16(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write float RGB ``(H, W, 3)`` in [0, 1] as a 16-bit RGB PNG, atomically.

    Values are clipped to [0, 1] and stored as ``round(x * 65535)``.
    """
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected an (H, W, 3) array, got shape {rgb.shape}")
    if not np.all(np.isfinite(rgb)):
        raise ValueError(f"rgb for {path}: contains NaN or inf")
    q = np.round(np.clip(rgb.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(q[:, :, ::-1]))
        if not ok:
            raise OSError(f"could not encode {path} as PNG")
        tmp.write_bytes(buf.tobytes())
    return path



def read_display_image(path: str | os.PathLike, log: Callable[[str], None] | None = print) -> np.ndarray:
    """Read an 8- or 16-bit RGB image (JPEG, PNG, TIFF) as ``float32 (H, W, 3)`` in [0, 1].

    Values are divided by the dtype's maximum (255 or 65535); no colour-space conversion.
    Greyscale images are replicated to three channels; an alpha channel is dropped. Float TIFFs
    go through :func:`check_pixels`: NaN/inf refused, values outside [0, 1] clipped with a
    warning to ``log`` up to :data:`OUT_OF_RANGE_MAX_FRACTION` of them, refused above.

    Raises:
        DatasetMissingError: no such file.
        DatasetFormatError: not decodable, not RGB, an unsupported dtype, or out-of-range floats.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: file not found")
    try:
        if path.suffix.lower() in {".tif", ".tiff"}:
            import tifffile

            img = tifffile.imread(path)
        else:
            import cv2

            raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
            img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
            if img is None:
                raise ValueError("cv2 could not decode it")
            if img.ndim == 3:
                img = img[:, :, 2::-1] if img.shape[2] >= 3 else img
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise DatasetFormatError(f"{path}: not a decodable image ({exc})") from exc
    img = np.asarray(img)
    if img.ndim == 2:  # greyscale (a few COCO images): replicate to RGB
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise DatasetFormatError(f"{path}: expected an RGB image (H, W, 3), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.floating):
        return check_pixels(img, path, "pixel values", log=log)[0]
    raise DatasetFormatError(f"{path}: expected 8- or 16-bit samples, got dtype {img.dtype}")



def read_exif(path: str | os.PathLike) -> dict[str, Any]:
    """Best-effort ISO, exposure time (s) and camera of a TIFF-based raw file (DNG, CR2).

    Returns ``{"iso": int | None, "exposure_time": float | None, "camera": str | None}``; fields
    that cannot be read are ``None`` (metadata is informative, never used for processing).
    """
    out: dict[str, Any] = {"iso": None, "exposure_time": None, "camera": None}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            exif = dict(tags["ExifTag"].value) if "ExifTag" in tags else {}
            make = tags["Make"].value if "Make" in tags else None
            model = tags["Model"].value if "Model" in tags else None
            iso = exif.get("ISOSpeedRatings", tags["ISOSpeedRatings"].value if "ISOSpeedRatings" in tags else None)
            expo = exif.get("ExposureTime", tags["ExposureTime"].value if "ExposureTime" in tags else None)
    except Exception:  # noqa: BLE001 - metadata is optional
        return out
    if isinstance(iso, (tuple, list)):
        iso = iso[0] if iso else None
    if iso is not None:
        out["iso"] = int(iso)
    if isinstance(expo, (tuple, list)) and len(expo) == 2 and expo[1]:
        expo = expo[0] / expo[1]
    if expo is not None:
        out["exposure_time"] = float(expo)
    camera = " ".join(str(x).strip() for x in (make, model) if x)
    if camera:
        out["camera"] = camera
    return out



def demosaic_bilinear(bayer: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Bilinear demosaic of a Bayer mosaic by normalised convolution.

    Args:
        bayer: ``(H, W)`` float array (H, W even).
        pattern: 2x2 colour layout read row by row, one of ``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``.

    Returns:
        ``float32 (H, W, 3)`` RGB; measured samples are kept exactly, the others are the mean of
        the same-colour neighbours in the 3x3 window.
    """
    import cv2

    bayer = np.asarray(bayer, dtype=np.float32)
    if bayer.ndim != 2 or bayer.shape[0] % 2 or bayer.shape[1] % 2:
        raise ValueError(f"bayer: expected an (H, W) array with even H and W, got shape {bayer.shape}")
    pattern = pattern.upper()
    if sorted(pattern) != sorted("RGGB"):
        raise ValueError(f"pattern: expected one of RGGB, BGGR, GRBG, GBRG, got {pattern!r}")
    h, w = bayer.shape
    kernel = np.ones((3, 3), np.float32)
    out = np.empty((h, w, 3), np.float32)
    for c, name in enumerate("RGB"):
        mask = np.zeros((h, w), np.float32)
        for k, letter in enumerate(pattern):
            if letter == name:
                mask[k // 2 :: 2, k % 2 :: 2] = 1.0
        num = cv2.filter2D(bayer * mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        den = cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        out[:, :, c] = np.where(mask > 0, bayer, num / np.maximum(den, 1e-12))
    return out



def raw_samples_above_white(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """``(samples above the white level, all samples, white level)`` of a raw file's mosaic.

    The decoder maps the white level to 1.0 and clips above it, so samples above it (a wrong
    ``WhiteLevel`` tag, or data scaled after the tag was written) become saturated silently.
    ``None`` when the file has no readable mosaic (e.g. a linear DNG).
    """
    try:
        import rawpy

        with rawpy.imread(str(path)) as raw:  # count inside: the mosaic is LibRaw's memory, freed on close
            mosaic = raw.raw_image_visible
            white = int(raw.white_level)
            if mosaic is None or mosaic.ndim != 2 or white <= 0:
                return None
            return int(np.count_nonzero(mosaic > white)), int(mosaic.size), white
    except Exception:  # noqa: BLE001 - optional check; decoding errors are reported by the decoder
        return None



def raw_to_linear(path: str | os.PathLike, log: Callable[[str], None] | None = print) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a camera raw file (DNG, CR2, ...) to linear RGB with ``ispbench.ops.dng.read_raw_linear``.

    Returns ``(float32 (H, W, 3) in [0, 1], metadata)``; ``metadata`` merges the decoder's
    metadata with :func:`read_exif` and records ``raw_above_white``, the number of mosaic samples
    above the file's white level (clipped by the decoder; a warning goes to ``log``).

    Raises:
        DatasetFormatError: the file cannot be decoded (corrupt, truncated, not a raw file), the
            decoded values are not finite, or more than :data:`OUT_OF_RANGE_MAX_FRACTION` of the
            mosaic samples lie above the white level (the output would be mostly saturated).
    """
    path = Path(path)
    above = raw_samples_above_white(path)
    if above is not None and above[0]:
        n, total, white = above
        where = f"{path}: {n} of {total} raw samples ({n / total:.1%}) are above the file's white level {white}"
        if n / total > OUT_OF_RANGE_MAX_FRACTION:
            raise DatasetFormatError(
                f"{where}; more than {OUT_OF_RANGE_MAX_FRACTION:.0%}, so the decoded image would be saturated. The "
                "'WhiteLevel' tag does not match the data: fix the file (or its WhiteLevel tag) and prepare again"
            )
        if log is not None:
            log(f"warning: {where}; the decoder clips them to 1.0")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rgb, md = read_raw_linear(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise DatasetFormatError(f"{path}: could not decode as a camera raw file ({type(exc).__name__}: {exc})") from exc
    for w in caught:  # the decoder's own saturation warning repeats the count reported above
        if log is not None and not (above is not None and w.category.__name__ == "SaturationWarning"):
            log(f"warning: {w.message}")
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DatasetFormatError(f"{path}: decoder returned shape {rgb.shape}, expected (H, W, 3)")
    rgb, _ = check_pixels(rgb, path, "decoded linear RGB", log=log)
    meta = {k: v for k, v in read_exif(path).items() if v is not None}
    for k, v in dict(md or {}).items():
        meta.setdefault(k, v)
    meta["raw_above_white"] = above[0] if above is not None else None
    return rgb, jsonable(meta)



def rawpy_settings() -> Any:
    """``ispbench.ops.dng.RAWPY_SETTINGS`` as JSON (recorded in each manifest)."""
    return jsonable(RAWPY_SETTINGS)



def fit_goal(goal: np.ndarray, shape: tuple[int, int], goal_path: Path, raw_path: Path, tolerance: float = 0.02) -> tuple[np.ndarray, bool]:
    """Bring a target image to the decoded raw image's ``(H, W)``.

    Same size: unchanged. Aspect ratio within ``tolerance``: resized (area interpolation) and
    ``True`` returned, so the caller can record it. Otherwise (e.g. portrait vs landscape, or a
    crop): :class:`~ispbench.data.prepared.DatasetFormatError` naming both files.
    """
    import cv2

    gh, gw = goal.shape[:2]
    h, w = shape
    if (gh, gw) == (h, w):
        return goal, False
    if abs(gw / gh - w / h) > tolerance * (w / h):
        raise DatasetFormatError(
            f"{goal_path}: target is {gw}x{gh} (w x h) but {raw_path} decodes to {w}x{h}; aspect ratios differ "
            "(different orientation or crop), cannot pair them"
        )
    return cv2.resize(goal, (w, h), interpolation=cv2.INTER_AREA), True



def resize_max_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale ``(H, W, C)`` with area interpolation so that ``max(H, W) <= max_side``.

    ``max_side=None`` keeps the size; zero or negative values raise ValueError (:func:`check_max_side`).
    """
    import cv2

    max_side = check_max_side(max_side)
    if max_side is None or max(rgb.shape[:2]) <= max_side:
        return rgb
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, new, interpolation=cv2.INTER_AREA)



# --------------------------------------------------------------------------------------------
# Boxes, label files, splits and manifest
# --------------------------------------------------------------------------------------------

def xyxy_to_cxcywh_norm(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel corners ``(N, 4)`` ``x1, y1, x2, y2`` -> normalised ``cx, cy, w, h``, clipped to the image.

    Example: a box (10, 20, 30, 60) in a 100x200 image -> (0.2, 0.2, 0.2, 0.2).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(b[:, 0], 0, width)
    y1 = np.clip(b[:, 1], 0, height)
    x2 = np.clip(b[:, 2], 0, width)
    y2 = np.clip(b[:, 3], 0, height)
    return np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], 1)



def coco_xywh_to_cxcywh_norm(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """COCO ``x, y, w, h`` (top-left corner, pixels) -> normalised ``cx, cy, w, h``, clipped."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return xyxy_to_cxcywh_norm(np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1), width, height)



def write_labels(path: str | os.PathLike, labels: Sequence[int], boxes: np.ndarray) -> Path:
    """Write a YOLO label file: one ``class cx cy w h`` line per box (6 decimals), atomically."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lines = [f"{int(c)} {b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}" for c, b in zip(labels, boxes, strict=True)]
    return write_text(path, "".join(line + "\n" for line in lines))



def write_split(path: str | os.PathLike, ids: Iterable[str]) -> Path:
    """Write one id per line, atomically."""
    return write_text(path, "".join(f"{i}\n" for i in ids))



def split_entry_id(entry: str) -> str:
    """The image id in a split-file line written by someone else: the file name without suffix.

    ``./images/123.png`` -> ``123``; ``a0001-jmac_DSC1459`` -> ``a0001-jmac_DSC1459``.
    """
    name = PurePosixPath(entry.strip().replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name else name



def write_manifest(out: Path, name: str, **fields: Any) -> Path:
    """Write ``out/manifest.json`` describing a finished prepared dataset (``"status": "complete"``)."""
    return write_json(
        out / "manifest.json",
        {"dataset": name, "format_version": FORMAT_VERSION, "image_format": IMAGE_FORMAT, "status": "complete", **jsonable(fields)},
    )



# --------------------------------------------------------------------------------------------
# Conversion loop and file finding
# --------------------------------------------------------------------------------------------

def item_done(out: Path, item_id: str, parts: Sequence[str]) -> bool:
    """Whether every output file of ``item_id`` exists (``parts`` like ``("linear/.png", "labels/.txt")``)."""
    return all((out / sub / f"{item_id}{suffix}").is_file() for sub, suffix in (p.split("/") for p in parts))



def process_items(
    ids: Sequence[str], out: Path, parts: Sequence[str], work, log=print, label: str = "", after_first=None
) -> dict[str, int]:
    """Run ``work(item_id)`` for every id whose outputs (``parts``) are not all there yet.

    ``after_first()`` (e.g. the settings stub of :func:`check_settings`) runs once the first
    item is complete. Returns ``{"done": converted now, "skipped": already finished}``.
    """
    done = skipped = 0
    total = len(ids)
    for k, item_id in enumerate(ids, 1):
        if item_done(out, item_id, parts):
            skipped += 1
            continue
        work(item_id)
        done += 1
        if done == 1 and after_first is not None:
            after_first()
        if done == 1 or k == total or done % 50 == 0:
            log(f"{label}[{k}/{total}] {item_id}")
    return {"done": done, "skipped": skipped}



def find_dirs(root: Path, wanted: Iterable[str], depth: int = 2, exclude: Path | None = None) -> list[Path]:
    """Folders under ``root`` (down to ``depth`` levels) whose name, lower-cased with ``-``, ``_``
    and spaces removed, is in ``wanted`` (given the same way); shallowest first."""
    wanted = {re.sub(r"[-_ ]", "", w.lower()) for w in wanted}
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                children = sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
            for c in children:
                if exclude is not None and c.resolve() == exclude.resolve():
                    continue
                if re.sub(r"[-_ ]", "", c.name.lower()) in wanted:
                    found.append(c)
                nxt.append(c)
        level = nxt
    return found



def files_with_suffix(folder: Path, suffixes: Iterable[str], recursive: bool = False, exclude: Path | None = None) -> list[Path]:
    """Files in ``folder`` whose suffix (case-insensitive) is in ``suffixes``, sorted."""
    suffixes = {s.lower() for s in suffixes}
    it = folder.rglob("*") if recursive else folder.glob("*")
    ex = exclude.resolve() if exclude is not None else None
    out = []
    for p in it:
        if p.suffix.lower() in suffixes and p.is_file():
            if ex is not None and (p.resolve() == ex or ex in p.resolve().parents):
                continue
            out.append(p)
    return sorted(out)



def numeric_key(item_id: str):
    """Sort key putting ``"2" < "10"`` and non-numeric ids after, alphabetically."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)



def jsonable(value: Any) -> Any:
    """Convert tensors / arrays / numpy scalars (nested in dicts, lists) to JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)



# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")



def is_archive(path: Path) -> bool:
    """Whether ``path`` is a file with a zip/tar suffix."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)



def _check_member(target: Path, name: str, archive: Path) -> Path:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in PurePosixPath(norm).parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would be written outside {target} (absolute path or '..'); "
            "refusing to extract this archive"
        )
    dest = (target / norm).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves to {dest}, outside {target}; refusing to extract")
    return dest



def extract_archive(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into ``target`` after checking every member.

    Members are first extracted into a hidden staging folder in ``target`` and moved into place
    only when the whole archive was read, so a failure leaves nothing half-extracted.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    members resolving outside ``target``, and (tar) links pointing outside ``target`` or device
    files are refused with :class:`UnsafeArchiveError`. A corrupt or truncated archive
    (``zipfile.BadZipFile``, ``tarfile.ReadError``, an early end of file, a bad compressed
    stream) raises :class:`~ispbench.data.prepared.DatasetFormatError` naming the archive.
    """
    archive = Path(archive)
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".extracting-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _extract(archive, staging)
        _merge_into(staging, target)
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{archive}: {exc}; refusing to extract this archive") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DatasetFormatError(
            f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc}); download it again "
            "(compare its size with the source) or extract it yourself"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-extracted stays behind
    return target


def _merge_into(src: Path, dest: Path) -> None:
    """Move the tree ``src`` into ``dest`` (folders merged, files replaced)."""
    for child in sorted(src.iterdir()):
        target = dest / child.name
        if child.is_dir() and not child.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_into(child, target)
        else:
            os.replace(child, target)


def _extract(archive: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(target, info.filename, archive)
            zf.extractall(target)
        return target
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                dest = _check_member(target, m.name, archive)
                if m.issym() or m.islnk():
                    link = m.linkname.replace("\\", "/")
                    base = dest.parent if m.issym() else target
                    resolved = (base / link).resolve() if not link.startswith("/") else Path(link)
                    if resolved != target and target not in resolved.parents:
                        raise UnsafeArchiveError(
                            f"{archive}: link member {m.name!r} points to {m.linkname!r}, outside {target}; refusing to extract"
                        )
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO; refusing to extract")
            tf.extractall(target, members=members, filter="data")
        return target
    raise ValueError(f"archive: expected one of {', '.join(ARCHIVE_SUFFIXES)}, got {archive.name!r}")
