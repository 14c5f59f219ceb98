"""RNG state capture/restore and the run folder's checkpoint."""

from __future__ import annotations

import random

import numpy as np
import torch

from ispbench.training.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint


def _draws(gens):
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(), random.random(),
            random.gauss(0, 1), torch.rand(2, generator=gens["t"]).tolist(), gens["n"].random(2).tolist())


def test_same_draws_after_restore_from_a_weights_only_checkpoint(tmp_path):
    gens = {"t": torch.Generator().manual_seed(1), "n": np.random.default_rng(2)}
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    _draws(gens)  # move every generator away from its seed (also leaves a cached gaussian)
    save_checkpoint(tmp_path, {"rng": rng_state(gens), "step": 3})
    expected = _draws(gens)
    _draws(gens)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # what safe loading will read
    restore_rng_state(ckpt["rng"], gens)
    assert _draws(gens) == expected and ckpt["step"] == 3


def test_load_checkpoint_says_why_it_starts_fresh(tmp_path, capsys):
    assert load_checkpoint(tmp_path, resume=True) is None
    assert "no checkpoint at" in capsys.readouterr().err
    save_checkpoint(tmp_path, {"step": 1})
    assert load_checkpoint(tmp_path, resume=True)["step"] == 1
    assert load_checkpoint(tmp_path, resume=False) is None
    assert "not resuming" in capsys.readouterr().err
