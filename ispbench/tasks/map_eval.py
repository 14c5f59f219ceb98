"""Detection mean average precision (mAP), written for ispbench and checked against pycocotools.

Two definitions of per-class average precision (AP) are offered, selected by ``method``:

``"ultralytics"`` (default; what AdaptiveISP's authors report, and what the notebooks use)
    Matching, per image: detections in descending score order each claim the unclaimed
    ground-truth box (GT) of the same class with the highest IoU, if that IoU reaches the
    threshold. No cap on detections per image beyond the NMS ``max_det``. AP: the precision
    envelope of the precision/recall curve, with sentinels ``(recall 0, precision 1)`` and
    ``(recall 1, precision 0)`` appended, linearly interpolated at 101 recall points
    ``0, 0.01, ..., 1`` and integrated with the trapezoid rule. Because the sentinel puts
    precision 0 at recall 1, a perfect detector scores 0.995, not 1 (as in every ultralytics
    log). (The authors' vendored YOLOv3
    code let each detection take only its single best-IoU GT and counted it a false positive
    if that GT was taken; modern ultralytics, and this module, fall back to the next best
    unclaimed GT. The two differ only on crowded scenes.)

``"coco101"`` (pycocotools ``COCOeval``, iouType ``bbox``, area range ``all``, no crowd)
    Matching as above but with at most ``max_dets`` (100) highest-scored detections per image
    and class. AP: the precision envelope read off (step, no interpolation) at the first
    point whose recall reaches each of 101 recall thresholds ``0, 0.01, ..., 1`` (0 where the
    recall is never reached), averaged. This reproduces ``COCOeval.stats[0:3]`` to < 1e-3
    (``tests/tasks/test_map_eval.py``).

Both average AP over the classes that have at least one GT box (a class with GT and no
detection scores 0; a class with detections but no GT is left out). ``mAP@0.5:0.95`` is the mean
over the 10 IoU thresholds ``0.5, 0.55, ..., 0.95``.

Boxes: predictions ``(n, 6)`` rows ``x1, y1, x2, y2, score, class`` in pixels; ground truth
per image ``(m, 5)`` rows ``class, cx, cy, w, h`` normalised to [0, 1] (the ispbench in-memory
convention), converted to pixels with the image size. IoU is invariant to scaling the axes, so
pixel vs normalised only matters for reporting.

Example:
    >>> import numpy as np
    >>> gt = [np.array([[0, 0.5, 0.5, 0.2, 0.2]])]
    >>> pred = [np.array([[40.0, 40.0, 60.0, 60.0, 0.9, 0]])]
    >>> round(evaluate_map(pred, gt, image_size=(100, 100), method="coco101")["mAP@0.5"], 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The authors' evaluation settings (AdaptiveISP official code): confidence threshold, NMS IoU,
#: letterboxed image size, batch size. ``predict`` and ``evaluate_isp`` default to these.
AUTHORS_EVAL = dict(conf=0.001, iou=0.6, imgsz=512, batch=1)

#: COCO IoU thresholds 0.5:0.05:0.95.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)

METHODS = ("ultralytics", "coco101")

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of axis-aligned boxes.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2``.
        b: ``(M, 4)`` boxes ``x1, y1, x2, y2``.

    Returns:
        ``(N, M)`` float64 IoU (0 where the union is empty).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _split_targets(targets: Any, n_images: int) -> list[np.ndarray]:
    """Targets as a per-image list of ``(m, 5)`` arrays ``class, cx, cy, w, h``."""
    if isinstance(targets, (list, tuple)):
        if len(targets) != n_images:
            raise ValueError(
                f"targets: a list needs one entry per image ({n_images} predictions), got {len(targets)}"
            )
        out = []
        for i, t in enumerate(targets):
            t = _to_numpy(t)
            if t.size == 0:
                t = t.reshape(0, 5)
            if t.ndim != 2 or t.shape[1] != 5:
                raise ValueError(
                    f"targets[{i}]: expected (m, 5) rows class, cx, cy, w, h (normalised), got shape {t.shape}"
                )
            out.append(t)
        return out
    t = _to_numpy(targets)
    if t.size == 0:
        t = t.reshape(0, 6)
    if t.ndim != 2 or t.shape[1] != 6:
        raise ValueError(
            "targets: expected a list of (m, 5) arrays or one (N, 6) array with rows "
            f"batch_index, class, cx, cy, w, h (normalised); got shape {t.shape}"
        )
    idx = t[:, 0].astype(np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= n_images):
        raise ValueError(f"targets: batch_index must be in [0, {n_images}), got range [{idx.min()}, {idx.max()}]")
    return [t[idx == i, 1:] for i in range(n_images)]


def _image_sizes(image_size: Any, n_images: int) -> list[tuple[float, float]]:
    if isinstance(image_size, (int, float, np.integer, np.floating)):
        return [(float(image_size), float(image_size))] * n_images
    sizes = list(image_size)
    if len(sizes) == 2 and all(isinstance(s, (int, float, np.integer, np.floating)) for s in sizes):
        return [(float(sizes[0]), float(sizes[1]))] * n_images
    if len(sizes) != n_images:
        raise ValueError(f"image_size: expected (H, W) or one (H, W) per image ({n_images}), got {len(sizes)} entries")
    return [(float(h), float(w)) for h, w in sizes]


def _gt_to_pixels(gt: np.ndarray, size: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(m, 5)`` normalised ``class, cx, cy, w, h`` -> classes ``(m,)`` and pixel ``xyxy`` ``(m, 4)``."""
    h, w = size
    cx, cy, bw, bh = gt[:, 1] * w, gt[:, 2] * h, gt[:, 3] * w, gt[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return gt[:, 0].astype(np.int64), boxes


def _check_predictions(predictions: Sequence[Any]) -> list[np.ndarray]:
    out = []
    for i, p in enumerate(predictions):
        p = _to_numpy(p)
        if p.size == 0:
            p = p.reshape(0, 6)
        if p.ndim != 2 or p.shape[1] < 6:
            raise ValueError(
                f"predictions[{i}]: expected (n, 6) rows x1, y1, x2, y2, score, class (pixels), got shape {p.shape}"
            )
        out.append(p[:, :6])
    return out


def _greedy_match(iou: np.ndarray, thresholds: np.ndarray, *, coco_ties: bool) -> np.ndarray:
    """Greedy matching of detections (rows, in descending score order) to GT boxes (columns).

    Each detection claims the unclaimed GT with the highest IoU, if that IoU >= threshold.

    Args:
        iou: ``(D, G)`` IoU of same-class pairs (0 elsewhere).
        thresholds: ``(T,)`` IoU thresholds.
        coco_ties: on equal IoU pick the last GT (pycocotools' loop), else the first.

    Returns:
        ``(D, T)`` bool: the detection is a true positive at the threshold.
    """
    d, g = iou.shape
    t = len(thresholds)
    correct = np.zeros((d, t), dtype=bool)
    if d == 0 or g == 0:
        return correct
    # pycocotools compares against min(t, 1 - 1e-10) so that a threshold of 1 can be met.
    thr = np.minimum(thresholds, 1 - 1e-10)
    taken = np.zeros((t, g), dtype=bool)
    for j in range(d):
        row = iou[j]
        if not (row >= thr.min()).any():
            continue
        avail = np.where(taken, -1.0, row[None, :])  # (T, G)
        if coco_ties:
            k = g - 1 - np.argmax(avail[:, ::-1], axis=1)
        else:
            k = np.argmax(avail, axis=1)
        best = avail[np.arange(t), k]
        ok = best >= thr
        correct[j] = ok
        taken[np.arange(t)[ok], k[ok]] = True
    return correct


def _ap_coco101(tp_sorted: np.ndarray, n_gt: int) -> np.ndarray:
    """COCO 101-point AP for each threshold. ``tp_sorted``: ``(D, T)`` in descending score order."""
    t = tp_sorted.shape[1]
    ap = np.zeros(t)
    if tp_sorted.shape[0] == 0:
        return ap
    tps = np.cumsum(tp_sorted, axis=0, dtype=np.float64)
    fps = np.cumsum(~tp_sorted, axis=0, dtype=np.float64)
    for k in range(t):
        rc = tps[:, k] / n_gt
        pr = tps[:, k] / (tps[:, k] + fps[:, k] + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # envelope
        idx = np.searchsorted(rc, _RECALL_POINTS, side="left")
        q = np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0)
        ap[k] = q.mean()
    return ap


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _ap_ultralytics(tp_sorted: np.ndarray, n_gt: int) -> np.ndarray:
    """Ultralytics-style AP: interpolated envelope at 101 recall points, trapezoid rule.

    ``tp_sorted``: ``(n, T)`` booleans, detections in descending score order, one column per IoU threshold;
    returns ``(T,)``. All thresholds in one pass (the bootstraps call this thousands of times): column ``k``'s
    recall curve is shifted to ``[2k, 2k + 1]``, so one ``np.interp`` over the concatenation interpolates
    every column within its own curve.
    """
    n, t = tp_sorted.shape
    if n == 0:
        return np.zeros(t)
    tps = np.cumsum(tp_sorted, axis=0, dtype=np.float64)
    fps = np.cumsum(~tp_sorted, axis=0, dtype=np.float64)
    recall = tps / (n_gt + 1e-16)
    precision = tps / (tps + fps)
    mrec = np.concatenate((np.zeros((1, t)), recall, recall[-1:], np.ones((1, t))))
    mpre = np.concatenate((np.ones((1, t)), precision, np.zeros((2, t))))
    mpre = np.maximum.accumulate(mpre[::-1], axis=0)[::-1]
    offset = 2.0 * np.arange(t)
    y = np.interp((_RECALL_POINTS[:, None] + offset).T.ravel(), (mrec + offset).T.ravel(), mpre.T.ravel()).reshape(t, -1)
    return np.sum((_RECALL_POINTS[1:] - _RECALL_POINTS[:-1]) * (y[:, 1:] + y[:, :-1]) / 2.0, axis=1)


def evaluate_map(
    predictions: Sequence[Any],
    targets: Any,
    image_size: Any,
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
    *,
    method: str = "ultralytics",
    max_dets: int | None = None,
    names: dict[int, str] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean average precision of detections against ground truth.

    Args:
        predictions: one ``(n, 6)`` array/tensor per image, rows ``x1, y1, x2, y2, score, class``
            in pixels of that image.
        targets: per-image list of ``(m, 5)`` rows ``class, cx, cy, w, h`` normalised, or one
            ``(N, 6)`` array with rows ``batch_index, class, cx, cy, w, h``.
        image_size: ``(H, W)`` of every image, or a list of one ``(H, W)`` per image (converts
            the normalised GT to pixels).
        iou_thresholds: IoU thresholds, default ``0.5:0.05:0.95``.
        method: ``"ultralytics"`` (default; the authors' definition) or ``"coco101"``
            (pycocotools). See the module docstring.
        max_dets: at most this many highest-scored detections per image and class; default 100
            for ``coco101`` (pycocotools' maxDets), none for ``ultralytics``.
        names: optional class names (dict or list) added to ``per_class``.

    Returns:
        dict with ``"mAP@0.5"``, ``"mAP@0.75"``, ``"mAP@0.5:0.95"`` (NaN when the threshold is not
        among ``iou_thresholds``; NaN when no image has GT), ``"per_class"``:
        ``{class_id: {"AP@0.5", "AP@0.75", "AP@0.5:0.95", "n_gt", "n_pred", "name"}}`` for the
        classes with GT, ``"ap"``: ``(n_classes_with_gt, T)`` array, ``"classes"``, ``"method"``,
        ``"iou_thresholds"``, ``"n_images"``.

    Example:
        >>> r = evaluate_map([np.zeros((0, 6))], [np.array([[1, .5, .5, .1, .1]])], (64, 64))
        >>> r["mAP@0.5"]
        0.0
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if isinstance(predictions, (str, bytes)) or not isinstance(predictions, Sequence):
        raise TypeError(f"predictions: expected a list of (n, 6) arrays, got {type(predictions).__name__}")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or (thresholds <= 0).any() or (thresholds > 1).any():
        raise ValueError(f"iou_thresholds: expected values in (0, 1], got {thresholds}")
    preds = _check_predictions(predictions)
    n_images = len(preds)
    gts = _split_targets(targets, n_images)
    sizes = _image_sizes(image_size, n_images)
    scores, pred_classes, gt_classes, ious = [], [], [], []
    for p, g, size in zip(preds, gts, sizes, strict=True):
        g_cls, g_box = _gt_to_pixels(g, size)
        scores.append(p[:, 4])
        pred_classes.append(p[:, 5].astype(np.int64))
        gt_classes.append(g_cls)
        ious.append(box_iou_xyxy(p[:, :4], g_box))
    return evaluate_map_from_iou(scores, pred_classes, gt_classes, ious, iou_thresholds, method=method,
                                 max_dets=max_dets, names=names)


def evaluate_map_from_iou(
    scores: Sequence[Any],
    pred_classes: Sequence[Any],
    gt_classes: Sequence[Any],
    ious: Sequence[Any],
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
    *,
    method: str = "ultralytics",
    max_dets: int | None = None,
    names: dict[int, str] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean average precision from per-image IoU matrices of any kind (boxes, masks): :func:`evaluate_map`'s matching and AP.

    Args:
        scores: per image ``(n,)`` prediction scores.
        pred_classes: per image ``(n,)`` predicted class ids.
        gt_classes: per image ``(m,)`` ground-truth class ids.
        ious: per image ``(n, m)`` IoU of every prediction with every ground-truth object (of any
            class; pairs of different classes are never matched).
        iou_thresholds, method, max_dets, names: as in :func:`evaluate_map`.

    Returns:
        :func:`evaluate_map`'s dict (fractions).

    Example:
        >>> r = evaluate_map_from_iou([np.array([0.9])], [np.array([0])], [np.array([0])], [np.array([[0.8]])])
        >>> round(r["mAP@0.5"], 3), round(r["mAP@0.75"], 3)
        (0.995, 0.995)
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or (thresholds <= 0).any() or (thresholds > 1).any():
        raise ValueError(f"iou_thresholds: expected values in (0, 1], got {thresholds}")
    n_images = len(scores)
    if not len(pred_classes) == len(gt_classes) == len(ious) == n_images:
        raise ValueError(f"scores, pred_classes, gt_classes, ious: expected one entry per image each, got "
                         f"{n_images}, {len(pred_classes)}, {len(gt_classes)}, {len(ious)}")
    if max_dets is None and method == "coco101":
        max_dets = 100

    # Per class: lists of (scores, tp rows) per image, and GT counts.
    per_scores: dict[int, list[np.ndarray]] = {}
    tps: dict[int, list[np.ndarray]] = {}
    n_gt: dict[int, int] = {}
    n_pred: dict[int, int] = {}
    for i in range(n_images):
        score = np.asarray(scores[i], dtype=np.float64).reshape(-1)
        p_cls = np.asarray(pred_classes[i]).reshape(-1).astype(np.int64)
        g_cls = np.asarray(gt_classes[i]).reshape(-1).astype(np.int64)
        iou_all = np.asarray(ious[i], dtype=np.float64).reshape(len(score), len(g_cls))
        if len(p_cls) != len(score):
            raise ValueError(f"pred_classes[{i}]: {len(p_cls)} classes for {len(score)} scores")
        for c in np.unique(g_cls):
            n_gt[int(c)] = n_gt.get(int(c), 0) + int((g_cls == c).sum())
        if method == "coco101":
            # pycocotools evaluates each (image, class) pair on its own.
            for c in np.unique(p_cls):
                sel = np.flatnonzero(p_cls == c)
                order = sel[np.argsort(-score[sel], kind="mergesort")]
                if max_dets is not None:
                    order = order[:max_dets]
                iou = iou_all[order][:, g_cls == c]
                tp = _greedy_match(iou, thresholds, coco_ties=True)
                per_scores.setdefault(int(c), []).append(score[order])
                tps.setdefault(int(c), []).append(tp)
        else:
            order = np.argsort(-score, kind="mergesort")
            if max_dets is not None:
                keep = []
                for c in np.unique(p_cls):
                    keep.extend(order[p_cls[order] == c][:max_dets].tolist())
                order = order[np.isin(order, keep)]
            iou = iou_all[order] * (p_cls[order][:, None] == g_cls[None, :])
            tp = _greedy_match(iou, thresholds, coco_ties=False)
            for c in np.unique(p_cls):
                m = p_cls[order] == c
                per_scores.setdefault(int(c), []).append(score[order][m])
                tps.setdefault(int(c), []).append(tp[m])
    for c, lst in per_scores.items():
        n_pred[c] = int(sum(len(s) for s in lst))

    classes = sorted(n_gt)
    ap = np.zeros((len(classes), len(thresholds)))
    ap_fn = _ap_coco101 if method == "coco101" else _ap_ultralytics
    for i, c in enumerate(classes):
        if c in per_scores:
            s = np.concatenate(per_scores[c])
            tp = np.concatenate(tps[c], axis=0)
            order = np.argsort(-s, kind="mergesort")
            ap[i] = ap_fn(tp[order], n_gt[c])

    def at(thr: float) -> np.ndarray | None:
        hit = np.flatnonzero(np.isclose(thresholds, thr))
        return ap[:, hit[0]] if len(hit) else None

    def mean_or_nan(x: np.ndarray | None) -> float:
        return float(np.mean(x)) if x is not None and x.size else float("nan")

    all_coco = len(thresholds) == 10 and np.allclose(thresholds, COCO_IOU_THRESHOLDS)
    name_of = (lambda c: names.get(c) if isinstance(names, dict) else names[c]) if names is not None else None
    per_class = {}
    for i, c in enumerate(classes):
        per_class[c] = {
            "AP@0.5": float(at(0.5)[i]) if at(0.5) is not None else float("nan"),
            "AP@0.75": float(at(0.75)[i]) if at(0.75) is not None else float("nan"),
            "AP@0.5:0.95": float(ap[i].mean()) if all_coco else float("nan"),
            "n_gt": n_gt[c],
            "n_pred": n_pred.get(c, 0),
        }
        if name_of is not None:
            try:
                per_class[c]["name"] = name_of(c)
            except (IndexError, KeyError):
                per_class[c]["name"] = str(c)
    return {
        "mAP@0.5": mean_or_nan(at(0.5)),
        "mAP@0.75": mean_or_nan(at(0.75)),
        "mAP@0.5:0.95": float(ap.mean()) if all_coco and ap.size else float("nan"),
        "per_class": per_class,
        "ap": ap,
        "classes": classes,
        "method": method,
        "iou_thresholds": thresholds.tolist(),
        "n_images": n_images,
    }


def as_percent(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`~ispbench.tasks.map_eval.evaluate_map`'s fractions (pycocotools' unit) -> percent, the unit of the papers, results and book.

    Scales ``mAP@*``, the ``ap`` array and every class's ``AP@*`` by 100; counts stay as they are.
    """
    out = dict(result)
    for key in [k for k in out if k.startswith("mAP@")]:
        out[key] = 100.0 * out[key]
    if "ap" in out:
        out["ap"] = 100.0 * np.asarray(out["ap"])
    out["per_class"] = {c: {k: (100.0 * v if k.startswith("AP@") else v) for k, v in row.items()}
                        for c, row in out.get("per_class", {}).items()}
    return out


class DetectionEvaluator:
    """Accumulate predictions and targets batch by batch, then compute :func:`evaluate_map`.

    Example:
        >>> ev = DetectionEvaluator(method="coco101")
        >>> ev.update([np.array([[0, 0, 10, 10, 0.9, 0]])], [np.array([[0, 0.5, 0.5, 1.0, 1.0]])], [(10, 10)])
        >>> round(ev.compute()["mAP@0.5"], 6)
        1.0
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
        *,
        method: str = "ultralytics",
        max_dets: int | None = None,
        names: dict[int, str] | Sequence[str] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        self.iou_thresholds = iou_thresholds
        self.method = method
        self.max_dets = max_dets
        self.names = names
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.predictions: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.sizes: list[tuple[float, float]] = []

    def update(self, predictions: Sequence[Any], targets: Any, image_sizes: Any) -> None:
        """Add a batch: per-image predictions, targets (list or ``(N, 6)``), sizes ``(H, W)`` or a list."""
        preds = _check_predictions(predictions)
        self.predictions.extend(preds)
        self.targets.extend(_split_targets(targets, len(preds)))
        self.sizes.extend(_image_sizes(image_sizes, len(preds)))

    def compute(self) -> dict[str, Any]:
        """:func:`evaluate_map` over everything added so far."""
        return evaluate_map(
            self.predictions,
            self.targets,
            self.sizes,
            self.iou_thresholds,
            method=self.method,
            max_dets=self.max_dets,
            names=self.names,
        )
