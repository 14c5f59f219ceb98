"""Lab 4: GRPO, IRPO's post-training algorithm, on a tiny stochastic denoiser.

IRPO (:mod:`ispbench.methods.irpo.grpo`) restores each input ``G`` times with sampled actions,
scores every restoration, and pushes up the log-probability of the samples that scored above their
group's mean. The student writes the two pieces that make this GRPO:

* ``group_advantages(rewards (B*G,), group_size) -> (B*G,)``: ``(r - group mean) / (group std + 1e-8)``
  within each contiguous group of ``group_size`` (``torch.std``, i.e. with Bessel's correction, as
  the reference :func:`ispbench.methods.irpo.grpo.group_advantages`);
* ``ppo_clip_loss(log_prob, old_log_prob, advantages, clip_range) -> ()``: ``mean(max(-A ratio,
  -A clamp(ratio, 1 - eps, 1 + eps)))`` with ``ratio = exp(log_prob - old_log_prob)`` and the old
  log-probabilities detached (:func:`ispbench.methods.irpo.grpo.ppo_clip_loss`).

:func:`check_group_advantages` and :func:`check_ppo_clip_loss` compare them with the package's
reference functions on fixed tensors (values and gradients). :class:`TinyDenoiser` is the
restoration network: a two-layer CNN whose Beta head picks, per image, how much of a fixed Gaussian
blur to mix in (``out = x + s (blur(x) - x)``, ``s ~ Beta``); its deterministic path uses the Beta's
mean. :func:`train_grpo` post-trains it on embedded noisy crops with the student's functions and
the reward PSNR (dB); :func:`check_improved` asserts the test PSNR rose.

Example:
    >>> model = TinyDenoiser()
    >>> out, log_prob = model(torch.rand(4, 3, 16, 16), stochastic=True)
    >>> out.shape, log_prob.shape
    (torch.Size([4, 3, 16, 16]), torch.Size([4]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ispbench.data.restoration import RestorationSet
from ispbench.labs.checks import CheckResult, NotRun, call, compare
from ispbench.methods.irpo.grpo import group_advantages as reference_group_advantages
from ispbench.methods.irpo.grpo import ppo_clip_loss as reference_ppo_clip_loss
from ispbench.tasks.finishing_metrics import psnr

#: The degradations of the lab: IRPO's three Gaussian-noise levels (sigma 15, 25, 50 of 255).
KINDS: tuple[str, ...] = ("denoise_15", "denoise_25", "denoise_50")
#: Gaussian blur the denoiser mixes in: 5 x 5 taps, sigma 1.2 px.
BLUR_SIZE, BLUR_SIGMA = 5, 1.2

AdvantageFn = Callable[[torch.Tensor, int], torch.Tensor]
PPOLossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).expand(3, 1, size, size).clone()


class TinyDenoiser(nn.Module):
    """A tiny restoration network with a stochastic action, the shape of IRPO's AdaIR in miniature.

    ``features``: conv 3 -> ``width`` -> ``width`` (3 x 3, ReLU), globally averaged; ``head``: a linear
    layer to the two Beta parameters ``alpha, beta = 1 + softplus(.)`` of the per-image strength ``s``.
    Restoration: ``out = x + s * (gaussian_blur(x) - x)``. The head also reads :meth:`noise_feature`, a crude noise estimate.
    It starts weak (Beta mean about 0.1), so
    post-training has something to find.

    ``forward(x (B, 3, H, W), stochastic=False, actions=None) -> (out (B, 3, H, W), log_prob (B,) or None)``:
    deterministic (``s`` = the Beta's mean, ``log_prob`` None), sampled (``stochastic=True``; the sampled
    ``s`` is kept in ``last_actions``), or replayed (``actions (B,)``: the log-probability of those ``s``
    under the current head, IRPO's ``updates_per_group > 1``).
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width + 1, 2)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.weight[:, -1] = 0.0
            # alpha 1.1, beta 10: strength about 0.1 at the start (a weak denoiser), still some exploration
            self.head.bias.copy_(torch.tensor([-2.25, 9.0]))
        self.register_buffer("kernel", _gaussian_kernel(), persistent=False)
        self.last_actions: torch.Tensor | None = None

    def noise_feature(self, x: torch.Tensor) -> torch.Tensor:
        """``log10`` of the mean squared high-pass residual ``x - blur(x)``, ``(B,)``: a crude noise level
        (about -2.05 at sigma 15, -1.5 at sigma 50 on 32 px embedded crops) the head reads, rescaled."""
        return torch.log10((x - self.blur(x)).pow(2).mean(dim=(1, 2, 3)) + 1e-8)

    def distribution(self, x: torch.Tensor) -> torch.distributions.Beta:
        h = torch.cat([self.features(x).mean(dim=(2, 3)), 4.0 * (self.noise_feature(x)[:, None] + 1.8)], dim=1)
        ab = 1.0 + F.softplus(self.head(h))
        return torch.distributions.Beta(ab[:, 0], ab[:, 1])

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel.shape[-1] // 2
        return F.conv2d(F.pad(x, (pad,) * 4, mode="replicate"), self.kernel, groups=3)

    def forward(self, x: torch.Tensor, stochastic: bool = False, actions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        dist = self.distribution(x)
        if actions is not None:
            s, log_prob = actions, dist.log_prob(actions.clamp(1e-6, 1 - 1e-6))
        elif stochastic:
            s = dist.sample()
            log_prob = dist.log_prob(s.clamp(1e-6, 1 - 1e-6))
            self.last_actions = s
        else:
            s, log_prob = dist.mean, None
        out = x + s.view(-1, 1, 1, 1) * (self.blur(x) - x)
        return out, log_prob


def restoration_data(split: str, crops_per_photo: int, size: int, seed: int = 0) -> RestorationSet:
    """Embedded noisy/clean crops of ``split`` photos at the three noise levels (:data:`KINDS`)."""
    return RestorationSet(split, kinds=KINDS, crops_per_photo=crops_per_photo, size=size, seed=seed)


@torch.no_grad()
def evaluate(model: TinyDenoiser | None, data: RestorationSet) -> pd.DataFrame:
    """Mean PSNR (dB) per noise level and overall of the deterministic path (``model=None``: the noisy input)."""
    out = data.degraded if model is None else model(data.degraded)[0]
    values = psnr(out.clamp(0, 1), data.clean)
    frame = pd.DataFrame({"kind": data.kind, "PSNR": values.numpy()})
    means = frame.groupby("kind", sort=False).PSNR.mean()
    means["all"] = float(values.mean())
    return means.rename("PSNR").to_frame()


@torch.no_grad()
def strengths(model: TinyDenoiser, data: RestorationSet) -> pd.Series:
    """Mean deterministic blur strength (the Beta's mean) per noise level: what the head learned to read."""
    s = model.distribution(data.degraded).mean
    return pd.Series(s.numpy(), index=data.kind).groupby(level=0, sort=False).mean().rename("strength")


@dataclass
class GRPORun:
    """What :func:`train_grpo` returns: the trained ``model`` and ``history`` rows ``iteration,
    reward_db`` (mean reward of the iteration's samples), ``reward_std_db`` (mean within-group
    spread), ``strength`` (mean sampled ``s``), ``test_psnr`` (every ``eval_every``, else NaN)."""

    model: TinyDenoiser
    history: pd.DataFrame


def train_grpo(advantages_fn: AdvantageFn, loss_fn: PPOLossFn, train: RestorationSet, test: RestorationSet, *,
               iterations: int = 200, batch_size: int = 4, group_size: int = 8, updates_per_group: int = 2,
               clip_range: float = 0.2, lr: float = 0.01, seed: int = 0, eval_every: int = 20) -> GRPORun:
    """GRPO post-training of a fresh :class:`TinyDenoiser` (seeded) with the given advantage and loss functions.

    Each iteration: ``batch_size`` noisy crops, each repeated ``group_size`` times; sample strengths and
    restore; rewards = PSNR to the clean crop (dB, no gradient); ``advantages_fn(rewards, group_size)``;
    then ``updates_per_group`` Adam steps (learning rate ``lr`` with cosine decay) on ``loss_fn(log_prob, old_log_prob, advantages, clip_range)``,
    replaying the same sampled strengths (from the second step on the ratio differs from 1 and the clip acts).
    """
    for name, value, low in (("iterations", iterations, 1), ("batch_size", batch_size, 1), ("group_size", group_size, 2),
                             ("updates_per_group", updates_per_group, 1), ("eval_every", eval_every, 1)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    torch.manual_seed(seed)
    model = TinyDenoiser()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # cosine decay to 0, as IRPO's trainer: normalised advantages keep the step size up even when the
    # group's rewards barely differ, so a constant rate drifts once the strength has settled
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / iterations, 1.0))))
    gen = torch.Generator().manual_seed(seed)
    rows = [{"iteration": 0, "reward_db": float("nan"), "reward_std_db": float("nan"), "strength": float("nan"),
             "test_psnr": float(evaluate(model, test).loc["all", "PSNR"])}]
    for it in range(1, int(iterations) + 1):
        idx = torch.randint(len(train), (int(batch_size),), generator=gen)
        x = train.degraded[idx].repeat_interleave(group_size, 0)
        clean = train.clean[idx].repeat_interleave(group_size, 0)
        out, log_prob = model(x, stochastic=True)
        actions = model.last_actions
        with torch.no_grad():
            rewards = psnr(out.clamp(0, 1), clean)
        advantages = advantages_fn(rewards, group_size)
        old_log_prob = log_prob.detach()
        for update in range(int(updates_per_group)):
            if update:
                _, log_prob = model(x, actions=actions)
            loss = loss_fn(log_prob, old_log_prob, advantages, clip_range)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        schedule.step()
        row = {"iteration": it, "reward_db": float(rewards.mean()),
               "reward_std_db": float(rewards.view(-1, group_size).std(1).mean()),
               "strength": float(actions.mean()), "test_psnr": float("nan")}
        if it % int(eval_every) == 0 or it == int(iterations):
            row["test_psnr"] = float(evaluate(model, test).loc["all", "PSNR"])
        rows.append(row)
    return GRPORun(model.eval(), pd.DataFrame(rows))


