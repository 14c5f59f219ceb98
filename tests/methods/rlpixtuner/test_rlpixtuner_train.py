"""Trainer smoke run, same-seed determinism and exact resume (CPU)."""

from __future__ import annotations

import csv

import torch

from ispbench.methods.rlpixtuner.train import Args, _parser, load_policy, main, train

TINY = dict(n_envs=4, batch_size=8, buffer_size=256, learning_starts=40, image_size=32, width=4, hidden=32, layers=1,
            eval_images=2, eval_every=0, checkpoint_every=0, progress=False, updates_per_step=0.25)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["policy"]["actor"]


def test_smoke_determinism_and_resume(tmp_path):
    m1 = train(Args(total_steps=120, out_dir=str(tmp_path / "a"), **TINY))
    assert m1["step"] >= 120 and m1["updates"] > 0 and m1["queries"] >= m1["step"]
    rows = list(csv.DictReader((tmp_path / "a" / "log.csv").open()))
    assert rows and rows[-1]["eval_psnr_final"] != ""
    train(Args(total_steps=120, out_dir=str(tmp_path / "b"), **TINY))
    wa, wb = _weights(tmp_path / "a" / "policy.pt"), _weights(tmp_path / "b" / "policy.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed -> identical
    # resume: 120 steps, then continue to 200 == 200 straight
    straight = train(Args(total_steps=200, out_dir=str(tmp_path / "c"), **TINY))
    resumed = train(Args(total_steps=200, out_dir=str(tmp_path / "a"), resume=True, **TINY))
    assert resumed["step"] == straight["step"] and resumed["updates"] == straight["updates"]
    wa, wc = _weights(tmp_path / "a" / "policy.pt"), _weights(tmp_path / "c" / "policy.pt")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    pol = load_policy(tmp_path / "a" / "checkpoint.pt")
    assert pol.net_cfg.width == 4


def test_cli_parses_dataclass_fields(tmp_path):
    ns = _parser().parse_args(["--total-steps", "5", "--ablation", "naive", "--save-buffer", "false"])
    assert ns.total_steps == 5 and ns.ablation == "naive" and ns.save_buffer is False
    assert "replay buffer capacity" in _parser().format_help()
    assert main(["--total-steps", "20", "--learning-starts", "1000", "--out-dir", str(tmp_path / "cli"), "--n-envs", "2",
                 "--image-size", "24", "--width", "4", "--hidden", "16", "--layers", "1", "--eval-images", "1",
                 "--progress", "false"]) == 0
    assert (tmp_path / "cli" / "policy.pt").exists()


def test_bc_weight_run_keeps_best_validation_policy(tmp_path):
    """``--bc-weight`` trains end to end; ``best_policy.pt`` holds the evaluation with the best final PSNR."""
    out = tmp_path / "bc"
    train(Args(total_steps=160, out_dir=str(out), bc_weight=10.0, **{**TINY, "eval_every": 40}))
    rows = [r for r in csv.DictReader((out / "log.csv").open()) if r["eval_psnr_final"] != ""]
    assert len(rows) >= 2 and any(r["bc_loss"] != "" for r in csv.DictReader((out / "log.csv").open()))
    best = torch.load(out / "best_policy.pt", map_location="cpu", weights_only=False)
    assert abs(best["metrics"]["eval_psnr_final"] - max(float(r["eval_psnr_final"]) for r in rows)) < 1e-4
    assert best["args"]["bc_weight"] == 10.0 and load_policy(out / "best_policy.pt").net_cfg.width == 4
