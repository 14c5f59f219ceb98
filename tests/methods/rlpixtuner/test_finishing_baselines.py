"""CMA-ES / greedy search budgets and progress; proxy shapes and gradient search."""

from __future__ import annotations

import pytest
import torch

from ispbench.finishing_baselines.proxy import (
    CascadedProxy,
    MonolithicProxy,
    ProxyTrainConfig,
    proxy_search,
    train_proxy,
)
from ispbench.finishing_baselines.search import cmaes_search, greedy_search, search_batch
from ispbench.ops.finishing import finish
from ispbench.tasks.finishing_metrics import psnr


def _easy(seed=0, s=24):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, s, s, generator=g) * 0.6 + 0.2
    a = torch.zeros(9)
    a[0], a[4] = 0.3, -0.4  # exposure and saturation only
    return x, finish(x[None], a[None])[0]


@pytest.mark.parametrize("fn", [cmaes_search, greedy_search])
@pytest.mark.parametrize("budget", [37, 120])
def test_search_respects_budget_and_improves(fn, budget):
    x, goal = _easy()
    calls = {"n": 0}

    def counting(img, act):
        calls["n"] += img.shape[0]
        return finish(img, act)

    res = fn(x, goal, budget=budget, pipeline=counting)
    assert res.queries == calls["n"] <= budget
    assert res.queries >= budget - 1 or fn is greedy_search  # greedy may stop early once converged
    p0, p1 = float(psnr(x[None], goal[None])), float(psnr(res.image[None], goal[None]))
    assert p1 > p0 + 5
    assert torch.allclose(res.image, finish(x[None], res.actions[None])[0])
    if budget == 120:
        assert p1 > 25


def test_search_batch_refuses_unknown_method():
    x, goal = _easy()
    with pytest.raises(ValueError, match="cmaes"):
        search_batch("annealing", x[None], goal[None])


def test_proxies_forward_shapes_and_identity_start():
    x = torch.rand(2, 3, 20, 28)
    a = torch.rand(2, 9) * 2 - 1
    for model in (MonolithicProxy(width=8), CascadedProxy(width=8)):
        y = model(x, a)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    cp = CascadedProxy(width=8)
    assert len(cp.stages) == 6
    kinds = [type(m).__name__ for st in cp.stages for m in st.net if isinstance(m, torch.nn.Conv2d)]
    assert kinds.count("Conv2d") == 5 * 3 + 5  # five pointwise stages x 3 convs + texture's 5 convs
    assert cp.stages[-1].net[0].kernel_size == (3, 3) and cp.stages[0].net[0].kernel_size == (1, 1)


def test_proxy_training_and_search_run():
    model, metrics = train_proxy("cascaded", ProxyTrainConfig(iterations=3, batch_size=2, size=16))
    assert metrics["iterations"] == 3 and metrics["train_mse_last50"] > 0
    x, goal = _easy(s=16)
    res = proxy_search(model, x[None], goal[None], iterations=5)
    assert res.actions.shape == (1, 9) and res.images.shape == (1, 3, 16, 16) and res.queries == 1
    assert res.actions.abs().max() <= 1
