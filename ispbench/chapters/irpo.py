"""The IRPO chapter's building blocks: test sets, shipped models, per-seed scores, tables with intervals.

Rows of the tables (:data:`PAPER_NAMES`): the pre-trained all-in-one AdaIR, IRPO (GRPO post-training
of it on its worst-restored samples, three training seeds) and the control the authors' code has not
got: the same samples, steps and trainable parameters fine-tuned with L1 only (three seeds).

Under ``embedded`` the test sets are the embedded restoration crops of the **test photos**
(:class:`ispbench.data.restoration.RestorationSet`; the models were trained on the training photos and
selected on the validation photos), labelled with the paper's benchmark each kind stands in for
(:data:`IN_DOMAIN_DATASETS`, :data:`OOD_DATASETS`). Intervals are 95% bootstraps over crops clustered by
source photo (:mod:`ispbench.stats`): with three test photos they are wide, and say so.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ispbench import atomic, papers
from ispbench.data import restoration_paper
from ispbench.data.prepared import DatasetMissingError
from ispbench.data.restoration import DEGRADATIONS, OOD_DEGRADATIONS, RestorationSet
from ispbench.methods.irpo import grpo, pretrain
from ispbench.methods.irpo.inference import export_model, load_model, make_restore_fn
from ispbench.methods.irpo.network import AdaIR, AdaIRConfig
from ispbench.paths import WEIGHTS_DIR
from ispbench.stats import bootstrap_mean, interval_fields, paired_bootstrap
from ispbench.tasks.finishing_metrics import psnr
from ispbench.tasks.restoration_eval import evaluate_restoration

#: Our embedded kind -> the paper's benchmark it stands in for (the five-degradation table reports BSD68 at sigma 25).
IN_DOMAIN_DATASETS = {"dehaze": "SOTS", "derain": "Rain100L", "denoise_25": "BSD68 (sigma 25)", "deblur": "GoPro", "lowlight": "LOL",
                      "denoise_15": "BSD68 (sigma 15)", "denoise_50": "BSD68 (sigma 50)"}
OOD_DATASETS = {"nonuniform_haze": "RRSHID", "dense_rain": "GT-Rain", "real_noise": "SIDD", "other_blur": "ReLoBlur",
                "lowlight_street": "LoLi-Street"}
#: The kinds the paper's "average" column averages (one per task, as its five-degradation table).
AVERAGED = {"in_domain": ("dehaze", "derain", "denoise_25", "deblur", "lowlight"), "ood": tuple(OOD_DATASETS)}

PAPER_NAMES = {"adair": "AdaIR", "irpo": "IRPO", "irpo_l1": "AdaIR + L1 fine-tuning (control)"}
#: Shipped files per row, seed 0 first.
SEED_FILES = {
    "adair": ("adair_embedded.pt",),
    "irpo": ("irpo_embedded.pt", "irpo_embedded_seed1.pt", "irpo_embedded_seed2.pt"),
    "irpo_l1": ("irpo_l1_embedded.pt", "irpo_l1_embedded_seed1.pt", "irpo_l1_embedded_seed2.pt"),
}
METRICS = ("PSNR", "SSIM")


def shipped_files(method: str) -> list[Path]:
    """The shipped checkpoints of ``method`` (:data:`SEED_FILES`) that exist, seed 0 first."""
    if method not in SEED_FILES:
        raise ValueError(f"method: expected one of {sorted(SEED_FILES)}, got {method!r}")
    return [WEIGHTS_DIR / name for name in SEED_FILES[method] if (WEIGHTS_DIR / name).is_file()]


def test_sets(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``({"in_domain": set, "ood": set}, what the data are in words)``.

    Embedded (and smoke): the test-photo crops (``crops_per_photo``, ``size``). ``paper``: the authors' test
    sets under ``data_root`` (:mod:`ispbench.data.restoration_paper`); refused, naming ``data_root``, without it.
    """
    if params["data_root"] or params["profile"] == "paper":
        return paper_test_sets(params)
    kw = dict(crops_per_photo=params["crops_per_photo"], size=params["size"], seed=params["seed"] + 2000)
    sets = {"in_domain": RestorationSet("test", kinds=DEGRADATIONS, **kw),
            "ood": RestorationSet("test", kinds=OOD_DEGRADATIONS, ood=True, **kw)}
    data = (f"embedded restoration crops of the test photos ({', '.join(dict.fromkeys(sets['in_domain'].photo))}): "
            f"{params['crops_per_photo']} crops of {params['size']} px per photo and degradation, stand-ins for the paper's benchmarks")
    return sets, data


