"""ReplayBuffer: a batched ``add`` stores exactly what one-by-one appends store (wrap-around included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.methods.rlpixtuner.buffer import ReplayBuffer
from ispbench.methods.rlpixtuner.env import Observation

VEC = 7
FIELDS = ("cur", "nxt", "goal", "vec", "next_vec", "action", "reward", "done", "goal_action")


def _transitions(n: int, seed: int, with_goal_action: bool):
    g = torch.Generator().manual_seed(seed)

    def obs() -> Observation:
        return Observation(torch.rand(n, 3, 8, 8, generator=g) * 1.2 - 0.1, torch.rand(n, 3, 8, 8, generator=g),
                           torch.randn(n, VEC, generator=g))

    goal_action = None
    if with_goal_action:
        goal_action = torch.rand(n, 9, generator=g)
        goal_action[::3] = float("nan")  # unknown for some transitions
    reward = torch.randn(n, generator=g, dtype=torch.float64)  # float64 rewards are stored as float32
    done = torch.rand(n, generator=g) < 0.3  # bool dones are stored as 0.0 / 1.0
    return obs(), torch.rand(n, 9, generator=g) * 2 - 1, reward, obs(), done, goal_action


def _one_by_one(buf: ReplayBuffer, obs, action, reward, next_obs, done, goal_action) -> None:
    for i in range(action.shape[0]):
        s = slice(i, i + 1)
        buf.add(Observation(obs.cur64[s], obs.goal64[s], obs.vec[s]), action[s], reward[s],
                Observation(next_obs.cur64[s], next_obs.goal64[s], next_obs.vec[s]), done[s],
                goal_action[s] if goal_action is not None else None)


def _reference_loop(buf: ReplayBuffer, obs, action, reward, next_obs, done, goal_action) -> None:
    """The pre-vectorisation ``add``: one Python iteration per transition."""
    for i in range(action.shape[0]):
        j = buf.pos
        buf.goal_action[j] = goal_action[i].numpy() if goal_action is not None else np.nan
        buf.cur[j] = buf._u8(obs.cur64[i])
        buf.goal[j] = buf._u8(obs.goal64[i])
        buf.nxt[j] = buf._u8(next_obs.cur64[i])
        buf.vec[j] = obs.vec[i].numpy()
        buf.next_vec[j] = next_obs.vec[i].numpy()
        buf.action[j] = action[i].numpy()
        buf.reward[j] = float(reward[i])
        buf.done[j] = float(done[i])
        buf.pos = (buf.pos + 1) % buf.capacity
        buf.full = buf.full or buf.pos == 0


def _assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert (a.pos, a.full, len(a)) == (b.pos, b.full, len(b))
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)  # NaN == NaN here


@pytest.mark.parametrize("with_goal_action", [False, True])
@pytest.mark.parametrize("batches", [(3,), (5, 4), (10, 7, 9), (25,), (4, 23)])  # capacity 10: wraps, overflows
def test_batched_add_equals_one_by_one(batches, with_goal_action):
    batched, single, loop = (ReplayBuffer(10, VEC, size=8, seed=3) for _ in range(3))
    for k, n in enumerate(batches):
        data = _transitions(n, seed=k, with_goal_action=with_goal_action)
        batched.add(*data)
        _one_by_one(single, *data)
        _reference_loop(loop, *data)
        _assert_same(batched, single)
        _assert_same(batched, loop)
    # same stored contents and the same sampler state: the same batches are drawn
    for x, y in zip(batched.sample(6), loop.sample(6), strict=True):
        if isinstance(x, Observation):
            assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("cur64", "goal64", "vec"))
        else:
            assert torch.equal(x, y) or torch.equal(torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0))


def test_empty_add_changes_nothing():
    buf = ReplayBuffer(4, VEC, size=8)
    obs, action, reward, next_obs, done, _ = _transitions(0, seed=0, with_goal_action=False)
    buf.add(obs, action, reward, next_obs, done)
    assert (buf.pos, buf.full, len(buf)) == (0, False, 0)
