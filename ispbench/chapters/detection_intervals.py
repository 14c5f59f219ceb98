"""Bootstrap intervals of detection mAP over test images (the AdaptiveISP tables' ``ci_low``/``ci_high``).

mAP is not a mean of per-image values, so the interval comes from
:func:`ispbench.stats.bootstrap_statistic`: images are resampled with replacement and mAP is
recomputed on each resample. Recomputing :func:`ispbench.tasks.map_eval.evaluate_map` from
scratch a thousand times is slow; :class:`MapResampler` does the per-image work once (each
image's detections matched greedily to its own ground truth, exactly as ``evaluate_map``'s
``"ultralytics"`` method does: matching never crosses images) and each resample only pools the
drawn images' matches, in the global score order, and integrates the precision/recall curves.
On all images (no resampling) it reproduces ``evaluate_map`` exactly (``tests/chapters/test_detection_intervals.py``).

A table asks for the same model's resamples many times (its own row, then every paired
comparison it is in), always with the same resampling seed and so the same image draws:
:func:`resampled_map` computes them once per resampler content and reuses them, and the seed
means and paired differences are combined from those samples, which gives exactly what
bootstrapping the combination would.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ispbench import stats
from ispbench.tasks.map_eval import COCO_IOU_THRESHOLDS, _ap_ultralytics, _greedy_match, _gt_to_pixels, box_iou_xyxy

#: The three mAP columns of the AdaptiveISP tables.
MAP_METRICS = ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95")
#: Resamples for mAP intervals (each costs one pooled AP computation per class).
MAP_RESAMPLES = 500


class MapResampler:
    """Per-image matches of one set of predictions, ready to recompute mAP (percent) on item indices.

    Args:
        predictions: one ``(n, 6)`` array per image, rows ``x1, y1, x2, y2, score, class`` in
            pixels (``evaluate_isp(...)["predictions"]``).
        targets: one ``(m, 5)`` array per image, rows ``class, cx, cy, w, h`` normalised.
        image_sizes: one ``(H, W)`` per image.

    Example:
        >>> r = MapResampler([np.array([[40.0, 40, 60, 60, 0.9, 0]])], [np.array([[0, .5, .5, .2, .2]])], [(100, 100)])
        >>> [round(float(v), 1) for v in r(np.array([0]))]
        [99.5, 99.5, 99.5]
    """

    def __init__(self, predictions: Sequence[Any], targets: Sequence[Any], image_sizes: Sequence[Sequence[float]]):
        if not (len(predictions) == len(targets) == len(image_sizes)):
            raise ValueError(f"predictions, targets, image_sizes: expected one entry per image each, got "
                             f"{len(predictions)}, {len(targets)}, {len(image_sizes)}")
        self.n_images = len(predictions)
        thresholds = np.asarray(COCO_IOU_THRESHOLDS)
        self._i50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
        self._i75 = int(np.flatnonzero(np.isclose(thresholds, 0.75))[0])
        image_of, scores, classes, tps = [], [], [], []
        gt_counts: dict[int, np.ndarray] = {}
        for i, (pred, gt, size) in enumerate(zip(predictions, targets, image_sizes, strict=True)):
            pred = np.asarray(pred, dtype=np.float64).reshape(-1, 6)
            gt = np.asarray(gt, dtype=np.float64).reshape(-1, 5)
            g_cls, g_box = _gt_to_pixels(gt, (float(size[0]), float(size[1])))
            for c in np.unique(g_cls):
                gt_counts.setdefault(int(c), np.zeros(self.n_images, dtype=np.int64))[i] += int((g_cls == c).sum())
            order = np.argsort(-pred[:, 4], kind="mergesort")
            p_cls = pred[order, 5].astype(np.int64)
            iou = box_iou_xyxy(pred[order, :4], g_box) * (p_cls[:, None] == g_cls[None, :])
            tps.append(_greedy_match(iou, thresholds, coco_ties=False))
            image_of.append(np.full(len(order), i, dtype=np.int64))
            scores.append(pred[order, 4])
            classes.append(p_cls)
        image_of_all = np.concatenate(image_of) if image_of else np.zeros(0, np.int64)
        score_all = np.concatenate(scores) if scores else np.zeros(0)
        class_all = np.concatenate(classes) if classes else np.zeros(0, np.int64)
        tp_all = np.concatenate(tps, axis=0) if tps else np.zeros((0, len(thresholds)), bool)
        self._classes = sorted(gt_counts)
        self._gt_counts = gt_counts
        # per class with GT: its detections in descending score order (stable, as evaluate_map sorts)
        self._per_class = {}
        for c in self._classes:
            sel = np.flatnonzero(class_all == c)
            order = sel[np.argsort(-score_all[sel], kind="mergesort")]
            self._per_class[c] = (image_of_all[order], tp_all[order])

    def content_digest(self) -> str:
        """SHA-1 of what the resamples depend on (per-class matches and ground-truth counts): equal digests,
        equal mAP on every resample."""
        if getattr(self, "_digest", None) is None:
            h = hashlib.sha1(f"{type(self).__name__}:{self.n_images}:{self._classes}".encode())
            for c in self._classes:
                images, tp = self._per_class[c]
                for a in (self._gt_counts[c], images, tp):
                    h.update(np.ascontiguousarray(a).tobytes())
                    h.update(str(a.shape).encode())
            self._digest = h.hexdigest()
        return self._digest

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        """mAP@0.5, mAP@0.75, mAP@0.5:0.95 (percent) of the images ``indices`` (with repeats).

        Returns:
            ``(3,)`` float64, NaN where no drawn image has ground truth.
        """
        weights = np.bincount(np.asarray(indices, dtype=np.int64), minlength=self.n_images)
        ap = []
        for c in self._classes:
            n_gt = int(weights @ self._gt_counts[c])
            if n_gt == 0:
                continue  # a class without GT in the resample is left out, as in evaluate_map
            images, tp = self._per_class[c]
            ap.append(_ap_ultralytics(np.repeat(tp, weights[images], axis=0), n_gt))
        if not ap:
            return np.full(3, np.nan)
        ap = 100.0 * np.asarray(ap)
        return np.array([ap[:, self._i50].mean(), ap[:, self._i75].mean(), ap.mean()])


#: Resample samples of recent resamplers, by (content digest, n_resamples, seed); each entry is (R, 3) floats.
_SAMPLES: OrderedDict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_SAMPLES_KEPT = 512


def resampled_map(resampler: MapResampler, *, n_resamples: int = MAP_RESAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """mAP (percent) of ``resampler`` on all images and on each bootstrap resample of ``seed``.

    Returns:
        ``(value (3,), samples (n_resamples, 3))``, from :func:`ispbench.stats.statistic_samples`;
        remembered for the last 512 resamplers by content, so a model in several comparisons is
        resampled once. The arrays are read-only (shared between callers).
    """
    key = (resampler.content_digest(), int(n_resamples), int(seed))
    if key in _SAMPLES:
        _SAMPLES.move_to_end(key)
        return _SAMPLES[key]
    value, samples = stats.statistic_samples(resampler, resampler.n_images, n_resamples=n_resamples, seed=seed)
    value.flags.writeable = False
    samples.flags.writeable = False
    _SAMPLES[key] = (value, samples)
    while len(_SAMPLES) > _SAMPLES_KEPT:
        _SAMPLES.popitem(last=False)
    return value, samples


def seed_estimates_from_resamplers(resamplers: Sequence[MapResampler], metrics: Sequence[str], *,
                                   n_resamples: int = MAP_RESAMPLES, confidence: float = stats.DEFAULT_CONFIDENCE,
                                   seed: int = 0) -> dict[str, dict[str, Any]]:
    """Mean and median over seeds, and the interval of the seed-mean, from each seed's :func:`resampled_map`."""
    drawn = [resampled_map(r, n_resamples=n_resamples, seed=seed) for r in resamplers]
    per_seed = np.stack([value for value, _ in drawn])  # (n_seeds, 3)
    samples = np.mean([s for _, s in drawn], axis=0)  # the seed-mean on each resample (same draws for every seed)
    stats.check_finite_samples(samples)
    low, high = stats.percentile_interval(samples, confidence)
    return {m: {"mean": float(per_seed[:, k].mean()), "median": float(np.median(per_seed[:, k])),
                "ci_low": float(low[k]), "ci_high": float(high[k]), "n_seeds": len(resamplers),
                "per_seed": [float(v) for v in per_seed[:, k]]} for k, m in enumerate(metrics)}


