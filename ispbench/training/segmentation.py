"""Instance segmentation as a training-kit task: embedded images with boxes and masks, and a frozen YOLO-seg loss.

POS-ISP's segmentation experiments (and AdaptiveISP's Table 2) train an ISP in front of a frozen
ultralytics YOLO11n-seg, its loss scaled by 0.01. :class:`SegmentationTask` gives a trainer what
:class:`~ispbench.training.tasks.DetectionTask` gives for detection (the
:class:`~ispbench.training.tasks.Task` interface): the number of images, a batch with targets and
instance masks, and the per-image loss of ISP outputs
(:meth:`ispbench.tasks.segmenter.FrozenSegmenter.per_image_loss`, x0.01 by default).

Only the embedded data has instance masks (``masks/{split}.npz``, written on first use for a
folder generated before them); the POS-ISP paper's LIS set is not supported yet.

Example:
    >>> task = SegmentationTask(DetectionSettings(n_train=8))        # doctest: +SKIP
    >>> batch = task.batch([0, 1]); batch.masks.shape                 # doctest: +SKIP
    torch.Size([5, 160, 160])
    >>> task.per_image_loss(isp(batch.images), batch).shape           # doctest: +SKIP
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ispbench.data import synthetic_detection
from ispbench.data.prepared import DatasetMissingError
from ispbench.ops.geometry import resize_image
from ispbench.tasks.segmenter import FrozenSegmenter
from ispbench.training.detection import DetectionSettings, TaskBatch, load_sample, make_targets

__all__ = ["SegmentationTask", "build_segmenter", "resize_masks", "segmentation_dataset"]


def build_segmenter(settings: DetectionSettings) -> FrozenSegmenter:
    """The frozen segmenter: ``detector_weights`` (empty = the shipped embedded YOLO11n-seg), or a random-init
    ``detector_yaml`` model (a ``-seg`` YAML) with ``detector_nc`` classes (0 = the embedded data's)."""
    if settings.detector_yaml:
        nc = settings.detector_nc or len(synthetic_detection.CLASS_NAMES)
        return FrozenSegmenter(None, model_yaml=settings.detector_yaml, nc=nc, imgsz=settings.imgsz, device=settings.device)
    return FrozenSegmenter(settings.detector_weights or None, imgsz=settings.imgsz, device=settings.device)


def segmentation_dataset(settings: DetectionSettings, split: str = "train", n_images: int | None = None) -> torch.utils.data.Dataset:
    """The embedded ``split`` of ``settings.light`` images with instance masks; only its first ``n_images``
    (default ``settings.n_train``; 0 = all).

    Raises:
        ValueError: ``settings.dataset`` names a real dataset (none has instance masks here).
        DatasetMissingError: the split is empty.
    """
    if settings.real_dataset:
        raise ValueError(f"dataset: the segmentation task needs instance masks, which only the embedded data has; got "
                         f"{settings.dataset!r} (use dataset='' or 'embedded'; LIS is not supported yet)")
    dataset = synthetic_detection.load_split(split, settings.light, root=settings.data_root or None, with_masks=True)
    n = settings.n_train if n_images is None else n_images
    if n and n < len(dataset):
        dataset = torch.utils.data.Subset(dataset, list(range(n)))
    if len(dataset) == 0:
        raise DatasetMissingError(f"the {split!r} split of the embedded data under data_root {settings.data_root!r} is empty: "
                                  "nothing to train on")
    return dataset


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, H, W)`` bool masks -> ``(N, size, size)`` bool, resized as the image is (area average when shrinking), ``>= 0.5``.

    Example:
        >>> resize_masks(torch.ones(2, 8, 8, dtype=torch.bool), 4).shape
        torch.Size([2, 4, 4])
    """
    if masks.ndim != 3:
        raise ValueError(f"masks: expected (N, H, W), got {tuple(masks.shape)}")
    if tuple(masks.shape[-2:]) == (size, size):
        return masks.bool()
    if len(masks) == 0:
        return torch.zeros(0, size, size, dtype=torch.bool)
    return resize_image(masks.float()[None], (size, size), "area")[0].ge(0.5)


class SegmentationTask:
    """Instance segmentation: a split of the embedded data with masks and the frozen segmenter.

    ``batch(indices)`` holds the linear images (resized to ``settings.imgsz``), their target rows
    and one ``(S, S)`` mask per row; ``per_image_loss(images (B, 3, S, S) sRGB, batch) -> (B,)`` is
    the segmenter's own loss of each image alone, x0.01
    (:meth:`~ispbench.tasks.segmenter.FrozenSegmenter.per_image_loss`; one criterion call per image).

    Args:
        settings: the data (``data_root``, ``light``, ``n_train``, ``imgsz``, ``device``) and the
            frozen network: ``detector_weights`` names the segmentation checkpoint (empty = the
            shipped ``ispbench/weights/embedded_yolo11n_seg.pt``), ``detector_yaml`` a ``-seg`` YAML.
        split: ``train``, ``val`` or ``test``.
        n_images: only the first ``n_images`` (default ``settings.n_train``; 0 = all).
    """

    name = "segmentation"

    def __init__(self, settings: DetectionSettings, split: str = "train", n_images: int | None = None) -> None:
        self.settings = settings
        self.dataset = segmentation_dataset(settings, split, n_images)
        self.model = build_segmenter(settings)

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: Sequence[int]) -> TaskBatch:
        size = self.settings.imgsz
        images, labels, masks = [], [], []
        for i in indices:
            item = self.dataset[int(i)]
            image, rows = load_sample((item,), 0, size)  # the item, read once
            images.append(image)
            labels.append(rows)
            masks.append(resize_masks(torch.as_tensor(item["masks"]), size))
        device = self.settings.device
        return TaskBatch(torch.stack(images).to(device), make_targets(labels).to(device), torch.cat(masks).to(device),
                         [int(i) for i in indices])

    def per_image_loss(self, images: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        if batch.masks is None:
            raise ValueError("batch: the segmentation loss needs batch.masks (N, S, S), one per target row; got None")
        return self.model.per_image_loss(images, batch.targets, batch.masks)
