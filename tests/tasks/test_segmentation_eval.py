"""Segmentation evaluation: canvas geometry of masks, perfect predictions score 100, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.data import synthetic_detection as sd
from ispbench.ops.geometry import boxes_to_letterbox, letterbox
from ispbench.tasks.detection_eval import PAD_VALUE
from ispbench.tasks.map_eval import evaluate_map_from_iou
from ispbench.tasks.segmentation_eval import evaluate_isp_segmentation, masks_to_letterbox
from ispbench.tasks.segmenter import FrozenSegmenter

TINY = sd.GeneratorConfig(seed=5, image_size=64, n_train=3, n_val=4, n_test=1, min_size=0.2, max_size=0.45)


@pytest.fixture(scope="module")
def val_with_masks(tmp_path_factory):
    path = sd.generate(TINY, root=tmp_path_factory.mktemp("seg_eval"))
    return sd.load_split("val", "low", root=path, with_masks=True)


class OracleSegmenter(FrozenSegmenter):
    """Predicts exactly the ground truth (boxes and masks on the canvas) of the items, in dataset order."""

    def __init__(self, dataset, imgsz: int = 64) -> None:
        super().__init__(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=imgsz)
        self.truth = []
        for i in range(len(dataset)):
            item = dataset[i]
            _, layout = letterbox(item["image"][None], imgsz, pad_value=PAD_VALUE, rect=True, stride=32)
            cx, cy, w, h = (boxes_to_letterbox(item["boxes"], layout) * torch.tensor(layout.canvas[::-1] * 2)).unbind(1)
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
            self.truth.append((boxes, item["labels"].float(), masks_to_letterbox(item["masks"], layout)))
        self.next = 0

    def detect(self, images, conf=0.001, iou=0.6, max_det=300, *, multi_label=True, outputs=None):
        out = []
        for _ in range(len(images)):
            boxes, labels, _ = self.truth[self.next]
            n = len(labels)
            index = torch.full((n, self.nm), float(self.next))
            index[:, 1] = torch.arange(n, dtype=torch.float32)
            out.append(torch.cat([boxes, torch.linspace(0.9, 0.5, n)[:, None], labels[:, None], index], 1))
            self.next += 1
        return out, torch.zeros(len(images), self.nm, images.shape[-2] // 4, images.shape[-1] // 4)

    def masks_of(self, proto, detections, shape):
        masks = [self.truth[int(d[6])][2][int(d[7])] for d in detections]
        assert all(m.shape == tuple(shape) for m in masks)
        return torch.stack(masks) if masks else torch.zeros(0, *shape, dtype=torch.bool)


def test_masks_to_letterbox_places_masks_like_the_image():
    image = torch.zeros(1, 3, 32, 64)
    image[..., 8:16, 10:30] = 1.0
    padded, layout = letterbox(image, 64, pad_value=0.0, rect=True, stride=32)
    mask = torch.zeros(1, 32, 64, dtype=torch.bool)
    mask[0, 8:16, 10:30] = True
    canvas = masks_to_letterbox(mask, layout)
    assert canvas.shape == (1, *padded.shape[-2:])
    torch.testing.assert_close(canvas[0].float(), padded[0, 0])
    half = masks_to_letterbox(mask, letterbox(image, 32, pad_value=0.0)[1])  # shrunk 2x, area average
    assert half.shape == (1, 32, 32) and half.sum() == 4 * 10


def test_perfect_predictions_score_100_in_the_items_pixels(one_thread, val_with_masks):
    oracle = OracleSegmenter(val_with_masks)
    res = evaluate_isp_segmentation(lambda x: x.clamp(0, 1), val_with_masks, oracle, batch_size=3, method="coco101")
    assert res["mAP@0.5"] == pytest.approx(100.0) and res["mAP@0.5:0.95"] == pytest.approx(100.0)
    assert res["box"]["mAP@0.5:0.95"] == pytest.approx(100.0)
    n_objects = [len(val_with_masks[i]["labels"]) for i in range(len(val_with_masks))]
    for i, n in enumerate(n_objects):
        assert res["predictions"][i].shape == (n, 6)
        np.testing.assert_allclose(np.diag(res["mask_ious"][i]), 1.0)  # masks mapped back to the 64 x 64 items exactly
    assert len(res["per_image_loss"]) == len(val_with_masks) and np.isfinite(res["mean_loss"])
    # the per-image record gives the mask mAP back
    again = evaluate_map_from_iou([p[:, 4] for p in res["predictions"]], [p[:, 5] for p in res["predictions"]],
                                  [g[:, 0] for g in res["ground_truth"]], res["mask_ious"], method="coco101")
    assert 100 * again["mAP@0.5:0.95"] == pytest.approx(res["mAP@0.5:0.95"])
    oracle.next = 0
    assert evaluate_isp_segmentation(None, val_with_masks, oracle)["mAP@0.5"] == pytest.approx(99.5)  # ultralytics AP


def test_a_random_segmenter_runs_and_items_without_masks_are_refused(one_thread, val_with_masks):
    torch.manual_seed(0)
    seg = FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=64)
    res = evaluate_isp_segmentation(None, torch.utils.data.Subset(val_with_masks, [0, 1]), seg)
    assert 0.0 <= res["mAP@0.5"] <= 100.0 and len(res["predictions"]) == 2
    plain = sd.EmbeddedDetection(val_with_masks.path, "val", "low")
    with pytest.raises(ValueError, match="with_masks=True"):
        evaluate_isp_segmentation(None, plain, seg)
    with pytest.raises(ValueError, match="multiple of the segmenter stride"):
        evaluate_isp_segmentation(None, val_with_masks, seg, imgsz=70)
