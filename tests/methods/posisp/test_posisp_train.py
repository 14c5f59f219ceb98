"""POS-ISP trainer: reward and schedule as the authors wrote them, baselines, exact resume."""

from __future__ import annotations

import pytest
import torch
from toy_posisp import ToyTask

from ispbench.methods.posisp import train as trainer
from ispbench.training.checkpoint import load_checkpoint
from ispbench.training.config import from_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def test_temperature_halves_every_half_life_down_to_its_floor():
    args = trainer.Args(iterations=20_001)
    assert trainer.temperature(0, args) == pytest.approx(2.5)
    assert trainer.temperature(6000, args) == pytest.approx(0.625)
    assert trainer.temperature(19_000, args) == pytest.approx(0.2)
    short = trainer.Args(iterations=2000)  # half-life scaled to the run: 3000 * 2000 / 20001
    assert trainer.temperature(300, short) == pytest.approx(2.5 * 0.5 ** (300 / (3000 * 2000 / 20001)))


def test_reward_is_the_clipped_loss_drop_minus_the_brightness_penalty():
    args = trainer.Args()
    out = torch.stack([torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), 0.005), torch.full((3, 2, 2), 0.95)])
    r = trainer.terminal_reward(torch.tensor([0.8, 3.0, 0.5]), torch.tensor([0.3, 0.5, 0.5]), out, 1.0, args)
    assert r.tolist() == pytest.approx([0.5, (1 - 0.5) - 10 * 100 * 0.005, 0.0 - 10 * 0.05], abs=1e-5)


def test_baselines():
    r = torch.tensor([1.0, 3.0, 5.0])
    assert trainer.reinforce_advantage(r, "none", 9.0).tolist() == [1.0, 3.0, 5.0]
    assert trainer.reinforce_advantage(r, "mean", 2.0).tolist() == [-1.0, 1.0, 3.0]
    assert trainer.reinforce_advantage(r, "loo", 0.0).tolist() == [-3.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="baseline"):
        trainer.reinforce_advantage(r, "median", 0.0)


def _args(out_dir, **kw):
    base = dict(imgsz=32, batch_size=2, iterations=12, seq_lr=1e-3, param_lr=1e-3, seed=3, log_every=4, checkpoint_every=4,
                progress_bar=False, out_dir=str(out_dir), baseline="mean")
    return from_overrides(trainer.Args, {**base, **kw})


def test_resume_gives_the_same_run_as_an_uninterrupted_one(tmp_path):
    full = trainer.train(_args(tmp_path / "full"), task=ToyTask(8))
    trainer.train(_args(tmp_path / "split", stop_after=6), task=ToyTask(8))  # stops between two log points
    resumed = trainer.train(_args(tmp_path / "split"), task=ToyTask(8))
    a, b = load_checkpoint(tmp_path / "full", resume=True), load_checkpoint(tmp_path / "split", resume=True)
    for key in ("decoder", "param_net"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    drop = {"elapsed_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in full["metrics"]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed["metrics"]]
    assert len(b["segments"]) == 2


def test_changed_settings_are_refused_on_resume(tmp_path):
    trainer.train(_args(tmp_path / "run", stop_after=4), task=ToyTask(8))
    with pytest.raises(ValueError, match="seq_lr"):
        trainer.train(_args(tmp_path / "run", seq_lr=5e-3), task=ToyTask(8))


def test_input_losses_are_computed_once_per_image(tmp_path):
    task = ToyTask(4)
    trainer.train(_args(tmp_path / "run", iterations=8, loss_clip=1.0), task=task)
    # 8 iterations x 1 output call + 2 input calls (4 images, batch 2, cached after the first pass)
    assert task.calls == 8 + 2
