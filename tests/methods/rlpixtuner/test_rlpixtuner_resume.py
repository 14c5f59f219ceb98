"""RLPixTuner resume: exact (weights, rows, best policy) after --stop-after; the best score survives; settings guarded."""

from __future__ import annotations

import csv

import pytest
import torch

from ispbench.methods.rlpixtuner.train import Args, train
from ispbench.training.checkpoint import SettingsChangedError
from ispbench.training.config import from_overrides

TINY = dict(n_envs=4, batch_size=8, buffer_size=256, learning_starts=40, image_size=32, width=4, mlp="32",
            eval_images=2, eval_every=40, checkpoint_every=0, progress=False, updates_per_step=0.25, save_buffer=True)


def _args(out, **kw) -> Args:
    return from_overrides(Args, {**TINY, "total_steps": 200, "out_dir": str(out), **kw})


def _rows(out):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader((out / "metrics.csv").open())]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_stop_and_resume_equals_uninterrupted_including_best_policy(tmp_path, capsys):
    straight = train(_args(tmp_path / "s"))
    part = train(_args(tmp_path / "r", stop_after=100))
    assert part["stopped"] and not (tmp_path / "r" / "policy.pt").exists()
    ck = _load(tmp_path / "r" / "last.pt")  # replay buffer stored as tensors: weights_only works
    assert isinstance(ck["buffer"]["cur"], torch.Tensor) and ck["best_eval"] > -float("inf")
    resumed = train(_args(tmp_path / "r", resume=True))
    assert "resumed from" in capsys.readouterr().err
    assert resumed["step"] == straight["step"] and resumed["updates"] == straight["updates"]
    assert _rows(tmp_path / "s") == _rows(tmp_path / "r")
    for name in ("policy.pt", "best_policy.pt"):
        a, b = _load(tmp_path / "s" / name)["policy"], _load(tmp_path / "r" / name)["policy"]
        assert all(torch.equal(a["actor"][k], b["actor"][k]) for k in a["actor"]), name
    best = _load(tmp_path / "r" / "best_policy.pt")["metrics"]["eval_psnr_final"]
    evals = [float(r["eval_psnr_final"]) for r in _rows(tmp_path / "r") if r["eval_psnr_final"]]
    assert abs(best - max(evals)) < 1e-6  # the best over both segments, never replaced by a worse one


def test_best_score_is_kept_across_a_resume(tmp_path):
    out = tmp_path / "b"
    train(_args(out, stop_after=80))
    ck = torch.load(out / "last.pt", weights_only=True)
    ck["best_eval"] = 1e6  # pretend the first segment's best policy was unbeatable
    torch.save(ck, out / "last.pt")
    before = (out / "best_policy.pt").read_bytes()
    train(_args(out, resume=True))
    assert (out / "best_policy.pt").read_bytes() == before  # a worse evaluation never overwrites it


def test_changed_settings_refused_with_differences_named(tmp_path):
    out = tmp_path / "c"
    train(_args(out, total_steps=60, eval_every=0))
    with pytest.raises(SettingsChangedError) as info:
        train(_args(out, total_steps=100, eval_every=0, resume=True, actor_lr=0.5, gamma=0.5, n_envs=2))
    msg = str(info.value)
    assert "actor_lr: 0.0005 -> 0.5" in msg and "gamma: 0.9 -> 0.5" in msg and "n_envs: 4 -> 2" in msg
    final = train(_args(out, total_steps=100, eval_every=0, resume=True, gamma=0.5, allow_changed_settings=True))
    assert final["segments"][-1]["changed"] == {"gamma": [0.9, 0.5]}
    assert final["segments"][-1]["segment_changes"]["total_steps"] == [60, 100]
