"""RLPixTuner environment: reward, query counting, truncation, state shapes per ablation."""

from __future__ import annotations

import pytest
import torch

from ispbench.methods.rlpixtuner.env import FinishingEnv, replay
from ispbench.methods.rlpixtuner.networks import ABLATIONS, NetConfig, StateEncoder
from ispbench.methods.rlpixtuner.state import StateLayout, laplacian_pyramid_features, photo_stats, rgb_histograms
from ispbench.ops.finishing import finish
from ispbench.tasks.finishing_metrics import psnr


def _pair(b=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, s, s, generator=g) * 0.6 + 0.2
    a = (torch.rand(b, 9, generator=g) * 2 - 1) * 0.4
    return x, finish(x, a), a


def test_reward_is_scaled_psnr_gain_and_queries_are_counted():
    x, goal, a_goal = _pair()
    env = FinishingEnv(reward_scale=0.1, mdp="absolute")
    obs = env.reset(x, goal)
    assert env.queries == 0  # zero start = identity, no query
    p0 = psnr(x, goal)
    a = a_goal * 0.5
    obs, r, trunc, done = env.step(a)
    p1 = psnr(finish(x, a), goal)
    assert torch.allclose(r, 0.1 * (p1 - p0), atol=1e-4)
    assert env.queries == 3 and env.episode_queries.tolist() == [1, 1, 1]
    obs, r, trunc, done = env.step(a_goal)  # the exact goal parameters: huge PSNR gain
    assert (r > 0).all() and (env.psnr > 60).all()
    for _ in range(8):
        obs, r, trunc, done = env.step(a_goal)
    assert done.all() and env.queries == 30 and not env.alive.any()
    assert obs.vec.shape == (3, StateLayout().dim) and obs.cur64.shape == (3, 3, 64, 64)


def test_cumulative_mdp_edits_the_previous_output():
    x, goal, a_goal = _pair()
    env = FinishingEnv()  # the default: the authors' cumulative MDP, reward 0.01 x PSNR gain
    assert env.mdp == "cumulative" and env.reward_scale == 0.01
    env.reset(x, goal)
    p0 = psnr(x, goal)
    _, r, _, _ = env.step(a_goal)
    assert torch.allclose(r, 0.01 * (psnr(finish(x, a_goal), goal) - p0), atol=1e-5)
    assert (env.psnr > 60).all()  # one step with the goal's sliders reaches it
    first = env.current.clone()
    _, r, _, _ = env.step(torch.zeros(3, 9))  # a zero edit keeps the current image
    torch.testing.assert_close(env.current, first, atol=1e-5, rtol=0)
    half = a_goal * 0.5
    _, r, _, _ = env.step(half)  # applied to the current image, not to the input
    torch.testing.assert_close(env.current, finish(first, half).clamp(0, 1))
    assert not torch.allclose(env.current, finish(x, half).clamp(0, 1), atol=1e-3)
    actions = torch.stack([a_goal, torch.zeros(3, 9), half])
    torch.testing.assert_close(replay(x, actions), env.current)
    torch.testing.assert_close(replay(x, actions, mdp="absolute"), finish(x, half).clamp(0, 1))
    with pytest.raises(ValueError, match="mdp must be"):
        FinishingEnv(mdp="relative")
    with pytest.raises(ValueError, match="actions must be"):
        replay(x, half)


def test_random_init_costs_a_query():
    x, goal, _ = _pair()
    env = FinishingEnv(init="random")
    env.reset(x, goal, generator=torch.Generator().manual_seed(0))
    assert env.queries == 3 and (env.params.abs() > 0).all()


@pytest.mark.parametrize("mdp", ["cumulative", "absolute"])
def test_truncation_on_dark_image_and_saturated_actions(mdp):
    x, goal, _ = _pair(b=3)
    env = FinishingEnv(mdp=mdp)
    env.reset(x, goal)
    a = torch.zeros(3, 9)
    a[0, 0] = -1.0  # -2 EV then dim: still within bounds? make it darker via wb too
    a[0, 1:4] = -1.0
    a[1] = 1.0  # every action saturated
    a[2, 0] = 0.1
    x_dark = finish(x[:1], a[:1])
    _, r, trunc, done = env.step(a)
    assert bool(trunc[1]) and not bool(trunc[2])
    assert bool(trunc[0]) == bool(x_dark.mean() < 0.01 or x_dark.mean() > 0.9)
    # truncated samples stop: no more queries, no reward
    q = env.queries
    _, r2, trunc2, _ = env.step(torch.zeros(3, 9))
    assert env.queries == q + int(env.alive.sum()) + int(trunc2.sum()) - int(trunc2.sum())
    assert r2[1] == 0 and not trunc2[1]


def test_bad_input_refused():
    env = FinishingEnv()
    with pytest.raises(ValueError, match="init must be"):
        FinishingEnv(init="ones")
    x, goal, _ = _pair()
    with pytest.raises(ValueError, match="one shape"):
        env.reset(x, goal[:, :, :16])
    env.reset(x, goal)
    with pytest.raises(ValueError, match="actions must be"):
        env.step(torch.zeros(3, 8))


def test_state_features():
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0] = 1.0  # pure red
    h = rgb_histograms(img, bins=4).view(3, 4)
    assert h[0, 3] == 4 and h[1, 0] == 4  # all mass in the last red bin / first green bin
    st = photo_stats(img)[0]
    assert st[0].item() == pytest.approx(0.27) and st[3].item() == pytest.approx(1.0)
    flat = laplacian_pyramid_features(torch.full((2, 3, 64, 64), 0.5))
    assert flat.shape == (2, 3 * 3 * 16) and flat.abs().max() < 1e-6


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_state_encoder_shapes_per_ablation(ablation):
    x, goal, _ = _pair(b=2, s=48)
    env = FinishingEnv()
    obs = env.reset(x, goal)
    cfg = NetConfig(**ABLATIONS[ablation], width=4, feature_dim=32)
    enc = StateEncoder(cfg)
    assert enc(obs).shape == (2, 32)
    has = {name for name, _ in enc.named_children()}
    assert ("hist" in has) == cfg.stats and ("hist_emb" in has) == cfg.history and ("pyr" in has) == cfg.pyramid
    assert type(enc.cnn).__name__ == ("DualPathCNN" if cfg.dual_path else "NaiveCNN")