# -- checks -------------------------------------------------------------------------------------
def check_group_advantages(fn: AdvantageFn) -> list[CheckResult]:
    """Check a student's ``group_advantages(rewards (B*G,), group_size) -> (B*G,)`` against the package's.

    Two groups of four (one with distinct rewards, one constant: its advantages must be 0, not NaN),
    and three groups of two; shape, values to 1e-5.
    """
    cases = [(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.5, 0.5, 0.5, 0.5]), 4, "rewards [1, 2, 3, 6 | 0.5 x 4], group_size 4"),
             (torch.tensor([20.0, 22.0, 25.0, 24.0, -1.0, 1.0]), 2, "rewards [20, 22 | 25, 24 | -1, 1], group_size 2")]
    results = []
    for rewards, g, words in cases:
        name = f"group_advantages: {words}"
        try:
            got = call(name, fn, rewards.clone(), g, hint="r = rewards.view(-1, group_size); normalise along dim 1; "
                                                          "flatten back")
        except NotRun as err:
            results.append(err.result)
            continue
        expected = reference_group_advantages(rewards, g)
        hint = ("per group: (r - mean) / (std + 1e-8) with torch.std (unbiased, as the reference); a constant "
                "group gives 0, not NaN: add the 1e-8 to the std")
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
            pop = (rewards.view(-1, g) - rewards.view(-1, g).mean(1, keepdim=True)) / (
                rewards.view(-1, g).std(1, unbiased=False, keepdim=True) + 1e-8)
            if torch.allclose(got, pop.flatten(), atol=1e-5) and not torch.allclose(got, expected, atol=1e-5):
                hint = "you divided by the population std (unbiased=False); the reference uses torch.std's default"
        results.append(compare(name, got, expected, atol=1e-5, rtol=1e-5, inputs=words, hint=hint))
    return results


