"""Random search (budget, seeding) and best-PSNR-by-budget curves read from a search's history."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ispbench.finishing_baselines.search import (
    SearchResult,
    best_psnr_by_budget,
    greedy_search,
    psnr_from_mse,
    random_search,
    search_batch,
)
from ispbench.ops.finishing import finish


def _pair(seed=0, s=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, s, s, generator=g) * 0.6 + 0.2
    a = torch.zeros(9)
    a[0], a[4], a[5] = 0.3, -0.4, 0.2
    return x, finish(x[None], a[None])[0]


@pytest.mark.parametrize("budget", [1, 37, 130])
def test_random_search_uses_exactly_its_budget_starting_at_the_identity(budget):
    x, goal = _pair()
    seen = []

    def recording(img, act):
        seen.append(act.clone())
        return finish(img, act)

    res = random_search(x, goal, budget=budget, seed=3, pipeline=recording)
    queried = torch.cat(seen)
    assert res.queries == len(res.history) == queried.shape[0] == budget
    assert torch.equal(queried[0], torch.zeros(9))  # the identity is the first query
    assert float(queried.abs().max()) <= 1.0
    assert res.loss == min(res.history)
    assert torch.allclose(res.image, finish(x[None], res.actions[None])[0])
    identity_mse = float((x - goal).pow(2).mean())
    assert res.loss <= identity_mse


def test_random_search_is_seeded():
    x, goal = _pair()
    a, b, c = (random_search(x, goal, budget=40, seed=s) for s in (7, 7, 8))
    assert a.history == b.history and torch.equal(a.actions, b.actions)
    assert a.history != c.history
    assert a.history[0] == c.history[0]  # both start at the identity
    # the candidates do not depend on how many are evaluated at once: a longer run extends a shorter one
    longer = random_search(x, goal, budget=100, seed=7)
    assert longer.history[:40] == a.history


def test_random_search_refuses_an_empty_budget():
    x, goal = _pair()
    with pytest.raises(ValueError, match="budget"):
        random_search(x, goal, budget=0)


def test_search_batch_runs_random_search_with_per_image_seeds():
    x0, g0 = _pair(0)
    x1, g1 = _pair(1)
    results = search_batch("random", torch.stack([x0, x1]), torch.stack([g0, g1]), budget=12, seed=5)
    assert [r.queries for r in results] == [12, 12]
    assert results[1].history == random_search(x1, g1, budget=12, seed=6).history
    with pytest.raises(ValueError, match="'cmaes', 'greedy', 'random'"):
        search_batch("annealing", x0[None], g0[None])


def test_best_psnr_by_budget_on_a_hand_computed_history():
    history = [0.04, 0.1, 0.01, 0.02, 0.0001]
    res = SearchResult(torch.zeros(9), torch.zeros(3, 1, 1), 0.0001, len(history), history)
    got = best_psnr_by_budget(res, [1, 2, 3, 4, 5, 50])
    expected = [10 * math.log10(1 / 0.04), 10 * math.log10(1 / 0.04), 20.0, 20.0, 40.0, 40.0]
    np.testing.assert_allclose(got, expected)
    assert got.dtype == np.float64 and got.shape == (6,)
    # order of the budgets does not matter; a perfect match is capped at 100 dB
    np.testing.assert_allclose(best_psnr_by_budget(res, [5, 1]), [40.0, expected[0]])
    perfect = SearchResult(torch.zeros(9), torch.zeros(3, 1, 1), 0.0, 2, [0.5, 0.0])
    np.testing.assert_allclose(best_psnr_by_budget(perfect, [1, 2]), [10 * math.log10(2), 100.0])


def test_best_psnr_by_budget_is_monotone_and_ends_at_the_final_best():
    x, goal = _pair()
    for res in (random_search(x, goal, budget=60, seed=1), greedy_search(x, goal, budget=60)):
        budgets = list(range(1, res.queries + 1))
        curve = best_psnr_by_budget(res, budgets)
        assert np.all(np.diff(curve) >= 0)
        assert curve[-1] == pytest.approx(float(psnr_from_mse(res.loss)))
        assert curve[-1] == best_psnr_by_budget(res, [res.queries + 100])[0]
        assert curve[0] == pytest.approx(10 * math.log10(1 / float((x - goal).pow(2).mean())), rel=1e-5)


def test_best_psnr_by_budget_refuses_bad_input():
    res = SearchResult(torch.zeros(9), torch.zeros(3, 1, 1), 0.1, 1, [0.1])
    with pytest.raises(ValueError, match="budgets"):
        best_psnr_by_budget(res, [0, 1])
    with pytest.raises(ValueError, match="history"):
        best_psnr_by_budget(SearchResult(torch.zeros(9), torch.zeros(3, 1, 1), math.inf, 0, []), [1])
