"""Pre-train the all-in-one AdaIR with L1 on five degradations (the model IRPO post-trains; one-file trainer).

    ispbench train irpo-pretrain --iterations 8000 --seed 0 --export ispbench/weights/adair_embedded.pt

What one iteration does (AdaIR's recipe, scaled to a CPU; each difference is an option below):

1. ``batch_size`` fresh samples: a random training photo (:func:`ispbench.data.photos.photo_names`
   ``("train")``), a random square crop resized to ``patch_size`` with a random flip, and one of the
   in-domain degradations (:data:`ispbench.data.restoration.DEGRADATIONS`, drawn uniformly) applied with
   freshly drawn parameters and noise, as AdaIR draws noise on the fly.
2. ``L1(AdaIR(degraded), clean)`` on the deterministic path (the Beta heads are not used in pre-training).
3. AdamW at ``lr`` with a linear warm-up over ``warmup_fraction`` of the run, then a cosine decay to 0
   (AdaIR: 2e-4, 15 of 150 epochs of warm-up).

Every ``eval_every`` iterations the model restores the fixed validation set (the validation photos,
``val_crops_per_photo`` crops per photo and degradation, never used in a table) and the metrics log gets
its mean PSNR and SSIM per task; ``out_dir/best.pt`` is the export with the best validation PSNR (the
checkpoint the chapter ships: selected on photos disjoint from the test photos). ``out_dir/last.pt``
(model, optimiser, RNG states, metrics, best score) is written atomically every ``checkpoint_every``
iterations and when ``--stop-after`` stops; a rerun with the same ``out_dir`` resumes exactly, and a
larger ``--iterations`` continues the run on the stretched schedule.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ispbench import atomic
from ispbench.data import photos
from ispbench.data.restoration import DEGRADATIONS, RestorationSet, degrade
from ispbench.seeding import seed_everything
from ispbench.tasks.restoration_eval import evaluate_restoration, per_task_means
from ispbench.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    restore_rng_state,
    resume_segments,
    rng_state,
    save_checkpoint,
)
from ispbench.training.config import flat_dict, parse
from ispbench.training.run import MetricsLog, finish_run, progress_bar, start_run

from .inference import export_model, make_restore_fn
from .network import EMBEDDED_CONFIG, PAPER_CONFIG, AdaIR, AdaIRConfig, count_parameters

MODEL_SIZES = {"embedded": EMBEDDED_CONFIG, "paper": PAPER_CONFIG}


@dataclass
class Args:
    """Arguments of :func:`train` (also the command line: ``--batch-size 8`` etc.)."""

    seed: int = 0
    """seed of every random number generator"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    model_size: str = "embedded"
    """``embedded`` (dim 16, one block per level: 1.1 M parameters) or ``paper`` (the authors' 28.8 M)"""
    mask_rule: str = "authors"
    """frequency-mask rule of the network (``authors`` or our fix ``fraction``, see ``network.py``)"""
    kinds: str = ",".join(DEGRADATIONS)
    """comma-separated in-domain degradations to train on (default: all seven of the five tasks)"""
    patch_size: int = 64
    """training crop side (authors: 128; 64 is a CPU shortcut: 4x fewer pixels per sample)"""
    batch_size: int = 8
    """samples per iteration"""
    iterations: int = 8000
    """training iterations"""
    lr: float = 2e-4
    """peak AdamW learning rate (AdaIR: 2e-4)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    warmup_fraction: float = 0.1
    """linear warm-up over this fraction of the run (AdaIR: 15 of 150 epochs)"""
    min_crop_scale: float = 0.3
    """crops are ``U(min_crop_scale, 1) x`` the photo's short side, resized to ``patch_size``"""
    val_crops_per_photo: int = 4
    """crops per validation photo and degradation in the fixed validation set"""
    val_size: int = 64
    """side of the validation crops"""
    eval_every: int = 250
    """validate (and update ``best.pt``) every this many iterations"""
    out_dir: str = ""
    """run folder; empty = ``runs/irpo_pretrain/seed<seed>``"""
    checkpoint_every: int = 250
    """write ``last.pt`` every this many iterations (and at the end)"""
    log_every: int = 50
    """metrics row every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment)"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end)"""
    export: str = ""
    """at the end copy the best-validation model (``best.pt``) here, e.g. ``ispbench/weights/adair_embedded.pt``"""
    progress_bar: bool = True
    """tqdm progress bar"""


