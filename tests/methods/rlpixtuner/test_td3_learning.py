"""Learning tests for RLPixTuner's TD3: a broken update (no optimiser step, a flipped sign) fails them.

* A one-slider exposure task through :class:`FinishingEnv` (two-step cumulative episodes): the toy
  pipeline ``images * 2 ** actions[:, 0]`` ignores the other eight sliders; inputs are constant grey
  8x8 images, goals the pipeline at a random exposure ``e ~ U(-0.7, 0.7)`` plus a little noise (it caps
  the PSNR at about 30 dB, so the reward is finite and smooth at the optimum). After a few hundred
  updates the deterministic first action must track ``e`` and the episodes must gain PSNR; the untrained
  agent (the same seed before training) and "leave the exposure alone" (error ``mean |e|`` = 0.35) do not.
* A two-step chain with given rewards (0, then 1 and terminal): the critic must learn the discounted
  return, ``Q(s_0) = gamma`` and ``Q(s_1) = 1``; this checks the bootstrapped target, which the
  exposure task cannot see (its rewards are PSNR differences, so the best action does not depend on the
  sign of the bootstrap term).
* Mutation checks: the same runs with a broken update (monkeypatched on the agent) must not pass
  (those of the exposure task are ``slow``: three more full runs).

Everything is seeded and runs on one CPU thread (``conftest.py``). Sizes and TD3 settings are explicit,
so changes of the package's defaults do not change these runs.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from ispbench.methods.rlpixtuner.buffer import ReplayBuffer
from ispbench.methods.rlpixtuner.env import FinishingEnv
from ispbench.methods.rlpixtuner.networks import NetConfig
from ispbench.methods.rlpixtuner.td3 import TD3, TD3Config

STEPS = 2  # episode length
EXPOSURE_RANGE = 0.7  # goal exposures U(-0.7, 0.7) (stops)
GOAL_NOISE = 0.03
ROUNDS, N_ENVS, RANDOM_ROUNDS, UPDATES_PER_ROUND, BATCH = 25, 32, 6, 16, 32  # 320 TD3 updates
NET = dict(dual_path=False, pyramid=False, stats=True, history=False, diff_input=True, width=4, cnn_features=16,
           feature_dim=32, hidden=64, layers=2, max_steps=STEPS, residual_actor=False)
TD3_SETTINGS = dict(actor_lr=3e-4, critic_lr=3e-3, gamma=0.9, tau=0.05, target_noise=0.2, target_noise_clip=0.5,
                    policy_delay=2, grad_clip=10.0, action_l2=0.0, bc_weight=0.0)
# what "learned" means for the exposure task (measured: trained ~0.1 and ~5 dB; untrained ~0.35 and ~0 dB)
MAX_EXPOSURE_ERROR = 0.18  # stops; leaving the exposure alone: mean |e| = 0.35
MIN_GAIN_DB = 3.0  # PSNR gain of an episode, and its margin over the untrained agent
CHAIN_TOLERANCE = 0.1  # on Q(s0) = gamma and Q(s1) = 1 (measured errors: under 0.03)


def exposure(images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The toy pipeline: slider 0 is the exposure in stops, the other eight do nothing."""
    return images * 2.0 ** actions[:, 0, None, None, None]


