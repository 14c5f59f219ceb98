"""Instance-segmentation (mask) mean average precision, checked against pycocotools (``iouType="segm"``).

The matching and the two AP definitions are those of the box evaluator
(:func:`ispbench.tasks.map_eval.evaluate_map_from_iou`: ``"ultralytics"``, the authors' AP, and
``"coco101"``, pycocotools' ``COCOeval``); only the IoU differs: the IoU of two masks is the
number of pixels in both over the number in either (pycocotools computes the same counts on its
run-length encodings, so ``coco101`` agrees with ``COCOeval.stats[0:3]`` to float rounding,
``tests/tasks/test_mask_eval.py``). No crowd regions; area range ``all``.

Masks are compared at the resolution they are given in: the ground truth's (the original
image, for :func:`ispbench.tasks.segmentation_eval.evaluate_isp_segmentation`). Ultralytics'
validator compares at a quarter of the image side, so its numbers differ slightly.

Predictions per image: a dict with ``masks`` ``(n, H, W)`` bool, ``scores`` ``(n,)``, ``classes``
``(n,)`` (what :meth:`ispbench.tasks.segmenter.FrozenSegmenter.predict` returns; extra keys such
as ``boxes`` are ignored). Ground truth per image: ``masks`` ``(m, H, W)`` bool and ``classes``
(or ``labels``) ``(m,)``. Results are in percent (the project's unit).

Example:
    >>> m = np.zeros((1, 8, 8), bool); m[0, 2:6, 2:6] = True
    >>> pred = [{"masks": m, "scores": np.array([0.9]), "classes": np.array([0])}]
    >>> gt = [{"masks": m, "classes": np.array([0])}]
    >>> round(evaluate_mask_map(pred, gt, method="coco101")["mAP@0.5:0.95"], 6)
    100.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ispbench.tasks.map_eval import COCO_IOU_THRESHOLDS, METHODS, as_percent, evaluate_map_from_iou

__all__ = ["MaskEvaluator", "evaluate_mask_map", "mask_iou"]


def _as_array(x: Any, dtype: Any = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def mask_iou(pred: Any, gt: Any) -> np.ndarray:
    """Pairwise IoU of binary masks: pixels in both over pixels in either.

    Args:
        pred: ``(n, H, W)`` bool (or 0/1) masks.
        gt: ``(m, H, W)`` bool (or 0/1) masks of the same ``H, W``.

    Returns:
        ``(n, m)`` float64 IoU (0 where both masks are empty).

    Example:
        >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
        >>> b = np.zeros((1, 4, 4), bool); b[0, :, :2] = True
        >>> mask_iou(a, b).tolist()
        [[0.3333333333333333]]
    """
    pred, gt = _as_array(pred).astype(bool), _as_array(gt).astype(bool)
    if pred.ndim != 3 or gt.ndim != 3:
        raise ValueError(f"pred, gt: expected (n, H, W) and (m, H, W) masks, got shapes {pred.shape} and {gt.shape}")
    if pred.shape[1:] != gt.shape[1:]:
        raise ValueError(f"pred, gt: masks must have one size, got {pred.shape[1:]} and {gt.shape[1:]}")
    p = pred.reshape(len(pred), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = (p @ g.T).astype(np.float64)  # exact: counts < 2**24
    union = p.sum(1, dtype=np.float64)[:, None] + g.sum(1, dtype=np.float64)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _prediction(pred: Any, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(pred, Mapping) or not {"masks", "scores", "classes"} <= set(pred):
        raise ValueError(f"predictions[{i}]: expected a dict with 'masks' (n, H, W), 'scores' (n,), 'classes' (n,)")
    masks = _as_array(pred["masks"]).astype(bool)
    scores = _as_array(pred["scores"], np.float64).reshape(-1)
    classes = _as_array(pred["classes"]).reshape(-1).astype(np.int64)
    if masks.ndim != 3 or not len(masks) == len(scores) == len(classes):
        raise ValueError(f"predictions[{i}]: expected masks (n, H, W), scores (n,), classes (n,); got shapes "
                         f"{masks.shape}, {scores.shape}, {classes.shape}")
    return masks, scores, classes


def _target(gt: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    key = "classes" if isinstance(gt, Mapping) and "classes" in gt else "labels"
    if not isinstance(gt, Mapping) or "masks" not in gt or key not in gt:
        raise ValueError(f"targets[{i}]: expected a dict with 'masks' (m, H, W) and 'classes' (or 'labels') (m,)")
    masks = _as_array(gt["masks"]).astype(bool)
    classes = _as_array(gt[key]).reshape(-1).astype(np.int64)
    if masks.ndim != 3 or len(masks) != len(classes):
        raise ValueError(f"targets[{i}]: expected masks (m, H, W) and {key} (m,), got shapes {masks.shape}, {classes.shape}")
    return masks, classes


class MaskEvaluator:
    """Accumulate mask predictions image by image, keeping only their IoUs, then compute mask mAP.

    Each :meth:`update` computes the ``(n, m)`` mask IoUs of an image at once and drops the masks,
    so the memory stays small however many low-score predictions an image has (conf 0.001 gives
    up to 300). :meth:`add_iou` takes IoUs computed elsewhere.

    Example:
        >>> ev = MaskEvaluator(method="coco101")
        >>> m = np.ones((1, 4, 4), bool)
        >>> ev.update([{"masks": m, "scores": [0.5], "classes": [1]}], [{"masks": m, "classes": [1]}])
        >>> round(ev.compute()["mAP@0.5"], 6)
        100.0
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
        self.scores: list[np.ndarray] = []
        self.pred_classes: list[np.ndarray] = []
        self.gt_classes: list[np.ndarray] = []
        self.ious: list[np.ndarray] = []

    def add_iou(self, scores: Any, pred_classes: Any, gt_classes: Any, iou: Any) -> None:
        """Add one image from its ``(n,)`` scores and classes, ``(m,)`` GT classes and ``(n, m)`` IoU."""
        scores = _as_array(scores, np.float64).reshape(-1)
        pred_classes = _as_array(pred_classes).reshape(-1).astype(np.int64)
        gt_classes = _as_array(gt_classes).reshape(-1).astype(np.int64)
        iou = _as_array(iou, np.float64)
        if iou.shape != (len(scores), len(gt_classes)) or len(pred_classes) != len(scores):
            raise ValueError(f"iou: expected ({len(scores)}, {len(gt_classes)}) for {len(scores)} predictions and "
                             f"{len(gt_classes)} GT objects, got {iou.shape} (pred_classes {pred_classes.shape})")
        self.scores.append(scores)
        self.pred_classes.append(pred_classes)
        self.gt_classes.append(gt_classes)
        self.ious.append(iou)

    def update(self, predictions: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add images: per-image prediction dicts and target dicts (see the module docstring)."""
        if len(predictions) != len(targets):
            raise ValueError(f"predictions, targets: one entry per image each, got {len(predictions)} and {len(targets)}")
        for i, (pred, gt) in enumerate(zip(predictions, targets, strict=True)):
            p_masks, scores, p_cls = _prediction(pred, i)
            g_masks, g_cls = _target(gt, i)
            iou = np.zeros((len(scores), len(g_cls)))
            # only same-class pairs are ever matched: skip the masks of classes the image has no GT of
            rows = np.flatnonzero(np.isin(p_cls, g_cls))
            if len(rows) and len(g_cls):
                if p_masks.shape[1:] != g_masks.shape[1:]:
                    raise ValueError(f"predictions[{i}]['masks']: size {p_masks.shape[1:]} differs from the "
                                     f"ground truth's {g_masks.shape[1:]}")
                iou[rows] = mask_iou(p_masks[rows], g_masks)
            self.add_iou(scores, p_cls, g_cls, iou)

    def compute(self) -> dict[str, Any]:
        """Mask mAP over everything added so far: :func:`evaluate_mask_map`'s dict (percent)."""
        return as_percent(evaluate_map_from_iou(
            self.scores, self.pred_classes, self.gt_classes, self.ious,
            self.iou_thresholds, method=self.method, max_dets=self.max_dets, names=self.names,
        ))


def evaluate_mask_map(
    predictions: Sequence[Any],
    targets: Sequence[Any],
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
    *,
    method: str = "ultralytics",
    max_dets: int | None = None,
    names: dict[int, str] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mask mean average precision of instance predictions against ground-truth masks, in percent.

    Args:
        predictions: per image ``{"masks": (n, H, W) bool, "scores": (n,), "classes": (n,)}``.
        targets: per image ``{"masks": (m, H, W) bool, "classes": (m,)}`` (``labels`` also accepted).
        iou_thresholds: default ``0.5:0.05:0.95``.
        method: ``"ultralytics"`` (default; the authors' AP) or ``"coco101"`` (pycocotools ``segm``).
        max_dets: predictions kept per image and class (default 100 for ``coco101``, all otherwise).
        names: optional class names for ``per_class``.

    Returns:
        :func:`ispbench.tasks.map_eval.evaluate_map`'s dict in percent: ``mAP@0.5``, ``mAP@0.75``,
        ``mAP@0.5:0.95``, ``per_class``, ``ap``, ``classes``, ``method``, ``iou_thresholds``, ``n_images``.
    """
    evaluator = MaskEvaluator(iou_thresholds, method=method, max_dets=max_dets, names=names)
    evaluator.update(predictions, targets)
    return evaluator.compute()
