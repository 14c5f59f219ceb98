"""Helpers behind the AdaptiveISP notebooks: load (or retrain) models, score them, tabulate.

Each notebook stays thin: it picks its parameters, then calls these functions. Every model the
notebooks compare comes from one of three places, and :class:`Loaded` says which (``source``):
``"shipped"`` (a checkpoint in ``ispbench/weights``), ``"retrained"`` (trained in this run,
because the notebook was asked to ``retrain``) or ``"untrained"`` (smoke profile only: random
initialisation, the numbers are meaningless and the notebook says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ispbench.chapters.detection_intervals import map_intervals, paired_map_difference, seed_map_estimates
from ispbench.data import synthetic_detection
from ispbench.data.detection_sets import check_detector_classes, load_detection_split, refusal_message
from ispbench.data.prepared import DatasetMissingError
from ispbench.data.synthetic_detection import CLASS_NAMES
from ispbench.detection_baselines import candidates
from ispbench.detection_baselines import train as baseline_train
from ispbench.detection_baselines.models import build_model, default_weights, load_baseline
from ispbench.detection_baselines.models import make_isp_fn as baseline_isp_fn
from ispbench.detection_baselines.pipeline import FIXED_PIPELINE
from ispbench.methods.adaptiveisp.inference import load_policy, module_frequencies, run_policy
from ispbench.methods.adaptiveisp.inference import make_isp_fn as policy_isp_fn
from ispbench.methods.adaptiveisp.networks import PolicyNet
from ispbench.methods.adaptiveisp.recipes import baseline_train_args, policy_train_args
from ispbench.methods.adaptiveisp.train import Args, train
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.stats import DEFAULT_RESAMPLES, bootstrap_mean, interval_fields, no_interval_fields  # noqa: F401 - for the notebooks
from ispbench.tasks.detection_eval import evaluate_isp
from ispbench.tasks.detector import DEFAULT_WEIGHTS, FrozenDetector
from ispbench.training.checkpoint import settings_hash
from ispbench.training.config import flat_dict, from_overrides

#: Our method keys -> the paper's method names (Table 1 rows); "Default ISP" is our extra row.
PAPER_NAMES = {
    "default": "Default ISP",
    "hpo": "Hyperparameter Optimization",
    "attention": "Attention-aware Learning",
    "adaptiveisp": "AdaptiveISP",
    "reconfigisp": "ReconfigISP",
}
#: ispbench module names -> the paper's column names (Tables 4 and 8).
MODULE_DISPLAY = {
    "exposure": "Exposure", "gamma": "Gamma", "ccm": "CCM", "sharpen_blur": "Sharpen/Blur", "denoise": "Denoise",
    "tone": "Tone Mapping", "contrast": "Contrast", "saturation": "Saturation", "desaturation": "Desaturation",
    "white_balance": "White Balance",
}
METRICS = ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95")
#: lambda_c values of Table 4 and the file each shipped checkpoint would have.
TABLE4_LAMBDAS = (0.0, 0.005, 0.01, 0.05, 0.1)


def lambda_tag(lambda_c: float) -> str:
    """``0.0 -> "0"``, ``0.005 -> "0.005"`` (the paper CSV's ``lambda_c=`` spelling)."""
    return f"{lambda_c:g}"


def adaptiveisp_weights(lambda_c: float = 0.0, reuse_penalty: bool = True, mask_reuse: bool = True) -> Path:
    """Shipped checkpoint path: ``adaptiveisp_embedded.pt`` (lambda_c 0, reuse penalty on, hard reuse mask), else
    ``adaptiveisp_embedded_lc<lambda>.pt`` / ``adaptiveisp_embedded_noreuse.pt`` (no penalty, no mask) /
    ``adaptiveisp_embedded_nomask.pt`` (the penalty without the mask: Table 8's penalty can fire)."""
    if not reuse_penalty:
        return WEIGHTS_DIR / "adaptiveisp_embedded_noreuse.pt"
    if not mask_reuse:
        return WEIGHTS_DIR / "adaptiveisp_embedded_nomask.pt"
    if lambda_c == 0:
        return WEIGHTS_DIR / "adaptiveisp_embedded.pt"
    return WEIGHTS_DIR / f"adaptiveisp_embedded_lc{lambda_tag(lambda_c)}.pt"


@dataclass
class Loaded:
    """A model plus where it came from (``shipped`` / ``retrained`` / ``untrained``) and a note."""

    model: Any
    source: str
    note: str
    path: Path | None = None
    """the model's file (shipped or retrained), ``None`` for an untrained model"""


def load_detector(detector_weights: str = "", *, imgsz: int, device: str = "cpu", allow_random: bool = False) -> Loaded:
    """The frozen detector: ``detector_weights`` or the shipped embedded one.

    With ``allow_random`` (smoke profile only) a missing file gives a randomly initialised
    YOLOv8n built from ultralytics' YAML, and the note says so.
    """
    path = Path(detector_weights) if detector_weights else DEFAULT_WEIGHTS
    if path.is_file():
        return Loaded(FrozenDetector(path, imgsz=imgsz, device=device), "shipped", path.name)
    if not allow_random:
        return Loaded(FrozenDetector(path if detector_weights else None, imgsz=imgsz, device=device), "shipped", "")
    torch.manual_seed(0)
    det = FrozenDetector(model_yaml="yolov8n.yaml", nc=len(CLASS_NAMES), imgsz=imgsz, device=device, names=list(CLASS_NAMES))
    return Loaded(det, "untrained", f"RANDOM-INIT YOLOv8n: {path} is missing (smoke profile); mAP numbers are meaningless")


def _train_dir(name: str, seed: int, args: Any) -> Path:
    """``<cache>/runs/<name>__seed<seed>__<hash of the settings>``: a rerun with the same settings resumes there
    (after a crash, from ``last.pt``), a retraining with other settings never shares it."""
    return cache_dir() / "runs" / f"{name}__seed{seed}__{settings_hash(flat_dict(args))}"


def adaptiveisp_policy(
    checkpoint: str = "",
    *,
    lambda_c: float = 0.0,
    reuse_penalty: bool = True,
    mask_reuse: bool = True,
    retrain: bool = False,
    train_overrides: dict | None = None,
    allow_untrained: bool = False,
    device: str = "cpu",
) -> Loaded:
    """An AdaptiveISP policy: ``checkpoint``, else the shipped one for (lambda_c, reuse_penalty);
    ``retrain`` trains one now with :mod:`.train` (``train_overrides`` -> :class:`.train.Args`)."""
    if retrain:
        overrides = dict(train_overrides or {})
        seed = int(overrides.get("seed", 0))
        name = f"adaptiveisp_lc{lambda_tag(lambda_c)}{'' if reuse_penalty else '_noreuse'}{'' if mask_reuse else '_nomask'}"
        # the Table 8 ablation (no reuse penalty) must also drop the hard reuse mask, else reuse stays impossible
        mask = bool(overrides.get("mask_reuse", False)) and reuse_penalty and mask_reuse
        args = from_overrides(Args, {**overrides, "lambda_c": lambda_c, "reuse_penalty": 1.0 if reuse_penalty else 0.0,
                                     "mask_reuse": mask, "resume": True})
        out = _train_dir(name, seed, args)
        export = out / "policy.pt"
        args = from_overrides(Args, {"out_dir": str(out), "export": str(export)}, base=args)
        train(args)
        return Loaded(load_policy(export, device), "retrained", f"trained now: {args.iterations} iterations, seed {seed}, out {out}")
    path = Path(checkpoint) if checkpoint else adaptiveisp_weights(lambda_c, reuse_penalty, mask_reuse)
    if path.is_file():
        return Loaded(load_policy(path, device), "shipped", f"checkpoint {path.name}")
    if allow_untrained:
        torch.manual_seed(0)
        return Loaded(PolicyNet(param_heads="shared", disabled_modules=["denoise"]).to(device).eval(), "untrained",
                      f"UNTRAINED policy: {path.name} is missing (smoke profile)")
    raise FileNotFoundError(
        f"{path} not found: this AdaptiveISP variant (lambda_c={lambda_c}, reuse_penalty={reuse_penalty}) was not "
        "trained under the embedded profile. Run the notebook with retrain=True (and iterations > 0)."
    )


def baseline_model(
    method: str,
    checkpoint: str = "",
    *,
    retrain: bool = False,
    train_overrides: dict | None = None,
    allow_untrained: bool = False,
    device: str = "cpu",
) -> Loaded:
    """HPO or attention-aware baseline: shipped ``<method>_embedded.pt``, or retrained, or (smoke) untrained."""
    if retrain:
        overrides = dict(train_overrides or {})
        seed = int(overrides.get("seed", 0))
        args = from_overrides(baseline_train.Args, {**overrides, "method": method, "resume": True})
        out = _train_dir(method, seed, args)
        export = out / "model.pt"
        args = from_overrides(baseline_train.Args, {"out_dir": str(out), "export": str(export)}, base=args)
        baseline_train.train(args)
        return Loaded(load_baseline(export, device), "retrained", f"trained now: {args.iterations} iterations, seed {seed}", export)
    path = Path(checkpoint) if checkpoint else default_weights(method)
    if path.is_file():
        return Loaded(load_baseline(path, device), "shipped", f"checkpoint {path.name}", path)
    if allow_untrained:
        torch.manual_seed(0)
        pipe = [m for m in FIXED_PIPELINE if m != "denoise"]
        return Loaded(build_model(method, pipe).to(device).eval(), "untrained", f"UNTRAINED {method}: {path.name} is missing (smoke profile)")
    raise FileNotFoundError(f"{path} not found; run the notebook with retrain=True or train it (see its model card)")


def map_rows(method: str, result: dict, *, dataset: Any = None, **extra: Any) -> list[dict]:
    """``evaluate_isp`` result (percent, like the paper) -> rows ``method, metric, value`` (+ extra columns).

    Every row also carries the interval columns of :func:`ispbench.stats.interval_fields`
    (``n_seeds`` = 1, ``ci_low``, ``ci_high``, ``unit``): with ``dataset`` (the items the result was
    scored on) a 95% bootstrap interval over images (:func:`.detection_intervals.map_intervals`),
    without it NaN bounds.
    """
    intervals = map_intervals(result, dataset) if dataset is not None else {}
    nan = (float("nan"), float("nan"))
    return [{"method": method, "metric": m, "value": round(float(result[m]), 2), **extra,
             **interval_fields(*intervals.get(m, nan), n_seeds=1, metric=m, digits=2)} for m in METRICS]


def seed_map_rows(method: str, results: Sequence[dict], *, dataset: Any, **extra: Any) -> list[dict]:
    """Several training seeds' ``evaluate_isp`` results -> rows ``method, metric, value`` (mean over seeds),
    ``median``, and the 95% bootstrap interval over images of the seed-mean (:func:`.detection_intervals.seed_map_estimates`)."""
    est = seed_map_estimates(results, dataset)
    return [{"method": method, "metric": m, "value": round(est[m]["mean"], 2), "median": round(est[m]["median"], 2),
             **extra, **interval_fields(est[m]["ci_low"], est[m]["ci_high"], n_seeds=est[m]["n_seeds"], metric=m, digits=2)}
            for m in METRICS]


def paired_rows(name_a: str, results_a: Sequence[dict], name_b: str, results_b: Sequence[dict], *, dataset: Any) -> list[dict]:
    """"A beats B?": the paired bootstrap of mAP(A) - mAP(B) on the same images, one row per metric."""
    cmp = paired_map_difference(results_a, results_b, dataset)
    return [{"comparison": f"{name_a} - {name_b}", "metric": m, "difference": round(c["difference"], 2),
             "ci_low": round(c["ci_low"], 2), "ci_high": round(c["ci_high"], 2),
             "P(A > B)": round(c["fraction_a_better"], 3), "seeds": f"{c['n_seeds_a']} vs {c['n_seeds_b']}",
             "verdict": "A better" if c["ci_low"] > 0 else ("B better" if c["ci_high"] < 0 else "no clear difference")}
            for m, c in cmp.items()]


#: Shipped training seeds of each learned ISP: seed 0 is the plain file every notebook loads by default.
SEED_FILES = {
    "adaptiveisp": ("adaptiveisp_embedded.pt", "adaptiveisp_embedded_seed1.pt", "adaptiveisp_embedded_seed2.pt"),
    "hpo": ("hpo_embedded.pt", "hpo_embedded_seed1.pt", "hpo_embedded_seed2.pt"),
    "attention": ("attention_embedded.pt", "attention_embedded_seed1.pt", "attention_embedded_seed2.pt"),
    "reconfigisp": ("reconfigisp_embedded.pt", "reconfigisp_embedded_seed1.pt", "reconfigisp_embedded_seed2.pt"),
}


def shipped_seed_files(method: str) -> list[Path]:
    """The shipped checkpoints of ``method``'s training seeds that exist (seed 0 first)."""
    if method not in SEED_FILES:
        raise ValueError(f"method: expected one of {sorted(SEED_FILES)}, got {method!r}")
    return [WEIGHTS_DIR / name for name in SEED_FILES[method] if (WEIGHTS_DIR / name).is_file()]


@dataclass
class PolicyEval:
    """Score of an AdaptiveISP policy on a dataset plus what it did per image."""

    result: dict
    pipelines: list[list[dict]]
    isp_ms: float
    policy_ms: float
    cost_ms: float


def evaluate_policy(policy, dataset, detector, *, T: int = 5, stages: int | None = None, batch_size: int = 8,
                    imgsz: int | None = None, forbid_reuse: bool | None = None) -> PolicyEval:
    """Run the policy inside :func:`ispbench.tasks.detection_eval.evaluate_isp`, keeping every image's pipeline.

    ``isp_ms`` / ``policy_ms``: measured wall time per image (summed over stages, batched, on this
    machine); ``cost_ms``: mean of the paper's Table 4 module times over the chosen pipelines.
    """
    runs = []

    def isp(linear: torch.Tensor) -> torch.Tensor:
        run = run_policy(policy, linear, T, stages=stages, forbid_reuse=forbid_reuse)
        runs.append(run)
        return run.outputs

    result = evaluate_isp(isp, dataset, detector, batch_size=batch_size, imgsz=imgsz)
    pipelines = [p for r in runs for p in r.pipelines]
    n = max(len(pipelines), 1)
    isp_ms = sum(sum(r.isp_ms) * len(r.pipelines) for r in runs) / n
    pol_ms = sum(sum(r.policy_ms) * len(r.pipelines) for r in runs) / n
    cost = float(torch.cat([r.cost_ms for r in runs]).mean()) if runs else 0.0
    return PolicyEval(result, pipelines, isp_ms, pol_ms, cost)


def frequency_rows(pipelines: list[list[dict]], module_names, **extra: Any) -> list[dict]:
    """Per module, % of images whose pipeline uses it (counting repeats, so > 100% is possible, as in Table 8)."""
    freqs = module_frequencies(pipelines, list(module_names))
    rows = []
    for m, f in freqs.items():
        # per image: how often its pipeline uses the module (the frequency is 100 x their mean)
        counts = [100.0 * sum(step["module"] == m for step in p) for p in pipelines] or [0.0]
        est = bootstrap_mean(counts, n_resamples=DEFAULT_RESAMPLES, seed=0)
        rows.append({"method": "AdaptiveISP", "metric": "frequency", "value": round(100 * f, 2),
                     "setting_module": MODULE_DISPLAY[m], **extra,
                     **interval_fields(est.ci_low, est.ci_high, n_seeds=1, metric="frequency", digits=2)})
    return rows


def frequency_table_rows(pipelines: list[list[dict]], module_names, tag: str) -> list[dict]:
    """Tables 4 and 8: :func:`frequency_rows` with ``setting = "<tag>;module=<Module>"`` (the paper CSV's spelling)."""
    rows = []
    for r in frequency_rows(pipelines, module_names):
        module = r.pop("setting_module")
        rows.append({"method": r.pop("method"), "metric": r.pop("metric"), "value": r.pop("value"),
                     "setting": f"{tag};module={module}", **r})
    return rows


def timed_isp(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[float]]:
    """Wrap an ISP function to record its wall time per image (ms) in the returned list."""
    import time

    times: list[float] = []

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        y = fn(x)
        times.append((time.perf_counter() - t0) * 1000 / x.shape[0])
        return y

    return wrapped, times


def overrides_from(profile_args: dict) -> dict:
    """Keep only keys that are settings of :class:`.train.Args`, nested ones included (for notebook parameter dicts)."""
    names = set(flat_dict(Args()))
    return {k: v for k, v in profile_args.items() if k in names}


# ----------------------------------------------------------------------------- notebook set-up


def source_note(loaded: Loaded) -> str:
    """``"shipped: checkpoint hpo_embedded.pt"``: where a model came from, for a result file's ``sources``."""
    return f"{loaded.source}: {loaded.note}"


#: The profile that runs the papers' settings on the papers' data: no embedded fallback under it.
PAPER_PROFILE = "paper"


def requires_real_data(params: Mapping[str, Any]) -> bool:
    """True under the ``paper`` profile: loaders refuse the embedded data instead of using it."""
    return params.get("profile") == PAPER_PROFILE


def prepare_detector(params: Mapping[str, Any], *, smoke: bool = False) -> Loaded:
    """The frozen detector of an AdaptiveISP notebook, checked against its data; prints where it came from.

    Args:
        params: the notebook's parameters (``detector_weights``, ``imgsz``, ``device``, ``data_root``,
            ``dataset``, ``retrain``, ``iterations``).
        smoke: smoke profile: a missing detector gives a random one (and the note says so).

    Raises:
        ValueError: ``retrain=True`` with ``iterations <= 0``, or a detector whose classes do not fit the data.
        DatasetMissingError: the ``paper`` profile with an empty ``data_root`` (or ``dataset="embedded"``):
            the message names ``data_root`` and the ``ispbench data prepare`` command.
    """
    if params.get("retrain") and params.get("iterations", 0) <= 0:
        raise ValueError("retrain=True needs iterations > 0")
    if requires_real_data(params) and (not params["data_root"] or params["dataset"] == "embedded"):
        raise DatasetMissingError(refusal_message(params["data_root"], params["dataset"]))
    detector = load_detector(params["detector_weights"], imgsz=params["imgsz"], device=params["device"],
                             allow_random=smoke)
    check_detector_classes(detector.model, params["data_root"], params["dataset"])  # real data: COCO-80 labels
    print("detector:", detector.note or "embedded YOLOv8n", f"({detector.source})")
    return detector


def load_test_split(params: Mapping[str, Any], n_images: int | None = None) -> tuple[Any, str]:
    """The embedded low-light test split, or (``data_root`` set) the real ``dataset`` (LOD "All" etc.).

    Returns:
        ``(dataset, name)``: the items and the data's name in words.
    """
    data_root, dataset = params["data_root"], params["dataset"]
    test = load_detection_split(data_root, dataset, "test", params["n_images"] if n_images is None else n_images,
                                params["imgsz"], require_real=requires_real_data(params))
    return test, (f"{dataset} ({data_root})" if data_root else "embedded low-light test split")


def describe_data(data_name: str, n_images: int, detector: Loaded, *, imgsz: int, smoke: bool = False) -> str:
    """The ``data`` sentence of an AdaptiveISP result file: data, size, detector (and the smoke warning)."""
    return (f"{data_name} ({n_images} images), {imgsz} px, detector: {detector.note or 'embedded YOLOv8n'}"
            + (" [SMOKE: tiny run, numbers meaningless]" if smoke else ""))


def load_models(params: Mapping[str, Any], methods: Sequence[str] = ("adaptiveisp",), *, smoke: bool = False,
                lambda_c: float | None = None, reuse_penalty: bool = True, mask_reuse: bool = True,
                checkpoint: str | None = None,
                allow_untrained: bool | None = None, notes: dict[str, str] | None = None) -> dict[str, Loaded]:
    """The models a notebook compares, shipped or (``retrain=True``) retrained with the shipped recipes.

    Args:
        params: the notebook's parameters (``retrain``, ``iterations``, ``lr``, ``seed``, ``device``,
            ``data_root``, ``dataset``, ``detector_weights``, ``imgsz``, ``checkpoint``, ``lambda_c``).
        methods: keys among ``"hpo"``, ``"attention"``, ``"adaptiveisp"``, loaded in this order.
        smoke: smoke profile: missing checkpoints give untrained models (their notes say so).
        lambda_c, reuse_penalty: the AdaptiveISP variant (default: the notebook's ``lambda_c``, with the penalty).
        checkpoint: AdaptiveISP checkpoint (default: the notebook's ``checkpoint``; "" = the shipped one).
        allow_untrained: override ``smoke`` for the policy (Table 4 allows it only for lambda_c = 0).
        notes: if given, ``notes[method]`` records where each model came from.

    Returns:
        ``{method: Loaded}``.

    Raises:
        FileNotFoundError: an AdaptiveISP variant that was never trained (and no ``retrain``).
        ValueError: an unknown method.

    Recipes: :mod:`ispbench.methods.adaptiveisp.recipes`.
    """
    unknown = [m for m in methods if m not in ("hpo", "attention", "adaptiveisp")]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; expected 'hpo', 'attention' or 'adaptiveisp'")
    retrain, device = bool(params["retrain"]), params["device"]
    models = {}
    for method in methods:
        if method == "adaptiveisp":
            models[method] = adaptiveisp_policy(
                params["checkpoint"] if checkpoint is None else checkpoint,
                lambda_c=params["lambda_c"] if lambda_c is None else lambda_c, reuse_penalty=reuse_penalty,
                mask_reuse=mask_reuse,
                retrain=retrain, train_overrides=policy_train_args(params) if retrain else None,
                allow_untrained=smoke if allow_untrained is None else allow_untrained, device=device)
        else:
            models[method] = baseline_model(method, retrain=retrain,
                                            train_overrides=baseline_train_args(params, method) if retrain else None,
                                            allow_untrained=smoke, device=device)
        if notes is not None:
            notes[method] = source_note(models[method])
    return models


# ----------------------------------------------------------------------------- sensing conditions

#: ISO bins of the sensing-condition tables (the camera's whole-stop marks, ISO 100-6400).
ISO_BINS = (100, 200, 400, 800, 1600, 3200, 6400)
#: Coarse ISO groups of the per-image pipeline tables.
ISO_GROUPS = {"ISO 100-400": (0, 400), "ISO 500-1600": (400, 1600), "ISO 2000-6400": (1600, 1e9)}


def sensing_conditions(root: str | Path | None = None) -> pd.DataFrame:
    """Capture metadata of every image of the embedded detection set, one row per split, light and scene.

    Columns: ``split, light, scene_id, iso, exposure_time, shutter`` (``1/t``), ``lux, illuminant``
    (``mixed`` for the blends), ``motion_blur_px, underexposure_ev``.
    """
    path = synthetic_detection.ensure_dataset(root)
    rows = []
    for split in synthetic_detection.SPLITS:
        for light in synthetic_detection.LIGHTS:
            for m in synthetic_detection.EmbeddedDetection(path, split, light).meta:
                rows.append({"split": split, "light": light, "scene_id": m["scene_id"], "iso": float(m["iso"]),
                             "exposure_time": float(m["exposure_time"]), "shutter": round(1.0 / float(m["exposure_time"])),
                             "lux": float(m["light"]), "illuminant": str(m.get("illuminant", "")).split(":")[0],
                             "motion_blur_px": float(m.get("motion_blur_px", 0.0)),
                             "underexposure_ev": float(m.get("underexposure_ev", 0.0))})
    return pd.DataFrame(rows)


def iso_group(iso: Any) -> str:
    """``ISO_GROUPS`` label of an ISO value (``"ISO unknown"`` for a missing one, e.g. raw COCO)."""
    try:
        value = float(iso)
    except (TypeError, ValueError):
        return "ISO unknown"
    if not np.isfinite(value):
        return "ISO unknown"
    return next(name for name, (lo, hi) in ISO_GROUPS.items() if lo < value <= hi)


def iso_histogram(conditions: pd.DataFrame) -> pd.DataFrame:
    """Images per ISO bin (rows: ``split/light``; columns: ISO ranges ending at each :data:`ISO_BINS` mark), in %."""
    edges = [0, *[b * 2 ** (1 / 6) for b in ISO_BINS]]  # each bin ends half a third-stop above its mark
    labels = [f"<={b}" for b in ISO_BINS]
    binned = pd.cut(conditions["iso"], edges, labels=labels)
    table = pd.crosstab((conditions["split"] + "/" + conditions["light"]).rename("split/light"), binned, normalize="index") * 100
    return table.reindex(columns=labels, fill_value=0.0).round(1)


# ----------------------------------------------------------------------------- snapshot selection

def snapshot_files(run_dir: str | Path) -> dict[int, Path]:
    """``{iteration: file}`` of a run's exported snapshots (``policy_it<N>.pt`` or ``model_it<N>.pt``)."""
    found = {}
    for path in Path(run_dir).glob("*_it*.pt"):
        stem = path.stem.rsplit("_it", 1)
        if stem[0] in ("policy", "model") and stem[1].isdigit():
            found[int(stem[1])] = path
    if not found:
        raise FileNotFoundError(f"{run_dir}: no policy_it<N>.pt / model_it<N>.pt snapshots (train with --snapshot-every)")
    return dict(sorted(found.items()))


def isp_from_file(path: str | Path, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """The ISP function of an exported AdaptiveISP policy or HPO / attention model (told apart by its format)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if str(payload.get("format", "")).startswith("ispbench.adaptiveisp.policy"):
        return policy_isp_fn(load_policy(path, device))
    return baseline_isp_fn(load_baseline(path, device))


def validation_curve(run_dir: str | Path, val: Any, detector: Any, *, imgsz: int, batch_size: int = 8,
                     device: str = "cpu", every: int = 0) -> pd.DataFrame:
    """Validation mAP (percent) of every snapshot of a run (or of those at multiples of ``every``
    iterations): the learning curve and the selection rule's input.

    Returns:
        One row per snapshot: ``iteration, mAP@0.5, mAP@0.75, mAP@0.5:0.95, file``.
    """
    rows = []
    for iteration, path in snapshot_files(run_dir).items():
        if every and iteration % every:
            continue
        res = evaluate_isp(isp_from_file(path, device), val, detector, batch_size=batch_size, imgsz=imgsz)
        rows.append({"iteration": iteration, **{m: round(float(res[m]), 2) for m in METRICS}, "file": path.name})
    return pd.DataFrame(rows)


#: The one rule every method's shipped checkpoint follows: the snapshot with the best validation mAP@0.5:0.95.
SELECTION_METRIC = "mAP@0.5:0.95"


def best_snapshot(curve: pd.DataFrame) -> int:
    """Iteration of the snapshot :data:`SELECTION_METRIC` picks (the earliest on ties)."""
    if curve.empty:
        raise ValueError("curve: no snapshots")
    best = curve[SELECTION_METRIC].max()
    return int(curve.loc[curve[SELECTION_METRIC] == best, "iteration"].min())


# ----------------------------------------------------------------------------- cached evaluation and controls

#: The shipped candidate fixed pipelines (tuned as HPO is, ranked on val): ``ranking.json`` + one file each.
CANDIDATES_DIR = WEIGHTS_DIR / "adaptiveisp_candidates"


def file_cache(path: str | Path, dataset: Any, detector: Any, *, split: str, imgsz: int, batch_size: int = 8,
               device: str = "cpu", **kwargs: Any) -> candidates.DetectionCache:
    """Per-image detections of the ISP in checkpoint ``path`` (policy or baseline), computed once and cached
    under the file's sha256 (:func:`ispbench.detection_baselines.candidates.cached_evaluation`)."""
    path = Path(path)
    name = f"{path.stem}__{candidates.file_sha256(path)[:12]}"
    return candidates.cached_evaluation(name, isp_from_file(path, device), dataset, detector, split=split, imgsz=imgsz,
                                        batch_size=batch_size, **kwargs)


def shipped_candidates(k: int | None = None) -> list[dict]:
    """The ``k`` best shipped candidate pipelines (all by default), best first, each with its ``path``."""
    ranking = json.loads((CANDIDATES_DIR / "ranking.json").read_text())["ranking"]
    return [{**r, "path": CANDIDATES_DIR / r["file"]} for r in ranking[: k or None]]


def control_caches(dataset: Any, detector: Any, *, split: str, imgsz: int, hpo_path: str | Path, batch_size: int = 8,
                   oracle_sizes: Sequence[int] = (5, 20), device: str = "cpu") -> dict[str, candidates.DetectionCache]:
    """The rows that bound what adaptivity can gain, as per-image caches.

    * ``"Best fixed pipeline (val)"``: the candidate ranked first on the validation split;
    * ``"Oracle over the K best fixed pipelines"`` for each K: per test image, the candidate with the lowest
      detector loss *on that image* (it sees the test labels: an upper bound, not a method);
    * ``"Random pipeline"``: per image, 5 distinct modules in random order, each with HPO's tuned parameters.
    """
    ranked = shipped_candidates(max(oracle_sizes))
    if len(ranked) < max(oracle_sizes):
        raise ValueError(f"oracle_sizes: {max(oracle_sizes)} candidates asked, {len(ranked)} shipped in {CANDIDATES_DIR}")
    caches = [file_cache(r["path"], dataset, detector, split=split, imgsz=imgsz, batch_size=batch_size, device=device)
              for r in ranked]
    out = {"Best fixed pipeline (val)": caches[0]}
    for k in oracle_sizes:
        out[f"Oracle over the {k} best fixed pipelines (upper bound)"] = candidates.oracle(caches[:k], name=f"oracle{k}")
    hpo = load_baseline(hpo_path, device)
    out["Random pipeline"] = candidates.random_pipeline_cache(hpo, dataset, detector, split=split, imgsz=imgsz,
                                                              batch_size=batch_size)
    return out


def room_taken(method: float, static: float, oracle: float) -> float:
    """Share of the oracle's gain over the static pipeline that ``method`` realises: ``(m - s) / (o - s)``
    (NaN when the oracle does not beat the static pipeline: there is no room)."""
    room = oracle - static
    return float((method - static) / room) if room > 0 else float("nan")


def learned_results(params: Mapping[str, Any], dataset: Any, detector: Any, *, split: str = "test",
                    methods: Sequence[str] = ("hpo", "attention", "adaptiveisp"), smoke: bool = False,
                    notes: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """``{method: [evaluate_isp result per training seed]}`` of the learned ISPs.

    Shipped models (the default): every shipped seed (:data:`SEED_FILES`), each scored once and cached per
    image (:func:`file_cache`). With ``retrain=True``, a ``checkpoint`` or real data (``data_root``): the one
    model :func:`load_models` gives per method (retrained with the notebook's ``seed``), scored directly.
    """
    if params["retrain"] or params["checkpoint"] or params["data_root"] or smoke:
        models = load_models(params, methods, smoke=smoke, notes=notes)
        out = {}
        for method, loaded in models.items():
            fn = policy_isp_fn(loaded.model) if method == "adaptiveisp" else baseline_isp_fn(loaded.model)
            out[method] = [evaluate_isp(fn, dataset, detector, batch_size=params["batch_size"], imgsz=params["imgsz"])]
        return out
    out = {}
    for method in methods:
        files = shipped_seed_files(method)
        if not files:
            raise FileNotFoundError(f"no shipped checkpoint of {method} in {WEIGHTS_DIR} ({SEED_FILES[method]})")
        out[method] = [file_cache(f, dataset, detector, split=split, imgsz=params["imgsz"], batch_size=params["batch_size"],
                                  device=params["device"]).result() for f in files]
        if notes is not None:
            notes[method] = f"shipped: {', '.join(f.name for f in files)} ({len(files)} training seeds)"
    return out


def shipped_learning_curves(method: str) -> dict[int, tuple[pd.DataFrame | None, pd.DataFrame | None]]:
    """``{seed: (validation curve, training log)}`` shipped beside each seed's checkpoint
    (``<stem>_val.csv``: :func:`validation_curve`; ``<stem>_train.csv``: the trainer's ``metrics.csv``)."""
    out = {}
    for seed, path in enumerate(WEIGHTS_DIR / name for name in SEED_FILES[method]):
        val, log = path.with_name(f"{path.stem}_val.csv"), path.with_name(f"{path.stem}_train.csv")
        if val.is_file() or log.is_file():
            out[seed] = (pd.read_csv(val) if val.is_file() else None, pd.read_csv(log) if log.is_file() else None)
    return out
