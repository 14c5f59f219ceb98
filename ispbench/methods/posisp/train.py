"""Train POS-ISP: a module sequence for the task and per-image parameters, from a terminal reward (one-file trainer).

    ispbench train posisp --iterations 4000 --seed 0 --export ispbench/weights/posisp_embedded.pt

What one iteration does (the authors' code, reference ``56cc0d3``; defaults are theirs):

1. The next ``batch_size`` (2) training images of a seeded permutation, with their targets.
2. Each image draws its own pipeline from the :class:`~.networks.SequenceDecoder` at temperature
   ``tau(it) = max(0.2, 2.5 * 0.5 ** (it / half_life))`` (half-life 3000 of the authors' 20,001
   iterations; ``half_life=0`` scales it to ``iterations``: ``3000 * iterations / 20001``).
3. The :class:`~.networks.ParameterNet` predicts all 27 parameters of the image; the pipeline runs
   through the differentiable ISP (``"posisp"`` ranges) and the frozen task network scores it:
   ``r = clip(L_in / c, 0, 1) - clip(L_out / c, 0, 1) - 10 (100 relu(0.01 - m) + relu(m - 0.9))``,
   ``m`` the output's mean. The authors' ``c`` is 1 (their YOLOv3 loss); ``loss_clip=0`` sets ``c``
   to the 90th percentile of the input loss of the first training images, because the embedded
   detector's loss is several units per image and clipping it at 1 would leave no gradient.
4. Parameter net: minimise ``-mean(r)`` (gradient through the ISP and the frozen task network).
   Decoder: REINFORCE ``mean(-(r - b) * log p(sequence))`` with ``b = 0`` (``baseline=none``, the
   authors'), a running mean of the reward (``mean``) or the batch's other samples (``loo``).
5. Adam (0.9, 0.99) for each net (1e-4 parameter net, 1e-5 decoder, constant), gradient-norm clipping
   to 1e-4 (the authors' segmentation run clips the decoder to 1e-5: ``seq_grad_clip``).

Logged every ``log_every`` iterations (``metrics.csv``): reward, input and output loss, temperature,
mean sampled length, the decoder's entropy, the variance of its REINFORCE gradient over the window
(mean over weights of the per-weight variance across iterations, before clipping) and the greedy
pipeline. ``out_dir/last.pt`` (both nets, optimisers, data order, RNG states, baseline, cached input
losses, metrics) is written atomically every ``checkpoint_every`` iterations and when ``--stop-after``
stops; a rerun with the same ``out_dir`` resumes exactly. ``--export`` writes the inference model
(:func:`.inference.load_model`), ``--snapshot-every N`` snapshots for validation-split selection.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from ispbench import atomic
from ispbench.ops.modules import NLM_SEARCH, nlm_search_window
from ispbench.seeding import seed_everything
from ispbench.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    restore_rng_state,
    resume_segments,
    rng_state,
    save_checkpoint,
)
from ispbench.training.config import flat_dict, parse
from ispbench.training.detection import DetectionSettings
from ispbench.training.run import MetricsLog, finish_run, progress_bar, start_run
from ispbench.training.tasks import TASKS, Task, build_task

from .inference import export_model
from .networks import ParameterNet, PosISP, SequenceDecoder, render

#: The authors' run length (their released checkpoints are at 15,000) and temperature half-life.
AUTHORS_ITERATIONS = 20_001
AUTHORS_HALF_LIFE = 3000
BASELINES = ("none", "mean", "loo")


@dataclass
class Args:
    """Arguments of :func:`train` (also the command line: ``--batch-size 2`` etc.)."""

    seed: int = 1
    """seed of every random number generator (the authors': 1)"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    task: str = "detection"
    """``detection`` or ``segmentation`` (``ispbench.training.tasks``)"""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    """training data and the frozen task network (for segmentation ``detector_weights`` is the segmenter)"""
    batch_size: int = 2
    """images per iteration (authors: 2)"""
    iterations: int = AUTHORS_ITERATIONS
    """training iterations (authors: 20,001)"""
    param_lr: float = 1e-4
    """Adam learning rate of the parameter net (authors: 1e-4)"""
    seq_lr: float = 1e-5
    """Adam learning rate of the sequence decoder (authors: 1e-5)"""
    param_grad_clip: float = 1e-4
    """gradient-norm clipping of the parameter net (authors: 1e-4; 0 = off)"""
    seq_grad_clip: float = 1e-4
    """gradient-norm clipping of the decoder (authors: 1e-4 for detection, 1e-5 for segmentation; 0 = off)"""
    temperature_start: float = 2.5
    """decoder temperature at iteration 0"""
    temperature_end: float = 0.2
    """lowest decoder temperature"""
    half_life: float = 0.0
    """iterations per halving of the temperature (authors: 3000 of 20,001); 0 = ``3000 * iterations / 20001``"""
    baseline: str = "none"
    """REINFORCE baseline: ``none`` (authors), ``mean`` (running mean of the reward, ``baseline_momentum``) or
    ``loo`` (leave-one-out: the mean reward of the batch's other samples; needs ``batch_size >= 2``)"""
    baseline_momentum: float = 0.9
    """momentum of the running-mean baseline"""
    loss_clip: float = 0.0
    """``c`` of the reward's ``clip(L / c, 0, 1)`` (authors: 1 for their YOLOv3 loss); 0 = auto: the 90th percentile
    of the input loss of the first ``loss_clip_images`` training images"""
    loss_clip_images: int = 64
    """images the automatic ``loss_clip`` is measured on"""
    brightness_low: float = 0.01
    """the penalty starts when the output mean drops below this (authors: 0.01) ..."""
    brightness_high: float = 0.9
    """... or rises above this (authors: 0.9)"""
    penalty_weight: float = 10.0
    """``penalty_weight * (100 relu(low - m) + relu(m - high))`` (authors: 10)"""
    denoise_window: int = NLM_SEARCH
    """search window of Denoise's non-local means (authors: 11); a speed option, recorded in the exported model"""
    out_dir: str = ""
    """run folder; empty = ``runs/posisp/<task>_seed<seed>``"""
    checkpoint_every: int = 200
    """write ``last.pt`` every this many iterations (and at the end)"""
    log_every: int = 50
    """metrics row every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment); without it such a resume is
    refused. Run length, stop, cadence, threads, export and progress bar may always change"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end); a later run resumes"""
    export: str = ""
    """at the end write the inference model here, e.g. ``ispbench/weights/posisp_embedded.pt``"""
    snapshot_every: int = 0
    """also export ``out_dir/model_it<N>.pt`` every this many iterations (0 = off), for validation-split selection"""
    progress_bar: bool = True
    """tqdm progress bar"""


def temperature(iteration: int, args: Args) -> float:
    """``max(end, start * 0.5 ** (iteration / half_life))`` (exponential decay, the authors' schedule).

    Example:
        >>> round(temperature(3000, Args(iterations=20001)), 4)
        1.25
    """
    half_life = args.half_life or AUTHORS_HALF_LIFE * args.iterations / AUTHORS_ITERATIONS
    return max(args.temperature_end, args.temperature_start * 0.5 ** (iteration / half_life))


def brightness_penalty(images: torch.Tensor, args: Args) -> torch.Tensor:
    """``(B,)`` ``weight * (100 relu(low - m) + relu(m - high))`` of each image's mean ``m``."""
    m = images.mean((1, 2, 3))
    return args.penalty_weight * (100.0 * F.relu(args.brightness_low - m) + F.relu(m - args.brightness_high))


def terminal_reward(loss_in: torch.Tensor, loss_out: torch.Tensor, outputs: torch.Tensor, clip: float, args: Args) -> torch.Tensor:
    """``(B,)`` ``clip(L_in / c, 0, 1) - clip(L_out / c, 0, 1) - brightness_penalty`` (differentiable in ``L_out``)."""
    return (loss_in / clip).clamp(0, 1) - (loss_out / clip).clamp(0, 1) - brightness_penalty(outputs, args)


def reinforce_advantage(reward: torch.Tensor, kind: str, running: float) -> torch.Tensor:
    """``(B,)`` the REINFORCE weight ``r - b`` for baseline ``kind`` (:data:`BASELINES`), detached."""
    r = reward.detach()
    if kind == "none":
        return r
    if kind == "mean":
        return r - running
    if kind == "loo":
        n = r.numel()
        if n < 2:
            raise ValueError("baseline='loo' needs batch_size >= 2")
        return r - (r.sum() - r) / (n - 1)
    raise ValueError(f"baseline must be one of {list(BASELINES)}, got {kind!r}")


def _grad_vector(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in module.parameters()])


