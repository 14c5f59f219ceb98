"""Learning tests for the first-order proxy baselines: a broken proxy trainer fails them.

A small proxy of each kind is trained for 200 Adam steps (batch 8) on 16x16 crops of the ``train``
embedded photos (the real finishing pipeline, uniform random sliders); on held-out crops of the ``val``
photos it must imitate the pipeline far better than the identity map and than the same proxy untrained,
and :func:`proxy_search` through it must bring Random-Target goals closer (the real pipeline renders the
found sliders) and move the exposure slider toward the goal's. Mutation checks: with Adam's step removed
or its direction flipped (gradient ascent = the loss' sign flipped) the monolithic trainer must not pass
(the loop is shared by both kinds; the monolithic one is the cheaper).

Seeded, one CPU thread; the training settings are explicit.
"""

from __future__ import annotations

import pytest
import torch

from ispbench.data.photos import random_target_eval_set
from ispbench.finishing_baselines.proxy import (
    CascadedProxy,
    MonolithicProxy,
    ProxyTrainConfig,
    proxy_search,
    train_proxy,
)
from ispbench.ops.finishing import finish
from ispbench.tasks.finishing_metrics import psnr

TRAIN = dict(iterations=200, batch_size=8, size=16, lr=2e-3, seed=0)
KINDS = ("monolithic", "cascaded")
# what "learned" means (measured: trained/identity about 0.25 monolithic, 0.14 cascaded)
MAX_ERROR_RATIO = 0.4  # held-out MSE of the trained proxy / that of the identity map and of the untrained proxy
MIN_SEARCH_GAIN_DB = 3.0  # PSNR to the goal after proxy_search, over the input's
MAX_EXPOSURE_RATIO = 0.7  # |found - goal| / |goal| of the exposure slider, averaged over the images


def _one_thread(fn, *args, **kwargs):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _untrained(kind: str) -> torch.nn.Module:
    torch.manual_seed(TRAIN["seed"])  # what train_proxy starts from
    return (MonolithicProxy() if kind == "monolithic" else CascadedProxy()).eval()


def held_out_data():
    """16 ``val`` crops with Random-Target goals (known sliders), and random sliders ``U(-1, 1)`` with their renders."""
    ev = random_target_eval_set("val", n=16, size=TRAIN["size"], seed=99, goal_scale=0.5)
    a = torch.rand(16, 9, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        rendered = finish(ev.inputs, a).clamp(0, 1)
    return ev, a, rendered


@torch.no_grad()
def prediction_errors(model, kind, held_out) -> dict[str, float]:
    """Held-out MSE to the real renders: the proxy's, the identity map's, the untrained proxy's."""
    ev, a, rendered = held_out
    return {"mse": float((model(ev.inputs, a) - rendered).pow(2).mean()),
            "identity": float((ev.inputs - rendered).pow(2).mean()),
            "untrained": float((_untrained(kind)(ev.inputs, a) - rendered).pow(2).mean())}


def search_metrics(model, held_out) -> dict[str, float]:
    """PSNR (dB) to the goals of the inputs and of the real renders of the sliders found through ``model``;
    mean ``|found - goal|`` of the exposure slider over mean ``|goal|`` (1 = as far as the identity start)."""
    ev = held_out[0]
    res = _one_thread(proxy_search, model, ev.inputs, ev.goals, iterations=100)
    goal_exposure = ev.goal_actions[:, 0]
    return {"input_db": float(psnr(ev.inputs, ev.goals).mean()), "found_db": float(psnr(res.images, ev.goals).mean()),
            "exposure_ratio": float((res.actions[:, 0] - goal_exposure).abs().mean() / goal_exposure.abs().mean())}


def learned(errors: dict[str, float]) -> bool:
    return errors["mse"] < MAX_ERROR_RATIO * min(errors["identity"], errors["untrained"])


@pytest.fixture(scope="module")
def held_out():
    return held_out_data()


@pytest.fixture(scope="module")
def trained():
    return {kind: _one_thread(train_proxy, kind, ProxyTrainConfig(**TRAIN))[0] for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_trained_proxy_imitates_the_pipeline_on_held_out_crops(kind, trained, held_out):
    errors = prediction_errors(trained[kind], kind, held_out)
    assert errors["mse"] < MAX_ERROR_RATIO * errors["identity"], errors
    assert errors["mse"] < MAX_ERROR_RATIO * errors["untrained"], errors


@pytest.mark.parametrize("kind", KINDS)
def test_search_through_the_trained_proxy_moves_toward_the_goal(kind, trained, held_out):
    found = search_metrics(trained[kind], held_out)
    assert found["found_db"] > found["input_db"] + MIN_SEARCH_GAIN_DB, found
    assert found["exposure_ratio"] < MAX_EXPOSURE_RATIO, found
    # the gain comes from training: through the untrained proxy the search leads away from the goal
    untrained = search_metrics(_untrained(kind), held_out)
    assert untrained["found_db"] < untrained["input_db"], untrained


class _AdamWithoutStep(torch.optim.Adam):
    def step(self, closure=None):
        return None


class _AdamAscending(torch.optim.Adam):
    """Gradient ascent: the same as training on ``-loss``."""

    def __init__(self, params, **kwargs):
        super().__init__(params, maximize=True, **kwargs)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
@pytest.mark.parametrize("adam", [_AdamWithoutStep, _AdamAscending], ids=["no-optimiser-step", "loss-sign-flipped"])
def test_broken_proxy_training_does_not_learn(adam, held_out, monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", adam)
    model, _ = _one_thread(train_proxy, "monolithic", ProxyTrainConfig(**TRAIN))
    errors = prediction_errors(model, "monolithic", held_out)
    assert not learned(errors), errors
