"""Lab 2: a tiny stage-wise module selector trained with REINFORCE, the idea behind AdaptiveISP.

The toy problem (:func:`toy_problem`): crops of the embedded training photos, half of them made
dark (times 1/4, i.e. -2 EV). At each of two stages the selector picks one of four fixed modules
(:data:`CANDIDATES`): identity, exposure +1 EV (the helpful one: two of them undo -2 EV exactly),
gamma 1/2 (brightens too, but distorts: a decoy) and half desaturation. The reward is the PSNR of
the final image to the well-exposed crop (capped at 40 dB, in units of 10 dB); no gradient flows
through it. The policy (:class:`StageSelector`) is a softmax over the modules per stage whose
logits are linear in one image feature, the log mean luminance of the stage's input, so that it
can learn "brighten dark images, leave the others alone".

The student writes

* ``choose_modules(logits (B, K), generator) -> (actions (B,) int64, log_probs (B,))``: sample one
  module per image from ``softmax(logits)`` and return its log-probability (differentiable in the
  logits);
* ``policy_gradient_loss(log_probs (B, T), rewards (B,), baseline (B,)) -> ()``: REINFORCE with a
  baseline, ``-mean_b((r_b - baseline_b) * sum_t log p_bt)`` with the advantage detached.

:func:`check_choose_modules` and :func:`check_policy_gradient_loss` test them on fixed tensors
against :func:`reference_log_probs` / :func:`reference_policy_gradient_loss`; :func:`train_selector`
trains with them and :func:`check_learned` asserts the helpful module's probability on dark
images is above 0.8 at both stages (and below 0.2 on well-exposed ones).

Example:
    >>> problem = toy_problem(64, size=16, seed=0)
    >>> problem.inputs.shape, int(problem.dark.sum())
    (torch.Size([64, 3, 16, 16]), 32)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ispbench.data import photos
from ispbench.labs.checks import CheckResult, NotRun, call, compare
from ispbench.ops import modules
from ispbench.ops.color import luminance
from ispbench.tasks.finishing_metrics import psnr

#: The candidate modules of every stage (fixed parameters), in the policy's output order.
CANDIDATES: tuple[str, ...] = ("identity", "exposure +1 EV", "gamma 1/2", "desaturation 1/2")
#: Index of the module that helps on dark images.
HELPFUL = 1
#: Stages of the toy pipeline (two exposures undo the -2 EV of the dark crops).
STAGES = 2
#: How much darker the dark crops are (a factor; 1/4 = -2 EV, undone exactly by two +1 EV stages).
DARK_FACTOR = 0.25
#: Mean-luminance window of the crops kept (so that dark, half-corrected and well-exposed crops
#: have separate features, and a linear policy can tell them apart).
LUMINANCE_WINDOW = (0.3, 0.6)
#: Reward cap in dB (an exact recovery has infinite PSNR).
MAX_PSNR_DB = 40.0

ChooseFn = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def apply_candidates(x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Apply candidate ``actions[b]`` (an index into :data:`CANDIDATES`) to image ``b``.

    Args:
        x: ``(B, 3, H, W)`` in [0, 1].
        actions: ``(B,)`` int64 in ``[0, len(CANDIDATES))``.

    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    if actions.shape != (x.shape[0],) or actions.dtype != torch.int64:
        raise ValueError(f"actions must be (B,) = ({x.shape[0]},) int64, got {tuple(actions.shape)} {actions.dtype}")
    if bool(((actions < 0) | (actions >= len(CANDIDATES))).any()):
        raise ValueError(f"actions must lie in [0, {len(CANDIDATES)}), got {actions.tolist()}")
    b = x.shape[0]
    outs = torch.stack([
        x,
        modules.exposure(x, torch.ones(b, 1)),
        modules.gamma(x, torch.full((b, 1), 0.5)),
        modules.desaturation(x, torch.full((b, 1), 0.5)),
    ])  # (K, B, 3, H, W): all four are cheap at the lab's sizes
    return outs[actions, torch.arange(b)]


def image_feature(x: torch.Tensor) -> torch.Tensor:
    """The selector's input: ``log2(mean luminance) + 2`` per image, ``(B, 3, H, W) -> (B,)``
    (about +0.7 for a well-exposed crop, -1.3 for a dark one, -0.3 after one +1 EV)."""
    return torch.log2(luminance(x).mean(dim=(1, 2, 3)).clamp_min(1e-4)) + 2.0


class StageSelector(torch.nn.Module):
    """Per stage ``t``, logits ``bias_t + weight_t * feature`` over the :data:`CANDIDATES` (``2 T K`` parameters).

    Starts uniform (all zeros). ``forward(feature (B,), stage) -> logits (B, K)``.
    """

    def __init__(self, stages: int = STAGES, n_candidates: int = len(CANDIDATES)) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(stages, n_candidates))
        self.bias = torch.nn.Parameter(torch.zeros(stages, n_candidates))

    @property
    def stages(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, feature: torch.Tensor, stage: int) -> torch.Tensor:
        return self.bias[stage] + self.weight[stage] * feature[:, None]


@dataclass
class SelectorProblem:
    """The toy data: ``inputs``/``references`` ``(N, 3, S, S)`` in [0, 1] and ``dark`` ``(N,)`` bool
    (``inputs = DARK_FACTOR * references`` where dark, else ``references``)."""

    inputs: torch.Tensor
    references: torch.Tensor
    dark: torch.Tensor


def toy_problem(n: int, size: int = 16, seed: int = 0, split: str = "train") -> SelectorProblem:
    """``n`` crops (side ``size``) of the embedded ``split`` photos with mean luminance in
    :data:`LUMINANCE_WINDOW`; every other one darkened by :data:`DARK_FACTOR`.

    Example:
        >>> p = toy_problem(4, size=8, seed=1)
        >>> p.dark.tolist()
        [True, False, True, False]
    """
    if int(n) < 2:
        raise ValueError(f"n must be >= 2 (dark and well-exposed crops), got {n}")
    if int(size) < 4:
        raise ValueError(f"size must be >= 4 pixels, got {size}")
    rng = np.random.default_rng(seed)
    images = [photos.load_photo(name) for name in photos.photo_names(split)]
    crops: list[torch.Tensor] = []
    for _ in range(200 * int(n)):  # the window keeps about half the crops; bounded so it cannot spin
        crop = torch.from_numpy(photos.random_crop(images[int(rng.integers(len(images)))], int(size), rng).transpose(2, 0, 1).copy())
        crop = crop.clamp(0, 1)
        mean = float(luminance(crop[None]).mean())
        if LUMINANCE_WINDOW[0] <= mean <= LUMINANCE_WINDOW[1]:
            crops.append(crop)
            if len(crops) == n:
                break
    else:
        raise RuntimeError(f"toy_problem: found only {len(crops)} crops in the luminance window {LUMINANCE_WINDOW}")
    refs = torch.stack(crops)
    dark = torch.arange(n) % 2 == 0
    inputs = torch.where(dark.view(-1, 1, 1, 1), refs * DARK_FACTOR, refs)
    return SelectorProblem(inputs, refs, dark)


def reward(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``min(PSNR, 40 dB) / 10`` per image, ``(B,)``; no gradient."""
    with torch.no_grad():
        return psnr(out.clamp(0, 1), reference).clamp_max(MAX_PSNR_DB) / 10.0