def learning_rate(iteration: int, args: Args) -> float:
    """Linear warm-up to ``lr`` over ``warmup_fraction`` of the run, then cosine decay to 0.

    Example:
        >>> a = Args(iterations=1000, lr=1e-3, warmup_fraction=0.1)
        >>> learning_rate(50, a), learning_rate(100, a), round(learning_rate(1000, a), 12)
        (0.0005, 0.001, 0.0)
    """
    warmup = max(int(args.warmup_fraction * args.iterations), 1)
    if iteration < warmup:
        return args.lr * iteration / warmup
    progress = min((iteration - warmup) / max(args.iterations - warmup, 1), 1.0)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def parse_kinds(kinds: str) -> tuple[str, ...]:
    names = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = [k for k in names if k not in DEGRADATIONS]
    if not names or unknown:
        raise ValueError(f"kinds: expected a comma-separated subset of {list(DEGRADATIONS)}, got {kinds!r}")
    return names


class SampleStream:
    """Fresh training samples: photo, crop and degradation drawn from seeded generators (resumable)."""

    def __init__(self, kinds: tuple[str, ...], patch_size: int, min_crop_scale: float, seed: int,
                 photo_names: tuple[str, ...] | None = None) -> None:
        self.kinds, self.patch_size, self.min_crop_scale = kinds, patch_size, min_crop_scale
        self.names = tuple(photo_names or photos.photo_names("train"))
        self.images = [photos.load_photo(n) for n in self.names]
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(degraded, clean)``, each ``(n, 3, patch_size, patch_size)``."""
        clean, degraded = [], []
        for _ in range(n):
            img = self.images[int(self.rng.integers(len(self.images)))]
            crop = photos.random_crop(img, self.patch_size, self.rng, min_scale=self.min_crop_scale)
            x = torch.from_numpy(crop.transpose(2, 0, 1).copy())[None]
            kind = self.kinds[int(self.rng.integers(len(self.kinds)))]
            clean.append(x)
            degraded.append(degrade(x, kind, self.gen))
        return torch.cat(degraded), torch.cat(clean)

    def generators(self) -> dict:
        return {"crops": self.rng, "degradations": self.gen}


def validate(model: AdaIR, val: RestorationSet) -> dict[str, float]:
    """``{"val_psnr": mean over tasks, "val_ssim": ..., "val_psnr_<task>": ...}`` on the deterministic path."""
    was_training = model.training
    means = per_task_means(evaluate_restoration(make_restore_fn(model), val, batch_size=16))
    model.train(was_training)
    out = {"val_psnr": round(float(means.loc["average", "psnr"]), 4), "val_ssim": round(float(means.loc["average", "ssim"]), 5)}
    out.update({f"val_psnr_{task}": round(float(means.loc[task, "psnr"]), 4) for task in means.index if task != "average"})
    return out


def train(args: Args, stream: SampleStream | None = None, val: RestorationSet | None = None,
          config: AdaIRConfig | None = None) -> dict:
    """Run (or resume) pre-training; ``stream`` and ``val`` override the embedded data and ``config`` the
    network's size (tests pass small ones; the checkpoint records the config).

    Returns:
        ``{"model", "metrics", "summary", "out_dir"}``; the summary is also ``out_dir/summary.json``.
    """
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {list(MODEL_SIZES)}, got {args.model_size!r}")
    if args.patch_size % 8 or args.patch_size < 16:
        raise ValueError(f"patch_size must be a multiple of 8 and >= 16, got {args.patch_size}")
    kinds = parse_kinds(args.kinds)
    out_dir = start_run(args.out_dir or f"runs/irpo_pretrain/seed{args.seed}")
    seed_everything(args.seed)
    config = config or AdaIRConfig.from_dict({**MODEL_SIZES[args.model_size].to_dict(), "mask_rule": args.mask_rule})
    model = AdaIR(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    stream = stream or SampleStream(kinds, args.patch_size, args.min_crop_scale, args.seed)
    val = val or RestorationSet("val", kinds=kinds, crops_per_photo=args.val_crops_per_photo, size=args.val_size, seed=args.seed + 1000)
    start, rows, elapsed_before, best = 0, [], 0.0, {"val_psnr": -math.inf, "iteration": 0}
    window, window_n, window_t = 0.0, 0, 0.0  # sums since the last metrics row (checkpointed)
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, rows, elapsed_before, best = ckpt["iteration"], ckpt["metrics"], ckpt["elapsed_s"], dict(ckpt["best"])
        restore_rng_state(ckpt["rng"], stream.generators())
        window, window_n, window_t = ckpt["window"]
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {args.iterations}", file=sys.stderr)
    tasks = list(dict.fromkeys(val.task))
    log = MetricsLog(out_dir, rows, fieldnames=["iteration", "lr", "l1", "images_per_s", "elapsed_s", "val_psnr", "val_ssim",
                                                *[f"val_psnr_{t}" for t in tasks]])
    bar = progress_bar(args.iterations, start, "adair", enabled=args.progress_bar)
    end = args.iterations if not args.stop_after else min(args.iterations, start + args.stop_after)
    t0 = time.perf_counter()
    model.train()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def metadata(iteration: int, val_metrics: dict) -> dict:
        return {"train_args": flat_dict(args), "iterations": iteration, "elapsed_s": round(elapsed(), 1), "validation": val_metrics,
                "parameters": count_parameters(model)}

    for it in range(start, end):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(it, args)
        t_step = time.perf_counter()
        degraded, clean = stream.batch(args.batch_size)
        loss = F.l1_loss(model(degraded), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window += float(loss.detach())
        window_n += 1
        window_t += time.perf_counter() - t_step
        row: dict = {}
        if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
            row = {"iteration": it + 1, "lr": learning_rate(it, args), "l1": round(window / window_n, 6),
                   "images_per_s": round(window_n * args.batch_size / window_t, 3), "elapsed_s": round(elapsed(), 2)}
            window, window_n, window_t = 0.0, 0, 0.0
        if (it + 1) % args.eval_every == 0 or it + 1 == args.iterations:
            val_metrics = validate(model, val)
            row = {**({"iteration": it + 1} if not row else row), **val_metrics}
            if val_metrics["val_psnr"] > best["val_psnr"]:
                best = {"val_psnr": val_metrics["val_psnr"], "iteration": it + 1}
                export_model(model, out_dir / "best.pt", metadata=metadata(it + 1, val_metrics))
        if row:
            log.append(row)
            bar.set_postfix(l1=f"{row.get('l1', float('nan')):.4f}", val=f"{best['val_psnr']:.2f}")
        bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or it + 1 in (args.iterations, end):
            save_checkpoint(out_dir, {"iteration": it + 1, "args": flat_dict(args), "config": config.to_dict(),
                                      "model": model.state_dict(), "optimizer": optimizer.state_dict(), "metrics": log.rows,
                                      "elapsed_s": elapsed(), "rng": rng_state(stream.generators()), "segments": segments,
                                      "best": best, "window": [window, window_n, window_t]})
    bar.close()
    model.eval()
    finished = end == args.iterations
    summary = {"method": "adair_pretrain", "iterations": args.iterations, "reached": end, "elapsed_s": round(elapsed(), 1),
               "parameters": count_parameters(model), "best": best, "args": flat_dict(args),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": log.rows[-1] if log.rows else {}, "segments": segments}
    atomic.write_json(out_dir / "summary.json", summary)
    if args.export and finished and (out_dir / "best.pt").exists():
        with atomic.atomic_open(args.export, "wb") as f:
            f.write((out_dir / "best.pt").read_bytes())
    finish_run("ispbench.methods.irpo.inference:load_model", args.export if args.export and finished else out_dir / "last.pt")
    return {"model": model, "metrics": log.rows, "summary": summary, "out_dir": out_dir}


def main(argv: list[str] | None = None) -> int:
    """``ispbench train irpo-pretrain [--field value ...]``."""
    args = parse(Args, argv, prog="ispbench train irpo-pretrain", description=__doc__.split("\n\n")[0])
    result = train(args)
    print(json.dumps(result["summary"]["last_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Args", "MODEL_SIZES", "SampleStream", "learning_rate", "main", "parse_kinds", "train", "validate"]
