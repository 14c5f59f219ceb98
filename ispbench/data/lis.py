"""LIS (Chen et al., IJCV 2023): low-light instance segmentation, Canon EOS 5D Mark IV raw + COCO JSON.

POS-ISP evaluates instance segmentation on two subsets of LIS: **LIS-Dark** (the low-light raw
images) and **LIS-All** (the low-light and the normal-light raw images together). The release
(<https://github.com/Linwei-Chen/LIS>) holds COCO-format annotation files; the original ``.CR2``
raw files are LOD's (the LIS README points to <https://github.com/ying-fu/LODDataset>). Pairs are
numbered as in LOD: the dark image of a pair is the normal image's number + 1.

``ispbench data prepare lis --root ROOT`` reads

* ``annotations/lis_coco_png_{train,test}+1.json`` (the dark images' labels; ``lis_coco_JPG_*+1.json``
  is accepted too) and, for LIS-All, ``annotations/lis_coco_png_{train,test}.json`` (the
  normal-light images' labels), or the folder given with ``--splits DIR``;
* ``RAW-dark/<n>.CR2`` and, for LIS-All, ``RAW-normal/<n>.CR2`` (``RAW_dark``, ``RAW-dark/JPEGImages``
  and two folder levels below ``ROOT`` are searched; ``.dng`` is accepted),

checks every annotation field, decodes each raw file once to linear RGB
(:func:`ispbench.data.preparation.raw_to_linear`, the LOD decoder settings) and each instance's
polygon or RLE segmentation once to a mask (``pycocotools``), and writes the prepared format of
:mod:`ispbench.data.prepared` plus ``masks/<id>.npz`` (see :func:`write_masks`); :class:`LISDataset`
reads it. Item ids are ``dark_<n>`` and ``normal_<n>``. Split files: ``dark_{train,test,all}`` (LIS-Dark)
and ``all_{train,test,all}`` (LIS-All; written only when the normal-light raw files and labels are
there). See ``data_cards/lis.md``.

Class mapping (category name in the JSON, compared lower-case without spaces, ``_`` and ``-``
-> COCO-80 index, the 80 names POS-ISP's ``lis_raw_*.yaml`` evaluate with):

==============  =====  ===============
LIS (JSON)      id     COCO-80 name
==============  =====  ===============
bicycle         1      bicycle
car             2      car
motorbike       3      motorcycle
bus             5      bus
bottle          39     bottle
chair           56     chair
diningtable     60     dining table
tvmonitor       62     tv
==============  =====  ===============
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ispbench.atomic import atomic_open, write_json
from ispbench.data.preparation import (
    BOX_TOLERANCE_FRACTION,
    BOX_TOLERANCE_PX,
    annotation_number,
    check_box_xyxy,
    check_max_side,
    check_settings,
    coco_xywh_to_cxcywh_norm,
    files_with_suffix,
    find_dirs,
    numeric_key,
    process_items,
    raw_to_linear,
    rawpy_settings,
    resize_max_side,
    write_labels,
    write_manifest,
    write_png16,
    write_split,
)
from ispbench.data.prepared import (
    COCO80_NAMES,
    DatasetFormatError,
    DatasetMissingError,
    PreparedDetectionDataset,
    prepare_command,
    prepared_dir,
    read_labels,
    resize_sample,
)

NAME = "lis"
URL = "https://github.com/Linwei-Chen/LIS"
#: Where LIS's README says the original raw (.CR2) files are.
RAW_URL = "https://github.com/ying-fu/LODDataset"
#: Image pairs in the full release (as reported by the authors).
EXPECTED_PAIRS = 2230
#: Train / test pairs as commonly cited for LIS (not verified against the release here; the
#: counts found are recorded in ``manifest.json``).
REPORTED_SPLIT_SIZES = {"train": 1561, "test": 669}
#: The two lightings: dark (short exposure) and normal (long exposure) raw images.
LIGHTS: tuple[str, ...] = ("dark", "normal")
#: LIS's own splits (``all`` = train + test).
SPLITS: tuple[str, ...] = ("train", "test", "all")
#: POS-ISP's subsets: ``dark`` = LIS-Dark (dark raw only), ``all`` = LIS-All (dark + normal raw).
SUBSETS: tuple[str, ...] = ("dark", "all")
#: Folder names accepted for the raw files (compared lower-case without - _ and spaces).
RAW_DIRS: dict[str, tuple[str, ...]] = {
    "dark": ("RAW-dark", "RAW_dark", "RAWdark", "RAW_Dark"),
    "normal": ("RAW-normal", "RAW_normal", "RAWnormal", "RAW_Normal"),
}
#: Suffixes of camera raw files LibRaw decodes here (compared lower-case).
RAW_SUFFIXES = (".cr2", ".dng")
#: Annotation file names per lighting and split, in order of preference (compared case-insensitively).
ANNOTATION_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "dark": {s: (f"lis_coco_png_{s}+1.json", f"lis_coco_JPG_{s}+1.json") for s in ("train", "test")},
    "normal": {s: (f"lis_coco_png_{s}.json",) for s in ("train", "test")},
}
#: LIS category names (normalised: lower-case, no spaces, ``_`` or ``-``) -> COCO-80 name.
_LIS_NAMES: dict[str, str] = {
    "bicycle": "bicycle",
    "car": "car",
    "motorbike": "motorcycle",
    "motorcycle": "motorcycle",
    "bus": "bus",
    "bottle": "bottle",
    "chair": "chair",
    "diningtable": "dining table",
    "tvmonitor": "tv",
    "tv": "tv",
}
#: LIS category name (normalised, see :func:`category_key`) -> COCO-80 index.
LIS_TO_COCO80: dict[str, int] = {k: COCO80_NAMES.index(v) for k, v in _LIS_NAMES.items()}
#: How ``masks/<id>.npz`` stores an item's instance masks (recorded in the manifest).
MASK_FORMAT = "npz: 'packed' = numpy.packbits of the (N, H*W) bool masks (row-major), 'shape' = (N, H, W)"
#: Aspect-ratio tolerance between an annotation's width/height and the decoded raw image.
ASPECT_TOLERANCE = 0.02

DOWNLOAD_HELP = (
    f"Download the LIS annotations from {URL} (its Baidu / Google Drive links; folder 'annotations' with "
    "lis_coco_png_train+1.json and lis_coco_png_test+1.json for the dark images, lis_coco_png_train.json and "
    "lis_coco_png_test.json for the normal-light ones) and the original raw files, which LIS takes from LOD "
    f"({RAW_URL}: the RAW-dark archive, and RAW-normal for LIS-All). Arrange them so that "
    "<root>/annotations/lis_coco_png_train+1.json, <root>/RAW-dark/<n>.CR2 (and <root>/RAW-normal/<n>.CR2) "
    "exist, or pass the folder holding the JSON files with --splits DIR."
)


def category_key(name: str) -> str:
    """A category name as compared with :data:`LIS_TO_COCO80`: lower-case, no spaces, ``_`` or ``-``."""
    return re.sub(r"[\s_\-]", "", name.strip().lower())


# --------------------------------------------------------------------------------------------
# Segmentations: checking and decoding (COCO polygons, uncompressed and compressed RLE)
# --------------------------------------------------------------------------------------------

def rle_string_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a COCO compressed RLE string (the format of ``pycocotools.mask.encode``).

    Each run length is written in 5-bit groups (least significant first) as the characters
    ``chr(48 + group)``, bit ``0x20`` of a group meaning "more groups follow" and bit ``0x10`` of
    the last group the sign; from the fourth run on, the value stored is the difference to the
    run two places before.

    Raises:
        ValueError: a character outside ``'0'`` .. ``'o'``, a truncated last value, or a negative
            run length (the string is not a valid RLE).

    Example:
        >>> rle_string_counts("1232")   # the 4th run is stored as 4 - 2 (the run two places before)
        [1, 2, 3, 4]
    """
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    p = 0
    while p < len(data):
        value, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("the last run length is truncated (its final character has the continuation bit)")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(data[p])!r} at position {p} is outside '0'..'o'")
            value |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                value |= -1 << (5 * k)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"run {len(runs)} has the negative length {value}")
        runs.append(value)
    return runs