def paired_difference_from_resamplers(ra: Sequence[MapResampler], rb: Sequence[MapResampler], metrics: Sequence[str], *,
                                      n_resamples: int = MAP_RESAMPLES, confidence: float = stats.DEFAULT_CONFIDENCE,
                                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of the seed-mean difference A - B, from each seed's :func:`resampled_map` (same draws)."""
    if ra[0].n_images != rb[0].n_images:
        raise ValueError(f"results_b: {rb[0].n_images} images, results_a {ra[0].n_images}; expected the same images")
    da = [resampled_map(r, n_resamples=n_resamples, seed=seed) for r in ra]
    db = [resampled_map(r, n_resamples=n_resamples, seed=seed) for r in rb]
    value = np.mean([v for v, _ in da], axis=0) - np.mean([v for v, _ in db], axis=0)
    samples = np.mean([s for _, s in da], axis=0) - np.mean([s for _, s in db], axis=0)
    stats.check_finite_samples(samples)
    low, high = stats.percentile_interval(samples, confidence)
    return {m: {"difference": float(value[k]), "ci_low": float(low[k]), "ci_high": float(high[k]),
                "fraction_a_better": float((samples[:, k] > 0).mean()), "n_seeds_a": len(ra), "n_seeds_b": len(rb)}
            for k, m in enumerate(metrics)}


def dataset_targets(dataset: Any) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Ground truth of a detection dataset: per image ``(m, 5)`` ``class, cx, cy, w, h`` and ``(H, W)``."""
    targets, sizes = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        boxes = np.asarray(item["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(item["labels"], dtype=np.float64).reshape(-1, 1)
        targets.append(np.concatenate([labels, boxes], axis=1))
        sizes.append(tuple(int(s) for s in item["image"].shape[-2:]))
    return targets, sizes


def map_intervals(result: dict, dataset: Any, *, n_resamples: int = MAP_RESAMPLES,
                  confidence: float = stats.DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals over images of the three mAP values of an ``evaluate_isp`` result.

    Args:
        result: ``evaluate_isp`` / ``cross_detector_eval`` result (needs ``predictions``, one per image).
        dataset: the dataset it was scored on (``boxes``, ``labels``, ``image`` per item).
        n_resamples, confidence, seed: as in :func:`ispbench.stats.bootstrap_statistic`.

    Returns:
        ``{metric: (ci_low, ci_high)}`` in percent for :data:`MAP_METRICS`.

    Raises:
        ValueError: ``result`` has no per-image predictions for every item of ``dataset``.
    """
    predictions = result.get("predictions")
    if predictions is None or len(predictions) != len(dataset):
        got = "none" if predictions is None else len(predictions)
        raise ValueError(f"result: expected 'predictions' for each of the {len(dataset)} images, got {got}")
    if "ground_truth" in result and len(result["ground_truth"]) == len(predictions):
        targets, sizes = result["ground_truth"], result["image_sizes"]  # what evaluate_isp matched against
    else:
        targets, sizes = dataset_targets(dataset)
    resampler = MapResampler(predictions, targets, sizes)
    boot = stats.bootstrap_statistic(resampler, resampler.n_images, n_resamples=n_resamples, confidence=confidence,
                                     seed=seed)
    return {m: (float(boot.ci_low[k]), float(boot.ci_high[k])) for k, m in enumerate(MAP_METRICS)}


def _resamplers(results: Sequence[dict], dataset: Any) -> list[MapResampler]:
    if not results:
        raise ValueError("results: expected one evaluate_isp result per training seed, got none")
    resamplers = []
    for k, result in enumerate(results):
        predictions = result.get("predictions")
        if predictions is None or len(predictions) != len(dataset):
            got = "none" if predictions is None else len(predictions)
            raise ValueError(f"results[{k}]: expected 'predictions' for each of the {len(dataset)} images, got {got}")
        if "ground_truth" in result and len(result["ground_truth"]) == len(predictions):
            targets, sizes = result["ground_truth"], result["image_sizes"]
        else:
            targets, sizes = dataset_targets(dataset)
        resamplers.append(MapResampler(predictions, targets, sizes))
    return resamplers


def seed_map_estimates(results: Sequence[dict], dataset: Any, *, n_resamples: int = MAP_RESAMPLES,
                       confidence: float = stats.DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, dict[str, float]]:
    """mAP over several training seeds: mean and median over seeds, 95% bootstrap interval of the seed-mean.

    Every resample draws the same images for all seeds (images are the resampled unit; the
    seeds are all kept), and each seed's mAP is recomputed on them.

    Args:
        results: one ``evaluate_isp`` result per training seed, all on ``dataset``.
        dataset: the items they were scored on.

    Returns:
        ``{metric: {"mean", "median", "ci_low", "ci_high", "n_seeds", "per_seed"}}`` in percent.
    """
    return seed_estimates_from_resamplers(_resamplers(results, dataset), MAP_METRICS, n_resamples=n_resamples,
                                          confidence=confidence, seed=seed)


def paired_map_difference(results_a: Sequence[dict], results_b: Sequence[dict], dataset: Any, *,
                          n_resamples: int = MAP_RESAMPLES, confidence: float = stats.DEFAULT_CONFIDENCE,
                          seed: int = 0) -> dict[str, dict[str, float]]:
    """Paired bootstrap of ``mAP(A) - mAP(B)`` (seed-means) on the same resampled images.

    Returns:
        ``{metric: {"difference", "ci_low", "ci_high", "fraction_a_better", "n_seeds_a", "n_seeds_b"}}``;
        A beats B at 95% when ``ci_low > 0``.
    """
    return paired_difference_from_resamplers(_resamplers(results_a, dataset), _resamplers(results_b, dataset), MAP_METRICS,
                                             n_resamples=n_resamples, confidence=confidence, seed=seed)


__all__ = ["MAP_METRICS", "MAP_RESAMPLES", "MapResampler", "dataset_targets", "map_intervals", "paired_difference_from_resamplers",
           "paired_map_difference", "resampled_map", "seed_estimates_from_resamplers", "seed_map_estimates"]
