"""IRPO: GRPO post-training of the pre-trained AdaIR on its worst-restored samples (one-file trainer).

    ispbench train irpo --iterations 2000 --seed 0 --export ispbench/weights/irpo_embedded.pt

Before training: the pre-trained model (``init_weights``) restores every sample of the training pool
(:class:`~ispbench.data.restoration.RestorationSet` ``("train")``: photo x degradation x crop) and
:func:`~.selection.select_samples` keeps the worst ``fraction`` per degradation (``selection=random``:
the same counts at random).

What one iteration does (the authors' "flow-style" GRPO, reference ``grpo_ir``; defaults are theirs):

1. The next ``batch_size`` (1) selected samples, each repeated ``group_size`` (4) times.
2. The stochastic path samples the Beta heads of the three frequency modules (ratios and fusion gains,
   reparameterised) and restores each copy; ``log p`` is the sum of the heads' log-densities.
3. Rewards (no gradient) of each restoration, summed over ``rewards``: ``general`` (``0.4 PSNR/40 +
   0.3 SSIM + 0.3 (1 - d)``, ``d`` = LPIPS or the named stand-in ``perceptual``), ``expert`` (a 1-5
   judge mapped to [0, 1]; embedded: the NIQE judge, a stand-in for Qwen-VL) and ``restoration`` (the
   project's per-degradation term, :mod:`ispbench.tasks.restoration_rewards`).
4. Advantages ``(r - mean) / (std + 1e-8)`` within each group; loss ``PPO-clip(ratio, A) + 0.1 L1(out, clean)
   + 0.05 L1(out, deterministic out)``. With one update per group (the authors') the ratio is
   identically 1 and PPO-clip is the plain policy gradient; ``updates_per_group > 1`` replays the same
   samples (their stored actions) with the new/old ratio clipped to ``1 +- clip_range``.
5. AdamW (weight decay 1e-4) on the ``trainable`` set (authors: the policy heads, the norms of
   ``decoder_level1``, ``refinement`` and the output convolution) at ``lr`` (authors' effective 5e-6)
   with a linear warm-up over ``warmup_fraction`` and cosine decay; no gradient clipping (the authors'
   0.5 never acts, see ``grad_clip``).

Where the authors' run differs and this trainer does not follow (named here, measured in the chapter):
4 inputs per step on 4 GPUs (``batch_size``), about 186k steps over ~7,400 selected images re-cropped and
re-noised every epoch (here: fixed selected crops, ``iterations``); their clamp makes dehazing two thirds of
the selected data and they train all three noise levels' worst lists at sigma 25 (here: equal counts per
kind, each at its own level); their optimiser lists the ``decoder_level1`` norms twice and the
``refinement`` norms three times, so AdamW steps those 2-3 times per iteration (here: once).

``objective=l1`` is the control the authors' code does not have: the same selected samples, steps,
trainable parameters and schedule, trained with ``L1(deterministic out, clean)`` only, so the chapter can
say whether GRPO adds anything beyond more supervised training.

Every ``eval_every`` iterations both inference paths restore the validation set (validation photos);
``out_dir/best.pt`` is the export with the best deterministic validation PSNR (the test-time path).
``out_dir/last.pt`` is written atomically every ``checkpoint_every`` iterations; a rerun resumes exactly.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn import functional as F

from ispbench import atomic
from ispbench.data.restoration import DEGRADATIONS, RestorationSet
from ispbench.seeding import seed_everything
from ispbench.tasks.quality_judge import NIQEJudge, VLMJudge, expert_reward, fit_niqe
from ispbench.tasks.restoration_eval import evaluate_restoration, per_task_means
from ispbench.tasks.restoration_rewards import PERCEPTUAL, general_reward, perceptual_distance, restoration_reward
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

from .inference import PRETRAINED_WEIGHTS, export_model, load_model, make_restore_fn
from .network import AdaIR, count_parameters
from .selection import STRATEGIES, select_samples

REWARDS = ("general", "expert", "restoration")
OBJECTIVES = ("grpo", "l1")
TRAINABLE = ("authors", "policy", "all")


@dataclass
class Args:
    """Arguments of :func:`train` (also the command line: ``--group-size 4`` etc.)."""

    seed: int = 0
    """seed of every random number generator"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    init_weights: str = ""
    """the pre-trained AdaIR (``ispbench train irpo-pretrain --export``); empty = the shipped ``adair_embedded.pt``"""
    objective: str = "grpo"
    """``grpo`` (IRPO) or ``l1`` (the supervised control: L1 on the deterministic path, same data and steps)"""
    rewards: str = "general,expert,restoration"
    """comma-separated rewards summed with equal weights (the reward ablation's rows)"""
    perceptual: str = "lpips"
    """the general reward's perceptual distance: ``lpips`` (needs the AlexNet weights) or the stand-in ``gmsd``"""
    judge: str = "niqe"
    """expert judge: ``niqe`` (the embedded stand-in, fitted on the pool's clean crops) or a local VLM folder"""
    selection: str = "worst"
    """``worst`` (the authors') or ``random``: which samples of the pool to post-train on"""
    fraction: float = 0.3
    """share of the pool kept per degradation (authors: 0.3)"""
    pool_crops_per_photo: int = 24
    """crops per training photo and degradation in the pool"""
    patch_size: int = 64
    """pool crop side (authors: 128-px patches)"""
    group_size: int = 4
    """samples per input (authors: 4)"""
    batch_size: int = 1
    """inputs per iteration (authors: 1 per GPU on 4 GPUs, so 4 per optimiser step; 1 is a CPU shortcut)"""
    updates_per_group: int = 1
    """optimiser steps on each group (authors: 1, so the PPO ratio is identically 1)"""
    clip_range: float = 0.2
    """PPO clip range of the ratio (authors: 0.2)"""
    lambda_sup: float = 0.1
    """weight of ``L1(out, clean)`` (authors: 0.1)"""
    lambda_consistency: float = 0.05
    """weight of ``L1(out, deterministic out)`` (authors: 0.05)"""
    lr: float = 5e-6
    """peak AdamW learning rate (authors' effective 5e-6: the script's 5e-5 times 0.1)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (authors: 1e-4)"""
    warmup_fraction: float = 0.15
    """linear warm-up over this fraction of the run (authors: 15 of 100 epochs)"""
    grad_clip: float = 0.0
    """gradient-norm clipping (0 = off). The authors' script sets 0.5, but their ``optimizer_step`` clips before
    Lightning's closure runs the backward pass, i.e. it clips the previous step's (then zeroed) gradients: in effect
    no clipping, which is the default here"""
    trainable: str = "authors"
    """``authors`` (heads, decoder_level1 norms, refinement, output conv), ``policy`` (heads only) or ``all``"""
    mask_rule: str = ""
    """override the network's frequency-mask rule (``fraction``: our fix of the inert ratio heads); empty = as trained"""
    iterations: int = 2000
    """training iterations"""
    val_crops_per_photo: int = 4
    """crops per validation photo and degradation"""
    eval_every: int = 200
    """validate both inference paths (and update ``best.pt``) every this many iterations"""
    out_dir: str = ""
    """run folder; empty = ``runs/irpo/<objective>_seed<seed>``"""
    checkpoint_every: int = 100
    """write ``last.pt`` every this many iterations (and at the end)"""
    log_every: int = 20
    """metrics row every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment)"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end)"""
    export: str = ""
    """at the end copy the best-validation model (``best.pt``) here"""
    progress_bar: bool = True
    """tqdm progress bar"""