@dataclass
class ConcatenatedSet:
    """Several restoration sets of one crop size as one (the attributes :func:`table_rows` reads)."""

    degraded: torch.Tensor
    clean: torch.Tensor
    photo: list
    kind: list
    task: list
    crop: list

    def __len__(self) -> int:
        return len(self.clean)

    @classmethod
    def of(cls, parts: Sequence[Any]) -> ConcatenatedSet:
        return cls(torch.cat([p.degraded for p in parts]), torch.cat([p.clean for p in parts]),
                   [f"{i}:{x}" for i, p in enumerate(parts) for x in p.photo],  # a file stem is only unique within its set
                   [x for p in parts for x in p.kind], [x for p in parts for x in p.task], [int(x) for p in parts for x in p.crop])


#: The paper's test sets per table (names of :data:`ispbench.data.restoration_paper.PAPER_SETS`) and the sigma of noise sets.
PAPER_TEST_SETS = {
    "in_domain": (("SOTS", "sots_outdoor", None), ("Rain100L", "rain100l_test", None), ("BSD68 (sigma 25)", "bsd68", 25.0),
                  ("GoPro", "gopro_test", None), ("LOL", "lol_test", None)),
    "ood": (("RRSHID", "rrshid", None), ("GT-Rain", "gt_rain", None), ("SIDD", "sidd", None), ("ReLoBlur", "reloblur", None),
            ("LoLi-Street", "loli_street", None)),
}


