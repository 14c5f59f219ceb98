"""The shipped embedded policy: present, small, loadable, documented."""

from __future__ import annotations

import json

import torch

from ispbench.methods.rlpixtuner import Policy, shipped_weights, tune
from ispbench.paths import WEIGHTS_DIR


def test_shipped_policy_loads_and_tunes():
    path = shipped_weights()
    assert path.stat().st_size < 10 * 2**20
    card = (WEIGHTS_DIR / "rlpixtuner_embedded.md").read_text()
    metrics = json.loads((WEIGHTS_DIR / "rlpixtuner_embedded.json").read_text())
    assert "--seed 0" in card and metrics["command"] in card.replace("\\\n  ", "")
    pol = Policy.load(str(path))
    x = torch.rand(1, 3, 40, 40)
    tr = tune(pol, x, x.clamp(0.1, 0.9), steps=2)
    assert tr.actions.shape == (2, 1, 9) and tr.actions.abs().max() <= 1
