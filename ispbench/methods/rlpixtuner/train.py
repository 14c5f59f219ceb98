"""Train an RLPixTuner TD3 policy on embedded photos (Random-Target), CleanRL style, in one file.

    python -m ispbench.methods.rlpixtuner.train --total-steps 20000 --out-dir runs/rlpixtuner
    ispbench train rlpixtuner --ablation naive --total-steps 2000

Loop: ``n_envs`` random crops of the training photos with random goals (``PhotoCrops``) run a
10-step episode in lock-step; each step every live sample takes ``mu(s) + N(0, sigma)`` (uniform
random actions before ``learning_starts``), transitions go to
the replay buffer (truncated ones too, as terminal transitions, unless ``--store-truncated false``:
the paper's setting), and ``updates_per_step`` TD3 updates follow. Every ``eval_every`` env steps the
deterministic policy is evaluated on a fixed held-out set; every ``checkpoint_every`` env steps
(at an episode boundary) a checkpoint is written atomically with the networks, optimisers,
replay buffer, step counters and every RNG state, so ``--resume`` continues the exact run.
Metrics go to ``<out_dir>/log.csv``; the policy of the evaluation with the best final-step PSNR so far
is also written to ``<out_dir>/best_policy.pt`` (model selection on the held-out validation crops).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ispbench import atomic
from ispbench.data.photos import PhotoCrops, random_target_eval_set
from ispbench.methods.rlpixtuner.env import FinishingEnv, Observation
from ispbench.methods.rlpixtuner.networks import ABLATIONS, NetConfig
from ispbench.methods.rlpixtuner.td3 import TD3, Policy, ReplayBuffer, TD3Config, tune
from ispbench.seeding import seed_everything


@dataclass
class Args:
    """Arguments of the RLPixTuner trainer (``--flag-name`` on the command line)."""

    total_steps: int = 20_000
    """total environment steps (transitions offered to the buffer, summed over envs)"""
    n_envs: int = 16
    """episodes run in parallel (one batch of crops per episode round)"""
    max_steps: int = 10
    """episode length = pipeline queries per image (paper: 10)"""
    batch_size: int = 64
    """TD3 minibatch size (paper: 64)"""
    actor_lr: float = 1e-4
    """actor learning rate (paper: 1e-4)"""
    critic_lr: float = 2e-4
    """critic (and shared encoder) learning rate (paper: 2e-4)"""
    gamma: float = 0.9
    """discount factor (paper: 0.9)"""
    tau: float = 0.01
    """target EMA rate, 1 - rho (paper: rho = 0.99)"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise on actions (paper: 0.1)"""
    target_noise: float = 0.2
    """std of the target-policy smoothing noise (paper: 0.2)"""
    target_noise_clip: float = 0.5
    """clip c of the target-policy noise (not in the paper; TD3's default)"""
    policy_delay: int = 2
    """critic updates per actor update (paper: 2)"""
    action_l2: float = 0.0
    """HER-style penalty action_l2 * mean(a^2) in the actor loss (not in the paper; 0 = off)"""
    bc_weight: float = 0.0
    """hindsight goal regression (not in the paper; 0 = off): every Random-Target goal is an image the
    black box rendered from known parameters ``a_g`` (exactly what hindsight relabelling of a reached
    image gives), and with absolute-parameter actions ``a_g`` is the reward-maximising action from any
    state. Adds ``bc_weight * mse(mu(s), a_g)`` to every update, through actor and encoder (GCSL /
    TD3+BC style); the TD3 actor and critic losses are unchanged. Goals without known parameters
    (expert goals) get no such term"""
    updates_per_step: float = 0.25
    """gradient updates per environment transition"""
    reward_scale: float = 0.1
    """reward = reward_scale * PSNR gain in dB (authors' code: 0.01)"""
    image_size: int = 64
    """side of the training crops the pipeline runs on (the policy always sees 64x64)"""
    goal_scale: float = 0.5
    """random goals: slider actions U(-goal_scale, goal_scale)"""
    init: str = "mixed"
    """initial parameters of training episodes: zero | random | mixed"""
    store_truncated: bool = True
    """store truncated transitions as terminal, with their (negative) reward. The paper does not
    store them (App. C.2); without them the critic never sees the collapsed region and, on our
    small budget, the actor drifted there (every action saturated) within 2k steps"""
    buffer_size: int = 8192
    """replay buffer capacity (transitions; authors: 16384)"""
    learning_starts: int = 640
    """env steps of uniform random actions before learning"""
    ablation: str = "all"
    """state-representation preset (Table 4): naive | dual | dual+stats | dual+history | all"""
    width: int = 8
    """CNN base width (channels of the first conv; the dual path uses 2x)"""
    residual_actor: bool = False
    """parameterise the actor's output around the current parameters (not in the paper; see networks.Actor)"""
    residual_scale: float = 0.5
    """with ``residual_actor``: the largest change per step, ``mu = clip(P_t + residual_scale * tanh(.))``"""
    feature_dim: int = 50
    """width of the state trunk (Linear+LayerNorm+tanh) before the MLPs; small so that the 9 action
    inputs of the critic are not drowned (DrQ-v2 uses 50; with 256 our critic ignored the action)"""
    hidden: int = 256
    """MLP width (paper: 512)"""
    layers: int = 2
    """MLP hidden layers (paper: 4)"""
    seed: int = 0
    """random seed (python, numpy, torch, data, buffer)"""
    device: str = "cpu"
    """torch device"""
    threads: int = 1
    """torch CPU threads (1 is fastest on a shared, oversubscribed CPU)"""
    out_dir: str = "runs/rlpixtuner"
    """where log.csv, checkpoints and the final policy go"""
    checkpoint_every: int = 5_000
    """env steps between checkpoints (0: only at the end)"""
    eval_every: int = 5_000
    """env steps between held-out evaluations (0: only at the end)"""
    eval_images: int = 16
    """held-out Random-Target pairs per evaluation"""
    save_buffer: bool = True
    """include the replay buffer in checkpoints (needed for an exact resume)"""
    resume: bool = False
    """continue from <out_dir>/checkpoint.pt if it exists"""
    max_minutes: float = 0.0
    """stop (after a checkpoint) once this much wall time has passed (0: no limit)"""
    progress: bool = True
    """show a tqdm progress bar"""

    @property
    def net_config(self) -> NetConfig:
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {sorted(ABLATIONS)}, got {self.ablation!r}")
        return NetConfig(**ABLATIONS[self.ablation], width=self.width, hidden=self.hidden, layers=self.layers,
                         feature_dim=self.feature_dim, max_steps=self.max_steps, residual_actor=self.residual_actor,
                         residual_scale=self.residual_scale)

    @property
    def td3_config(self) -> TD3Config:
        return TD3Config(actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau,
                         target_noise=self.target_noise, target_noise_clip=self.target_noise_clip,
                         policy_delay=self.policy_delay, action_l2=self.action_l2,
                         bc_weight=self.bc_weight)


