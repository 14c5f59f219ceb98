"""Helpers of the POS-ISP notebooks: the All split's concatenated caches, the random-sequence and fixed-sequence
ISPs of the controls, the efficiency table's columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench import ops
from ispbench.chapters import posisp as ps
from ispbench.detection_baselines import candidates as cd
from ispbench.methods.adaptiveisp.networks import PolicyNet
from ispbench.methods.posisp.networks import PosISP

pytestmark = pytest.mark.usefixtures("one_thread")


def _cache(name: str, n: int, seed: int, split: str) -> cd.DetectionCache:
    rng = np.random.default_rng(seed)
    preds = [np.array([[*rng.uniform(0, 30, 2), *rng.uniform(30, 60, 2), rng.uniform(), 0.0]]) for _ in range(n)]
    gts = [np.array([[0, 0.5, 0.5, 0.5, 0.5]]) for _ in range(n)]
    key = {"name": name, "weights_sha256": "w", "split": split, "imgsz": 64, "dataset_version": f"d{split}", "conf": 0.001,
           "iou": 0.6, "max_det": 300, "rect": True, "method": "ultralytics"}
    return cd.DetectionCache(key, preds, gts, [(64, 64)] * n, rng.uniform(0, 1, n))


def test_concatenated_cache_scores_the_union_of_images():
    low, normal = _cache("m", 5, 0, "test"), _cache("m", 3, 1, "test_normal")
    both = ps.concat_caches([low, normal], "m_all")
    assert len(both) == 8 and both.key["split"] == "test+test_normal"
    direct = cd.DetectionCache(dict(low.key), low.predictions + normal.predictions, low.ground_truth + normal.ground_truth,
                               low.image_sizes + normal.image_sizes, np.concatenate([low.per_image_loss, normal.per_image_loss]))
    for metric in ps.METRICS:
        assert both.result()[metric] == pytest.approx(direct.result()[metric])
    assert both.result(range(5))["mAP@0.5"] == pytest.approx(low.result()["mAP@0.5"])


def test_random_sequences_repeat_after_reset_and_fixed_sequences_run_in_order():
    model = PosISP().eval()
    x = torch.rand(4, 3, 16, 16) * 0.3
    rnd = ps.SequenceISP(model, seed=3)
    first = rnd(x)
    rnd.reset()
    assert torch.equal(rnd(x), first)
    assert not torch.equal(rnd(x), first)  # the counter moved on: other pipelines
    fixed = ps.SequenceISP(model, ["exposure", "gamma"])(x)
    with torch.no_grad():
        p = model.param_net.module_params(model.param_net(x))
    expected = ops.apply("gamma", ops.apply("exposure", x, p["exposure"], variant="posisp"), p["gamma"], variant="posisp")
    assert torch.allclose(fixed, expected.clamp(0, 1), atol=1e-6)
    assert torch.equal(ps.SequenceISP(model, [])(x), x)


def test_efficiency_rows_measure_both_predictors():
    posisp = PosISP()
    cost, isp = ps.efficiency_rows(posisp, PolicyNet(list(ops.MODULE_NAMES), param_heads="shared"), imgsz=64, repeats=1)
    assert list(cost.method) == ["POS-ISP", "POS-ISP", "AdaptiveISP"]
    assert cost.iloc[0]["params (M)"] == pytest.approx(0.527, abs=1e-3)
    assert cost.iloc[0]["MACs (M)"] > 0 and cost.iloc[2]["MACs (M)"] > cost.iloc[0]["MACs (M)"]
    assert list(isp.columns) == ["method", "pipeline length", "ISP time (ms)"]
    assert isp.iloc[0]["pipeline length"] == 10  # an untrained decoder decodes all ten modules
