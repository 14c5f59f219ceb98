"""Candidate fixed pipelines, the per-image detection cache, the loss oracle and the random-pipeline control."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ispbench import cli, ops
from ispbench.detection_baselines import candidates as cd
from ispbench.detection_baselines import train as baseline_train
from ispbench.detection_baselines.hpo import HPOISP
from ispbench.detection_baselines.models import load_baseline
from ispbench.detection_baselines.pipeline import FIXED_PIPELINE
from ispbench.tasks.detection_eval import evaluate_isp
from ispbench.tasks.detector import FrozenDetector
from ispbench.training.config import from_overrides

# ----------------------------------------------------------------------------- fixtures


class _Set(torch.utils.data.Dataset):
    """``n`` dark 64x64 linear images, one or two painted boxes each (labels 0..4)."""

    def __init__(self, n: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            img = torch.rand(3, 64, 64, generator=g) * 0.05
            k = 1 + i % 2
            boxes = torch.rand(k, 4, generator=g) * 0.3 + torch.tensor([0.35, 0.35, 0.2, 0.2])
            for b in boxes:
                cx, cy, w, h = (b * 64).long().tolist()
                img[:, max(cy - h // 2, 0): cy + h // 2, max(cx - w // 2, 0): cx + w // 2] += 0.2
            self.items.append({"image": img.clamp(0, 1), "boxes": boxes, "labels": torch.randint(0, 5, (k,), generator=g)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    return FrozenDetector(model_yaml="yolov8n.yaml", nc=5, imgsz=64)


def _bright(x: torch.Tensor) -> torch.Tensor:
    return (x * 4).clamp(0, 1)


def _hand_cache(name: str, losses, n_pred: int = 1, seed: int = 0) -> cd.DetectionCache:
    rng = np.random.default_rng(seed)
    n = len(losses)
    preds = [np.concatenate([rng.uniform(0, 30, (n_pred, 2)), rng.uniform(30, 60, (n_pred, 2)),
                             rng.uniform(0, 1, (n_pred, 1)), np.zeros((n_pred, 1))], 1) for _ in range(n)]
    gts = [np.array([[0, 0.5, 0.5, 0.4, 0.4]]) for _ in range(n)]
    key = {"name": name, "weights_sha256": "w", "split": "test", "imgsz": 64, "dataset_version": "d", "conf": 0.001,
           "iou": 0.6, "max_det": 300, "rect": True, "method": "ultralytics"}
    return cd.DetectionCache(key, preds, gts, [(64, 64)] * n, np.asarray(losses, dtype=np.float64))


# ----------------------------------------------------------------------------- candidate generator


def test_candidates_deterministic_distinct_with_hand_picked_first():
    a = cd.candidate_pipelines(40, seed=0)
    assert a == cd.candidate_pipelines(40, seed=0)
    assert a[: len(cd.HAND_PICKED)] == list(cd.HAND_PICKED)
    assert a[0][0] == "exposure" and any(p[0] == "gamma" for p in cd.HAND_PICKED)
    assert len(set(a)) == 40
    for p in a:
        assert len(p) == cd.CANDIDATE_LENGTH == len(set(p)) and set(p) <= set(cd.CANDIDATE_POOL) and "denoise" not in p
    assert cd.candidate_pipelines(12, seed=0) == a[:12]  # a prefix: growing N keeps the finished ones
    assert cd.candidate_pipelines(40, seed=1) != a and cd.candidate_pipelines(40, seed=1)[:6] == a[:6]
    assert any("denoise" in p for p in cd.candidate_pipelines(60, include_denoise=True))
    extra = ("tone", "gamma", "exposure", "ccm", "contrast")
    assert cd.candidate_pipelines(8, extra=[extra])[len(cd.HAND_PICKED)] == extra
    with pytest.raises(ValueError, match="extra"):
        cd.candidate_pipelines(8, extra=[("gamma", "gamma", "tone", "ccm", "contrast")])
    with pytest.raises(ValueError, match="n: expected"):
        cd.candidate_pipelines(0)


# ----------------------------------------------------------------------------- oracle on hand-made caches


def test_oracle_picks_argmin_of_cached_losses_and_never_loses_to_a_member():
    rng = np.random.default_rng(3)
    losses = rng.uniform(0, 5, (4, 30))
    losses[2, 0] = losses[1, 0] = -1.0  # a tie: the first wins
    caches = [_hand_cache(f"c{j}", losses[j], seed=j) for j in range(4)]
    choice = cd.oracle_choice(caches)
    assert choice.tolist() == np.argmin(losses, axis=0).tolist() and choice[0] == 1
    best = cd.oracle(caches)
    assert best.info["from"] == ["c0", "c1", "c2", "c3"] and best.info["choice"] == choice.tolist()
    for i, c in enumerate(choice):
        assert best.per_image_loss[i] == losses[c, i]
        np.testing.assert_array_equal(best.predictions[i], caches[c].predictions[i])
    for j in range(4):  # the oracle over a set containing X is never worse than X in summed loss
        assert best.per_image_loss.sum() <= caches[j].per_image_loss.sum()
    assert cd.oracle(caches[:2]).per_image_loss.sum() >= best.per_image_loss.sum()  # a larger set never loses
    # a selection re-scores like evaluating the chosen detections directly
    direct = cd.DetectionCache(dict(caches[0].key), best.predictions, caches[0].ground_truth, caches[0].image_sizes,
                               best.per_image_loss)
    assert best.result()["mAP@0.5:0.95"] == pytest.approx(direct.result()["mAP@0.5:0.95"])


def test_selection_refuses_caches_of_other_images_and_bad_choices():
    a, b = _hand_cache("a", np.zeros(5)), _hand_cache("b", np.ones(5))
    b.key["dataset_version"] = "other"
    with pytest.raises(ValueError, match="dataset_version"):
        cd.oracle([a, b])
    with pytest.raises(ValueError, match="choice"):
        cd.select_per_image([a, a], [0, 1, 2, 0, 0])


# ----------------------------------------------------------------------------- cache


def test_cache_round_trips_rescores_subsets_and_is_rebuilt_or_refused_on_a_new_key(tmp_path, det):
    ds = _Set(6)
    calls = []

    def isp(x):
        calls.append(len(x))
        return _bright(x)

    cache = cd.cached_evaluation("bright", isp, ds, det, split="val", root=tmp_path, batch_size=4)
    direct = evaluate_isp(_bright, ds, det, batch_size=4)
    assert sum(calls) == 6 and cache.path.is_file() and cache.path.name == "bright__val__64px.pt"
    assert cache.key["weights_sha256"].startswith("state:") and cache.key["dataset_version"].startswith("content:n6:")
    for m in ("mAP@0.5", "mAP@0.5:0.95"):
        assert cache.result()[m] == pytest.approx(direct[m], abs=1e-9)
    np.testing.assert_allclose(cache.per_image_loss, direct["per_image_loss"], rtol=1e-6)
    sub = [1, 3, 4]
    on_sub = evaluate_isp(_bright, torch.utils.data.Subset(ds, sub), det, batch_size=4)
    assert cache.result(sub)["mAP@0.5:0.95"] == pytest.approx(on_sub["mAP@0.5:0.95"], abs=1e-9)

    again = cd.cached_evaluation("bright", isp, ds, det, split="val", root=tmp_path)  # read, not re-run
    assert sum(calls) == 6 and again.key == cache.key
    for p, q in zip(again.predictions, cache.predictions, strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(again.per_image_loss, cache.per_image_loss)

    with pytest.raises(cd.CacheKeyError, match="dataset_version"):
        cd.cached_evaluation("bright", isp, ds, det, split="val", root=tmp_path, data_version="v2", on_mismatch="refuse")
    assert sum(calls) == 6
    rebuilt = cd.cached_evaluation("bright", isp, ds, det, split="val", root=tmp_path, data_version="v2")
    assert sum(calls) == 12 and cd.load_cache(rebuilt.path).key["dataset_version"] == "v2"
    torch.manual_seed(1)
    other = FrozenDetector(model_yaml="yolov8n.yaml", nc=5, imgsz=64)
    assert cd.cache_key("bright", other, ds, split="val", data_version="v2")["weights_sha256"] != rebuilt.key["weights_sha256"]
    with pytest.raises(cd.CacheKeyError, match="weights_sha256"):
        cd.load_cache(rebuilt.path, cd.cache_key("bright", other, ds, split="val", data_version="v2"))
    # Edited ISP or scoring code never serves the old detections: the source hash is part of the key.
    assert rebuilt.key["code_version"] == cd.code_version()
    edited = {**rebuilt.key, "code_version": "0" * 16}
    with pytest.raises(cd.CacheKeyError, match="code_version"):
        cd.load_cache(rebuilt.path, edited)


# ----------------------------------------------------------------------------- random pipeline


def test_random_pipeline_uses_five_distinct_hpo_modules_with_hpo_parameters():
    pipe = [m for m in FIXED_PIPELINE if m != "denoise"]
    hpo = HPOISP(pipe)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for raw in hpo.raw.values():
            raw.add_(torch.randn(raw.shape, generator=g) * 0.5)
    isp = cd.RandomPipelineISP(hpo, seed=0)
    seqs = [isp.pipeline_for(i) for i in range(20)]
    assert all(len(s) == 5 == len(set(s)) and set(s) <= set(pipe) for s in seqs)
    assert len(set(seqs)) > 10 and seqs == [cd.RandomPipelineISP(hpo, seed=0).pipeline_for(i) for i in range(20)]
    assert seqs != [cd.RandomPipelineISP(hpo, seed=1).pipeline_for(i) for i in range(20)]
    x = torch.rand(5, 3, 16, 16, generator=g) * 0.3
    y = torch.cat([isp(x[:2]), isp(x[2:])])  # images are numbered across calls
    for i in range(5):
        ref = x[i:i + 1]
        for m in seqs[i]:  # HPO's own parameters of each module, applied by hand
            ref = ops.apply(m, ref, ops.squash(m, hpo.raw[m].detach().view(1, -1)), clamp=True)
        torch.testing.assert_close(y[i:i + 1], ref.clamp(0, 1))
    isp.reset()
    torch.testing.assert_close(isp(x[:1]), y[:1])


# ----------------------------------------------------------------------------- tuning


def test_tune_one_candidate_exports_skips_when_done_and_ranks_on_val(tmp_path, tiny, det, monkeypatch):
    base = from_overrides(baseline_train.Args, dict(detector_yaml="yolov8n.yaml", detector_nc=5, imgsz=64, batch_size=2,
                                                    progress_bar=False, threads=1))
    pipe = cd.HAND_PICKED[0]
    path = cd.tune_candidate(pipe, tmp_path / "runs", iterations=2, base=base)
    model = load_baseline(path)
    assert path.name == "model.pt" and path.parent.name.startswith(cd.pipeline_slug(pipe) + "__")
    assert model.pipeline == list(pipe) and model.metadata["iterations"] == 2
    assert any(not torch.allclose(r, ops.identity_raw(m, ops.n_params(m))) for m, r in model.raw.items())
    assert cd.candidate_args(pipe, tmp_path, iterations=3, base=base).out_dir != str(path.parent)

    def no_training(args):
        raise AssertionError("a finished candidate was tuned again")

    monkeypatch.setattr(baseline_train, "train", no_training)
    assert cd.tune_candidate(pipe, tmp_path / "runs", iterations=2, base=base) == path
    monkeypatch.undo()
    monkeypatch.setattr("ispbench.data.synthetic_detection.load_split", lambda split, light, root=None: tiny)
    pipes = [pipe, cd.HAND_PICKED[1]]
    ranked = cd.tune_and_rank(pipes, tmp_path / "runs", det, _Set(4), k=2, iterations=2, base=base,
                              cache_root=tmp_path / "cache")
    assert [c.pipeline for c in sorted(ranked, key=lambda c: pipes.index(c.pipeline))] == pipes
    assert ranked[0].val_map >= ranked[1].val_map and path in [c.model_path for c in ranked]
    assert all(c.val_cache.key["split"] == "val" and len(c.val_cache) == 4 for c in ranked)
    assert cd.tune_and_rank(pipes, tmp_path / "runs", det, _Set(4), k=1, iterations=2, base=base,
                            cache_root=tmp_path / "cache")[0].name == ranked[0].name


def test_command_line_tunes_ranks_and_writes_the_ranking(tmp_path, tiny, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "candidates", "--help"])
    assert exit_.value.code == 0 and "--iterations" in capsys.readouterr().out
    out = tmp_path / "ranking.json"
    assert cli.main(["train", "candidates", "--n", "1", "--iterations", "1", "--k", "1", "--detector-yaml", "yolov8n.yaml",
                     "--detector-nc", "5", "--imgsz", "64", "--batch-size", "2", "--threads", "0", "--root", str(tmp_path / "runs"),
                     "--cache-root", str(tmp_path / "cache"), "--out", str(out)]) == 0
    ranking = json.loads(out.read_text())["ranking"]
    assert [r["pipeline"] for r in ranking] == [list(cd.HAND_PICKED[0])] and ranking[0]["rank"] == 1
