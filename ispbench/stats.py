"""Statistics behind every result table: means over training seeds and bootstrap intervals over images.

Every number a table reports is a score on a finite set of test items (images, crops), produced
by one or several trained models (training seeds). The table gives the point estimate over
seeds and a 95% interval for the uncertainty that comes from the choice of test items:

* :func:`bootstrap_mean` for metrics that are the mean of per-item values (PSNR, SSIM, ...).
  Items are resampled with replacement; the *same* resampled item indices are applied to every
  seed's scores, and each resample's value is the mean over seeds of the per-seed means. When
  several items come from one source (crops of the same photo), pass ``clusters``: whole
  clusters are resampled, not items, so correlated crops do not count as independent evidence.
* :func:`bootstrap_statistic` for metrics that are not a mean of per-item values (mAP): a
  statistic function is evaluated on each resample's item indices.
* :func:`paired_bootstrap` for "A beats B" on the same items: the mean difference, its
  interval and the fraction of resamples in which A is better.
* :func:`interval_fields` / :func:`summary_fields`: the columns every result row carries
  (``n_seeds``, ``ci_low``, ``ci_high``, plus ``mean``/``median`` for tables without a
  ``value`` column) and :data:`METRIC_UNITS`, the one unit of each metric.

All functions are pure NumPy and deterministic given ``seed``. Intervals are percentile
bootstrap intervals.

Example:
    >>> import numpy as np
    >>> scores = np.array([[30.1, 28.4, 31.0, 29.7]])  # (n_seeds=1, n_items=4)
    >>> est = bootstrap_mean(scores, clusters=["a", "a", "b", "b"], n_resamples=200, seed=0)
    >>> round(est.mean, 2), est.n_seeds, est.ci_low <= est.mean <= est.ci_high
    (29.8, 1, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: Bootstrap resamples used by the tables unless a notebook says otherwise.
DEFAULT_RESAMPLES = 2000
#: Coverage of the intervals the tables report.
DEFAULT_CONFIDENCE = 0.95

#: The one unit of each metric the tables report (mAP and module frequencies in percent, as in the papers).
METRIC_UNITS = {
    "mAP@0.5": "%",
    "mAP@0.75": "%",
    "mAP@0.5:0.95": "%",
    "frequency": "%",
    "PSNR": "dB",
    "SSIM": "1",
    "LPIPS": "1",
    "queries": "queries per image",
    "time": "s per image",
}


@dataclass(frozen=True)
class Estimate:
    """A point estimate over training seeds with its bootstrap interval over items.

    Attributes:
        mean: mean over seeds of the per-seed statistic.
        median: median over seeds of the per-seed statistic (equals ``mean`` for one seed).
        ci_low: lower end of the percentile bootstrap interval of the seed-mean.
        ci_high: upper end of that interval.
        n_seeds: number of training seeds.
        n_items: number of test items (before clustering).
        n_clusters: number of independent units resampled (``n_items`` without clusters).
        confidence: coverage of the interval (0.95).
        n_resamples: bootstrap resamples drawn.
    """

    mean: float
    median: float
    ci_low: float
    ci_high: float
    n_seeds: int
    n_items: int
    n_clusters: int
    confidence: float
    n_resamples: int


@dataclass(frozen=True)
class PairedComparison:
    """Result of :func:`paired_bootstrap`: is A better than B on the same items?

    Attributes:
        difference: mean over seeds and items of ``A - B`` (positive: A scores higher).
        ci_low: lower end of the percentile bootstrap interval of ``difference``.
        ci_high: upper end of that interval.
        fraction_a_better: fraction of resamples in which ``A - B > 0`` (for lower-is-better
            metrics, pass the scores negated or swap A and B).
        n_seeds: number of training seeds.
        n_items: number of test items (before clustering).
        n_clusters: number of independent units resampled.
        confidence: coverage of the interval.
        n_resamples: bootstrap resamples drawn.
    """

    difference: float
    ci_low: float
    ci_high: float
    fraction_a_better: float
    n_seeds: int
    n_items: int
    n_clusters: int
    confidence: float
    n_resamples: int


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples: expected a positive integer, got {n_resamples!r}")
    return int(n_resamples)


def _as_seed_item_matrix(scores: Any, name: str = "scores") -> np.ndarray:
    """``(n_items,)`` or ``(n_seeds, n_items)`` -> float64 ``(n_seeds, n_items)``."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (n_items,) or (n_seeds, n_items) with at least one item, "
                         f"got shape {np.shape(scores)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(array)).sum())} NaN/inf")
    return array


