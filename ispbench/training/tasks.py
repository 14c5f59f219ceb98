"""One interface for the tasks an ISP is trained for: a split of images with their targets, and a frozen task loss.

A trainer that optimises an ISP through a frozen task network (POS-ISP, ReconfigISP) needs only
three things from the task: how many training images there are, a batch of them with their
targets, and the per-image loss of ISP outputs against those targets. :class:`DetectionTask`
gives them for detection (boxes, the frozen YOLO detector of :mod:`ispbench.training.detection`);
:class:`ispbench.training.segmentation.SegmentationTask` for instance segmentation (boxes and
instance masks, a frozen YOLO-seg model). :func:`build_task` picks one by name:

    >>> task = build_task("detection", DetectionSettings())            # doctest: +SKIP
    >>> batch = task.batch([0, 1])                                     # doctest: +SKIP
    >>> task.per_image_loss(isp(batch.images), batch).shape            # doctest: +SKIP
    torch.Size([2])
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from ispbench.training.detection import (
    DetectionSettings,
    TaskBatch,
    build_detector,
    load_sample,
    make_targets,
    train_dataset,
)
from ispbench.training.segmentation import SegmentationTask

#: The task names :func:`build_task` knows.
TASKS: tuple[str, ...] = ("detection", "segmentation")


class Task(Protocol):
    """What a trainer needs from a task (see the module docstring)."""

    name: str
    model: torch.nn.Module

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> TaskBatch: ...

    def per_image_loss(self, images: torch.Tensor, batch: TaskBatch) -> torch.Tensor: ...


class DetectionTask:
    """Detection: a split of :func:`~ispbench.training.detection.train_dataset` and the frozen detector.

    ``per_image_loss(images (B, 3, S, S) sRGB, batch) -> (B,)``: the detector's own loss of each image
    alone (:meth:`ispbench.tasks.detector.FrozenDetector.per_image_loss`).
    """

    name = "detection"

    def __init__(self, settings: DetectionSettings, split: str = "train", n_images: int | None = None) -> None:
        self.settings = settings
        self.dataset = train_dataset(settings, split=split, n_images=n_images)
        self.model = build_detector(settings)

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: Sequence[int]) -> TaskBatch:
        samples = [load_sample(self.dataset, int(i), self.settings.imgsz) for i in indices]
        images = torch.stack([s[0] for s in samples]).to(self.settings.device)
        targets = make_targets([s[1] for s in samples]).to(self.settings.device)
        return TaskBatch(images, targets, None, [int(i) for i in indices])

    def per_image_loss(self, images: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        return self.model.per_image_loss(images, batch.targets)


def build_task(name: str, settings: DetectionSettings, split: str = "train", n_images: int | None = None) -> Task:
    """The ``name`` task (:data:`TASKS`) on ``split`` of the data ``settings`` names.

    For ``segmentation``, ``settings.detector_weights`` is the frozen segmentation model's file (empty =
    the shipped embedded YOLO11n-seg) and ``detector_yaml`` a ``-seg`` model YAML.
    """
    if name == "detection":
        return DetectionTask(settings, split, n_images)
    if name == "segmentation":
        return SegmentationTask(settings, split, n_images)
    raise ValueError(f"task must be one of {list(TASKS)}, got {name!r}")


__all__ = ["TASKS", "DetectionTask", "Task", "TaskBatch", "build_task"]