def _clip(module: torch.nn.Module, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)


def automatic_loss_clip(task: Task, n_images: int) -> float:
    """The 90th percentile of the task loss of the first ``n_images`` training inputs (the reward's ``c``)."""
    losses = []
    with torch.no_grad():
        for first in range(0, min(n_images, len(task)), 8):
            batch = task.batch(range(first, min(first + 8, n_images, len(task))))
            losses.append(task.per_image_loss(batch.images, batch).float().cpu())
    values = torch.cat(losses)
    return max(float(torch.quantile(values, 0.9)), 1e-6)


def train(args: Args, task: Task | None = None) -> dict:
    """Run (or resume) training; ``task`` overrides the one ``args`` names (tests pass toy tasks).

    Returns:
        ``{"model", "metrics", "summary", "out_dir"}``; the summary is also ``out_dir/summary.json``.
    """
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {args.task!r}")
    if args.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {list(BASELINES)}, got {args.baseline!r}")
    if args.baseline == "loo" and args.batch_size < 2:
        raise ValueError("baseline='loo' needs batch_size >= 2")
    out_dir = start_run(args.out_dir or f"runs/posisp/{args.task}_seed{args.seed}")
    gen = seed_everything(args.seed)
    task = task or build_task(args.task, args.detection)
    n = len(task)
    device = torch.device(args.detection.device)
    model = PosISP(SequenceDecoder(), ParameterNet(), denoise_window=args.denoise_window).to(device)
    decoder, param_net = model.decoder, model.param_net
    opt_param = torch.optim.Adam(param_net.parameters(), lr=args.param_lr, betas=(0.9, 0.99))
    opt_seq = torch.optim.Adam(decoder.parameters(), lr=args.seq_lr, betas=(0.9, 0.99))
    generators = {"data": gen}
    start, rows, order, cursor, elapsed_before = 0, [], torch.randperm(n, generator=gen), 0, 0.0
    running_baseline, window = 0.0, _Window()
    input_loss = torch.full((n,), float("nan"))  # the frozen task's loss of each input, computed once
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    if ckpt is not None:
        decoder.load_state_dict(ckpt["decoder"])
        param_net.load_state_dict(ckpt["param_net"])
        opt_param.load_state_dict(ckpt["opt_param"])
        opt_seq.load_state_dict(ckpt["opt_seq"])
        start, rows, order, cursor, elapsed_before = ckpt["iteration"], ckpt["metrics"], ckpt["order"], ckpt["cursor"], ckpt["elapsed_s"]
        running_baseline, clip, input_loss = float(ckpt["running_baseline"]), float(ckpt["loss_clip"]), ckpt["input_loss"]
        window.load_state_dict(ckpt["window"])
        restore_rng_state(ckpt["rng"], generators)
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {args.iterations}", file=sys.stderr)
    else:
        clip = args.loss_clip or automatic_loss_clip(task, args.loss_clip_images)
    log = MetricsLog(out_dir, rows)
    bar = progress_bar(args.iterations, start, "posisp", enabled=args.progress_bar)
    t0 = time.perf_counter()
    model.train()
    end = args.iterations if not args.stop_after else min(args.iterations, start + args.stop_after)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def export_metadata(iteration: int) -> dict:
        return {"train_args": flat_dict(args), "iterations": iteration, "elapsed_s": round(elapsed(), 1), "loss_clip": clip,
                "task": args.task, "temperature": temperature(iteration, args)}

    with contextlib.ExitStack() as stack:
        stack.enter_context(nlm_search_window(args.denoise_window))
        for it in range(start, end):
            idx = []
            for _ in range(args.batch_size):
                if cursor >= n:
                    order, cursor = torch.randperm(n, generator=gen), 0
                idx.append(int(order[cursor]))
                cursor += 1
            batch = task.batch(idx)
            rows_idx = torch.tensor(idx)
            missing = rows_idx[torch.isnan(input_loss[rows_idx])]
            if len(missing):
                with torch.no_grad():
                    sub = [i for i in idx if i in set(missing.tolist())]
                    sub_batch = task.batch(sub)
                    input_loss[torch.tensor(sub)] = task.per_image_loss(sub_batch.images, sub_batch).float().cpu()
            loss_in = input_loss[rows_idx].to(device)
            tau = temperature(it, args)
            seq = decoder.sample(args.batch_size, tau, generator=gen)
            params = param_net.module_params(param_net(batch.images))
            outputs = render(batch.images, seq.modules, params)
            loss_out = task.per_image_loss(outputs, batch)
            reward = terminal_reward(loss_in, loss_out, outputs, clip, args)
            advantage = reinforce_advantage(reward, args.baseline, running_baseline)
            param_loss = -reward.mean()
            seq_loss = -(advantage * seq.log_prob).mean()
            opt_param.zero_grad(set_to_none=True)
            opt_seq.zero_grad(set_to_none=True)
            (param_loss + seq_loss).backward()  # the two losses touch disjoint nets (reward detached in seq_loss)
            window.add_gradient(_grad_vector(decoder))
            _clip(param_net, args.param_grad_clip)
            _clip(decoder, args.seq_grad_clip)
            opt_param.step()
            opt_seq.step()
            if args.baseline == "mean":
                running_baseline = args.baseline_momentum * running_baseline + (1 - args.baseline_momentum) * float(reward.detach().mean())
            window.add(reward=float(reward.detach().mean()), loss_in=float(loss_in.mean()), loss_out=float(loss_out.detach().mean()),
                       length=float(seq.lengths.float().mean()), entropy=float(seq.entropy.detach().mean()))
            if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
                row = {"iteration": it + 1, "temperature": round(tau, 5), **window.means(),
                       "seq_grad_variance": window.gradient_variance(),
                       "pipeline": "-".join(model.decoder.decode()), "elapsed_s": round(elapsed(), 3)}
                log.append(row)
                window = _Window()
                bar.set_postfix(reward=f"{row['reward']:.4f}", len=f"{row['length']:.1f}")
            bar.update(1)
            if (it + 1) % args.checkpoint_every == 0 or it + 1 in (args.iterations, end):
                save_checkpoint(out_dir, {
                    "iteration": it + 1, "args": flat_dict(args), "config": model.config(),
                    "decoder": decoder.state_dict(), "param_net": param_net.state_dict(),
                    "opt_param": opt_param.state_dict(), "opt_seq": opt_seq.state_dict(), "order": order, "cursor": cursor,
                    "metrics": log.rows, "elapsed_s": elapsed(), "rng": rng_state(generators), "segments": segments,
                    "running_baseline": running_baseline, "loss_clip": clip, "input_loss": input_loss,
                    "window": window.state_dict(),
                })
            if args.snapshot_every and (it + 1) % args.snapshot_every == 0:
                export_model(model, out_dir / f"model_it{it + 1}.pt", metadata=export_metadata(it + 1))
    bar.close()
    model.eval()
    summary = {"method": "posisp", "task": args.task, "iterations": args.iterations, "elapsed_s": round(elapsed(), 1),
               "args": flat_dict(args), "loss_clip": clip, "pipeline": model.pipeline(),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": log.rows[-1] if log.rows else {}, "segments": segments}
    atomic.write_json(out_dir / "summary.json", summary)
    finished = end == args.iterations
    if args.export and finished:
        export_model(model, args.export, metadata=export_metadata(args.iterations))
    finish_run("ispbench.methods.posisp.inference:load_model", args.export if args.export and finished else out_dir / "last.pt")
    return {"model": model, "metrics": log.rows, "summary": summary, "out_dir": out_dir}


class _Window:
    """Sums since the last metrics row (part of the checkpoint, so a resumed run logs the same rows)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.g_sum: torch.Tensor | None = None
        self.g_sq: torch.Tensor | None = None
        self.g_count = 0

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def add_gradient(self, g: torch.Tensor) -> None:
        g = g.detach().double().cpu()
        self.g_sum = g.clone() if self.g_sum is None else self.g_sum + g
        self.g_sq = g * g if self.g_sq is None else self.g_sq + g * g
        self.g_count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def gradient_variance(self) -> float:
        """Mean over decoder weights of the variance of their REINFORCE gradient across the window's iterations."""
        if self.g_sum is None or self.g_count < 2:
            return math.nan
        mean = self.g_sum / self.g_count
        var = (self.g_sq / self.g_count - mean * mean) * self.g_count / (self.g_count - 1)
        return float(var.clamp_min(0).mean())

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "g_sum": self.g_sum, "g_sq": self.g_sq, "g_count": self.g_count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count = dict(state["sums"]), int(state["count"])
        self.g_sum, self.g_sq, self.g_count = state["g_sum"], state["g_sq"], int(state["g_count"])


def main(argv: list[str] | None = None) -> int:
    """``ispbench train posisp [--field value ...]``."""
    args = parse(Args, argv, prog="ispbench train posisp", description=__doc__.split("\n\n")[0])
    result = train(args)
    print(json.dumps({k: v for k, v in result["summary"]["last_metrics"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["AUTHORS_HALF_LIFE", "AUTHORS_ITERATIONS", "Args", "BASELINES", "automatic_loss_clip", "brightness_penalty",
           "main", "reinforce_advantage", "temperature", "terminal_reward", "train"]
