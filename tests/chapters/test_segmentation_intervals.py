"""Segmentation caches and mask-mAP intervals: round trip, key mismatch, intervals, paired differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.chapters import segmentation_intervals as si
from ispbench.chapters.adaptiveisp import paired_rows, seed_map_rows
from ispbench.data import synthetic_detection as sd
from ispbench.detection_baselines.candidates import CacheKeyError
from ispbench.tasks.segmentation_eval import evaluate_isp_segmentation
from ispbench.tasks.segmenter import DEFAULT_SEG_WEIGHTS, FrozenSegmenter

TINY = sd.GeneratorConfig(seed=5, image_size=64, n_train=3, n_val=4, n_test=1, min_size=0.2, max_size=0.45)


def _isp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1) ** (1 / 2.2)


@pytest.fixture(scope="module")
def val_with_masks(tmp_path_factory):
    path = sd.generate(TINY, root=tmp_path_factory.mktemp("seg_cache"))
    return sd.load_split("val", "low", root=path, with_masks=True)


@pytest.fixture(scope="module")
def segmenter():
    if not DEFAULT_SEG_WEIGHTS.is_file():
        pytest.skip(f"{DEFAULT_SEG_WEIGHTS} not shipped")
    return FrozenSegmenter(imgsz=64)


def fake_result(n_images: int = 40, *, hit_iou: float = 0.9, miss_every: int = 0, seed: int = 0, images: int = 0) -> dict:
    """A segmentation result built from per-image records: each object gets one prediction of IoU ``hit_iou``
    (every ``miss_every``-th object IoU 0.2 instead), plus a low-score false positive per image. ``images``
    seeds the ground truth (the same images for every ``seed``), ``seed`` the scores and IoUs."""
    rng, rng_gt = np.random.default_rng(seed), np.random.default_rng(images)
    preds, ious, gts, k = [], [], [], 0
    for _ in range(n_images):
        m = int(rng_gt.integers(1, 4))
        cls = rng_gt.integers(0, 3, m)
        gts.append(np.column_stack([cls, rng_gt.uniform(0.3, 0.7, (m, 2)), np.full((m, 2), 0.2)]))
        rows, iou = [], np.zeros((m + 1, m))
        for j in range(m):
            k += 1
            iou[j, j] = 0.2 if miss_every and k % miss_every == 0 else hit_iou + rng.uniform(-0.05, 0.05)
            rows.append([10, 10, 20, 20, rng.uniform(0.3, 1.0), cls[j]])
        rows.append([0, 0, 5, 5, rng.uniform(0.0, 0.3), cls[0]])
        preds.append(np.array(rows, dtype=np.float64))
        ious.append(iou)
    cache = si.SegmentationCache(key={"name": "fake", "method": "ultralytics"}, predictions=preds, mask_ious=ious,
                                 ground_truth=gts, image_sizes=[(64, 64)] * n_images, per_image_loss=np.ones(n_images))
    return cache.result()


def test_cache_round_trip_reproduces_the_evaluation(tmp_path, monkeypatch, one_thread, val_with_masks, segmenter):
    direct = evaluate_isp_segmentation(_isp, val_with_masks, segmenter, batch_size=4, imgsz=64)
    assert sum(len(p) for p in direct["predictions"]) > 0  # the shipped segmenter finds things here
    cached = si.cached_segmentation("gamma", _isp, val_with_masks, segmenter, split="val", imgsz=64, batch_size=4,
                                    root=tmp_path)
    for m in si.METRICS:
        assert cached[m] == pytest.approx(direct[m], abs=1e-9)
        assert cached["box"][m] == pytest.approx(direct["box"][m], abs=1e-9)
    files = list(tmp_path.glob("*.pt"))
    assert [f.name for f in files] == ["gamma__val__64px.pt"]

    def no_eval(*args, **kwargs):
        raise AssertionError("the cache file should have been read")

    monkeypatch.setattr(si, "evaluate_isp_segmentation", no_eval)
    again = si.cached_segmentation("gamma", _isp, val_with_masks, segmenter, split="val", imgsz=64, root=tmp_path)
    assert [again[m] for m in si.METRICS] == [cached[m] for m in si.METRICS]
    for a, b in zip(again["mask_ious"], direct["mask_ious"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(again["per_image_loss"], direct["per_image_loss"])
    # the resampler reproduces the mask mAP on all images, from the cached IoUs alone
    full = si.mask_resampler(again)(np.arange(len(val_with_masks)))
    np.testing.assert_allclose(full, [direct[m] for m in si.METRICS], atol=1e-9)


class _FakeSegmenter:
    """What a cache key needs of a segmenter: weights (none) and a model to hash, a size, names."""

    def __init__(self, value: float = 0.0) -> None:
        self.weights, self.imgsz, self.names = None, 64, {0: "a", 1: "b", 2: "c"}
        self.model = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(self.model.weight, value)


def _fake_eval(calls: list):
    def evaluate(isp_fn, dataset, segmenter, **kwargs):
        calls.append(kwargs)
        res = fake_result(len(dataset))
        return {k: res[k] for k in ("predictions", "mask_ious", "ground_truth", "image_sizes", "per_image_loss")}
    return evaluate


def _items(n: int = 5) -> list[dict]:
    return [{"image": torch.full((3, 8, 8), i / 10), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
             "labels": torch.tensor([0]), "masks": torch.zeros(1, 8, 8, dtype=torch.bool)} for i in range(n)]


def test_a_key_mismatch_rebuilds_or_is_refused(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(si, "evaluate_isp_segmentation", _fake_eval(calls))
    items, seg = _items(), _FakeSegmenter()
    kw = dict(split="test", imgsz=64, root=tmp_path)
    si.segmentation_cache("isp", None, items, seg, **kw)
    si.segmentation_cache("isp", None, items, seg, **kw)
    assert len(calls) == 1  # the second call read the file
    si.segmentation_cache("isp", None, items, seg, conf=0.25, **kw)  # same file name, other key: rebuilt
    assert len(calls) == 2 and calls[-1]["conf"] == 0.25
    with pytest.raises(CacheKeyError, match="conf: 0.25 \\(file\\) != 0.001 \\(asked\\)"):
        si.segmentation_cache("isp", None, items, seg, on_mismatch="refuse", **kw)
    # another segmenter or other masks change the key too
    with pytest.raises(CacheKeyError, match="segmenter_sha256"):
        si.segmentation_cache("isp", None, items, _FakeSegmenter(1.0), on_mismatch="refuse", conf=0.25, **kw)
    other = _items()
    other[2]["masks"][0, 3, 3] = True
    assert si.segmentation_dataset_version(other) != si.segmentation_dataset_version(items)
    assert si.load_segmentation_cache(tmp_path / "isp__test__64px.pt").key["conf"] == 0.25


def test_a_file_cache_is_named_by_its_sha_and_loads_the_model_only_to_compute(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(si, "evaluate_isp_segmentation", _fake_eval(calls))
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")  # never loaded: the fake evaluation does not call the ISP
    res = si.segmentation_caches_for_file(model, _items(), _FakeSegmenter(), split="test", imgsz=64,
                                          root=tmp_path / "cache")
    assert res["name"].startswith("model__") and len(res["name"]) == len("model__") + 12
    assert len(calls) == 1 and np.isfinite(res["mAP@0.5:0.95"])


def test_the_seed_interval_contains_the_point_estimate_and_rows_match_the_detection_rows():
    results = [fake_result(seed=s, miss_every=3 + s) for s in range(3)]
    est = si.seed_mask_map_estimates(results, n_resamples=100)
    for m in si.METRICS:
        e = est[m]
        assert e["n_seeds"] == 3 and e["ci_low"] <= e["mean"] <= e["ci_high"] and e["ci_low"] < e["ci_high"]
        assert e["mean"] == pytest.approx(np.mean([r[m] for r in results]))
    low, high = si.mask_map_intervals(results[0], n_resamples=100)["mAP@0.5"]
    assert low <= results[0]["mAP@0.5"] <= high
    # same columns as the detection rows (whose box mAP these results also carry)
    rows = si.seed_mask_map_rows("X", results, setting="s")
    box = seed_map_rows("X", results, dataset=list(range(len(results[0]["predictions"]))), setting="s")
    assert [list(r) for r in rows] == [list(r) for r in box]
    assert [r["metric"] for r in rows] == list(si.METRICS)


def test_a_result_against_itself_differs_by_exactly_zero():
    a = [fake_result(seed=1, miss_every=4)]
    for m, c in si.paired_mask_map_difference(a, a, n_resamples=50).items():
        assert c["difference"] == 0.0 and c["ci_low"] == 0.0 and c["ci_high"] == 0.0, m
    assert {r["verdict"] for r in si.paired_mask_rows("A", a, "A", a)} == {"no clear difference"}


def test_a_clearly_better_result_gives_a_positive_interval():
    good = [fake_result(seed=s, hit_iou=0.92) for s in range(2)]
    bad = [fake_result(seed=s, hit_iou=0.92, miss_every=2) for s in range(2)]  # same images, half the objects missed
    rows = si.paired_mask_rows("good", good, "bad", bad)
    assert [r["verdict"] for r in rows] == ["A better"] * 3
    assert all(r["ci_low"] > 0 and r["P(A > B)"] == 1.0 for r in rows)
    assert list(rows[0]) == list(paired_rows("good", good[:1], "bad", bad[:1], dataset=list(range(40)))[0])
    flipped = si.paired_mask_rows("bad", bad, "good", good)
    assert all(r["verdict"] == "B better" and r["ci_high"] < 0 for r in flipped)


def test_refusals_name_what_is_wrong():
    res = fake_result(n_images=5)
    other = fake_result(n_images=5, images=9)  # other ground truth: other images
    with pytest.raises(ValueError, match="not scored on the same images"):
        si.paired_mask_map_difference([res], [other], n_resamples=10)
    with pytest.raises(ValueError, match="no 'mask_ious'"):
        si.seed_mask_map_estimates([{k: v for k, v in res.items() if k != "mask_ious"}])
    with pytest.raises(ValueError, match="'ultralytics' AP"):
        si.mask_resampler({**res, "method": "coco101"})
    with pytest.raises(ValueError, match="one segmentation result per training seed"):
        si.seed_mask_map_estimates([])


def test_concatenated_results_pool_the_images():
    a, b = fake_result(n_images=6, seed=1), fake_result(n_images=4, images=2, miss_every=2)
    both = si.concat_results([a, b])
    assert len(both["predictions"]) == 10
    np.testing.assert_allclose(si.mask_resampler(both)(np.arange(10)), [both[m] for m in si.METRICS])


def test_table2_under_the_paper_profile_refuses_without_the_data(tmp_path):
    from ispbench import parameters
    from ispbench.chapters import segmentation
    from ispbench.data.prepared import DatasetMissingError

    params = parameters.profile_parameters("adaptiveisp/table2", "paper")
    assert params["seg_data_root"] == "" and params["data_root"] == "" and params["retrain"]
    for load in (segmentation.prepare_segmenter, segmentation.load_segmentation_test):
        with pytest.raises(DatasetMissingError) as info:
            load(params)
        text = str(info.value)
        assert "seg_data_root" in text and "ispbench data prepare lis" in text and "paper" in text
    # with the segmentation data given, retraining still needs the detection data the ISPs are trained on
    with pytest.raises(DatasetMissingError, match="data_root is empty.*ispbench data prepare lod"):
        segmentation.prepare_segmenter({**params, "seg_data_root": str(tmp_path)})
