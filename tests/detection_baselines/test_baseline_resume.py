"""HPO/attention trainer resume: exact mid log interval; a changed learning rate or seed is refused."""

from __future__ import annotations

import pytest
import torch

from ispbench.detection_baselines.train import Args, train
from ispbench.training.checkpoint import SettingsChangedError
from ispbench.training.config import from_overrides


def _args(out, **kw) -> Args:
    base = dict(detector_yaml="yolov8n.yaml", detector_nc=5, imgsz=64, batch_size=2, iterations=4, log_every=2,
                pipeline="exposure,gamma", lr=0.05, out_dir=str(out), progress_bar=False, seed=1)
    return from_overrides(Args, {**base, **kw})


def test_resume_mid_log_interval_equals_uninterrupted(tmp_path, tiny, capsys):
    full = train(_args(tmp_path / "full"))
    train(_args(tmp_path / "split", stop_after=3, export=str(tmp_path / "never.pt")))
    assert not (tmp_path / "never.pt").exists()
    resumed = train(_args(tmp_path / "split"))
    assert "at iteration 3 of 4" in capsys.readouterr().err
    for k, v in full["model"].state_dict().items():
        assert torch.equal(v, resumed["model"].state_dict()[k]), k
    key = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert len(full["metrics"]) == 2 and key(full["metrics"]) == key(resumed["metrics"])


def test_changed_lr_refused_and_recorded_with_the_flag(tmp_path, tiny):
    out = tmp_path / "run"
    train(_args(out, iterations=2, stop_after=1))
    with pytest.raises(SettingsChangedError, match=r"lr: 0.05 -> 0.5"):
        train(_args(out, iterations=2, lr=0.5))
    result = train(_args(out, iterations=2, lr=0.5, allow_changed_settings=True))
    assert result["summary"]["segments"][-1]["changed"] == {"lr": [0.05, 0.5]}
