"""Train a detection baseline (HPO or attention-aware) through the frozen detector (one-file trainer).

    ispbench train hpo --iterations 300 --lr 0.05 --export ispbench/weights/hpo_embedded.pt
    ispbench train attention --iterations 400 --lr 1e-3 --export ispbench/weights/attention_embedded.pt

Both baselines tune the fixed pipeline (:data:`~ispbench.detection_baselines.pipeline.FIXED_PIPELINE`
or ``--pipeline``) for the frozen detector; only the parameter model differs
(:class:`~ispbench.detection_baselines.hpo.HPOISP`: one vector for every image;
:class:`~ispbench.detection_baselines.attention.AttentionISP`: per image). One iteration: the
next ``batch_size`` training images of a seeded permutation (a new one per pass), the model's
output, the mean per-image detector loss, Adam (learning rate x0.1 per third of training,
AdaptiveISP App. A.1), gradient-norm clipping. ``out_dir/last.pt`` (model, optimiser, data
order, RNG states, metrics, the running average of the loss since the last row) is written
atomically every ``checkpoint_every`` iterations (and when ``--stop-after`` stops this invocation) and
a rerun with the same ``out_dir`` resumes from it exactly (refused when the settings differ, unless
``--allow-changed-settings``); metrics go to ``out_dir/metrics.csv``;
``--export PATH`` writes the model that :func:`~ispbench.detection_baselines.models.load_baseline` reads.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ispbench import atomic
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
from ispbench.training.detection import (
    DetectionSettings,
    build_detector,
    learning_rate,
    load_sample,
    make_targets,
    train_dataset,
)
from ispbench.training.run import MetricsLog, finish_run, progress_bar, start_run

from .models import EXPORT_FORMAT, build_model
from .pipeline import FIXED_PIPELINE


@dataclass
class Args:
    """Arguments of the fixed-pipeline baselines' trainer (``--field-name value``)."""

    method: str = "hpo"
    """``hpo`` (one parameter set for all images) or ``attention`` (per-image parameters from a CNN)"""
    seed: int = 0
    """seed of every random number generator"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    """training data and frozen detector"""
    batch_size: int = 8
    """images per iteration"""
    iterations: int = 300
    """optimisation steps"""
    lr: float = 0.05
    """Adam learning rate (HPO: ~0.05 on the raw parameters; attention: ~1e-3)"""
    lr_decay: bool = True
    """multiply the learning rate by 0.1 per third of training"""
    grad_clip: float = 1.0
    """gradient-norm clipping (0 = off)"""
    pipeline: str = ",".join(FIXED_PIPELINE)
    """comma-separated module order of the fixed pipeline"""
    out_dir: str = ""
    """run folder; empty = ``runs/<method>/seed<seed>``"""
    checkpoint_every: int = 100
    """write ``last.pt`` every this many iterations"""
    log_every: int = 10
    """metrics row every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment in ``last.pt`` and
    ``summary.json``); without it such a resume is refused. Run length, stop, cadence, threads, export and progress
    bar may always change (``ispbench.training.checkpoint.SEGMENT_SETTINGS``)"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end); a later run resumes"""
    export: str = ""
    """at the end write the model (weights + config) here, e.g. ``ispbench/weights/hpo_embedded.pt``"""
    progress_bar: bool = True
    """tqdm progress bar"""
    snapshot_every: int = 0
    """also export the model to ``out_dir/model_it<N>.pt`` every this many iterations (0 = off), for model
    selection on the validation split by the same rule as the AdaptiveISP policy's snapshots"""


def export_model(model: torch.nn.Module, path: str | Path, *, metadata: dict) -> Path:
    """Write the model (config + weights) atomically in the format :func:`.models.load_baseline` reads."""
    return atomic.torch_save({"format": EXPORT_FORMAT, "config": model.config(), "state_dict": model.state_dict(),
                              "metadata": metadata}, path)