def paper_test_sets(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The authors' test sets under ``data_root``, concatenated per table, each sample's ``kind`` our stand-in's
    name for that benchmark (so :func:`table_rows` labels it with the paper's). Refuses without ``data_root``."""
    root = params["data_root"]
    if not root:
        raise DatasetMissingError(
            "IRPO under the `paper` profile needs data_root: a folder holding the authors' test sets (SOTS-outdoor, "
            "Rain100L, BSD68, GoPro, LOL and the out-of-domain RRSHID, GT-Rain, SIDD, ReLoBlur, LoLi-Street) in the "
            "layouts of data_cards/restoration_paper.md; run with -p data_root DIR (the embedded profile uses the embedded crops)")
    ours = {**{v: k for k, v in IN_DOMAIN_DATASETS.items()}, **{v: k for k, v in OOD_DATASETS.items()}}
    sets, found = {}, []
    for table, entries in PAPER_TEST_SETS.items():
        parts = []
        for label, name, sigma in entries:
            part = restoration_paper.load_restoration_pairs(root, name, max_images=params["max_images"], size=params["size"],
                                                            sigma=sigma, seed=params["seed"])
            part.kind = [ours[label]] * len(part)
            parts.append(part)
            found.append(f"{label} ({len(part)})")
        sets[table] = ConcatenatedSet.of(parts)
    return sets, f"the paper's test sets under {root}: {', '.join(found)}; centre crops of {params['size']} px"


def score_models(models: Sequence[AdaIR], data: Any, *, stochastic: bool = False) -> list[pd.DataFrame]:
    """Per-sample scores (:func:`~ispbench.tasks.restoration_eval.evaluate_restoration`) of each seed's model."""
    out = []
    for model in models:
        torch.manual_seed(0)  # the stochastic path draws its samples: the same draws for every model
        out.append(evaluate_restoration(make_restore_fn(model, stochastic=stochastic), data))
    return out


def input_scores(data: Any) -> pd.DataFrame:
    """The degraded inputs scored as restorations (the "no restoration" row)."""
    return evaluate_restoration(lambda x: x, data)


def _dataset_of(table: str) -> dict[str, str]:
    return IN_DOMAIN_DATASETS if table == "in_domain" else OOD_DATASETS


def table_rows(results: Mapping[str, Sequence[pd.DataFrame]], table: str, **extra: Any) -> pd.DataFrame:
    """Rows ``dataset, method, metric, value (mean over seeds), median, ci_low, ci_high, n_seeds`` per kind and
    the paper's ``average`` (over :data:`AVERAGED`'s kinds), intervals clustered by photo."""
    names = _dataset_of(table)
    rows = []
    for method, per_seed in results.items():
        if not per_seed:
            continue
        frame = per_seed[0]
        groups = [(names[k], frame.index[frame.kind == k]) for k in names if (frame.kind == k).any()]
        averaged = frame.index[frame.kind.isin(AVERAGED[table])]
        if len(averaged):
            groups.append(("average", averaged))
        for dataset, idx in groups:
            for metric in METRICS:
                column = metric.lower()
                if dataset == "average":  # each kind weighted once, as the paper's average of benchmarks
                    scores = np.stack([_kind_balanced(s, AVERAGED[table], column) for s in per_seed])
                    clusters = list(frame.loc[averaged, "photo"])
                else:
                    scores = np.stack([s.loc[idx, column].to_numpy() for s in per_seed])
                    clusters = list(frame.loc[idx, "photo"])
                est = bootstrap_mean(scores, clusters=clusters)
                digits = 2 if metric == "PSNR" else 4
                rows.append({"dataset": dataset, "method": method, "metric": metric, "value": round(est.mean, digits),
                             "median": round(est.median, digits), **extra,
                             **interval_fields(est.ci_low, est.ci_high, n_seeds=est.n_seeds, metric=metric, digits=digits)})
    return pd.DataFrame(rows)


def _kind_balanced(scores: pd.DataFrame, kinds: Sequence[str], column: str) -> np.ndarray:
    """Per-sample scores of ``kinds`` weighted so that each kind counts once in the mean."""
    part = scores[scores.kind.isin(kinds)]
    counts = part.kind.map(part.kind.value_counts())
    return (part[column] * len(part) / (len(kinds) * counts)).to_numpy()


def paired_claims(results: Mapping[str, Sequence[pd.DataFrame]], pairs: Sequence[tuple[str, str]], table: str) -> pd.DataFrame:
    """"A beats B?" on the ``average`` (kind-balanced) PSNR and SSIM: paired bootstrap over crops clustered by photo.
    Rows with unequal seed counts pair each seed of A with the mean of B's seeds."""
    rows = []
    for a, b in pairs:
        if not results.get(a) or not results.get(b):
            continue
        frame = results[a][0]
        part = frame[frame.kind.isin(AVERAGED[table])]
        for metric in METRICS:
            column = metric.lower()
            sa = np.stack([_kind_balanced(s, AVERAGED[table], column) for s in results[a]])
            sb = np.stack([_kind_balanced(s, AVERAGED[table], column) for s in results[b]])
            if sa.shape != sb.shape:
                sb = np.repeat(sb.mean(0, keepdims=True), len(sa), 0)
            cmp = paired_bootstrap(sa, sb, clusters=list(part.photo))
            digits = 2 if metric == "PSNR" else 4
            rows.append({"comparison": f"{a} - {b}", "metric": metric, "difference": round(cmp.difference, digits),
                         "ci_low": round(cmp.ci_low, digits), "ci_high": round(cmp.ci_high, digits),
                         "P(A > B)": round(cmp.fraction_a_better, 3), "seeds": f"{len(results[a])} vs {len(results[b])}",
                         "verdict": "A better" if cmp.ci_low > 0 else ("B better" if cmp.ci_high < 0 else "no clear difference")})
    return pd.DataFrame(rows)


def examples_figure(data: Any, models: Mapping[str, AdaIR], *, crop: int = 0, photo: str | None = None):
    """One row per degradation kind of ``data``: the degraded crop, each model's restoration (deterministic
    path, PSNR in the title) and the clean crop (crop ``crop`` of ``photo``, default the first photo, where the
    kind has it; otherwise the kind's first sample)."""
    import matplotlib.pyplot as plt

    photo = photo or data.photo[0]
    kinds = list(dict.fromkeys(data.kind))
    cols = ["degraded", *models, "clean"]
    fig, axes = plt.subplots(len(kinds), len(cols), figsize=(1.6 * len(cols), 1.6 * len(kinds)), squeeze=False)
    for r, kind in enumerate(kinds):
        of_kind = [j for j in range(len(data)) if data.kind[j] == kind]
        # the chosen photo's crop where the kind has it (embedded); else the kind's first sample (the paper's sets)
        i = next((j for j in of_kind if data.photo[j] == photo and int(data.crop[j]) == crop), of_kind[0])
        x, clean = data.degraded[i:i + 1], data.clean[i:i + 1]
        images = {"degraded": x, **{name: make_restore_fn(m)(x).clamp(0, 1) for name, m in models.items()}, "clean": clean}
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(images[name][0].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            label = name if name == "clean" else f"{name}\n{float(psnr(images[name], clean)):.1f} dB"
            if r == 0 or name != "clean":
                ax.set_title(label, fontsize=7)
            if c == 0:
                ax.set_ylabel(kind, fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the reward and data ablations


@dataclass(frozen=True)
class Ablation:
    """One GRPO run of the ablation tables: seed 0, the main rows' recipe at :data:`ABLATION_ITERATIONS` iterations."""

    name: str
    label: str
    tables: tuple[str, ...]
    rewards: str = "general,expert,restoration"
    selection: str = "worst"
    fraction: float = 0.3

    @property
    def file(self) -> str:
        return f"irpo_ablation_{self.name}_embedded.pt"

    def train_options(self) -> list[str]:
        return ["--rewards", self.rewards, "--selection", self.selection, "--fraction", str(self.fraction)]


#: Iterations of each ablation run (half of the main rows' 2,000: eight runs fit one CPU session).
ABLATION_ITERATIONS = 1000
#: The rows of both ablations; ``all`` (every reward, worst 30%) is the common row of the two tables.
#: Worst-first and random at 100% keep the same samples, so one run stands for both.
ABLATIONS = (
    Ablation("all", "all three", ("reward", "data")),
    Ablation("general", "general only", ("reward",), rewards="general"),
    Ablation("expert", "expert only", ("reward",), rewards="expert"),
    Ablation("restoration", "restoration only", ("reward",), rewards="restoration"),
    Ablation("worst10", "worst-first", ("data",), fraction=0.1),
    Ablation("random10", "random", ("data",), selection="random", fraction=0.1),
    Ablation("random30", "random", ("data",), selection="random", fraction=0.3),
    Ablation("all100", "worst-first = random", ("data",), fraction=1.0),
)


def ablation_models(smoke: bool = False, *, seed: int = 0) -> tuple[dict[str, AdaIR], dict[str, Path], dict[str, str]]:
    """``({name: model}, {name: its training log}, notes)`` for the pre-trained ``adair`` and every
    :data:`ABLATIONS` run: the shipped files, or under smoke tiny ones trained now (seconds)."""
    if smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="irpo_ablation_smoke_"))
        # 64 px is the NIQE judge's smallest crop; validation at 32 px keeps eight runs within seconds
        pool = RestorationSet("train", crops_per_photo=1, size=64, seed=seed)
        val = RestorationSet("val", crops_per_photo=1, size=32, seed=seed + 1000)
        models = {"adair": _smoke_pretrained(out_dir, val, seed=seed, iterations=4)}
        for ab in ABLATIONS:
            start = AdaIR(SMOKE_CONFIG)
            start.load_state_dict(models["adair"].state_dict())
            args = grpo.Args(seed=seed, perceptual="gmsd", iterations=2, eval_every=2, log_every=1, group_size=2, patch_size=64,
                             rewards=ab.rewards, selection=ab.selection, fraction=ab.fraction,
                             out_dir=str(out_dir / ab.name), progress_bar=False)
            models[ab.name] = grpo.train(args, model=start, pool=pool, val=val)["model"]
        return models, {ab.name: out_dir / ab.name / "metrics.csv" for ab in ABLATIONS}, {}
    models, logs, notes = {"adair": load_model(WEIGHTS_DIR / SEED_FILES["adair"][0])}, {}, {}
    for ab in ABLATIONS:
        path = WEIGHTS_DIR / ab.file
        if path.is_file():
            models[ab.name], logs[ab.name] = load_model(path), path.with_name(f"{path.stem}_train.csv")
        else:
            notes[ab.name] = f"{ab.file} not shipped: row left out"
    return models, logs, notes


def ablation_table(results: Mapping[str, Mapping[str, Sequence[pd.DataFrame]]], table: str) -> pd.DataFrame:
    """The ``average`` rows (:func:`table_rows`) of the runs in ablation ``table`` (``reward`` or ``data``) and
    of the pre-trained ``adair``, on every test table of ``results`` (``{test table: {name: [scores]}}``).
    Adds ``table``, ``rewards``, ``selection``, ``fraction`` and the paper's row ``label``."""
    if table not in ("reward", "data"):
        raise ValueError(f"table: expected 'reward' or 'data', got {table!r}")
    by_name = {ab.name: ab for ab in ABLATIONS}
    frames = []
    for test_table, per_name in results.items():
        rows = {n: v for n, v in per_name.items() if n == "adair" or (n in by_name and table in by_name[n].tables)}
        scored = table_rows(rows, test_table)
        if not scored.empty:
            frames.append(scored[scored.dataset == "average"].drop(columns="dataset").assign(table=test_table))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True).rename(columns={"method": "run"})
    pre = Ablation("adair", PAPER_NAMES["adair"] + " (pre-trained)", (), rewards="", selection="", fraction=0.0)
    abl = [by_name.get(r, pre) for r in out.run]
    return out.assign(label=[a.label for a in abl], rewards=[a.rewards for a in abl],
                      selection=[a.selection for a in abl], fraction=[a.fraction for a in abl])


def ablation_paper_rows(table: str) -> pd.DataFrame:
    """The paper's ablation numbers (:mod:`ispbench.papers`, ``IRPO`` tables ``reward_ablation`` / ``data_ablation``)."""
    frame = papers.load("IRPO")
    return frame[frame["table"] == f"{table}_ablation"].reset_index(drop=True)


def gradient_shares(model: AdaIR, pool: Any, *, rewards: str = "general,expert,restoration", n_inputs: int = 8,
                    seed: int = 0, args: grpo.Args | None = None) -> pd.DataFrame:
    """Why the reward choice barely moves the test-time path, measured: the norm of each term of IRPO's loss's
    gradient on the authors' trainable parameters, split into the Beta policy heads (which only the stochastic
    path uses) and the shared layers (on the test-time path), at ``model``'s current weights.

    For ``n_inputs`` samples of ``pool`` (each a group of ``args.group_size``), as one GRPO iteration computes
    them: ``pg`` (PPO-clip with group-normalised advantages), ``sup`` (``lambda_sup * L1(out, clean)``) and
    ``consistency`` (``lambda_consistency * L1(out, deterministic out)``). Rows ``term, part, grad_norm``
    (mean over inputs) and ``share`` (of the three terms' norms on that part)."""
    args = args or grpo.Args(perceptual="gmsd")
    reward_fn, _ = grpo.build_reward(grpo.parse_rewards(rewards), args, pool)
    heads = model.policy_parameters()
    head_ids = {id(p) for p in heads}
    shared = [p for p in model.authors_trainable_parameters() if id(p) not in head_ids]
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(pool), generator=gen)[:n_inputs].tolist()
    norms: dict[tuple[str, str], list[float]] = {}
    g = args.group_size
    torch.manual_seed(seed)
    for i in picks:
        x, c = pool.degraded[i:i + 1].repeat_interleave(g, 0), pool.clean[i:i + 1].repeat_interleave(g, 0)
        out, log_prob = model(x, stochastic=True)
        with torch.no_grad():
            advantages = grpo.group_advantages(reward_fn(x, out.detach(), c, [pool.task[i]] * g)["total"], g)
            deterministic = model(x)
        terms = grpo.loss_terms(log_prob, log_prob.detach(), advantages, out, c, deterministic, args)
        weights = {"pg": 1.0, "sup": args.lambda_sup, "consistency": args.lambda_consistency}  # as the loss sums them
        for term, loss in terms.items():
            grads = torch.autograd.grad(weights[term] * loss, heads + shared, retain_graph=True, allow_unused=True)
            for part, sl in (("policy heads", slice(0, len(heads))), ("shared layers", slice(len(heads), None))):
                sq = sum(float(gr.pow(2).sum()) for gr in grads[sl] if gr is not None)
                norms.setdefault((term, part), []).append(sq ** 0.5)
    rows = pd.DataFrame([{"term": t, "part": part, "grad_norm": float(np.mean(v))} for (t, part), v in norms.items()])
    rows["share"] = rows.grad_norm / rows.groupby("part").grad_norm.transform("sum")
    return rows


