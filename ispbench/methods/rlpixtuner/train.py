"""Train an RLPixTuner TD3 policy on embedded photos (Random-Target), CleanRL style, in one file.

    ispbench train rlpixtuner --total-steps 20000 --out-dir runs/rlpixtuner
    ispbench train rlpixtuner --recipe paper --ablation naive --total-steps 2000

Defaults: the authors' ``train.sh`` (cumulative MDP, their TD3 settings); ``--recipe`` picks another
named recipe (:data:`RECIPES`), explicit flags override it.

Loop: ``n_envs`` random crops of the training photos with random goals (``PhotoCrops``) run a
10-step episode in lock-step; each step every live sample takes ``mu(s) + N(0, sigma)`` (uniform
random actions before ``learning_starts``), transitions go to
the replay buffer (truncated ones as the authors' Stable-Baselines3 stores them, bootstrapped; see
``--truncated-transitions``), and
``updates_per_step`` TD3 updates follow. Every ``eval_every`` env steps the
deterministic policy is evaluated on fixed crops of the validation photos; every ``checkpoint_every`` env steps
(at an episode boundary) ``<out_dir>/last.pt`` is written atomically with the networks, optimisers,
step counters, metrics and every RNG state (and, with ``--save-buffer``, the replay buffer, so that
``--resume`` continues the exact run; without it a resumed run refills the buffer first). A resume
with other settings than the checkpoint's is refused (the differences named) unless
``--allow-changed-settings``; ``--stop-after N`` leaves after N env steps of this invocation (checkpointed,
no final evaluation), so a later ``--resume`` gives exactly the uninterrupted run.
Metrics go to ``<out_dir>/metrics.csv``; the policy of the evaluation with the best final-step PSNR so far
is also written to ``<out_dir>/best_policy.pt`` (model selection on the held-out validation crops); the
best score so far is in the checkpoint, so a resumed run never replaces it with a worse policy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ispbench import atomic
from ispbench.data.photos import PhotoCrops, random_target_eval_set
from ispbench.methods.rlpixtuner.buffer import ReplayBuffer
from ispbench.methods.rlpixtuner.env import MDPS, FinishingEnv
from ispbench.methods.rlpixtuner.inference import Policy, tune
from ispbench.methods.rlpixtuner.networks import ABLATIONS, NetConfig
from ispbench.methods.rlpixtuner.td3 import PAPER_TD3, TD3, TD3Config
from ispbench.seeding import seed_everything
from ispbench.training import config
from ispbench.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    restore_rng_state,
    resume_segments,
    rng_state,
    safe_load,
    save_checkpoint,
)
from ispbench.training.config import flat_dict, parse
from ispbench.training.run import MetricsLog, finish_run, progress_bar, start_run


@dataclass
class Args:
    """Arguments of the RLPixTuner trainer (``--flag-name`` on the command line).

    Defaults are the authors' ``train.sh`` (the ``authors-code`` recipe) except where a CPU forces a
    shortcut (marked "CPU"); :data:`RECIPES` holds the paper's values and the earlier TD3+BC recipe.
    """

    recipe: str = "authors-code"
    """named recipe whose values replace the defaults below (flags given explicitly still win):
    authors-code | paper | td3+bc-absolute (see ``RECIPES``)"""
    total_steps: int = 20_000
    """total environment steps (transitions offered to the buffer, summed over envs; authors: 800k)"""
    n_envs: int = 16
    """episodes run in lock-step (CPU: batches the pipeline and the policy; the authors step one env)"""
    max_steps: int = 10
    """episode length = pipeline queries per image (paper: 10)"""
    mdp: str = "cumulative"
    """episode dynamics: cumulative (each step edits the previous output; authors' code) | absolute
    (each step renders the original input)"""
    batch_size: int = 2
    """TD3 minibatch size (authors' code: 2; paper: 64)"""
    td3: TD3Config = field(default_factory=TD3Config)
    """TD3 hyper-parameters (authors' ``train.sh``): ``--actor-lr`` (5e-4), ``--critic-lr`` (critic and shared
    encoder, 5e-5), ``--gamma`` (0.9), ``--tau`` (target EMA rate, 0.007), ``--target-noise`` (0.04),
    ``--target-noise-clip`` (0.01), ``--policy-delay`` (2), ``--grad-clip`` (0 = none), ``--action-l2``
    (HER-style action penalty, 0 = off) and ``--bc-weight`` (hindsight goal regression, not in the paper, 0 = off:
    every Random-Target goal is rendered from known parameters ``a_g``; adds ``bc_weight * mse(mu(s), a_g)`` to
    every update; meaningful in the absolute MDP only, where ``a_g`` is the best action from every state),
    ``--actor-warmup`` (critic-only updates before the first actor update, 0 = off) and ``--preactivation-l2``
    (penalty on the actor's pre-tanh output, 0 = off) and ``--actor-final-init`` (DDPG's U(-v, v) initialisation of
    the actor's output layer, e.g. 3e-3; 0 = PyTorch's default): pure-TD3 guards against the early collapse to
    saturated sliders (see ``td3``)"""
    exploration_noise: float = 0.02
    """std of the Gaussian exploration noise on actions (authors' code: 0.02; paper: 0.1)"""
    updates_per_step: float = 1.0
    """gradient updates per environment transition (Stable-Baselines3's default with one env: 1)"""
    reward_scale: float = 0.01
    """reward = reward_scale * PSNR gain in dB (authors' code: 0.01)"""
    image_size: int = 64
    """side of the training crops the pipeline runs on (authors: 256; CPU: 64; the policy always sees 64x64)"""
    goal_scale: float = 0.5
    """random goals: slider actions U(-goal_scale, goal_scale)"""
    init: str = "random-params"
    """initial parameters of training episodes: zero | random | mixed | random-params (the authors' reset: random
    parameters in the observation only, the image is the input)"""
    truncated_transitions: str = "bootstrap"
    """what a truncated transition (all actions saturated, or mean brightness outside [0.01, 0.9]) becomes: bootstrap
    (stored, the target bootstraps from the next state: Stable-Baselines3's time-limit handling in the authors' code)
    | terminal (stored as terminal) | drop (not stored: the paper's App. C.2; on our budget the actor then collapsed
    to saturated actions, where the critic has no data)"""
    buffer_size: int = 16_384
    """replay buffer capacity (transitions; authors: 16384)"""
    learning_starts: int = 100
    """env steps of uniform random actions before learning (authors: 100)"""
    ablation: str = "all"
    """state-representation preset (Table 4): naive | dual | dual+stats | dual+history | all"""
    width: int = 16
    """CNN base width (channels of the first conv; the dual path uses 2x)"""
    residual_actor: bool = False
    """parameterise the actor's output around the current parameters (not in the paper; see networks.Actor)"""
    residual_scale: float = 0.5
    """with ``residual_actor``: the largest change per step, ``mu = clip(P_t + residual_scale * tanh(.))``"""
    feature_dim: int = 256
    """width of the state trunk (Linear+LayerNorm+tanh) before the MLPs (authors' encoder: 256 features)"""
    mlp: str = "400,300"
    """hidden widths of the actor and critic MLPs, comma separated (authors' code: 400,300; paper: 512,512,512,512)"""
    seed: int = 0
    """random seed (python, numpy, torch, data, buffer)"""
    device: str = "cpu"
    """torch device"""
    threads: int = 1
    """torch CPU threads (1 is fastest on a shared, oversubscribed CPU)"""
    out_dir: str = "runs/rlpixtuner"
    """run folder: metrics.csv, the checkpoint last.pt, the final and the best policy"""
    checkpoint_every: int = 5_000
    """env steps between checkpoints (0: only at the end)"""
    eval_every: int = 5_000
    """env steps between evaluations on the validation photos (0: only at the end)"""
    eval_images: int = 16
    """validation Random-Target pairs per evaluation (``val`` photos, never the tables' ``test`` photos)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints (needed for an exact resume; ~340 MB at 16384 transitions).
    Without it a resumed run refills the buffer before updating again"""
    resume: bool = False
    """continue from <out_dir>/last.pt if it exists (with the same settings, see ``allow_changed_settings``)"""
    allow_changed_settings: bool = False
    """resume even when settings differ from the checkpoint's (recorded per segment in ``last.pt`` and
    ``final_metrics.json``); without it such a resume is refused. Run length, stop, cadence, threads, progress bar,
    ``max_minutes`` and ``save_buffer`` may always change (``ispbench.training.checkpoint.SEGMENT_SETTINGS``)"""
    stop_after: int = 0
    """leave after about this many env steps of this invocation (at the next episode end; checkpointed, no final
    evaluation or ``policy.pt``; 0 = run to the end); a later ``--resume`` continues"""
    max_minutes: float = 0.0
    """stop (after a checkpoint) once this much wall time has passed (0: no limit)"""
    progress: bool = True
    """show a tqdm progress bar"""

    @property
    def mlp_sizes(self) -> tuple[int, ...]:
        try:
            sizes = tuple(int(w) for w in self.mlp.split(",") if w.strip())
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"mlp: expected comma-separated positive widths such as '400,300', got {self.mlp!r}")
        return sizes

    @property
    def net_config(self) -> NetConfig:
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {sorted(ABLATIONS)}, got {self.ablation!r}")
        if self.mdp not in MDPS:
            raise ValueError(f"mdp must be one of {MDPS}, got {self.mdp!r}")
        return NetConfig(**ABLATIONS[self.ablation], width=self.width, mlp=self.mlp_sizes,
                         feature_dim=self.feature_dim, max_steps=self.max_steps, residual_actor=self.residual_actor,
                         residual_scale=self.residual_scale, mdp=self.mdp)


#: What a truncated transition becomes (``Args.truncated_transitions``).
TRUNCATED_TRANSITIONS = ("bootstrap", "terminal", "drop")

#: Named recipes: the settings each changes from ``Args``' defaults (the authors' ``train.sh``).
RECIPES: dict[str, dict[str, Any]] = {
    "authors-code": {},
    # the paper's Appendix C.1 where it differs from the code (buffer and learning start not given there)
    "paper": dict(exploration_noise=0.1, batch_size=64, mlp="512,512,512,512", **PAPER_TD3),
    # the policy shipped before the authors' MDP was adopted: absolute MDP + hindsight goal regression
    "td3+bc-absolute": dict(mdp="absolute", bc_weight=10.0, updates_per_step=0.5, learning_starts=320, batch_size=64,
                            exploration_noise=0.1, reward_scale=0.1, buffer_size=8192, feature_dim=50,
                            mlp="256,256", width=8, init="mixed", truncated_transitions="terminal", grad_clip=10.0,
                            **PAPER_TD3),
}


def recipe_args(recipe: str = "authors-code", **overrides: Any) -> "Args":
    """``Args`` of a named recipe (:data:`RECIPES`) with ``overrides`` (leaf names) on top."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {recipe!r}")
    return config.from_overrides(Args, {**RECIPES[recipe], "recipe": recipe, **overrides})


def evaluate(policy: Any, eval_set: Any, steps: int = 10, batch: int = 16) -> dict[str, float]:
    """Mean final-step and best-of-trajectory PSNR of ``policy`` on an eval set (see :func:`tune`)."""
    finals, bests, inits = [], [], []
    for i in range(0, len(eval_set), batch):
        tr = tune(policy, eval_set.inputs[i : i + batch], eval_set.goals[i : i + batch], steps=steps)
        finals.append(tr.final_psnr), bests.append(tr.best_psnr), inits.append(tr.psnrs[0])
    f, b, i0 = torch.cat(finals), torch.cat(bests), torch.cat(inits)
    f, b = f.clamp_max(100), b.clamp_max(100)
    return {"psnr_final": float(f.mean()), "psnr_best": float(b.mean()), "psnr_input": float(i0.clamp_max(100).mean())}


def train(args: Args) -> dict[str, Any]:
    """Run training; returns the final metrics. See the module docstring."""
    out = start_run(args.out_dir)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    net_cfg = args.net_config
    agent = TD3(net_cfg, args.td3, args.device, seed=args.seed)
    if args.recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {args.recipe!r}")
    if args.truncated_transitions not in TRUNCATED_TRANSITIONS:
        raise ValueError(f"truncated_transitions: expected one of {TRUNCATED_TRANSITIONS}, got {args.truncated_transitions!r}")
    changed = {k: v for k, v in RECIPES[args.recipe].items() if flat_dict(args).get(k) != v}
    if changed:
        print(f"recipe {args.recipe!r} with these settings changed from it: {changed}", file=sys.stderr)
    env = FinishingEnv(max_steps=args.max_steps, reward_scale=args.reward_scale, init=args.init, layout=net_cfg.layout,
                       mdp=args.mdp)
    data = PhotoCrops("train", size=args.image_size, seed=args.seed, goal_scale=args.goal_scale)
    eval_set = random_target_eval_set("val", n=args.eval_images, size=args.image_size, seed=10_000 + args.seed,
                                      goal_scale=args.goal_scale)
    buffer = ReplayBuffer(args.buffer_size, net_cfg.layout.dim, seed=args.seed)
    data_rng = np.random.default_rng([args.seed, 1])
    explore_gen = torch.Generator().manual_seed(args.seed + 7)
    generators = {"data": data_rng, "explore": explore_gen, "buffer": buffer.rng}
    step, episodes, update_credit, wall, rows = 0, 0, 0.0, 0.0, []
    min_buffer = args.batch_size  # transitions the buffer must hold before updates (more while refilling)
    last: dict[str, float] = {}  # the latest update's losses (logged with every episode)
    best_eval = -float("inf")  # best held-out final PSNR so far (that of best_policy.pt)
    ck = load_checkpoint(out, resume=args.resume)
    segments = resume_segments(ck, flat_dict(args), path=checkpoint_path(out), position=ck["step"] if ck else 0,
                               allow_changed=args.allow_changed_settings)
    if ck is not None:
        agent.load_state_dict(ck["agent"])
        if "buffer" in ck:
            buffer.load_state_dict(ck["buffer"])
        restore_rng_state(ck["rng"], generators)
        step, episodes, update_credit, wall = ck["step"], ck["episodes"], ck["update_credit"], ck["wall_time_s"]
        env.queries, rows = ck["queries"], ck["metrics"]
        last = dict(ck.get("last_update", {}))
        if "best_eval" in ck:
            best_eval = float(ck["best_eval"])
        elif (out / "best_policy.pt").exists():  # checkpoints written before best_eval was stored
            best_eval = float(safe_load(out / "best_policy.pt", what="RLPixTuner policy")["metrics"]["eval_psnr_final"])
        print(f"resumed from {checkpoint_path(out)} at step {step} of {args.total_steps}", file=sys.stderr)
        if "buffer" not in ck:
            min_buffer = min(args.buffer_size, max(args.batch_size, args.learning_starts))
            print(f"the checkpoint has no replay buffer (written without --save-buffer): refilling it with "
                  f"{min_buffer} transitions of the current policy before updating again (not an exact continuation)",
                  file=sys.stderr)

    fields = ["step", "episodes", "updates", "queries", "wall_s", "ep_psnr_init", "ep_psnr_final", "ep_psnr_best",
              "ep_reward", "truncated_frac", "critic_loss", "q", "actor_loss", "bc_loss", "eval_psnr_final", "eval_psnr_best", "eval_psnr_input"]
    log = MetricsLog(out, rows, fieldnames=fields)

    def checkpoint() -> None:
        state = {"args": flat_dict(args), "agent": agent.state_dict(), "step": step, "episodes": episodes,
                 "update_credit": update_credit, "wall_time_s": wall, "queries": env.queries,
                 "rng": rng_state(generators), "metrics": log.rows, "last_update": dict(last), "best_eval": best_eval,
                 "segments": segments}
        if args.save_buffer:
            state["buffer"] = buffer.state_dict()
        save_checkpoint(out, state)

    bar = progress_bar(args.total_steps, step, f"rlpixtuner[{args.ablation}]", enabled=args.progress)
    t_start = time.perf_counter() - wall
    stop_at = step + args.stop_after if args.stop_after else None
    stopped = False
    next_eval = (step // args.eval_every + 1) * args.eval_every if args.eval_every else None
    next_ckpt = (step // args.checkpoint_every + 1) * args.checkpoint_every if args.checkpoint_every else None
    while step < args.total_steps:
        x, goal, goal_actions = data.sample(data_rng, args.n_envs)
        obs = env.reset(x, goal, generator=explore_gen)
        psnr0, ep_reward, n_trunc, ep_best = env.psnr.clone(), torch.zeros(args.n_envs), 0, env.psnr.clone()
        for _ in range(args.max_steps):
            alive = env.alive.clone()
            if step < args.learning_starts:
                action = torch.rand(args.n_envs, 9, generator=explore_gen) * 2 - 1
            else:
                action = agent.act(obs, noise=args.exploration_noise, generator=explore_gen)
            next_obs, reward, truncated, done = env.step(action)
            store = alive & ~truncated if args.truncated_transitions == "drop" else alive
            if store.any():
                ends = done | truncated if args.truncated_transitions == "terminal" else done
                terminal = ends[store].float()
                buffer.add(obs.index(store), action[store], reward[store], next_obs.index(store), terminal,
                           goal_actions[store])
            n_trunc += int(truncated.sum())
            ep_reward += reward
            ep_best = torch.maximum(ep_best, torch.where(alive, env.psnr, ep_best))
            n_new = int(alive.sum())
            step += n_new
            bar.update(n_new)
            obs = next_obs
            if step >= args.learning_starts and len(buffer) >= min_buffer:
                update_credit += n_new * args.updates_per_step
                while update_credit >= 1:
                    last.update(agent.update(buffer.sample(args.batch_size)))
                    update_credit -= 1
            if not env.alive.any():
                break
        episodes += 1
        wall = time.perf_counter() - t_start
        row: dict[str, Any] = {"step": step, "episodes": episodes, "updates": agent.n_updates, "queries": env.queries,
                               "wall_s": round(wall, 2), "ep_psnr_init": float(psnr0.clamp_max(100).mean()),
                               "ep_psnr_final": float(env.psnr.clamp_max(100).mean()),
                               "ep_psnr_best": float(ep_best.clamp_max(100).mean()), "ep_reward": float(ep_reward.mean()),
                               "truncated_frac": n_trunc / args.n_envs, **{k: last.get(k, "") for k in ("critic_loss", "q", "actor_loss", "bc_loss")}}
        finished = step >= args.total_steps or (args.max_minutes and wall > 60 * args.max_minutes)
        if (next_eval is not None and step >= next_eval) or finished:
            ev = evaluate(agent, eval_set, steps=args.max_steps)
            row.update({f"eval_{k}": v for k, v in ev.items()})
            if ev["psnr_final"] > best_eval:  # model selection on the validation crops (not the notebooks' set)
                best_eval = ev["psnr_final"]
                atomic.torch_save({"policy": agent.policy_state(), "args": flat_dict(args),
                                   "metrics": {"step": step, "updates": agent.n_updates, "wall_time_s": round(wall, 1),
                                               **{f"eval_{k}": v for k, v in ev.items()}}}, out / "best_policy.pt")
            if next_eval is not None:
                next_eval = (step // args.eval_every + 1) * args.eval_every
            bar.set_postfix(final=f"{ev['psnr_final']:.2f}", best=f"{ev['psnr_best']:.2f}")
        log.append(row)
        stopped = not finished and stop_at is not None and step >= stop_at
        if (next_ckpt is not None and step >= next_ckpt) or finished or stopped:
            checkpoint()
            if next_ckpt is not None:
                next_ckpt = (step // args.checkpoint_every + 1) * args.checkpoint_every
        if finished or stopped:
            break
    bar.close()
    if stopped:
        print(f"stopped after {step} of {args.total_steps} env steps (--stop-after); continue with --resume",
              file=sys.stderr)
        return {"step": step, "episodes": episodes, "updates": agent.n_updates, "queries": env.queries,
                "wall_time_s": round(wall, 1), "stopped": True, "segments": segments}
    final = {"step": step, "episodes": episodes, "updates": agent.n_updates, "queries": env.queries,
             "wall_time_s": round(wall, 1), **{f"eval_{k}": v for k, v in evaluate(agent, eval_set, steps=args.max_steps).items()}}
    atomic.torch_save({"policy": agent.policy_state(), "args": flat_dict(args), "metrics": final, "segments": segments},
                      out / "policy.pt")
    atomic.write_json(out / "final_metrics.json", {**final, "segments": segments})
    finish_run("ispbench.methods.rlpixtuner.train:load_policy", out / "policy.pt")
    return {**final, "segments": segments}


def load_policy(path: str | Path) -> Policy:
    """Load a :class:`Policy` from ``policy.pt``, ``best_policy.pt``, a checkpoint ``last.pt`` or a shipped weights file."""
    return Policy.load(str(path))


def main(argv: list[str] | None = None) -> int:
    """``ispbench train rlpixtuner [--field value ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default="authors-code", choices=sorted(RECIPES))
    recipe = pre.parse_known_args(argv)[0].recipe
    args = parse(Args, argv, prog="ispbench train rlpixtuner", description=(__doc__ or "").splitlines()[0],
                 base=recipe_args(recipe))
    metrics = train(args)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
