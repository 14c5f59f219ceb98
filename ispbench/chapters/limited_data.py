"""AdaptiveISP's Table 9: learning an ISP from 50 training images (the paper: OnePlus).

The paper trains AdaptiveISP on the 50 training images of OnePlus and compares it with ReconfigISP's
published number. The embedded stand-in trains every learned ISP on the **first 50 images** of the
low-light train split (nothing else of that split is seen: HPO's parameters, which initialise
AdaptiveISP's heads, are tuned on the same 50), with the recipes of the 800-image models, and scores
them on the low-light test split beside the same recipes trained on all 800 images: what does each
method lose with 1/16 of the data?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ispbench import ops
from ispbench.chapters import adaptiveisp as aisp
from ispbench.chapters import posisp as ps
from ispbench.data.detection_sets import load_detection_split
from ispbench.detection_baselines import reconfigisp_train
from ispbench.detection_baselines.models import load_baseline
from ispbench.detection_baselines.models import make_isp_fn as baseline_isp_fn
from ispbench.methods.adaptiveisp.inference import make_isp_fn as policy_isp_fn
from ispbench.methods.adaptiveisp.recipes import baseline_train_args, policy_train_args
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.tasks.detection_eval import evaluate_isp
from ispbench.training.checkpoint import settings_hash
from ispbench.training.config import flat_dict, from_overrides

#: Training images of the limited-data models (OnePlus has 50 training images).
N_TRAIN = 50
#: Row names (the paper's) of the methods trained on the limited data.
ROW_NAMES = {"adaptiveisp": "AdaptiveISP", "reconfigisp": "ReconfigISP", "hpo": "Hyperparameter Optimization"}
#: Shipped training seeds of the models trained on the first 50 low-light train images (seed 0 first).
LIMITED_FILES = {m: tuple(f"{m}_limited_embedded{'' if s == 0 else f'_seed{s}'}.pt" for s in range(3)) for m in ROW_NAMES}
#: The same recipes trained on all 800 images (the AdaptiveISP row: POS-ISP's same-budget recipe, 300 iterations,
#: as the limited model's; the shipped 2,000-iteration policy is a longer recipe).
FULL_DATA_FILES = {"adaptiveisp": ps.SEED_FILES["adaptiveisp_budget"], "reconfigisp": aisp.SEED_FILES["reconfigisp"],
                   "hpo": aisp.SEED_FILES["hpo"]}


def full_data_name(method: str) -> str:
    """Row name of ``method`` trained on the whole train split (our reference rows)."""
    return f"{ROW_NAMES[method]} (all 800 training images)"


def existing(names: tuple[str, ...]) -> list[Path]:
    return [WEIGHTS_DIR / n for n in names if (WEIGHTS_DIR / n).is_file()]


def load_test_split(params: Mapping[str, Any]) -> tuple[Any, str]:
    """The test images: the embedded low-light test split, or on a prepared OnePlus its 91 release
    validation images (``val_release``: the images its 50 training images leave out; the paper's other
    notebooks score all 141), or another real dataset's evaluation split.

    Returns:
        ``(dataset, name)``: the items and the data's name in words.
    """
    if params["data_root"] and params["dataset"] == "oneplus":
        test = load_detection_split(params["data_root"], "oneplus", "val_release", params["n_images"], params["imgsz"],
                                    require_real=aisp.requires_real_data(params))
        return test, f"oneplus val_release ({params['data_root']})"
    return aisp.load_test_split(params)


def retrained_reconfigisp(params: Mapping[str, Any], *, smoke: bool = False) -> Path:
    """Train ReconfigISP on the notebook's data (``n_train`` images of its train split; 0 = all) with
    ``reconfig_iterations`` search and as many fine-tuning iterations; the run folder
    ``<cache>/runs/reconfigisp_<settings hash>`` resumes an interrupted run. Returns the exported file."""
    overrides = {"seed": params["seed"], "device": params["device"], "data_root": params["data_root"],
                 "dataset": params["dataset"] if params["data_root"] else "", "detector_weights": params["detector_weights"],
                 "imgsz": params["imgsz"], "n_train": params["n_train"], "search_iterations": params["reconfig_iterations"],
                 "finetune_iterations": params["reconfig_iterations"], "progress_bar": False,
                 # Denoise off as in the shipped CPU models; the paper profile keeps the whole pool
                 "modules": ",".join(m for m in ops.MODULE_NAMES
                                     if params["profile"] == "paper" or m != "denoise")}
    if smoke:
        overrides.update(batch_size=2, stages=2)
    args = from_overrides(reconfigisp_train.Args, overrides)
    run_dir = cache_dir() / "runs" / f"reconfigisp_{settings_hash(flat_dict(args))}"
    export = run_dir / "model.pt"
    if not export.is_file():
        reconfigisp_train.train(from_overrides(reconfigisp_train.Args, {"out_dir": str(run_dir), "export": str(export)},
                                               base=args))
    return export


def table9_results(params: Mapping[str, Any], test: Any, detector: Any, *, smoke: bool = False,
                   notes: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """``{row name: [evaluate_isp result per training seed]}`` of Table 9.

    Shipped models (the default): every shipped seed of the three methods trained on 50 images
    (:data:`LIMITED_FILES`) and of the same recipes on all 800 (:data:`FULL_DATA_FILES`), each scored
    once and cached per image. ``retrain=True`` or real data (``data_root``, e.g. OnePlus, whose train
    split is its 50 images): one model per method trained now on ``n_train`` images of the notebook's
    train split with the notebook's ``seed``.
    """
    notes = {} if notes is None else notes
    kw = dict(batch_size=params["batch_size"], imgsz=params["imgsz"])
    out: dict[str, list[dict]] = {}
    if params["retrain"] or params["data_root"]:
        # HPO first: its parameters on the same images initialise AdaptiveISP's heads (the recipe's warm start)
        hpo = aisp.baseline_model("hpo", retrain=True, train_overrides=baseline_train_args(params, "hpo"), device=params["device"])
        policy = aisp.adaptiveisp_policy(retrain=True, device=params["device"], train_overrides={
            **policy_train_args(params), "param_init_weights": str(hpo.path)})
        for method, loaded in (("hpo", hpo), ("adaptiveisp", policy)):
            fn = policy_isp_fn(loaded.model) if method == "adaptiveisp" else baseline_isp_fn(loaded.model)
            out[ROW_NAMES[method]] = [evaluate_isp(fn, test, detector, **kw)]
            notes[ROW_NAMES[method]] = aisp.source_note(loaded)
        path = retrained_reconfigisp(params, smoke=smoke)
        out[ROW_NAMES["reconfigisp"]] = [evaluate_isp(baseline_isp_fn(load_baseline(path, params["device"])), test, detector, **kw)]
        notes[ROW_NAMES["reconfigisp"]] = f"trained now: {params['reconfig_iterations']} + {params['reconfig_iterations']} iterations"
        return out
    for rows, files_of in ((ROW_NAMES, LIMITED_FILES), ({m: full_data_name(m) for m in ROW_NAMES}, FULL_DATA_FILES)):
        for method, row in rows.items():
            files = existing(files_of[method])[: 1 if smoke else None]
            if not files:
                notes[row] = "no shipped checkpoint: row left out"
                continue
            out[row] = [aisp.file_cache(f, test, detector, split="test", device=params["device"], **kw).result() for f in files]
            notes[row] = f"shipped: {', '.join(f.name for f in files)} ({len(files)} training seed(s))"
    return out


def pairs(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The comparisons Table 9 is about: AdaptiveISP against ReconfigISP and HPO on 50 images, and each
    method's loss from 800 to 50 images."""
    a, r, h = ROW_NAMES["adaptiveisp"], ROW_NAMES["reconfigisp"], ROW_NAMES["hpo"]
    wanted = [(a, r), (a, h), (r, h)] + [(ROW_NAMES[m], full_data_name(m)) for m in ROW_NAMES]
    return [(x, y) for x, y in wanted if x in results and y in results]
