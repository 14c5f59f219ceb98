"""OnePlus (ReconfigISP, Yu et al. ICCV 2021): 141 low-light driving scenes, OnePlus 6T, labelme JSON.

The release holds 16-bit PNG files that store the 10-bit RGGB Bayer mosaic (values 0..1023) and one
labelme JSON per image with rectangles for ``person``, ``car`` and ``bus``.
``ispbench data prepare oneplus --root ROOT`` converts each mosaic once:

1. ``bayer / 1023`` (no black-level subtraction and no white balance: the PNGs carry no metadata;
   the ISP under test owns white balance), clipped to [0, 1];
2. bilinear demosaic (:func:`ispbench.data.preparation.demosaic_bilinear`, RGGB), odd rows/columns cropped;
3. stored as a linear 16-bit PNG.

A ``.dng`` in place of a PNG is decoded with ``ispbench.ops.dng.read_raw_linear`` instead.

Class mapping (labelme label, case-insensitive -> COCO-80 index): ``person`` -> 0,
``car`` -> 2, ``bus`` -> 5.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ispbench.atomic import write_json
from ispbench.data.preparation import (
    annotation_number,
    check_box_xyxy,
    check_max_side,
    check_settings,
    demosaic_bilinear,
    files_with_suffix,
    numeric_key,
    process_items,
    raw_to_linear,
    resize_max_side,
    split_entry_id,
    split_pair,
    write_labels,
    write_manifest,
    write_png16,
    write_split,
    xyxy_to_cxcywh_norm,
)
from ispbench.data.prepared import (
    COCO80_NAMES,
    DatasetFormatError,
    DatasetMissingError,
    PreparedDetectionDataset,
    collate_detection,
    prepared_dir,
    read_split,
)

NAME = "oneplus"
URL = "https://www.mmlab-ntu.com/project/reconfigisp/"
EXPECTED_IMAGES = 141
#: Maximum value of the 10-bit mosaic stored in the 16-bit PNGs.
BAYER_MAX = 1023
ONEPLUS_TO_COCO80: dict[str, int] = {"person": 0, "car": 2, "bus": 5}
#: The conversion, as recorded in the manifest (a re-run with another one is refused).
CONVERSION = "bayer/1023 (no black level, no white balance), bilinear RGGB demosaic, 16-bit PNG"

DOWNLOAD_HELP = (
    f"Download the OnePlus dataset from the ReconfigISP project ({URL}; the Google Drive link is in the "
    "ReconfigISP GitHub README) and extract it under <root> so that each 16-bit Bayer PNG and its labelme "
    ".json (same file name stem) lie anywhere under <root>. Optional: train.txt / val.txt split lists in <root>."
)


class OnePlusDataset(PreparedDetectionDataset):
    """A split of the prepared OnePlus images (linear RGB, boxes in COCO-80 ids).

    Splits: ``"val"`` and ``"all"`` both hold all 141 images (AdaptiveISP evaluates on all of
    them); ``"train"`` exists only when the release's split lists were found (50 / 91).
    Arguments and items as :class:`ispbench.data.lod.LODDataset`.
    """

    name = NAME


def parse_labelme(path: str | os.PathLike, mapping: dict[str, int] = ONEPLUS_TO_COCO80) -> dict[str, Any]:
    """Parse a labelme JSON -> ``{"width", "height", "image_path", "labels", "boxes"}``.

    Rectangles use their two corner points; polygons their bounding box. Boxes are normalised
    ``cx, cy, w, h`` clipped to the image.

    Raises:
        DatasetFormatError: naming the file and field (e.g. ``shapes[2].points[0][1]``) for invalid
            JSON; missing or non-numeric, non-finite or non-positive ``imageWidth``/``imageHeight``;
            ``shapes`` not a list; a shape that is not an object, with a label not in ``mapping``,
            fewer than 2 points, a point that is not two finite numbers, or a box outside the image
            or of zero size (:func:`ispbench.data.preparation.check_box_xyxy`).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid labelme JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path}: expected a labelme JSON object, got {type(doc).__name__}")
    for field in ("imageWidth", "imageHeight", "shapes"):
        if field not in doc:
            raise DatasetFormatError(f"{path}: missing field '{field}' (expected a labelme annotation)")
    width = annotation_number(doc["imageWidth"], path, "imageWidth", positive=True)
    height = annotation_number(doc["imageHeight"], path, "imageHeight", positive=True)
    if not isinstance(doc["shapes"], list):
        raise DatasetFormatError(f"{path}: field 'shapes' is {type(doc['shapes']).__name__}; expected a list of shapes")
    labels, corners = [], []
    for k, shape in enumerate(doc["shapes"]):
        if not isinstance(shape, dict):
            raise DatasetFormatError(f"{path}: field 'shapes[{k}]' is {type(shape).__name__}; expected an object")
        label = shape.get("label")
        if not isinstance(label, str) or label.strip().lower() not in mapping:
            raise DatasetFormatError(f"{path}: field 'shapes[{k}].label' is {label!r}; expected one of {sorted(mapping)}")
        label = label.strip().lower()
        points = shape.get("points")
        if not isinstance(points, list) or len(points) < 2:
            n = len(points) if isinstance(points, list) else points
            raise DatasetFormatError(f"{path}: field 'shapes[{k}].points' is {n!r}; expected a list of at least 2 [x, y] points")
        pts = []
        for j, pt in enumerate(points):
            if not isinstance(pt, list) or len(pt) != 2:
                raise DatasetFormatError(f"{path}: field 'shapes[{k}].points[{j}]' is {pt!r}; expected [x, y]")
            pts.append([annotation_number(v, path, f"shapes[{k}].points[{j}][{i}]") for i, v in enumerate(pt)])
        arr = np.asarray(pts, dtype=np.float64)
        x1, y1 = arr.min(0)
        x2, y2 = arr.max(0)
        if x2 <= x1 or y2 <= y1:
            raise DatasetFormatError(f"{path}: field 'shapes[{k}].points' has zero area ({x1:g}, {y1:g}, {x2:g}, {y2:g})")
        labels.append(mapping[label])
        corners.append(check_box_xyxy((x1, y1, x2, y2), width, height, path, f"shapes[{k}].points"))
    return {
        "width": width,
        "height": height,
        "image_path": doc.get("imagePath"),
        "labels": np.asarray(labels, np.int64),
        "boxes": xyxy_to_cxcywh_norm(np.asarray(corners).reshape(-1, 4), width, height).astype(np.float32),
    }


