"""mAP code checked against pycocotools and hand-computed cases."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from ispbench.tasks.map_eval import AUTHORS_EVAL, DetectionEvaluator, _ap_ultralytics, box_iou_xyxy, evaluate_map


def _synthetic(seed: int, n_images: int = 12, n_classes: int = 3, size=(120, 160)):
    """Ground truth (normalised) and noisy scored predictions (pixels) with false positives and misses."""
    rng = np.random.default_rng(seed)
    h, w = size
    gts, preds = [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 7))
        cls = rng.integers(0, n_classes, m)
        bw = rng.uniform(0.05, 0.5, m)
        bh = rng.uniform(0.05, 0.5, m)
        cx = rng.uniform(bw / 2, 1 - bw / 2)
        cy = rng.uniform(bh / 2, 1 - bh / 2)
        gt = np.stack([cls, cx, cy, bw, bh], 1) if m else np.zeros((0, 5))
        rows = []
        for k in range(m):
            if rng.random() < 0.2:  # miss
                continue
            for _dup in range(1 + int(rng.random() < 0.3)):  # sometimes a duplicate detection
                jitter = rng.normal(0, 0.08, 4)
                x1 = (cx[k] - bw[k] / 2 + jitter[0] * bw[k]) * w
                y1 = (cy[k] - bh[k] / 2 + jitter[1] * bh[k]) * h
                x2 = (cx[k] + bw[k] / 2 + jitter[2] * bw[k]) * w
                y2 = (cy[k] + bh[k] / 2 + jitter[3] * bh[k]) * h
                c = cls[k] if rng.random() > 0.1 else rng.integers(0, n_classes)  # wrong class sometimes
                rows.append([x1, y1, max(x2, x1 + 1), max(y2, y1 + 1), rng.uniform(0.05, 1.0), c])
        for _ in range(int(rng.integers(0, 4))):  # false positives
            x1, y1 = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
            rows.append(
                [x1, y1, x1 + rng.uniform(5, 60), y1 + rng.uniform(5, 60), rng.uniform(0.0, 0.7), rng.integers(0, n_classes)]
            )
        gts.append(gt)
        preds.append(np.array(rows, dtype=np.float64).reshape(-1, 6))
    return gts, preds, size


def _pycocotools_stats(gts, preds, size, n_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    h, w = size
    images, annotations, dets = [], [], []
    ann_id = 1
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        images.append({"id": i + 1, "width": w, "height": h})
        for c, cx, cy, bw, bh in g:
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {"id": ann_id, "image_id": i + 1, "category_id": int(c) + 1, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )
            ann_id += 1
        for x1, y1, x2, y2, s, c in p:
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    present = sorted({int(c) for g in gts for c in g[:, 0]})
    gt_json = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in present],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        # detections of a class absent from GT are dropped, as pycocotools' catIds exclude them
        coco_dt = coco.loadRes([d for d in dets if d["category_id"] - 1 in present])
        ev = COCOeval(coco, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco101_matches_pycocotools(seed):
    gts, preds, size = _synthetic(seed)
    ours = evaluate_map(preds, gts, size, method="coco101")
    stats = _pycocotools_stats(gts, preds, size, 3)
    assert ours["mAP@0.5:0.95"] == pytest.approx(stats[0], abs=1e-3)
    assert ours["mAP@0.5"] == pytest.approx(stats[1], abs=1e-3)
    assert ours["mAP@0.75"] == pytest.approx(stats[2], abs=1e-3)
    # Not a trivial case: partial scores.
    assert 0.2 < ours["mAP@0.5"] < 0.99


def test_coco101_respects_max_dets_100():
    # 150 detections on one image: only the best 100 per (image, class) count, as in pycocotools.
    rng = np.random.default_rng(5)
    gt = np.array([[0, 0.5, 0.5, 0.1, 0.1]] + [[0, x, 0.2, 0.05, 0.05] for x in np.linspace(0.05, 0.95, 20)])
    size = (200, 200)
    rows = []
    for _ in range(150):
        x1, y1 = rng.uniform(0, 180, 2)
        rows.append([x1, y1, x1 + 10, y1 + 10, rng.uniform(0.5, 1.0), 0])
    rows.append([90, 90, 110, 110, 0.01, 0])  # the only true positive, ranked last: cut by maxDets
    preds = [np.array(rows)]
    ours = evaluate_map(preds, [gt], size, method="coco101")
    stats = _pycocotools_stats([gt], preds, size, 1)
    assert ours["mAP@0.5"] == pytest.approx(stats[1], abs=1e-3)
    assert ours["mAP@0.5:0.95"] == pytest.approx(stats[0], abs=1e-3)


def test_authors_settings_constant():
    assert AUTHORS_EVAL == dict(conf=0.001, iou=0.6, imgsz=512, batch=1)


@pytest.mark.parametrize("method", ["coco101", "ultralytics"])
def test_perfect_predictions_score_one(method):
    gts, _, size = _synthetic(3)
    h, w = size
    preds = []
    for g in gts:
        rows = [[(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, 0.9, c] for c, cx, cy, bw, bh in g]
        preds.append(np.array(rows).reshape(-1, 6))
    r = evaluate_map(preds, gts, size, method=method)
    # Ultralytics' sentinels put precision 0 at recall 1, so the last trapezoid is half:
    # a perfect detector scores 0.995 there (the familiar ceiling of YOLO mAP50 logs).
    best = 1.0 if method == "coco101" else 0.995
    assert r["mAP@0.5"] == pytest.approx(best)
    assert r["mAP@0.75"] == pytest.approx(best)
    assert r["mAP@0.5:0.95"] == pytest.approx(best)
    assert all(v["AP@0.5:0.95"] == pytest.approx(best) for v in r["per_class"].values())


@pytest.mark.parametrize("method", ["coco101", "ultralytics"])
def test_no_predictions_score_zero(method):
    gts, _, size = _synthetic(4)
    r = evaluate_map([np.zeros((0, 6)) for _ in gts], gts, size, method=method)
    assert r["mAP@0.5"] == 0.0 and r["mAP@0.5:0.95"] == 0.0


def test_hand_computed_half_recall():
    # Two GT boxes of class 0; one exact detection (score 0.9) and one false positive (0.8).
    gt = [np.array([[0, 0.25, 0.25, 0.2, 0.2], [0, 0.75, 0.75, 0.2, 0.2]])]
    pred = [np.array([[15, 15, 35, 35, 0.9, 0], [60, 0, 80, 20, 0.8, 0]])]
    coco = evaluate_map(pred, gt, (100, 100), method="coco101")
    # COCO: precision 1 at recall thresholds 0..0.5 (51 of 101 points), 0 after.
    assert coco["mAP@0.5"] == pytest.approx(51 / 101)
    ultra = evaluate_map(pred, gt, (100, 100), method="ultralytics")
    # Ultralytics: envelope 1 on [0, 0.5], then 0; linear interpolation between the 0.5 and 0.51 points.
    x = np.linspace(0, 1, 101)
    y = np.interp(x, [0, 0.5, 0.5, 0.5, 1.0], [1, 1, 0, 0, 0])
    assert ultra["mAP@0.5"] == pytest.approx(float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2)))
    assert ultra["mAP@0.5"] == pytest.approx(0.5, abs=0.01)


def test_wrong_class_is_false_positive_and_absent_class_ignored():
    gt = [np.array([[1, 0.5, 0.5, 0.2, 0.2]])]
    pred = [np.array([[40, 40, 60, 60, 0.9, 0], [40, 40, 60, 60, 0.5, 1]])]
    r = evaluate_map(pred, gt, (100, 100), method="coco101")
    assert list(r["per_class"]) == [1]  # class 0 has no GT: not averaged
    assert r["mAP@0.5"] == pytest.approx(1.0)


def test_batch_format_targets_and_evaluator_agree():
    gts, preds, size = _synthetic(6, n_images=5)
    batch = np.concatenate([np.concatenate([np.full((len(g), 1), i), g], 1) for i, g in enumerate(gts)])
    a = evaluate_map(preds, gts, size)
    b = evaluate_map(preds, batch, size)
    ev = DetectionEvaluator()
    ev.update(preds[:2], gts[:2], size)
    ev.update(preds[2:], gts[2:], [size] * 3)
    c = ev.compute()
    assert a["mAP@0.5:0.95"] == b["mAP@0.5:0.95"] == c["mAP@0.5:0.95"]
    assert a["method"] == "ultralytics"


def test_bad_inputs_refused():
    with pytest.raises(ValueError, match="method"):
        evaluate_map([np.zeros((0, 6))], [np.zeros((0, 5))], (10, 10), method="voc")
    with pytest.raises(ValueError, match=r"predictions\[0\]"):
        evaluate_map([np.zeros((3, 4))], [np.zeros((0, 5))], (10, 10))
    with pytest.raises(ValueError, match="targets"):
        evaluate_map([np.zeros((0, 6))], np.zeros((2, 5)), (10, 10))
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_map([np.zeros((0, 6))], [np.zeros((0, 5))] * 2, (10, 10))


def test_box_iou():
    iou = box_iou_xyxy(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


@pytest.mark.parametrize("seed", [0, 1])
def test_ultralytics_method_matches_ultralytics_metrics(seed):
    """Our ``method="ultralytics"`` against ultralytics' own matcher and ``ap_per_class``."""
    import torch

    from ispbench.offline import configure_ultralytics

    configure_ultralytics()
    from types import SimpleNamespace

    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class

    gts, preds, size = _synthetic(seed)
    h, w = size
    iouv = torch.linspace(0.5, 0.95, 10)
    fake = SimpleNamespace(iouv=iouv)
    tps, confs, pcls, tcls = [], [], [], []
    for g, p in zip(gts, preds, strict=True):
        p = p[np.argsort(-p[:, 4], kind="mergesort")]
        gb = np.stack([(g[:, 1] - g[:, 3] / 2) * w, (g[:, 2] - g[:, 4] / 2) * h,
                       (g[:, 1] + g[:, 3] / 2) * w, (g[:, 2] + g[:, 4] / 2) * h], 1) if len(g) else np.zeros((0, 4))
        iou = torch.from_numpy(box_iou_xyxy(gb, p[:, :4]))
        tp = BaseValidator.match_predictions(fake, torch.from_numpy(p[:, 5]), torch.from_numpy(g[:, 0]), iou)
        tps.append(tp.numpy())
        confs.append(p[:, 4])
        pcls.append(p[:, 5])
        tcls.append(g[:, 0])
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))[5]
    ours = evaluate_map(preds, gts, size, method="ultralytics")
    assert ours["mAP@0.5"] == pytest.approx(ap[:, 0].mean(), abs=1e-9)
    assert ours["mAP@0.75"] == pytest.approx(ap[:, 5].mean(), abs=1e-9)
    assert ours["mAP@0.5:0.95"] == pytest.approx(ap.mean(), abs=1e-9)