def reward_curves_figure(files: Sequence[str | Path], *, labels: Sequence[str] | None = None, window: int = 5):
    """GRPO training curves from shipped ``*_train.csv`` logs: the mean total reward and each reward term per
    metrics row (a rolling mean over ``window`` rows), and the validation PSNR of both inference paths."""
    import matplotlib.pyplot as plt

    terms = ("reward_total", "reward_general", "reward_expert", "reward_restoration")
    fig, axes = plt.subplots(1, len(terms) + 1, figsize=(3.0 * (len(terms) + 1), 2.6))
    for i, path in enumerate(files):
        log = pd.read_csv(path)
        label = labels[i] if labels else Path(path).stem.removesuffix("_train")
        train = log.dropna(subset=["reward_total"]) if "reward_total" in log else log.iloc[0:0]
        for ax, term in zip(axes, terms, strict=False):
            if term in train and train[term].notna().any():
                ax.plot(train.iteration, train[term].rolling(window, min_periods=1).mean(), label=label, lw=1)
            ax.set_title(term.replace("reward_", "reward: "), fontsize=8)
        val = log.dropna(subset=["val_psnr"])
        line = axes[-1].plot(val.iteration, val.val_psnr, marker=".", lw=1, label=f"{label}")[0]
        if "val_stochastic_psnr" in val:
            axes[-1].plot(val.iteration, val.val_stochastic_psnr, ls=":", lw=1, color=line.get_color())
        axes[-1].set_title("validation PSNR (dB; dotted: stochastic)", fontsize=8)
    for ax in axes:
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- shipping trained models with their card


