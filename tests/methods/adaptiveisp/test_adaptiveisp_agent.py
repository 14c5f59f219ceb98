"""Rewards, penalties, truncation, STOP semantics and action sampling, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ispbench import ops
from ispbench.methods.adaptiveisp import agent


def test_detection_reward_by_hand():
    r = agent.detection_reward(torch.tensor([0.8, 1.7, 0.2]), torch.tensor([0.5, 0.9, -0.3]))
    # (0.8-0.5)*100 = 30; clip(1.7)=1 -> (1-0.9)*100 = 10; clip(-0.3)=0 -> 0.2*100 = 20
    assert torch.allclose(r, torch.tensor([30.0, 10.0, 20.0]))
    r = agent.detection_reward(torch.tensor([6.0]), torch.tensor([2.0]), loss_clip=5.0)
    assert torch.allclose(r, torch.tensor([(5.0 - 2.0) * 100 / 5]))


def test_reuse_cost_overexposure_penalties_by_hand():
    used = torch.tensor([[1.0, 0, 1, 0, 0, 0, 0, 0, 0, 0], [0.0] * 10, [1.0] * 10])
    idx = torch.tensor([2, 2, -1])
    assert torch.equal(agent.reuse_penalty(used, idx), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(agent.reuse_penalty(used, idx, weight=0.0), torch.zeros(3))
    costs = agent.module_costs()
    assert costs[ops.MODULE_NAMES.index("denoise")] == 10.0
    c = agent.cost_penalty(torch.tensor([2, 4, -1]), 0.01, costs)  # ccm 1.9 ms, denoise 10 ms, skip
    assert torch.allclose(c, torch.tensor([0.019, 0.1, 0.0]))
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0] = 1.5  # one of 12 values over by 0.5 -> 0.25 / 12
    assert torch.allclose(agent.overexposure_penalty(x), torch.tensor([0.25 / 12]))
    pen = agent.stage_penalties(torch.zeros(3, 3, 2, 2), used, idx, lambda_c=0.01, costs_ms=costs)
    assert torch.allclose(pen.total, torch.tensor([1.019, 0.019, 0.0]))


def test_entropy_penalty_by_hand():
    uniform = torch.zeros(2, 10)
    assert torch.allclose(agent.entropy_penalty(uniform, progress=0.0), torch.zeros(2), atol=1e-6)
    peaked = torch.tensor([[100.0] + [0.0] * 9])
    assert torch.allclose(agent.entropy_penalty(peaked, 0.0), torch.tensor([0.05 * math.log(10)]), atol=1e-5)
    assert torch.allclose(agent.entropy_penalty(peaked, 0.5), torch.tensor([0.5 * 0.05 * math.log(10)]), atol=1e-5)
    assert torch.allclose(agent.entropy_penalty(peaked, 1.0), torch.zeros(1))
    # with a disabled action the maximum entropy is ln 9
    masked = torch.tensor([[0.0] * 9 + [-1e9]])
    assert torch.allclose(agent.entropy_penalty(masked, 0.0, n_actions=9), torch.zeros(1), atol=1e-6)


def test_truncation_and_bootstrap_mask():
    x = torch.stack([torch.full((3, 4, 4), v) for v in (0.005, 0.5, 0.95, 0.011, 0.89)])
    assert agent.is_truncated(x).tolist() == [True, False, True, False, False]
    term = torch.tensor([True, False, False, False])
    trunc = torch.tensor([False, True, False, False])
    assert agent.bootstrap_mask(term, trunc).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_stop_semantics_and_mark_used():
    actions = torch.tensor([0, 10, 3, 10])
    stopped = torch.tensor([False, False, True, False])
    idx = agent.to_module_index(actions, 10, stopped)
    assert idx.tolist() == [0, -1, -1, -1]
    used = agent.mark_used(torch.zeros(4, 10), idx)
    assert used.sum().item() == 1 and used[0, 0] == 1
    x = torch.rand(4, 3, 8, 8)
    params = {name: ops.identity_params(name, 4) for name in ops.MODULE_NAMES}
    params["exposure"] = torch.full((4, 1), 1.0)
    y = agent.apply_modules(x, idx, params, clamp=False)
    assert torch.allclose(y[0], x[0] * 2) and torch.equal(y[1:], x[1:])


def test_apply_modules_gradient_reaches_params():
    x = torch.rand(3, 3, 8, 8) * 0.3
    p = {name: ops.identity_params(name, 3).requires_grad_() for name in ops.MODULE_NAMES}
    y = agent.apply_modules(x, torch.tensor([0, 3, -1]), p)
    y.sum().backward()
    assert p["exposure"].grad[0].abs().sum() > 0 and p["exposure"].grad[1:].abs().sum() == 0
    assert p["gamma"].grad[1].abs().sum() > 0


def test_sample_actions_greedy_epsilon_and_valid():
    logits = torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]])
    assert agent.sample_actions(logits, greedy=True).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    a = agent.sample_actions(logits[:1].expand(500, 3), epsilon=1.0, generator=g,
                             valid=torch.tensor([True, False, True]))
    assert set(a.tolist()) == {0, 2}
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(agent.sample_actions(torch.zeros(50, 4), epsilon=0.05, generator=g1),
                       agent.sample_actions(torch.zeros(50, 4), epsilon=0.05, generator=g2))


def test_states_hold_used_stage_and_stats():
    x = torch.full((2, 3, 128, 128), 0.25)
    used = torch.zeros(2, 10)
    used[1, 4] = 1
    s = agent.policy_state(x, used, torch.tensor([0, 3]), T=5, stage_plane="fraction")
    assert s.shape == (2, 14, 64, 64)
    assert torch.allclose(s[:, :3], torch.full((2, 3, 64, 64), 0.25))
    assert s[1, 3 + 4].min() == 1 and s[0, 3 + 4].max() == 0
    assert torch.allclose(s[:, 13, 0, 0], torch.tensor([0.0, 0.6]))
    # authors' code (the default): the stage plane holds t itself
    assert torch.allclose(agent.policy_state(x, used, torch.tensor([0, 3]), T=5)[:, 13, 0, 0], torch.tensor([0.0, 3.0]))
    v = agent.value_state(x, used, torch.tensor([0, 3]), T=5)
    assert v.shape == (2, 17, 64, 64)
    assert torch.allclose(v[0, 14:, 0, 0], torch.tensor([0.25, 0.0, 0.0]), atol=1e-5)  # lum, contrast, sat
    # contrast statistic: luminance variance (authors) or std, on a half-black half-white image (lum 0 / 1)
    y = torch.zeros(1, 3, 8, 8)
    y[..., 4:] = 1.0
    assert torch.allclose(agent.image_stats(y)[0, 1], torch.tensor(0.25), atol=1e-5)
    assert torch.allclose(agent.image_stats(y, "std")[0, 1], torch.tensor(0.5), atol=1e-5)
    with pytest.raises(ValueError, match="stage_plane"):
        agent.policy_state(x, used, torch.tensor([0, 3]), T=5, stage_plane="t")
    with pytest.raises(ValueError, match="contrast"):
        agent.image_stats(y, "range")
    with pytest.raises(ValueError, match="used must be"):
        agent.policy_state(x, torch.zeros(3, 10), torch.tensor([0, 0]), 5)


def test_reuse_mask_and_per_sample_valid_exploration():
    used = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    valid = torch.tensor([True, True, False, True])  # module 2 disabled, action 3 = STOP
    m = agent.reuse_mask(used, 4, valid)
    assert m.tolist() == [[False, True, False, True], [False, False, False, True]]
    # a row with nothing left keeps the globally valid actions
    assert agent.reuse_mask(torch.ones(1, 2), 2).tolist() == [[True, True]]
    g = torch.Generator().manual_seed(0)
    logits = torch.zeros(400, 3)
    per_row = torch.tensor([[False, True, False]]).expand(400, -1)
    a = agent.sample_actions(logits.masked_fill(~per_row, -1e9), epsilon=1.0, generator=g, valid=per_row)
    assert (a == 1).all()  # exploration also respects the per-sample mask


def test_mixed_epsilon_probabilities_and_log_prob_by_hand():
    logits = torch.tensor([[0.0, 50.0, 0.0]])  # softmax ~ (0, 1, 0)
    valid = torch.tensor([True, True, False])
    p = agent.action_probs(logits, epsilon=0.1, valid=valid)
    assert torch.allclose(p, torch.tensor([[0.05, 0.95, 0.0]]), atol=1e-6)  # (1 - eps) softmax + eps / |valid|
    lp = agent.action_log_prob(logits, torch.tensor([0]), epsilon=0.1, valid=valid)
    assert torch.allclose(lp, torch.tensor([math.log(0.05)]), atol=1e-5)
    # "replace" (our former choice) uses the plain log-softmax, ~ -50 for the explored action
    assert agent.action_log_prob(logits, torch.tensor([0]), epsilon=0.1, valid=valid, mode="replace") < -49
    # the mixed log-prob is differentiable in the logits
    x = torch.zeros(1, 3, requires_grad=True)
    agent.action_log_prob(x, torch.tensor([1]), epsilon=0.1, valid=valid).sum().backward()
    assert x.grad[0, 1] > 0
    # sampling frequencies follow the mixed probabilities
    g = torch.Generator().manual_seed(0)
    a = agent.sample_actions(logits.expand(4000, -1), epsilon=0.1, valid=valid, generator=g)
    assert 0.03 < (a == 0).float().mean() < 0.07 and not (a == 2).any()
    with pytest.raises(ValueError, match="mode"):
        agent.sample_actions(logits, epsilon=0.1, mode="both")
