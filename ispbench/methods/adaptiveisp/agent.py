"""AdaptiveISP agent: states, action sampling, one ISP stage, rewards and penalties.

Everything here is a pure function of tensors so that the trainer (:mod:`.train`), inference
(:mod:`.inference`) and the tests share one definition of the MDP (paper Sec. 3.2-3.3, App. C.2).

MDP, per image:

* state ``s_t``: the image after ``t`` stages, which modules were used, the stage index ``t`` (a plane
  holding ``t``, authors' code, or ``t / T``: ``stage_plane``);
* action: a module index ``a_t`` in ``0..N-1`` (``N = 10``) or, with ``use_stop``, ``N`` = STOP,
  plus that module's parameters;
* reward (eq. 9): ``r = (clip(L(s_t), 0, 1) - clip(L(s_{t+1}), 0, 1)) * 100 - P`` with ``L`` the
  frozen detector's per-image loss and penalties ``P = P_reuse + P_cost + P_over``:

  - reuse: ``1.0`` when the chosen module was already used in this episode (Sec. 3.3, Table 8);
  - cost (eq. 11): ``lambda_c * MODULE_COST_MS[module]`` (Table 4 times, in ms);
  - over-exposure: ``mean(relu(x - 1)^2)`` of the stage output before clipping;
  - the entropy penalty (eq. 10; authors' code ``(1 - progress) * 0.05 * (ln A - H)``) depends on
    the policy's probabilities only, so it is added to the selector loss, not to ``r``.

* ``terminated`` once ``T = 5`` stages ran (or STOP was chosen); ``truncated`` when the mean of
  the output image leaves ``[0.01, 0.9]`` (App. C.2, Fig. 11). ``V(s') <- (1 - term)(1 - trunc) V(s')``.

Example:
    >>> r = detection_reward(torch.tensor([0.8]), torch.tensor([0.5]))   # tensor([30.])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ispbench import ops
from ispbench.ops.color import luminance

from .networks import CONTRAST_STATS, STAGE_PLANES, STATE_SIZE

#: Index of the "skip" entry in executor module indices (stopped sample / stage not run).
SKIP = -1


def _check_images(x: torch.Tensor, name: str = "images") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")


# --------------------------------------------------------------------------- states
def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def image_stats(x: torch.Tensor, contrast: str = "variance") -> torch.Tensor:
    """Mean luminance, contrast and saturation (mean HSV S) per image, (B, 3).

    ``contrast``: ``"variance"`` (authors' code) or ``"std"`` of the luminance (our former choice).
    """
    _check_images(x)
    _check_choice("contrast", contrast, CONTRAST_STATS)
    x = x.clamp(0, 1)
    lum = luminance(x).flatten(1)
    mx = x.amax(1)
    mn = x.amin(1)
    sat = ((mx - mn) / (mx + 1e-6)).flatten(1).mean(1)
    spread = lum.var(1, unbiased=False) if contrast == "variance" else lum.std(1, unbiased=False)
    return torch.stack([lum.mean(1), spread, sat], dim=1)


def downsample(x: torch.Tensor, size: int = STATE_SIZE) -> torch.Tensor:
    """Area down-sample (antialiased) of the clipped image to ``size x size``."""
    _check_images(x)
    x = x.clamp(0, 1)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def policy_state(x: torch.Tensor, used: torch.Tensor, stage: torch.Tensor, T: int, *,
                 stage_plane: str = "index") -> torch.Tensor:
    """Policy input: (B, 3 + N + 1, 64, 64) = image, N "used" planes, one stage plane.

    Args:
        x: (B, 3, H, W) current image.
        used: (B, N) 0/1 "module used" bits.
        stage: (B,) stage index t (0-based).
        T: maximum number of stages.
        stage_plane: ``"index"``: the plane holds ``t`` (authors' code); ``"fraction"``: ``t / T`` (our former
            choice, the shipped embedded policy's).
    """
    _check_choice("stage_plane", stage_plane, STAGE_PLANES)
    small = downsample(x)
    b = small.shape[0]
    if used.ndim != 2 or used.shape[0] != b:
        raise ValueError(f"policy_state: used must be (B, N) with B={b}, got {tuple(used.shape)}")
    t = stage.to(small.dtype) / (T if stage_plane == "fraction" else 1)
    planes = torch.cat([used.to(small.dtype), t.view(b, 1)], dim=1)
    planes = planes.view(b, -1, 1, 1).expand(-1, -1, STATE_SIZE, STATE_SIZE)
    return torch.cat([small, planes], dim=1)


def value_state(x: torch.Tensor, used: torch.Tensor, stage: torch.Tensor, T: int, *,
                stage_plane: str = "index", contrast: str = "variance") -> torch.Tensor:
    """Value input: the policy input plus mean luminance, contrast, saturation planes (B, 3+N+4, 64, 64).

    ``stage_plane`` as :func:`policy_state`, ``contrast`` as :func:`image_stats`.
    """
    base = policy_state(x, used, stage, T, stage_plane=stage_plane)
    stats = image_stats(x, contrast).to(base.dtype)
    return torch.cat([base, stats.view(-1, 3, 1, 1).expand(-1, -1, STATE_SIZE, STATE_SIZE)], dim=1)


# --------------------------------------------------------------------------- actions
#: How epsilon-greedy exploration enters: ``mixed`` (authors' code) or ``replace`` (our former choice).
EPSILON_MODES = ("mixed", "replace")


def _valid_rows(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, A) float 0/1 of the allowed actions (``valid`` None, (A,) or (B, A))."""
    if valid is None:
        return torch.ones_like(logits, dtype=torch.float32)
    return valid.to(logits.device).float().expand(logits.shape[0], -1)


def action_probs(logits: torch.Tensor, *, epsilon: float = 0.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``(1 - epsilon) softmax(logits) + epsilon / |valid|`` on the valid actions (authors' epsilon-greedy), (B, A).

    Differentiable in ``logits``; ``valid`` (A,) or (B, A) bool, default all actions.

    Example:
        >>> p = action_probs(torch.tensor([[0.0, 50.0]]), epsilon=0.1)   # tensor([[0.05, 0.95]])
    """
    allowed = _valid_rows(logits, valid)
    uniform = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)
    return (1.0 - epsilon) * F.softmax(logits.float(), dim=-1) + epsilon * uniform


def action_log_prob(logits: torch.Tensor, actions: torch.Tensor, *, epsilon: float = 0.0,
                    valid: torch.Tensor | None = None, mode: str = "mixed") -> torch.Tensor:
    """``log pi(a|s)`` of the taken actions (B,) for REINFORCE, differentiable in ``logits`` (B, A).

    ``mode="mixed"`` (authors' code): the log of the epsilon-mixed probabilities of :func:`action_probs`
    (the distribution the actions were drawn from); ``"replace"``: ``log_softmax(logits)`` (our former choice,
    which ignores the exploration draw).
    """
    _check_choice("mode", mode, EPSILON_MODES)
    if mode == "mixed":
        p = action_probs(logits, epsilon=epsilon, valid=valid).gather(1, actions.view(-1, 1)).squeeze(1)
        return p.clamp(min=1e-12).log()
    return F.log_softmax(logits, -1).gather(1, actions.view(-1, 1)).squeeze(1)


def sample_actions(
    logits: torch.Tensor,
    *,
    epsilon: float = 0.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
    mode: str = "mixed",
) -> torch.Tensor:
    """Pick one action per row of ``logits`` (B, A) -> LongTensor (B,).

    ``greedy``: argmax (test time). Otherwise epsilon-greedy exploration (0.05 in the authors' code):

    * ``mode="mixed"`` (authors' code): sample from ``(1 - epsilon) softmax(logits) + epsilon / |valid|``
      (:func:`action_probs`; REINFORCE then uses the log of these mixed probabilities, :func:`action_log_prob`);
    * ``mode="replace"`` (our former choice): sample from softmax(logits), then with probability ``epsilon``
      replace the sample by a uniformly random valid action.

    ``valid`` (A,) bool restricts the random actions (disabled modules); a (B, A) bool ``valid``
    restricts them per sample (e.g. :func:`reuse_mask`).
    """
    _check_choice("mode", mode, EPSILON_MODES)
    if greedy:
        return logits.argmax(-1)
    if mode == "mixed":
        probs = action_probs(logits.detach(), epsilon=epsilon, valid=valid)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)
    probs = F.softmax(logits.detach().float(), dim=-1)
    actions = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
    if epsilon > 0 and valid is not None and valid.ndim == 2:  # per-sample allowed actions (mask_reuse)
        explore = torch.rand(actions.shape, generator=generator) < epsilon
        random_actions = torch.multinomial(valid.detach().cpu().float(), 1, generator=generator).squeeze(1)
        return torch.where(explore, random_actions, actions).to(logits.device)
    if epsilon > 0:
        explore = torch.rand(actions.shape, generator=generator) < epsilon
        allowed = torch.arange(logits.shape[-1]) if valid is None else valid.cpu().nonzero(as_tuple=True)[0]
        random_actions = allowed[torch.randint(0, len(allowed), actions.shape, generator=generator)]
        actions = actions.cpu()
        actions = torch.where(explore, random_actions, actions)
    return actions.to(logits.device)


def reuse_mask(used: torch.Tensor, n_actions: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, A) bool: the actions each sample may still pick when re-use is forbidden (``mask_reuse``).

    ``used`` (B, N) bits of the modules already run; actions ``>= N`` (STOP) stay allowed; ``valid``
    (A,) removes globally disabled actions. A row with nothing left keeps its ``valid`` actions
    (never happens with T <= the number of allowed modules). The hard form of the paper's reuse
    penalty ("constrains the policy network picking the same ISP module no more than once").

    Example:
        >>> reuse_mask(torch.tensor([[1., 0.]]), 2).tolist()
        [[False, True]]
    """
    b, n = used.shape
    allowed = torch.ones(b, n_actions, dtype=torch.bool, device=used.device)
    allowed[:, :n] = ~used.bool()
    base = torch.ones(n_actions, dtype=torch.bool, device=used.device) if valid is None else valid.to(used.device).bool()
    allowed = allowed & base
    empty = ~allowed.any(1, keepdim=True)
    return torch.where(empty, base.expand(b, -1), allowed)


def to_module_index(actions: torch.Tensor, n_modules: int, stopped: torch.Tensor | None = None) -> torch.Tensor:
    """Executor indices: the action, or :data:`SKIP` (-1) for STOP (``action == N``) and stopped samples."""
    idx = torch.where(actions >= n_modules, torch.full_like(actions, SKIP), actions)
    if stopped is not None:
        idx = torch.where(stopped, torch.full_like(idx, SKIP), idx)
    return idx


def apply_modules(
    x: torch.Tensor,
    module_index: torch.Tensor,
    params: dict[str, torch.Tensor],
    module_names: list[str] | None = None,
    *,
    clamp: bool = False,
) -> torch.Tensor:
    """Run, per sample, the chosen module with its parameters; ``-1`` leaves the sample unchanged.

    Delegates to :func:`ispbench.ops.apply_stage`: only the samples that chose a module run it (the
    authors' code runs all ten and keeps one). Differentiable w.r.t. ``x`` and ``params``.

    Args:
        x: (B, 3, H, W) images.
        module_index: LongTensor (B,), index into ``module_names`` (= :data:`ispbench.ops.MODULE_NAMES`) or -1.
        params: ``{name: (B, n_params)}`` parameters in each module's range (only the rows of the
            samples that chose ``name`` are used).
        clamp: clip module outputs to [0, 1]; ``False`` (the agent's default, as the authors'
            exposure) keeps values above 1 so that the over-exposure penalty sees them.
    """
    _check_images(x)
    if module_names is not None and list(module_names) != list(ops.MODULE_NAMES):
        raise ValueError(f"apply_modules: module_names must equal ispbench.ops.MODULE_NAMES, got {module_names}")
    if module_index.shape != (x.shape[0],):
        raise ValueError(f"apply_modules: module_index must be (B,)=({x.shape[0]},), got {tuple(module_index.shape)}")
    return ops.apply_stage(x, module_index, params, clamp=clamp)


# --------------------------------------------------------------------------- rewards, penalties
def detection_reward(
    loss_in: torch.Tensor, loss_out: torch.Tensor, scale: float = 100.0, loss_clip: float = 1.0
) -> torch.Tensor:
    """``(clip(L_in, 0, c) - clip(L_out, 0, c)) * scale / c`` (eq. 4 with the authors' clipping, x100).

    ``c = loss_clip = 1`` is the authors' form (their YOLOv3 loss lies mostly in [0, 1]). An
    ultralytics v8-style loss is of order 1-10 (see :mod:`ispbench.tasks.detector`), so the
    trainer lets ``c`` follow the detector; dividing by ``c`` keeps the reward range 0-100.
    """
    c = float(loss_clip)
    return (loss_in.clamp(0, c) - loss_out.clamp(0, c)) * (scale / c)


def reuse_penalty(used: torch.Tensor, module_index: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight`` where the chosen module (B,) was already used ((B, N) bits); 0 for -1 (skip/STOP)."""
    valid = module_index >= 0
    picked = used.gather(1, module_index.clamp(min=0).view(-1, 1)).squeeze(1).to(torch.float32)
    return torch.where(valid, picked * weight, torch.zeros_like(picked))


def module_costs(module_names: list[str] | None = None) -> torch.Tensor:
    """Run-time cost in ms of each module (paper Table 4, :data:`ispbench.ops.MODULE_COST_MS`), (N,)."""
    names = list(module_names or ops.MODULE_NAMES)
    return torch.tensor([float(ops.MODULE_COST_MS[n]) for n in names])


def cost_penalty(module_index: torch.Tensor, lambda_c: float, costs_ms: torch.Tensor) -> torch.Tensor:
    """``lambda_c * cost_ms[module]`` (eq. 11); 0 for -1 (skip/STOP)."""
    valid = module_index >= 0
    c = costs_ms.to(torch.float32)[module_index.clamp(min=0)]
    return torch.where(valid, lambda_c * c, torch.zeros_like(c))


def overexposure_penalty(x: torch.Tensor) -> torch.Tensor:
    """``mean(relu(x - 1)^2)`` per image, (B, 3, H, W) -> (B,)."""
    return F.relu(x - 1).pow(2).flatten(1).mean(1)


def entropy_penalty(
    logits: torch.Tensor, progress: float, coef: float = 0.05, n_actions: int | None = None
) -> torch.Tensor:
    """``(1 - progress) * coef * (ln A - H(softmax(logits)))`` per sample (eq. 10, authors' form), (B,).

    The coefficient decays linearly from ``coef`` at the start of training to 0 at the end.
    ``A`` = ``n_actions`` (the actions the policy may pick), default ``logits.shape[-1]``.
    """
    logp = F.log_softmax(logits, dim=-1)
    h = -(logp.exp() * logp).sum(-1)
    a = logits.shape[-1] if n_actions is None else int(n_actions)
    return (1.0 - float(progress)) * coef * (math.log(a) - h)


def is_truncated(x: torch.Tensor, low: float = 0.01, high: float = 0.9) -> torch.Tensor:
    """True where the image mean leaves ``[low, high]`` (App. C.2, eq. 24), (B,) bool."""
    m = x.flatten(1).mean(1)
    return (m < low) | (m > high)


def bootstrap_mask(terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """``(1 - terminated)(1 - truncated)`` as float (B,): the factor on ``V(s')``."""
    return (~terminated.bool() & ~truncated.bool()).to(torch.float32)


@dataclass
class Penalties:
    """Per-sample penalties of one stage (B,) each; ``total`` is subtracted from the reward."""

    reuse: torch.Tensor
    cost: torch.Tensor
    overexposure: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.reuse + self.cost + self.overexposure


def stage_penalties(
    x_out: torch.Tensor,
    used: torch.Tensor,
    module_index: torch.Tensor,
    *,
    lambda_c: float,
    costs_ms: torch.Tensor,
    reuse_weight: float = 1.0,
    overexposure_weight: float = 1.0,
) -> Penalties:
    """All reward penalties of a stage; ``reuse_weight=0`` is the Table 8 ablation."""
    return Penalties(
        reuse=reuse_penalty(used, module_index, reuse_weight),
        cost=cost_penalty(module_index, lambda_c, costs_ms),
        overexposure=overexposure_weight * overexposure_penalty(x_out),
    )


def mark_used(used: torch.Tensor, module_index: torch.Tensor) -> torch.Tensor:
    """Set the "used" bit of the chosen module (no change for -1), returns a new (B, N) tensor."""
    out = used.clone()
    rows = (module_index >= 0).nonzero(as_tuple=True)[0]
    out[rows, module_index[rows]] = 1
    return out