def ship_runs(family: str, runs: Sequence[Mapping[str, Any]], *, description: str, notes: Sequence[str] = (),
              base: str | None = None) -> list[dict]:
    """Copy each run's ``best.pt`` (selected on the validation photos) to ``WEIGHTS_DIR/<file>`` with its
    ``metrics.csv`` as ``<stem>_train.csv``, score it on the embedded test tables and write the family's card
    ``WEIGHTS_DIR/<family>.md`` / ``.json``. ``runs``: per file ``file, run_dir, role, seed, command``.
    ``base``: a shipped file the runs started from; each is then stored as its difference from it."""
    params = {"crops_per_photo": 8, "size": 128, "seed": 0, "data_root": "", "profile": "embedded", "max_images": 0}
    sets, data = test_sets(params)
    entries = []
    for r in runs:
        run_dir, dest = Path(r["run_dir"]), WEIGHTS_DIR / r["file"]
        summary = json.loads((run_dir / "summary.json").read_text())
        if base:
            best = load_model(run_dir / "best.pt")
            export_model(best, dest, metadata=best.metadata, base=WEIGHTS_DIR / base)
        else:
            with atomic.atomic_open(dest, "wb") as f:
                f.write((run_dir / "best.pt").read_bytes())
        atomic.write_text(WEIGHTS_DIR / f"{dest.stem}_train.csv", (run_dir / "metrics.csv").read_text())
        model = load_model(dest)
        test = {}
        for table, ds in sets.items():
            means = evaluate_restoration(make_restore_fn(model), ds).pipe(_average_scores, table)
            test[table] = {k: round(v, 4) for k, v in means.items()}
        entries.append({"file": r["file"], "role": r["role"], "seed": r["seed"], "command": r["command"],
                        "selected_iteration": model.metadata.get("iterations"), "iterations": summary["iterations"],
                        "train_wall_time_s": summary["elapsed_s"], "validation": model.metadata.get("validation", {}),
                        "test": test, "machine": summary.get("machine", "")})
    lines = [f"# {family}: shipped checkpoints", "", description, "",
             f"Test data: {data} (in-domain: the five training degradations; out of domain: the five OOD stand-ins). "
             "Selection: the iteration with the best mean validation PSNR (validation photos, deterministic path).",
             "Each file's `_train.csv` is the trainer's metrics log (losses, rewards, validation PSNR of both paths).", *notes, "",
             "## Files and metrics (PSNR in dB, deterministic path; averages weight each benchmark once)", "",
             "| file | role | selected / iterations | train time (s) | val PSNR | test in-domain PSNR / SSIM | test OOD PSNR / SSIM |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        t = e["test"]
        lines.append(f"| `{e['file']}` | {e['role']} | {e['selected_iteration']} / {e['iterations']} | {e['train_wall_time_s']:.0f} | "
                     f"{e['validation'].get('val_psnr', float('nan')):.2f} | {t['in_domain']['psnr']:.2f} / {t['in_domain']['ssim']:.4f} | "
                     f"{t['ood']['psnr']:.2f} / {t['ood']['ssim']:.4f} |")
    lines += ["", "## Recipes", ""]
    for e in entries:
        lines += [f"`{e['file']}` ({e['machine']}):", "", "```bash", e["command"], "```", ""]
    atomic.write_text(WEIGHTS_DIR / f"{family}.md", "\n".join(lines))
    atomic.write_json(WEIGHTS_DIR / f"{family}.json", {"family": family, "description": description, "data": data, "files": entries})
    return entries


def _average_scores(rows: pd.DataFrame, table: str) -> dict[str, float]:
    return {m: float(_kind_balanced(rows, AVERAGED[table], m).mean()) for m in ("psnr", "ssim")}


# ----------------------------------------------------------------------------- smoke: tiny models trained now


SMOKE_CONFIG = AdaIRConfig(dim=8)


def _smoke_pretrained(out_dir: Path, val: Any, *, seed: int, iterations: int) -> AdaIR:
    args = pretrain.Args(seed=seed, kinds=",".join(DEGRADATIONS), patch_size=32, batch_size=2, iterations=iterations,
                         eval_every=iterations, out_dir=str(out_dir / "pretrain"), progress_bar=False)
    return pretrain.train(args, val=val, config=SMOKE_CONFIG)["model"]


def smoke_models(out_dir: str | Path | None = None, *, seed: int = 0, iterations: int = 4) -> dict[str, list[AdaIR]]:
    """A tiny AdaIR pre-trained for a few iterations, then post-trained by GRPO and by the L1 control (seconds).
    ``out_dir``: the run folders (default: a new temporary folder)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="irpo_smoke_"))
    val = RestorationSet("val", crops_per_photo=1, size=64, seed=seed + 1000)
    pool = RestorationSet("train", crops_per_photo=1, size=64, seed=seed)
    base = _smoke_pretrained(out_dir, val, seed=seed, iterations=iterations)
    models = {"adair": [base]}
    for key, objective in (("irpo", "grpo"), ("irpo_l1", "l1")):
        start = AdaIR(SMOKE_CONFIG)
        start.load_state_dict(base.state_dict())
        args = grpo.Args(seed=seed, objective=objective, perceptual="gmsd", iterations=iterations, eval_every=iterations,
                         group_size=2, patch_size=64, out_dir=str(out_dir / key), progress_bar=False)
        models[key] = [grpo.train(args, model=start, pool=pool, val=val)["model"]]
    return models


def training_logs(method: str, smoke_dir: str | Path | None = None) -> list[Path]:
    """The training logs of ``method``'s seeds: the shipped ``<file>_train.csv`` (seed 0 first), or with
    ``smoke_dir`` (the folder given to :func:`smoke_models`) the smoke run's ``metrics.csv``."""
    if smoke_dir is not None:
        return [p for p in [Path(smoke_dir) / method / "metrics.csv"] if p.is_file()]
    return [f.with_name(f"{f.stem}_train.csv") for f in shipped_files(method) if f.with_name(f"{f.stem}_train.csv").is_file()]


def load_rows(methods: Sequence[str] = tuple(SEED_FILES)) -> tuple[dict[str, list[AdaIR]], dict[str, str]]:
    """The shipped models of each row and a note per row saying which files (or that none is shipped)."""
    models, notes = {}, {}
    for method in methods:
        files = shipped_files(method)
        name = PAPER_NAMES[method]
        if files:
            models[method] = [load_model(f) for f in files]
            notes[name] = f"shipped: {', '.join(f.name for f in files)} ({len(files)} training seed(s))"
        else:
            notes[name] = "no shipped checkpoint: row left out"
    return models, notes


__all__ = ["ABLATIONS", "ABLATION_ITERATIONS", "AVERAGED", "Ablation", "ablation_models", "ablation_paper_rows", "ablation_table",
           "gradient_shares", "reward_curves_figure", "training_logs", "IN_DOMAIN_DATASETS", "METRICS", "OOD_DATASETS", "PAPER_NAMES", "SEED_FILES", "SMOKE_CONFIG",
           "examples_figure", "input_scores", "load_rows", "paired_claims", "score_models", "ship_runs", "shipped_files", "smoke_models", "table_rows",
           "test_sets"]