def train(args: Args) -> dict:
    """Optimise the baseline through the frozen detector (mean per-image detector loss).

    Returns:
        ``{"model", "metrics", "summary", "out_dir"}``; the summary is also ``out_dir/summary.json``.
    """
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = args.detection
    out_dir = start_run(args.out_dir or f"runs/{args.method}/seed{args.seed}")
    gen = seed_everything(args.seed)
    dataset = train_dataset(settings)
    n = len(dataset)
    detector = build_detector(settings)
    pipeline = [p.strip() for p in args.pipeline.split(",") if p.strip()]
    model = build_model(args.method, pipeline).to(settings.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start, rows, order, cursor, elapsed_before = 0, [], torch.randperm(n, generator=gen), 0, 0.0
    generators = {"data": gen}
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    acc, acc_n = 0.0, 0  # loss summed since the last metrics row
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        start, rows, order, cursor, elapsed_before = ckpt["iteration"], ckpt["metrics"], ckpt["order"], ckpt["cursor"], ckpt["elapsed_s"]
        restore_rng_state(ckpt["rng"], generators)
        acc, acc_n = float(ckpt.get("acc", 0.0)), int(ckpt.get("acc_n", 0))
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {args.iterations}", file=sys.stderr)
    log = MetricsLog(out_dir, rows)
    bar = progress_bar(args.iterations, start, args.method, enabled=args.progress_bar)
    t0 = time.perf_counter()
    model.train()
    end = args.iterations if not args.stop_after else min(args.iterations, start + args.stop_after)
    for it in range(start, end):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args.lr, it, args.iterations, args.lr_decay)
        idx = []
        for _ in range(args.batch_size):
            if cursor >= n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx.append(int(order[cursor]))
            cursor += 1
        samples = [load_sample(dataset, i, settings.imgsz) for i in idx]
        x = torch.stack([s[0] for s in samples]).to(settings.device)
        targets = make_targets([s[1] for s in samples]).to(settings.device)
        loss = detector.per_image_loss(model(x), targets).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        acc += loss.item()
        acc_n += 1
        if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
            log.append({"iteration": it + 1, "lr": opt.param_groups[0]["lr"], "loss": acc / acc_n,
                        "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 3)})
            acc, acc_n = 0.0, 0
            bar.set_postfix(loss=f"{log.rows[-1]['loss']:.4f}")
        bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or it + 1 in (args.iterations, end):
            save_checkpoint(out_dir, {
                "iteration": it + 1, "args": flat_dict(args), "config": model.config(), "model": model.state_dict(), "opt": opt.state_dict(),
                "order": order, "cursor": cursor, "metrics": log.rows, "elapsed_s": elapsed_before + time.perf_counter() - t0,
                "rng": rng_state(generators), "acc": acc, "acc_n": acc_n, "segments": segments,
            })
        if args.snapshot_every and (it + 1) % args.snapshot_every == 0:
            export_model(model, out_dir / f"model_it{it + 1}.pt", metadata={
                "train_args": flat_dict(args), "iterations": it + 1, "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 1)})
    bar.close()
    elapsed = elapsed_before + time.perf_counter() - t0
    summary = {"method": args.method, "iterations": args.iterations, "elapsed_s": round(elapsed, 1), "args": flat_dict(args),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": log.rows[-1] if log.rows else {}, "segments": segments}
    atomic.write_json(out_dir / "summary.json", summary)
    finished = end == args.iterations
    if args.export and finished:
        export_model(model, args.export, metadata={"train_args": flat_dict(args), "iterations": args.iterations,
                                                   "elapsed_s": round(elapsed, 1)})
    finish_run("ispbench.detection_baselines.models:load_baseline", args.export if args.export and finished else out_dir / "last.pt")
    model.eval()
    return {"model": model, "metrics": log.rows, "summary": summary, "out_dir": out_dir}


def _main(method: str, argv: list[str] | None) -> int:
    args = parse(Args, argv, prog=f"ispbench train {method}", description=__doc__.split("\n\n")[0], base=Args(method=method))
    result = train(args)
    print(json.dumps(result["summary"]["last_metrics"]))
    return 0


def main_hpo(argv: list[str] | None = None) -> int:
    """``ispbench train hpo [--field value ...]``."""
    return _main("hpo", argv)


def main_attention(argv: list[str] | None = None) -> int:
    """``ispbench train attention [--field value ...]``."""
    return _main("attention", argv)


if __name__ == "__main__":
    sys.exit(main_hpo())
