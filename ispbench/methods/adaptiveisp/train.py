"""Train an AdaptiveISP policy (one-file trainer, CleanRL style).

    ispbench train adaptiveisp --iterations 600 --lr 3e-4 --seed 0 --out-dir runs/adaptiveisp

What one iteration does (authors' code, paper Sec. 3 and App. A.1/C):

1. Draw ``batch_size`` states from a **replay pool** of ``pool_size`` (128) images at
   intermediate stages (each with its "used" bits, stage index, boxes and cached detector loss).
2. Policy: module logits and all modules' parameters (tanh -> range); the module is sampled from
   ``(1 - eps) softmax + eps / A`` (authors' epsilon-greedy, eps = 0.05); STOP (optional ``--use-stop``) = skip.
   The state's stage plane holds ``t`` (authors' code).
3. Run only the chosen module per sample (differentiable ISP), score the output with the
   *frozen* detector: ``r = (clip(L_in) - clip(L_out)) * 100 - reuse - lambda_c * cost - overexp``.
4. One-step TD: ``Q = r + gamma * (1 - terminated)(1 - truncated) V(s')``; critic loss
   ``(Q.detach() - V(s))^2`` (``gamma`` = 1 in the authors' code); selector loss REINFORCE with the TD advantage
   ``-(Q - V(s)) log pi(a|s)`` (``pi`` = the epsilon-mixed probabilities)
   plus the decaying entropy penalty; parameter loss ``-Q``: its gradient flows straight through
   the differentiable ISP, the frozen detector (the ``L_out`` term) and the frozen-for-this-term
   value net (``V(s')``) into the parameter heads.
5. Put the outputs back into the pool; finished (T stages / STOP) or truncated samples are replaced
   by fresh images at stage 0.

Our switchable options for short CPU runs (all off / the authors' code by default; the shipped checkpoint's model
card says which it used; :data:`.recipes.CPU_SHORTCUTS` lists the CPU recipe's): ``--gamma 0.99``, ``--grad-clip 1``,
``--epsilon-mode replace``, ``--stage-plane fraction``, ``--contrast-stat std``, ``--mask-reuse`` (already-used modules masked out of the softmax),
``--param-init hpo`` (head biases = the HPO baseline's learned values), ``--param-warmup N`` (uniform module choice,
no selector loss, for the first N iterations), ``--advantage-norm``, ``--param-objective reward`` (heads maximise
the stage's own reward, not Q), ``--snapshot-every N`` (exported snapshots for validation-split selection).

Adam for both nets (3e-5 in the paper; larger for short CPU runs), learning rate x0.1 per third of
training (``lr * 0.1 ** (3 * it / iterations)``, App. A.1), gradient-norm clipping (to 1e-5, authors' code). Checkpoints
(nets, optimisers, pool, data order, RNG states, metrics) are written atomically to
``out_dir/last.pt``; a rerun with the same ``out_dir`` resumes from there (refused when the settings differ, unless
``--allow-changed-settings``) and gives the same result as an uninterrupted run, including the metric
rows when it stopped between two log points (the running averages are in the checkpoint). Metrics go to ``out_dir/metrics.csv``; ``--export PATH`` writes the
inference-only policy (float16) that :func:`ispbench.methods.adaptiveisp.inference.load_policy` reads.
At the end the policy is scored on ``--final-eval-images`` validation images (mean detector loss of
input and output, ``summary.json``'s ``final_eval``; 0 skips it). Data, detector, targets and the
learning-rate schedule come from :mod:`ispbench.training.detection`.
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ispbench import atomic, ops
from ispbench.detection_baselines.models import default_weights, load_baseline
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

from . import agent
from .inference import run_policy
from .networks import PolicyNet, ValueNet, entropy


@dataclass
class Args:
    """Arguments of :func:`train` (also the command line: ``--batch-size 8`` etc.)."""

    exp_name: str = "adaptiveisp"
    """name of the run (used in the default ``out_dir``)"""
    seed: int = 0
    """seed of every random number generator (data order, sampling, dropout, initialisation)"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    """training data and frozen detector"""
    batch_size: int = 8
    """states per iteration (8 in the paper)"""
    iterations: int = 100_000
    """training iterations (100k in the paper)"""
    lr: float = 3e-5
    """Adam learning rate of policy and value nets (3e-5 in the paper; ~3e-4 for short CPU runs)"""
    selector_lr: float = 0.0
    """learning rate of the module selector (CNN + softmax head); 0 = ``lr``. A short CPU run can use the
    paper's 3e-5 here and a larger ``lr`` for the parameter heads and the critic (their gradients are direct)"""
    lr_decay: bool = True
    """multiply the learning rate by 0.1 per third of training (``lr * 0.1 ** (3 it / iterations)``)"""
    grad_clip: float = 1e-5
    """clip the gradient norm of each net to this value (0 = off). Authors' code: 1e-5, which clips nearly every
    step, so Adam sees gradients of norm 1e-5 and its ``eps`` (1e-8) damps the per-weight steps; our former
    default (the shipped CPU recipe) is 1.0"""
    gamma: float = 1.0
    """discount factor of the one-step TD target (authors' code: 1.0, episodes are at most T stages; our former
    default, the CPU recipe's: 0.99)"""
    epsilon_mode: str = "mixed"
    """how ``epsilon`` explores: ``mixed`` (authors' code: sample from ``(1 - eps) softmax + eps / A`` over the
    valid actions, and REINFORCE uses the log of these mixed probabilities) or ``replace`` (our former choice, the
    CPU recipe's: sample from the softmax, replace the sample by a uniform valid action with probability ``eps``,
    REINFORCE with ``log softmax``)"""
    stage_plane: str = "index"
    """what the stage plane of the policy and value inputs holds: ``index`` = ``t`` (authors' code) or ``fraction``
    = ``t / T`` (our former choice, the CPU recipe's and the shipped embedded policy's); stored in the exported
    policy's config, which inference follows"""
    contrast_stat: str = "variance"
    """the value net's contrast input: ``variance`` of the luminance (authors' code) or its ``std`` (our former
    choice, the CPU recipe's); recorded in the policy's config"""
    denoise_window: int = 11
    """search window of Denoise's non-local means (11 = the authors'); our speed option: 5 or 3 at 160 px cover the
    scene area of the authors' 11 at 512 px and make an all-Denoise step 1.09x / 1.02x a step without Denoise
    (11: 1.61x; ``ispbench bench ops --step``); recorded in the policy's config, which inference follows"""
    T: int = 5
    """maximum number of ISP stages (5 in the paper)"""
    use_stop: bool = False
    """add a learned STOP action (our extension: later stages are skipped)"""
    lambda_c: float = 0.0
    """run-time cost weight (eq. 11); 0 = accuracy-oriented Table 1 model; authors' code default 0.01"""
    reuse_penalty: float = 1.0
    """penalty for picking a module again (1.0; 0 = the Table 8 ablation)"""
    overexposure_weight: float = 1.0
    """weight of ``mean(relu(x - 1)^2)``"""
    entropy_coef: float = 0.05
    """entropy penalty ``(1 - progress) * coef * (ln A - H)`` (eq. 10, authors' form)"""
    epsilon: float = 0.05
    """epsilon-greedy exploration probability of the module choice (0.05, authors' code; see ``epsilon_mode``)"""
    reward_scale: float = 100.0
    """multiplier of the clipped detector-loss difference"""
    loss_clip: float = 0.0
    """clip the detector loss to ``[0, loss_clip]`` in the reward, which is divided by it (authors: 1 for their
    YOLOv3 loss); 0 = auto: the 90th percentile of the detector loss of the initial pool's input images"""
    disabled_modules: str = ""
    """comma-separated modules the policy may never pick (e.g. ``denoise``: our NLM is ~6 s/image on a CPU)"""
    truncate_low: float = 0.01
    """truncate a trajectory when the image mean drops below this"""
    truncate_high: float = 0.9
    """... or rises above this"""
    pool_size: int = 128
    """replay pool of images at intermediate stages (128 in the authors' code)"""
    mask_reuse: bool = False
    """mask modules already used in the episode out of the selector's softmax (training, exploration and,
    via the exported config, inference): the hard form of the paper's "used" channels + reuse penalty
    (our option; off = the paper, which only penalises reuse in the reward)"""
    param_init: str = "identity"
    """start of the parameter heads' output bias: ``identity`` (each module's identity) or ``hpo`` (the HPO
    baseline's learned raw values from ``param_init_weights``, for the modules in its pipeline; our option)"""
    param_init_weights: str = ""
    """HPO checkpoint for ``param_init=hpo`` (empty = ``ispbench/weights/hpo_embedded.pt``)"""
    param_warmup: int = 0
    """first this many iterations: modules chosen uniformly at random (among the allowed ones), selector loss
    off, so every parameter head and the critic learn before the selector does (our option; 0 = off)"""
    advantage_norm: bool = False
    """normalise the selector's TD advantage over the batch (zero mean, unit std; our option). Without it the
    advantage is in reward units (0-100 scale), which dwarfs the entropy term"""
    param_objective: str = "q"
    """what the parameter heads maximise: ``q`` (paper: ``Q = r + gamma V(s')``, gradient also through the critic's
    ``V(s')``) or ``reward`` (our option: the stage's own reward ``r`` only, i.e. the detector-loss drop of this
    stage, as HPO/attention optimise the loss directly; avoids following an untrained critic's gradient)"""
    snapshot_every: int = 0
    """also export the inference policy to ``out_dir/policy_it<N>.pt`` every this many iterations (0 = off),
    for model selection on the validation split"""
    param_heads: str = "per_module"
    """``per_module`` (authors' code, 4096-128-n per module) or ``shared`` (one 4096-128 layer; 5x smaller)"""
    out_dir: str = ""
    """run folder (checkpoint, metrics.csv); empty = ``runs/adaptiveisp/<exp_name>__<seed>``"""
    checkpoint_every: int = 100
    """write ``last.pt`` every this many iterations (and at the end)"""
    log_every: int = 10
    """average and write metrics every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment in ``last.pt`` and
    ``summary.json``); without it such a resume is refused. Run length, stop, cadence, threads, export and progress
    bar may always change (``ispbench.training.checkpoint.SEGMENT_SETTINGS``)"""
    stop_after: int = 0
    """leave after this many iterations of this invocation (checkpointed; 0 = run to the end); a later run resumes"""
    export: str = ""
    """at the end, write the inference-only float16 policy here (e.g. ``ispbench/weights/adaptiveisp_embedded.pt``)"""
    progress_bar: bool = True
    """show a tqdm progress bar"""
    final_eval_images: int = 8
    """at the end, score the policy on this many validation images (mean detector loss of the input and of the
    policy's output, in ``summary.json``; 0 = skip)"""