def exposure_pairs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` constant grey 8x8 inputs in [0.2, 0.4], their goals and the goals' exposures ``(n,)``."""
    x = (torch.rand(n, 1, 1, 1, generator=generator) * 0.2 + 0.2).expand(n, 3, 8, 8).contiguous()
    e = (torch.rand(n, generator=generator) * 2 - 1) * EXPOSURE_RANGE
    a = torch.zeros(n, 9)
    a[:, 0] = e
    goal = (exposure(x, a) + GOAL_NOISE * torch.randn(n, 3, 8, 8, generator=generator)).clamp(0, 1)
    return x, goal, e


def make_agent(seed: int, **td3_overrides: float) -> tuple[TD3, NetConfig]:
    torch.manual_seed(seed)
    net = NetConfig(**NET)
    return TD3(net, TD3Config(**{**TD3_SETTINGS, **td3_overrides}), "cpu", seed=seed), net


def make_env(net: NetConfig) -> FinishingEnv:
    return FinishingEnv(exposure, max_steps=STEPS, reward_scale=0.1, init="zero", layout=net.layout, mdp="cumulative")


@torch.no_grad()
def evaluate(agent: TD3, env: FinishingEnv, x: torch.Tensor, goal: torch.Tensor, e: torch.Tensor) -> dict[str, float]:
    """Deterministic episodes: first-action and final-image exposure errors (stops), PSNR gain (dB)."""
    obs = env.reset(x, goal)
    psnr0 = env.psnr.clone()
    first = action = agent.act(obs)
    for _ in range(STEPS):
        obs, _, _, _ = env.step(action)
        action = agent.act(obs)
    final_exposure = torch.log2(env.current.mean((1, 2, 3)) / x.mean((1, 2, 3)))
    return {"action_error": float((first[:, 0] - e).abs().mean()),
            "exposure_error": float((final_exposure - e).abs().mean()),
            "gain_db": float((env.psnr - psnr0).mean())}


def train_exposure(seed: int = 0, mutate: Callable[[TD3], None] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Train on the exposure task; returns the held-out metrics before and after training."""
    agent, net = make_agent(seed)
    if mutate is not None:
        mutate(agent)
    env = make_env(net)
    data, explore = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2)
    held_out = exposure_pairs(64, torch.Generator().manual_seed(1234))
    before = evaluate(agent, env, *held_out)
    buffer = ReplayBuffer(ROUNDS * N_ENVS * STEPS, net.layout.dim, seed=seed)
    for rnd in range(ROUNDS):
        x, goal, _ = exposure_pairs(N_ENVS, data)
        obs = env.reset(x, goal)
        for _ in range(STEPS):
            alive = env.alive.clone()
            if rnd < RANDOM_ROUNDS:
                action = torch.rand(N_ENVS, 9, generator=explore) * 2 - 1
            else:
                action = agent.act(obs, noise=0.2, generator=explore)
            next_obs, reward, truncated, done = env.step(action)
            buffer.add(obs.index(alive), action[alive], reward[alive], next_obs.index(alive),
                       (done | truncated)[alive].float())
            obs = next_obs
            if not env.alive.any():
                break
        if rnd >= RANDOM_ROUNDS - 1:
            for _ in range(UPDATES_PER_ROUND):
                agent.update(buffer.sample(BATCH))
    return before, evaluate(agent, env, *held_out)


def learned(before: dict[str, float], after: dict[str, float]) -> bool:
    return (after["action_error"] < MAX_EXPOSURE_ERROR and after["exposure_error"] < MAX_EXPOSURE_ERROR
            and after["gain_db"] > MIN_GAIN_DB and after["gain_db"] > before["gain_db"] + MIN_GAIN_DB)


def test_td3_learns_a_one_slider_exposure_task():
    before, after = train_exposure(seed=0)
    # the untrained policy is no better than leaving the exposure alone (mean |e| = 0.35)
    assert before["action_error"] > 0.3 and before["exposure_error"] > 0.3, before
    assert after["action_error"] < MAX_EXPOSURE_ERROR, (before, after)  # the first action tracks the goal's exposure
    assert after["exposure_error"] < MAX_EXPOSURE_ERROR, (before, after)  # and so does the final image
    assert after["gain_db"] > MIN_GAIN_DB and after["gain_db"] > before["gain_db"] + MIN_GAIN_DB, (before, after)


def _no_actor_step(agent: TD3) -> None:
    agent.actor_opt.step = lambda *args, **kwargs: None


def _no_critic_step(agent: TD3) -> None:
    agent.critic_opt.step = lambda *args, **kwargs: None


def _actor_ascends_its_loss(agent: TD3) -> None:
    """Gradient ascent on ``-Q``: the same as an actor loss of ``+Q`` (Adam's step is odd in the gradient)."""
    for group in agent.actor_opt.param_groups:
        group["maximize"] = True


@pytest.mark.slow  # three more exposure-task runs (~10 s each on one thread): `make test-all`
@pytest.mark.parametrize("mutate", [_no_actor_step, _no_critic_step, _actor_ascends_its_loss],
                         ids=["no-actor-step", "no-critic-step", "actor-loss-plus-q"])
def test_broken_td3_updates_do_not_learn_the_exposure_task(mutate):
    before, after = train_exposure(seed=0, mutate=mutate)
    assert not learned(before, after), (before, after)


def train_chain(seed: int = 0, mutate: Callable[[TD3], None] | None = None, updates: int = 100,
                **td3_overrides: float) -> tuple[float, float]:
    """A two-step chain with given rewards: ``s0 -> s1`` (reward 0), ``s1 -> s2`` (reward 1, terminal).

    The states are real observations of two-step episodes with random actions; returns the mean
    ``Q_1`` of the stored ``(s0, a0)`` and ``(s1, a1)``.
    """
    agent, net = make_agent(seed, **{"tau": 0.2, **td3_overrides})
    if mutate is not None:
        mutate(agent)
    env = make_env(net)
    g = torch.Generator().manual_seed(seed + 1)
    n = 64
    x, goal, _ = exposure_pairs(n, g)
    s0 = env.reset(x, goal)
    a0 = torch.rand(n, 9, generator=g) - 0.5
    s1, _, _, _ = env.step(a0)
    a1 = torch.rand(n, 9, generator=g) - 0.5
    s2, _, truncated, done = env.step(a1)
    assert done.all() and not truncated.any()
    buffer = ReplayBuffer(2 * n, net.layout.dim, seed=seed)
    buffer.add(s0, a0, torch.zeros(n), s1, torch.zeros(n))
    buffer.add(s1, a1, torch.ones(n), s2, torch.ones(n))
    for _ in range(updates):
        agent.update(buffer.sample(BATCH))
    with torch.no_grad():
        q0 = agent.critic(agent.encoder(s0), a0)[0].mean()
        q1 = agent.critic(agent.encoder(s1), a1)[0].mean()
    return float(q0), float(q1)


def chain_learned(q0: float, q1: float) -> bool:
    return abs(q1 - 1.0) < CHAIN_TOLERANCE and abs(q0 - TD3_SETTINGS["gamma"]) < CHAIN_TOLERANCE


def test_td3_critic_learns_the_discounted_return_of_a_two_step_chain():
    q0, q1 = train_chain()
    assert q1 == pytest.approx(1.0, abs=CHAIN_TOLERANCE)  # the terminal reward, no bootstrap after done
    assert q0 == pytest.approx(TD3_SETTINGS["gamma"], abs=CHAIN_TOLERANCE)  # bootstrapped through the targets


@pytest.mark.parametrize(("overrides", "mutate"), [({"gamma": -TD3_SETTINGS["gamma"]}, None), ({}, _no_critic_step)],
                         ids=["bootstrap-sign-flipped", "no-critic-step"])
def test_broken_critic_updates_do_not_learn_the_chain(overrides, mutate):
    """``gamma = -0.9`` is the target ``y = r - 0.9 (1 - d) min Q_targ``: the bootstrap term's sign flipped."""
    q0, q1 = train_chain(mutate=mutate, **overrides)
    assert not chain_learned(q0, q1), (q0, q1)