def evaluate(policy: Any, eval_set: Any, steps: int = 10, batch: int = 16) -> dict[str, float]:
    """Mean final-step and best-of-trajectory PSNR of ``policy`` on an eval set (see :func:`tune`)."""
    finals, bests, inits = [], [], []
    for i in range(0, len(eval_set), batch):
        tr = tune(policy, eval_set.inputs[i : i + batch], eval_set.goals[i : i + batch], steps=steps)
        finals.append(tr.final_psnr), bests.append(tr.best_psnr), inits.append(tr.psnrs[0])
    f, b, i0 = torch.cat(finals), torch.cat(bests), torch.cat(inits)
    f, b = f.clamp_max(100), b.clamp_max(100)
    return {"psnr_final": float(f.mean()), "psnr_best": float(b.mean()), "psnr_input": float(i0.clamp_max(100).mean())}


def _rng_state(np_rng: np.random.Generator, torch_gen: torch.Generator) -> dict[str, Any]:
    return {"python": random.getstate(), "numpy_global": np.random.get_state(), "torch_global": torch.get_rng_state(),
            "data": np_rng.bit_generator.state, "explore": torch_gen.get_state()}


def train(args: Args) -> dict[str, Any]:
    """Run training; returns the final metrics. See the module docstring."""
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    net_cfg = args.net_config
    agent = TD3(net_cfg, args.td3_config, args.device, seed=args.seed)
    env = FinishingEnv(max_steps=args.max_steps, reward_scale=args.reward_scale, init=args.init, layout=net_cfg.layout)
    data = PhotoCrops("train", size=args.image_size, seed=args.seed, goal_scale=args.goal_scale)
    eval_set = random_target_eval_set("heldout", n=args.eval_images, size=args.image_size, seed=10_000 + args.seed,
                                      goal_scale=args.goal_scale)
    buffer = ReplayBuffer(args.buffer_size, net_cfg.layout.dim, seed=args.seed)
    data_rng = np.random.default_rng([args.seed, 1])
    explore_gen = torch.Generator().manual_seed(args.seed + 7)
    step, episodes, update_credit, wall = 0, 0, 0.0, 0.0
    ckpt_path = out / "checkpoint.pt"
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["args"]["ablation"] != args.ablation or ck["args"]["seed"] != args.seed:
            raise ValueError(f"{ckpt_path} was written with ablation={ck['args']['ablation']!r}, seed={ck['args']['seed']}")
        agent.load_state_dict(ck["agent"])
        if "buffer" in ck:
            buffer.load_state_dict(ck["buffer"])
        rs = ck["rng"]
        random.setstate(rs["python"]), np.random.set_state(rs["numpy_global"]), torch.set_rng_state(rs["torch_global"])
        data_rng.bit_generator.state = rs["data"]
        explore_gen.set_state(rs["explore"])
        step, episodes, update_credit, wall = ck["step"], ck["episodes"], ck["update_credit"], ck["wall_time_s"]
        env.queries = ck["queries"]

    log_path = out / "log.csv"
    fields = ["step", "episodes", "updates", "queries", "wall_s", "ep_psnr_init", "ep_psnr_final", "ep_psnr_best",
              "ep_reward", "truncated_frac", "critic_loss", "q", "actor_loss", "bc_loss", "eval_psnr_final", "eval_psnr_best", "eval_psnr_input"]
    if not (args.resume and log_path.exists()):
        with log_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(fields)
    else:  # drop log rows written after the checkpoint we resume from
        rows = list(csv.DictReader(log_path.open()))
        keep = [r for r in rows if int(r["step"]) <= step]
        with atomic.atomic_open(log_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader(), w.writerows(keep)

    def checkpoint() -> None:
        state = {"args": dataclasses.asdict(args), "agent": agent.state_dict(), "step": step, "episodes": episodes,
                 "update_credit": update_credit, "wall_time_s": wall, "queries": env.queries,
                 "rng": _rng_state(data_rng, explore_gen)}
        if args.save_buffer:
            state["buffer"] = buffer.state_dict()
        atomic.torch_save(state, ckpt_path)

    bar = None
    if args.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.total_steps, initial=step, desc=f"rlpixtuner[{args.ablation}]", file=sys.stderr)
    t_start = time.perf_counter() - wall
    last: dict[str, float] = {}
    best_eval = -float("inf")
    next_eval = (step // args.eval_every + 1) * args.eval_every if args.eval_every else None
    next_ckpt = (step // args.checkpoint_every + 1) * args.checkpoint_every if args.checkpoint_every else None
    while step < args.total_steps:
        x, goal, goal_actions = data.sample(data_rng, args.n_envs)
        obs = env.reset(x, goal, generator=explore_gen)
        psnr0, ep_reward, n_trunc, ep_best = env.psnr.clone(), torch.zeros(args.n_envs), 0, env.psnr.clone()
        for t in range(args.max_steps):
            alive = env.alive.clone()
            if step < args.learning_starts:
                action = torch.rand(args.n_envs, 9, generator=explore_gen) * 2 - 1
            else:
                action = agent.act(obs, noise=args.exploration_noise, generator=explore_gen)
            next_obs, reward, truncated, done = env.step(action)
            store = alive if args.store_truncated else alive & ~truncated
            if store.any():
                terminal = (done | truncated)[store].float()
                buffer.add(obs.index(store), action[store], reward[store], next_obs.index(store), terminal,
                           goal_actions[store])
            n_trunc += int(truncated.sum())
            ep_reward += reward
            ep_best = torch.maximum(ep_best, torch.where(alive, env.psnr, ep_best))
            n_new = int(alive.sum())
            step += n_new
            if bar is not None:
                bar.update(n_new)
            obs = next_obs
            if step >= args.learning_starts and len(buffer) >= args.batch_size:
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
                atomic.torch_save({"policy": agent.policy_state(), "args": dataclasses.asdict(args),
                                   "metrics": {"step": step, "updates": agent.n_updates, "wall_time_s": round(wall, 1),
                                               **{f"eval_{k}": v for k, v in ev.items()}}}, out / "best_policy.pt")
            if next_eval is not None:
                next_eval = (step // args.eval_every + 1) * args.eval_every
            if bar is not None:
                bar.set_postfix(final=f"{ev['psnr_final']:.2f}", best=f"{ev['psnr_best']:.2f}")
        with log_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=fields).writerow({k: row.get(k, "") for k in fields})
        if (next_ckpt is not None and step >= next_ckpt) or finished:
            checkpoint()
            if next_ckpt is not None:
                next_ckpt = (step // args.checkpoint_every + 1) * args.checkpoint_every
        if finished:
            break
    if bar is not None:
        bar.close()
    final = {"step": step, "episodes": episodes, "updates": agent.n_updates, "queries": env.queries,
             "wall_time_s": round(wall, 1), **{f"eval_{k}": v for k, v in evaluate(agent, eval_set, steps=args.max_steps).items()}}
    atomic.torch_save({"policy": agent.policy_state(), "args": dataclasses.asdict(args), "metrics": final}, out / "policy.pt")
    atomic.write_json(out / "final_metrics.json", final)
    return final


def load_policy(path: str | Path) -> Policy:
    """Load a :class:`Policy` from ``policy.pt``, ``checkpoint.pt`` or a shipped weights file."""
    return Policy.load(str(path))


def _parser() -> argparse.ArgumentParser:
    doc = (__doc__ or "").splitlines()[0]
    p = argparse.ArgumentParser(prog="ispbench train rlpixtuner", description=doc)
    fields = {f.name: f for f in dataclasses.fields(Args)}
    helps = _field_docs()
    for name, f in fields.items():
        flag = "--" + name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in {"1", "true", "yes"}, default=default, metavar="BOOL",
                           help=f"{helps.get(name, '')} (default {default})")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"{helps.get(name, '')} (default {default})")
    return p


def _field_docs() -> dict[str, str]:
    """Field docstrings of :class:`Args` (the string literal under each field)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Args))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
            out[a.target.id] = str(b.value.value)  # type: ignore[union-attr]
    return out


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    args = Args(**vars(ns))
    metrics = train(args)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