def check_segmentation(seg: Any, height: int, width: int, path: str | os.PathLike, field: str) -> str:
    """Check one COCO ``segmentation`` against its ``height x width`` image; return its kind.

    Accepted: a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` (each at least 3 points, finite,
    inside the image up to :data:`~ispbench.data.preparation.BOX_TOLERANCE_PX` +
    :data:`~ispbench.data.preparation.BOX_TOLERANCE_FRACTION` of the side), or an RLE object
    ``{"size": [height, width], "counts": ...}`` with ``counts`` a list of non-negative run
    lengths (uncompressed) or a compressed string (:func:`rle_string_counts`) that add up to
    ``height * width``.

    Returns:
        ``"polygon"``, ``"rle"`` or ``"rle-compressed"``.

    Raises:
        DatasetFormatError: naming ``path`` and ``field`` (e.g. ``annotations[3].segmentation[0]``).
    """
    if isinstance(seg, list):
        if not seg:
            raise DatasetFormatError(f"{path}: field '{field}' is an empty list; expected polygons [[x1, y1, x2, y2, ...]] or an RLE object")
        tx = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRACTION * width
        ty = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRACTION * height
        for j, poly in enumerate(seg):
            where = f"{field}[{j}]"
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                shown = f"a list of {len(poly)} numbers" if isinstance(poly, list) else repr(poly)[:60]
                raise DatasetFormatError(
                    f"{path}: field '{where}' is {shown}; expected a polygon [x1, y1, x2, y2, ...] with an even "
                    "count of at least 6 numbers (3 points)"
                )
            xy = [annotation_number(v, path, f"{where}[{i}]") for i, v in enumerate(poly)]
            xs, ys = xy[0::2], xy[1::2]
            if min(xs) < -tx or max(xs) > width + tx or min(ys) < -ty or max(ys) > height + ty:
                raise DatasetFormatError(
                    f"{path}: field '{where}' spans x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g}, outside "
                    f"the {width:g}x{height:g} image (tolerance {tx:.3g} x {ty:.3g} px)"
                )
        return "polygon"
    if isinstance(seg, dict):
        if "size" not in seg or "counts" not in seg:
            raise DatasetFormatError(f"{path}: field '{field}' is an object without 'size' and 'counts'; expected an RLE {{'size': [h, w], 'counts': ...}}")
        size = seg["size"]
        if not (isinstance(size, list) and len(size) == 2) or [annotation_number(v, path, f"{field}.size[{i}]", integer=True) for i, v in enumerate(size)] != [height, width]:
            raise DatasetFormatError(f"{path}: field '{field}.size' is {size!r}; expected [height, width] = [{height}, {width}] of its image")
        counts = seg["counts"]
        if isinstance(counts, list):
            runs = [annotation_number(v, path, f"{field}.counts[{i}]", integer=True) for i, v in enumerate(counts)]
            if any(r < 0 for r in runs):
                raise DatasetFormatError(f"{path}: field '{field}.counts' holds a negative run length; expected run lengths >= 0")
            kind = "rle"
        elif isinstance(counts, str):
            try:
                runs = rle_string_counts(counts)
            except ValueError as exc:
                raise DatasetFormatError(f"{path}: field '{field}.counts' is not a compressed COCO RLE string ({exc})") from None
            kind = "rle-compressed"
        else:
            raise DatasetFormatError(f"{path}: field '{field}.counts' is {type(counts).__name__}; expected a list of run lengths or an RLE string")
        if sum(runs) != height * width:
            raise DatasetFormatError(
                f"{path}: field '{field}.counts' covers {sum(runs)} pixels; expected height * width = {height * width}"
            )
        return kind
    raise DatasetFormatError(f"{path}: field '{field}' is {type(seg).__name__}; expected polygons [[x1, y1, ...]] or an RLE object")


