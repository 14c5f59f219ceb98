"""Shared pieces of the real-dataset loaders: the prepared on-disk format, boxes, resizing, collation.

The prepared format
-------------------
``ispbench data prepare NAME --root ROOT`` converts a user's download once into
``OUT = ROOT/ispbench-prepared`` (or ``--out``)::

    OUT/manifest.json          dataset name, format version, counts, conversion settings
    OUT/linear/<id>.png        linear RGB, 16-bit PNG, RGB channel order, value = round(x * 65535)
    OUT/labels/<id>.txt        detection: YOLO lines "class cx cy w h" (normalised, COCO-80 ids)
    OUT/goal/<id>.png          finishing: display-referred target, 16-bit PNG, RGB
    OUT/meta/<id>.json         per-image metadata (iso, exposure_time, camera, file, ...)
    OUT/splits/<split>.txt     one <id> per line

Linear values are clipped to [0, 1] before quantisation (the 16-bit step is 1.5e-5, below the
noise of every dataset here). An item counts as finished when all its files exist; every file
is written through :mod:`ispbench.atomic`, so a crash never leaves a half-written one.

Conventions
-----------
* ``image``: ``torch.float32`` ``(3, H, W)`` in [0, 1], linear RGB.
* ``boxes``: ``torch.float32`` ``(N, 4)`` normalised ``cx, cy, w, h`` (YOLO); ``labels``:
  ``torch.int64`` ``(N,)`` indices into :data:`COCO80_NAMES` (the ultralytics / YOLOv3 order the
  authors evaluate with).
* ``size``: ``None`` keeps the prepared resolution; an ``int`` ``S`` with ``resize="letterbox"``
  scales the longer side to ``S`` (keeping the aspect ratio) and pads the shorter side
  symmetrically with 0 (black, as the AdaptiveISP code does for linear images) to ``S x S``;
  ``resize="plain"`` stretches to ``S x S`` (or ``(H, W)`` if a tuple). Boxes follow.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np
from torch.utils.data import Dataset

from ispbench.atomic import atomic_path, write_json, write_text

#: Folder created under ``--root`` when no ``--out`` is given.
PREPARED_DIRNAME = "ispbench-prepared"
#: Bumped whenever the prepared format changes; loaders refuse other versions.
FORMAT_VERSION = 1
#: The on-disk image format of ``linear/`` and ``goal/``.
IMAGE_FORMAT = "png16-rgb"

#: The 80 COCO class names in the ultralytics / YOLOv3 order (index = class id in label files).
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
#: COCO annotation ``category_id`` (1..90 with gaps) of each of the 80 classes, in order.
COCO80_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)
#: COCO ``category_id`` -> index in :data:`COCO80_NAMES`.
COCO91_TO_80: dict[int, int] = {cid: i for i, cid in enumerate(COCO80_CATEGORY_IDS)}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class DatasetMissingError(FileNotFoundError):
    """A dataset (or a prepared file) is not where it should be; the message says what to do."""


class DatasetFormatError(ValueError):
    """A file exists but is not what the dataset's format says; the message names file and field."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction folder (path traversal)."""


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------
def prepared_dir(root: str | os.PathLike, prepared: str | os.PathLike | None = None) -> Path:
    """Folder holding the prepared files: ``prepared`` if given, else ``root/ispbench-prepared``."""
    if prepared is not None:
        return Path(prepared).expanduser()
    return Path(root).expanduser() / PREPARED_DIRNAME


def prepare_command(name: str, root: str | os.PathLike, out: str | os.PathLike | None = None) -> str:
    """The shell command that prepares ``name`` (used in error messages)."""
    command = f"ispbench data prepare {name} --root {root}"
    if out is not None:
        command += f" --out {out}"
    return command


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


