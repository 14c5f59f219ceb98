"""IRPO's GRPO trainer: the policy gradient must raise the reward on a toy problem, the control must
learn by L1, resume must be exact, and the helpers must compute what the authors' code computes."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from ispbench.methods.irpo import grpo
from ispbench.methods.irpo.network import AdaIR, AdaIRConfig
from ispbench.methods.irpo.selection import scaled_clamp, select_samples

from .test_pretrain import NoisyStream, smooth_images

TINY = AdaIRConfig(dim=8)


@dataclass
class ToySet:
    degraded: torch.Tensor
    clean: torch.Tensor
    photo: list
    kind: list
    task: list
    crop: list

    def __len__(self) -> int:
        return len(self.clean)


def toy_set(n: int, seed: int, *, noisy: bool = True) -> ToySet:
    degraded, clean = NoisyStream(seed).batch(n)
    if not noisy:
        degraded = clean.clone()
    return ToySet(degraded, clean, [f"p{i % 3}" for i in range(n)], ["denoise_25"] * n, ["denoise"] * n, list(range(n)))


def tiny_model(seed: int = 0) -> AdaIR:
    torch.manual_seed(seed)
    return AdaIR(TINY)


def args(tmp_path, **kw) -> grpo.Args:
    base = dict(rewards="general", perceptual="gmsd", fraction=1.0, iterations=40, lr=1e-2, warmup_fraction=0.0,
                group_size=4, batch_size=2, eval_every=1000, log_every=10, checkpoint_every=20, out_dir=str(tmp_path / "run"),
                progress_bar=False)
    return grpo.Args(**{**base, **kw})


def mean_skip_gain(model: AdaIR, x: torch.Tensor) -> float:
    """Mean sampled fusion gain g2 of the three modules (what the toy policy must learn to lower)."""
    with torch.no_grad():
        model(x, stochastic=True)
    return float(model.last_actions[:, :, 3].mean())


@pytest.mark.usefixtures("one_thread")
def test_policy_gradient_raises_the_reward(tmp_path):
    # identity task (degraded == clean): an untrained network's residual adds error, and smaller sampled gains
    # shrink it, so the reward rises only if the heads follow the group-normalised policy gradient. The L1 terms
    # are off: the policy gradient is the only learning signal.
    pool, val = toy_set(8, 0, noisy=False), toy_set(4, 1, noisy=False)
    model = tiny_model()
    with torch.no_grad():  # a residual large enough, and skip features strong enough, for the sampled gains to matter
        model.output.weight.mul_(5.0)
        for module in model.frequency_modules():
            module.gain_skip.mul_(6.0)
    torch.manual_seed(5)
    before = mean_skip_gain(model, pool.degraded)
    result = grpo.train(args(tmp_path, trainable="policy", lambda_sup=0.0, lambda_consistency=0.0, iterations=60, lr=3e-2),
                        model=model, pool=pool, val=val)
    rewards = [float(r["reward_total"]) for r in result["metrics"] if r.get("reward_total") not in (None, "")]
    torch.manual_seed(5)
    after = mean_skip_gain(result["model"], pool.degraded)
    # measured: reward 0.358 -> 0.438 over 60 iterations, mean sampled g2 0.51 -> 0.36
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.04, rewards
    assert after < before - 0.08, (before, after)


@pytest.mark.usefixtures("one_thread")
def test_supervised_control_learns(tmp_path):
    pool, val = toy_set(8, 0), toy_set(4, 1)
    result = grpo.train(args(tmp_path, objective="l1", trainable="all", lr=3e-3, iterations=60, eval_every=60),
                        model=tiny_model(), pool=pool, val=val)
    first, last = result["metrics"][0], result["metrics"][-1]
    assert first["iteration"] == 0 and float(last["val_psnr"]) > float(first["val_psnr"]) + 1.0, (first, last)


@pytest.mark.usefixtures("one_thread")
def test_resume_is_exact_with_replayed_updates(tmp_path):
    kw = dict(iterations=6, updates_per_group=2, log_every=2, checkpoint_every=2, rewards="general,restoration")
    a = grpo.train(args(tmp_path / "a", **kw), model=tiny_model(), pool=toy_set(6, 0), val=toy_set(2, 1))
    grpo.train(args(tmp_path / "b", stop_after=3, **kw), model=tiny_model(), pool=toy_set(6, 0), val=toy_set(2, 1))
    b = grpo.train(args(tmp_path / "b", **kw), model=tiny_model(), pool=toy_set(6, 0), val=toy_set(2, 1))
    for (name, x), y in zip(a["model"].state_dict().items(), b["model"].state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-7), name

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]

    assert strip(a["metrics"]) == strip(b["metrics"])


def test_group_advantages_and_ppo_clip():
    adv = grpo.group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]), 4)
    assert torch.allclose(adv[:4].mean(), torch.tensor(0.0)) and torch.allclose(adv[:4].std(), torch.tensor(1.0), atol=1e-4)
    assert torch.equal(adv[4:], torch.zeros(4))  # a group of equal rewards teaches nothing
    lp = torch.zeros(2, requires_grad=True)
    loss = grpo.ppo_clip_loss(lp, lp.detach(), torch.tensor([1.0, -1.0]), 0.2)
    loss.backward()
    # ratio 1: the plain policy gradient -A / n
    assert loss.item() == pytest.approx(0.0) and lp.grad.tolist() == [-0.5, 0.5]
    far = torch.tensor([1.0, 1.0], requires_grad=True)  # ratio e > 1 + eps: the positive-advantage term is clipped
    grpo.ppo_clip_loss(far, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2).backward()
    assert far.grad.tolist() == [0.0, 0.0]


def test_selection_keeps_the_worst_per_kind():
    scores = pd.DataFrame({"kind": ["a"] * 10 + ["b"] * 10, "psnr": list(range(10)) + [5.0] * 10,
                           "ssim": [0.5] * 10 + [0.9 - 0.01 * i for i in range(10)]})
    worst = select_samples(scores, fraction=0.3, clamp=(1, 100))
    assert worst == [0, 1, 2, 17, 18, 19]  # kind b ties on PSNR: lowest SSIM first
    rnd = select_samples(scores, fraction=0.3, strategy="random", seed=0, clamp=(1, 100))
    assert len(rnd) == 6 and sum(i < 10 for i in rnd) == 3
    assert select_samples(scores, fraction=0.1, clamp=(2, 100)) == [0, 1, 18, 19]  # the lower clamp binds
    assert scaled_clamp(80_000) == (100, 5000) and scaled_clamp(1000) == (1, 63)
    with pytest.raises(ValueError, match="fraction"):
        select_samples(scores, fraction=0.0)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="rewards"):
        grpo.parse_rewards("general,aesthetic")
    with pytest.raises(ValueError, match="objective"):
        grpo.train(args(tmp_path, objective="dpo"), model=tiny_model(), pool=toy_set(2, 0), val=toy_set(2, 1))
    with pytest.raises(ValueError, match="group_size"):
        grpo.train(args(tmp_path, group_size=1), model=tiny_model(), pool=toy_set(2, 0), val=toy_set(2, 1))


def test_smooth_images_fixture_is_smooth():
    img = smooth_images(__import__("numpy").random.default_rng(0), 1)
    assert img.shape == (1, 3, 32, 32) and float((img[..., 1:] - img[..., :-1]).abs().mean()) < 0.05


@pytest.mark.usefixtures("one_thread")
def test_the_policy_gradient_alone_never_changes_the_test_time_path(tmp_path):
    # the Beta heads are not on the deterministic path and the log-probability reaches no other trainable layer:
    # without the L1 and consistency terms GRPO leaves the test-time restoration exactly as it was (weight decay
    # off: AdamW would otherwise shrink the shared layers, whose gradients are then zero, not absent)
    pool, val = toy_set(4, 0), toy_set(2, 1)
    model = tiny_model()
    x = val.degraded
    with torch.no_grad():
        before = model(x).clone()
    result = grpo.train(args(tmp_path, lambda_sup=0.0, lambda_consistency=0.0, weight_decay=0.0, iterations=6, lr=1e-2), model=model, pool=pool, val=val)
    with torch.no_grad():
        assert torch.equal(result["model"](x), before)
    heads = [p for m in result["model"].frequency_modules() for p in m.policy_fuse.parameters()]
    assert any(not torch.equal(p, q) for p, q in zip(heads, [p for m in tiny_model().frequency_modules()
                                                               for p in m.policy_fuse.parameters()], strict=True))