def decode_segmentation(seg: Any, height: int, width: int, path: str | os.PathLike = "<segmentation>", field: str = "segmentation") -> np.ndarray:
    """Decode one (checked, see :func:`check_segmentation`) COCO segmentation to a ``(height, width)`` bool mask.

    Polygons are rasterised and merged with ``pycocotools`` (corners at integer coordinates bound
    the pixels: the square ``[2, 3, 10, 3, 10, 8, 2, 8]`` fills rows 3..7, columns 2..9);
    RLE follows COCO's column-major run lengths, starting with a run of zeros.

    Example:
        >>> decode_segmentation({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3).astype(int).tolist()
        [[0, 1, 0], [1, 0, 0]]
    """
    from pycocotools import mask as coco_mask

    check_segmentation(seg, height, width, path, field)
    try:
        if isinstance(seg, list):
            rle = coco_mask.merge(coco_mask.frPyObjects([[float(v) for v in p] for p in seg], height, width))
        elif isinstance(seg["counts"], list):
            rle = coco_mask.frPyObjects({"size": [height, width], "counts": [int(v) for v in seg["counts"]]}, height, width)
        else:
            rle = {"size": [height, width], "counts": seg["counts"].encode("ascii")}
        with warnings.catch_warnings():  # pycocotools' NumPy-2 "copy keyword" deprecation, not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = coco_mask.decode(rle)
    except (ValueError, TypeError) as exc:
        raise DatasetFormatError(f"{path}: field '{field}' could not be decoded by pycocotools ({exc})") from exc
    return np.asarray(mask, dtype=bool).reshape(height, width)


# --------------------------------------------------------------------------------------------
# Annotation files
# --------------------------------------------------------------------------------------------

