"""Train the ReconfigISP baseline: a first-order DARTS search over ISP modules, then HPO-style fine-tuning.

    ispbench train reconfigisp --search-iterations 300 --finetune-iterations 300 --denoise-window 5 \\
        --export ispbench/weights/reconfigisp_embedded.pt
    ispbench train reconfigisp --task segmentation ...     # the same search through a frozen YOLO-seg loss

The supernet is :class:`~ispbench.detection_baselines.reconfigisp.ReconfigSupernet` (``--stages``
mixed stages over ``--modules`` plus ``skip``); the task is any of
:func:`ispbench.training.tasks.build_task` (``--task detection`` by default, ``segmentation``), its
loss the frozen network's mean per-image loss. The ``train`` split is cut once, by the seeded
permutation, into a training part and a held-out part (``--held-out-fraction``, 0.5 as DARTS
halves CIFAR's training set). Iterations ``0 .. search_iterations - 1`` search, first-order DARTS
(the architecture gradient taken at the current module parameters, no unrolled step):

1. architecture step: the next ``batch_size`` held-out images, the supernet's output, the task loss,
   Adam on the logits ``alpha`` only (``--arch-lr``, betas ``(--arch-beta1, 0.999)``, L2
   ``--arch-weight-decay``: DARTS' Adam with its betas and weight decay. DARTS' learning rate 3e-4
   is for ~10k steps (50 epochs of CIFAR-10); our search is ~300 steps, so the default 0.01 lets a
   logit move as far, ~3, in the run; no decay, as in DARTS);
2. module-parameter step: the next ``batch_size`` training-part images, Adam on every stage's raw
   module parameters (``--lr``, x0.1 per third of the search with ``--lr-decay``, gradient-norm
   clipping ``--grad-clip``: HPO's recipe, :mod:`ispbench.detection_baselines.train`).

Then the supernet is discretised (:meth:`~ispbench.detection_baselines.reconfigisp.ReconfigSupernet.discretise`:
per stage the strongest op not already chosen, skips removed, the chosen ops' parameters kept) and
iterations ``search_iterations .. + finetune_iterations - 1`` fine-tune the discrete pipeline's
parameters exactly as HPO is trained (Adam ``--lr`` with its own x0.1-per-third schedule,
``--grad-clip``, batches of the whole ``train`` split, as DARTS retrains on the full set).

``out_dir/last.pt`` (supernet, both search optimisers, the discrete model and its optimiser once
fine-tuning began, the split, the data orders, RNG states, metrics, the architecture-weight
history, the running loss averages) is written atomically every ``checkpoint_every`` iterations,
at the end of the search and when ``--stop-after`` stops this invocation; a rerun with the same
``out_dir`` resumes exactly (refused when the settings differ, unless ``--allow-changed-settings``).
Its ``config``/``model`` are always a discrete model (during the search, the current
discretisation), so :func:`~ispbench.detection_baselines.models.load_baseline` reads ``last.pt``
too. ``metrics.csv`` rows: ``phase`` (search / finetune), learning rates, ``loss`` (training-part
or fine-tune loss), ``val_loss`` (held-out loss of the architecture steps), ``architecture`` (the
current discretisation, ``>``-joined, ``skip`` included) and ``max_weight`` (mean over stages of
the largest softmax weight). ``--export PATH`` writes the final discrete model (method
``reconfigisp``) with the architecture, the final ``alpha`` and its softmax history in its
metadata. Timings: :mod:`ispbench.detection_baselines.reconfigisp`.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ispbench import atomic, ops
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
from ispbench.training.detection import DetectionSettings, TaskBatch, learning_rate
from ispbench.training.run import MetricsLog, finish_run, progress_bar, start_run
from ispbench.training.tasks import TASKS, Task, build_task

from .models import build_model
from .reconfigisp import DEFAULT_STAGES, ReconfigDiscreteISP, ReconfigSupernet
from .train import export_model

#: Columns of ``metrics.csv`` (a fine-tune row leaves the search-only ones empty).
METRIC_FIELDS = ("iteration", "phase", "lr", "arch_lr", "loss", "val_loss", "architecture", "max_weight", "elapsed_s")


@dataclass
class Args:
    """Arguments of the ReconfigISP trainer (``--field-name value``)."""

    task: str = "detection"
    """the frozen task network the ISP is searched for: ``detection`` or ``segmentation``
    (:func:`ispbench.training.tasks.build_task`)"""
    seed: int = 0
    """seed of every random number generator"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    """training data and frozen task network (for ``segmentation``, ``detector_weights``/``detector_yaml`` name
    the YOLO-seg model)"""
    stages: int = DEFAULT_STAGES
    """stages of the supernet (5 = AdaptiveISP's pipeline length)"""
    modules: str = ",".join(ops.MODULE_NAMES)
    """comma-separated candidate modules of every stage (each stage also has ``skip``)"""
    denoise_window: int = ops.modules.NLM_SEARCH
    """search window of Denoise's non-local means (11 = the authors'); our speed option: 5 makes a 5-stage search
    iteration at 160 px about 2x faster (timings in ``ispbench.detection_baselines.reconfigisp``); recorded in the
    exported model, whose forward pass uses it"""
    batch_size: int = 8
    """images per step (each search iteration takes one held-out and one training-part batch)"""
    search_iterations: int = 300
    """architecture-search iterations (an architecture step and a module-parameter step each)"""
    finetune_iterations: int = 300
    """fine-tuning steps of the discretised pipeline (HPO's recipe)"""
    lr: float = 0.05
    """Adam learning rate of the raw module parameters, in the search and in fine-tuning (HPO's 0.05)"""
    lr_decay: bool = True
    """multiply ``lr`` by 0.1 per third of the search, and again per third of fine-tuning"""
    grad_clip: float = 1.0
    """gradient-norm clipping of the module parameters (0 = off)"""
    arch_lr: float = 0.01
    """Adam learning rate of the architecture logits (DARTS: 3e-4 over ~10k steps; 0.01 over our ~300)"""
    arch_beta1: float = 0.5
    """Adam beta1 of the architecture optimiser (DARTS' 0.5; beta2 0.999)"""
    arch_weight_decay: float = 1e-3
    """L2 weight decay of the architecture logits (DARTS' 1e-3)"""
    held_out_fraction: float = 0.5
    """share of the ``train`` split held out for the architecture steps (DARTS: half)"""
    out_dir: str = ""
    """run folder; empty = ``runs/reconfigisp/seed<seed>``"""
    checkpoint_every: int = 100
    """write ``last.pt`` every this many iterations (and at the end of the search)"""
    log_every: int = 10
    """metrics row (and architecture-weight history entry) every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment in ``last.pt`` and
    ``summary.json``); without it such a resume is refused"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end); a later run resumes"""
    export: str = ""
    """at the end write the discrete model (weights + config + search record) here, e.g.
    ``ispbench/weights/reconfigisp_embedded.pt``"""
    progress_bar: bool = True
    """tqdm progress bar"""
    snapshot_every: int = 0
    """also export the current discrete model to ``out_dir/model_it<N>.pt`` every this many iterations (0 = off;
    during the search: the current discretisation, not fine-tuned; ``metadata["phase"]`` says which)"""


class _Stream:
    """Batches of indices from ``pool`` in a seeded permutation, a new permutation per pass (HPO's data order)."""

    def __init__(self, pool: torch.Tensor, gen: torch.Generator) -> None:
        self.pool, self.gen = pool, gen
        self.order, self.cursor = torch.randperm(len(pool), generator=gen), 0

    def next(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            if self.cursor >= len(self.pool):
                self.order, self.cursor = torch.randperm(len(self.pool), generator=self.gen), 0
            out.append(int(self.pool[self.order[self.cursor]]))
            self.cursor += 1
        return out

    def state(self) -> dict[str, Any]:
        return {"order": self.order, "cursor": self.cursor}

    def load(self, state: dict[str, Any]) -> None:
        self.order, self.cursor = state["order"], int(state["cursor"])


def task_loss(model: torch.nn.Module, task: Task, batch: TaskBatch) -> torch.Tensor:
    """The mean per-image task loss of ``model``'s output on ``batch``."""
    return task.per_image_loss(model(batch.images), batch).mean()


def architecture_loss(model: ReconfigSupernet, task: Task, batch: TaskBatch) -> torch.Tensor:
    """The architecture step's objective: the task loss on a held-out batch (first-order DARTS)."""
    return task_loss(model, task, batch)


def _weights_list(supernet: ReconfigSupernet) -> list[list[float]]:
    return [[round(v, 5) for v in row] for row in supernet.weights().detach().cpu().double().tolist()]


def search_record(supernet: ReconfigSupernet, history: list[dict]) -> dict[str, Any]:
    """What the search found, for the exported model's metadata (plain lists: ``weights_only``-safe)."""
    return {"architecture": supernet.architecture(), "op_names": list(supernet.op_names), "supernet": supernet.config(),
            "alpha": supernet.alpha.detach().cpu().double().tolist(), "weights": _weights_list(supernet),
            "alpha_history": list(history)}


def _check_args(args: Args) -> None:
    if args.task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {args.task!r}")
    if not 0.0 < args.held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {args.held_out_fraction}")
    for name in ("search_iterations", "finetune_iterations"):
        if getattr(args, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(args, name)}")
    if args.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {args.batch_size}")


def train(args: Args) -> dict:
    """Search the supernet, discretise it, fine-tune the discrete pipeline (see the module docstring).

    Returns:
        ``{"model"`` (the discrete :class:`ReconfigDiscreteISP`, eval mode), ``"supernet"``, ``"metrics"``,
        ``"summary"``, ``"out_dir"}``; the summary is also ``out_dir/summary.json``.
    """
    _check_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = args.detection
    out_dir = start_run(args.out_dir or f"runs/reconfigisp/seed{args.seed}")
    gen = seed_everything(args.seed)
    task = build_task(args.task, settings, "train")
    n = len(task)
    if n < 2:
        raise ValueError(f"the {args.task} train split has {n} image(s); the search needs at least 2 (training and held-out parts)")
    split = torch.randperm(n, generator=gen)
    n_held = min(n - 1, max(1, round(n * args.held_out_fraction)))
    held_pool, train_pool = split[:n_held], split[n_held:]
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    supernet = ReconfigSupernet(args.stages, modules, args.denoise_window).to(settings.device)
    weight_opt = torch.optim.Adam(supernet.module_parameters(), lr=args.lr)
    arch_opt = torch.optim.Adam(supernet.arch_parameters(), lr=args.arch_lr, betas=(args.arch_beta1, 0.999),
                                weight_decay=args.arch_weight_decay)
    streams = {"train": _Stream(train_pool, gen), "held_out": _Stream(held_pool, gen), "all": _Stream(torch.arange(n), gen)}
    S, F = args.search_iterations, args.finetune_iterations
    total = S + F
    discrete: ReconfigDiscreteISP | None = None
    ft_opt: torch.optim.Optimizer | None = None
    start, rows, elapsed_before, history = 0, [], 0.0, []
    acc = {"loss": 0.0, "val_loss": 0.0, "n": 0}  # sums since the last metrics row
    generators = {"data": gen}
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    if ckpt is not None:
        supernet.load_state_dict(ckpt["supernet"])
        weight_opt.load_state_dict(ckpt["weight_opt"])
        arch_opt.load_state_dict(ckpt["arch_opt"])
        held_pool, train_pool = ckpt["split"]["held_out"], ckpt["split"]["train"]
        streams["train"].pool, streams["held_out"].pool = train_pool, held_pool
        for name, stream in streams.items():
            stream.load(ckpt["streams"][name])
        start, rows, elapsed_before, history = ckpt["iteration"], ckpt["metrics"], ckpt["elapsed_s"], ckpt["alpha_history"]
        acc = dict(ckpt["acc"])
        if start > S:  # fine-tuning began: the discrete model and its optimiser
            config = ckpt["config"]
            discrete = build_model(config["method"], config["pipeline"], **config["kwargs"]).to(settings.device)
            discrete.load_state_dict(ckpt["model"])
            params = list(discrete.parameters())
            ft_opt = torch.optim.Adam(params, lr=args.lr) if params else None
            if ft_opt is not None:
                ft_opt.load_state_dict(ckpt["finetune_opt"])
        restore_rng_state(ckpt["rng"], generators)
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {total}", file=sys.stderr)
    elif S > 0:
        history.append({"iteration": 0, "weights": _weights_list(supernet)})
    log = MetricsLog(out_dir, rows, fieldnames=METRIC_FIELDS)
    bar = progress_bar(total, start, "reconfigisp", enabled=args.progress_bar)
    t0 = time.perf_counter()
    supernet.train()
    end = total if not args.stop_after else min(total, start + args.stop_after)

    def current() -> ReconfigDiscreteISP:
        return discrete if discrete is not None else supernet.discretise()

    def checkpoint(iteration: int) -> None:
        model = current()
        save_checkpoint(out_dir, {
            "iteration": iteration, "args": flat_dict(args), "config": model.config(), "model": model.state_dict(),
            "metadata": {**search_record(supernet, history), "train_args": flat_dict(args), "iterations": iteration},
            "supernet": supernet.state_dict(), "weight_opt": weight_opt.state_dict(), "arch_opt": arch_opt.state_dict(),
            "finetune_opt": ft_opt.state_dict() if ft_opt is not None else None,
            "split": {"train": train_pool, "held_out": held_pool}, "streams": {k: s.state() for k, s in streams.items()},
            "metrics": log.rows, "alpha_history": history, "elapsed_s": elapsed_before + time.perf_counter() - t0,
            "rng": rng_state(generators), "acc": dict(acc), "segments": segments,
        })

    for it in range(start, end):
        row: dict[str, Any] = {"iteration": it + 1}
        if it < S:
            lr = learning_rate(args.lr, it, S, args.lr_decay)
            for group in weight_opt.param_groups:
                group["lr"] = lr
            val_loss = architecture_loss(supernet, task, task.batch(streams["held_out"].next(args.batch_size)))
            arch_opt.zero_grad(set_to_none=True)
            val_loss.backward()
            arch_opt.step()
            loss = task_loss(supernet, task, task.batch(streams["train"].next(args.batch_size)))
            weight_opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(supernet.module_parameters(), args.grad_clip)
            weight_opt.step()
            acc["val_loss"] += val_loss.item()
            row.update(phase="search", lr=lr, arch_lr=args.arch_lr)
        else:
            if discrete is None:
                discrete = supernet.discretise()
                discrete.train()
                params = list(discrete.parameters())
                ft_opt = torch.optim.Adam(params, lr=args.lr) if params else None
            lr = learning_rate(args.lr, it - S, F, args.lr_decay)
            batch = task.batch(streams["all"].next(args.batch_size))
            if ft_opt is not None:
                for group in ft_opt.param_groups:
                    group["lr"] = lr
                loss = task_loss(discrete, task, batch)
                ft_opt.zero_grad(set_to_none=True)
                loss.backward()
                if args.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(discrete.parameters(), args.grad_clip)
                ft_opt.step()
            else:  # every stage kept skip: nothing to fine-tune, the loss is still logged
                with torch.no_grad():
                    loss = task_loss(discrete, task, batch)
            row.update(phase="finetune", lr=lr)
        acc["loss"] += loss.item()
        acc["n"] += 1
        boundary = it + 1 == S or it + 1 == total
        if (it + 1) % args.log_every == 0 or boundary:
            row["loss"] = acc["loss"] / acc["n"]
            if it < S:
                row.update(val_loss=acc["val_loss"] / acc["n"], architecture=">".join(supernet.architecture()),
                           max_weight=round(float(supernet.weights().detach().max(1).values.mean()), 4))
                history.append({"iteration": it + 1, "weights": _weights_list(supernet)})
            else:
                row["architecture"] = ">".join(discrete.pipeline)
            row["elapsed_s"] = round(elapsed_before + time.perf_counter() - t0, 3)
            log.append(row)
            acc = {"loss": 0.0, "val_loss": 0.0, "n": 0}
            bar.set_postfix(phase=row["phase"], loss=f"{row['loss']:.4f}")
        bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or boundary or it + 1 == end:
            checkpoint(it + 1)
        if args.snapshot_every and (it + 1) % args.snapshot_every == 0:
            export_model(current(), out_dir / f"model_it{it + 1}.pt", metadata={
                **search_record(supernet, history), "phase": "search" if it < S else "finetune", "train_args": flat_dict(args),
                "iterations": it + 1, "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 1)})
    bar.close()
    if start == end and ckpt is None:  # nothing to run (0 + 0 iterations): still leave a checkpoint
        checkpoint(0)
    elapsed = elapsed_before + time.perf_counter() - t0
    model = current()
    record = search_record(supernet, history)
    summary = {"method": "reconfigisp", "task": args.task, "search_iterations": S, "finetune_iterations": F,
               "architecture": record["architecture"], "pipeline": model.pipeline, "elapsed_s": round(elapsed, 1),
               "args": flat_dict(args),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": log.rows[-1] if log.rows else {}, "segments": segments}
    atomic.write_json(out_dir / "summary.json", summary)
    finished = end == total
    if args.export and finished:
        export_model(model, args.export, metadata={**record, "train_args": flat_dict(args), "search_iterations": S,
                                                   "finetune_iterations": F, "iterations": total,
                                                   "elapsed_s": round(elapsed, 1)})
    finish_run("ispbench.detection_baselines.models:load_baseline", args.export if args.export and finished else out_dir / "last.pt")
    model.eval()
    supernet.eval()
    return {"model": model, "supernet": supernet, "metrics": log.rows, "summary": summary, "out_dir": out_dir}


def main(argv: list[str] | None = None) -> int:
    """``ispbench train reconfigisp [--field value ...]``."""
    args = parse(Args, argv, prog="ispbench train reconfigisp", description=__doc__.split("\n\n")[0])
    result = train(args)
    print(json.dumps(result["summary"]["last_metrics"]))
    return 0


__all__ = ["METRIC_FIELDS", "Args", "architecture_loss", "main", "search_record", "task_loss", "train"]


if __name__ == "__main__":
    sys.exit(main())
