"""Mask mAP checked against pycocotools (``iouType="segm"``), ultralytics' AP and hand-computed cases."""

from __future__ import annotations

import contextlib
import io

import cv2
import numpy as np
import pytest

from ispbench.tasks.map_eval import evaluate_map_from_iou
from ispbench.tasks.mask_eval import MaskEvaluator, evaluate_mask_map, mask_iou

SIZE = (48, 64)


def _shape(rng: np.random.Generator, size=SIZE) -> np.ndarray:
    """A random ellipse, rectangle or ring (H, W) bool mask."""
    h, w = size
    m = np.zeros(size, np.uint8)
    cx, cy = int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8))
    a, b = int(rng.integers(3, 14)), int(rng.integers(3, 14))
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(m, (cx, cy), (a, b), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        cv2.rectangle(m, (cx - a, cy - b), (cx + a, cy + b), 1, -1)
    else:
        cv2.circle(m, (cx, cy), max(a, 4), 1, -1)
        cv2.circle(m, (cx, cy), max(a, 4) // 2, 0, -1)
    return m.astype(bool)


def _perturbed(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask shifted by a few pixels and grown or shrunk: IoUs spread over 0.3-1."""
    out = np.roll(mask, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1)).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    step = rng.integers(3)
    if step == 1:
        out = cv2.dilate(out, k)
    elif step == 2 and out.sum() > 30:
        out = cv2.erode(out, k)
    return out.astype(bool)


def _synthetic(seed: int, n_images: int = 10, n_classes: int = 3):
    """Ground truth and scored predictions (misses, duplicates, wrong classes, false positives)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 6))
        g_masks = np.stack([_shape(rng) for _ in range(m)]) if m else np.zeros((0, *SIZE), bool)
        g_cls = rng.integers(0, n_classes, m)
        masks, scores, classes = [], [], []
        for k in range(m):
            if rng.random() < 0.2:  # miss
                continue
            for _dup in range(1 + int(rng.random() < 0.3)):
                masks.append(_perturbed(g_masks[k], rng))
                classes.append(g_cls[k] if rng.random() > 0.1 else rng.integers(0, n_classes))
                scores.append(rng.uniform(0.05, 1.0))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            masks.append(_shape(rng))
            classes.append(rng.integers(0, n_classes))
            scores.append(rng.uniform(0.0, 0.7))
        gts.append({"masks": g_masks, "classes": g_cls})
        preds.append({"masks": np.array(masks, bool).reshape(-1, *SIZE), "scores": np.array(scores),
                      "classes": np.array(classes, np.int64)})
    return gts, preds


def _pycocotools_segm_stats(gts, preds):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    h, w = SIZE
    images, annotations, dets = [], [], []
    ann_id = 1
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        images.append({"id": i + 1, "width": w, "height": h})
        for m, c in zip(g["masks"], g["classes"], strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            annotations.append({"id": ann_id, "image_id": i + 1, "category_id": int(c) + 1, "segmentation": rle,
                                "area": float(m.sum()), "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
            ann_id += 1
        for m, s, c in zip(p["masks"], p["scores"], p["classes"], strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "segmentation": rle, "score": float(s)})
    present = sorted({int(c) for g in gts for c in g["classes"]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": c + 1, "name": str(c)} for c in present]}
        coco.createIndex()
        coco_dt = coco.loadRes([d for d in dets if d["category_id"] - 1 in present])
        ev = COCOeval(coco, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco101_matches_pycocotools_segm(seed):
    gts, preds = _synthetic(seed)
    ours = evaluate_mask_map(preds, gts, method="coco101")
    stats = _pycocotools_segm_stats(gts, preds)
    assert ours["mAP@0.5:0.95"] / 100 == pytest.approx(stats[0], abs=1e-6)
    assert ours["mAP@0.5"] / 100 == pytest.approx(stats[1], abs=1e-6)
    assert ours["mAP@0.75"] / 100 == pytest.approx(stats[2], abs=1e-6)
    assert 20 < ours["mAP@0.5"] < 99  # not a trivial case
    assert ours["mAP@0.75"] < ours["mAP@0.5"]


@pytest.mark.parametrize("seed", [0, 1])
def test_ultralytics_method_matches_ultralytics_ap(seed):
    """``method="ultralytics"`` against ultralytics' own matcher, mask IoU and ``ap_per_class``."""
    import torch

    from ispbench.offline import configure_ultralytics

    configure_ultralytics()
    from types import SimpleNamespace

    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class
    from ultralytics.utils.metrics import mask_iou as ultralytics_mask_iou

    gts, preds = _synthetic(seed)
    fake = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    tps, confs, pcls, tcls = [], [], [], []
    for g, p in zip(gts, preds, strict=True):
        order = np.argsort(-p["scores"], kind="mergesort")
        gm = torch.from_numpy(g["masks"].reshape(len(g["masks"]), SIZE[0] * SIZE[1])).float()
        pm = torch.from_numpy(p["masks"][order].reshape(len(order), SIZE[0] * SIZE[1])).float()
        iou = ultralytics_mask_iou(gm, pm) if len(gm) and len(pm) else torch.zeros(len(gm), len(pm))
        tp = BaseValidator.match_predictions(fake, torch.from_numpy(p["classes"][order]), torch.from_numpy(g["classes"]), iou)
        tps.append(tp.numpy())
        confs.append(p["scores"][order])
        pcls.append(p["classes"][order])
        tcls.append(g["classes"])
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))[5]
    ours = evaluate_mask_map(preds, gts)
    assert ours["mAP@0.5"] == pytest.approx(100 * ap[:, 0].mean(), abs=1e-6)
    assert ours["mAP@0.75"] == pytest.approx(100 * ap[:, 5].mean(), abs=1e-6)
    assert ours["mAP@0.5:0.95"] == pytest.approx(100 * ap.mean(), abs=1e-6)


def test_mask_iou_hand_computed_and_refusals():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2] = True  # 8 pixels
    b = np.zeros((2, 4, 4), bool)
    b[0, :, :2] = True  # 8 pixels, 4 shared with a[0]
    np.testing.assert_allclose(mask_iou(a, b), [[4 / 12, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="one size"):
        mask_iou(a, np.zeros((1, 4, 5), bool))
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        mask_iou(a[0], b)


def test_hand_computed_half_recall_and_wrong_class():
    m = np.zeros((2, 8, 8), bool)
    m[0, :4, :4] = True
    m[1, 4:, 4:] = True
    gt = [{"masks": m, "classes": np.array([0, 0])}]
    # one perfect detection of object 0, object 1 missed, a class-1 detection on object 1 (class 1 has no GT: ignored)
    pred = [{"masks": m, "scores": np.array([0.9, 0.8]), "classes": np.array([0, 1])}]
    r = evaluate_mask_map(pred, gt, method="coco101")
    assert r["mAP@0.5"] == pytest.approx(100 * 51 / 101)  # precision 1 up to recall 0.5: 51 of 101 points
    assert r["classes"] == [0]


def test_perfect_and_empty_predictions():
    gts, _ = _synthetic(3)
    perfect = [{"masks": g["masks"], "scores": np.linspace(1, 0.5, len(g["classes"])), "classes": g["classes"]} for g in gts]
    assert evaluate_mask_map(perfect, gts, method="coco101")["mAP@0.5:0.95"] == pytest.approx(100.0)
    assert evaluate_mask_map(perfect, gts)["mAP@0.5:0.95"] == pytest.approx(99.5)  # ultralytics' sentinel: 0.995
    empty = [{"masks": np.zeros((0, *SIZE), bool), "scores": np.zeros(0), "classes": np.zeros(0)} for _ in gts]
    assert evaluate_mask_map(empty, gts)["mAP@0.5"] == 0.0


def test_evaluator_accumulates_like_one_call_and_matches_precomputed_iou():
    gts, preds = _synthetic(4)
    ev = MaskEvaluator(method="coco101")
    ev.update(preds[:4], gts[:4])
    ev.update(preds[4:], gts[4:])
    whole = evaluate_mask_map(preds, gts, method="coco101")
    assert ev.compute()["mAP@0.5:0.95"] == pytest.approx(whole["mAP@0.5:0.95"], abs=1e-12)
    direct = evaluate_map_from_iou([p["scores"] for p in preds], [p["classes"] for p in preds], [g["classes"] for g in gts],
                                   [mask_iou(p["masks"], g["masks"]) for p, g in zip(preds, gts, strict=True)],
                                   method="coco101")
    assert 100 * direct["mAP@0.5:0.95"] == pytest.approx(whole["mAP@0.5:0.95"], abs=1e-9)


def test_bad_inputs_refused():
    with pytest.raises(ValueError, match="predictions\\[0\\]"):
        evaluate_mask_map([{"masks": np.zeros((1, 4, 4))}], [{"masks": np.zeros((0, 4, 4)), "classes": []}])
    with pytest.raises(ValueError, match="targets\\[0\\]"):
        evaluate_mask_map([{"masks": np.zeros((0, 4, 4)), "scores": [], "classes": []}], [{"masks": np.zeros((1, 4, 4))}])
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_mask_map([], [{"masks": np.zeros((0, 4, 4)), "classes": []}])
    with pytest.raises(ValueError, match="method"):
        MaskEvaluator(method="voc")
