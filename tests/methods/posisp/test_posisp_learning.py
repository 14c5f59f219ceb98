"""Learning tests of the POS-ISP trainer on the toy task of ``tests/toy_posisp.py`` (dark smooth images, a target only
brightening reaches).

The trainer runs unchanged through ``train(Args, task=ToyTask())`` with larger learning rates than the authors'
(200 iterations, not 20,001) and no gradient clipping. It must cut the toy loss of its greedy pipeline to under a
fifth of the input's, with a short pipeline that contains a brightening module (Exposure, Tone or Gamma), for the
authors' REINFORCE without a baseline and with the leave-one-out baseline. Checked by hand against broken
updates of ``train.py``: with ``opt_seq.step()`` deleted the decoder keeps its initial all-ten-modules argmax
(length 10: fails); with the REINFORCE sign flipped (``seq_loss = +(advantage * log_prob).mean()``) the decoder
prefers harmful pipelines (fails); with ``opt_param.step()`` deleted or ``param_loss = +reward.mean()`` the
loss is not cut (fails).
"""

from __future__ import annotations

import pytest
import torch
from toy_posisp import ToyTask

from ispbench.methods.posisp import train as trainer
from ispbench.training.config import from_overrides

pytestmark = pytest.mark.usefixtures("one_thread")

BRIGHTENING = {"exposure", "tone", "gamma"}


def _train(tmp_path, baseline: str):
    task = ToyTask()
    args = from_overrides(trainer.Args, dict(imgsz=32, batch_size=4, iterations=200, seq_lr=3e-3, param_lr=1e-3,
                                             param_grad_clip=0.0, seq_grad_clip=0.0, half_life=100.0, baseline=baseline,
                                             seed=0, log_every=50, checkpoint_every=10**6, progress_bar=False,
                                             out_dir=str(tmp_path / baseline)))
    return trainer.train(args, task=task), task


@pytest.mark.parametrize("baseline", ["none", "loo"])
def test_posisp_learns_a_short_brightening_pipeline(tmp_path, baseline):
    result, task = _train(tmp_path, baseline)
    model = result["model"].eval()
    batch = task.batch(range(len(task)))
    with torch.no_grad():
        loss_in = float(task.per_image_loss(batch.images, batch).mean())
        loss_out = float(task.per_image_loss(model(batch.images), batch).mean())
    pipeline = model.pipeline()
    assert loss_out < 0.2 * loss_in, (pipeline, loss_in, loss_out)
    assert 1 <= len(pipeline) <= 3 and BRIGHTENING & set(pipeline), pipeline
    rewards = [row["reward"] for row in result["metrics"]]
    assert rewards[-1] > rewards[0] + 0.5, rewards
