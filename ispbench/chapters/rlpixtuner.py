"""Evaluation helpers behind the RLPixTuner notebooks (Tables 1-4, trajectory figure).

Every method is scored on the same (input, goal) pairs with :mod:`ispbench.tasks.finishing_metrics`
and its pipeline queries are counted. Method names are the paper's (``RLPixTuner``, ``CMAES``,
``Greedy Search``, ``Monolithic Proxy``, ``Cascaded Proxy``). For RLPixTuner two rows are
produced: the final step (``RLPixTuner``, the honest deployable number) and the best image of the
10-step trajectory (``RLPixTuner (best-of-10)``, what the authors' evaluation code reports;
picking it needs the goal, i.e. an oracle).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch

from ispbench.data.fivek import FiveKDataset
from ispbench.data.hdrplus import HDRPlusDataset
from ispbench.data.photos import EvalSet, expert_target_eval_set, full_resolution, random_target_eval_set
from ispbench.data.prepared import DatasetMissingError, prepare_command
from ispbench.finishing_baselines.proxy import ProxyTrainConfig, get_proxy, proxy_search
from ispbench.finishing_baselines.search import cmaes_search, greedy_search
from ispbench.methods.rlpixtuner import shipped_weights
from ispbench.methods.rlpixtuner.inference import Policy, tune
from ispbench.methods.rlpixtuner.state import resize_to
from ispbench.methods.rlpixtuner.train import Args, train
from ispbench.ops.finishing import finish
from ispbench.paths import cache_dir
from ispbench.stats import bootstrap_mean, interval_fields, no_interval_fields
from ispbench.tasks.finishing_metrics import LPIPS, LPIPSUnavailable, psnr, ssim
from ispbench.training import config
from ispbench.training.checkpoint import settings_hash

METHODS = ("RLPixTuner", "CMAES", "Greedy Search", "Monolithic Proxy", "Cascaded Proxy")

#: Trainer arguments of the shipped embedded policy that differ from ``train.Args``' (paper) defaults
#: (see ``ispbench/weights/rlpixtuner_embedded.md``); the notebooks retrain with these.
SHIPPED_RECIPE = dict(bc_weight=10.0, updates_per_step=0.5, learning_starts=320)


def lpips_or_none(device: str = "cpu") -> tuple[LPIPS | None, str]:
    """An LPIPS model, or ``None`` and the reason (the notebooks then print "unavailable")."""
    try:
        return LPIPS(device), "available"
    except LPIPSUnavailable as err:
        return None, f"unavailable: {err}"


def load_policy(checkpoint: str = "") -> Policy:
    """The shipped embedded policy, or ``checkpoint`` (a ``policy.pt`` or a trainer's ``last.pt``)."""
    return Policy.load(str(checkpoint or shipped_weights()))


#: Settings that shrink a retraining run to seconds under the smoke profile (numbers meaningless).
SMOKE_TRAINING = dict(n_envs=4, batch_size=8, learning_starts=40, image_size=32, width=4, hidden=32, layers=1,
                      eval_images=2)


def rlpixtuner_policy(checkpoint: str = "", *, retrain: bool = False, iterations: int = 0, seed: int = 0,
                      device: str = "cpu", profile: str = "embedded", ablation: str = "all") -> tuple[Policy, str]:
    """The policy a notebook evaluates, and where it came from.

    ``retrain``: trains one now with the shipped policy's recipe (:data:`SHIPPED_RECIPE`, tiny under
    the smoke profile) for ``iterations`` environment steps, in ``<cache>/runs/rlpixtuner_<ablation>_<profile>_<seed>_<hash>`` (:func:`ispbench.paths.cache_dir`)
    (the hash of the settings: a rerun with the same settings resumes exactly from its ``last.pt``, written with the
    replay buffer every 5000 steps, after a crash; other settings get another folder);
    otherwise loads ``checkpoint`` or the shipped checkpoint.
    """
    if not retrain:
        return load_policy(checkpoint), (checkpoint or "shipped checkpoint")
    overrides = {**SHIPPED_RECIPE, **(SMOKE_TRAINING if profile == "smoke" else {}),
                 "total_steps": iterations, "ablation": ablation, "seed": seed, "device": device,
                 "eval_every": 0, "checkpoint_every": 5000, "save_buffer": True, "resume": True, "progress": False}
    args = config.from_overrides(Args, overrides)
    # under the cache ($ISPBENCH_CACHE), as the AdaptiveISP chapter's runs: not relative to the kernel's working directory
    out_dir = str(cache_dir() / "runs" / f"rlpixtuner_{ablation}_{profile}_{seed}_{settings_hash(config.flat_dict(args))}")
    train(config.from_overrides(Args, {"out_dir": out_dir}, base=args))
    return load_policy(f"{out_dir}/policy.pt"), f"trained here: {iterations} env steps"


def score_row(method: str, metric: str, per_item: torch.Tensor, clusters: Sequence[Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    """One summary row: ``value`` = the mean of ``per_item`` ``(N,)``, plus the interval columns.

    The interval (:func:`ispbench.stats.bootstrap_mean`, one training seed) resamples the items,
    whole ``clusters`` at a time when given (the source photo of each crop: crops of one photo
    are not independent evidence).
    """
    flat = per_item.detach().reshape(-1)
    est = bootstrap_mean(flat.double().cpu().numpy(), clusters=clusters, seed=0)
    return {"method": method, "metric": metric, "value": float(flat.mean()), **extra,
            **interval_fields(est.ci_low, est.ci_high, n_seeds=1, metric=metric)}


def _metric_rows(method: str, images: torch.Tensor, goals: torch.Tensor, queries: float, seconds: float,
                 lp: LPIPS | None, clusters: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    p = psnr(images, goals).clamp_max(100)
    s = ssim(images, goals)
    rows = [
        score_row(method, "PSNR", p, clusters),
        score_row(method, "SSIM", s, clusters),
        {"method": method, "metric": "queries", "value": float(queries), **no_interval_fields(metric="queries")},
        {"method": method, "metric": "time", "value": float(seconds), **no_interval_fields(metric="time")},
    ]
    if lp is not None:
        rows.append(score_row(method, "LPIPS", lp(images, goals), clusters))
    return rows


def tuning_rows(label: str, trajectory: Any, goals: torch.Tensor,
                clusters: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """PSNR/SSIM rows of a tuning run (``tune``'s trajectory): the final step and the best of the trajectory.

    Args:
        label: the method's row name (``"RL+F^D"`` ...); the best-of rows are ``label + " (best-of-10)"``.
        trajectory: ``tune(policy, inputs, goals)``'s result (``final``, ``best``, ``best_psnr``).
        goals: ``(N, 3, H, W)`` the goals it was tuned to.
        clusters: the source photo of each pair, for the intervals (:func:`score_row`).

    Returns:
        Four rows ``method, metric, value`` + interval columns (Table 4's ablation rows).
    """
    best = label + " (best-of-10)"
    return [score_row(label, "PSNR", psnr(trajectory.final, goals).clamp_max(100), clusters),
            score_row(label, "SSIM", ssim(trajectory.final, goals), clusters),
            score_row(best, "PSNR", trajectory.best_psnr.clamp_max(100), clusters),
            score_row(best, "SSIM", ssim(trajectory.best, goals), clusters)]


def run_methods(inputs: torch.Tensor, goals: torch.Tensor, *, policy: Policy | None, methods: Iterable[str] = METHODS,
                budget: int = 200, proxy_iterations: int = 100, steps: int = 10, seed: int = 0,
                lp: LPIPS | None = None, proxies: dict[str, torch.nn.Module] | None = None, proxy_size: int = 0,
                progress: Callable[[str], None] | None = print,
                clusters: Sequence[Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score each method on ``(inputs, goals)`` ``(N, 3, H, W)``.

    ``clusters``: the source photo of each pair (``EvalSet.names``); the summary's PSNR/SSIM/LPIPS
    intervals resample photos, not crops (:func:`score_row`).

    ``proxy_size`` > 0: the proxies' gradient search runs on area-resized ``proxy_size`` copies of
    input and goal (a CPU saving; the proxies were trained on 48x48 crops), and the parameters
    found are rendered by the real pipeline at full resolution. 0 = search at full resolution.

    Returns:
        ``(summary, per_image)``: summary rows ``method, metric, value`` (means over images;
        ``time`` = mean seconds per image on this machine, ``queries`` = mean pipeline queries per
        image; every row also ``n_seeds``, ``ci_low``, ``ci_high``, ``unit``, NaN bounds for
        ``queries``/``time``); per-image rows ``method, index, PSNR, SSIM``.
    """
    rows: list[dict[str, Any]] = []
    per: list[dict[str, Any]] = []
    n = inputs.shape[0]

    def record(name: str, out: torch.Tensor, queries: float, seconds: float) -> None:
        rows.extend(_metric_rows(name, out, goals, queries, seconds / n, lp, clusters))
        for i, (pv, sv) in enumerate(zip(psnr(out, goals).clamp_max(100).tolist(), ssim(out, goals).tolist(), strict=True)):
            per.append({"method": name, "index": i, "PSNR": pv, "SSIM": sv})

    for method in methods:
        if progress:
            progress(f"[{time.strftime('%H:%M:%S')}] {method} on {n} images")
        t0 = time.perf_counter()
        if method == "RLPixTuner":
            if policy is None:
                continue
            tr = tune(policy, inputs, goals, steps=steps)
            dt = time.perf_counter() - t0
            record("RLPixTuner", tr.final, float(tr.queries.float().mean()), dt)
            record("RLPixTuner (best-of-10)", tr.best, float(tr.queries.float().mean()), dt)
        elif method in ("CMAES", "Greedy Search"):
            fn = cmaes_search if method == "CMAES" else greedy_search
            outs, qs = [], []
            for i in range(n):
                kw = {"seed": seed + i} if method == "CMAES" else {}
                r = fn(inputs[i], goals[i], budget, **kw)
                outs.append(r.image), qs.append(r.queries)
            record(method, torch.stack(outs), sum(qs) / n, time.perf_counter() - t0)
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
            record(method, out, 1, time.perf_counter() - t0)
        elif method == "Input":
            record("Input", inputs, 0, 0.0)
        else:
            raise ValueError(f"unknown method {method!r}; valid: {METHODS + ('Input',)}")
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
            or ``"expert_c"``; with embedded photos ``"random"`` gives
            :func:`~ispbench.data.photos.random_target_eval_set` (``heldout`` photos) and anything
            else :func:`~ispbench.data.photos.expert_target_eval_set` (``heldout2``, the HDR+ stand-in).
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
            return random_target_eval_set("heldout", n=n_images, size=resolution, seed=seed)
        return expert_target_eval_set("heldout2", n=n_images, size=resolution, seed=seed)
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


__all__ = ["METHODS", "SHIPPED_RECIPE", "EVAL_DATASETS", "run_methods", "score_row", "tuning_rows", "time_methods",
           "load_policy", "load_proxies", "load_eval_pairs", "lpips_or_none"]
