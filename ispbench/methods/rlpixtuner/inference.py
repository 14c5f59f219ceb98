"""RLPixTuner inference: the deployable :class:`Policy` (encoder + actor) and the tuning loop :func:`tune`.

Example:
    >>> policy = Policy.load(shipped_weights())                  # doctest: +SKIP
    >>> traj = tune(policy, image, goal, steps=10)               # doctest: +SKIP
    >>> traj.best_psnr                                           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ispbench.methods.rlpixtuner.env import FinishingEnv, Observation, Pipeline
from ispbench.methods.rlpixtuner.networks import Actor, NetConfig, StateEncoder
from ispbench.methods.rlpixtuner.state import N_PARAMS
from ispbench.methods.rlpixtuner.td3 import TD3
from ispbench.training.checkpoint import safe_load


class Policy(torch.nn.Module):
    """The deployable policy: encoder + actor, ``Observation -> (B, 9)`` actions."""

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        self.net_cfg = net
        self.encoder = StateEncoder(net)
        self.actor = Actor(net)

    @torch.no_grad()
    def forward(self, obs: Observation) -> torch.Tensor:
        return self.actor(self.encoder(obs), obs.vec[:, self.encoder.slices["params"]][:, :N_PARAMS])

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Policy":
        pol = cls(NetConfig.from_dict(state["net_config"]))
        pol.encoder.load_state_dict(state["encoder"])
        pol.actor.load_state_dict(state["actor"])
        return pol.eval()

    @classmethod
    def load(cls, path: str) -> "Policy":
        """Load a policy from a shipped weights file or a training checkpoint."""
        state = safe_load(path, what="RLPixTuner policy")
        if "policy" in state:
            state = state["policy"]
        elif "agent" in state:
            state = state["agent"]
        return cls.from_state(state)


class Trajectory(NamedTuple):
    """Result of :func:`tune` for a batch of ``B`` images of size ``H x W`` over ``T`` steps (queries).

    Step 0 is the input image under neutral (zero) sliders, ``I_0``; step ``t`` is the pipeline's
    output for the ``t``-th parameter vector the policy chose, ``I_t``. PSNRs are in dB, to the goal.

    Attributes:
        actions: ``(T, B, 9)`` the 9 slider values queried at each step, in the pipeline's units
            (:mod:`ispbench.methods.rlpixtuner.env`). In the cumulative MDP (the authors', the default)
            step ``t``'s sliders were applied to ``I_{t-1}``, so the result is the chain of all ``t`` edits
            (``env.replay(image, actions[:t])``), not one slider setting; in the absolute MDP
            ``actions[t-1]`` alone renders ``I_t`` from the input.
        psnrs: ``(T + 1, B)`` PSNR of ``I_0 ... I_T`` to the goal (dB).
        images: ``T + 1`` tensors ``(B, 3, H, W)`` (``I_0 ... I_T``) when ``tune(..., keep_images=True)``,
            else ``None``.
        queries: ``(B,)`` long, pipeline queries used per image (``T``).
        final: ``(B, 3, H, W)`` the last image ``I_T``, in [0, 1].
        best: ``(B, 3, H, W)`` the image of highest PSNR among ``I_1 ... I_T`` (picking it peeks at the goal).
        best_actions: ``(B, 9)`` the sliders of the step that produced ``best`` (in the cumulative MDP,
            the last edit of the chain ``actions[:best_step]``).
        best_step: ``(B,)`` long, the 1-based step of ``best``.
        final_psnr: property, ``(B,)`` PSNR of ``final`` (``psnrs[-1]``).
        best_psnr: property, ``(B,)`` PSNR of ``best`` (max of ``psnrs[1:]``).

    Example:
        >>> traj = tune(policy, image, goal, steps=10)         # doctest: +SKIP
        >>> traj.actions.shape, traj.best.shape, traj.best_psnr.shape
        (torch.Size([10, 1, 9]), torch.Size([1, 3, 128, 128]), torch.Size([1]))
    """

    actions: torch.Tensor  # (T, B, 9): the parameters queried at each step
    psnrs: torch.Tensor  # (T + 1, B): PSNR to the goal of I_0 ... I_T
    images: list[torch.Tensor] | None  # T + 1 images (B, 3, H, W) if keep_images
    queries: torch.Tensor  # (B,) pipeline queries used
    final: torch.Tensor  # (B, 3, H, W) I_T
    best: torch.Tensor  # (B, 3, H, W) the image of highest PSNR among I_1 ... I_T
    best_actions: torch.Tensor  # (B, 9)
    best_step: torch.Tensor  # (B,) 1-based step of the best image

    @property
    def final_psnr(self) -> torch.Tensor:
        return self.psnrs[-1]

    @property
    def best_psnr(self) -> torch.Tensor:
        return self.psnrs[1:].max(0).values


@torch.no_grad()
def tune(policy: torch.nn.Module | TD3, image: torch.Tensor, goal: torch.Tensor, steps: int = 10,
         pipeline: Pipeline | None = None, keep_images: bool = False) -> Trajectory:
    """Tune the pipeline toward ``goal`` with a trained policy: ``steps`` black-box queries.

    The policy sees 64x64 copies (plus full-resolution pyramid features and statistics); every
    parameter vector it outputs is applied to the **full-resolution** ``image``. Starts from the
    identity (zero parameters), so exactly ``steps`` queries are made per image. Both the final
    step and the best over the trajectory are returned: the authors' evaluation reports the
    *best* PSNR over the 10 steps (which peeks at the goal to pick); report both.

    The episode dynamics are the policy's (``policy.net_cfg.mdp``): in the cumulative MDP each query
    edits the previous output.

    Args:
        policy: a :class:`Policy` (or a :class:`TD3` agent).
        image, goal: ``(B, 3, H, W)`` in [0, 1].
    """
    if image.dim() == 3:
        image, goal = image[None], goal[None]
    net_cfg = policy.net_cfg
    env = FinishingEnv(pipeline, max_steps=net_cfg.max_steps, init="zero", min_mean=-1.0, max_mean=2.0, saturation=2.0,
                       mdp=net_cfg.mdp)
    if steps > net_cfg.max_steps:
        raise ValueError(f"steps ({steps}) must be <= the policy's max_steps ({net_cfg.max_steps})")
    obs = env.reset(image, goal)
    # the env never writes an image in place, so references replace copies of full-resolution images
    psnrs, acts, imgs = [env.psnr.clone()], [], [env.current] if keep_images else None
    best, best_p = env.current, torch.full((image.shape[0],), -1e9)
    best_a, best_step = torch.zeros(image.shape[0], N_PARAMS), torch.zeros(image.shape[0], dtype=torch.long)
    for t in range(steps):
        a = policy.act(obs) if isinstance(policy, TD3) else policy(obs).cpu()
        obs, _, _, _ = env.step(a)
        p = env.psnr.clone()
        better = p > best_p
        if bool(better.all()):
            best = env.current
        elif bool(better.any()):
            best = torch.where(better.view(-1, 1, 1, 1), env.current, best)
        best_p[better], best_a[better] = p[better], a[better]
        best_step[better] = t + 1
        psnrs.append(p)
        acts.append(a)
        if keep_images:
            imgs.append(env.current)
    return Trajectory(torch.stack(acts), torch.stack(psnrs), imgs, env.episode_queries.clone(), env.current,
                      best, best_a, best_step)


__all__ = ["Policy", "Trajectory", "tune"]
