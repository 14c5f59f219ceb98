"""The segmentation task of the training kit: batches with masks, the frozen YOLO-seg loss, the task registry."""

from __future__ import annotations

import pytest
import torch

from ispbench.data import synthetic_detection as sd
from ispbench.training.detection import DetectionSettings
from ispbench.training.segmentation import SegmentationTask, resize_masks
from ispbench.training.tasks import TASKS, build_task

TINY = sd.GeneratorConfig(seed=7, image_size=64, n_train=5, n_val=2, n_test=1, min_size=0.2, max_size=0.45)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return sd.generate(TINY, root=tmp_path_factory.mktemp("seg_task"))


def _settings(tiny_dir, **kw):
    return DetectionSettings(data_root=str(tiny_dir), light="low", detector_yaml="yolo11n-seg.yaml", imgsz=kw.pop("imgsz", 64), **kw)


def test_batch_holds_images_targets_and_one_mask_per_row(one_thread, tiny_dir):
    task = SegmentationTask(_settings(tiny_dir, n_train=4))
    assert task.name == "segmentation" and len(task) == 4
    batch = task.batch([2, 0, 3])
    n = sum(len(task.dataset[i]["labels"]) for i in (2, 0, 3))
    assert batch.images.shape == (3, 3, 64, 64) and batch.targets.shape == (n, 6)
    assert batch.masks.shape == (n, 64, 64) and batch.masks.dtype == torch.bool
    assert batch.indices == [2, 0, 3]
    first = batch.targets[:, 0] == 0  # rows of image 0 (dataset item 2), in label order
    assert torch.equal(batch.masks[first], task.dataset[2]["masks"])
    loss = task.per_image_loss(batch.images, batch)
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    with pytest.raises(ValueError, match="batch.masks"):
        task.per_image_loss(batch.images, batch.__class__(batch.images, batch.targets, None, batch.indices))


def test_masks_are_resized_with_the_image(one_thread, tiny_dir):
    task = build_task("segmentation", _settings(tiny_dir, imgsz=32), split="val")
    assert isinstance(task, SegmentationTask) and len(task) == TINY.n_val and "segmentation" in TASKS
    batch = task.batch([0])
    full = task.dataset[0]["masks"]
    assert batch.images.shape == (1, 3, 32, 32) and batch.masks.shape == (len(full), 32, 32)
    torch.testing.assert_close(batch.masks.float().sum((1, 2)), full.float().sum((1, 2)) / 4, atol=6.0, rtol=0.1)
    assert torch.equal(resize_masks(full, 64), full)


def test_a_real_dataset_is_refused(tiny_dir):
    with pytest.raises(ValueError, match="instance masks"):
        SegmentationTask(DetectionSettings(data_root=str(tiny_dir), dataset="lod", detector_yaml="yolo11n-seg.yaml"))
