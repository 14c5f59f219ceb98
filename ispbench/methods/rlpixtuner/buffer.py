"""RLPixTuner's replay buffer: a ring of transitions, 64x64 images as uint8, vectors as float32.

:meth:`ReplayBuffer.add` writes a whole batch of transitions with array slices (wrapping
around the ring); :meth:`ReplayBuffer.sample` draws indices from the buffer's own
``np.random.Generator`` (saved in :meth:`ReplayBuffer.state_dict`), so a resumed run draws the
same batches.

Example:
    >>> buf = ReplayBuffer(capacity=1000, vec_dim=32)             # doctest: +SKIP
    >>> buf.add(obs, action, reward, next_obs, done)              # doctest: +SKIP
    >>> batch = buf.sample(64)                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ispbench.methods.rlpixtuner.env import Observation
from ispbench.methods.rlpixtuner.state import N_PARAMS

_COLUMNS = ("cur", "nxt", "goal", "vec", "next_vec", "action", "reward", "done", "goal_action")


class Batch(NamedTuple):
    """A sampled batch of transitions (images as float in [0, 1])."""

    obs: Observation
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: Observation
    done: torch.Tensor
    goal_action: torch.Tensor | None = None  # (B, 9) known parameters of the goal, NaN where unknown


class ReplayBuffer:
    """Ring buffer of transitions; 64x64 images stored as uint8, vectors as float32.

    Sampling uses its own ``np.random.Generator`` (saved in :meth:`state_dict`), so a resumed
    run draws the same batches.
    """

    def __init__(self, capacity: int, vec_dim: int, size: int = 64, seed: int = 0) -> None:
        self.capacity, self.vec_dim, self.size = int(capacity), int(vec_dim), int(size)
        s = (self.capacity, 3, size, size)
        self.cur = np.zeros(s, np.uint8)
        self.nxt = np.zeros(s, np.uint8)
        self.goal = np.zeros(s, np.uint8)
        self.vec = np.zeros((self.capacity, vec_dim), np.float32)
        self.next_vec = np.zeros((self.capacity, vec_dim), np.float32)
        self.action = np.zeros((self.capacity, N_PARAMS), np.float32)
        self.reward = np.zeros(self.capacity, np.float32)
        self.done = np.zeros(self.capacity, np.float32)
        self.goal_action = np.full((self.capacity, N_PARAMS), np.nan, np.float32)
        self.pos, self.full = 0, False
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.capacity if self.full else self.pos

    @staticmethod
    def _u8(x: torch.Tensor) -> np.ndarray:
        """Float images in [0, 1] -> uint8 ``round(x * 255)`` (half up), as NumPy."""
        return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()

    def _write(self, array: np.ndarray, values: np.ndarray, start: int) -> None:
        """Write ``values`` (``n <= capacity`` rows) to rows ``start, start + 1, ...`` modulo the capacity."""
        n = len(values)
        first = min(n, self.capacity - start)
        array[start : start + first] = values[:first]
        array[: n - first] = values[first:]

    def add(self, obs: Observation, action: torch.Tensor, reward: torch.Tensor, next_obs: Observation,
            done: torch.Tensor, goal_action: torch.Tensor | None = None) -> None:
        """Append a batch of ``n`` transitions at once (array slices, wrapping around the ring).

        Stores exactly what ``n`` single appends in order would: with ``n > capacity`` only the last
        ``capacity`` transitions survive, each at the slot a one-by-one append would give it.

        Args:
            obs, next_obs: observations with ``cur64``/``goal64`` ``(n, 3, 64, 64)`` in [0, 1] (stored as
                uint8 ``round(x * 255)``) and ``vec`` ``(n, vec_dim)``.
            action: ``(n, 9)``. reward, done: ``(n,)``.
            goal_action: ``(n, 9)`` the known parameters that produced the goal (hindsight label, used
                by ``TD3Config.bc_weight``), NaN/None where unknown.
        """
        n = action.shape[0]
        if n == 0:
            return
        keep = slice(max(0, n - self.capacity), n)  # older ones would be overwritten within this batch
        start = (self.pos + keep.start) % self.capacity
        columns = {
            "cur": self._u8(obs.cur64[keep]),
            "goal": self._u8(obs.goal64[keep]),
            "nxt": self._u8(next_obs.cur64[keep]),
            "vec": obs.vec[keep].numpy(),
            "next_vec": next_obs.vec[keep].numpy(),
            "action": action[keep].numpy(),
            "reward": torch.as_tensor(reward)[keep].detach().cpu().to(torch.float64).numpy(),
            "done": torch.as_tensor(done)[keep].detach().cpu().to(torch.float64).numpy(),
            "goal_action": (goal_action[keep].numpy() if goal_action is not None
                            else np.full((n - keep.start, N_PARAMS), np.nan, np.float32)),
        }
        for name, values in columns.items():
            self._write(getattr(self, name), values, start)
        stored = n - keep.start
        self.full = self.full or start + stored >= self.capacity
        self.pos = (start + stored) % self.capacity

    def sample(self, batch_size: int) -> Batch:
        idx = self.rng.integers(0, len(self), size=batch_size)

        def img(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a[idx]).float() / 255.0

        goal = img(self.goal)
        return Batch(
            Observation(img(self.cur), goal, torch.from_numpy(self.vec[idx])),
            torch.from_numpy(self.action[idx]),
            torch.from_numpy(self.reward[idx]),
            Observation(img(self.nxt), goal, torch.from_numpy(self.next_vec[idx])),
            torch.from_numpy(self.done[idx]),
            torch.from_numpy(self.goal_action[idx]),
        )

    def state_dict(self) -> dict[str, Any]:
        """Filled rows as tensors, ring position and sampling RNG state (readable with ``weights_only=True``)."""
        n = len(self)
        return {"capacity": self.capacity, "pos": self.pos, "full": self.full, "rng": self.rng.bit_generator.state,
                **{k: torch.from_numpy(getattr(self, k)[:n].copy()) for k in _COLUMNS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"buffer capacity {state['capacity']} in checkpoint != {self.capacity}")
        for k in _COLUMNS:
            if k not in state:  # checkpoints written before goal_action existed
                continue
            arr = state[k]
            arr = arr.numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
            getattr(self, k)[: len(arr)] = arr
        self.pos, self.full = int(state["pos"]), bool(state["full"])
        self.rng.bit_generator.state = state["rng"]


__all__ = ["Batch", "ReplayBuffer"]