def check_ppo_clip_loss(fn: PPOLossFn) -> list[CheckResult]:
    """Check a student's ``ppo_clip_loss(log_prob, old_log_prob, advantages, clip_range) -> ()``.

    On six samples whose ratios lie inside and outside ``[0.8, 1.2]`` with advantages of both signs:
    a scalar, the value and the gradient to ``log_prob`` equal to the reference's (zero where the
    clip is active), and no gradient to ``old_log_prob``; also the ratio-1 case, where the loss is
    ``-mean(A)`` (IRPO's single update per group).
    """
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5, 0.2, 0.8]))
    ratio = torch.tensor([1.1, 1.5, 0.6, 0.9, 1.3, 0.7])
    adv = torch.tensor([1.0, 1.0, -1.0, -0.5, -2.0, 2.0])
    words = "ratios [1.1, 1.5, 0.6, 0.9, 1.3, 0.7], advantages [1, 1, -1, -0.5, -2, 2], clip 0.2"
    log_prob = (old + torch.log(ratio)).requires_grad_(True)
    old_rg = old.clone().requires_grad_(True)
    name = "ppo_clip_loss: value"
    try:
        loss = call(name, fn, log_prob, old_rg, adv, 0.2,
                    hint="ratio = exp(log_prob - old_log_prob.detach()); take the max of -A ratio and -A clamp(ratio)")
    except NotRun as err:
        return [err.result]
    expected = reference_ppo_clip_loss(log_prob, old_rg, adv, 0.2)
    if not isinstance(loss, torch.Tensor) or loss.shape != ():
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        return [CheckResult(name, False, f"expected a scalar tensor of shape (), got {got}: average over the samples")]
    results = [compare(name, loss, expected, atol=1e-6, rtol=1e-5, inputs=words,
                       hint="the pessimistic bound: per sample max(-A ratio, -A clamp(ratio, 1 - eps, 1 + eps)), "
                            "then the mean; min(A ratio, ...) with the sign in front is the same")]
    name = "ppo_clip_loss: gradient to log_prob (zero where clipped)"
    if not loss.requires_grad:
        return results + [CheckResult(name, False, "the loss carries no gradient to log_prob")]
    try:
        grads = torch.autograd.grad(loss, (log_prob, old_rg), allow_unused=True)
    except RuntimeError as err:
        return results + [CheckResult(name, False, f"backward through the loss failed: {err}")]
    ref = torch.autograd.grad(reference_ppo_clip_loss(log_prob, old_rg, adv, 0.2), log_prob)[0]
    got = grads[0] if grads[0] is not None else torch.zeros_like(ref)
    results.append(compare(name, got, ref, atol=1e-6, rtol=1e-5, inputs=words,
                           hint="samples 2, 3 and 5 are clipped (ratio outside [0.8, 1.2] on the side the advantage "
                                "pushes to): their gradient is 0; the others get -A ratio / 6"))
    leak = grads[1] is not None and float(grads[1].abs().max()) > 0
    results.append(CheckResult("ppo_clip_loss: old log-probabilities detached", not leak,
                               "no gradient to old_log_prob" if not leak else
                               "the loss has a gradient with respect to old_log_prob: detach it (it is the "
                               "sampling policy, a constant)"))
    name = "ppo_clip_loss: ratio 1 is the plain policy gradient"
    try:
        lp = old.clone().requires_grad_(True)
        one = call(name, fn, lp, old.clone(), adv, 0.2)
        results.append(compare(name, one, -adv.mean(), atol=1e-6, rtol=1e-5, inputs="log_prob == old_log_prob",
                               hint="at ratio 1 the clip is inactive and the loss is -mean(A)"))
    except NotRun as err:
        results.append(err.result)
    return results


def check_improved(before: float, after: float | None, *, margin_db: float = 0.5) -> list[CheckResult]:
    """GRPO raised the deterministic test PSNR by more than ``margin_db`` dB."""
    name = "GRPO: test PSNR improved"
    if after is None:
        return [CheckResult(name, False, "GRPO did not run: finish exercises 1 and 2 first")]
    ok = after - before > margin_db
    return [CheckResult(name, ok, f"{before:.2f} dB -> {after:.2f} dB (expected a gain above {margin_db} dB)" +
                        ("" if ok else ". Hint: a flipped advantage sign makes GRPO push the strength the wrong way"))]


__all__ = ["BLUR_SIGMA", "BLUR_SIZE", "GRPORun", "KINDS", "TinyDenoiser", "check_group_advantages", "check_improved",
           "check_ppo_clip_loss", "evaluate", "reference_group_advantages", "reference_ppo_clip_loss",
           "restoration_data", "strengths", "train_grpo"]