def reference_choose(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``(B,)`` actions from ``softmax(logits (B, K))`` and return them with their log-probabilities."""
    probs = torch.softmax(logits.detach(), dim=1)
    actions = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return actions, reference_log_probs(logits, actions)


def reference_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[b, actions[b]]``, ``(B, K), (B,) -> (B,)``."""
    return torch.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)


def reference_policy_gradient_loss(log_probs: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """REINFORCE with a baseline: ``-mean_b((r_b - baseline_b) * sum_t log_probs[b, t])``, the advantage detached.

    Args:
        log_probs: ``(B, T)`` log-probabilities of the chosen modules.
        rewards: ``(B,)`` the episode's reward.
        baseline: ``(B,)`` (e.g. the batch mean reward).

    Returns:
        A scalar ``()`` whose gradient ascends the expected reward when minimised.
    """
    advantage = (rewards - baseline).detach()
    return -(advantage * log_probs.sum(dim=1)).mean()


def rollout(policy: StageSelector, x: torch.Tensor, choose: ChooseFn, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the stages with sampled modules: ``(actions (B, T), log_probs (B, T), output (B, 3, H, W))``."""
    actions, log_probs = [], []
    for t in range(policy.stages):
        a, lp = choose(policy(image_feature(x), t), generator)
        x = apply_candidates(x, a)
        actions.append(a)
        log_probs.append(lp)
    return torch.stack(actions, 1), torch.stack(log_probs, 1), x


@torch.no_grad()
def greedy_probabilities(policy: StageSelector, x: torch.Tensor) -> torch.Tensor:
    """Choice probabilities ``(T, B, K)`` along the greedy path (each stage applies its most likely module)."""
    out = []
    for t in range(policy.stages):
        p = torch.softmax(policy(image_feature(x), t), dim=1)
        out.append(p)
        x = apply_candidates(x, p.argmax(1))
    return torch.stack(out)


def probability_rows(policy: StageSelector, problem: SelectorProblem, iteration: int) -> list[dict]:
    """Mean greedy-path choice probabilities per stage, module and image kind (``dark``/``well exposed``)."""
    probs = greedy_probabilities(policy, problem.inputs)
    rows = []
    for kind, mask in (("dark", problem.dark), ("well exposed", ~problem.dark)):
        for t in range(policy.stages):
            for k, name in enumerate(CANDIDATES):
                rows.append({"iteration": iteration, "images": kind, "stage": t + 1, "module": name,
                             "probability": float(probs[t][mask, k].mean())})
    return rows


@dataclass
class SelectorRun:
    """What :func:`train_selector` returns: the ``policy``, ``probabilities`` (long rows ``iteration,
    images, stage, module, probability`` on the held-out problem) and ``rewards`` (``iteration,
    reward_db``: the batch's mean reward in dB)."""

    policy: StageSelector
    probabilities: pd.DataFrame
    rewards: pd.DataFrame


def train_selector(choose: ChooseFn, loss_fn: LossFn, problem: SelectorProblem, held_out: SelectorProblem, *,
                   iterations: int = 300, batch_size: int = 64, lr: float = 0.05, seed: int = 0,
                   log_every: int = 10) -> SelectorRun:
    """Train a :class:`StageSelector` with REINFORCE: sample a batch, roll out, ``loss_fn(log_probs,
    rewards, batch-mean baseline)``, one Adam step.

    Args:
        choose: the sampler (the student's ``choose_modules`` or :func:`reference_choose`).
        loss_fn: the policy-gradient loss (the student's or :func:`reference_policy_gradient_loss`).
        problem: training crops; ``held_out``: crops whose choice probabilities are logged.
        iterations, batch_size, lr: Adam steps, images per step, learning rate.
        seed: seeds the batches and the module sampling.
        log_every: probabilities logged every this many iterations (and at 0 and the end).
    """
    for name, value in (("iterations", iterations), ("batch_size", batch_size), ("log_every", log_every)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    gen = torch.Generator().manual_seed(seed)
    policy = StageSelector()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    prob_rows = probability_rows(policy, held_out, 0)
    reward_rows = []
    n = problem.inputs.shape[0]
    for it in range(1, int(iterations) + 1):
        idx = torch.randint(n, (int(batch_size),), generator=gen)
        _, log_probs, out = rollout(policy, problem.inputs[idx], choose, gen)
        r = reward(out, problem.references[idx])
        loss = loss_fn(log_probs, r, r.mean().expand_as(r))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reward_rows.append({"iteration": it, "reward_db": 10.0 * float(r.mean())})
        if it % int(log_every) == 0 or it == int(iterations):
            prob_rows.extend(probability_rows(policy, held_out, it))
    return SelectorRun(policy, pd.DataFrame(prob_rows), pd.DataFrame(reward_rows))


# -- checks -------------------------------------------------------------------------------------
def check_choose_modules(fn: ChooseFn, *, draws: int = 20000) -> list[CheckResult]:
    """Check a student's ``choose_modules(logits (B, K), generator) -> (actions (B,), log_probs (B,))``.

    Shapes and dtypes, log-probabilities equal to ``log_softmax`` at the chosen actions with the
    gradient ``onehot - softmax`` to the logits, the empirical frequencies of ``draws`` samples
    within 0.02 of ``softmax(logits)``, and the same actions for the same generator seed.
    """
    results: list[CheckResult] = []
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-3.0, 1.0, 1.0, 0.0]], requires_grad=True)
    name = "choose_modules: shapes and dtypes"
    hint = "probs = torch.softmax(logits, 1); actions = torch.multinomial(probs, 1, generator=generator).squeeze(1)"
    try:
        out = call(name, fn, logits, torch.Generator().manual_seed(0), hint=hint)
    except NotRun as err:
        return [err.result]
    if not (isinstance(out, tuple) and len(out) == 2):
        return [CheckResult(name, False, f"expected a tuple (actions, log_probs), got {type(out).__name__}")]
    actions, log_probs = out
    if not (isinstance(actions, torch.Tensor) and actions.shape == (3,) and actions.dtype == torch.int64):
        got = f"{tuple(actions.shape)} {actions.dtype}" if isinstance(actions, torch.Tensor) else type(actions).__name__
        return [CheckResult(name, False, f"expected actions of shape (3,) int64 for logits (3, 4), got {got}. "
                                         "Hint: squeeze the sample dimension of torch.multinomial")]
    if not (isinstance(log_probs, torch.Tensor) and log_probs.shape == (3,) and log_probs.is_floating_point()):
        got = f"{tuple(log_probs.shape)} {log_probs.dtype}" if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
        return [CheckResult(name, False, f"expected log_probs of shape (3,) float for logits (3, 4), got {got}")]
    if bool(((actions < 0) | (actions > 3)).any()):
        return [CheckResult(name, False, f"actions must be module indices in [0, 4), got {actions.tolist()}")]
    results.append(CheckResult(name, True, "actions (3,) int64 in [0, 4), log_probs (3,)"))
    results.append(compare("choose_modules: log-probabilities", log_probs, reference_log_probs(logits, actions),
                           atol=1e-5, rtol=1e-5, inputs="logits [[2, 0, -1, 0.5], [0, 0, 0, 0], [-3, 1, 1, 0]]",
                           hint="log_probs = torch.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1)"))
    name = "choose_modules: gradient to the logits"
    if not log_probs.requires_grad:
        results.append(CheckResult(name, False, "log_probs carries no gradient to the logits; compute it from the "
                                                "logits with log_softmax (not from detached probabilities or under no_grad)"))
    else:
        expected = torch.nn.functional.one_hot(actions, 4).float() - torch.softmax(logits.detach(), 1)
        try:
            (grad,) = torch.autograd.grad(log_probs.sum(), logits, allow_unused=True)
        except RuntimeError as err:
            results.append(CheckResult(name, False, f"backward from log_probs to the logits failed: {err}"))
        else:
            grad = torch.zeros_like(expected) if grad is None else grad
            results.append(compare(name, grad, expected, atol=1e-5, rtol=1e-5, inputs="d sum(log_probs) / d logits",
                                   hint="the gradient of log softmax at the chosen action is onehot - softmax"))
    name = f"choose_modules: sampling frequencies ({draws} draws)"
    row = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).expand(draws, 4)
    try:
        a, _ = call(name, fn, row, torch.Generator().manual_seed(1), hint=hint)
        freq = torch.bincount(a.flatten(), minlength=4).float() / draws
        target = torch.softmax(row[0], 0)
        gap = float((freq - target).abs().max())
        results.append(CheckResult(name, gap < 0.02, f"frequencies {[round(float(f), 3) for f in freq]} vs softmax "
                                                     f"{[round(float(p), 3) for p in target]} (max gap {gap:.3f}, "
                                                     "tolerance 0.02)" + ("" if gap < 0.02 else
                                                     ". Hint: sample from softmax(logits), not argmax or uniform")))
    except NotRun as err:
        results.append(err.result)
    except Exception as err:  # noqa: BLE001
        results.append(CheckResult(name, False, f"could not count the sampled actions: {type(err).__name__}: {err}"))
    name = "choose_modules: uses the generator"
    try:
        a1, _ = call(name, fn, row[:200], torch.Generator().manual_seed(5))
        a2, _ = call(name, fn, row[:200], torch.Generator().manual_seed(5))
        same = isinstance(a1, torch.Tensor) and isinstance(a2, torch.Tensor) and bool(torch.equal(a1, a2))
        results.append(CheckResult(name, same, "same seed, same actions" if same else
                                   "two calls with generators seeded alike gave different actions: pass "
                                   "generator=generator to torch.multinomial (reproducible runs)"))
    except NotRun as err:
        results.append(err.result)
    return results


