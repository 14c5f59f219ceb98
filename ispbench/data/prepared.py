"""Reading prepared datasets at train time: the on-disk format, its readers, resizing, datasets, collation.

The prepared format
-------------------
``ispbench data prepare NAME --root ROOT`` converts a user's download once into
``OUT = ROOT/ispbench-prepared`` (or ``--out``)::

    OUT/manifest.json          dataset name, format version, status, counts, conversion settings
    OUT/linear/<id>.png        linear RGB, 16-bit PNG, RGB channel order, value = round(x * 65535)
    OUT/labels/<id>.txt        detection: YOLO lines "class cx cy w h" (normalised, COCO-80 ids)
    OUT/goal/<id>.png          finishing: display-referred target, 16-bit PNG, RGB
    OUT/meta/<id>.json         per-image metadata (iso, exposure_time, camera, file, ...)
    OUT/splits/<split>.txt     one <id> per line

``manifest.json`` has ``"status": "complete"`` once a run finished (an interrupted one leaves
``"incomplete"``, which the loaders refuse). Linear values are clipped to [0, 1] before
quantisation (the 16-bit step is 1.5e-5, below the noise of every dataset here). An item counts as finished when all its files exist; every file
is written through :mod:`ispbench.atomic`, so a crash never leaves a half-written one. The writing
side (conversion of a user's download) is :mod:`ispbench.data.preparation`.

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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ispbench.ops.geometry import boxes_to_letterbox, letterbox, resize_image

#: Padding of the ``resize="letterbox"`` border: 0 (black), as the AdaptiveISP code pads linear images.
LETTERBOX_PAD_VALUE = 0.0

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



class DatasetMissingError(FileNotFoundError):
    """A dataset (or a prepared file) is not where it should be; the message says what to do."""



class DatasetFormatError(ValueError):
    """A file exists but is not what the dataset's format says; the message names file and field.

    ``ispbench data prepare`` raises it for every malformed annotation field (missing, wrong type,
    non-finite, out of range, unknown class), out-of-range or non-finite pixels, corrupt archives
    and a re-run whose settings differ from the existing manifest; the command prints it as one
    line and exits with status 1.
    """



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
# Prepared files: images, labels, splits, manifest
# --------------------------------------------------------------------------------------------

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
    if not isinstance(manifest, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object, got {type(manifest).__name__}; re-run `{prepare_command(name, root)}`")
    if manifest.get("dataset") != name:
        raise DatasetFormatError(f"{path}: field 'dataset' is {manifest.get('dataset')!r}, expected {name!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path}: field 'format_version' is {manifest.get('format_version')!r}, this ispbench reads "
            f"{FORMAT_VERSION}; re-run `{prepare_command(name, root)}` with --out pointing to a new folder"
        )
    if manifest.get("status", "complete") != "complete":
        raise DatasetMissingError(
            f"{path}: field 'status' is {manifest.get('status')!r}: the preparation of {out} did not finish; "
            f"re-run `{prepare_command(name, root, None if out == prepared_dir(root) else out)}` (it continues where it stopped)"
        )
    return manifest



# --------------------------------------------------------------------------------------------
# Resizing (image + boxes)
# --------------------------------------------------------------------------------------------

def resize_sample(image, boxes=None, size: int | tuple[int, int] | None = None, resize: str = "letterbox", *, extra=()):
    """Resize ``image (3, H, W)`` (and ``extra`` images the same way), adjusting normalised boxes.

    Args:
        image: float tensor ``(3, H, W)``.
        boxes: ``(N, 4)`` normalised ``cx, cy, w, h`` or ``None``.
        size: ``None`` (unchanged), an int ``S`` or ``(H, W)``.
        resize: ``"letterbox"`` (keep aspect ratio, pad centred with :data:`LETTERBOX_PAD_VALUE`,
            area resampling when shrinking; :func:`ispbench.ops.geometry.letterbox`) or
            ``"plain"`` (stretch).
        extra: more ``(3, H, W)`` tensors (e.g. the goal) transformed identically.

    Returns:
        ``(image, boxes, extra_list, info)``; ``info`` has ``orig_size (H, W)``, ``scale (sy, sx)``
        and ``pad (top, left)`` in output pixels, enough to map boxes back.

    Example:
        A 100x200 (H x W) image letterboxed to 100 -> scale 0.5, 25 px black bars top and bottom;
        a box (0.5, 0.5, 1.0, 1.0) becomes (0.5, 0.5, 1.0, 0.5).
    """
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
        info["scale"] = (th / h0, tw / w0)
        return resize_image(image[None], (th, tw), "area")[0], boxes, [resize_image(e[None], (th, tw), "area")[0] for e in extra], info

    def boxed(img: torch.Tensor) -> torch.Tensor:
        return letterbox(img[None], (th, tw), pad_value=LETTERBOX_PAD_VALUE, method="area")[0][0]

    out, layout = letterbox(image[None], (th, tw), pad_value=LETTERBOX_PAD_VALUE, method="area")
    if boxes is not None and len(boxes):
        boxes = boxes_to_letterbox(boxes, layout)
    info["scale"] = layout.scale
    info["pad"] = layout.pad
    return out[0], boxes, [boxed(e) for e in extra], info



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
