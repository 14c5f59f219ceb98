"""Learning test of the ReconfigISP trainer on the toy problem of ``tests/toy_detection.py``.

Dark images ``s * P`` and a toy "detector" whose loss is zero only after a linear brightening: of the
pool, only Exposure reaches zero loss (Gamma, the runner-up, leaves a tenth of the input's loss). The
trainer runs unchanged through its public ``train(Args)`` on a one-stage supernet over the whole
pool plus ``skip`` (Denoise at window 3, for speed); only the task's data and detector are
monkeypatched (:func:`toy_detection.install` on :mod:`ispbench.training.tasks`). The search must put
the most architecture weight on Exposure (from uniform 1/11 to over 0.25, and 1.5x the runner-up),
the held-out loss of the architecture steps must drop, and the discretised, fine-tuned pipeline
(``["exposure"]``, a brightening EV) must cut the toy loss to under a fifth of the input's.

The toy's recipe differs from the defaults where 40 search iterations need it: module learning rate
0.2 (the default 0.05 decays before the Exposure parameter has moved, and the mixed supernet then
prefers Gamma, which brightens more per unit of raw parameter) and architecture learning rate 0.05.

The broken updates kept here must not learn: no architecture step (``arch_lr`` 0, alpha stays at its
init) and the architecture objective's sign flipped (the held-out loss maximised). Checked by hand
against the same mutations of ``reconfigisp_train.py`` (the ``arch_opt.step()`` line deleted;
``(-val_loss).backward()``): both fail :func:`test_search_picks_exposure_for_dark_images`.
"""

from __future__ import annotations

import pytest
import torch
import toy_detection

from ispbench.detection_baselines import reconfigisp_train as rt
from ispbench.training import tasks
from ispbench.training.config import from_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path, **kw) -> dict:
    recipe = dict(imgsz=toy_detection.SIZE, batch_size=8, stages=1, denoise_window=3, search_iterations=40,
                  finetune_iterations=20, lr=0.2, arch_lr=0.05, seed=0, log_every=10, checkpoint_every=10**6,
                  progress_bar=False, out_dir=str(tmp_path / "run"))
    args = from_overrides(rt.Args, {**recipe, **kw})
    return rt.train(args)


def _exposure_weight(supernet) -> tuple[float, float]:
    """(Exposure's softmax weight, the largest other weight) at the one stage."""
    w = supernet.weights().detach()[0]
    k = supernet.op_names.index("exposure")
    return float(w[k]), float(torch.cat([w[:k], w[k + 1:]]).max())


def test_search_picks_exposure_for_dark_images(tmp_path, monkeypatch):
    train_set, detector = toy_detection.install(monkeypatch, tasks)
    out = _run(tmp_path)
    w_exp, w_other = _exposure_weight(out["supernet"])
    assert w_exp > 0.25 and w_exp > 1.5 * w_other, (w_exp, w_other)
    search = [r for r in out["metrics"] if r["phase"] == "search"]
    assert search[-1]["val_loss"] < 0.3 * search[0]["val_loss"], search
    model = out["model"]
    assert model.pipeline == ["exposure"] and float(model.params()["exposure"][0, 0].detach()) > 1.0
    images = torch.stack([it["image"] for it in train_set.items])
    with torch.no_grad():
        loss_in = float(detector.per_image_loss(images, torch.zeros(0, 6)).mean())
        loss_out = float(detector.per_image_loss(model(images), torch.zeros(0, 6)).mean())
    assert loss_out < 0.2 * loss_in, (loss_in, loss_out)


@pytest.mark.parametrize("mutant", ["no_arch_step", "flipped_arch_loss"])
def test_broken_architecture_updates_do_not_pick_exposure(tmp_path, monkeypatch, mutant):
    toy_detection.install(monkeypatch, tasks)
    if mutant == "no_arch_step":
        out = _run(tmp_path, arch_lr=0.0, finetune_iterations=0)
    else:
        objective = rt.architecture_loss
        monkeypatch.setattr(rt, "architecture_loss", lambda model, task, batch: -objective(model, task, batch))
        out = _run(tmp_path, finetune_iterations=0)
    w_exp, w_other = _exposure_weight(out["supernet"])
    assert w_exp < 0.15, (w_exp, w_other)
