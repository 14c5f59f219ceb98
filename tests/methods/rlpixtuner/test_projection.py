"""Projection of targets onto the finishing pipeline and the cached projected-expert evaluation set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ispbench import atomic
from ispbench.data import photos
from ispbench.finishing_baselines import projection
from ispbench.finishing_baselines.projection import (
    project_onto_pipeline,
    projected_expert_cache_path,
    projected_expert_eval_set,
)
from ispbench.ops.finishing import finish


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_projection_recovers_a_reachable_target():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 16, 16, generator=g) * 0.6 + 0.2
    a = torch.zeros(9)
    a[0], a[4] = 0.25, -0.3
    target = finish(x[None], a[None])[0]
    actions, projected, db = project_onto_pipeline(x, target, budget=300, seed=1)
    assert actions.shape == (9,) and projected.shape == x.shape and float(actions.abs().max()) <= 1
    assert torch.allclose(projected, finish(x[None], actions[None])[0])
    assert db == pytest.approx(10 * math.log10(1 / float((projected - target).pow(2).mean())), rel=1e-4)
    assert db > 35


def test_projection_of_an_out_of_family_retouch_is_close_but_not_exact():
    crop = photos.eval_crops("test", 1, 24, np.random.default_rng(1))[0][0].clip(0, 1)
    target = photos.retouch_outside_family(crop, np.random.default_rng(2))
    x, t = _chw(crop), _chw(target)
    _, _, db = project_onto_pipeline(x, t, budget=200, seed=0)
    identity_db = 10 * math.log10(1 / float((x - t).pow(2).mean()))
    assert identity_db + 1 < db < 60


def test_projection_refuses_bad_input():
    x = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="target must be a \\(3, H, W\\)"):
        project_onto_pipeline(x, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        project_onto_pipeline(x, torch.rand(3, 8, 9))
    with pytest.raises(ValueError, match="image must have values in \\[0, 1\\]"):
        project_onto_pipeline(x + 1, x)
    with pytest.raises(ValueError, match="budget"):
        project_onto_pipeline(x, x, budget=0)


def test_projected_expert_eval_set_is_reachable_cached_and_keyed(cache_env, monkeypatch):
    ev = projected_expert_eval_set("test", n=4, size=16, seed=3, budget=25)
    assert len(ev) == 4 and ev.inputs.shape == ev.goals.shape == (4, 3, 16, 16) and ev.goal_actions.shape == (4, 9)
    assert ev.names == ["chelsea", "coffee", "grace_hopper", "chelsea"]
    assert torch.allclose(ev.goals, finish(ev.inputs, ev.goal_actions), atol=1e-6)
    assert float(ev.inputs.min()) >= 0 and float(ev.inputs.max()) <= 1
    # the inputs are the eval crops (as Random-Target's), the goals are not the crops themselves
    crops, _ = photos.eval_crops("test", 4, 16, np.random.default_rng(3))
    assert torch.allclose(ev.inputs, torch.stack([_chw(c.clip(0, 1)) for c in crops]))
    assert float((ev.goals - ev.inputs).abs().mean()) > 0.01

    path = projected_expert_cache_path("test", 4, 16, 3, 25)
    assert path.is_file() and path.parent.parent == cache_env
    state = torch.load(path, weights_only=True)
    assert state["psnr_to_target"].shape == (4,) and state["seconds_per_pair"] > 0
    assert f"{float(state['psnr_to_target'].mean()):.1f} dB" in ev.description

    def no_search(*args, **kwargs):
        raise AssertionError("the cached set must not be projected again")

    monkeypatch.setattr(projection, "cmaes_search", no_search)
    again = projected_expert_eval_set("test", n=4, size=16, seed=3, budget=25)
    assert torch.equal(again.goals, ev.goals) and torch.equal(again.goal_actions, ev.goal_actions)
    assert again.names == ev.names and again.description == ev.description
    with pytest.raises(AssertionError, match="projected again"):  # other arguments: another file
        projected_expert_eval_set("test", n=4, size=16, seed=3, budget=26)


def test_a_stale_or_foreign_cache_file_is_refused(cache_env):
    path = projected_expert_cache_path("test", 2, 16, 0, 10)
    atomic.torch_save({"version": "0", "arguments": {}, "inputs": torch.zeros(1), "goals": torch.zeros(1),
                       "goal_actions": torch.zeros(1), "names": [], "description": ""}, path)
    with pytest.raises(ValueError, match="delete it to rebuild"):
        projected_expert_eval_set("test", n=2, size=16, seed=0, budget=10)
    atomic.torch_save({"something": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a projected-expert cache file"):
        projected_expert_eval_set("test", n=2, size=16, seed=0, budget=10)


def test_projected_expert_eval_set_refuses_bad_arguments(cache_env):
    with pytest.raises(ValueError, match="split must be one of"):
        projected_expert_eval_set("heldout", n=2, size=16)
    with pytest.raises(ValueError, match="n must be >= 1"):
        projected_expert_eval_set("test", n=0, size=16)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        projected_expert_eval_set("test", n=2, size=16, budget=0)