def load_lis_annotations(path: str | os.PathLike, mapping: Mapping[str, int] = LIS_TO_COCO80) -> dict[str, Any]:
    """Read one LIS COCO-format annotation file, check every field used, and index it by image.

    Returns:
        ``{"images": {stem: record}, "dropped_crowd": int, "dropped_zero_area": int, "categories":
        {category_id: COCO-80 id}}``; ``stem`` is ``file_name`` without folder and suffix (``"2"``),
        each record ``{"image_id", "file_name", "width", "height", "labels" (N,) int64 COCO-80 ids,
        "boxes" (N, 4) float32 normalised cx, cy, w, h, "segmentations" [N COCO segmentations],
        "fields" [N "annotations[k]"]}``. Crowd annotations (``iscrowd`` 1) and zero-area boxes are
        dropped (counted), as in the usual COCO -> YOLO conversion.

    Raises:
        DatasetMissingError: no such file.
        DatasetFormatError: naming the file and field: invalid JSON; missing ``images`` /
            ``annotations`` / ``categories``; a category name not in ``mapping``; an image without an
            integer ``id``, a ``file_name`` or positive integer ``width`` / ``height``, or whose stem
            appears twice; an annotation with an unknown ``image_id`` or ``category_id``, an
            ``iscrowd`` other than 0/1, a ``bbox`` that is not 4 finite numbers inside its image, or a
            missing or malformed ``segmentation`` (:func:`check_segmentation`).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: annotation file not found. {DOWNLOAD_HELP}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object (a COCO instances file), got {type(doc).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DatasetFormatError(f"{path}: missing list field '{key}' (expected a COCO instances file)")

    def record(item: Any, where: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise DatasetFormatError(f"{path}: field '{where}' is {type(item).__name__}; expected an object")
        return item

    def get(item: dict[str, Any], where: str, key: str) -> Any:
        if key not in item:
            raise DatasetFormatError(f"{path}: field '{where}.{key}' is missing")
        return item[key]

    categories: dict[int, int] = {}
    for k, cat in enumerate(doc["categories"]):
        where = f"categories[{k}]"
        cat = record(cat, where)
        cid = annotation_number(get(cat, where, "id"), path, f"{where}.id", integer=True)
        name = get(cat, where, "name")
        if not isinstance(name, str) or category_key(name) not in mapping:
            raise DatasetFormatError(
                f"{path}: field '{where}.name' is {name!r}; expected one of the LIS classes {sorted(set(mapping))} "
                "(compared lower-case without spaces, '_' and '-')"
            )
        if cid in categories:
            raise DatasetFormatError(f"{path}: field '{where}.id' {cid} appears twice in 'categories'")
        categories[cid] = int(mapping[category_key(name)])

    images: dict[int, dict[str, Any]] = {}
    stems: dict[str, int] = {}
    for k, im in enumerate(doc["images"]):
        where = f"images[{k}]"
        im = record(im, where)
        image_id = annotation_number(get(im, where, "id"), path, f"{where}.id", integer=True)
        if image_id in images:
            raise DatasetFormatError(f"{path}: field '{where}.id' {image_id} appears twice in 'images'")
        name = get(im, where, "file_name")
        if not isinstance(name, str) or not name.strip():
            raise DatasetFormatError(f"{path}: field '{where}.file_name' is {name!r}; expected a file name such as '2.png'")
        stem = Path(name.strip().replace("\\", "/")).stem
        if stem in stems:
            raise DatasetFormatError(
                f"{path}: field '{where}.file_name' {name!r} names the same image ({stem!r}) as images[id={stems[stem]}]"
            )
        width = annotation_number(get(im, where, "width"), path, f"{where}.width", positive=True, integer=True)
        height = annotation_number(get(im, where, "height"), path, f"{where}.height", positive=True, integer=True)
        stems[stem] = image_id
        images[image_id] = {"image_id": image_id, "file_name": name, "stem": stem, "width": width, "height": height,
                            "labels": [], "boxes": [], "segmentations": [], "fields": []}

    crowd = zero_area = 0
    for k, ann in enumerate(doc["annotations"]):
        where = f"annotations[{k}]"
        ann = record(ann, where)
        image_id = annotation_number(get(ann, where, "image_id"), path, f"{where}.image_id", integer=True)
        if image_id not in images:
            raise DatasetFormatError(f"{path}: field '{where}.image_id' {image_id} is not in 'images'")
        cid = annotation_number(get(ann, where, "category_id"), path, f"{where}.category_id", integer=True)
        if cid not in categories:
            raise DatasetFormatError(f"{path}: field '{where}.category_id' {cid} is not in 'categories' (ids {sorted(categories)})")
        is_crowd = ann.get("iscrowd", 0)
        if isinstance(is_crowd, bool) or is_crowd not in (0, 1):
            raise DatasetFormatError(f"{path}: field '{where}.iscrowd' is {is_crowd!r}; expected 0 or 1")
        info = images[image_id]
        bbox = get(ann, where, "bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DatasetFormatError(f"{path}: field '{where}.bbox' is {bbox!r}; expected [x, y, w, h]")
        x, y, bw, bh = (annotation_number(v, path, f"{where}.bbox[{i}]") for i, v in enumerate(bbox))
        if bw < 0 or bh < 0:
            raise DatasetFormatError(f"{path}: field '{where}.bbox' is {bbox!r}; width and height must not be negative")
        seg = get(ann, where, "segmentation")
        check_segmentation(seg, info["height"], info["width"], path, f"{where}.segmentation")
        if is_crowd:
            crowd += 1
            continue
        if bw == 0 or bh == 0:
            zero_area += 1
            continue
        check_box_xyxy((x, y, x + bw, y + bh), info["width"], info["height"], path, f"{where}.bbox")
        info["labels"].append(categories[cid])
        info["boxes"].append([x, y, bw, bh])
        info["segmentations"].append(seg)
        info["fields"].append(where)

    by_stem: dict[str, dict[str, Any]] = {}
    for info in images.values():
        w, h = info["width"], info["height"]
        info["labels"] = np.asarray(info["labels"], np.int64).reshape(-1)
        info["boxes"] = coco_xywh_to_cxcywh_norm(np.asarray(info["boxes"], np.float64).reshape(-1, 4), w, h).astype(np.float32)
        by_stem[info.pop("stem")] = info
    return {"path": path, "images": by_stem, "categories": categories, "dropped_crowd": crowd, "dropped_zero_area": zero_area}


def decode_masks(info: Mapping[str, Any], path: str | os.PathLike = "<annotations>") -> np.ndarray:
    """The ``(N, height, width)`` bool masks of one image record of :func:`load_lis_annotations`."""
    h, w = int(info["height"]), int(info["width"])
    masks = [decode_segmentation(seg, h, w, path, f"{field}.segmentation") for seg, field in zip(info["segmentations"], info["fields"], strict=True)]
    return np.stack(masks) if masks else np.zeros((0, h, w), bool)


def resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring ``(N, h, w)`` bool masks to ``shape = (H, W)``: area (shrinking) or bilinear resampling, then >= 0.5."""
    import cv2

    masks = np.asarray(masks, dtype=bool)
    h, w = int(shape[0]), int(shape[1])
    if masks.shape[1:] == (h, w):
        return masks
    shrink = h < masks.shape[1] or w < masks.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = np.zeros((masks.shape[0], h, w), bool)
    for i, m in enumerate(masks):
        out[i] = cv2.resize(m.astype(np.float32), (w, h), interpolation=interp) >= 0.5
    return out


