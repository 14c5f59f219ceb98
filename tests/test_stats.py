"""Tests of ispbench.stats: coverage, clusters, paired comparisons, determinism, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from ispbench import stats


def test_interval_covers_true_mean_about_95_percent_of_experiments():
    rng = np.random.default_rng(123)
    experiments, covered = 200, 0
    for k in range(experiments):
        sample = rng.normal(loc=3.0, scale=2.0, size=40)
        est = stats.bootstrap_mean(sample, n_resamples=400, seed=k)
        covered += est.ci_low <= 3.0 <= est.ci_high
    # the percentile bootstrap at n = 40 covers ~93-95%; 200 experiments give a standard error of ~1.6%
    assert 0.88 <= covered / experiments <= 0.99


def test_mean_and_median_over_seeds_use_the_same_resampled_items():
    scores = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [10.0, 11.0, 12.0]])  # (3 seeds, 3 items)
    est = stats.bootstrap_mean(scores, n_resamples=300, seed=0)
    assert est.n_seeds == 3 and est.n_items == 3
    assert est.mean == pytest.approx(np.mean([2.0, 3.0, 11.0]))
    assert est.median == pytest.approx(3.0)
    # the seeds differ by constants, so the interval is the interval of one seed shifted (same indices)
    one = stats.bootstrap_mean(scores[0], n_resamples=300, seed=0)
    shift = est.mean - one.mean
    assert est.ci_low == pytest.approx(one.ci_low + shift) and est.ci_high == pytest.approx(one.ci_high + shift)


def test_clusters_widen_the_interval_of_correlated_crops():
    rng = np.random.default_rng(0)
    photos = np.repeat(np.arange(8), 10)  # 8 source photos, 10 crops each
    scores = rng.normal(0, 3.0, size=8)[photos] + rng.normal(0, 0.3, size=photos.size)
    independent = stats.bootstrap_mean(scores, n_resamples=1000, seed=1)
    clustered = stats.bootstrap_mean(scores, clusters=[f"photo{p}" for p in photos], n_resamples=1000, seed=1)
    assert clustered.n_clusters == 8 and independent.n_clusters == 80
    assert clustered.mean == independent.mean
    assert (clustered.ci_high - clustered.ci_low) > 2.0 * (independent.ci_high - independent.ci_low)


def test_resample_weights_keep_clusters_whole():
    weights = stats.resample_weights(6, clusters=["a", "a", "b", "b", "c", "c"], n_resamples=50, seed=3)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 4] == weights[:, 5]).all()
    assert (weights.sum(axis=1) == 6).all()


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(7)
    base = rng.normal(25.0, 4.0, size=60)  # item difficulty shared by both methods
    better = base + 0.5 + rng.normal(0, 0.3, size=60)
    real = stats.paired_bootstrap(better, base, n_resamples=1000, seed=0)
    assert real.ci_low > 0 and real.fraction_a_better > 0.99
    assert real.difference == pytest.approx(float((better - base).mean()))
    same = base + rng.normal(0, 0.3, size=60)
    null = stats.paired_bootstrap(same, base + rng.normal(0, 0.3, size=60), n_resamples=1000, seed=0)
    assert null.ci_low < 0 < null.ci_high
    assert 0.02 < null.fraction_a_better < 0.98


def test_bootstrap_statistic_matches_bootstrap_mean_for_the_mean():
    x = np.random.default_rng(2).normal(size=25)
    clusters = np.arange(25) // 5
    by_stat = stats.bootstrap_statistic(lambda idx: x[idx].mean(), 25, clusters=clusters, n_resamples=300, seed=4)
    by_mean = stats.bootstrap_mean(x, clusters=clusters, n_resamples=300, seed=4)
    assert float(by_stat.value) == pytest.approx(by_mean.mean)
    assert float(by_stat.ci_low) == pytest.approx(by_mean.ci_low)
    assert float(by_stat.ci_high) == pytest.approx(by_mean.ci_high)


def test_bootstrap_statistic_vector_valued():
    x = np.arange(10, dtype=float)
    r = stats.bootstrap_statistic(lambda idx: np.array([x[idx].min(), x[idx].max()]), 10, n_resamples=100, seed=0)
    assert r.value.tolist() == [0.0, 9.0] and r.samples.shape == (100, 2)
    assert (r.ci_low <= r.ci_high).all()


def test_deterministic_given_the_seed():
    x = np.random.default_rng(5).normal(size=30)
    assert stats.bootstrap_mean(x, seed=11) == stats.bootstrap_mean(x, seed=11)
    assert stats.bootstrap_mean(x, seed=11) != stats.bootstrap_mean(x, seed=12)
    assert (stats.resample_weights(30, seed=1, n_resamples=20) == stats.resample_weights(30, seed=1, n_resamples=20)).all()


def test_row_fields():
    est = stats.bootstrap_mean([30.0, 31.0, 32.0], n_resamples=100, seed=0)
    row = stats.summary_fields(est, metric="PSNR", digits=2)
    assert set(row) == {"mean", "median", "n_seeds", "ci_low", "ci_high", "unit"}
    assert row["unit"] == "dB" and row["n_seeds"] == 1
    assert stats.METRIC_UNITS["mAP@0.5"] == "%"
    empty = stats.no_interval_fields(metric="time")
    assert np.isnan(empty["ci_low"]) and empty["n_seeds"] == 1


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: stats.bootstrap_mean(np.zeros((2, 3, 4))), "scores"),
        (lambda: stats.bootstrap_mean([]), "scores"),
        (lambda: stats.bootstrap_mean([1.0, np.nan]), "scores"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], clusters=["a"]), "clusters"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], n_resamples=0), "n_resamples"),
        (lambda: stats.bootstrap_mean([1.0, 2.0], confidence=95), "confidence"),
        (lambda: stats.paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0]), "scores_b"),
        (lambda: stats.bootstrap_statistic("mean", 3), "statistic"),
        (lambda: stats.resample_weights(0), "n_items"),
        (lambda: stats.interval_fields(0.0, 1.0, n_seeds=0), "n_seeds"),
    ],
)
def test_bad_arguments_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