def parse_rewards(rewards: str) -> tuple[str, ...]:
    names = tuple(r.strip() for r in rewards.split(",") if r.strip())
    if not names or set(names) - set(REWARDS):
        raise ValueError(f"rewards: expected a comma-separated subset of {list(REWARDS)}, got {rewards!r}")
    return names


def learning_rate(iteration: int, args: Args) -> float:
    """Linear warm-up to ``lr`` over ``warmup_fraction`` of the run, then cosine decay to 0."""
    warmup = max(int(args.warmup_fraction * args.iterations), 1)
    if iteration < warmup:
        return args.lr * (iteration + 1) / warmup
    progress = min((iteration - warmup) / max(args.iterations - warmup, 1), 1.0)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable_parameters(model: AdaIR, which: str) -> list[torch.nn.Parameter]:
    if which == "authors":
        return model.authors_trainable_parameters()
    if which == "policy":
        return model.policy_parameters()
    if which == "all":
        return list(model.parameters())
    raise ValueError(f"trainable must be one of {list(TRAINABLE)}, got {which!r}")


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B * G,)`` rewards (groups contiguous) -> ``(r - group mean) / (group std + 1e-8)``.

    Example:
        >>> group_advantages(torch.tensor([1.0, 3.0, 0.0, 0.0]), 2).tolist()
        [-0.7071067690849304, 0.7071067690849304, 0.0, 0.0]
    """
    r = rewards.view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-8)).flatten()


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> torch.Tensor:
    """``mean(max(-A ratio, -A clamp(ratio, 1 - eps, 1 + eps)))`` with ``ratio = exp(log p - old log p)``."""
    ratio = torch.exp(log_prob - old_log_prob.detach())
    return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()


def loss_terms(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, out: torch.Tensor,
               clean: torch.Tensor, deterministic: torch.Tensor, args: Args) -> dict[str, torch.Tensor]:
    """IRPO's loss terms, unweighted: ``pg`` (PPO-clip), ``sup`` (``L1(out, clean)``) and ``consistency``
    (``L1(out, deterministic out)``); the loss is ``pg + lambda_sup * sup + lambda_consistency * consistency``."""
    return {"pg": ppo_clip_loss(log_prob, old_log_prob, advantages, args.clip_range), "sup": F.l1_loss(out, clean),
            "consistency": F.l1_loss(out, deterministic)}


RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[str]], dict[str, torch.Tensor]]


def build_reward(names: tuple[str, ...], args: Args, pool: Any) -> tuple[RewardFn, dict[str, Any]]:
    """The summed reward ``(degraded, restored, clean, tasks) -> {"total": (B,), name: (B,) ...}`` and what it is made of."""
    parts: dict[str, Callable] = {}
    info: dict[str, Any] = {"rewards": list(names)}
    if "general" in names:
        distance = perceptual_distance(args.perceptual)
        info["perceptual"] = args.perceptual if args.perceptual == "lpips" else f"{args.perceptual} (stand-in for LPIPS)"
        parts["general"] = lambda d, r, c, t: general_reward(r, c, perceptual=distance)
    if "expert" in names:
        if args.judge == "niqe":
            model = fit_niqe(list(pool.clean))
            judge = NIQEJudge.calibrate(pool.clean, pool.degraded, model)
        else:
            judge = VLMJudge(args.judge)
        info["judge"] = judge.name
        parts["expert"] = lambda d, r, c, t: expert_reward(judge, d, r, c)
    if "restoration" in names:
        parts["restoration"] = lambda d, r, c, t: restoration_reward(r, c, t)

    def reward(degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor, tasks: list[str]) -> dict[str, torch.Tensor]:
        # the general reward scores the raw output, as the authors' (overshoot outside [0, 1] costs PSNR); the
        # judge and the restoration terms see it clamped, as an image written to disk
        clamped = restored.clamp(0, 1)
        out = {name: fn(degraded, restored if name == "general" else clamped, clean, tasks).float() for name, fn in parts.items()}
        for name, value in out.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(f"reward {name!r} is not finite: {value.tolist()}")
        out["total"] = torch.stack(list(out.values())).sum(0)
        return out

    return reward, info


def validate(model: AdaIR, val: Any) -> dict[str, float]:
    """Mean PSNR / SSIM over tasks of both inference paths (``val_*``: deterministic, ``val_stochastic_*``)."""
    out = {}
    for prefix, stochastic in (("val", False), ("val_stochastic", True)):
        means = per_task_means(evaluate_restoration(make_restore_fn(model, stochastic=stochastic), val, batch_size=16))
        out[f"{prefix}_psnr"] = round(float(means.loc["average", "psnr"]), 4)
        out[f"{prefix}_ssim"] = round(float(means.loc["average", "ssim"]), 5)
    return out


def train(args: Args, model: AdaIR | None = None, pool: Any = None, val: Any = None) -> dict:
    """Run (or resume) post-training; ``model``, ``pool`` and ``val`` override the shipped model and the
    embedded data (tests pass small ones).

    Returns:
        ``{"model", "metrics", "summary", "out_dir", "selected"}``; the summary is also ``out_dir/summary.json``.
    """
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for name, value, valid in (("objective", args.objective, OBJECTIVES), ("selection", args.selection, STRATEGIES),
                               ("trainable", args.trainable, TRAINABLE), ("perceptual", args.perceptual, PERCEPTUAL)):
        if value not in valid:
            raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")
    if args.group_size < 2 and args.objective == "grpo":
        raise ValueError(f"group_size must be >= 2 for group-normalised advantages, got {args.group_size}")
    if args.updates_per_group < 1:
        raise ValueError(f"updates_per_group must be >= 1, got {args.updates_per_group}")
    names = parse_rewards(args.rewards)
    out_dir = start_run(args.out_dir or f"runs/irpo/{args.objective}_seed{args.seed}")
    seed_everything(args.seed)
    model = model or load_model(args.init_weights or PRETRAINED_WEIGHTS)
    if args.mask_rule:
        for m in model.frequency_modules():
            m.mask_rule = args.mask_rule
    pool = pool if pool is not None else RestorationSet("train", kinds=DEGRADATIONS, crops_per_photo=args.pool_crops_per_photo,
                                                        size=args.patch_size, seed=args.seed)
    val = val if val is not None else RestorationSet("val", kinds=DEGRADATIONS, crops_per_photo=args.val_crops_per_photo,
                                                     size=args.patch_size, seed=args.seed + 1000)
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    if ckpt is None:
        pool_scores = evaluate_restoration(make_restore_fn(model), pool, batch_size=16)
        selected = select_samples(pool_scores, fraction=args.fraction, strategy=args.selection, seed=args.seed)
        atomic.write_text(out_dir / "pool_scores.csv", pool_scores.assign(selected=pool_scores.index.isin(selected)).to_csv(index=False))
    else:
        selected = [int(i) for i in ckpt["selected"]]
    reward_fn, reward_info = build_reward(names, args, pool) if args.objective == "grpo" else (None, {})
    params = trainable_parameters(model, args.trainable)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    order, cursor = torch.randperm(len(selected), generator=gen), 0
    start, rows, elapsed_before, best = 0, [], 0.0, {"val_psnr": -math.inf, "iteration": 0}
    window: dict[str, float] = {}  # sums since the last metrics row (checkpointed)
    window_n = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, rows, elapsed_before, best = ckpt["iteration"], ckpt["metrics"], ckpt["elapsed_s"], dict(ckpt["best"])
        order, cursor = ckpt["order"], ckpt["cursor"]
        window, window_n = dict(ckpt["window"]), int(ckpt["window_n"])
        restore_rng_state(ckpt["rng"], {"data": gen})
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {args.iterations}", file=sys.stderr)
    step_columns = (["l1"] if args.objective == "l1" else
                    [*[f"reward_{k}" for k in (*names, "total")], "reward_group_std", "pg_loss", "sup_loss", "consistency_loss"])
    log = MetricsLog(out_dir, rows, fieldnames=["iteration", "lr", *step_columns, "elapsed_s", "val_psnr", "val_ssim",
                                                "val_stochastic_psnr", "val_stochastic_ssim"])
    if ckpt is None:  # iteration 0: the pre-trained model's validation scores start the curve
        log.append({"iteration": 0, **validate(model, val)})
    bar = progress_bar(args.iterations, start, f"irpo-{args.objective}", enabled=args.progress_bar)
    end = args.iterations if not args.stop_after else min(args.iterations, start + args.stop_after)
    t0 = time.perf_counter()
    model.train()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def metadata(iteration: int, val_metrics: dict) -> dict:
        return {"train_args": flat_dict(args), "iterations": iteration, "elapsed_s": round(elapsed(), 1),
                "validation": val_metrics, "reward": reward_info, "selected": len(selected)}

    for it in range(start, end):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(it, args)
        idx = []
        for _ in range(args.batch_size):
            if cursor >= len(selected):
                order, cursor = torch.randperm(len(selected), generator=gen), 0
            idx.append(selected[int(order[cursor])])
            cursor += 1
        degraded, clean = pool.degraded[idx], pool.clean[idx]
        tasks = [pool.task[i] for i in idx]
        stats: dict[str, float] = {}
        if args.objective == "l1":
            loss = F.l1_loss(model(degraded), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
            optimizer.step()
            stats["l1"] = float(loss.detach())
        else:
            g = args.group_size
            x, c = degraded.repeat_interleave(g, 0), clean.repeat_interleave(g, 0)
            out, log_prob = model(x, stochastic=True)
            actions = model.last_actions
            with torch.no_grad():
                rewards = reward_fn(x, out.detach(), c, [t for t in tasks for _ in range(g)])
                advantages = group_advantages(rewards["total"], g)
                deterministic = model(x)
            old_log_prob = log_prob.detach()
            for update in range(args.updates_per_group):
                if update:  # replay the group's samples under the updated heads
                    out, log_prob = model(x, stochastic=True, actions=actions)
                terms = loss_terms(log_prob, old_log_prob, advantages, out, c, deterministic, args)
                loss = terms["pg"] + args.lambda_sup * terms["sup"] + args.lambda_consistency * terms["consistency"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if args.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
                optimizer.step()
            stats.update({f"reward_{k}": float(v.mean()) for k, v in rewards.items()})
            stats.update({"reward_group_std": float(rewards["total"].view(-1, g).std(1).mean()), "pg_loss": float(terms["pg"].detach()),
                          "sup_loss": float(terms["sup"].detach()), "consistency_loss": float(terms["consistency"].detach())})
        for k, v in stats.items():
            window[k] = window.get(k, 0.0) + v
        window_n += 1
        row: dict = {}
        if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
            row = {"iteration": it + 1, "lr": learning_rate(it, args), **{k: round(v / window_n, 6) for k, v in window.items()},
                   "elapsed_s": round(elapsed(), 2)}
            window, window_n = {}, 0
        if (it + 1) % args.eval_every == 0 or it + 1 == args.iterations:
            val_metrics = validate(model, val)
            row = {**({"iteration": it + 1} if not row else row), **val_metrics}
            if val_metrics["val_psnr"] > best["val_psnr"]:
                best = {"val_psnr": val_metrics["val_psnr"], "iteration": it + 1}
                export_model(model, out_dir / "best.pt", metadata=metadata(it + 1, val_metrics))
        if row:
            log.append(row)
            bar.set_postfix(val=f"{best['val_psnr']:.2f}")
        bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or it + 1 in (args.iterations, end):
            save_checkpoint(out_dir, {"iteration": it + 1, "args": flat_dict(args), "config": model.config.to_dict(),
                                      "model": model.state_dict(), "optimizer": optimizer.state_dict(), "metrics": log.rows,
                                      "elapsed_s": elapsed(), "rng": rng_state({"data": gen}), "segments": segments,
                                      "best": best, "selected": torch.tensor(selected), "order": order, "cursor": cursor,
                                      "window": window, "window_n": window_n})
    bar.close()
    model.eval()
    finished = end == args.iterations
    summary = {"method": f"irpo_{args.objective}", "iterations": args.iterations, "reached": end, "elapsed_s": round(elapsed(), 1),
               "trainable_parameters": sum(p.numel() for p in params), "parameters": count_parameters(model),
               "selected": len(selected), "pool": len(pool), "best": best, "reward": reward_info, "args": flat_dict(args),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": log.rows[-1] if log.rows else {}, "segments": segments}
    atomic.write_json(out_dir / "summary.json", summary)
    if args.export and finished and (out_dir / "best.pt").exists():
        with atomic.atomic_open(args.export, "wb") as f:
            f.write((out_dir / "best.pt").read_bytes())
    finish_run("ispbench.methods.irpo.inference:load_model", args.export if args.export and finished else out_dir / "last.pt")
    return {"model": model, "metrics": log.rows, "summary": summary, "out_dir": out_dir, "selected": selected}


def main(argv: list[str] | None = None) -> int:
    """``ispbench train irpo [--field value ...]``."""
    args = parse(Args, argv, prog="ispbench train irpo", description=__doc__.split("\n\n")[0])
    result = train(args)
    print(json.dumps(result["summary"]["last_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Args", "OBJECTIVES", "REWARDS", "TRAINABLE", "build_reward", "group_advantages", "learning_rate", "main",
           "loss_terms", "parse_rewards", "ppo_clip_loss", "train", "trainable_parameters", "validate"]