def _ap_one_threshold_at_a_time(tp_sorted: np.ndarray, n_gt: int) -> np.ndarray:
    """The textbook loop over thresholds that the vectorised AP replaced."""
    grid = np.linspace(0.0, 1.0, 101)
    out = np.zeros(tp_sorted.shape[1])
    tps = np.cumsum(tp_sorted, axis=0, dtype=np.float64)
    fps = np.cumsum(~tp_sorted, axis=0, dtype=np.float64)
    for k in range(tp_sorted.shape[1]):
        recall, precision = tps[:, k] / (n_gt + 1e-16), tps[:, k] / (tps[:, k] + fps[:, k])
        mrec = np.concatenate(([0.0], recall, [recall[-1]], [1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([1.0], precision, [0.0], [0.0]))[::-1])[::-1]
        y = np.interp(grid, mrec, mpre)
        out[k] = np.sum((grid[1:] - grid[:-1]) * (y[1:] + y[:-1]) / 2.0)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_all_thresholds_at_once_equal_one_at_a_time(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    tp = rng.random((n, 10)) < np.linspace(0.9, 0.1, 10)
    n_gt = int(tp[:, 0].sum()) + int(rng.integers(0, 20))
    np.testing.assert_allclose(_ap_ultralytics(tp, n_gt), _ap_one_threshold_at_a_time(tp, n_gt), rtol=0, atol=1e-12)
    assert _ap_ultralytics(np.zeros((0, 10), bool), 3).tolist() == [0.0] * 10
