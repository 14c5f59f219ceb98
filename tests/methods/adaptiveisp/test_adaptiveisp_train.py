"""Trainer smoke test: a few iterations with a random-init YOLOv8n at 64 px; resume == uninterrupted."""

from __future__ import annotations

import csv

import pytest
import torch

from ispbench.methods.adaptiveisp.train import Args, main, train
from ispbench.training.config import from_overrides, parse


def _args(out_dir, **kw) -> Args:
    base = dict(detector_yaml="yolov8n.yaml", detector_nc=5, imgsz=64, batch_size=2, pool_size=4, iterations=3,
                log_every=1, checkpoint_every=10, lr=1e-3, out_dir=str(out_dir), progress_bar=False,
                disabled_modules="denoise", use_stop=True, lambda_c=0.01, seed=3, final_eval_images=0)
    base.update(kw)
    return from_overrides(Args, base)


def test_command_line_flat_flags_fill_nested_detection_settings():
    a = parse(Args, ["--batch-size", "2", "--use-stop", "--no-lr-decay", "--lambda-c", "0.05", "--imgsz", "96",
                     "--n-train", "4"], prog="ispbench train adaptiveisp")
    assert a.batch_size == 2 and a.use_stop and not a.lr_decay and a.lambda_c == 0.05
    assert a.detection.imgsz == 96 and a.detection.n_train == 4 and a.detection.device == "cpu"


def test_final_evaluation_in_summary(tmp_path, tiny_data, capsys):
    import json

    assert main(["--detector-yaml", "yolov8n.yaml", "--detector-nc", "5", "--imgsz", "64", "--batch-size", "2",
                 "--pool-size", "4", "--iterations", "1", "--disabled-modules", "denoise", "--no-progress-bar",
                 "--final-eval-images", "2", "--out-dir", str(tmp_path / "ev")]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    ev = summary["final_eval"]
    assert ev["images"] == 2 and ev["val_loss_input"] > 0 and ev["val_loss_policy"] > 0
    err = capsys.readouterr().err
    assert "run folder:" in err and "load_policy(" in err and "no checkpoint" in err


def test_train_smoke(tmp_path, tiny_data):
    out = train(_args(tmp_path / "smoke", iterations=2, use_stop=False, lambda_c=0.0))
    assert len(out["metrics"]) == 2
    assert all(torch.isfinite(p).all() for p in out["policy"].parameters())
    assert (tmp_path / "smoke" / "summary.json").exists()


@pytest.mark.slow
def test_train_resume_equals_uninterrupted_and_same_seed(tmp_path, tiny_data):
    full = train(_args(tmp_path / "full"))
    rows = list(csv.DictReader(open(tmp_path / "full" / "metrics.csv")))
    assert len(rows) == 3 and "freq_stop" in rows[0] and "reward" in rows[0]
    assert (tmp_path / "full" / "last.pt").exists()
    # a fresh run with the same seed, interrupted after 2 iterations, then resumed
    part = train(_args(tmp_path / "split", stop_after=2, export=str(tmp_path / "never.pt")))
    assert len(part["metrics"]) == 2 and not (tmp_path / "never.pt").exists()
    resumed = train(_args(tmp_path / "split", export=str(tmp_path / "policy.pt")))
    assert (tmp_path / "policy.pt").exists()
    for k, v in full["policy"].state_dict().items():
        assert torch.equal(v, resumed["policy"].state_dict()[k]), k
    for k, v in full["value"].state_dict().items():
        assert torch.equal(v, resumed["value"].state_dict()[k]), k
    key = lambda r: {k: v for k, v in r.items() if k != "elapsed_s"}  # noqa: E731
    assert [key(r) for r in full["metrics"]] == [key(r) for r in resumed["metrics"]]


def test_train_options_mask_reuse_hpo_init_warmup(tmp_path, tiny_data):
    from ispbench.methods.adaptiveisp.inference import load_policy

    out = train(_args(tmp_path / "opts", iterations=2, use_stop=False, lambda_c=0.0, mask_reuse=True, param_init="hpo",
                      param_warmup=1, advantage_norm=True, snapshot_every=2))
    rows = out["metrics"]
    assert len(rows) == 2 and rows[0]["pen_reuse"] == 0.0 and rows[1]["pen_reuse"] == 0.0
    snap = load_policy(tmp_path / "opts" / "policy_it2.pt")
    assert snap.mask_reuse and snap.metadata["iterations"] == 2
    with pytest.raises(ValueError, match="param_init"):
        train(_args(tmp_path / "bad", iterations=1, param_init="nope"))
