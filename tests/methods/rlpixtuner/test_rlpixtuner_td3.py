"""TD3 updates, EMA targets, replay buffer round trip, tune()."""

from __future__ import annotations

import torch

from ispbench.methods.rlpixtuner.buffer import ReplayBuffer
from ispbench.methods.rlpixtuner.env import FinishingEnv, replay
from ispbench.methods.rlpixtuner.inference import Policy, tune
from ispbench.methods.rlpixtuner.networks import NetConfig
from ispbench.methods.rlpixtuner.td3 import TD3, TD3Config
from ispbench.ops.finishing import finish

CFG = NetConfig(width=4, cnn_features=16, feature_dim=32, hidden=32, layers=1)


def _filled_buffer(n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    goal = finish(x, torch.rand(n, 9, generator=g) - 0.5)
    env = FinishingEnv(layout=CFG.layout)
    obs = env.reset(x, goal)
    a = torch.rand(n, 9, generator=g) - 0.5
    nxt, r, _, done = env.step(a)
    buf = ReplayBuffer(64, CFG.layout.dim, seed=0)
    buf.add(obs, a, r, nxt, done.float())
    return buf


def test_update_changes_params_and_targets_follow_by_ema():
    torch.manual_seed(0)
    agent = TD3(CFG, TD3Config(tau=0.01, policy_delay=2))
    buf = _filled_buffer()
    before = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    actor_before = [p.clone() for p in agent.actor.parameters()]
    targ_before = [p.clone() for p in agent.critic_targ.parameters()]
    out = agent.update(buf.sample(8))
    assert "actor_loss" not in out  # delayed: no actor update at the first step
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(targ_before, agent.critic_targ.parameters(), strict=True))
    assert any(not torch.equal(before[k], v) for k, v in agent.critic.state_dict().items())
    out = agent.update(buf.sample(8))
    assert "actor_loss" in out
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True))
    for p, pt, p0 in zip(agent.critic.parameters(), agent.critic_targ.parameters(), targ_before, strict=True):
        assert torch.allclose(pt, 0.99 * p0 + 0.01 * p, atol=1e-6)  # eq. 10-12


def test_buffer_state_round_trip_gives_same_samples():
    buf = _filled_buffer()
    state = buf.state_dict()
    b1 = buf.sample(5)
    other = ReplayBuffer(64, CFG.layout.dim, seed=99)
    other.load_state_dict(state)
    b2 = other.sample(5)
    assert torch.equal(b1.action, b2.action) and torch.equal(b1.obs.cur64, b2.obs.cur64)
    assert len(other) == 24


def test_tune_full_resolution_counts_queries_and_reports_final_and_best():
    torch.manual_seed(0)
    agent = TD3(CFG)
    pol = Policy.from_state(agent.policy_state())
    x = torch.rand(2, 3, 80, 96)
    goal = finish(x, torch.full((2, 9), 0.2))
    tr = tune(pol, x, goal, steps=10, keep_images=True)
    assert tr.actions.shape == (10, 2, 9) and tr.psnrs.shape == (11, 2)
    assert tr.final.shape == x.shape and len(tr.images) == 11
    assert tr.queries.tolist() == [10, 10]
    assert torch.all(tr.best_psnr >= tr.final_psnr - 1e-5)
    # parameters applied at full resolution, each step to the previous output (the cumulative MDP)
    assert pol.net_cfg.mdp == "cumulative"
    torch.testing.assert_close(tr.final, replay(x, tr.actions))
    absolute = Policy.from_state({**agent.policy_state(), "net_config": {**CFG.to_dict(), "mdp": "absolute"}})
    tr_abs = tune(absolute, x, goal, steps=10)
    assert torch.allclose(tr_abs.final, finish(x, tr_abs.actions[-1]).clamp(0, 1))
    # a checkpoint saved before the mdp field existed is an absolute-MDP policy
    legacy = {k: v for k, v in CFG.to_dict().items() if k not in ("mdp", "mlp")}
    assert Policy.from_state({**agent.policy_state(), "net_config": legacy}).net_cfg.mdp == "absolute"
    # same answer from the agent and from the extracted policy
    tr2 = tune(agent, x, goal, steps=3)
    assert torch.allclose(tr2.actions, tr.actions[:3], atol=1e-6)