def check_policy_gradient_loss(fn: LossFn) -> list[CheckResult]:
    """Check a student's ``policy_gradient_loss(log_probs (B, T), rewards (B,), baseline (B,)) -> ()``.

    On fixed tensors: a scalar, its value and its gradient to ``log_probs`` equal to
    :func:`reference_policy_gradient_loss`'s, and no gradient to the rewards or the baseline
    (the advantage is a constant weight).
    """
    log_probs = torch.log(torch.tensor([[0.5, 0.25], [0.2, 0.9], [0.7, 0.6], [0.1, 0.3]])).requires_grad_(True)
    rewards = torch.tensor([3.0, 1.0, 2.5, 0.5], requires_grad=True)
    baseline = torch.full((4,), 1.75, requires_grad=True)
    inputs = "log_probs (4, 2), rewards [3, 1, 2.5, 0.5], baseline 1.75"
    name = "policy_gradient_loss: value"
    try:
        loss = call(name, fn, log_probs, rewards, baseline, hint="loss = -((rewards - baseline).detach() * "
                                                                 "log_probs.sum(1)).mean()")
    except NotRun as err:
        return [err.result]
    expected = reference_policy_gradient_loss(log_probs, rewards, baseline)
    if not isinstance(loss, torch.Tensor) or loss.shape != ():
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        return [CheckResult(name, False, f"expected a scalar tensor of shape (), got {got}: average over the batch")]
    hint = "minimising the loss must raise the log-probability of actions with a positive advantage: " \
           "loss = -mean_b(advantage_b * sum_t log_probs[b, t])"
    if abs(float(loss.detach()) + float(expected.detach())) < 1e-6 and abs(float(expected.detach())) > 1e-6:
        hint = "the sign is flipped: the optimiser minimises, so the loss is minus the expected advantage-weighted log-probability"
    results = [compare(name, loss, expected, atol=1e-6, rtol=1e-5, inputs=inputs, hint=hint)]
    name = "policy_gradient_loss: gradient to log_probs"
    if not loss.requires_grad:
        return results + [CheckResult(name, False, "the loss carries no gradient to log_probs (computed under "
                                                   "no_grad or from detached values?)")]
    try:
        grads = torch.autograd.grad(loss, (log_probs, rewards, baseline), allow_unused=True)
    except RuntimeError as err:
        return results + [CheckResult(name, False, f"backward through the loss failed: {err}")]
    ref = torch.autograd.grad(expected, log_probs)[0]
    got = grads[0] if grads[0] is not None else torch.zeros_like(ref)
    results.append(compare(name, got, ref, atol=1e-6, rtol=1e-5, inputs=inputs,
                           hint="each stage's log-probability gets the weight -advantage / B"))
    leak = [n for n, g in zip(("rewards", "baseline"), grads[1:], strict=True) if g is not None and float(g.abs().max()) > 0]
    results.append(CheckResult("policy_gradient_loss: advantage detached", not leak,
                               "no gradient to the rewards or the baseline" if not leak else
                               f"the loss has a gradient with respect to {' and '.join(leak)}: detach the advantage, "
                               "(rewards - baseline).detach(), so that only the policy's log-probabilities are trained"))
    return results