def read_bayer_png(path: str | os.PathLike) -> np.ndarray:
    """Read a OnePlus 16-bit Bayer PNG -> float32 ``(H, W)`` in [0, 1] (divided by 1023).

    Raises:
        DatasetFormatError: not decodable, not single-channel 16-bit, or values above 1023.
    """
    import cv2

    path = Path(path)
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise DatasetFormatError(f"{path}: not a decodable PNG (corrupt or truncated file)")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DatasetFormatError(
            f"{path}: expected a single-channel 16-bit PNG holding a 10-bit Bayer mosaic, got dtype {img.dtype} shape {img.shape}"
        )
    top = int(img.max())
    if top > BAYER_MAX:
        raise DatasetFormatError(f"{path}: maximum value {top} exceeds {BAYER_MAX}; expected 10-bit data in a 16-bit PNG")
    return img.astype(np.float32) / BAYER_MAX


def _collect(root: Path, out: Path) -> dict[str, tuple[Path, Path]]:
    """id -> (raw file, labelme JSON)."""
    images: dict[str, list[Path]] = {}
    for p in files_with_suffix(root, {".png", ".dng"}, recursive=True, exclude=out):
        images.setdefault(p.stem, []).append(p)
    pairs: dict[str, tuple[Path, Path]] = {}
    for js in files_with_suffix(root, {".json"}, recursive=True, exclude=out):
        if js.stem in images:
            same_dir = [p for p in images[js.stem] if p.parent == js.parent]
            pairs[js.stem] = (sorted(same_dir or images[js.stem])[0], js)
    return pairs


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check a OnePlus download under ``root`` and write the prepared format to ``out``."""
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    pairs = _collect(root, out)
    if not pairs:
        raise DatasetMissingError(
            f"OnePlus: expected 16-bit Bayer PNGs with a labelme .json of the same name under {root} (found 0 pairs). {DOWNLOAD_HELP}"
        )
    ids = sorted(pairs, key=numeric_key)
    if len(ids) != EXPECTED_IMAGES:
        log(f"OnePlus: found {len(ids)} image/annotation pairs; the full release has {EXPECTED_IMAGES}")
    if limit is not None:
        ids = ids[: int(limit)]
    anns = {i: parse_labelme(pairs[i][1]) for i in ids}  # every annotation checked before anything is written
    folder = Path(splits_dir).expanduser() if splits_dir else root
    release_splits = split_pair(folder, "OnePlus")
    if release_splits is None and splits_dir:
        raise DatasetMissingError(f"OnePlus: --splits {folder}: expected train.txt and val.txt there")
    splits = {"all": list(ids), "val": list(ids)}
    split_source = "all images as val (AdaptiveISP evaluates on all 141)"
    if release_splits is not None:
        for name, path in release_splits.items():
            entries = [split_entry_id(e) for e in read_split(path)]
            unknown = [e for e in entries if e not in pairs]
            if unknown:
                raise DatasetFormatError(f"{path}: entries {unknown[:3]} name no image under {root}")
            splits["train" if name == "train" else "val_release"] = [e for e in entries if e in set(ids)]
        split_source += "; train / val_release from the release's split lists"
    started = check_settings(out, NAME, {"max_side": max_side, "conversion": CONVERSION})

    def work(item_id: str) -> None:
        raw_path, js = pairs[item_id]
        ann = anns[item_id]
        if raw_path.suffix.lower() == ".dng":
            rgb, meta = raw_to_linear(raw_path, log)
        else:
            bayer = read_bayer_png(raw_path)
            if bayer.shape != (int(ann["height"]), int(ann["width"])):
                raise DatasetFormatError(
                    f"{js}: imageWidth x imageHeight {ann['width']:g}x{ann['height']:g} differs from {raw_path} "
                    f"({bayer.shape[1]}x{bayer.shape[0]})"
                )
            h, w = bayer.shape
            rgb = demosaic_bilinear(bayer[: h - h % 2, : w - w % 2], "RGGB")
            meta = {"camera": "OnePlus 6T (A6010)", "bayer": "RGGB 10-bit / 1023, bilinear demosaic"}
        rgb = resize_max_side(rgb, max_side)
        meta.update(file=str(raw_path.relative_to(root)), annotation=str(js.relative_to(root)))
        meta.setdefault("camera", "OnePlus 6T (A6010)")
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_labels(out / "labels" / f"{item_id}.txt", ann["labels"], ann["boxes"])
        write_png16(out / "linear" / f"{item_id}.png", rgb)

    counts = process_items(ids, out, ("meta/.json", "labels/.txt", "linear/.png"), work, log, "OnePlus ", after_first=started)
    for name, split_ids in splits.items():
        write_split(out / "splits" / f"{name}.txt", split_ids)
    write_manifest(
        out,
        NAME,
        source=str(root),
        n_items=len(ids),
        expected_items=EXPECTED_IMAGES,
        limit=limit,
        max_side=max_side,
        split_source=split_source,
        split_sizes={k: len(v) for k, v in splits.items()},
        classes={k: COCO80_NAMES[v] for k, v in ONEPLUS_TO_COCO80.items()},
        conversion=CONVERSION,
        checksums="none published; checked: file counts, one labelme JSON per image, JSON size == PNG size, values <= 1023",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": {k: len(v) for k, v in splits.items()}}


__all__ = ["OnePlusDataset", "ONEPLUS_TO_COCO80", "collate_detection", "parse_labelme", "prepare", "read_bayer_png"]