# --------------------------------------------------------------------------------------------
# Mask files of the prepared format
# --------------------------------------------------------------------------------------------

def write_masks(path: str | os.PathLike, masks: np.ndarray) -> Path:
    """Write ``(N, H, W)`` bool instance masks as ``.npz`` (:data:`MASK_FORMAT`), atomically."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks: expected an (N, H, W) array, got shape {masks.shape}")
    n, h, w = masks.shape
    packed = np.packbits(masks.astype(bool).reshape(n, h * w), axis=1)
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, packed=packed, shape=np.asarray([n, h, w], np.int64))
    return path


def read_masks(path: str | os.PathLike) -> np.ndarray:
    """Read ``masks/<id>.npz`` (:func:`write_masks`) as ``(N, H, W)`` bool.

    Raises:
        DatasetMissingError: no such file.
        DatasetFormatError: not a readable ``.npz`` of that layout (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: mask file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            packed, shape = data["packed"], data["shape"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetFormatError(f"{path}: not a readable mask file ({type(exc).__name__}: {exc}); expected {MASK_FORMAT}") from exc
    if shape.shape != (3,) or np.any(shape < 0):
        raise DatasetFormatError(f"{path}: field 'shape' is {shape.tolist()}; expected (N, H, W)")
    n, h, w = (int(v) for v in shape)
    if packed.shape != (n, math.ceil(h * w / 8)):
        raise DatasetFormatError(f"{path}: field 'packed' has shape {packed.shape}; expected {(n, math.ceil(h * w / 8))} for masks {n}x{h}x{w}")
    return np.unpackbits(packed, axis=1, count=h * w).astype(bool).reshape(n, h, w)


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------

class LISDataset(PreparedDetectionDataset):
    """A split of the prepared LIS raw images with instance masks.

    Args:
        root: the folder given to ``ispbench data prepare lis --root``.
        split: ``"train"``, ``"test"`` (LIS's test set, what POS-ISP evaluates) or ``"all"``.
        subset: ``"dark"`` (LIS-Dark: the low-light raw images) or ``"all"`` (LIS-All: low-light and
            normal-light raw images).
        prepared: the ``--out`` folder if not ``root/ispbench-prepared``.
        size: ``None`` or output size (see :func:`ispbench.data.prepared.resize_sample`).
        resize: ``"letterbox"`` (default; black padding) or ``"plain"``.
        limit: keep the first ``limit`` ids of the split.

    Items: ``{"image": (3, H, W) float32 linear camera RGB in [0, 1], "boxes": (N, 4) normalised cx,
    cy, w, h, "labels": (N,) int64 COCO-80 ids, "masks": (N, H, W) bool (resized and padded with the
    image), "meta": {light, iso, exposure_time, camera, file, annotation, pair_id, ...}}``.

    Example:
        >>> ds = LISDataset("~/data/LIS", "test", "dark", size=512)      # doctest: +SKIP
        >>> ds[0]["masks"].shape                                           # doctest: +SKIP
        torch.Size([3, 512, 512])
    """

    name = NAME

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        subset: str = "dark",
        *,
        prepared: str | os.PathLike | None = None,
        size: int | tuple[int, int] | None = None,
        resize: str = "letterbox",
        limit: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if subset not in SUBSETS:
            raise ValueError(f"subset: expected 'dark' (LIS-Dark) or 'all' (LIS-All), got {subset!r}")
        try:
            super().__init__(root, f"{subset}_{split}", prepared=prepared, size=size, resize=resize, limit=limit)
        except DatasetMissingError as exc:
            if subset == "all" and "split file" in str(exc):
                raise DatasetMissingError(
                    f"{exc} LIS-All (subset 'all') needs the normal-light raw files and labels: put RAW-normal/<n>.CR2 "
                    f"(from {RAW_URL}) and annotations/lis_coco_png_{{train,test}}.json under {Path(root).expanduser()} "
                    "and prepare again (done items are skipped)."
                ) from exc
            raise
        self.subset = subset
        self.lis_split = split

    def __getitem__(self, index: int) -> dict[str, Any]:
        item_id = self.ids[index]
        image = self._image("linear", item_id)
        labels, boxes = read_labels(self.prepared / "labels" / f"{item_id}.txt")
        mask_path = self.prepared / "masks" / f"{item_id}.npz"
        if not mask_path.is_file():
            raise DatasetMissingError(
                f"{self.name}: {mask_path} listed in split {self.split!r} is missing; re-run "
                f"`{prepare_command(self.name, self.root)}` (it only redoes missing items)"
            )
        masks = read_masks(mask_path)
        if masks.shape != (len(labels), *image.shape[-2:]):
            raise DatasetFormatError(
                f"{self.name}: {mask_path} holds masks {masks.shape} but labels/{item_id}.txt has {len(labels)} boxes and "
                f"linear/{item_id}.png is {tuple(image.shape[-2:])}; re-prepare this item (delete its files and re-run)"
            )
        masks_t = torch.from_numpy(masks)
        extra = (masks_t.float(),) if len(masks) else ()
        image, boxes_t, resized, info = resize_sample(image, torch.from_numpy(boxes), self.size, self.resize, extra=extra)
        masks_t = resized[0] >= 0.5 if len(masks) else torch.zeros((0, *image.shape[-2:]), dtype=torch.bool)
        meta = self._meta(item_id)
        meta.update(info)
        return {"image": image, "boxes": boxes_t, "labels": torch.from_numpy(labels), "masks": masks_t, "meta": meta}


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------

def _lookup(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` present in ``folder`` (file names compared case-insensitively)."""
    try:
        present = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return None
    for name in names:
        if name.lower() in present:
            return present[name.lower()]
    return None


def _annotation_files(
    root: Path, out: Path, splits_dir: Path | None, given: Mapping[str, str | os.PathLike] | None
) -> tuple[dict[str, dict[str, Path]], str]:
    """``({"dark": {"train", "test"}[, "normal": {...}]}, where)`` of the annotation files to use.

    ``given`` (keys ``dark_train``, ``dark_test``, ``normal_train``, ``normal_test``) wins; else
    the files named in :data:`ANNOTATION_NAMES` in ``splits_dir``, or in the first folder named
    ``annotations`` (two levels below ``root``, or ``root`` itself) that holds any of them.

    Raises:
        DatasetMissingError: no dark train/test pair, or only one file of a pair (names which).
    """
    if given:
        unknown = sorted(set(given) - {f"{light}_{s}" for light in LIGHTS for s in ("train", "test")})
        if unknown:
            raise ValueError(f"annotation_files: unknown keys {unknown}; expected dark_train, dark_test, normal_train, normal_test")
        found: dict[str, dict[str, Path]] = {}
        for light in LIGHTS:
            pair = {s: Path(given[f"{light}_{s}"]).expanduser() for s in ("train", "test") if f"{light}_{s}" in given}
            if pair:
                found[light] = pair
        where = "annotation_files argument"
    else:
        if splits_dir is not None:
            if not splits_dir.is_dir():
                raise DatasetMissingError(f"LIS: --splits {splits_dir} is not a folder; expected the folder holding lis_coco_*.json. {DOWNLOAD_HELP}")
            candidates = [splits_dir]
        else:
            candidates = [*find_dirs(root, ("annotations",), depth=2, exclude=out), root]
        folder = None
        for d in candidates:
            if any(_lookup(d, names) for light in LIGHTS for names in ANNOTATION_NAMES[light].values()):
                folder = d
                break
        if folder is None:
            looked = ", ".join(str(d) for d in candidates)
            raise DatasetMissingError(
                f"LIS: no annotation file found (looked for lis_coco_png_train+1.json, lis_coco_png_test+1.json, ... in {looked}). {DOWNLOAD_HELP}"
            )
        found = {}
        for light in LIGHTS:
            pair = {s: p for s, names in ANNOTATION_NAMES[light].items() if (p := _lookup(folder, names)) is not None}
            if pair:
                found[light] = pair
        where = str(folder)
    for light, pair in found.items():
        if len(pair) != 2:
            have, miss = next(iter(pair)), ({"train", "test"} - set(pair)).pop()
            raise DatasetMissingError(
                f"LIS: found the {light} {have} annotations {pair[have]} but not the {light} {miss} ones "
                f"(expected {' or '.join(ANNOTATION_NAMES[light][miss])} in {pair[have].parent}); the two come together"
            )
    if "dark" not in found:
        raise DatasetMissingError(
            f"LIS: no dark-image annotations in {where} (expected lis_coco_png_train+1.json and lis_coco_png_test+1.json, "
            f"'+1' marking the labels of the dark images). {DOWNLOAD_HELP}"
        )
    return found, where


def _find_raw(root: Path, out: Path, light: str, given: str | os.PathLike | None) -> tuple[Path, dict[str, Path]] | None:
    """``(folder, {stem: raw file})`` of the ``light`` raw files, or ``None`` when there is no such folder.

    Raises:
        DatasetMissingError: the folder exists but holds no .CR2/.dng (names what it holds instead),
            or ``given`` names a folder that does not exist.
        DatasetFormatError: two raw files with the same stem.
    """
    if given is not None:
        dirs = [Path(given).expanduser()]
        if not dirs[0].is_dir():
            raise DatasetMissingError(f"LIS: raw_{light} {dirs[0]} is not a folder; expected the folder of the {light} .CR2 files")
    else:
        dirs = find_dirs(root, RAW_DIRS[light], depth=2, exclude=out)
        if not dirs:
            return None
    other: list[Path] = []
    for d in dirs:
        files = files_with_suffix(d, set(RAW_SUFFIXES), recursive=True, exclude=out)
        if files:
            by_stem: dict[str, Path] = {}
            for f in files:
                if f.stem in by_stem:
                    raise DatasetFormatError(f"LIS: two {light} raw files for image {f.stem!r}: {by_stem[f.stem]} and {f}; keep one")
                by_stem[f.stem] = f
            return d, by_stem
        other += files_with_suffix(d, {".png", ".jpg", ".jpeg"}, recursive=True, exclude=out)[:1]
    hint = ""
    if other:
        hint = (
            f" {other[0].parent} holds {other[0].suffix} images: LIS's own RAW-{light} folders hold the authors' rendered "
            f"copies, not camera raw; ispbench decodes the original .CR2 files from {RAW_URL}."
        )
    raise DatasetMissingError(
        f"LIS: expected {light} raw files <n>.CR2 in {', '.join(str(d) for d in dirs)} (found 0).{hint} {DOWNLOAD_HELP}"
    )


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    raw_dark: str | os.PathLike | None = None,
    raw_normal: str | os.PathLike | None = None,
    annotation_files: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Check a LIS download under ``root`` and write the prepared format (with masks) to ``out``.

    Args:
        root: the download (see :data:`DOWNLOAD_HELP` and ``data_cards/lis.md``).
        out: output folder (default ``root/ispbench-prepared``).
        limit: prepare only the first ``limit`` images of each lighting (numeric order).
        max_side: downscale so the longer side is at most this many pixels (masks follow).
        splits_dir: the folder holding the ``lis_coco_*.json`` files (``--splits``), if not
            ``root/annotations``.
        log: progress and warnings.
        raw_dark, raw_normal: the folders of the dark / normal-light ``.CR2`` files, if not found
            under ``root`` by name (:data:`RAW_DIRS`).
        annotation_files: explicit annotation files, keys ``dark_train``, ``dark_test`` (and
            ``normal_train``, ``normal_test`` for LIS-All).

    Every annotation file is read and checked before the first item is written. Re-running skips
    items whose outputs all exist. Returns a summary dict.

    Raises:
        DatasetMissingError: annotation or raw files missing (the message says what and where).
        DatasetFormatError: a malformed annotation field, an undecodable raw file, an annotation whose
            size does not match its raw file's aspect ratio, an image in both train and test.
    """
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    files, ann_where = _annotation_files(root, out, Path(splits_dir).expanduser() if splits_dir else None, annotation_files)
    raw: dict[str, tuple[Path, dict[str, Path]]] = {}
    for light in LIGHTS:
        given = raw_dark if light == "dark" else raw_normal
        if light == "normal" and "normal" not in files and given is None:
            log("LIS: no normal-light annotations (lis_coco_png_{train,test}.json): preparing LIS-Dark only")
            continue
        found = _find_raw(root, out, light, given)
        if found is None:
            if light == "dark":
                raise DatasetMissingError(f"LIS: expected {root}/RAW-dark/<n>.CR2 (no folder named RAW-dark or RAW_dark found). {DOWNLOAD_HELP}")
            log(f"LIS: no RAW-normal folder under {root}: preparing LIS-Dark only (LIS-All needs RAW-normal/<n>.CR2)")
            continue
        if light not in files:
            raise DatasetMissingError(
                f"LIS: raw_normal {found[0]} given but no normal-light annotations (lis_coco_png_train.json, lis_coco_png_test.json) "
                f"in {ann_where}"
            )
        raw[light] = found

    anns: dict[str, dict[str, dict[str, Any]]] = {}
    dropped = {"crowd": 0, "zero_area": 0}
    for light in raw:
        anns[light] = {s: load_lis_annotations(files[light][s]) for s in ("train", "test")}
        both = sorted(set(anns[light]["train"]["images"]) & set(anns[light]["test"]["images"]), key=numeric_key)
        if both:
            raise DatasetFormatError(
                f"LIS: {len(both)} {light} images are in both {files[light]['train']} and {files[light]['test']} (first: {both[:5]})"
            )
        for doc in anns[light].values():
            dropped["crowd"] += doc["dropped_crowd"]
            dropped["zero_area"] += doc["dropped_zero_area"]

    items: dict[str, dict[str, Any]] = {}
    splits: dict[str, list[str]] = {}
    for light in raw:
        raw_dir, raws = raw[light]
        stems = {s: sorted(anns[light][s]["images"], key=numeric_key) for s in ("train", "test")}
        missing = [stem for s in ("train", "test") for stem in stems[s] if stem not in raws]
        if missing:
            raise DatasetMissingError(
                f"LIS: no {light} raw file for {len(missing)} of {sum(map(len, stems.values()))} annotated images "
                f"(first: {missing[:5]}); expected e.g. {raw_dir}/{missing[0]}.CR2. {DOWNLOAD_HELP}"
            )
        n_pairs = len(stems["train"]) + len(stems["test"])
        if n_pairs != EXPECTED_PAIRS:
            log(f"LIS: the {light} annotations list {n_pairs} images; the full release has {EXPECTED_PAIRS} pairs")
        kept = set(sorted(stems["train"] + stems["test"], key=numeric_key)[: int(limit)] if limit is not None else stems["train"] + stems["test"])
        for s in ("train", "test"):
            for stem in stems[s]:
                if stem not in kept:
                    continue
                item_id = f"{light}_{stem}"
                pair = None
                if stem.isdigit():
                    pair = f"normal_{int(stem) - 1}" if light == "dark" else f"dark_{int(stem) + 1}"
                items[item_id] = {"light": light, "stem": stem, "split": s, "raw": raws[stem], "pair_id": pair,
                                  "info": anns[light][s]["images"][stem], "annotation": files[light][s]}
            splits.setdefault(f"{light}_{s}", []).extend(f"{light}_{stem}" for stem in stems[s] if stem in kept)

    def order(ids: list[str]) -> list[str]:
        return sorted(ids, key=lambda i: (numeric_key(items[i]["stem"]), items[i]["light"]))

    out_splits: dict[str, list[str]] = {}
    for s in ("train", "test"):
        out_splits[f"dark_{s}"] = order(splits.get(f"dark_{s}", []))
    out_splits["dark_all"] = order(out_splits["dark_train"] + out_splits["dark_test"])
    if "normal" in raw:
        for s in ("train", "test"):
            out_splits[f"all_{s}"] = order(splits.get(f"dark_{s}", []) + splits.get(f"normal_{s}", []))
        out_splits["all_all"] = order(out_splits["all_train"] + out_splits["all_test"])
    ids = order(list(items))
    started = check_settings(out, NAME, {"max_side": max_side, "rawpy_settings": rawpy_settings(), "mask_format": MASK_FORMAT})

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root))
        except ValueError:
            return str(p)

    def work(item_id: str) -> None:
        item = items[item_id]
        info, ann_path = item["info"], item["annotation"]
        rgb, meta = raw_to_linear(item["raw"], log)
        h, w = rgb.shape[:2]
        if abs(w / h - info["width"] / info["height"]) > ASPECT_TOLERANCE * (w / h):
            raise DatasetFormatError(
                f"{ann_path}: images[id={info['image_id']}] ({info['file_name']}) is {info['width']}x{info['height']} (w x h), "
                f"which does not match the aspect ratio of {item['raw']} decoded to {w}x{h}; the annotation belongs to "
                "another image or orientation"
            )
        rgb = resize_max_side(rgb, max_side)
        masks = resize_masks(decode_masks(info, ann_path), rgb.shape[:2])
        meta.update(
            light=item["light"],
            file=rel(item["raw"]),
            annotation=rel(ann_path),
            image_id=info["image_id"],
            annotation_size=[info["width"], info["height"]],
            lis_split=item["split"],
            pair_id=item["pair_id"],
            empty_masks=int(np.count_nonzero(masks.reshape(len(masks), -1).sum(1) == 0)) if len(masks) else 0,
        )
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_labels(out / "labels" / f"{item_id}.txt", info["labels"], info["boxes"])
        write_masks(out / "masks" / f"{item_id}.npz", masks)
        write_png16(out / "linear" / f"{item_id}.png", rgb)

    counts = process_items(ids, out, ("meta/.json", "labels/.txt", "masks/.npz", "linear/.png"), work, log, "LIS ", after_first=started)
    for name, split_ids in out_splits.items():
        write_split(out / "splits" / f"{name}.txt", split_ids)
    sizes = {k: len(v) for k, v in out_splits.items()}
    write_manifest(
        out,
        NAME,
        source=str(root),
        raw_dirs={light: str(raw[light][0]) for light in raw},
        annotation_files={f"{light}_{s}": str(files[light][s]) for light in raw for s in ("train", "test")},
        subsets=["dark", "all"] if "normal" in raw else ["dark"],
        n_items=len(ids),
        expected_pairs=EXPECTED_PAIRS,
        reported_split_sizes=REPORTED_SPLIT_SIZES,
        limit=limit,
        max_side=max_side,
        split_source="LIS annotation files: train = lis_coco_*_train(+1).json, test = lis_coco_*_test(+1).json; "
                     "dark_* = LIS-Dark, all_* = LIS-All (dark + normal)",
        split_sizes=sizes,
        classes={k: COCO80_NAMES[v] for k, v in LIS_TO_COCO80.items()},
        dropped_crowd=dropped["crowd"],
        dropped_zero_area=dropped["zero_area"],
        mask_format=MASK_FORMAT,
        rawpy_settings=rawpy_settings(),
        checksums="none published; checked: every annotated image has a raw file, every annotation field, "
                  "annotation size vs decoded aspect ratio",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": sizes}


__all__ = [
    "LISDataset",
    "LIS_TO_COCO80",
    "check_segmentation",
    "decode_masks",
    "decode_segmentation",
    "load_lis_annotations",
    "prepare",
    "read_masks",
    "resize_masks",
    "rle_string_counts",
    "write_masks",
]
