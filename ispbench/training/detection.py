"""The detection-training kit shared by the AdaptiveISP trainer and the HPO / attention trainer.

An ISP trained for detection needs the same few things whatever its parameter model: the
training images with their boxes (:func:`train_dataset`, :func:`load_sample`), the frozen detector
that scores them (:func:`build_detector`), the ultralytics target rows of a batch
(:func:`make_targets`) and the learning-rate schedule of AdaptiveISP App. A.1
(:func:`learning_rate`). :class:`DetectionSettings` holds their settings; a trainer nests it in
its ``Args`` (the command line stays flat: ``--imgsz 160 --n-train 64``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ispbench.data.detection_sets import load_detection_split
from ispbench.data.prepared import DatasetMissingError
from ispbench.data.synthetic_detection import CLASS_NAMES
from ispbench.tasks.detector import FrozenDetector

#: Classes of the COCO-80 label set of the real detection datasets.
COCO_CLASSES = 80


@dataclass
class DetectionSettings:
    """Data and frozen detector of a detection-driven ISP trainer."""

    device: str = "cpu"
    """torch device of the trained nets, the ISP and the detector"""
    data_root: str = ""
    """root of the embedded detection data (empty = the package default), or of a prepared real dataset
    (with ``dataset``)"""
    dataset: str = ""
    """``""`` / ``embedded``: the embedded synthetic set; ``lod``, ``oneplus``, ``coco_raw``: that prepared real
    dataset under ``data_root`` (its ``train`` split, COCO-80 labels: use a COCO detector)"""
    light: str = "low"
    """``low`` or ``normal``: which embedded train split"""
    n_train: int = 0
    """use only the first ``n_train`` training images (0 = all)"""
    detector_weights: str = ""
    """frozen detector checkpoint (empty = ``ispbench/weights/embedded_yolo.pt``)"""
    detector_yaml: str = ""
    """build a randomly initialised detector from this ultralytics model YAML instead (tests, smoke)"""
    detector_nc: int = 0
    """number of classes of the YAML detector (0 = the data's class count)"""
    imgsz: int = 160
    """side of the square images the ISP processes and the detector sees (512 in the paper; 160 = the embedded
    detector's)"""

    @property
    def real_dataset(self) -> bool:
        """Whether the data is a prepared real dataset (COCO-80 labels), not the embedded set."""
        return bool(self.dataset) and self.dataset != "embedded"


@dataclass
class TaskBatch:
    """A batch of task samples.

    Attributes:
        images: ``(B, 3, S, S)`` linear camera RGB in [0, 1] (the ISP's input).
        targets: ``(N, 6)`` rows ``batch_index, class, cx, cy, w, h`` (normalised).
        masks: ``(N, S, S)`` bool instance masks, one per target row (segmentation), or ``None``.
        indices: the dataset indices of the ``B`` images.
    """

    images: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None
    indices: list[int]


def build_detector(settings: DetectionSettings) -> FrozenDetector:
    """The frozen detector: ``detector_weights`` (default the embedded one), or a random-init YAML model.

    A YAML model gets ``detector_nc`` classes, or the data's class count (80 for a real dataset,
    the embedded set's otherwise).
    """
    if settings.detector_yaml:
        nc = settings.detector_nc or (COCO_CLASSES if settings.real_dataset else len(CLASS_NAMES))
        return FrozenDetector(None, model_yaml=settings.detector_yaml, nc=nc, imgsz=settings.imgsz, device=settings.device)
    return FrozenDetector(settings.detector_weights or None, imgsz=settings.imgsz, device=settings.device)


def train_dataset(settings: DetectionSettings, split: str = "train", n_images: int | None = None) -> torch.utils.data.Dataset:
    """A split (default ``train``) of the embedded ``light`` images, or of the real ``dataset`` under ``data_root``.

    See :func:`ispbench.data.detection_sets.load_detection_split`; only the first ``n_images``
    items (default ``n_train``; 0 = all).
    """
    n = settings.n_train if n_images is None else n_images
    dataset = load_detection_split(settings.data_root, settings.dataset or "embedded", split, n, settings.imgsz,
                                   light=settings.light)
    if len(dataset) == 0:  # e.g. LOD prepared with --limit and no split files: its fallback puts every id in val
        raise DatasetMissingError(
            f"the {split!r} split of dataset {settings.dataset or 'embedded'!r} under data_root {settings.data_root!r} "
            "is empty: nothing to train on. See the prepared manifest.json's split_sizes; for LOD pass the "
            "authors' split files (`ispbench data prepare lod --root DIR --splits SPLITS_DIR`)."
        )
    return dataset


def load_sample(dataset, index: int, imgsz: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One dataset item -> (image (3, imgsz, imgsz) linear in [0, 1], labels (n, 5) ``class cx cy w h``)."""
    item = dataset[index]
    img = item["image"].float().unsqueeze(0)
    if img.shape[-2:] != (imgsz, imgsz):
        img = F.interpolate(img, size=(imgsz, imgsz), mode="bilinear", align_corners=False, antialias=True)
    boxes = torch.as_tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(item["labels"], dtype=torch.float32).reshape(-1, 1)
    return img[0].clamp(0, 1), torch.cat([labels, boxes], 1)


def make_targets(labels: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (n, 5) label tensors -> (N, 6) rows ``batch_index, class, cx, cy, w, h``.

    Example:
        >>> make_targets([torch.tensor([[1.0, 0.5, 0.5, 0.2, 0.2]]), torch.zeros(0, 5)]).shape
        torch.Size([1, 6])
    """
    rows = [torch.cat([torch.full((len(l), 1), float(i)), l], 1) for i, l in enumerate(labels)]
    return torch.cat(rows, 0) if rows else torch.zeros(0, 6)


def learning_rate(lr: float, iteration: int, iterations: int, decay: bool = True) -> float:
    """``lr * 0.1 ** (3 * iteration / iterations)`` (x0.1 per third of training, AdaptiveISP App. A.1), or ``lr``.

    Example:
        >>> round(learning_rate(1e-3, 50, 150), 10)
        0.0001
    """
    if not decay or iterations <= 0:
        return lr
    return lr * 0.1 ** (3.0 * iteration / iterations)


__all__ = ["COCO_CLASSES", "DetectionSettings", "TaskBatch", "build_detector", "learning_rate", "load_sample", "make_targets",
           "train_dataset"]
