"""``ispbench bench irpo``: throughput of IRPO's two trainers, measured on the trainers themselves.

    ispbench bench irpo                         # embedded AdaIR, 64-px samples, 12 timed steps each
    ispbench bench irpo --steps 20 --threads 2 --patch-size 128

Both trainers (:mod:`.pretrain`, :mod:`.grpo`) run for ``warmup + steps`` iterations with one metrics row
per iteration, validation and checkpoints only at the end; the time of an iteration is the difference of
consecutive rows' ``elapsed_s`` (the trainer's own clock), so pool scoring, validation and checkpoint
writes are left out. Reported per trainer: the median seconds per iteration, images per second (pre-training:
``batch_size`` samples; GRPO: ``batch_size x group_size`` restorations, each with its reward and one
backward pass) and peak memory on the CPU: each trainer runs in a fresh child process, whose peak resident
set (Python and torch included) and that peak minus the resident set just before training (the trainer's
own) are reported. The two run one after the other in one command, so they see the same machine load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ispbench.data.restoration import DEGRADATIONS, RestorationSet

from . import grpo, pretrain
from .inference import PRETRAINED_WEIGHTS, load_model


def _step_seconds(metrics: list[dict], warmup: int) -> np.ndarray:
    """Per-iteration seconds from a trainer's metrics rows (rows without ``elapsed_s``, the initial validation, dropped).
    Each row's clock is read before that iteration's validation and checkpoint, so no difference includes them."""
    rows = pd.DataFrame(metrics)
    rows = rows[rows.get("elapsed_s", pd.Series(dtype=float)).notna()].sort_values("iteration")
    return np.diff(rows.elapsed_s.to_numpy(dtype=float))[warmup:]


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:  # resident pages (Linux)
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(trainer: str, settings: dict) -> dict:
    """One trainer in this (fresh) process: median step time and peak memory (run in a child process so that
    each trainer's peak is its own)."""
    if settings["threads"] > 0:
        torch.set_num_threads(settings["threads"])
    steps, warmup, size = settings["steps"], settings["warmup"], settings["patch_size"]
    iterations = warmup + steps + 1  # n rows give n - 1 differences
    common = dict(threads=settings["threads"], iterations=iterations, eval_every=iterations, checkpoint_every=iterations,
                  log_every=1, progress_bar=False, resume=False)
    val = RestorationSet("val", kinds=DEGRADATIONS, crops_per_photo=1, size=64, seed=1000)
    out_dir = Path(settings["out_dir"])
    if trainer == "pretrain":
        baseline = _current_rss_mb()
        result = pretrain.train(pretrain.Args(batch_size=settings["batch_size"], patch_size=size, out_dir=str(out_dir / "pretrain"),
                                              **common), val=val)
        batch, per_iteration = f"{settings['batch_size']} samples of {size} px", settings["batch_size"]
        name = "pre-training (L1)"
    else:
        pool = RestorationSet("train", kinds=DEGRADATIONS, crops_per_photo=2, size=max(size, 64), seed=0)
        model = load_model(settings["init_weights"])
        baseline = _current_rss_mb()
        result = grpo.train(grpo.Args(group_size=settings["group_size"], patch_size=max(size, 64), perceptual="gmsd",
                                      out_dir=str(out_dir / "grpo"), **common), model=model, pool=pool, val=val)
        batch, per_iteration = f"1 input x group of {settings['group_size']}, {max(size, 64)} px", settings["group_size"]
        name = "GRPO (all three rewards)"
    seconds = _step_seconds(result["metrics"], warmup)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"trainer": name, "batch": batch, "restorations_per_iteration": per_iteration,
            "s_per_iteration": float(np.median(seconds)), "iterations_timed": len(seconds),
            "peak_rss_mb": round(peak, 1), "peak_above_start_mb": round(peak - baseline, 1),
            "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}"}


def trainer_throughput(*, steps: int = 12, warmup: int = 2, patch_size: int = 64, batch_size: int = 8, group_size: int = 4,
                       threads: int = 0, init_weights: str | Path = PRETRAINED_WEIGHTS, out_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per trainer (the embedded AdaIR; GRPO from ``init_weights``), each run in a fresh child process:
    ``trainer, batch, restorations_per_iteration, s_per_iteration`` (median), ``images_per_s, iterations_timed``,
    ``peak_rss_mb`` (the child's peak resident set, Python and torch included) and ``peak_above_start_mb``
    (that peak minus the resident set just before training: the trainer's own memory)."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    settings = dict(steps=steps, warmup=warmup, patch_size=patch_size, batch_size=batch_size, group_size=group_size,
                    threads=threads, init_weights=str(init_weights), out_dir=str(out_dir or tempfile.mkdtemp(prefix="irpo_bench_")))
    rows = []
    for trainer in ("pretrain", "grpo"):
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(_measure, trainer, settings).result())
    out = pd.DataFrame(rows)
    out.insert(4, "images_per_s", out.restorations_per_iteration / out.s_per_iteration)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ispbench bench irpo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed iterations per trainer (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first iterations")
    parser.add_argument("--patch-size", type=int, default=64, help="sample side in pixels (authors: 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="pre-training samples per iteration")
    parser.add_argument("--group-size", type=int, default=4, help="GRPO samples per input")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--init-weights", default=str(PRETRAINED_WEIGHTS), help="the AdaIR GRPO starts from")
    a = parser.parse_args(argv)
    table = trainer_throughput(steps=a.steps, warmup=a.warmup, patch_size=a.patch_size, batch_size=a.batch_size,
                               group_size=a.group_size, threads=a.threads, init_weights=a.init_weights)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    return 0


__all__ = ["main", "trainer_throughput"]

if __name__ == "__main__":
    sys.exit(main())
