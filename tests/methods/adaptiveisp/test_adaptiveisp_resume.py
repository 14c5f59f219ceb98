"""AdaptiveISP resume: exact when interrupted between two log points; changed settings refused or recorded."""

from __future__ import annotations

import json

import pytest
import torch

from ispbench.methods.adaptiveisp.train import Args, train
from ispbench.training.checkpoint import SettingsChangedError
from ispbench.training.config import from_overrides


def _args(out_dir, **kw) -> Args:
    base = dict(detector_yaml="yolov8n.yaml", detector_nc=5, imgsz=64, batch_size=2, pool_size=4, iterations=4,
                log_every=2, checkpoint_every=10, lr=1e-3, out_dir=str(out_dir), progress_bar=False,
                disabled_modules="denoise", use_stop=True, seed=5, final_eval_images=0)
    base.update(kw)
    return from_overrides(Args, base)


def _key(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


@pytest.mark.slow
def test_resume_mid_log_interval_equals_uninterrupted(tmp_path, tiny_data, capsys):
    full = train(_args(tmp_path / "full"))
    train(_args(tmp_path / "split", stop_after=3))  # stops between the rows of iterations 2 and 4
    resumed = train(_args(tmp_path / "split"))
    assert "at iteration 3 of 4" in capsys.readouterr().err
    for name in ("policy", "value"):
        for k, v in full[name].state_dict().items():
            assert torch.equal(v, resumed[name].state_dict()[k]), (name, k)
    assert len(full["metrics"]) == 2
    assert _key(full["metrics"]) == _key(resumed["metrics"])


def test_changed_settings_refused_then_recorded_with_the_flag(tmp_path, tiny_data):
    out = tmp_path / "run"
    train(_args(out, iterations=2, stop_after=1, log_every=1))
    with pytest.raises(SettingsChangedError) as info:
        train(_args(out, iterations=2, log_every=1, lr=0.5, seed=6))
    msg = str(info.value)
    assert "lr: 0.001 -> 0.5" in msg and "seed: 5 -> 6" in msg and "--allow-changed-settings" in msg
    # run length, cadence and the progress bar may change without the flag
    train(_args(out, iterations=2, log_every=1, lr=0.5, allow_changed_settings=True, checkpoint_every=5))
    segments = json.loads((out / "summary.json").read_text())["segments"]
    assert segments[0] == {"start": 0}
    assert segments[1]["start"] == 1 and segments[1]["changed"]["lr"] == [0.001, 0.5]
    assert segments[1]["segment_changes"]["checkpoint_every"] == [10, 5]
    assert torch.load(out / "last.pt", weights_only=True)["segments"] == segments
