"""Evaluation helpers behind the RLPixTuner notebooks (Tables 1-4, trajectory figure).

Every method is scored on the same (input, goal) pairs with :mod:`ispbench.tasks.finishing_metrics`
and its pipeline queries are counted. Method names are the paper's (``RLPixTuner``, ``CMAES``,
``Greedy Search``, ``Monolithic Proxy``, ``Cascaded Proxy``). For RLPixTuner two rows are
produced: the final step (``RLPixTuner``, the honest deployable number) and the best image of the
10-step trajectory (``RLPixTuner (best-of-10)``, what the authors' evaluation code reports;
picking it needs the goal, i.e. an oracle).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ispbench import atomic
from ispbench.data.fivek import FiveKDataset
from ispbench.data.hdrplus import HDRPlusDataset
from ispbench.data.photos import EvalSet, expert_target_eval_set, full_resolution, random_target_eval_set
from ispbench.data.prepared import DatasetMissingError, prepare_command
from ispbench.finishing_baselines.projection import projected_expert_eval_set
from ispbench.finishing_baselines.proxy import ProxyTrainConfig, get_proxy, proxy_search
from ispbench.finishing_baselines.search import best_psnr_by_budget, cmaes_search, search_batch
from ispbench.methods.rlpixtuner import shipped_weights
from ispbench.methods.rlpixtuner.bench import policy_overhead
from ispbench.methods.rlpixtuner.inference import Policy, Trajectory, tune
from ispbench.methods.rlpixtuner.state import resize_to
from ispbench.methods.rlpixtuner.train import Args, recipe_args, train
from ispbench.ops.finishing import finish
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.stats import bootstrap_mean, interval_fields, no_interval_fields, paired_bootstrap, summary_fields
from ispbench.tasks.finishing_metrics import LPIPS, LPIPSUnavailable, psnr, ssim
from ispbench.training import config
from ispbench.training.checkpoint import safe_load, settings_hash

METHODS = ("RLPixTuner", "CMAES", "Greedy Search", "Monolithic Proxy", "Cascaded Proxy")

#: The shipped embedded policies' recipe (``ispbench/weights/rlpixtuner_embedded.md``): the authors' code
#: (``train.RECIPES["authors-code"]``, cumulative MDP, pure TD3); the notebooks retrain with it.
SHIPPED_RECIPE = "authors-code"
#: Training seeds of the shipped embedded policies (``rlpixtuner_embedded_seed{s}.pt``).
SHIPPED_SEEDS = (0, 1, 2)
#: Query budgets of the equal-budget comparison (Table 1's curves).
BUDGETS = (1, 2, 5, 10, 20, 50, 100, 200)
#: Zeroth-order searches of the equal-budget comparison -> ``search_batch`` method names.
SEARCHES = {"Greedy Search": "greedy", "CMAES": "cmaes", "Random Search": "random"}


def lpips_or_none(device: str = "cpu") -> tuple[LPIPS | None, str]:
    """An LPIPS model, or ``None`` and the reason (the notebooks then print "unavailable")."""
    try:
        return LPIPS(device), "available"
    except LPIPSUnavailable as err:
        return None, f"unavailable: {err}"


#: Variants shipped with one file per training seed (``rlpixtuner_<variant>_seed{s}.pt``) -> their seeds.
SEEDED_VARIANTS = {"preact": (0, 1, 2)}


def shipped_policy_file(seed: int = 0, variant: str = "") -> str:
    """File name of a shipped embedded policy: the main recipe's ``seed``, or a ``variant``
    (``"absolute"``, ``"td3bc"``, ``"paper"``, ``"all"`` (Table 4's full row), a Table 4 ablation ``"naive"``,
    ``"dual"``, ``"dual+stats"``, ``"dual+history"``, or ``"preact"``, the long pure-TD3 runs with a pre-tanh
    penalty, one file per seed)."""
    if variant in SEEDED_VARIANTS:
        return f"rlpixtuner_{variant}_seed{int(seed)}.pt"
    if variant:
        return f"rlpixtuner_{variant.replace('+', '_')}.pt"
    return f"rlpixtuner_embedded_seed{int(seed)}.pt"


def shipped_seeds(variant: str = "") -> list[int]:
    """Training seeds of a shipped policy whose file is present (seeded variants ship what finished training)."""
    seeds = SEEDED_VARIANTS.get(variant, SHIPPED_SEEDS if not variant else (0,))
    return [s for s in seeds if (WEIGHTS_DIR / shipped_policy_file(s, variant)).is_file()]


#: Columns of a shipped policy's training log (``<weights file stem>_train.csv``).
TRAINING_LOG_COLUMNS = ("step", "updates", "wall_s", "eval_psnr_final", "eval_psnr_best", "eval_psnr_input")


def training_curve(variant: str = "", seed: int = 0) -> pd.DataFrame:
    """The validation evaluations logged while a shipped policy trained (``<stem>_train.csv`` beside its weights):
    rows ``step, updates, wall_s, eval_psnr_final, eval_psnr_best, eval_psnr_input`` (validation PSNR after 10
    steps, best of 10, input), plus ``seed`` and ``variant``; empty when the log is not shipped."""
    path = WEIGHTS_DIR / shipped_policy_file(seed, variant).replace(".pt", "_train.csv")
    if not path.is_file():
        return pd.DataFrame(columns=[*TRAINING_LOG_COLUMNS, "seed", "variant"])
    log = pd.read_csv(path)
    missing = [c for c in TRAINING_LOG_COLUMNS if c not in log.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(TRAINING_LOG_COLUMNS)}")
    return log[list(TRAINING_LOG_COLUMNS)].assign(seed=seed, variant=variant or "main")


def ship_policy(run_dir: str | Path, name: str, *, weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """Ship a finished run's ``best_policy.pt`` (selected on the validation photos) as ``<weights_dir>/<name>`` in
    float16, with its validation evaluations as ``<stem>_train.csv`` (:data:`TRAINING_LOG_COLUMNS`), and record
    its settings, steps, selected evaluation and run segments under ``files[name]`` of
    ``rlpixtuner_embedded.json``. The model card's prose is written by hand. Returns the json entry."""
    run_dir, weights_dir = Path(run_dir), Path(weights_dir)
    best = safe_load(run_dir / "best_policy.pt", what="RLPixTuner policy")
    done = json.loads((run_dir / "final_metrics.json").read_text())  # written only when a run completes
    half = {part: ({k: v.half() if v.is_floating_point() else v for k, v in value.items()} if part != "net_config" else value)
            for part, value in best["policy"].items()}
    entry = {"args": best["args"], "trained_steps": int(done["step"]),
             "best": {k: best["metrics"][k] for k in ("step", "updates", "wall_time_s", "eval_psnr_final",
                                                       "eval_psnr_best", "eval_psnr_input")},
             "segments": done["segments"], "training_log": name.replace(".pt", "_train.csv")}
    atomic.torch_save({"policy": half, "args": best["args"], "metrics": best["metrics"],
                       "trained_steps": entry["trained_steps"], "segments": entry["segments"]}, weights_dir / name)
    log = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["eval_psnr_final"])
    atomic.write_text(weights_dir / entry["training_log"], log[list(TRAINING_LOG_COLUMNS)].to_csv(index=False))
    card = weights_dir / "rlpixtuner_embedded.json"
    metrics = json.loads(card.read_text()) if card.is_file() else {"files": {}}
    metrics["files"][name] = entry
    atomic.write_json(card, metrics)
    return entry


