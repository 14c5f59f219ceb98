"""The photo-finishing tuning environment (RLPixTuner Sec. 3.2, Appendix C.2), batched.

The pipeline is a **black box**: the environment only calls ``pipeline(input, actions)`` and
counts the calls (one query = one image through the pipeline). An episode of a batch of ``B``
(input, goal) pairs:

* reset: initial parameters ``P_0`` (``init="zero"``: the identity, ``I_0`` = input, no query;
  ``"random"``: ``U(-init_scale, init_scale)^9`` applied to the input, one query;
  ``"mixed"``: half of each kind; ``"random-params"``: the authors' reset, random parameters in
  the observation only, ``I_0`` = input, no query).
* step ``t``: the action ``a_t`` in [-1, 1]^9 is a parameter set (the paper: "the action is the
  parameter set P"). Two MDPs (``mdp``):

  - ``"cumulative"`` (default; the authors' training and evaluation scripts, ``--isp_inp_original
    False``): ``I_{t+1} = pipeline(I_t, a_t)``, each step edits the previous step's output, so
    edits accumulate and ``a_t = 0`` keeps the image. The result of an episode is a chain of
    renders, not one slider setting (:func:`replay` re-renders it).
  - ``"absolute"`` (the paper's text read literally; ispbench's earlier default):
    ``I_{t+1} = pipeline(input, a_t)``, non-destructive editing, always from the original input,
    so the next image depends only on the last action.
* reward ``r_t = reward_scale * (PSNR(I_{t+1}, I_g) - PSNR(I_t, I_g))`` (eq. 2). The paper
  gives no scale; the authors' code multiplies by 0.01 (the default).
* truncation: a sample is cut (and its transition must not be stored, App. C.2) when the mean
  intensity of ``I_{t+1}`` leaves ``[min_mean, max_mean]`` = [0.01, 0.9] or when every action
  component is saturated (``|a| >= saturation``, authors' code). Cut samples stop stepping.
* the episode ends after ``max_steps`` = 10 steps (``done`` is then True).

Example:
    >>> env = FinishingEnv()                                   # doctest: +SKIP
    >>> obs = env.reset(inputs, goals)
    >>> obs, reward, truncated, done = env.step(actions)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ispbench.methods.rlpixtuner.state import N_PARAMS, StateLayout, build_vec, image_features
from ispbench.ops.finishing import finish
from ispbench.tasks.finishing_metrics import psnr_from_mse

Pipeline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The two episode dynamics (see the module docstring).
MDPS = ("cumulative", "absolute")
#: Initial parameters of an episode (see the module docstring).
INITS = ("zero", "random", "mixed", "random-params")


def _mse(images: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
    """Per-image MSE ``(B,)`` in one pass; a non-finite image (NaN/Inf from the pipeline) is refused here,
    on the ``(B,)`` result, instead of scanning both full images first (``finishing_metrics.mse``)."""
    err = (images - goals).pow_(2).flatten(1).mean(1)
    if not bool(torch.isfinite(err).all()):
        raise ValueError(f"non-finite pixel values (NaN/Inf) in image(s) {torch.nonzero(~torch.isfinite(err)).flatten().tolist()} "
                         "of the pipeline's output or the goals")
    return err


def default_pipeline() -> Pipeline:
    """``ispbench.ops.finishing.finish``."""
    return finish


@dataclass
class Observation:
    """What the policy sees: 64x64 images and the pre-computed state vector (see :mod:`.state`)."""

    cur64: torch.Tensor  # (B, 3, 64, 64)
    goal64: torch.Tensor  # (B, 3, 64, 64)
    vec: torch.Tensor  # (B, layout.dim)

    def index(self, mask: torch.Tensor) -> "Observation":
        return Observation(self.cur64[mask], self.goal64[mask], self.vec[mask])


class FinishingEnv:
    """Batched goal-conditioned tuning environment around a black-box pipeline.

    Args:
        pipeline: ``(B,3,H,W) images, (B,9) actions -> (B,3,H,W)``; default the finishing pipeline.
        max_steps: episode length (10 in the paper).
        reward_scale: multiplies PSNR differences (dB).
        min_mean, max_mean: truncation bounds on the mean intensity of the current image.
        saturation: an action component counts as saturated when ``|a| >= saturation``.
        init: initial parameters, ``"zero"``, ``"random"`` or ``"mixed"``.
        init_scale: half-width of random initial parameters.
        layout: the state layout.
        mdp: ``"cumulative"`` (each step edits the previous output; the authors' code) or
            ``"absolute"`` (each step renders the original input).
    """

    def __init__(self, pipeline: Pipeline | None = None, *, max_steps: int = 10, reward_scale: float = 0.01,
                 min_mean: float = 0.01, max_mean: float = 0.9, saturation: float = 0.999,
                 init: str = "zero", init_scale: float = 0.5, layout: StateLayout | None = None,
                 mdp: str = "cumulative") -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if mdp not in MDPS:
            raise ValueError(f"mdp must be one of {MDPS}, got {mdp!r}")
        self.mdp = mdp
        self.pipeline = pipeline or default_pipeline()
        self.max_steps, self.reward_scale = int(max_steps), float(reward_scale)
        self.min_mean, self.max_mean, self.saturation = float(min_mean), float(max_mean), float(saturation)
        self.init, self.init_scale = init, float(init_scale)
        self.layout = layout or StateLayout(max_steps=max_steps)
        if self.layout.max_steps != self.max_steps:
            raise ValueError("layout.max_steps must equal max_steps")
        self.queries = 0  # total pipeline queries (images) since construction

    # -- internals -------------------------------------------------------------------------
    def _query(self, actions: torch.Tensor) -> torch.Tensor:
        self.queries += int(actions.shape[0])
        with torch.no_grad():
            return self.pipeline(self.inputs, actions).clamp(0, 1)

    def _observe(self) -> Observation:
        cur = image_features(self.current, self.layout)
        vec = build_vec(cur, self.goal_feats, self.params, self.t, self.hist_actions, self.hist_dist, self.layout)
        return Observation(cur["small"], self.goal_feats["small"], vec)

    # -- API -------------------------------------------------------------------------------
    def reset(self, inputs: torch.Tensor, goals: torch.Tensor, generator: torch.Generator | None = None,
              init_params: torch.Tensor | None = None) -> Observation:
        """Start episodes for ``inputs``/``goals`` ``(B, 3, H, W)``; returns the first observation."""
        if inputs.shape != goals.shape or inputs.dim() != 4 or inputs.shape[1] != 3:
            raise ValueError(f"inputs and goals must be (B, 3, H, W) of one shape, got {tuple(inputs.shape)}, {tuple(goals.shape)}")
        b = inputs.shape[0]
        self.inputs, self.goals = inputs.float(), goals.float()
        self.goal_feats = image_features(self.goals, self.layout)
        self.t = torch.zeros(b, dtype=torch.long)
        self.hist_actions = torch.zeros(b, self.max_steps, N_PARAMS)
        self.hist_dist = torch.zeros(b, self.max_steps)
        self.alive = torch.ones(b, dtype=torch.bool)
        self.episode_queries = torch.zeros(b, dtype=torch.long)
        if init_params is None:
            if self.init == "zero":
                init_params = torch.zeros(b, N_PARAMS)
            else:
                init_params = (torch.rand(b, N_PARAMS, generator=generator) * 2 - 1) * self.init_scale
                if self.init == "mixed":
                    keep = torch.rand(b, generator=generator) < 0.5
                    init_params = init_params * keep[:, None]
        self.params = init_params.float().clone()
        # the authors' reset: random parameters are only observed, the image stays the input
        nonzero = self.params.abs().amax(1) > 0 if self.init != "random-params" else torch.zeros(b, dtype=torch.bool)
        self.current = self.inputs  # never written in place (step replaces it): no copy needed
        if nonzero.any():
            self.queries += int(nonzero.sum())
            self.episode_queries += nonzero.long()
            self.current = self.inputs.clone()
            with torch.no_grad():
                self.current[nonzero] = self.pipeline(self.inputs[nonzero], self.params[nonzero]).clamp(0, 1)
        err = _mse(self.current, self.goals)
        self.psnr = psnr_from_mse(err)
        self.hist_dist[:, 0] = err.sqrt()
        return self._observe()

    def step(self, actions: torch.Tensor) -> tuple[Observation, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply ``actions`` ``(B, 9)`` to the alive samples (to ``I_t`` or to the input, see ``mdp``).

        Returns:
            ``(obs, reward (B,), truncated (B,) bool, done (B,) bool)``. Samples already cut
            earlier get reward 0 and ``truncated`` False; ``done`` is True at the last step.
        """
        b = self.inputs.shape[0]
        if actions.shape != (b, N_PARAMS):
            raise ValueError(f"actions must be ({b}, {N_PARAMS}), got {tuple(actions.shape)}")
        a = actions.detach().float().clamp(-1, 1)
        alive = self.alive
        n_alive = int(alive.sum())
        source = self.current if self.mdp == "cumulative" else self.inputs
        self.queries += n_alive
        self.episode_queries += alive.long()
        with torch.no_grad():
            if n_alive == b:  # the usual case (always in ``tune``): no copy, gather or scatter of full images
                new = self.pipeline(source, a).clamp(0, 1)
            else:
                new = self.current.clone()
                if n_alive:
                    new[alive] = self.pipeline(source[alive], a[alive]).clamp(0, 1)
        err = _mse(new, self.goals)  # one pass gives the PSNR and the RMS distance
        new_psnr = psnr_from_mse(err)
        reward = torch.where(alive, self.reward_scale * (new_psnr - self.psnr), torch.zeros(b))
        mean = new.flatten(1).mean(1)
        bad_mean = (mean < self.min_mean) | (mean > self.max_mean)
        saturated = (a.abs() >= self.saturation).all(1)
        truncated = alive & (bad_mean | saturated)
        # advance the alive samples (truncated ones too, so their last state can be inspected); rows of
        # samples cut earlier keep their image (``new`` is a copy of ``I_t`` there)
        idx = torch.nonzero(alive).flatten()
        t = self.t[idx]
        self.hist_actions[idx, t] = a[idx]
        self.current = new
        self.params[idx] = a[idx]
        self.psnr[idx] = new_psnr[idx]
        self.t[idx] = t + 1
        nxt = (t + 1).clamp_max(self.max_steps - 1)
        self.hist_dist[idx, nxt] = err.sqrt()[idx]
        self.alive = alive & ~truncated
        done = self.t >= self.max_steps
        self.alive = self.alive & ~done
        return self._observe(), reward, truncated, done


@torch.no_grad()
def replay(image: torch.Tensor, actions: torch.Tensor, mdp: str = "cumulative", pipeline: Pipeline | None = None,
           init_params: torch.Tensor | None = None) -> torch.Tensor:
    """Re-render a tuning result: the image after applying ``actions`` ``(T, B, 9)`` to ``image`` ``(B, 3, H, W)``.

    ``"cumulative"``: ``I_T = f(... f(f(I_0, a_1), a_2) ..., a_T)`` (a chain of ``T`` renders, each clamped
    to [0, 1] as in the environment); ``"absolute"``: ``f(image, a_T)``. ``init_params`` ``(B, 9)``:
    the episode's initial parameters (``I_0 = f(image, P_0)``), if not the identity.
    Use it to apply the edits a policy found on a small copy to the full-resolution photo.
    """
    if mdp not in MDPS:
        raise ValueError(f"mdp must be one of {MDPS}, got {mdp!r}")
    if actions.dim() != 3 or actions.shape[1:] != (image.shape[0], N_PARAMS):
        raise ValueError(f"actions must be (T, {image.shape[0]}, {N_PARAMS}), got {tuple(actions.shape)}")
    fn = pipeline or default_pipeline()
    start = image.float()
    if init_params is not None:
        start = fn(start, init_params.float()).clamp(0, 1)
    if mdp == "absolute":
        return fn(image.float(), actions[-1].float()).clamp(0, 1)
    out = start
    for a in actions:
        out = fn(out, a.float()).clamp(0, 1)
    return out


__all__ = ["FinishingEnv", "Observation", "default_pipeline", "replay", "MDPS"]