def test_residual_actor_starts_from_current_parameters():
    cfg = NetConfig(width=4, cnn_features=16, feature_dim=32, hidden=32, layers=1, residual_actor=True)
    pol = Policy(cfg)
    torch.nn.init.zeros_(pol.actor.net[-1].weight)
    torch.nn.init.zeros_(pol.actor.net[-1].bias)
    x = torch.rand(2, 3, 32, 32)
    env = FinishingEnv(layout=cfg.layout)
    env.reset(x, x, init_params=torch.full((2, 9), 0.3))
    obs = env._observe()
    assert torch.allclose(pol(obs), torch.full((2, 9), 0.3))  # zero output = keep the current parameters


def test_hindsight_goal_regression_pulls_actor_to_goal_parameters():
    """``bc_weight``: the actor (and encoder) regress on the goal's known parameters; off by default;
    transitions without known goal parameters (NaN) get no such term; the buffer round-trips them."""
    g = torch.Generator().manual_seed(1)
    n = 24
    x = torch.rand(n, 3, 32, 32, generator=g)
    ga = (torch.rand(n, 9, generator=g) - 0.5) * 0.8
    env = FinishingEnv(layout=CFG.layout)
    obs = env.reset(x, finish(x, ga))
    a = torch.rand(n, 9, generator=g) - 0.5
    nxt, r, _, done = env.step(a)
    buf = ReplayBuffer(64, CFG.layout.dim, seed=0)
    buf.add(obs, a, r, nxt, done.float(), ga)
    assert torch.equal(buf.sample(4).goal_action.isnan(), torch.zeros(4, 9, dtype=torch.bool))
    other = ReplayBuffer(64, CFG.layout.dim, seed=0)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.sample(6).goal_action, buf.sample(6).goal_action)

    torch.manual_seed(0)
    agent = TD3(CFG, TD3Config(bc_weight=10.0, actor_lr=1e-3))
    first = agent.update(buf.sample(24))["bc_loss"]
    for _ in range(150):
        last = agent.update(buf.sample(24))["bc_loss"]
    assert last < 0.5 * first
    assert "bc_loss" not in TD3(CFG).update(buf.sample(8))  # default: off (the paper)
    unknown = ReplayBuffer(64, CFG.layout.dim, seed=0)
    unknown.add(obs, a, r, nxt, done.float())  # no goal parameters (e.g. expert goals)
    if agent.n_updates % 2 == 1:  # the next update would also update the actor
        agent.update(unknown.sample(8))
    actor_before = [p.clone() for p in agent.actor.parameters()]
    out = agent.update(unknown.sample(8))  # a critic-only step (policy delay 2): the actor must not move
    assert "bc_loss" not in out and "actor_loss" not in out
    assert all(torch.equal(p0, p) for p0, p in zip(actor_before, agent.actor.parameters(), strict=True))


def test_actor_warmup_trains_only_the_critic_and_targets_still_follow():
    torch.manual_seed(0)
    agent = TD3(CFG, TD3Config(actor_warmup=4, policy_delay=2))
    buf = _filled_buffer()
    actor_before = [p.clone() for p in agent.actor.parameters()]
    critic_targ_before = [p.clone() for p in agent.critic_targ.parameters()]
    outs = [agent.update(buf.sample(8)) for _ in range(4)]
    assert not any("actor_loss" in o for o in outs)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_targ_before, agent.critic_targ.parameters(), strict=True))
    agent.update(buf.sample(8))  # update 5: odd, a critic step
    assert "actor_loss" in agent.update(buf.sample(8))  # update 6: past the warm-up, on the delay schedule
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters(), strict=True))


def test_preactivation_penalty_pulls_a_saturated_actor_back():
    # an actor driven into tanh's flat ends comes back under the pre-tanh penalty (and drifts further without it)
    def saturated(cfg):
        torch.manual_seed(0)
        agent = TD3(CFG, cfg)
        with torch.no_grad():
            agent.actor.net[-1].bias.fill_(6.0)
        return agent

    buf = _filled_buffer()
    results = {}
    for name, cfg in {"none": TD3Config(actor_lr=5e-3), "preactivation_l2": TD3Config(actor_lr=5e-3, preactivation_l2=1.0)}.items():
        agent = saturated(cfg)
        for _ in range(60):
            agent.update(buf.sample(8))
        obs = buf.sample(8).obs
        results[name] = float(agent.actor.preactivation(agent.encoder(obs)).mean())
    assert results["preactivation_l2"] < 0.5 * results["none"]


def test_actor_final_init_starts_near_the_identity_edit():
    buf = _filled_buffer()
    obs = buf.sample(8).obs
    torch.manual_seed(0)
    small = TD3(CFG, TD3Config(actor_final_init=3e-3))
    torch.manual_seed(0)
    default = TD3(CFG)
    assert float(small.act(obs).abs().max()) < 0.05 < float(default.act(obs).abs().max())