def check_learned(run: SelectorRun | None, *, threshold: float = 0.8) -> list[CheckResult]:
    """After :func:`train_selector`: on the held-out dark crops the helpful module's greedy-path
    probability exceeds ``threshold`` at every stage, and on well-exposed crops it stays below ``1 - threshold``."""
    name = "training: learned the helpful module"
    if run is None:
        return [CheckResult(name, False, "the selector was not trained: finish exercises 1 and 2 first")]
    last = run.probabilities[run.probabilities.iteration == run.probabilities.iteration.max()]
    helpful = last[last.module == CANDIDATES[HELPFUL]].set_index(["images", "stage"]).probability
    dark = [float(helpful[("dark", t + 1)]) for t in range(run.policy.stages)]
    lit = [float(helpful[("well exposed", t + 1)]) for t in range(run.policy.stages)]
    ok_dark = min(dark) > threshold
    ok_lit = max(lit) < 1 - threshold
    detail = ("" if ok_dark else ". Hint: if it fell instead of rising, the loss's sign is flipped; if it stayed near "
              "0.25, the gradient does not reach the logits; if it rose but not far enough, train longer")
    return [CheckResult(name, ok_dark, f"P({CANDIDATES[HELPFUL]} | dark) per stage {[round(p, 3) for p in dark]}, "
                                       f"expected > {threshold}{detail}"),
            CheckResult("training: leaves well-exposed images alone", ok_lit,
                        f"P({CANDIDATES[HELPFUL]} | well exposed) per stage {[round(p, 3) for p in lit]}, expected < "
                        f"{1 - threshold:.2g}")]


__all__ = ["CANDIDATES", "DARK_FACTOR", "HELPFUL", "LUMINANCE_WINDOW", "MAX_PSNR_DB", "STAGES", "SelectorProblem",
           "SelectorRun", "StageSelector", "apply_candidates", "check_choose_modules", "check_learned",
           "check_policy_gradient_loss", "greedy_probabilities", "image_feature", "probability_rows",
           "reference_choose", "reference_log_probs", "reference_policy_gradient_loss", "reward", "rollout",
           "toy_problem", "train_selector"]
