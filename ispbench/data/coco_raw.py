"""Raw COCO: COCO val2017 "unprocessed" to noisy linear RGB (Brooks et al. 2019), as in AdaptiveISP.

``ispbench data prepare coco_raw --root ROOT`` reads ``ROOT/val2017/*.jpg`` and
``ROOT/annotations/instances_val2017.json`` and, once per image, computes::

    g = torch.Generator().manual_seed(image_id)                  # reproducible per image
    raw, md = ispbench.ops.raw.unprocess(srgb[None], g, mosaic_output=False, scale=0.9)
    shot, read = ispbench.ops.raw.random_noise_levels(g)
    noisy = ispbench.ops.raw.add_noise(raw, shot, read, g).clamp(0, 1)

and stores ``noisy`` as a linear 16-bit PNG (the authors likewise seed their evaluation
unprocessing with the image id, with NumPy). Boxes: COCO ``[x, y, w, h]`` pixels ->
normalised ``cx, cy, w, h``; ``category_id`` (1..90) -> COCO-80 index
(:data:`ispbench.data.prepared.COCO91_TO_80`); ``iscrowd`` and zero-area boxes are dropped
(as in the usual COCO -> YOLO conversion).
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
    coco_xywh_to_cxcywh_norm,
    jsonable,
    process_items,
    read_display_image,
    resize_max_side,
    write_labels,
    write_manifest,
    write_png16,
    write_split,
)
from ispbench.data.prepared import (
    COCO80_CATEGORY_IDS,
    COCO91_TO_80,
    DatasetFormatError,
    DatasetMissingError,
    PreparedDetectionDataset,
    collate_detection,
    prepared_dir,
)
from ispbench.ops.raw import add_noise, random_noise_levels, unprocess

NAME = "coco_raw"
URL = "https://cocodataset.org/#download"
IMAGES_URL = "http://images.cocodataset.org/zips/val2017.zip"
ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
EXPECTED_IMAGES = 5000
#: ``unprocess(..., scale=UNPROCESS_SCALE)``: the image is scaled by 0.9 first (AdaptiveISP code).
UNPROCESS_SCALE = 0.9
#: The conversion, as recorded in the manifest (a re-run with another one is refused).
CONVERSION = (
    f"ispbench.ops.raw.unprocess(mosaic_output=False, scale={UNPROCESS_SCALE}) + random_noise_levels + add_noise, "
    "torch.Generator seeded with the COCO image id, clipped to [0, 1], 16-bit PNG"
)

DOWNLOAD_HELP = (
    f"Download COCO 2017 from {URL}: {IMAGES_URL} and {ANNOTATIONS_URL}; extract both into <root> so that "
    "<root>/val2017/000000000139.jpg and <root>/annotations/instances_val2017.json exist."
)


class RawCOCODataset(PreparedDetectionDataset):
    """The prepared raw COCO val2017 images (``split="val"``; ``"all"`` is the same list).

    Items as :class:`ispbench.data.lod.LODDataset`; ``meta`` also holds the unprocessing
    metadata and the shot/read noise levels drawn for the image.
    """

    name = NAME


def load_coco_annotations(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``instances_val2017.json``, check every field used, and index it.

    Returns:
        ``{"images": {image_id: {"file_name", "width", "height"}}, "labels": {image_id: (N,)},
        "boxes": {image_id: (N, 4) normalised cx, cy, w, h}, "dropped_zero_area": int}``.

    Raises:
        DatasetFormatError: naming the file and field (e.g. ``annotations[3].bbox[2]``) for invalid
            JSON; missing ``images``/``annotations``/``categories``; a category set different from
            the 80 COCO classes; an image without an integer ``id``, a ``file_name`` or positive
            finite ``width``/``height``; an annotation that is not an object, with an unknown
            ``image_id`` or ``category_id``, an ``iscrowd`` other than 0/1, a ``bbox`` that is not
            4 finite numbers, has a negative size, or lies outside its image (beyond
            :data:`ispbench.data.preparation.BOX_TOLERANCE_PX` + ``BOX_TOLERANCE_FRACTION``).
            Boxes with zero width or height are dropped (counted in ``dropped_zero_area``).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object (a COCO instances file), got {type(doc).__name__}")
    for field in ("images", "annotations", "categories"):
        if not isinstance(doc.get(field), list):
            raise DatasetFormatError(f"{path}: missing list field '{field}' (expected a COCO instances file)")

    def record(k: int, field: str, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise DatasetFormatError(f"{path}: field '{field}[{k}]' is {type(item).__name__}; expected an object")
        return item

    def get(item: dict[str, Any], where: str, key: str) -> Any:
        if key not in item:
            raise DatasetFormatError(f"{path}: field '{where}.{key}' is missing")
        return item[key]

    cat_ids = []
    for k, cat in enumerate(doc["categories"]):
        cat = record(k, "categories", cat)
        cat_ids.append(annotation_number(get(cat, f"categories[{k}]", "id"), path, f"categories[{k}].id", integer=True))
    cat_ids.sort()
    if tuple(cat_ids) != COCO80_CATEGORY_IDS:
        raise DatasetFormatError(
            f"{path}: field 'categories' has ids {cat_ids[:5]}... ({len(cat_ids)} in all); expected the 80 COCO "
            "detection categories (ids 1..90 with gaps)"
        )
    images: dict[int, dict[str, Any]] = {}
    for k, im in enumerate(doc["images"]):
        where = f"images[{k}]"
        im = record(k, "images", im)
        image_id = annotation_number(get(im, where, "id"), path, f"{where}.id", integer=True)
        if image_id in images:
            raise DatasetFormatError(f"{path}: field '{where}.id' {image_id} appears twice in 'images'")
        name = get(im, where, "file_name")
        if not isinstance(name, str) or not name.strip():
            raise DatasetFormatError(f"{path}: field '{where}.file_name' is {name!r}; expected a file name")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise DatasetFormatError(f"{path}: field '{where}.file_name' is {name!r}; expected a name inside val2017/")
        width = annotation_number(get(im, where, "width"), path, f"{where}.width", positive=True)
        height = annotation_number(get(im, where, "height"), path, f"{where}.height", positive=True)
        images[image_id] = {"file_name": name, "width": width, "height": height}
    per_image: dict[int, list[tuple[int, list[float]]]] = {i: [] for i in images}
    dropped = 0
    for k, ann in enumerate(doc["annotations"]):
        where = f"annotations[{k}]"
        ann = record(k, "annotations", ann)
        image_id = annotation_number(get(ann, where, "image_id"), path, f"{where}.image_id", integer=True)
        if image_id not in images:
            raise DatasetFormatError(f"{path}: field '{where}.image_id' {image_id!r} is not in 'images'")
        cid = annotation_number(get(ann, where, "category_id"), path, f"{where}.category_id", integer=True)
        if cid not in COCO91_TO_80:
            raise DatasetFormatError(f"{path}: field '{where}.category_id' {cid} is not a COCO detection category")
        crowd = ann.get("iscrowd", 0)
        if isinstance(crowd, bool) or crowd not in (0, 1):
            raise DatasetFormatError(f"{path}: field '{where}.iscrowd' is {crowd!r}; expected 0 or 1")
        bbox = get(ann, where, "bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DatasetFormatError(f"{path}: field '{where}.bbox' is {bbox!r}; expected [x, y, w, h]")
        x, y, bw, bh = (annotation_number(v, path, f"{where}.bbox[{i}]") for i, v in enumerate(bbox))
        if bw < 0 or bh < 0:
            raise DatasetFormatError(f"{path}: field '{where}.bbox' is {bbox!r}; width and height must not be negative")
        if crowd:
            continue
        if bw == 0 or bh == 0:
            dropped += 1
            continue
        info = images[image_id]
        check_box_xyxy((x, y, x + bw, y + bh), info["width"], info["height"], path, f"{where}.bbox")
        per_image[image_id].append((COCO91_TO_80[cid], [x, y, bw, bh]))
    labels, boxes = {}, {}
    for image_id, anns in per_image.items():
        w, h = images[image_id]["width"], images[image_id]["height"]
        labels[image_id] = np.asarray([a[0] for a in anns], np.int64)
        boxes[image_id] = coco_xywh_to_cxcywh_norm(np.asarray([a[1] for a in anns]).reshape(-1, 4), w, h).astype(np.float32)
    return {"images": images, "labels": labels, "boxes": boxes, "dropped_zero_area": dropped}


def unprocess_image(srgb: np.ndarray, image_id: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Unprocess one sRGB image ``(H, W, 3)`` in [0, 1] to noisy linear RGB, seeded by ``image_id``.

    Returns ``(float32 (H, W, 3) in [0, 1], metadata)``; same input and id -> same output.
    """
    import torch

    gen = torch.Generator().manual_seed(int(image_id))
    x = torch.from_numpy(np.ascontiguousarray(srgb.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        raw, md = unprocess(x, gen, mosaic_output=False, scale=UNPROCESS_SCALE)
        shot, read = random_noise_levels(gen)
        noisy = add_noise(raw, shot, read, gen).clamp(0.0, 1.0)
    meta = {"unprocess": jsonable(md), "shot_noise": jsonable(shot), "read_noise": jsonable(read), "seed": int(image_id)}
    return noisy[0].permute(1, 2, 0).numpy().astype(np.float32), meta


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check a COCO val2017 download under ``root`` and write the unprocessed prepared format."""
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    ann_path = root / "annotations" / "instances_val2017.json"
    img_dir = root / "val2017"
    if not ann_path.is_file():
        raise DatasetMissingError(f"raw COCO: expected {ann_path} (not found). {DOWNLOAD_HELP}")
    n_jpg = len(list(img_dir.glob("*.jpg"))) if img_dir.is_dir() else 0
    if n_jpg == 0:
        raise DatasetMissingError(f"raw COCO: expected {img_dir}/*.jpg (found 0). {DOWNLOAD_HELP}")
    coco = load_coco_annotations(ann_path)
    image_ids = sorted(coco["images"])
    missing = [coco["images"][i]["file_name"] for i in image_ids if not (img_dir / coco["images"][i]["file_name"]).is_file()]
    if missing:
        raise DatasetMissingError(
            f"raw COCO: {len(missing)} images listed in {ann_path} are missing from {img_dir} (first: {missing[:3]}). {DOWNLOAD_HELP}"
        )
    if len(image_ids) != EXPECTED_IMAGES:
        log(f"raw COCO: {ann_path} lists {len(image_ids)} images; val2017 has {EXPECTED_IMAGES}")
    if limit is not None:
        image_ids = image_ids[: int(limit)]
    id_of = {f"{i:012d}": i for i in image_ids}
    ids = list(id_of)
    started = check_settings(out, NAME, {"max_side": max_side, "conversion": CONVERSION})

    def work(item_id: str) -> None:
        image_id = id_of[item_id]
        info = coco["images"][image_id]
        path = img_dir / info["file_name"]
        srgb = read_display_image(path, log)
        if srgb.shape[:2] != (int(info["height"]), int(info["width"])):
            raise DatasetFormatError(
                f"{path}: size {srgb.shape[1]}x{srgb.shape[0]} differs from {ann_path} images[id={image_id}] "
                f"({info['width']:g}x{info['height']:g})"
            )
        linear, meta = unprocess_image(srgb, image_id)
        linear = resize_max_side(linear, max_side)
        meta.update(file=str(path.relative_to(root)), camera="synthetic (unprocessed COCO)", iso=None, exposure_time=None, image_id=image_id)
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_labels(out / "labels" / f"{item_id}.txt", coco["labels"][image_id], coco["boxes"][image_id])
        write_png16(out / "linear" / f"{item_id}.png", linear)

    counts = process_items(ids, out, ("meta/.json", "labels/.txt", "linear/.png"), work, log, "raw COCO ", after_first=started)
    for name in ("val", "all"):
        write_split(out / "splits" / f"{name}.txt", ids)
    write_manifest(
        out,
        NAME,
        source=str(root),
        n_items=len(ids),
        expected_items=EXPECTED_IMAGES,
        limit=limit,
        max_side=max_side,
        split_source="all COCO val2017 images in image-id order",
        split_sizes={"val": len(ids), "all": len(ids)},
        conversion=CONVERSION,
        annotations="COCO bbox -> normalised cx,cy,w,h; category_id -> COCO-80 index; iscrowd and zero-area boxes dropped",
        dropped_zero_area_boxes=coco["dropped_zero_area"],
        checksums="none recorded; checked: every image listed in instances_val2017.json exists and has the listed size",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": {"val": len(ids), "all": len(ids)}}


__all__ = ["RawCOCODataset", "collate_detection", "load_coco_annotations", "prepare", "unprocess_image"]
