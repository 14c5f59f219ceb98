"""Trainer smoke run, same-seed determinism and exact resume (CPU)."""

from __future__ import annotations

import csv

import torch

from ispbench.methods.rlpixtuner.train import Args, load_policy, main, train
from ispbench.training.config import build_parser, from_overrides, parse


def _args(**kw) -> Args:
    return from_overrides(Args, kw)

TINY = dict(n_envs=4, batch_size=8, buffer_size=256, learning_starts=40, image_size=32, width=4, mlp="32",
            eval_images=2, eval_every=0, checkpoint_every=0, progress=False, updates_per_step=0.25)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["policy"]["actor"]


def test_smoke_determinism_and_resume(tmp_path):
    m1 = train(_args(total_steps=120, out_dir=str(tmp_path / "a"), save_buffer=True, **TINY))  # exact resume
    assert m1["step"] >= 120 and m1["updates"] > 0 and m1["queries"] >= m1["step"]
    rows = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    assert rows and rows[-1]["eval_psnr_final"] != ""
    train(_args(total_steps=120, out_dir=str(tmp_path / "b"), **TINY))
    wa, wb = _weights(tmp_path / "a" / "policy.pt"), _weights(tmp_path / "b" / "policy.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed -> identical
    # resume: 120 steps, then continue to 200 == 200 straight
    straight = train(_args(total_steps=200, out_dir=str(tmp_path / "c"), **TINY))
    resumed = train(_args(total_steps=200, out_dir=str(tmp_path / "a"), resume=True, **TINY))
    assert resumed["step"] == straight["step"] and resumed["updates"] == straight["updates"]
    wa, wc = _weights(tmp_path / "a" / "policy.pt"), _weights(tmp_path / "c" / "policy.pt")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    pol = load_policy(tmp_path / "a" / "last.pt")
    assert pol.net_cfg.width == 4


def test_cli_parses_dataclass_fields(tmp_path):
    args = parse(Args, ["--total-steps", "5", "--ablation", "naive", "--save-buffer", "--actor-lr", "3e-4",
                       "--bc-weight", "2"], prog="ispbench train rlpixtuner")
    assert args.total_steps == 5 and args.ablation == "naive" and args.save_buffer is True
    assert args.td3.actor_lr == 3e-4 and args.td3.bc_weight == 2.0 and args.td3.critic_lr == 5e-5  # nested TD3Config, authors' default
    assert not Args().save_buffer  # the replay buffer is saved only when asked
    assert "replay buffer capacity" in build_parser(Args, prog="x").format_help()
    assert main(["--total-steps", "20", "--learning-starts", "1000", "--out-dir", str(tmp_path / "cli"), "--n-envs", "2",
                 "--image-size", "24", "--width", "4", "--mlp", "16", "--eval-images", "1",
                 "--no-progress"]) == 0
    assert (tmp_path / "cli" / "policy.pt").exists()


def test_bc_weight_run_keeps_best_validation_policy(tmp_path):
    """``--bc-weight`` trains end to end; ``best_policy.pt`` holds the evaluation with the best final PSNR."""
    out = tmp_path / "bc"
    train(_args(total_steps=160, out_dir=str(out), bc_weight=10.0, **{**TINY, "eval_every": 40}))
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["eval_psnr_final"] != ""]
    assert len(rows) >= 2 and any(r["bc_loss"] != "" for r in csv.DictReader((out / "metrics.csv").open()))
    best = torch.load(out / "best_policy.pt", map_location="cpu", weights_only=False)
    assert abs(best["metrics"]["eval_psnr_final"] - max(float(r["eval_psnr_final"]) for r in rows)) < 1e-4
    assert best["args"]["bc_weight"] == 10.0 and load_policy(out / "best_policy.pt").net_cfg.width == 4


def test_resume_without_saved_buffer_refills_and_says_so(tmp_path, capsys):
    out = str(tmp_path / "nb")
    train(_args(total_steps=60, out_dir=out, **TINY))
    ck = torch.load(tmp_path / "nb" / "last.pt", map_location="cpu", weights_only=False)
    assert "buffer" not in ck
    capsys.readouterr()
    resumed = train(_args(total_steps=140, out_dir=out, resume=True, **TINY))
    err = capsys.readouterr().err
    assert "resumed from" in err and "no replay buffer" in err and "refilling" in err
    assert resumed["step"] >= 140 and resumed["updates"] > 0
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "nb" / "metrics.csv").open())]
    assert steps == sorted(steps) and steps[-1] == resumed["step"] and steps[0] < 60  # resumed rows kept