def cluster_ids(clusters: Sequence[Any] | None, n_items: int) -> np.ndarray:
    """Integer cluster id of every item, numbered in order of first appearance.

    Args:
        clusters: one label per item (e.g. the source photo of each crop), or ``None``: every
            item is its own cluster.
        n_items: number of items.

    Returns:
        ``(n_items,)`` int64 ids in ``0 .. n_clusters - 1``.

    Raises:
        ValueError: ``clusters`` does not have one label per item.

    Example:
        >>> cluster_ids(["cat", "cat", "cup"], 3).tolist()
        [0, 0, 1]
    """
    if clusters is None:
        return np.arange(n_items, dtype=np.int64)
    labels = list(clusters)
    if len(labels) != n_items:
        raise ValueError(f"clusters: expected one label per item ({n_items}), got {len(labels)}")
    first_seen: dict[Any, int] = {}
    return np.array([first_seen.setdefault(label, len(first_seen)) for label in labels], dtype=np.int64)


def resample_weights(n_items: int, *, clusters: Sequence[Any] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> np.ndarray:
    """Multiplicity of every item in each bootstrap resample.

    Clusters are drawn with replacement (as many draws as there are clusters); every item of a
    drawn cluster enters the resample once per draw.

    Args:
        n_items: number of items (>= 1).
        clusters: one label per item, or ``None`` (items resampled individually).
        n_resamples: number of resamples.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(n_resamples, n_items)`` int64: row ``r`` says how often each item occurs in resample ``r``.

    Example:
        >>> resample_weights(3, n_resamples=2, seed=0).sum(axis=1).tolist()
        [3, 3]
    """
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items: expected a positive integer, got {n_items!r}")
    n_resamples = _check_resamples(n_resamples)
    ids = cluster_ids(clusters, int(n_items))
    n_clusters = int(ids.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    counts = np.zeros((n_resamples, n_clusters), dtype=np.int64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1)
    return counts[:, ids]


def weights_to_indices(weights: np.ndarray) -> np.ndarray:
    """One resample's multiplicities ``(n_items,)`` -> its item indices (sorted, repeated).

    Example:
        >>> weights_to_indices(np.array([2, 0, 1])).tolist()
        [0, 0, 2]
    """
    weights = np.asarray(weights)
    return np.repeat(np.arange(weights.shape[0]), weights)


def percentile_interval(samples: Any, confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap samples ``(n_resamples, *S)`` -> ``(low, high)``, each of shape ``S``.

    Example:
        >>> [round(float(v), 6) for v in percentile_interval(np.arange(101.0), 0.9)]
        [5.0, 95.0]
    """
    confidence = _check_confidence(confidence)
    alpha = (1.0 - confidence) / 2.0
    samples = np.asarray(samples, dtype=np.float64)
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)



def bootstrap_mean(scores: Any, *, clusters: Sequence[Any] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                   confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> Estimate:
    """Mean (and median) over seeds of per-seed mean scores, with a bootstrap interval over items.

    Args:
        scores: ``(n_items,)`` (one seed) or ``(n_seeds, n_items)``: per-item scores of each
            seed's model on the same items, in the same order.
        clusters: one label per item (the source photo of each crop), or ``None``.
        n_resamples: bootstrap resamples.
        confidence: interval coverage, in (0, 1).
        seed: seed of the resampling.

    Returns:
        :class:`Estimate`. Each resample applies the same item multiplicities to every seed,
        takes each seed's weighted mean and averages over seeds.

    Raises:
        ValueError: bad shape, non-finite scores, a bad ``clusters``, ``n_resamples`` or ``confidence``.

    Example:
        >>> est = bootstrap_mean([1.0, 2.0, 3.0], n_resamples=100, seed=0)
        >>> est.mean, est.n_seeds
        (2.0, 1)
    """
    matrix = _as_seed_item_matrix(scores)
    confidence = _check_confidence(confidence)
    n_seeds, n_items = matrix.shape
    weights = resample_weights(n_items, clusters=clusters, n_resamples=n_resamples, seed=seed)
    per_seed = matrix.mean(axis=1)
    resampled = (weights @ matrix.T) / weights.sum(axis=1, keepdims=True)  # (R, n_seeds)
    low, high = percentile_interval(resampled.mean(axis=1), confidence)
    return Estimate(float(per_seed.mean()), float(np.median(per_seed)), float(low), float(high), n_seeds, n_items,
                    int(cluster_ids(clusters, n_items).max()) + 1, confidence, int(n_resamples))


@dataclass(frozen=True)
class StatisticBootstrap:
    """Result of :func:`bootstrap_statistic`; arrays have the statistic's shape ``S``.

    Attributes:
        value: the statistic on all items (the point estimate), shape ``S``.
        ci_low, ci_high: percentile interval over resamples, shape ``S``.
        samples: ``(n_resamples, *S)`` the statistic on each resample.
        n_items, n_clusters, confidence: as in :class:`Estimate`.
    """

    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    samples: np.ndarray
    n_items: int
    n_clusters: int
    confidence: float


def bootstrap_statistic(statistic: Callable[[np.ndarray], Any], n_items: int, *,
                        clusters: Sequence[Any] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                        confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> StatisticBootstrap:
    """Bootstrap interval of a statistic that is not a mean of per-item values (e.g. mAP).

    Args:
        statistic: maps item indices ``(k,)`` int64 (with repeats; ``k`` varies with clusters)
            to a float or an array of shape ``S`` (e.g. three mAP thresholds). With several
            training seeds, let it return the mean over seeds of each seed's statistic on the
            same indices.
        n_items: number of items the indices refer to.
        clusters: one label per item, or ``None``.
        n_resamples, confidence, seed: as in :func:`bootstrap_mean`.

    Returns:
        ``StatisticBootstrap``; ``value`` is ``statistic(arange(n_items))``.

    Raises:
        ValueError: bad ``n_items``, ``clusters``, ``n_resamples``, ``confidence``, or a
            statistic that returns non-finite values or changes shape.

    Example:
        >>> x = np.array([1.0, 5.0, 3.0])
        >>> r = bootstrap_statistic(lambda idx: np.median(x[idx]), 3, n_resamples=50, seed=0)
        >>> float(r.value)
        3.0
    """
    confidence = _check_confidence(confidence)
    value, samples = statistic_samples(statistic, n_items, clusters=clusters, n_resamples=n_resamples, seed=seed)
    check_finite_samples(samples)
    low, high = percentile_interval(samples, confidence)
    return StatisticBootstrap(value, np.asarray(low), np.asarray(high), samples, int(n_items),
                              int(cluster_ids(clusters, int(n_items)).max()) + 1, confidence)


def statistic_samples(statistic: Callable[[np.ndarray], Any], n_items: int, *, clusters: Sequence[Any] | None = None,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A statistic on all items and on each bootstrap resample: ``(value (S,), samples (n_resamples, *S))``.

    The resamples are those of :func:`resample_weights` with the same ``seed``, so samples of
    different statistics (two methods, several seeds) made with one ``seed`` share their item
    draws and can be combined afterwards (a seed-mean, a paired difference) without re-running
    either statistic: :func:`bootstrap_statistic` of the combination gives the same numbers.
    Samples may contain NaN (a metric undefined on a resample); :func:`check_finite_samples`
    refuses them where an interval is made.

    Example:
        >>> x = np.array([1.0, 5.0, 3.0])
        >>> value, samples = statistic_samples(lambda idx: x[idx].mean(), 3, n_resamples=4, seed=0)
        >>> float(value), samples.shape
        (3.0, (4,))
    """
    if not callable(statistic):
        raise ValueError(f"statistic: expected a function of item indices, got {type(statistic).__name__}")
    weights = resample_weights(n_items, clusters=clusters, n_resamples=n_resamples, seed=seed)
    value = np.asarray(statistic(np.arange(n_items)), dtype=np.float64)
    samples = np.empty((weights.shape[0], *value.shape))
    for r, row in enumerate(weights):
        sample = np.asarray(statistic(weights_to_indices(row)), dtype=np.float64)
        if sample.shape != value.shape:
            raise ValueError(f"statistic: returned shape {sample.shape} on a resample but {value.shape} on all items")
        samples[r] = sample
    return value, samples


def check_finite_samples(samples: np.ndarray) -> None:
    """Refuse bootstrap samples with NaN/inf (an interval over them would be meaningless)."""
    if not np.isfinite(samples).all():
        raise ValueError("statistic: returned NaN/inf on some resamples (e.g. a metric undefined without ground truth)")


def paired_bootstrap(scores_a: Any, scores_b: Any, *, clusters: Sequence[Any] | None = None,
                     n_resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                     seed: int = 0) -> PairedComparison:
    """Paired bootstrap of ``A - B`` on the same items (and seeds).

    Args:
        scores_a, scores_b: ``(n_items,)`` or ``(n_seeds, n_items)``, same shape, item ``i`` of
            both is the same test item (higher is better).
        clusters, n_resamples, confidence, seed: as in :func:`bootstrap_mean`.

    Returns:
        :class:`PairedComparison`: the mean difference, its interval, and the fraction of
        resamples where A's mean is above B's.

    Raises:
        ValueError: shapes differ or are bad, or a bad argument as in :func:`bootstrap_mean`.

    Example:
        >>> cmp = paired_bootstrap([3.0, 4.0, 5.0], [1.0, 2.5, 4.0], n_resamples=200, seed=0)
        >>> round(cmp.difference, 2), cmp.fraction_a_better
        (1.5, 1.0)
    """
    a = _as_seed_item_matrix(scores_a, "scores_a")
    b = _as_seed_item_matrix(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ValueError(f"scores_b: expected the shape of scores_a {a.shape} (same seeds and items), got {b.shape}")
    confidence = _check_confidence(confidence)
    difference = a - b
    n_seeds, n_items = difference.shape
    weights = resample_weights(n_items, clusters=clusters, n_resamples=n_resamples, seed=seed)
    resampled = ((weights @ difference.T) / weights.sum(axis=1, keepdims=True)).mean(axis=1)
    low, high = percentile_interval(resampled, confidence)
    return PairedComparison(float(difference.mean()), float(low), float(high), float((resampled > 0).mean()),
                            n_seeds, n_items, int(cluster_ids(clusters, n_items).max()) + 1, confidence,
                            int(n_resamples))


def _rounded(x: float, digits: int | None) -> float:
    return float(x) if digits is None or not math.isfinite(float(x)) else round(float(x), digits)


def interval_fields(ci_low: float, ci_high: float, *, n_seeds: int, metric: str | None = None,
                    digits: int | None = None) -> dict[str, Any]:
    """The interval columns of a result row that already has its ``value``.

    Args:
        ci_low, ci_high: the interval (NaN when the row has none, e.g. a timing).
        n_seeds: training seeds behind the row.
        metric: the row's metric; adds ``unit`` from :data:`METRIC_UNITS` when known.
        digits: round the bounds like the value (``None``: as they are).

    Returns:
        ``{"n_seeds", "ci_low", "ci_high"}`` (+ ``"unit"``).

    Example:
        >>> interval_fields(1.234, 2.345, n_seeds=1, metric="PSNR", digits=2)
        {'n_seeds': 1, 'ci_low': 1.23, 'ci_high': 2.35, 'unit': 'dB'}
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds: expected a positive integer, got {n_seeds!r}")
    fields: dict[str, Any] = {"n_seeds": int(n_seeds), "ci_low": _rounded(ci_low, digits),
                              "ci_high": _rounded(ci_high, digits)}
    if metric is not None and metric in METRIC_UNITS:
        fields["unit"] = METRIC_UNITS[metric]
    return fields


def summary_fields(estimate: Estimate, *, metric: str | None = None, digits: int | None = None) -> dict[str, Any]:
    """The columns of a row that reports an :class:`Estimate` without a ``value`` column.

    Returns:
        ``{"mean", "median", "n_seeds", "ci_low", "ci_high"}`` (+ ``"unit"`` for a known metric).

    Example:
        >>> summary_fields(bootstrap_mean([1.0, 2.0], n_resamples=10), metric="SSIM")["mean"]
        1.5
    """
    return {"mean": _rounded(estimate.mean, digits), "median": _rounded(estimate.median, digits),
            **interval_fields(estimate.ci_low, estimate.ci_high, n_seeds=estimate.n_seeds, metric=metric, digits=digits)}


def no_interval_fields(*, n_seeds: int = 1, metric: str | None = None) -> dict[str, Any]:
    """Interval columns for a row that has no resampling interval (timings, counts): NaN bounds."""
    return interval_fields(float("nan"), float("nan"), n_seeds=n_seeds, metric=metric)


__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_RESAMPLES", "METRIC_UNITS", "Estimate", "PairedComparison", "StatisticBootstrap",
    "bootstrap_mean", "bootstrap_statistic", "check_finite_samples", "cluster_ids", "interval_fields",
    "no_interval_fields", "paired_bootstrap", "percentile_interval", "resample_weights", "statistic_samples",
    "summary_fields", "weights_to_indices",
]
