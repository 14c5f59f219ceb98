"""Learning tests of the AdaptiveISP trainer on the toy problem of ``tests/toy_detection.py``.

Dark images ``s * P`` and a toy "detector" whose loss is zero only after a linear brightening: Exposure
is the one module that solves it. The trainer runs unchanged (``train(Args)``); only its
``train_dataset`` and ``build_detector`` are monkeypatched.

* ``test_policy_learns_to_pick_exposure``: a 60-iteration run (32 px, one stage, pool 16, batch 8, the CPU
  recipe's options) must pick Exposure for most states (uniform: 1/6 of the six allowed modules), raise
  the reward from about 5 to over 50 and cut the toy loss of the chosen stage to under a third of the
  input's. Gamma, Tone and Contrast are disabled: they brighten a dark image too (best per-image losses
  0.10, 0.33 and 0.6 of the input's) and would make the winner a matter of degree.
* ``test_one_update_moves_the_exposure_head_the_right_way``: with Exposure the only allowed module, one
  update must raise every image's Exposure EV and lower the toy loss of the exposed images, for both
  parameter objectives (``reward`` and the paper's ``q``); without the optimiser step nothing moves.

Checked by hand against mutations of ``train.py`` (a mutated copy loaded in place of the module): the
``policy_opt.step()`` line deleted fails both tests above; the parameter loss's sign flipped
(``param_loss = q.mean()`` / ``reward.mean()``) fails both; the selector loss's sign flipped
(``selector_loss = (advantage * logp).mean() + ...``) fails the first.
"""

from __future__ import annotations

import pytest
import torch
import toy_detection

from ispbench import ops
from ispbench.methods.adaptiveisp import agent
from ispbench.methods.adaptiveisp import train as trainer
from ispbench.training.config import from_overrides

#: The CPU recipe's options where they differ from the authors' defaults (robust on a short run).
CPU_OPTIONS = dict(mask_reuse=True, advantage_norm=True, param_objective="reward", lr_decay=False, gamma=0.99, grad_clip=1.0,
                   epsilon_mode="replace", stage_plane="fraction", contrast_stat="std")
#: Modules that brighten a dark image too (see the module docstring), and Denoise (slow).
OTHER_BRIGHTENERS = "denoise,gamma,tone,contrast"
ALLOWED = [m for m in ops.MODULE_NAMES if m not in OTHER_BRIGHTENERS.split(",")]


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(tmp_path, **kw) -> trainer.Args:
    base = dict(imgsz=toy_detection.SIZE, T=1, batch_size=8, pool_size=16, iterations=60, param_warmup=25, lr=1e-3,
                selector_lr=3e-4, param_heads="per_module", entropy_coef=0.05, disabled_modules=OTHER_BRIGHTENERS,
                log_every=10, checkpoint_every=10**6, final_eval_images=0, progress_bar=False, seed=0,
                out_dir=str(tmp_path / "run"), **CPU_OPTIONS)
    base.update(kw)
    return from_overrides(trainer.Args, base)


def _stage0(policy, images: torch.Tensor, T: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Selector probabilities (B, A) and Exposure EV (B,) of fresh images (train mode, fixed dropout)."""
    policy.train()
    torch.manual_seed(123)
    with torch.no_grad():
        state = agent.policy_state(images, torch.zeros(len(images), policy.n_modules),
                                   torch.zeros(len(images), dtype=torch.long), T, stage_plane=policy.stage_plane)
        logits, raw = policy(state)
    return torch.softmax(logits, -1), policy.module_params(raw)["exposure"][:, 0]


def test_policy_learns_to_pick_exposure(tmp_path, monkeypatch):
    data, detector = toy_detection.install(monkeypatch, trainer)
    out = trainer.train(_args(tmp_path))
    rows = out["metrics"]
    first, last = rows[0], rows[-1]
    uniform = 1 / len(ALLOWED)
    assert abs(first["freq_exposure"] - uniform) < 0.12  # warm-up: uniform choice
    assert last["freq_exposure"] > 0.7, [r["freq_exposure"] for r in rows]
    probs, _ = _stage0(out["policy"], torch.stack([it["image"] for it in data.items]))
    assert probs[:, ops.MODULE_NAMES.index("exposure")].mean() > 0.7
    assert last["reward"] > 50 > 15 > first["reward"], [round(r["reward"], 1) for r in rows]
    assert last["loss_out"] < 0.3 * last["loss_in"]


@pytest.mark.parametrize("objective", ["reward", "q"])
def test_one_update_moves_the_exposure_head_the_right_way(tmp_path, monkeypatch, objective):
    data, detector = toy_detection.install(monkeypatch, trainer)
    only_exposure = ",".join(m for m in ops.MODULE_NAMES if m != "exposure")
    kw = dict(disabled_modules=only_exposure, param_warmup=0, param_objective=objective, batch_size=8)
    images = torch.stack([it["image"] for it in data.items])
    before = trainer.train(_args(tmp_path / "before", iterations=0, **kw))["policy"]
    after = trainer.train(_args(tmp_path / "after", iterations=1, **kw))["policy"]
    ev0, ev1 = _stage0(before, images)[1], _stage0(after, images)[1]
    assert (ev1 > ev0).all(), (ev0[:4], ev1[:4])  # brighter is better for every toy image (ideal EV 1.8-3.1)
    targets = torch.zeros(0, 6)
    loss0 = detector.per_image_loss(ops.apply("exposure", images, ev0[:, None]), targets)
    loss1 = detector.per_image_loss(ops.apply("exposure", images, ev1[:, None]), targets)
    assert (loss1 < loss0).all()


def test_without_the_optimiser_step_the_exposure_head_does_not_move(tmp_path, monkeypatch):
    data, _ = toy_detection.install(monkeypatch, trainer)
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: None)  # the "no optimiser step" mutant
    only_exposure = ",".join(m for m in ops.MODULE_NAMES if m != "exposure")
    kw = dict(disabled_modules=only_exposure, param_warmup=0)
    images = torch.stack([it["image"] for it in data.items])
    before = trainer.train(_args(tmp_path / "before", iterations=0, **kw))["policy"]
    after = trainer.train(_args(tmp_path / "after", iterations=1, **kw))["policy"]
    assert torch.equal(_stage0(before, images)[1], _stage0(after, images)[1])