def read_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a prepared 16-bit RGB PNG as ``float32 (H, W, 3)`` in [0, 1].

    Raises:
        DatasetMissingError: the file does not exist.
        DatasetFormatError: it is not a decodable 16-bit, 3-channel PNG.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: file not found")
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetFormatError(f"{path}: not a decodable PNG (corrupt or truncated file)")
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        raise DatasetFormatError(
            f"{path}: expected a 16-bit 3-channel PNG, got dtype {img.dtype} with shape {img.shape}"
        )
    return img[:, :, ::-1].astype(np.float32) / 65535.0


def read_display_image(path: str | os.PathLike) -> np.ndarray:
    """Read an 8- or 16-bit RGB image (JPEG, PNG, TIFF) as ``float32 (H, W, 3)`` in [0, 1].

    Values are divided by the dtype's maximum (255 or 65535); no colour-space conversion.
    Greyscale images are replicated to three channels; an alpha channel is dropped.
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
        return np.clip(img.astype(np.float32), 0.0, 1.0)
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


def raw_to_linear(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a camera raw file (DNG, CR2, ...) to linear RGB with ``ispbench.ops.dng.read_raw_linear``.

    Returns ``(float32 (H, W, 3) in [0, 1], metadata)``; ``metadata`` merges the decoder's
    metadata with :func:`read_exif`.

    Raises:
        DatasetFormatError: the file cannot be decoded (corrupt, truncated, not a raw file).
    """
    from ispbench.ops.dng import read_raw_linear

    path = Path(path)
    try:
        rgb, md = read_raw_linear(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise DatasetFormatError(f"{path}: could not decode as a camera raw file ({type(exc).__name__}: {exc})") from exc
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DatasetFormatError(f"{path}: decoder returned shape {rgb.shape}, expected (H, W, 3)")
    meta = {k: v for k, v in read_exif(path).items() if v is not None}
    for k, v in dict(md or {}).items():
        meta.setdefault(k, v)
    return rgb, jsonable(meta)


def rawpy_settings() -> Any:
    """``ispbench.ops.dng.RAWPY_SETTINGS`` as JSON (recorded in each manifest), or ``None``."""
    try:
        from ispbench.ops.dng import RAWPY_SETTINGS
    except ImportError:
        return None
    return jsonable(RAWPY_SETTINGS)


def fit_goal(goal: np.ndarray, shape: tuple[int, int], goal_path: Path, raw_path: Path, tolerance: float = 0.02) -> tuple[np.ndarray, bool]:
    """Bring a target image to the decoded raw image's ``(H, W)``.

    Same size: unchanged. Aspect ratio within ``tolerance``: resized (area interpolation) and
    ``True`` returned, so the caller can record it. Otherwise (e.g. portrait vs landscape, or a
    crop): :class:`DatasetFormatError` naming both files.
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
    """Downscale ``(H, W, C)`` with area interpolation so that ``max(H, W) <= max_side``."""
    import cv2

    if not max_side or max(rgb.shape[:2]) <= max_side:
        return rgb
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, new, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------------
# Boxes and label files
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
    lines = [f"{int(c)} {b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}" for c, b in zip(labels, boxes)]
    return write_text(path, "".join(line + "\n" for line in lines))


def read_labels(path: str | os.PathLike, num_classes: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Read a YOLO label file -> ``(labels int64 (N,), boxes float32 (N, 4))``.

    Raises:
        DatasetMissingError: no such file.
        DatasetFormatError: a line is not ``class cx cy w h`` with an integer class in
            ``[0, num_classes)`` and coordinates in [0, 1] (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: label file not found")
    labels, boxes = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DatasetFormatError(f"{path}:{lineno}: expected 5 fields 'class cx cy w h', got {line!r}")
        try:
            cls = int(parts[0])
            vals = [float(p) for p in parts[1:]]
        except ValueError:
            raise DatasetFormatError(f"{path}:{lineno}: expected an integer class and 4 numbers, got {line!r}") from None
        if not 0 <= cls < num_classes:
            raise DatasetFormatError(f"{path}:{lineno}: class {cls} outside [0, {num_classes})")
        if not all(0.0 <= v <= 1.0 for v in vals):
            raise DatasetFormatError(f"{path}:{lineno}: box {vals} not normalised to [0, 1]")
        labels.append(cls)
        boxes.append(vals)
    return np.asarray(labels, np.int64).reshape(-1), np.asarray(boxes, np.float32).reshape(-1, 4)


# --------------------------------------------------------------------------------------------
# Splits and manifest
# --------------------------------------------------------------------------------------------
def write_split(path: str | os.PathLike, ids: Iterable[str]) -> Path:
    """Write one id per line, atomically."""
    return write_text(path, "".join(f"{i}\n" for i in ids))


def read_split(path: str | os.PathLike) -> list[str]:
    """Ids of a split file (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: split file not found")
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


def split_entry_id(entry: str) -> str:
    """The image id in a split-file line written by someone else: the file name without suffix.

    ``./images/123.png`` -> ``123``; ``a0001-jmac_DSC1459`` -> ``a0001-jmac_DSC1459``.
    """
    name = PurePosixPath(entry.strip().replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name else name


def write_manifest(out: Path, name: str, **fields: Any) -> Path:
    """Write ``out/manifest.json`` describing a prepared dataset."""
    return write_json(out / "manifest.json", {"dataset": name, "format_version": FORMAT_VERSION, "image_format": IMAGE_FORMAT, **fields})


def load_manifest(out: Path, name: str, root: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``out/manifest.json``; a missing one means the dataset was never prepared."""
    path = out / "manifest.json"
    if not path.is_file():
        raise DatasetMissingError(
            f"{name}: no prepared data at {out} ({path.name} missing). Prepare it once with "
            f"`{prepare_command(name, root, None if out == prepared_dir(root) else out)}` "
            f"(see data_cards/{name}.md for what to download and where to put it)."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc}); re-run `{prepare_command(name, root)}`") from exc
    if manifest.get("dataset") != name:
        raise DatasetFormatError(f"{path}: field 'dataset' is {manifest.get('dataset')!r}, expected {name!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path}: field 'format_version' is {manifest.get('format_version')!r}, this ispbench reads "
            f"{FORMAT_VERSION}; re-run `{prepare_command(name, root)}` with --out pointing to a new folder"
        )
    return manifest


# --------------------------------------------------------------------------------------------
# Resizing (image + boxes)
# --------------------------------------------------------------------------------------------
def _resize_chw(image, h: int, w: int):
    import torch.nn.functional as F

    if image.shape[-2:] == (h, w):
        return image
    down = h < image.shape[-2] or w < image.shape[-1]
    return F.interpolate(image[None], size=(h, w), mode="area" if down else "bilinear", align_corners=None if down else False)[0]


def resize_sample(image, boxes=None, size: int | tuple[int, int] | None = None, resize: str = "letterbox", *, extra=()):
    """Resize ``image (3, H, W)`` (and ``extra`` images the same way), adjusting normalised boxes.

    Args:
        image: float tensor ``(3, H, W)``.
        boxes: ``(N, 4)`` normalised ``cx, cy, w, h`` or ``None``.
        size: ``None`` (unchanged), an int ``S`` or ``(H, W)``.
        resize: ``"letterbox"`` (keep aspect ratio, pad with 0 centred; needs an int or square
            size) or ``"plain"`` (stretch).
        extra: more ``(3, H, W)`` tensors (e.g. the goal) transformed identically.

    Returns:
        ``(image, boxes, extra_list, info)``; ``info`` has ``orig_size (H, W)``, ``scale (sy, sx)``
        and ``pad (top, left)`` in output pixels, enough to map boxes back.

    Example:
        A 100x200 (H x W) image letterboxed to 100 -> scale 0.5, 25 px black bars top and bottom;
        a box (0.5, 0.5, 1.0, 1.0) becomes (0.5, 0.5, 1.0, 0.5).
    """
    import torch

    h0, w0 = int(image.shape[-2]), int(image.shape[-1])
    info = {"orig_size": (h0, w0), "scale": (1.0, 1.0), "pad": (0, 0)}
    if size is None:
        return image, boxes, list(extra), info
    if resize not in {"letterbox", "plain"}:
        raise ValueError(f"resize: expected 'letterbox' or 'plain', got {resize!r}")
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if th <= 0 or tw <= 0:
        raise ValueError(f"size: expected positive sizes, got {size!r}")
    if resize == "plain":
        out = _resize_chw(image, th, tw)
        info["scale"] = (th / h0, tw / w0)
        return out, boxes, [_resize_chw(e, th, tw) for e in extra], info
    scale = min(th / h0, tw / w0)
    nh, nw = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    top, left = (th - nh) // 2, (tw - nw) // 2

    def box_pad(img):
        res = _resize_chw(img, nh, nw)
        canvas = torch.zeros((img.shape[0], th, tw), dtype=img.dtype)
        canvas[:, top : top + nh, left : left + nw] = res
        return canvas

    out = box_pad(image)
    if boxes is not None and len(boxes):
        boxes = boxes.clone()
        boxes[:, 0] = (boxes[:, 0] * nw + left) / tw
        boxes[:, 1] = (boxes[:, 1] * nh + top) / th
        boxes[:, 2] = boxes[:, 2] * nw / tw
        boxes[:, 3] = boxes[:, 3] * nh / th
    info["scale"] = (nh / h0, nw / w0)
    info["pad"] = (top, left)
    return out, boxes, [box_pad(e) for e in extra], info


# --------------------------------------------------------------------------------------------
# Datasets over the prepared format
# --------------------------------------------------------------------------------------------
class _PreparedBase(Dataset):
    """A split of a prepared dataset. Subclasses set ``name``."""

    name: str = ""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        *,
        prepared: str | os.PathLike | None = None,
        size: int | tuple[int, int] | None = None,
        resize: str = "letterbox",
        limit: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.prepared = prepared_dir(self.root, prepared)
        self.manifest = load_manifest(self.prepared, self.name, self.root)
        split_path = self.prepared / "splits" / f"{split}.txt"
        if not split_path.is_file():
            available = sorted(p.stem for p in (self.prepared / "splits").glob("*.txt"))
            raise DatasetMissingError(
                f"{self.name}: split file {split_path} not found; available splits: "
                f"{', '.join(available) or 'none'}. Re-run `{prepare_command(self.name, self.root)}` "
                f"to (re)write the split files."
            )
        self.split = split
        self.ids = read_split(split_path)
        if limit is not None:
            self.ids = self.ids[: int(limit)]
        if resize not in {"letterbox", "plain"}:
            raise ValueError(f"resize: expected 'letterbox' or 'plain', got {resize!r}")
        self.size = size
        self.resize = resize

    def __len__(self) -> int:
        return len(self.ids)

    def _image(self, sub: str, item_id: str):
        import torch

        path = self.prepared / sub / f"{item_id}.png"
        if not path.is_file():
            raise DatasetMissingError(
                f"{self.name}: {path} listed in split {self.split!r} is missing; re-run "
                f"`{prepare_command(self.name, self.root)}` (it only redoes missing items)"
            )
        return torch.from_numpy(np.ascontiguousarray(read_png16(path).transpose(2, 0, 1)))

    def _meta(self, item_id: str) -> dict[str, Any]:
        path = self.prepared / "meta" / f"{item_id}.json"
        meta: dict[str, Any] = {"iso": None, "exposure_time": None, "camera": None, "file": None}
        if path.is_file():
            try:
                meta.update(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
        meta["id"] = item_id
        return meta


class PreparedDetectionDataset(_PreparedBase):
    """Detection split: ``{"image", "boxes", "labels", "meta"}`` per item (see module docstring)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        item_id = self.ids[index]
        image = self._image("linear", item_id)
        labels, boxes = read_labels(self.prepared / "labels" / f"{item_id}.txt")
        boxes_t = torch.from_numpy(boxes)
        image, boxes_t, _, info = resize_sample(image, boxes_t, self.size, self.resize)
        meta = self._meta(item_id)
        meta.update(info)
        return {"image": image, "boxes": boxes_t, "labels": torch.from_numpy(labels), "meta": meta}


class PreparedFinishingDataset(_PreparedBase):
    """Finishing split: ``{"image", "goal", "meta"}``; ``goal`` is display-referred RGB in [0, 1]."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        item_id = self.ids[index]
        image = self._image("linear", item_id)
        goal = self._image("goal", item_id)
        if goal.shape != image.shape:
            raise DatasetFormatError(
                f"{self.name}: goal/{item_id}.png has shape {tuple(goal.shape)} but linear/{item_id}.png "
                f"has {tuple(image.shape)}; re-prepare this item"
            )
        image, _, (goal,), info = resize_sample(image, None, self.size, self.resize, extra=(goal,))
        meta = self._meta(item_id)
        meta.update(info)
        return {"image": image, "goal": goal, "meta": meta}


def collate_detection(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack detection samples into the ultralytics-style batch.

    Returns:
        A dict with ``images`` of shape ``(B, 3, H, W)``, ``targets`` of shape ``(N, 6)`` (rows
        ``batch_index, class, cx, cy, w, h``) and ``meta``, a list of B dicts.

    Raises:
        ValueError: images of different sizes (pass ``size=`` to the dataset).
    """
    import torch

    if not samples:
        raise ValueError("samples: expected at least one sample, got none")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples: images have different shapes {sorted(shapes)}; build the dataset with size=... to batch them")
    rows = []
    for i, s in enumerate(samples):
        n = len(s["labels"])
        rows.append(torch.cat([torch.full((n, 1), float(i)), s["labels"].reshape(n, 1).float(), s["boxes"].reshape(n, 4).float()], 1))
    return {"images": torch.stack([s["image"] for s in samples]), "targets": torch.cat(rows, 0), "meta": [s["meta"] for s in samples]}


def collate_finishing(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack finishing samples: ``{"images": (B,3,H,W), "goals": (B,3,H,W), "meta": [...]}``."""
    import torch

    if not samples:
        raise ValueError("samples: expected at least one sample, got none")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples: images have different shapes {sorted(shapes)}; build the dataset with size=... to batch them")
    return {
        "images": torch.stack([s["image"] for s in samples]),
        "goals": torch.stack([s["goal"] for s in samples]),
        "meta": [s["meta"] for s in samples],
    }


# --------------------------------------------------------------------------------------------
# Preparation helpers
# --------------------------------------------------------------------------------------------
def item_done(out: Path, item_id: str, parts: Sequence[str]) -> bool:
    """Whether every output file of ``item_id`` exists (``parts`` like ``("linear/.png", "labels/.txt")``)."""
    return all((out / sub / f"{item_id}{suffix}").is_file() for sub, suffix in (p.split("/") for p in parts))


def process_items(ids: Sequence[str], out: Path, parts: Sequence[str], work, log=print, label: str = "") -> dict[str, int]:
    """Run ``work(item_id)`` for every id whose outputs (``parts``) are not all there yet.

    Returns ``{"done": converted now, "skipped": already finished}``.
    """
    done = skipped = 0
    total = len(ids)
    for k, item_id in enumerate(ids, 1):
        if item_done(out, item_id, parts):
            skipped += 1
            continue
        work(item_id)
        done += 1
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

    Every member is checked before anything is written: absolute paths, ``..`` components,
    members resolving outside ``target``, and (tar) links pointing outside ``target`` or device
    files are refused with :class:`UnsafeArchiveError`.
    """
    archive = Path(archive)
    target = Path(target).resolve()
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
