"""LOD (Hong et al., BMVC 2021): low-light object detection, Canon EOS 5D Mark IV raw + VOC XML.

AdaptiveISP trains and evaluates on the dark raw images. ``ispbench data prepare lod --root ROOT``
decodes each ``RAW_dark/<n>.CR2`` once to linear RGB (``ispbench.ops.dng.read_raw_linear``,
settings in ``ispbench.ops.dng.RAWPY_SETTINGS``) and writes the prepared format described in
:mod:`ispbench.data.prepared`; :class:`LODDataset` reads it. See ``data_cards/lod.md``.

Class mapping (VOC name in the XML -> COCO-80 index, the 80 names the authors evaluate with):

==============  =====  ===============
LOD (XML)       id     COCO-80 name
==============  =====  ===============
person          0      person
bicycle         1      bicycle
car             2      car
motorbike       3      motorcycle
bus             5      bus
bottle          39     bottle
chair           56     chair
diningtable     60     dining table
==============  =====  ===============
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ispbench.atomic import write_json
from ispbench.data.preparation import (
    check_box_xyxy,
    check_max_side,
    check_settings,
    files_with_suffix,
    find_dirs,
    numeric_key,
    process_items,
    raw_to_linear,
    rawpy_settings,
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

NAME = "lod"
URL = "https://github.com/ying-fu/LODDataset"
#: Images in the full release (dark raw files; the same number of normal-light pairs).
EXPECTED_IMAGES = 2230
#: Folder names accepted for the dark raw images (compared lower-case without - _ and spaces).
RAW_DARK_DIRS = ("RAW_dark", "RAW-dark", "RAWdark")
#: VOC-style names found in LOD XML files (and accepted spellings) -> COCO-80 index.
LOD_TO_COCO80: dict[str, int] = {
    "person": 0,
    "bicycle": 1,
    "car": 2,
    "motorbike": 3,
    "motorcycle": 3,
    "bus": 5,
    "bottle": 39,
    "chair": 56,
    "diningtable": 60,
    "dining table": 60,
    "dining_table": 60,
}
#: Paper-sized fallback split used only when the authors' split files are not supplied:
#: the last 400 ids (numeric order) are ``val``, the rest ``train``.
FALLBACK_VAL = 400

DOWNLOAD_HELP = (
    f"Download LOD from {URL} (the 'RAW-dark' images and the 'RAW-dark-Annotations' .xml files) "
    "and extract it so that <root>/RAW_dark/<n>.CR2 exist and each <n>.xml lies anywhere under <root> "
    "(e.g. <root>/RAW-dark-Annotations/<n>.xml). Optional: the AdaptiveISP split files train.txt, "
    "val.txt, test.txt in <root> (or pass --splits DIR)."
)


class LODDataset(PreparedDetectionDataset):
    """A split of the prepared LOD dark raw images.

    Args:
        root: the folder given to ``ispbench data prepare lod --root``.
        split: ``"train"``, ``"val"`` or ``"all"`` (see ``data_cards/lod.md`` for which split file
            they came from; ``manifest["split_source"]`` says).
        prepared: the ``--out`` folder if not ``root/ispbench-prepared``.
        size: ``None`` or output size (see :func:`ispbench.data.prepared.resize_sample`).
        resize: ``"letterbox"`` (default; black padding as in AdaptiveISP) or ``"plain"``.
        limit: keep the first ``limit`` ids of the split.

    Items: ``{"image": (3, H, W) float32 linear RGB in [0, 1], "boxes": (N, 4) normalised cx, cy,
    w, h, "labels": (N,) int64 COCO-80 ids, "meta": {iso, exposure_time, camera, file, ...}}``.

    Example:
        >>> ds = LODDataset("~/data/LOD", "val", size=512)          # doctest: +SKIP
        >>> batch = collate_detection([ds[0], ds[1]])               # doctest: +SKIP
    """

    name = NAME


def parse_voc_xml(path: str | os.PathLike, mapping: dict[str, int] = LOD_TO_COCO80) -> dict[str, Any]:
    """Parse one VOC-style XML annotation.

    Returns:
        ``{"width", "height", "labels" (N,) int64, "boxes" (N, 4) normalised cx, cy, w, h,
        "difficult" (N,) bool}``. Boxes are clipped to the image.

    Raises:
        DatasetFormatError: unparsable XML, missing ``size/width``, ``size/height`` or
            ``bndbox`` fields, a non-numeric or non-finite number, a class name not in ``mapping``,
            or a box outside the image or without positive size
            (:func:`ispbench.data.preparation.check_box_xyxy`); the message names file and field.
    """
    path = Path(path)
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise DatasetFormatError(f"{path}: not a parsable VOC XML annotation ({exc})") from exc
    root = tree.getroot()

    def number(node, field: str, where: str) -> float:
        child = node.find(field)
        if child is None or child.text is None:
            raise DatasetFormatError(f"{path}: missing field '{where}/{field}'")
        try:
            value = float(child.text.strip())
        except ValueError:
            raise DatasetFormatError(f"{path}: field '{where}/{field}' is {child.text!r}, expected a number") from None
        if not np.isfinite(value):
            raise DatasetFormatError(f"{path}: field '{where}/{field}' is {child.text!r}, expected a finite number")
        return value

    size = root.find("size")
    if size is None:
        raise DatasetFormatError(f"{path}: missing field 'size' (expected size/width and size/height)")
    width, height = number(size, "width", "size"), number(size, "height", "size")
    if width <= 0 or height <= 0:
        raise DatasetFormatError(f"{path}: field 'size' is {width:g}x{height:g}, expected positive width and height")
    labels, corners, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        name_node = obj.find("name")
        name = (name_node.text or "").strip().lower() if name_node is not None else ""
        if name not in mapping:
            raise DatasetFormatError(
                f"{path}: object {k} has class name {name!r}; expected one of {sorted(set(mapping))}"
            )
        box = obj.find("bndbox")
        if box is None:
            raise DatasetFormatError(f"{path}: object {k} ({name}) has no 'bndbox' field")
        where = f"object[{k}]/bndbox"
        x1, y1, x2, y2 = (number(box, f, where) for f in ("xmin", "ymin", "xmax", "ymax"))
        if x2 <= x1 or y2 <= y1:
            raise DatasetFormatError(f"{path}: {where} is ({x1:g}, {y1:g}, {x2:g}, {y2:g}); expected xmin < xmax and ymin < ymax")
        labels.append(mapping[name])
        corners.append(check_box_xyxy((x1, y1, x2, y2), width, height, path, where))
        diff = obj.find("difficult")
        difficult.append(bool(diff is not None and (diff.text or "0").strip() == "1"))
    boxes = xyxy_to_cxcywh_norm(np.asarray(corners).reshape(-1, 4), width, height)
    return {
        "width": width,
        "height": height,
        "labels": np.asarray(labels, np.int64),
        "boxes": boxes.astype(np.float32),
        "difficult": np.asarray(difficult, bool),
    }


def _find_raw_dark(root: Path, out: Path) -> tuple[Path, list[Path]]:
    dirs = find_dirs(root, RAW_DARK_DIRS, depth=2, exclude=out)
    for d in dirs:
        files = files_with_suffix(d, {".cr2"})
        if files:
            return d, files
    where = ", ".join(str(d) for d in dirs) or f"{root}/RAW_dark"
    raise DatasetMissingError(f"LOD: expected {root}/RAW_dark/*.CR2 (looked in {where}; found 0). {DOWNLOAD_HELP}")


def _index_xml(root: Path, out: Path) -> dict[str, Path]:
    """stem -> XML path; when a stem appears in several folders, prefer a 'raw'+'dark' folder."""
    index: dict[str, list[Path]] = {}
    for p in files_with_suffix(root, {".xml"}, recursive=True, exclude=out):
        index.setdefault(p.stem, []).append(p)

    def rank(p: Path) -> tuple[int, str]:
        parent = str(p.parent).lower()
        return (0 if ("raw" in parent and "dark" in parent) else 1 if "raw" in parent else 2, str(p))

    return {stem: sorted(paths, key=rank)[0] for stem, paths in index.items()}


def _authors_splits(root: Path, splits_dir: Path | None) -> dict[str, Path] | None:
    """The authors' split files: ``{"train", "val"[, "all" (test.txt)]}``, or ``None`` when absent.

    Raises:
        DatasetMissingError: only one of train.txt / val.txt exists (says which), or ``--splits``
            names a folder without them.
    """
    folder = splits_dir if splits_dir is not None else root
    pair = split_pair(folder, "LOD")
    if pair is None:
        if splits_dir is not None:
            test = " (only test.txt)" if (folder / "test.txt").is_file() else ""
            raise DatasetMissingError(
                f"LOD: --splits {splits_dir}: expected train.txt and val.txt (and optionally test.txt) there; found none{test}"
            )
        return None
    if (folder / "test.txt").is_file():
        pair["all"] = folder / "test.txt"
    return pair


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check a LOD download under ``root`` and write the prepared format to ``out``.

    Re-running skips items whose outputs all exist. Returns a summary dict.
    """
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    raw_dir, raw_files = _find_raw_dark(root, out)
    raws = {p.stem: p for p in raw_files}
    ids = sorted(raws, key=numeric_key)
    if len(ids) != EXPECTED_IMAGES:
        log(f"LOD: found {len(ids)} dark raw files in {raw_dir}; the full release has {EXPECTED_IMAGES}")
    xml = _index_xml(root, out)
    missing = [i for i in ids if i not in xml]
    if missing:
        raise DatasetMissingError(
            f"LOD: no .xml annotation for {len(missing)} of {len(ids)} raw files (first: {missing[:5]}); "
            f"expected e.g. {root}/RAW-dark-Annotations/{missing[0]}.xml. {DOWNLOAD_HELP}"
        )
    splits_src = _authors_splits(root, Path(splits_dir).expanduser() if splits_dir else None)
    if limit is not None:
        ids = ids[: int(limit)]
    id_set = set(ids)
    anns = {i: parse_voc_xml(xml[i]) for i in ids}  # every annotation checked before anything is written
    started = check_settings(out, NAME, {"max_side": max_side, "rawpy_settings": rawpy_settings()})

    def work(item_id: str) -> None:
        ann = anns[item_id]
        rgb, meta = raw_to_linear(raws[item_id], log)
        h, w = rgb.shape[:2]
        if abs((w / h) - ann["width"] / ann["height"]) > 0.02 * (w / h):
            raise DatasetFormatError(
                f"{xml[item_id]}: size {ann['width']:g}x{ann['height']:g} (w x h) does not match the aspect "
                f"ratio of {raws[item_id]} decoded to {w}x{h}; the annotation belongs to another image or orientation"
            )
        rgb = resize_max_side(rgb, max_side)
        meta.update(
            file=str(raws[item_id].relative_to(root)),
            annotation=str(xml[item_id].relative_to(root)),
            pair_normal_id=str(int(item_id) - 1) if item_id.isdigit() else None,
            difficult=ann["difficult"].tolist(),
        )
        meta.setdefault("camera", "Canon EOS 5D Mark IV")
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_labels(out / "labels" / f"{item_id}.txt", ann["labels"], ann["boxes"])
        write_png16(out / "linear" / f"{item_id}.png", rgb)

    if splits_src is not None:
        split_source = "authors (AdaptiveISP split files: " + ", ".join(str(p) for p in splits_src.values()) + ")"
        splits: dict[str, list[str]] = {}
        for name, path in splits_src.items():
            entries = [split_entry_id(e) for e in read_split(path)]
            unknown = [e for e in entries if e not in raws]
            if unknown:
                raise DatasetFormatError(
                    f"{path}: {len(unknown)} entries name no file in {raw_dir} (first: {unknown[:3]}); "
                    "expected lines naming LOD images such as '2.png' or 'images/2.png'"
                )
            splits[name] = [e for e in entries if e in id_set]
        splits.setdefault("all", sorted(set(splits["train"]) | set(splits["val"]), key=numeric_key))
    else:
        split_source = f"ispbench fallback (not the authors'): last {FALLBACK_VAL} ids in numeric order are val"
        all_ids = sorted(raws, key=numeric_key)
        val = set(all_ids[-FALLBACK_VAL:])
        splits = {
            "train": [i for i in ids if i not in val],
            "val": [i for i in ids if i in val],
            "all": list(ids),
        }
        log(f"LOD: no train.txt/val.txt in {root}; using the {split_source}")
    counts = process_items(ids, out, ("meta/.json", "labels/.txt", "linear/.png"), work, log, "LOD ", after_first=started)

    for name, split_ids in splits.items():
        write_split(out / "splits" / f"{name}.txt", split_ids)
    write_manifest(
        out,
        NAME,
        source=str(root),
        raw_dir=str(raw_dir),
        n_items=len(ids),
        expected_items=EXPECTED_IMAGES,
        limit=limit,
        max_side=max_side,
        split_source=split_source,
        split_sizes={k: len(v) for k, v in splits.items()},
        classes={k: COCO80_NAMES[v] for k, v in LOD_TO_COCO80.items()},
        rawpy_settings=rawpy_settings(),
        checksums="none published; checked: file counts, XML for every raw file, XML size vs decoded aspect ratio",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": {k: len(v) for k, v in splits.items()}}


__all__ = ["LODDataset", "LOD_TO_COCO80", "collate_detection", "parse_voc_xml", "prepare"]