# ----------------------------------------------------------------------------- helpers
class ReplayPool:
    """Images at intermediate ISP stages (authors' code: a pool of 128).

    Slots hold the current image, its "used" bits, stage index, labels and the cached detector
    loss of the current image (NaN until computed). The state of the pool is part of checkpoints.
    """

    def __init__(self, size: int, n_modules: int, imgsz: int, dataset, generator: torch.Generator) -> None:
        self.size, self.n_modules, self.imgsz, self.dataset, self.gen = size, n_modules, imgsz, dataset, generator
        self.images = torch.zeros(size, 3, imgsz, imgsz)
        self.used = torch.zeros(size, n_modules)
        self.stage = torch.zeros(size, dtype=torch.long)
        self.loss = torch.full((size,), float("nan"))
        self.labels: list[torch.Tensor] = [torch.zeros(0, 5)] * size
        self.data_index = torch.zeros(size, dtype=torch.long)
        self.order = torch.randperm(len(dataset), generator=generator)
        self.cursor = 0
        for slot in range(size):
            self.refill(slot)

    def next_index(self) -> int:
        if self.cursor >= len(self.order):
            self.order = torch.randperm(len(self.dataset), generator=self.gen)
            self.cursor = 0
        index = int(self.order[self.cursor])
        self.cursor += 1
        return index

    def refill(self, slot: int) -> None:
        index = self.next_index()
        self.images[slot], self.labels[slot] = load_sample(self.dataset, index, self.imgsz)
        self.used[slot] = 0
        self.stage[slot] = 0
        self.loss[slot] = float("nan")
        self.data_index[slot] = index

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("images", "used", "stage", "loss", "labels", "data_index", "order", "cursor")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def export_policy(policy: PolicyNet, path: str | Path, *, metadata: dict | None = None) -> Path:
    """Write the inference-only policy (float16 weights + config) atomically."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in policy.state_dict().items()}
    payload = {"format": "ispbench.adaptiveisp.policy/1", "config": policy.config(), "state_dict": state, "metadata": metadata or {}}
    return atomic.torch_save(payload, path)


@torch.no_grad()
def final_evaluation(policy: PolicyNet, detector, settings: DetectionSettings, n_images: int, T: int,
                     batch_size: int = 8) -> dict:
    """Mean per-image detector loss of the first ``n_images`` validation images, as input and after the policy.

    The policy runs greedily (test time, :func:`.inference.run_policy`); a lower ``val_loss_policy``
    than ``val_loss_input`` means the learned ISP helps the frozen detector. Cheap by design (a
    handful of images); the notebooks report mAP.
    """
    dataset = train_dataset(settings, split="val", n_images=n_images)
    device = next(policy.parameters()).device
    was_training = policy.training
    loss_in, loss_out = [], []
    for first in range(0, len(dataset), batch_size):
        samples = [load_sample(dataset, i, settings.imgsz) for i in range(first, min(first + batch_size, len(dataset)))]
        x = torch.stack([s[0] for s in samples]).to(device)
        targets = make_targets([s[1] for s in samples]).to(device)
        loss_in.append(detector.per_image_loss(x, targets).float().cpu())
        loss_out.append(detector.per_image_loss(run_policy(policy, x, T).outputs, targets).float().cpu())
    policy.train(was_training)
    li, lo = torch.cat(loss_in), torch.cat(loss_out)
    return {"split": "val", "images": len(dataset), "val_loss_input": float(li.mean()), "val_loss_policy": float(lo.mean()),
            "val_improved_frac": float((lo < li).float().mean())}


# ----------------------------------------------------------------------------- training
def train(args: Args) -> dict:
    """Run (or resume) training; returns a summary dict (also written to ``out_dir/summary.json``)."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out_dir = start_run(args.out_dir or f"runs/adaptiveisp/{args.exp_name}__{args.seed}")
    gen = seed_everything(args.seed)
    settings = args.detection
    device = torch.device(settings.device)
    imgsz = settings.imgsz

    dataset = train_dataset(settings)
    detector = build_detector(settings)

    names = list(ops.MODULE_NAMES)
    n_modules = len(names)
    disabled = [m.strip() for m in args.disabled_modules.split(",") if m.strip()]
    policy = PolicyNet(names, use_stop=args.use_stop, param_heads=args.param_heads, disabled_modules=disabled,
                       mask_reuse=args.mask_reuse, stage_plane=args.stage_plane,
                       contrast_stat=args.contrast_stat, denoise_window=args.denoise_window).to(device)
    if args.epsilon_mode not in agent.EPSILON_MODES:
        raise ValueError(f"epsilon_mode must be one of {list(agent.EPSILON_MODES)}, got {args.epsilon_mode!r}")
    plane, contrast = args.stage_plane, args.contrast_stat
    if args.param_init == "hpo":
        hpo = load_baseline(args.param_init_weights or default_weights("hpo"))
        set_ = policy.init_head_biases({k: v.detach().float() for k, v in hpo.raw.items()})
        print(f"param_init=hpo: head biases of {set_} from the HPO baseline", file=sys.stderr)
    elif args.param_init != "identity":
        raise ValueError(f"param_init must be 'identity' or 'hpo', got {args.param_init!r}")
    n_valid = int(policy.action_mask.sum())
    value = ValueNet(n_modules).to(device)
    selector_params = list(policy.selector_features.parameters()) + list(policy.selector.parameters())
    selector_ids = {id(p) for p in selector_params}
    head_params = [p for p in policy.parameters() if id(p) not in selector_ids]
    selector_scale = (args.selector_lr / args.lr) if args.selector_lr > 0 else 1.0
    policy_opt = torch.optim.Adam(
        [{"params": head_params, "lr_scale": 1.0}, {"params": selector_params, "lr_scale": selector_scale}], lr=args.lr
    )
    value_opt = torch.optim.Adam(value.parameters(), lr=args.lr)
    costs = agent.module_costs(names)
    pool = ReplayPool(args.pool_size, n_modules, imgsz, dataset, gen)
    if args.batch_size > args.pool_size:
        raise ValueError(f"batch_size ({args.batch_size}) must not exceed pool_size ({args.pool_size})")

    start, rows, elapsed_before, loss_clip = 0, [], 0.0, float(args.loss_clip)
    generators = {"pool": gen}
    ckpt = load_checkpoint(out_dir, resume=args.resume)
    segments = resume_segments(ckpt, flat_dict(args), path=checkpoint_path(out_dir),
                               position=ckpt["iteration"] if ckpt else 0, allow_changed=args.allow_changed_settings)
    acc: dict[str, float] = {}
    counts = torch.zeros(policy.n_actions)
    if ckpt is not None:
        policy.load_state_dict(ckpt["policy"])
        value.load_state_dict(ckpt["value"])
        policy_opt.load_state_dict(ckpt["policy_opt"])
        value_opt.load_state_dict(ckpt["value_opt"])
        pool.load_state_dict(ckpt["pool"])
        restore_rng_state(ckpt["rng"], generators)
        start, rows, elapsed_before = ckpt["iteration"], ckpt["metrics"], ckpt.get("elapsed_s", 0.0)
        loss_clip = ckpt["loss_clip"]
        acc = dict(ckpt.get("acc", {}))  # running sums since the last metrics row
        counts = ckpt.get("counts", counts)
        print(f"resumed from {out_dir / 'last.pt'} at iteration {start} of {args.iterations}", file=sys.stderr)
    log = MetricsLog(out_dir, rows)
    rows = log.rows

    def save(iteration: int, elapsed: float) -> None:
        save_checkpoint(
            out_dir,
            {
                "iteration": iteration,
                "args": flat_dict(args),
                "policy_config": policy.config(),
                "policy": policy.state_dict(),
                "value": value.state_dict(),
                "policy_opt": policy_opt.state_dict(),
                "value_opt": value_opt.state_dict(),
                "pool": pool.state_dict(),
                "rng": rng_state(generators),
                "metrics": rows,
                "elapsed_s": elapsed,
                "loss_clip": loss_clip,
                "acc": dict(acc),
                "counts": counts.clone(),
                "segments": segments,
            },
        )

    @torch.no_grad()
    def fill_losses(slots: torch.Tensor) -> None:
        missing = slots[torch.isnan(pool.loss[slots])]
        for chunk in missing.split(16) if len(missing) else ():
            x = pool.images[chunk].to(device)
            targets = make_targets([pool.labels[int(s)] for s in chunk]).to(device)
            pool.loss[chunk] = detector.per_image_loss(x.clamp(0, 1), targets).float().cpu()

    if loss_clip <= 0:  # auto: 90th percentile of L(input) over the initial pool (deterministic)
        fill_losses(torch.arange(args.pool_size))
        loss_clip = max(float(torch.quantile(pool.loss, 0.9)), 1e-3)
        print(f"loss_clip (auto, 90th percentile of the input images' detector loss): {loss_clip:.4f}", file=sys.stderr)

    t0 = time.perf_counter()
    window = contextlib.ExitStack()  # Denoise's search window for the whole loop (closed after it)
    window.enter_context(ops.modules.nlm_search_window(args.denoise_window))
    bar = progress_bar(args.iterations, start, "adaptiveisp", enabled=args.progress_bar)
    policy.train()
    value.train()
    end = args.iterations if not args.stop_after else min(args.iterations, start + args.stop_after)
    for it in range(start, end):
        lr = learning_rate(args.lr, it, args.iterations, args.lr_decay)
        for opt in (policy_opt, value_opt):
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        progress = it / max(args.iterations, 1)
        slots = torch.randperm(args.pool_size, generator=gen)[: args.batch_size]
        fill_losses(slots)
        x = pool.images[slots].to(device)
        used = pool.used[slots].to(device)
        stage = pool.stage[slots].to(device)
        loss_in = pool.loss[slots].to(device)
        targets = make_targets([pool.labels[int(s)] for s in slots]).to(device)

        # --- act
        logits, raw = policy(agent.policy_state(x, used, stage, args.T, stage_plane=plane))
        params = policy.module_params(raw)
        valid = policy.action_mask
        if args.mask_reuse:
            valid = agent.reuse_mask(used, policy.n_actions, policy.action_mask)
            logits = logits.masked_fill(~valid, -1e9)
        warmup = it < args.param_warmup
        if warmup:  # uniform over the allowed actions
            uniform = valid.float().expand(args.batch_size, -1) if valid.ndim == 1 else valid.float()
            actions = torch.multinomial(uniform.cpu(), 1, generator=gen).squeeze(1).to(device)
        else:
            actions = agent.sample_actions(logits, epsilon=args.epsilon, generator=gen, valid=valid, mode=args.epsilon_mode)
        stop_now = actions >= n_modules
        midx = agent.to_module_index(actions, n_modules)
        x_raw = agent.apply_modules(x, midx, params, names, clamp=False)  # may exceed 1 (over-exposure)
        x_next = x_raw.clamp(0, 1)

        # --- reward
        loss_out = detector.per_image_loss(x_next.clamp(0, 1), targets)
        pen = agent.stage_penalties(
            x_raw, used, midx, lambda_c=args.lambda_c, costs_ms=costs.to(device),
            reuse_weight=args.reuse_penalty, overexposure_weight=args.overexposure_weight,
        )
        det_reward = agent.detection_reward(loss_in, loss_out, args.reward_scale, loss_clip)
        reward = det_reward - pen.total
        used_next = agent.mark_used(used, midx)
        stage_next = stage + 1
        terminated = (stage_next >= args.T) | stop_now
        truncated = agent.is_truncated(x_next.detach(), args.truncate_low, args.truncate_high)
        mask = agent.bootstrap_mask(terminated, truncated).to(device)

        # --- V(s') with the value net's weights frozen, gradient to the image (for the params)
        for p in value.parameters():
            p.requires_grad_(False)
        v_next = value(agent.value_state(x_next, used_next, stage_next, args.T, stage_plane=plane, contrast=contrast))
        for p in value.parameters():
            p.requires_grad_(True)
        q = reward + args.gamma * mask * v_next
        v = value(agent.value_state(x.detach(), used, stage, args.T, stage_plane=plane, contrast=contrast))
        advantage = (q - v).detach()
        if args.advantage_norm:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-6)
        critic_loss = F.mse_loss(v, q.detach())
        # log pi(a|s) of the distribution the action was drawn from (mixed) or of the softmax (replace)
        logp = agent.action_log_prob(logits, actions, epsilon=0.0 if warmup else args.epsilon, valid=valid,
                                     mode=args.epsilon_mode)
        ent_pen = agent.entropy_penalty(logits, progress, args.entropy_coef, n_valid)
        selector_loss = -(advantage * logp).mean() + ent_pen.mean()
        if warmup:
            selector_loss = selector_loss * 0.0
        if args.param_objective == "q":
            param_loss = -q.mean()
        elif args.param_objective == "reward":
            param_loss = -reward.mean()
        else:
            raise ValueError(f"param_objective must be 'q' or 'reward', got {args.param_objective!r}")

        policy_opt.zero_grad(set_to_none=True)
        value_opt.zero_grad(set_to_none=True)
        (selector_loss + param_loss + critic_loss).backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), args.grad_clip)
            torch.nn.utils.clip_grad_norm_(value.parameters(), args.grad_clip)
        policy_opt.step()
        value_opt.step()

        # --- back into the pool
        done = (terminated | truncated).cpu()
        pool.images[slots] = x_next.detach().cpu().float()
        pool.used[slots] = used_next.cpu()
        pool.stage[slots] = stage_next.cpu()
        pool.loss[slots] = loss_out.detach().float().cpu()
        for j in done.nonzero(as_tuple=True)[0].tolist():
            pool.refill(int(slots[j]))

        # --- metrics
        counts += torch.bincount(actions.cpu(), minlength=policy.n_actions).float()
        with torch.no_grad():
            step_metrics = {
                "reward": reward.mean().item(), "det_reward": det_reward.mean().item(),
                "pen_reuse": pen.reuse.mean().item(), "pen_cost": pen.cost.mean().item(),
                "pen_overexposure": pen.overexposure.mean().item(), "pen_entropy": ent_pen.mean().item(),
                "loss_in": loss_in.mean().item(), "loss_out": loss_out.mean().item(),
                "critic_loss": critic_loss.item(), "selector_loss": selector_loss.item(),
                "param_loss": param_loss.item(), "value": v.mean().item(),
                "entropy": entropy(logits).mean().item(),
                "truncated": truncated.float().mean().item(), "stop": stop_now.float().mean().item(),
            }
        for k, val in step_metrics.items():
            acc[k] = acc.get(k, 0.0) + val
        if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
            k_iters = (it + 1) - (rows[-1]["iteration"] if rows else 0)
            k_iters = max(k_iters, 1)
            row = {"iteration": it + 1, "lr": lr, "loss_clip": loss_clip,
                   "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 3)}
            row.update({k: v_ / k_iters for k, v_ in acc.items()})
            action_names = names + (["stop"] if args.use_stop else [])
            freq = counts / counts.sum().clamp(min=1)
            row.update({f"freq_{n}": float(freq[i]) for i, n in enumerate(action_names)})
            log.append(row)
            acc, counts = {}, torch.zeros(policy.n_actions)
            bar.set_postfix(reward=f"{row['reward']:.2f}", L_out=f"{row['loss_out']:.3f}")
        bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or it + 1 in (args.iterations, end):
            save(it + 1, elapsed_before + time.perf_counter() - t0)
        if args.snapshot_every and (it + 1) % args.snapshot_every == 0:
            export_policy(policy, out_dir / f"policy_it{it + 1}.pt", metadata={
                "train_args": flat_dict(args), "iterations": it + 1,
                "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 1)})
    bar.close()
    window.close()

    elapsed = elapsed_before + time.perf_counter() - t0
    summary = {
        "iterations": args.iterations, "elapsed_s": round(elapsed, 1), "args": flat_dict(args), "loss_clip": loss_clip,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "last_metrics": rows[-1] if rows else {}, "segments": segments,
    }
    finished = end == args.iterations
    if args.export and finished:
        export_policy(policy, args.export, metadata={"train_args": flat_dict(args), "iterations": args.iterations, "elapsed_s": round(elapsed, 1)})
    if finished and args.final_eval_images > 0:
        summary["final_eval"] = final_evaluation(policy, detector, settings, args.final_eval_images, args.T)
        print(f"final evaluation: {json.dumps(summary['final_eval'])}", file=sys.stderr)
    atomic.write_json(out_dir / "summary.json", summary)
    finish_run("ispbench.methods.adaptiveisp.inference:load_policy",
               args.export if args.export and finished else out_dir / "last.pt")
    return {"policy": policy, "value": value, "metrics": rows, "summary": summary, "out_dir": out_dir}


def main(argv: list[str] | None = None) -> int:
    """``ispbench train adaptiveisp [--field value ...]``."""
    args = parse(Args, argv, prog="ispbench train adaptiveisp", description=__doc__.split("\n\n")[0])
    result = train(args)
    print(json.dumps(result["summary"]["last_metrics"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
