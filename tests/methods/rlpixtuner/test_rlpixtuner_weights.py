"""The shipped embedded policies: present, small, loadable, documented, trained with the recipe their card names."""

from __future__ import annotations

import json

import pytest
import torch

from ispbench.chapters.rlpixtuner import RECIPE_VARIANTS, SHIPPED_SEEDS, VARIANTS, shipped_policy_file, training_curve
from ispbench.methods.rlpixtuner import Policy, shipped_weights, tune
from ispbench.methods.rlpixtuner.train import RECIPES
from ispbench.paths import WEIGHTS_DIR

FILES = [shipped_policy_file(s) for s in SHIPPED_SEEDS] + [
    shipped_policy_file(variant=v) for v in [*VARIANTS, *RECIPE_VARIANTS] if v]
CARD = (WEIGHTS_DIR / "rlpixtuner_embedded.md").read_text()
METRICS = json.loads((WEIGHTS_DIR / "rlpixtuner_embedded.json").read_text())


@pytest.mark.parametrize("name", FILES)
def test_every_shipped_policy_loads_tunes_and_is_documented(name):
    path = shipped_weights(name)
    assert path.stat().st_size < 4 * 2**20
    assert f"`{name}`" in CARD, f"the model card does not list {name}"
    entry = METRICS["files"][name]
    assert entry["args"]["recipe"] in RECIPES and entry["trained_steps"] >= entry["best"]["step"] > 0
    pol = Policy.load(str(path))
    assert pol.net_cfg.mdp == entry["args"]["mdp"]
    x = torch.rand(1, 3, 40, 40)
    tr = tune(pol, x, x.clamp(0.1, 0.9), steps=2)
    assert tr.actions.shape == (2, 1, 9) and tr.actions.abs().max() <= 1


def test_default_weights_are_seed_0_of_the_authors_recipe_with_its_training_log():
    assert shipped_weights().name == shipped_policy_file(0)
    assert METRICS["files"][shipped_policy_file(0)]["args"]["recipe"] == "authors-code"
    log = training_curve("", 0)
    assert len(log) >= 2 and log["step"].is_monotonic_increasing
    best = METRICS["files"][shipped_policy_file(0)]["best"]
    assert best["eval_psnr_final"] == pytest.approx(log["eval_psnr_final"].max(), abs=1e-6)
