"""The fast mAP resampler reproduces evaluate_map on all images, and its intervals behave."""

from __future__ import annotations

import numpy as np
import pytest

from ispbench.chapters.detection_intervals import MapResampler, map_intervals
from ispbench.tasks.map_eval import evaluate_map


def _random_detections(rng, n_images=30, n_classes=3, size=(96, 128)):
    preds, gts = [], []
    h, w = size
    for _ in range(n_images):
        m = int(rng.integers(0, 4))
        gt = np.column_stack([rng.integers(0, n_classes, m), rng.uniform(0.2, 0.8, (m, 2)), rng.uniform(0.1, 0.3, (m, 2))])
        rows = []
        for c, cx, cy, bw, bh in gt:  # a noisy hit per GT, plus clutter
            jitter = rng.normal(0, 0.03, 4)
            x1, y1 = (cx - bw / 2 + jitter[0]) * w, (cy - bh / 2 + jitter[1]) * h
            x2, y2 = (cx + bw / 2 + jitter[2]) * w, (cy + bh / 2 + jitter[3]) * h
            rows.append([x1, y1, x2, y2, rng.uniform(0.3, 1.0), c])
        for _ in range(int(rng.integers(0, 5))):
            x1, y1 = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
            rows.append([x1, y1, x1 + 20, y1 + 15, rng.uniform(0.0, 0.6), rng.integers(0, n_classes)])
        preds.append(np.array(rows, dtype=float).reshape(-1, 6))
        gts.append(gt.reshape(-1, 5))
    return preds, gts, [size] * n_images


def test_resampler_on_all_images_equals_evaluate_map():
    preds, gts, sizes = _random_detections(np.random.default_rng(0))
    ref = evaluate_map(preds, gts, sizes)
    ours = MapResampler(preds, gts, sizes)(np.arange(len(preds)))
    assert ours == pytest.approx([100 * ref["mAP@0.5"], 100 * ref["mAP@0.75"], 100 * ref["mAP@0.5:0.95"]], abs=1e-9)


def test_resampler_with_repeats_equals_evaluate_map_on_the_repeated_list():
    preds, gts, sizes = _random_detections(np.random.default_rng(1), n_images=12)
    idx = np.array([0, 0, 3, 5, 5, 5, 7, 11])
    # distinct scores per copy would reorder ties; evaluate_map keeps copies adjacent in image order, as we do
    ref = evaluate_map([preds[i] for i in idx], [gts[i] for i in idx], [sizes[i] for i in idx])
    ours = MapResampler(preds, gts, sizes)(idx)
    assert ours[0] == pytest.approx(100 * ref["mAP@0.5"], abs=1e-6)
    assert ours[2] == pytest.approx(100 * ref["mAP@0.5:0.95"], abs=1e-6)


def test_map_intervals_bracket_the_value_and_need_predictions():
    preds, gts, sizes = _random_detections(np.random.default_rng(2), n_images=40)
    dataset = [{"image": np.zeros((3, *sizes[i])), "boxes": g[:, 1:], "labels": g[:, 0]} for i, g in enumerate(gts)]
    ref = evaluate_map(preds, gts, sizes)
    ci = map_intervals({"predictions": preds}, dataset, n_resamples=200, seed=0)
    for metric in ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95"):
        low, high = ci[metric]
        assert low <= 100 * ref[metric] <= high and high - low > 0
    assert map_intervals({"predictions": preds}, dataset, n_resamples=200, seed=0) == ci
    with pytest.raises(ValueError, match="predictions"):
        map_intervals({}, dataset)


def _result(preds, gts, sizes):
    return {"predictions": preds, "ground_truth": gts, "image_sizes": sizes}


def test_seed_estimates_average_the_seeds_and_bracket_the_mean():
    from ispbench.chapters.detection_intervals import seed_map_estimates

    rng = np.random.default_rng(3)
    preds, gts, sizes = _random_detections(rng, n_images=40)
    worse = [p[p[:, 4] < 0.7] if len(p) else p for p in preds]  # drop the confident hits: a worse seed
    est = seed_map_estimates([_result(preds, gts, sizes), _result(worse, gts, sizes)], [None] * 40, n_resamples=100)
    one = MapResampler(preds, gts, sizes)(np.arange(40))
    two = MapResampler(worse, gts, sizes)(np.arange(40))
    m = est["mAP@0.5:0.95"]
    assert m["n_seeds"] == 2 and m["per_seed"] == pytest.approx([one[2], two[2]])
    assert m["mean"] == pytest.approx((one[2] + two[2]) / 2)
    assert m["ci_low"] < m["mean"] < m["ci_high"]


def test_paired_difference_sees_a_better_method_and_is_zero_against_itself():
    from ispbench.chapters.detection_intervals import paired_map_difference

    preds, gts, sizes = _random_detections(np.random.default_rng(4), n_images=40)
    worse = [p[p[:, 4] < 0.7] if len(p) else p for p in preds]
    good, bad = [_result(preds, gts, sizes)], [_result(worse, gts, sizes)]
    cmp = paired_map_difference(good, bad, [None] * 40, n_resamples=100)["mAP@0.5"]
    assert cmp["difference"] > 0 and cmp["ci_low"] > 0 and cmp["fraction_a_better"] == 1.0
    same = paired_map_difference(good, good, [None] * 40, n_resamples=50)["mAP@0.5"]
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0
    with pytest.raises(ValueError, match="results"):
        paired_map_difference([], good, [None] * 40)


def test_shared_resamples_give_what_bootstrapping_the_combination_gives():
    # seed means and paired differences are combined from each model's remembered resamples;
    # that must equal bootstrapping the combined statistic directly, and resample each model once
    from ispbench import stats
    from ispbench.chapters import detection_intervals as di

    rng = np.random.default_rng(5)
    preds, gts, sizes = _random_detections(rng, n_images=30)
    worse = [p[p[:, 4] < 0.8] if len(p) else p for p in preds]
    ra = [MapResampler(preds, gts, sizes), MapResampler(worse, gts, sizes)]
    rb = [MapResampler(worse, gts, sizes)]
    direct = stats.bootstrap_statistic(lambda idx: np.mean([r(idx) for r in ra], axis=0) - rb[0](idx), 30,
                                       n_resamples=80, seed=3)
    shared = di.paired_difference_from_resamplers(ra, rb, di.MAP_METRICS, n_resamples=80, seed=3)
    for k, m in enumerate(di.MAP_METRICS):
        assert shared[m]["difference"] == direct.value[k]
        assert (shared[m]["ci_low"], shared[m]["ci_high"]) == (direct.ci_low[k], direct.ci_high[k])
    # equal content, equal digest: the second resampler of `worse` reuses the first's samples
    assert ra[1].content_digest() == rb[0].content_digest() != ra[0].content_digest()
    first = di.resampled_map(ra[1], n_resamples=80, seed=3)
    assert di.resampled_map(rb[0], n_resamples=80, seed=3)[1] is first[1]
    assert di.resampled_map(rb[0], n_resamples=80, seed=4)[1] is not first[1]  # another seed draws anew
