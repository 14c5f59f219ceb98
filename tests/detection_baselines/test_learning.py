"""Learning tests of the HPO and attention-aware baselines' trainer on the toy problem of ``tests/toy_detection.py``.

Dark images ``s * P`` and a toy "detector" whose loss is zero only after a linear brightening. The trainer
runs unchanged through its public ``train(Args)`` (the recipes' nine-module pipeline, 32 px, 60 iterations);
only its ``train_dataset`` and ``build_detector`` are monkeypatched. Each model must cut the toy loss to under
a fifth of the input's and raise the Exposure EV (ideal per image +1.8..+3.1; the pipeline's Gamma and Tone
share the brightening, so the learned EV stays below the ideal). The broken updates kept here (no
optimiser step; the loss's sign flipped, as a detector that returns ``-loss``) must not learn. Checked by hand
against the same mutations of ``train.py`` (the ``opt.step()`` line deleted, ``(-loss).backward()``).
"""

from __future__ import annotations

import pytest
import torch
import toy_detection

from ispbench.detection_baselines import train as trainer
from ispbench.methods.adaptiveisp.recipes import BASELINE_LR, BASELINE_PIPELINE
from ispbench.training.config import from_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path, method: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """Train ``method`` on the installed toy problem; returns the model and the training images."""
    args = from_overrides(trainer.Args, dict(method=method, imgsz=toy_detection.SIZE, batch_size=8, iterations=60,
                                             lr=BASELINE_LR[method], pipeline=BASELINE_PIPELINE, seed=0, log_every=10,
                                             checkpoint_every=10**6, progress_bar=False, out_dir=str(tmp_path / method)))
    return trainer.train(args)["model"].eval(), torch.stack([it["image"] for it in trainer.train_dataset(None).items])


def _score(model, images, detector) -> tuple[float, float, float]:
    """(toy loss of the input, toy loss of the model's output, mean Exposure EV)."""
    targets = torch.zeros(0, 6)
    with torch.no_grad():
        params = model.params(images) if model.method == "attention" else model.params(len(images))
        return (float(detector.per_image_loss(images, targets).mean()), float(detector.per_image_loss(model(images), targets).mean()),
                float(params["exposure"][:, 0].mean()))


@pytest.mark.parametrize("method", ["hpo", "attention"])
def test_baseline_learns_the_toy_brightening(tmp_path, monkeypatch, method):
    _, detector = toy_detection.install(monkeypatch, trainer)
    model, images = _run(tmp_path, method)
    loss_in, loss_out, ev = _score(model, images, detector)
    assert loss_out < 0.2 * loss_in, (loss_in, loss_out)
    assert ev > 0.3, ev  # brighter (identity = 0 EV)


class _NegatedDetector(toy_detection.ToyDetector):
    """The flipped-sign mutant: the trainer minimises ``-loss``."""

    def per_image_loss(self, x, targets):
        return -super().per_image_loss(x, targets)


@pytest.mark.parametrize("method", ["hpo", "attention"])
@pytest.mark.parametrize("mutant", ["no_step", "flipped_loss"])
def test_broken_updates_do_not_learn(tmp_path, monkeypatch, method, mutant):
    _, detector = toy_detection.install(monkeypatch, trainer)
    if mutant == "no_step":
        monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: None)
    else:
        monkeypatch.setattr(trainer, "build_detector", lambda settings: _NegatedDetector())
    model, images = _run(tmp_path, method)
    loss_in, loss_out, ev = _score(model, images, detector)
    assert loss_out > 0.9 * loss_in and ev <= 0.05, (loss_in, loss_out, ev)
