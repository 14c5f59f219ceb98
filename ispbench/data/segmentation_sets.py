"""Which instance-segmentation data a run uses: the embedded split or prepared LIS, by name.

The sibling of :mod:`ispbench.data.detection_sets` for tasks that need instance masks (POS-ISP's
segmentation task). Trainers and notebooks call :func:`load_segmentation_split` so that
``data_root`` / ``dataset`` mean the same everywhere (empty ``data_root``: the embedded synthetic
set, whose items carry ``masks`` too). Items hold ``image``, ``boxes``, ``labels`` and ``masks``
(one bool mask per box); :func:`collate_segmentation` batches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ispbench.data.detection_sets import embedded_split
from ispbench.data.lis import LISDataset
from ispbench.data.prepared import DatasetMissingError, prepare_command

#: Real segmentation datasets -> the :class:`~ispbench.data.lis.LISDataset` subset: ``lis_dark`` is
#: POS-ISP's LIS-Dark (the low-light raw images), ``lis_all`` its LIS-All (low- and normal-light).
REAL_SEGMENTATION_DATASETS: dict[str, str] = {"lis_dark": "dark", "lis_all": "all"}
#: The data card and ``ispbench data prepare`` name of each real dataset.
PREPARED_NAME: dict[str, str] = {"lis_dark": "lis", "lis_all": "lis"}
#: Embedded split name -> LIS split: LIS has a train and a test set; the paper evaluates on the
#: test set, which also serves as ``val`` (POS-ISP does no model selection on it).
REAL_SPLITS: dict[str, str] = {"train": "train", "val": "test", "test": "test", "all": "all"}


def load_segmentation_split(data_root: str = "", dataset: str = "lis_dark", split: str = "test", n_images: int = 0,
                            imgsz: int = 160, *, light: str = "low", require_real: bool = False):
    """The one place trainers and notebooks pick their instance-segmentation data.

    * ``data_root`` empty, or ``dataset == "embedded"``: the embedded synthetic split ``split``
      (``train`` / ``val`` / ``test``) of ``light`` images (:func:`ispbench.data.detection_sets.embedded_split`).
    * otherwise: prepared LIS under ``data_root`` (``ispbench data prepare lis --root DATA_ROOT``),
      ``dataset`` ``"lis_dark"`` (LIS-Dark) or ``"lis_all"`` (LIS-All), letterboxed to ``imgsz``;
      ``split`` is mapped with :data:`REAL_SPLITS` (``val`` and ``test`` -> LIS's test set). Labels
      are COCO-80 class ids: score them with a COCO-trained segmentation model.

    ``n_images`` > 0 keeps the first ``n_images`` items. ``require_real`` (the ``paper`` profile)
    refuses the embedded data instead of falling back to it. Items are ``{"image" (3, S, S)
    linear, "boxes" (N, 4) cx cy w h, "labels" (N,), "masks" (N, S, S) bool, "meta"}``.

    Raises:
        DatasetMissingError: ``data_root`` does not exist or was never prepared (the message names
            the path and the ``ispbench data prepare lis`` command), or ``require_real`` with an
            empty ``data_root`` or ``dataset == "embedded"`` (:func:`refusal_message`).
        ValueError: an unknown ``dataset`` or ``split``.

    Example:
        >>> ds = load_segmentation_split("~/data/LIS", "lis_dark", "test", 0, 512)   # doctest: +SKIP
        >>> batch = collate_segmentation([ds[0], ds[1]])                              # doctest: +SKIP
    """
    if not data_root or dataset == "embedded":
        if require_real:
            raise DatasetMissingError(refusal_message(data_root, dataset))
        return embedded_split(split, light, data_root, n_images, with_masks=True)
    if dataset not in REAL_SEGMENTATION_DATASETS:
        raise ValueError(f"dataset: expected 'embedded' or one of {tuple(REAL_SEGMENTATION_DATASETS)}, got {dataset!r}")
    if split not in REAL_SPLITS:
        raise ValueError(f"split: expected one of {tuple(REAL_SPLITS)}, got {split!r}")
    root = Path(data_root).expanduser()
    name = PREPARED_NAME[dataset]
    if not root.is_dir():
        raise DatasetMissingError(
            f"data_root {root} does not exist (dataset {dataset!r}). Download LIS (data_cards/{name}.md: the annotations "
            f"from the LIS release, the .CR2 raw files from LOD) and prepare it once with `{prepare_command(name, root)}`, "
            "or leave data_root empty for the embedded data."
        )
    return LISDataset(root, REAL_SPLITS[split], REAL_SEGMENTATION_DATASETS[dataset], size=int(imgsz),
                      limit=int(n_images) if n_images else None)


def refusal_message(data_root: str, dataset: str, profile: str = "paper") -> str:
    """Why the ``paper`` profile refuses the embedded segmentation data, and what to do instead."""
    real = dataset if dataset in REAL_SEGMENTATION_DATASETS else "lis_dark"
    what = "dataset is 'embedded'" if dataset == "embedded" and data_root else "data_root is empty"
    return (f"the {profile} profile needs a real segmentation dataset but {what}: no fallback to the embedded "
            f"data. Prepare LIS once with `{prepare_command('lis', 'DIR')}` (DIR holding annotations/lis_coco_png_*.json "
            f"and RAW-dark/<n>.CR2, RAW-normal/<n>.CR2 for LIS-All; see data_cards/lis.md) and pass data_root=DIR with "
            f"dataset={real!r} ('lis_dark' = LIS-Dark, 'lis_all' = LIS-All), e.g. "
            f"`ispbench run NOTEBOOK --profile {profile} -p data_root DIR`.")


def collate_segmentation(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack segmentation samples into the ultralytics-style batch with masks.

    Returns:
        ``{"images": (B, 3, H, W), "targets": (N, 6) rows batch_index, class, cx, cy, w, h,
        "masks": (N, H, W) bool (row k of ``targets`` is mask k), "meta": [B dicts]}``.

    Raises:
        ValueError: no samples, images of different sizes (build the dataset with ``size=``), or a
            sample without ``masks`` or whose masks do not match its boxes and image.
    """
    if not samples:
        raise ValueError("samples: expected at least one sample, got none")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"samples: images have different shapes {sorted(shapes)}; build the dataset with size=... to batch them")
    hw = samples[0]["image"].shape[-2:]
    rows, masks = [], []
    for i, s in enumerate(samples):
        n = len(s["labels"])
        if "masks" not in s:
            raise ValueError(f"samples[{i}]: no 'masks' (a detection-only sample?); expected (N, H, W) instance masks")
        m = torch.as_tensor(s["masks"])
        if tuple(m.shape) != (n, *hw):
            raise ValueError(f"samples[{i}]: masks have shape {tuple(m.shape)}; expected ({n}, {hw[0]}, {hw[1]}) (one per box)")
        rows.append(torch.cat([torch.full((n, 1), float(i)), s["labels"].reshape(n, 1).float(), s["boxes"].reshape(n, 4).float()], 1))
        masks.append(m.bool())
    return {"images": torch.stack([s["image"] for s in samples]), "targets": torch.cat(rows, 0),
            "masks": torch.cat(masks, 0), "meta": [s.get("meta", {}) for s in samples]}


__all__ = ["REAL_SEGMENTATION_DATASETS", "REAL_SPLITS", "collate_segmentation", "load_segmentation_split", "refusal_message"]