def load_policy(checkpoint: str = "", seed: int = 0, variant: str = "") -> Policy:
    """``checkpoint`` (a ``policy.pt``, ``best_policy.pt`` or trainer's ``last.pt``), else a shipped embedded policy."""
    return Policy.load(str(checkpoint or shipped_weights(shipped_policy_file(seed, variant))))


#: Settings that shrink a retraining run to seconds under the smoke profile (numbers meaningless).
SMOKE_TRAINING = dict(n_envs=4, batch_size=8, learning_starts=40, image_size=32, width=4, mlp="32", feature_dim=32,
                      eval_images=2)

#: Variants of the shipped policies -> trainer settings on top of the recipe.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {}, "all": {}, "absolute": {"mdp": "absolute"},
    # the authors' recipe plus a pre-tanh action penalty (TD3Config.preactivation_l2), trained 400k steps
    "preact": {"preactivation_l2": 0.01},
    **{name: {"ablation": name} for name in ("naive", "dual", "dual+stats", "dual+history")},
}


#: Variants that are another named recipe (``train.RECIPES``).
RECIPE_VARIANTS = {"td3bc": "td3+bc-absolute", "paper": "paper"}


def rlpixtuner_policy(checkpoint: str = "", *, retrain: bool = False, iterations: int = 0, seed: int = 0,
                      device: str = "cpu", profile: str = "embedded", ablation: str = "all",
                      variant: str = "", recipe: str = SHIPPED_RECIPE) -> tuple[Policy, str]:
    """The policy a notebook evaluates, and where it came from.

    ``retrain``: trains one now with ``recipe`` (tiny under the smoke profile) for ``iterations`` environment
    steps, in ``<cache>/runs/rlpixtuner_<variant>_<profile>_<seed>_<hash>`` (:func:`ispbench.paths.cache_dir`)
    (the hash of the settings: a rerun with the same settings resumes from its ``last.pt`` after a crash; other
    settings get another folder), and returns its best policy on the validation photos;
    otherwise loads ``checkpoint`` or the shipped checkpoint of ``seed`` / ``variant`` (:func:`shipped_policy_file`).
    ``ablation`` (Table 4) is the same as ``variant=ablation``.
    """
    if ablation != "all":
        variant = ablation
    if variant in RECIPE_VARIANTS:
        recipe, variant_settings = RECIPE_VARIANTS[variant], {}
    elif variant in VARIANTS:
        variant_settings = VARIANTS[variant]
    else:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS) + sorted(RECIPE_VARIANTS)}, got {variant!r}")
    if not retrain:
        return load_policy(checkpoint, seed, variant), (checkpoint or f"shipped {shipped_policy_file(seed, variant)}")
    overrides = {**variant_settings, **(SMOKE_TRAINING if profile == "smoke" else {}),
                 "total_steps": iterations, "seed": seed, "device": device, "eval_every": max(iterations // 5, 1),
                 "checkpoint_every": max(iterations // 5, 1), "resume": True, "progress": False}
    args = recipe_args(recipe, **overrides)
    # under the cache ($ISPBENCH_CACHE), as the AdaptiveISP chapter's runs: not relative to the kernel's working directory
    label = (variant or "main").replace("+", "_")
    out_dir = str(cache_dir() / "runs" / f"rlpixtuner_{label}_{profile}_{seed}_{settings_hash(config.flat_dict(args))}")
    train(config.from_overrides(Args, {"out_dir": out_dir}, base=args))
    return load_policy(f"{out_dir}/best_policy.pt"), f"trained here: {iterations} env steps, best on validation"


def policy_curves(policies: Sequence[Policy], eval_set: EvalSet, *, steps: int = 10,
                  method: str = "RLPixTuner") -> pd.DataFrame:
    """PSNR after each of a policy's ``steps`` queries, for each training seed's policy.

    Returns:
        Long rows ``method, kind, seed, item, photo, queries, PSNR``: ``kind = "final"`` is the image
        after ``queries`` steps (deployable), ``"best"`` the best of the first ``queries`` steps (picking
        it needs the goal, like a search's best-so-far).
    """
    rows = []
    for seed, policy in enumerate(policies):
        tr = tune(policy, eval_set.inputs, eval_set.goals, steps=steps)
        ps = tr.psnrs[1:].clamp_max(100)  # (T, N)
        best = torch.cummax(ps, 0).values
        for t in range(ps.shape[0]):
            for i, photo in enumerate(eval_set.names):
                rows.append({"method": method, "kind": "final", "seed": seed, "item": i, "photo": photo,
                             "queries": t + 1, "PSNR": float(ps[t, i])})
                rows.append({"method": method, "kind": "best", "seed": seed, "item": i, "photo": photo,
                             "queries": t + 1, "PSNR": float(best[t, i])})
    return pd.DataFrame(rows)


def run_searches(eval_set: EvalSet, *, methods: Iterable[str] = tuple(SEARCHES), seeds: Sequence[int] = (0, 1, 2),
                 budget: int = 200, progress: Callable[[str], None] | None = print) -> dict[str, list[list[Any]]]:
    """Run each zeroth-order search with ``budget`` queries on every pair, once per seed (greedy search is
    deterministic: one run). Returns ``{method: [per seed: [SearchResult per pair]]}``, the input of
    :func:`search_curves` and of :func:`run_methods`' ``search_results``."""
    runs: dict[str, list[list[Any]]] = {}
    for method in methods:
        if method not in SEARCHES:
            raise ValueError(f"methods: expected names from {list(SEARCHES)}, got {method!r}")
        runs[method] = []
        for seed in (seeds[:1] if method == "Greedy Search" else seeds):
            if progress:
                progress(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed}: {len(eval_set)} pairs x {budget} queries")
            runs[method].append(search_batch(SEARCHES[method], eval_set.inputs, eval_set.goals, budget, seed=1000 * seed))
    return runs


def search_curves(runs: dict[str, list[list[Any]]], eval_set: EvalSet, budgets: Sequence[int] = BUDGETS) -> pd.DataFrame:
    """Best-so-far PSNR of each search after each of ``budgets`` queries, read from the query history of
    :func:`run_searches`' runs (one run of the largest budget serves every smaller one).

    Returns:
        Long rows as :func:`policy_curves` (``kind = "best"``: a search returns its best query).
    """
    rows = []
    for method, per_seed in runs.items():
        for seed, results in enumerate(per_seed):
            for i, (res, photo) in enumerate(zip(results, eval_set.names, strict=True)):
                for k, value in zip(budgets, best_psnr_by_budget(res, budgets), strict=True):
                    rows.append({"method": method, "kind": "best", "seed": seed, "item": i, "photo": photo,
                                 "queries": int(k), "PSNR": float(value)})
    return pd.DataFrame(rows)


def _seed_item_matrix(frame: pd.DataFrame) -> np.ndarray:
    return frame.pivot_table(index="seed", columns="item", values="PSNR").to_numpy()


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and median PSNR over seeds of each (method, kind, queries), with a 95% interval over the
    test items resampled by source photo (:func:`ispbench.stats.bootstrap_mean`)."""
    rows = []
    for (method, kind, q), g in curves.groupby(["method", "kind", "queries"], sort=False):
        photos = g[g.seed == g.seed.min()].sort_values("item").photo.tolist()
        est = bootstrap_mean(_seed_item_matrix(g), clusters=photos, seed=0)
        rows.append({"method": method, "kind": kind, "queries": int(q), **summary_fields(est, metric="PSNR")})
    return pd.DataFrame(rows)


def equal_budget_claims(curves: pd.DataFrame, claims: Sequence[tuple[str, str, int, str, str, int]]) -> pd.DataFrame:
    """Paired bootstrap of ``A - B`` PSNR on the same test items for each claim
    ``(method_a, kind_a, queries_a, method_b, kind_b, queries_b)``; seeds are averaged per item first
    (the methods' seeds are not paired), items resampled by source photo."""
    rows = []
    for ma, ka, qa, mb, kb, qb in claims:
        def per_item(m: str, k: str, q: int) -> pd.DataFrame:
            g = curves[(curves.method == m) & (curves.kind == k) & (curves.queries == q)]
            if g.empty:
                raise ValueError(f"claims: no curve rows for {m!r} ({k}) at {q} queries")
            return g.groupby("item").agg(PSNR=("PSNR", "mean"), photo=("photo", "first")).sort_index()
        a, b = per_item(ma, ka, qa), per_item(mb, kb, qb)
        cmp = paired_bootstrap(a.PSNR.to_numpy(), b.PSNR.to_numpy(), clusters=a.photo.tolist(), seed=0)
        rows.append({"claim": f"{ma} ({ka}, {qa} queries) - {mb} ({kb}, {qb} queries)", "difference": cmp.difference,
                     "ci_low": cmp.ci_low, "ci_high": cmp.ci_high, "fraction_a_better": cmp.fraction_a_better,
                     "n_items": cmp.n_items, "n_clusters": cmp.n_clusters, "unit": "dB"})
    return pd.DataFrame(rows)


def score_row(method: str, metric: str, per_item: torch.Tensor | np.ndarray, clusters: Sequence[Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    """One summary row: ``value`` = the mean over seeds of the per-seed means, plus median and interval columns.

    Args:
        per_item: ``(N,)`` (one seed) or ``(n_seeds, N)`` per-item scores on the same items.
        clusters: the source photo of each item: the interval (:func:`ispbench.stats.bootstrap_mean`)
            resamples whole photos (crops of one photo are not independent evidence).
    """
    matrix = torch.as_tensor(per_item).detach().double().cpu().numpy()
    matrix = matrix.reshape(1, -1) if matrix.ndim == 1 else matrix
    est = bootstrap_mean(matrix, clusters=clusters, seed=0)
    return {"method": method, "metric": metric, "value": est.mean, "median": est.median, **extra,
            **interval_fields(est.ci_low, est.ci_high, n_seeds=est.n_seeds, metric=metric)}


def _metric_rows(method: str, outputs: Sequence[torch.Tensor], goals: torch.Tensor, queries: float, seconds: float,
                 lp: LPIPS | None, clusters: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Rows of one method whose ``outputs`` are one ``(N, 3, H, W)`` batch per seed."""
    n_seeds = len(outputs)
    p = torch.stack([psnr(o, goals).clamp_max(100) for o in outputs])
    s = torch.stack([ssim(o, goals) for o in outputs])
    rows = [
        score_row(method, "PSNR", p, clusters),
        score_row(method, "SSIM", s, clusters),
        {"method": method, "metric": "queries", "value": float(queries), **no_interval_fields(n_seeds=n_seeds, metric="queries")},
        {"method": method, "metric": "time", "value": float(seconds), **no_interval_fields(n_seeds=n_seeds, metric="time")},
    ]
    if lp is not None:
        rows.append(score_row(method, "LPIPS", torch.stack([lp(o, goals) for o in outputs]), clusters))
    return rows


def tuning_rows(label: str, trajectory: Any, goals: torch.Tensor,
                clusters: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """PSNR/SSIM rows of tuning runs (``tune``'s trajectories): the final step and the best of the trajectory.

    Args:
        label: the method's row name (``"RL+F^D"`` ...); the best-of rows are ``label + " (best-of-10)"``.
        trajectory: ``tune(policy, inputs, goals)``'s result, or a list of them (one per training seed).
        goals: ``(N, 3, H, W)`` the goals it was tuned to.
        clusters: the source photo of each pair, for the intervals (:func:`score_row`).

    Returns:
        Four rows ``method, metric, value`` + interval columns (Table 4's ablation rows).
    """
    trajectories = [trajectory] if isinstance(trajectory, Trajectory) else list(trajectory)  # a NamedTuple is a tuple
    best = label + " (best-of-10)"
    final_p = torch.stack([psnr(t.final, goals).clamp_max(100) for t in trajectories])
    return [score_row(label, "PSNR", final_p, clusters),
            score_row(label, "SSIM", torch.stack([ssim(t.final, goals) for t in trajectories]), clusters),
            score_row(best, "PSNR", torch.stack([t.best_psnr.clamp_max(100) for t in trajectories]), clusters),
            score_row(best, "SSIM", torch.stack([ssim(t.best, goals) for t in trajectories]), clusters)]


def run_methods(inputs: torch.Tensor, goals: torch.Tensor, *, policy: Policy | Sequence[Policy] | None,
                methods: Iterable[str] = METHODS, budget: int = 200, proxy_iterations: int = 100, steps: int = 10,
                seed: int = 0, search_seeds: Sequence[int] | None = None, lp: LPIPS | None = None,
                proxies: dict[str, torch.nn.Module] | None = None, proxy_size: int = 0,
                progress: Callable[[str], None] | None = print, clusters: Sequence[Any] | None = None,
                label: str = "RLPixTuner", search_results: dict[str, list[list[Any]]] | None = None,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score each method on ``(inputs, goals)`` ``(N, 3, H, W)``.

    ``policy``: one policy or one per training seed (the rows then average the seeds' per-image scores;
    the interval resamples images). ``search_seeds``: the seeds of CMA-ES and random search (default
    ``(seed,)``; greedy search is deterministic and runs once). ``label``: the policy rows' name.
    ``search_results``: :func:`run_searches`' output, used instead of searching again (the budget is theirs).
    ``clusters``: the source photo of each pair (``EvalSet.names``); the summary's PSNR/SSIM/LPIPS
    intervals resample photos, not crops (:func:`score_row`).

    ``proxy_size`` > 0: the proxies' gradient search runs on area-resized ``proxy_size`` copies of
    input and goal (a CPU saving; the proxies were trained on 48x48 crops), and the parameters
    found are rendered by the real pipeline at full resolution. 0 = search at full resolution.

    Returns:
        ``(summary, per_image)``: summary rows ``method, metric, value, median`` (means over seeds of the
        means over images; ``time`` = mean seconds per image on this machine, ``queries`` = mean pipeline
        queries per image; every row also ``n_seeds``, ``ci_low``, ``ci_high``, ``unit``, NaN bounds for
        ``queries``/``time``); per-image rows ``method, seed, index, PSNR, SSIM``.
    """
    rows: list[dict[str, Any]] = []
    per: list[dict[str, Any]] = []
    n = inputs.shape[0]
    policies = [] if policy is None else (list(policy) if isinstance(policy, (list, tuple)) else [policy])
    seeds = tuple(search_seeds) if search_seeds is not None else (seed,)

    def record(name: str, outs: list[torch.Tensor], queries: float, seconds: float) -> None:
        rows.extend(_metric_rows(name, outs, goals, queries, seconds / (n * len(outs)), lp, clusters))
        for k, out in enumerate(outs):
            for i, (pv, sv) in enumerate(zip(psnr(out, goals).clamp_max(100).tolist(), ssim(out, goals).tolist(), strict=True)):
                per.append({"method": name, "seed": k, "index": i, "PSNR": pv, "SSIM": sv})

    for method in methods:
        if progress:
            progress(f"[{time.strftime('%H:%M:%S')}] {method} on {n} images")
        t0 = time.perf_counter()
        if method == "RLPixTuner":
            if not policies:
                continue
            trs = [tune(p, inputs, goals, steps=steps) for p in policies]
            dt = time.perf_counter() - t0
            queries = float(trs[0].queries.float().mean())
            record(label, [t.final for t in trs], queries, dt)
            record(f"{label} (best-of-10)", [t.best for t in trs], queries, dt)
        elif method in SEARCHES:
            if search_results is not None and method in search_results:
                per_seed, seconds = search_results[method], math.nan
            else:
                per_seed = [search_batch(SEARCHES[method], inputs, goals, budget, seed=1000 * s)
                            for s in (seeds[:1] if method == "Greedy Search" else seeds)]
                seconds = time.perf_counter() - t0
            outs = [torch.stack([r.image for r in results]) for results in per_seed]
            qs = [r.queries for results in per_seed for r in results]
            record(method, outs, sum(qs) / len(qs), seconds)
        elif method in ("Monolithic Proxy", "Cascaded Proxy"):
            if not proxies or method not in proxies:
                continue
            t0 = time.perf_counter()
            if proxy_size and min(inputs.shape[-2:]) > proxy_size:
                res = proxy_search(proxies[method], resize_to(inputs, proxy_size), resize_to(goals, proxy_size),
                                   iterations=proxy_iterations)
                with torch.no_grad():
                    out = finish(inputs, res.actions).clamp(0, 1)
            else:
                out = proxy_search(proxies[method], inputs, goals, iterations=proxy_iterations).images
            record(method, [out], 1, time.perf_counter() - t0)
        elif method == "Input":
            record("Input", [inputs], 0, 0.0)
        else:
            raise ValueError(f"unknown method {method!r}; valid: {METHODS + ('Random Search', 'Input')}")
    return pd.DataFrame(rows), pd.DataFrame(per)


def load_proxies(retrain: bool = False, iterations: int = 600) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """The two proxies (shipped/cached, or trained now when missing or ``retrain``)."""
    out, info = {}, {}
    for kind, name in (("monolithic", "Monolithic Proxy"), ("cascaded", "Cascaded Proxy")):
        model, metrics = get_proxy(kind, ProxyTrainConfig(iterations=iterations), retrain=retrain)
        out[name], info[name] = model, metrics
    return out, info


def time_methods(resolutions: dict[str, tuple[int, int]], *, policy: Policy | None, proxies: dict[str, torch.nn.Module],
                 budget: int = 200, proxy_iterations: int = 200, measured: int | None = None,
                 measured_proxy: int | None = None, steps: int = 10,
                 photo: str = "coffee", max_seconds: float = 120.0,
                 progress: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Wall time (s) to tune one image per method and resolution, measured in this process.

    The goal is a random-target edit of ``photo`` resized to each resolution. A method whose
    run at a lower resolution took more than ``max_seconds`` is skipped at higher ones (reported
    as NaN with ``note`` "skipped"; the rule looks at the seconds actually measured); out-of-memory errors are reported as "OOM", as in the paper.
    Paper setting: 200 iterations for both proxies and CMA-ES (Sec. 4.2 "Efficiency").

    ``measured`` (``measured_proxy`` for the proxies, default ``measured``): if smaller than
    ``budget``/``proxy_iterations``, the baselines run only that many queries/iterations and their time is scaled linearly to the full count (the
    ``note`` says so; each query/iteration costs the same, so this is what a full run would
    take up to the fixed set-up cost, which it over-counts). RLPixTuner always runs its full
    ``steps``.
    """
    g = torch.Generator().manual_seed(0)
    a_goal = (torch.rand(1, 9, generator=g) * 2 - 1) * 0.5
    rows, too_slow = [], set()
    # untimed warm-up of every method on a tiny image (imports, first-call allocations)
    tiny = torch.rand(1, 3, 16, 16)
    if policy is not None:
        tune(policy, tiny, tiny, steps=1)
    cmaes_search(tiny[0], tiny[0], 12)
    for m in proxies.values():
        proxy_search(m, tiny, tiny, iterations=1)
    for res_name, (h, w) in resolutions.items():
        img = torch.from_numpy(full_resolution(photo, (h, w)).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            goal = finish(img, a_goal).clamp(0, 1)
        jobs: dict[str, Callable[[], Any]] = {}
        if policy is not None:
            jobs["RLPixTuner"] = lambda img=img, goal=goal: tune(policy, img, goal, steps=steps)
        n_q = min(measured or budget, budget)
        n_it = min(measured_proxy or measured or proxy_iterations, proxy_iterations)
        scale = {"RLPixTuner": 1.0, "CMAES": budget / n_q}
        jobs["CMAES"] = lambda img=img, goal=goal, n_q=n_q: cmaes_search(img[0], goal[0], n_q)
        for name in ("Monolithic Proxy", "Cascaded Proxy"):
            if name in proxies:
                scale[name] = proxy_iterations / n_it
                jobs[name] = lambda m=proxies[name], img=img, goal=goal, n_it=n_it: proxy_search(m, img, goal, iterations=n_it)
        for name, job in jobs.items():
            row = {"method": name, "metric": "time", "setting": f"resolution={res_name}", "resolution": res_name,
                   "height": h, "width": w}
            if name in too_slow:
                rows.append({**row, "value": math.nan, "note": f"skipped (> {max_seconds:.0f} s at a lower resolution)"})
                continue
            if progress:
                progress(f"[{time.strftime('%H:%M:%S')}] {name} at {res_name} ({w}x{h})")
            t0 = time.perf_counter()
            try:
                job()
                measured_s = time.perf_counter() - t0
                dt = measured_s * scale[name]
                note = "" if scale[name] == 1.0 else f"extrapolated x{scale[name]:.0f} from {round((budget if name == 'CMAES' else proxy_iterations) / scale[name])} measured"
                rows.append({**row, "value": dt, "note": note, "measured_s": measured_s})
                if measured_s > max_seconds:
                    too_slow.add(name)
            except (MemoryError, RuntimeError) as err:
                if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
                    raise
                rows.append({**row, "value": math.nan, "note": "OOM"})
                too_slow.add(name)
    return pd.DataFrame(rows)


#: Real finishing datasets the notebooks can evaluate on (``dataset`` parameter).
EVAL_DATASETS = ("fivek", "hdrplus")


def load_eval_pairs(data_root: str = "", dataset: str = "fivek", split: str = "", n_images: int = 16,
                    resolution: int = 128, *, target: str = "random", seed: int = 1234, require_real: bool = False):
    """The (input, goal) pairs a notebook evaluates on: a real prepared dataset, or embedded photos.

    Args:
        data_root: root of the user's dataset download (the folder given to
            ``ispbench data prepare DATASET --root DIR``; the prepared files live in
            ``DIR/ispbench-prepared``). Empty: the embedded photos (``ispbench.data.photos``).
        dataset: ``"fivek"`` (:class:`ispbench.data.fivek.FiveKDataset`) or ``"hdrplus"``
            (:class:`ispbench.data.hdrplus.HDRPlusDataset`, goals = HDR+ ``final.jpg``).
        split: dataset split; empty = ``"val"`` for FiveK (ids 4501-5000, the paper's test images),
            ``"all"`` for HDR+.
        n_images: first ``n_images`` items of the split (0 = all).
        resolution: every input/goal is resized ("plain" stretch) to ``resolution x resolution``.
        target: FiveK goals, ``"random"`` (Random-Target, goal = ``finish(image, stored actions)``)
            or ``"expert_c"``. Embedded photos (``split`` default ``test``): ``"random"``
            (:func:`~ispbench.data.photos.random_target_eval_set`), ``"projected"`` (retouches outside the
            pipeline's family projected onto its reachable set, the FiveK-Target stand-in,
            :func:`~ispbench.finishing_baselines.projection.projected_expert_eval_set`) or ``"expert"``
            (unreachable classical expert-like goals, the HDR+ stand-in,
            :func:`~ispbench.data.photos.expert_target_eval_set`).
        seed: seed of the embedded crops (real datasets are read in split order; no randomness).
        require_real: raise instead of using embedded photos when ``data_root`` is empty (the
            ``paper`` profile: nothing silently falls back).

    Returns:
        :class:`ispbench.data.photos.EvalSet`: ``inputs``/``goals`` ``(N, 3, R, R)`` in [0, 1],
        ``goal_actions`` ``(N, 9)`` (Random-Target) or None, ``names`` (item ids), ``description``.

    Raises:
        DatasetMissingError: ``data_root`` does not exist or was never prepared (the message names
            the path and the ``ispbench data prepare`` command).

    Example:
        >>> pairs = load_eval_pairs("~/data/fivek", "fivek", n_images=500, resolution=512)  # doctest: +SKIP
    """
    from pathlib import Path

    if dataset not in EVAL_DATASETS:
        raise ValueError(f"dataset: expected one of {EVAL_DATASETS}, got {dataset!r}")
    if int(resolution) < 8:
        raise ValueError(f"resolution: expected >= 8 pixels, got {resolution!r}")
    if not data_root:
        if require_real:
            raise DatasetMissingError(
                f"data_root is empty but real {dataset} data is required (paper profile). Prepare it once with "
                f"`{prepare_command(dataset, 'DIR')}` (see data_cards/{dataset}.md) and pass data_root=DIR "
                f"(e.g. `ispbench run ... -p data_root DIR`)."
            )
        if target == "random":
            return random_target_eval_set(split or "test", n=n_images, size=resolution, seed=seed)
        if target == "projected":
            return projected_expert_eval_set(split or "test", n=n_images, size=resolution, seed=seed)
        if target == "expert":
            return expert_target_eval_set(split or "test", n=n_images, size=resolution, seed=seed)
        raise ValueError(f"target: embedded goals are 'random', 'projected' or 'expert', got {target!r}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetMissingError(
            f"{dataset}: data_root {root} does not exist. Download the dataset (data_cards/{dataset}.md) and "
            f"prepare it once with `{prepare_command(dataset, root)}`."
        )
    if dataset == "fivek":
        if target not in {"random", "expert_c"}:
            raise ValueError(f"target: FiveK goals are 'random' or 'expert_c', got {target!r}")
        ds = FiveKDataset(root, split or "val", target=target, size=int(resolution), resize="plain",
                          limit=n_images or None)
        what = "Random-Target goals finish(image, stored actions)" if target == "random" else "Expert C goals"
    else:
        ds = HDRPlusDataset(root, split or "all", size=int(resolution), resize="plain", limit=n_images or None)
        what = "HDR+ final.jpg goals"
    if len(ds) == 0:
        raise DatasetMissingError(f"{dataset}: split {ds.split!r} under {ds.prepared} is empty; re-run `{prepare_command(dataset, root)}`")
    items = [ds[i] for i in range(len(ds))]
    inputs = torch.stack([it["image"].float().clamp(0, 1) for it in items])
    goals = torch.stack([it["goal"].float().clamp(0, 1) for it in items])
    actions = torch.stack([it["actions"] for it in items]) if all("actions" in it for it in items) else None
    names = [str(it["meta"]["id"]) for it in items]
    desc = f"{dataset} split {ds.split!r} ({ds.prepared}): {len(items)} images at {resolution}x{resolution}, {what}"
    return EvalSet(inputs, goals, actions, names, desc)


__all__ = ["METHODS", "SHIPPED_RECIPE", "SHIPPED_SEEDS", "BUDGETS", "SEARCHES", "VARIANTS", "policy_curves",
           "run_searches", "search_curves", "curve_summary", "equal_budget_claims", "shipped_policy_file", "EVAL_DATASETS", "run_methods", "score_row", "tuning_rows", "time_methods",
           "load_policy", "load_proxies", "policy_overhead", "training_curve", "load_eval_pairs", "lpips_or_none"]
