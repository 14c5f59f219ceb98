"""Which detection data a run uses: an embedded split or a prepared real dataset, by name.

Trainers and notebooks call :func:`load_detection_split` so that ``data_root`` / ``dataset`` mean
the same everywhere (empty ``data_root``: the embedded synthetic set).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ispbench.data import get_dataset, synthetic_detection
from ispbench.data.prepared import DatasetMissingError, prepare_command


def embedded_split(split: str = "test", light: str = "low", data_root: str = "", n_images: int = 0, *,
                   with_masks: bool = False):
    """The embedded split, optionally only its first ``n_images`` items (with instance ``masks`` when asked)."""
    masks = {"with_masks": True} if with_masks else {}  # detection callers keep load_split's two-argument form
    ds = synthetic_detection.load_split(split, light, root=data_root or None, **masks)
    if n_images and n_images < len(ds):
        ds = torch.utils.data.Subset(ds, list(range(n_images)))
    return ds


#: Real detection datasets the notebooks can evaluate on (``ispbench data prepare NAME``).
REAL_DETECTION_DATASETS = ("lod", "oneplus", "coco_raw")
#: Embedded split name -> the prepared real split the paper evaluates on (LOD "All", all OnePlus
#: images, COCO val2017); ``train`` / ``val`` / ``all`` pass through unchanged.
REAL_SPLITS = {"test": "all"}


def load_detection_split(data_root: str = "", dataset: str = "lod", split: str = "test", n_images: int = 0,
                      imgsz: int = 160, *, light: str = "low", require_real: bool = False):
    """The one place trainers and notebooks pick their detection data.

    * ``data_root`` empty, or ``dataset == "embedded"``: the embedded synthetic split ``split``
      (``train`` / ``val`` / ``test``) of ``light`` images (``data_root`` then, if given, is the
      embedded data's root).
    * otherwise: the prepared real dataset ``dataset`` (``lod``, ``oneplus``, ``coco_raw``) under
      ``data_root`` via :func:`ispbench.data.get_dataset`, letterboxed to ``imgsz``; ``split`` is
      mapped with :data:`REAL_SPLITS` (``test`` -> ``all``, the paper's evaluation set). Items hold
      COCO-80 class ids: score them with a COCO-trained detector (e.g. YOLOv3u weights), see
      :func:`check_detector_classes`.

    ``n_images`` > 0 keeps the first ``n_images`` items. ``require_real`` (the ``paper`` profile)
    refuses the embedded data instead of falling back to it. Items are ``{"image" (3, S, S) linear,
    "boxes" (N, 4) cx cy w h, "labels" (N,), ...}`` (the format of
    :func:`ispbench.data.prepared.collate_detection` and :func:`ispbench.tasks.detection_eval.evaluate_isp`).

    Raises:
        DatasetMissingError: ``data_root`` does not exist (the message names the path and the
            ``ispbench data prepare`` command) or was never prepared; or ``require_real`` with an
            empty ``data_root`` or ``dataset == "embedded"``.
        ValueError: an unknown ``dataset``.

    Example:
        >>> ds = load_detection_split("", split="val")                      # embedded low-light val
        >>> ds = load_detection_split("~/data/LOD", "lod", "test", 0, 512)  # doctest: +SKIP
    """
    if not data_root or dataset == "embedded":
        if require_real:
            raise DatasetMissingError(refusal_message(data_root, dataset))
        return embedded_split(split, light, data_root, n_images)
    if dataset not in REAL_DETECTION_DATASETS:
        raise ValueError(f"dataset: expected 'embedded' or one of {REAL_DETECTION_DATASETS}, got {dataset!r}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetMissingError(
            f"data_root {root} does not exist (dataset {dataset!r}). Download the dataset (data_cards/{dataset}.md) "
            f"and prepare it once with `{prepare_command(dataset, root)}`, or leave data_root empty for the embedded data."
        )
    real_split = REAL_SPLITS.get(split, split)
    return get_dataset(dataset, root, split=real_split, size=int(imgsz), limit=int(n_images) if n_images else None)


def refusal_message(data_root: str, dataset: str, profile: str = "paper") -> str:
    """Why the ``paper`` profile refuses the embedded detection data, and what to do instead."""
    real = dataset if dataset in REAL_DETECTION_DATASETS else "lod"
    what = "dataset is 'embedded'" if dataset == "embedded" and data_root else "data_root is empty"
    return (f"the {profile} profile needs a real detection dataset but {what}: no fallback to the embedded "
            f"data. Prepare it once with `{prepare_command(real, 'DIR')}` (see data_cards/{real}.md) and pass "
            f"data_root=DIR with dataset={real!r} (e.g. `ispbench run NOTEBOOK --profile {profile} -p data_root DIR`).")


def check_detector_classes(detector, data_root: str = "", dataset: str = "lod") -> None:
    """Refuse to score real (COCO-80 labelled) data with a detector that has not 80 classes.

    The shipped embedded detector knows the embedded data's classes only; pass a COCO-trained
    ``detector_weights`` (e.g. YOLOv3u) when ``data_root`` is set.
    """
    if not data_root or dataset == "embedded":
        return
    nc = int(getattr(detector, "nc", 80))
    if nc != 80:
        raise ValueError(
            f"detector_weights: the {dataset!r} labels are COCO-80 class ids but the detector has {nc} classes; "
            "pass a COCO-trained detector (e.g. a local YOLOv3u .pt file) as detector_weights"
        )
