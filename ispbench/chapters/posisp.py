"""Helpers behind the POS-ISP notebooks: the compared ISPs, their cached scores on Dark and All, the controls.

Splits (embedded stand-ins for LOD-Dark and LOD-All): **Dark** is the low-light test split (200
images), **All** the low-light and the normal-light test splits together (400 images; the two
renders of each scene are both in it). Every learned model was trained on the low-light train split
only (the authors train a second model on LOD raw-all for the All column; we score the Dark models on
All: a named shortcut, said on the page).

Every ISP is scored once per split and cached per image
(:func:`ispbench.detection_baselines.candidates.cached_evaluation`), so intervals and paired
bootstraps re-score resamples without the detector.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from ispbench import atomic
from ispbench.chapters import adaptiveisp as aisp
from ispbench.chapters import segmentation_intervals as seg_cache
from ispbench.data.default_isp import default_isp
from ispbench.data.detection_sets import embedded_split, load_detection_split
from ispbench.detection_baselines import candidates
from ispbench.methods.adaptiveisp import agent
from ispbench.methods.adaptiveisp.inference import load_policy, run_policy
from ispbench.methods.adaptiveisp.networks import PolicyNet
from ispbench.methods.posisp import train as posisp_train
from ispbench.methods.posisp.inference import EXPORT_FORMAT, export_model, load_model, make_isp_fn
from ispbench.methods.posisp.networks import STOP, PosISP, n_parameters, render
from ispbench.ops.modules import nlm_search_window
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.tasks.segmentation_eval import evaluate_isp_segmentation
from ispbench.tasks.segmenter import FrozenSegmenter
from ispbench.training.checkpoint import settings_hash
from ispbench.training.config import flat_dict, from_overrides
from ispbench.training.detection import load_sample, make_targets

METRICS = aisp.METRICS
#: Our method keys -> the row names of POS-ISP's main table (ours where the paper has no such row).
PAPER_NAMES = {
    "input": "Input RAW",
    "default": "Camera ISP",
    "hpo": "Hyperparameter Optimization",
    "random": "Random sequence",
    "search": "Short-sequence search",
    "reconfigisp": "ReconfigISP",
    "adaptiveisp": "AdaptiveISP",
    "adaptiveisp_budget": "AdaptiveISP (same budget)",
    "posisp": "POS-ISP",
    "posisp_loo": "POS-ISP (leave-one-out baseline)",
    "posisp_long": "POS-ISP (4x longer training)",
    "posisp_seg": "POS-ISP (trained for segmentation)",
}
#: Shipped training seeds of each learned ISP (seed 0 first); missing files are skipped by :func:`shipped_files`.
SEED_FILES: dict[str, tuple[str, ...]] = {
    "posisp": ("posisp_embedded.pt", "posisp_embedded_seed1.pt", "posisp_embedded_seed2.pt"),
    "posisp_loo": ("posisp_loo_embedded.pt", "posisp_loo_embedded_seed1.pt", "posisp_loo_embedded_seed2.pt"),
    # the authors' settings for 4,800 iterations instead of 1,200 (the temperature's half-life scaled with it)
    "posisp_long": ("posisp_long_embedded.pt", "posisp_long_embedded_seed1.pt", "posisp_long_embedded_seed2.pt"),
    "adaptiveisp_budget": ("adaptiveisp_budget_embedded.pt", "adaptiveisp_budget_embedded_seed1.pt",
                           "adaptiveisp_budget_embedded_seed2.pt"),
    "reconfigisp": ("reconfigisp_embedded.pt", "reconfigisp_embedded_seed1.pt", "reconfigisp_embedded_seed2.pt"),
    "random_sequences": ("posisp_random_sequences_embedded.pt",),
    # trained for segmentation (the frozen YOLO11n-seg's loss x0.01)
    "posisp_seg": ("posisp_seg_embedded.pt", "posisp_seg_embedded_seed1.pt", "posisp_seg_embedded_seed2.pt"),
    **{k: aisp.SEED_FILES[k] for k in ("adaptiveisp", "hpo")},
}
#: The splits of the main table and the cache split names of their parts.
SPLITS = {"Dark": (("test", "low"),), "All": (("test", "low"), ("test_normal", "normal"))}


def shipped_files(method: str) -> list[Path]:
    """The shipped checkpoints of ``method`` (:data:`SEED_FILES`) that exist, seed 0 first."""
    return [WEIGHTS_DIR / name for name in SEED_FILES[method] if (WEIGHTS_DIR / name).is_file()]


def is_posisp_file(path: str | Path) -> bool:
    return torch.load(path, map_location="cpu", weights_only=True).get("format") == EXPORT_FORMAT


def isp_from_file(path: str | Path, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """The ISP function of an exported POS-ISP model, AdaptiveISP policy or baseline (told apart by format)."""
    if is_posisp_file(path):
        return make_isp_fn(load_model(path, device))
    return aisp.isp_from_file(path, device)


def file_cache(path: str | Path, dataset: Any, detector: Any, *, split: str, imgsz: int, batch_size: int = 8,
               device: str = "cpu") -> candidates.DetectionCache:
    """Per-image detections of the ISP in ``path``, cached under the file's sha256."""
    path = Path(path)
    name = f"{path.stem}__{candidates.file_sha256(path)[:12]}"
    return candidates.cached_evaluation(name, isp_from_file(path, device), dataset, detector, split=split, imgsz=imgsz,
                                        batch_size=batch_size)


def concat_caches(caches: Sequence[candidates.DetectionCache], name: str) -> candidates.DetectionCache:
    """One cache over the images of several (the All split = low + normal); keys must agree but for split/data."""
    first = caches[0]
    return candidates.DetectionCache(
        key={**first.key, "name": name, "split": "+".join(c.key["split"] for c in caches),
             "dataset_version": "+".join(c.key["dataset_version"] for c in caches)},
        predictions=[p for c in caches for p in c.predictions], ground_truth=[g for c in caches for g in c.ground_truth],
        image_sizes=[s for c in caches for s in c.image_sizes],
        per_image_loss=np.concatenate([c.per_image_loss for c in caches]), names=dict(first.names),
        info={"parts": [c.name for c in caches]})


def test_sets(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{cache split name: dataset}`` of the parts of :data:`SPLITS`: the embedded low- and normal-light test splits,
    or (``data_root`` set) the real dataset's evaluation split alone (its Dark column; LOD's raw-all is not prepared)."""
    if params["data_root"]:
        return {"test": load_detection_split(params["data_root"], params["dataset"], "test", params["n_images"],
                                             params["imgsz"], require_real=True)}
    out = {}
    for split, light in {part for parts in SPLITS.values() for part in parts}:
        out[split] = load_detection_split(params["data_root"], params["dataset"] if params["data_root"] else "embedded",
                                          "test", params["n_images"], params["imgsz"], light=light,
                                          require_real=aisp.requires_real_data(params))
    return out


def table_splits(sets: Mapping[str, Any]) -> list[str]:
    """The columns of :data:`SPLITS` whose parts are all in ``sets``."""
    return [name for name, parts in SPLITS.items() if all(s in sets for s, _ in parts)]


def split_caches(make: Callable[[str, Any], candidates.DetectionCache], sets: Mapping[str, Any], name: str) -> dict[str, candidates.DetectionCache]:
    """``{"Dark": cache, "All": cache}`` of one ISP (the columns :func:`table_splits` allows), from
    ``make(cache split name, dataset)`` per part."""
    parts = {split: make(split, ds) for split, ds in sets.items()}
    return {table_split: (parts[SPLITS[table_split][0][0]] if len(SPLITS[table_split]) == 1 else
                          concat_caches([parts[s] for s, _ in SPLITS[table_split]], name))
            for table_split in table_splits(sets)}


def fn_caches(name: str, isp_fn: Callable | None, sets: Mapping[str, Any], detector: Any, *, imgsz: int,
              batch_size: int = 8) -> dict[str, candidates.DetectionCache]:
    """:func:`split_caches` of an ISP function (``None`` = the input itself)."""
    return split_caches(lambda split, ds: candidates.cached_evaluation(name, isp_fn, ds, detector, split=split, imgsz=imgsz,
                                                                       batch_size=batch_size), sets, name)


def method_caches(method: str, sets: Mapping[str, Any], detector: Any, *, imgsz: int, batch_size: int = 8,
                  device: str = "cpu", files: Sequence[Path] | None = None) -> list[dict[str, candidates.DetectionCache]]:
    """Per training seed, ``{"Dark": cache, "All": cache}`` of a shipped learned ISP (or of ``files``)."""
    files = list(files) if files is not None else shipped_files(method)
    return [split_caches(lambda split, ds, f=f: file_cache(f, ds, detector, split=split, imgsz=imgsz,
                                                           batch_size=batch_size, device=device), sets, f.stem)
            for f in files]


def all_dataset(sets: Mapping[str, Any], split: str) -> Any:
    """The items the ``split`` (Dark / All) caches were scored on, in the same order."""
    parts = [sets[s] for s, _ in SPLITS[split]]
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def main_rows(results: Mapping[str, Sequence[Mapping[str, candidates.DetectionCache]]], sets: Mapping[str, Any],
              **extra: Any) -> pd.DataFrame:
    """Rows ``method, split, metric, value, median, ci_low, ci_high, n_seeds`` of the main table (mean over seeds)."""
    rows = []
    for method, per_seed in results.items():
        for split in table_splits(sets):
            rows += [{**r, "split": split} for r in
                     aisp.seed_map_rows(method, [c[split].result() for c in per_seed], dataset=all_dataset(sets, split), **extra)]
    return pd.DataFrame(rows)


def paired_claims(results: Mapping[str, Sequence[Mapping[str, candidates.DetectionCache]]], pairs: Sequence[tuple[str, str]],
                  sets: Mapping[str, Any]) -> pd.DataFrame:
    """Paired bootstrap rows (``comparison, metric, difference, ci_low, ci_high, verdict``) per split."""
    rows = []
    for split in table_splits(sets):
        ds = all_dataset(sets, split)
        for a, b in pairs:
            if a in results and b in results:
                rows += [{**r, "split": split} for r in aisp.paired_rows(
                    a, [c[split].result() for c in results[a]], b, [c[split].result() for c in results[b]], dataset=ds)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- random sequences and the short search


class SequenceISP:
    """A POS-ISP parameter net with a given pipeline (``sequence``) or, per image, a random one.

    ``sequence=None``: each image draws its own pipeline from the untrained (uniform) decoder, seeded by
    ``(seed, image counter)``; :meth:`reset` restarts the counter (the cache calls it before a split).
    """

    def __init__(self, model: PosISP, sequence: Sequence[str] | None = None, *, seed: int = 0) -> None:
        self.model, self.seed, self.counter = model.eval(), seed, 0
        names = model.decoder.module_names
        self.sequence = None if sequence is None else torch.tensor([names.index(m) for m in sequence], dtype=torch.long)

    def reset(self) -> None:
        self.counter = 0

    def _modules(self, batch: int) -> torch.Tensor:
        if self.sequence is not None:
            return self.sequence[None].expand(batch, -1) if len(self.sequence) else torch.zeros(batch, 0, dtype=torch.long)
        rows = []
        for _ in range(batch):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.counter)
            self.counter += 1
            rows.append(self.model.decoder.sample(1, 1.0, generator=g).modules[0])
        return torch.stack(rows)

    @torch.no_grad()
    def __call__(self, linear: torch.Tensor) -> torch.Tensor:
        net = self.model.param_net
        with nlm_search_window(self.model.denoise_window):
            return render(linear, self._modules(linear.shape[0]).to(linear.device), net.module_params(net(linear)))


def _sequence_loss(model: PosISP, sequence: Sequence[str], images: torch.Tensor, targets: torch.Tensor, detector: Any,
                   batch_size: int) -> float:
    isp = SequenceISP(model, sequence)
    losses = []
    with torch.no_grad():
        for first in range(0, len(images), batch_size):
            idx = slice(first, first + batch_size)
            rows = targets[(targets[:, 0] >= first) & (targets[:, 0] < first + batch_size)].clone()
            rows[:, 0] -= first
            losses.append(detector.per_image_loss(isp(images[idx]), rows))
    return float(torch.cat(losses).mean())


def short_sequence_search(model_path: str | Path, val: Any, detector: Any, *, imgsz: int, n_images: int = 64,
                          beam: int = 5, max_length: int = 4, batch_size: int = 16, cache: bool = True) -> pd.DataFrame:
    """Score pipelines with one parameter net trained on random sequences; the control of "is sequence learning needed?".

    Every sequence of length 1 and 2, then a beam search (width ``beam``) to ``max_length``, each scored by the
    mean detector loss of the first ``n_images`` validation images (lower is better). Cached as JSON beside
    the detection caches (keyed by the model's sha256 and the settings).

    Returns:
        One row per scored sequence: ``sequence`` (``-``-joined), ``length``, ``val_loss``, sorted by ``val_loss``.
    """
    model_path = Path(model_path)
    key = {"model": candidates.file_sha256(model_path), "detector": candidates.detector_sha256(detector),
           "data": candidates.dataset_version(val), "n_images": n_images, "beam": beam, "max_length": max_length,
           "imgsz": imgsz, "code": candidates.code_version()}
    # one file per model *and* settings: the smoke and embedded runs must not overwrite each other's search
    settings = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "posisp_search" / f"{model_path.stem}__{settings}.json"
    if cache and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return pd.DataFrame(saved["rows"])
    model = load_model(model_path)
    names = model.decoder.module_names
    samples = [load_sample(val, i, imgsz) for i in range(min(n_images, len(val)))]
    images = torch.stack([s[0] for s in samples])
    targets = make_targets([s[1] for s in samples])
    scored: dict[tuple[str, ...], float] = {}

    def score(seqs) -> None:
        for s in seqs:
            if s not in scored:
                scored[s] = _sequence_loss(model, s, images, targets, detector, batch_size)

    t0 = time.perf_counter()
    score([(m,) for m in names])
    score(list(itertools.permutations(names, 2)))
    frontier = sorted((s for s in scored if len(s) == 2), key=scored.get)[:beam]
    for _length in range(3, max_length + 1):
        score([s + (m,) for s in frontier for m in names if m not in s])
        frontier = sorted((s for s in scored if len(s) == _length), key=scored.get)[:beam]
    rows = sorted(({"sequence": "-".join(s), "length": len(s), "val_loss": round(v, 5)} for s, v in scored.items()),
                  key=lambda r: r["val_loss"])
    atomic.write_json(path, {"key": key, "rows": rows, "elapsed_s": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- efficiency


def _macs(fn: Callable[[], Any]) -> float:
    """Multiply-adds of one call: torch's FLOP counter counts 2 FLOPs per multiply-add."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2.0


def _cpu_allocated_mb(fn: Callable[[], Any]) -> float:
    """Memory the profiler saw allocated on the CPU during one call (MB; sum of positive allocations)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    total = sum(max(e.cpu_memory_usage, 0) for e in prof.events() if e.cpu_memory_usage)
    return total / 2**20


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def efficiency_rows(posisp: PosISP, policy: PolicyNet, *, imgsz: int = 512, repeats: int = 10, T: int = 5,
                    device: str = "cpu") -> pd.DataFrame:
    """The efficiency table, measured side by side in one run: predictor only (ISP excluded), then ISP apart.

    POS-ISP's predictor is its parameter net (one call per image) plus the decoder (one call per task: its
    pipeline does not depend on the image; listed on its own row). AdaptiveISP's predictor is its policy net
    called once per stage (``T`` calls per image). Memory: the peak allocated CUDA memory on a GPU, else the
    memory torch's profiler saw allocated on the CPU during one image (labelled as such).
    """
    x = torch.rand(1, 3, imgsz, imgsz, device=device)
    posisp, policy = posisp.to(device).eval(), policy.to(device).eval()
    pipeline = posisp.pipeline_indices().to(device)[None]

    def posisp_predict():
        with torch.no_grad():
            return posisp.param_net(x)

    def decoder_predict():
        with torch.no_grad():
            return posisp.decoder.sample(1, greedy=True)

    def posisp_isp():
        with torch.no_grad(), nlm_search_window(posisp.denoise_window):
            return render(x, pipeline, posisp.param_net.module_params(posisp.param_net(x)))

    runs: dict[str, Any] = {}

    def policy_run():
        runs["last"] = run_policy(policy, x, T)
        return runs["last"]

    memory_label = "peak CUDA memory (MB)" if device.startswith("cuda") else "CPU memory allocated (MB, torch.profiler)"

    def memory(fn):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return _cpu_allocated_mb(fn)

    def policy_forward_once():
        with torch.no_grad():
            state = agent.policy_state(x, torch.zeros(1, policy.n_modules, device=device), torch.zeros(1, device=device), T,
                                       stage_plane=policy.stage_plane)
            return policy(state)

    policy_run()  # warm-up and one pipeline, for its length
    policy_ms = float(np.median([sum(policy_run().policy_ms) for _ in range(repeats)]))
    policy_isp_ms = float(np.median([sum(policy_run().isp_ms) for _ in range(repeats)]))
    aisp_length = float((runs["last"].module_index >= 0).sum())
    param_ms = _median_ms(posisp_predict, repeats)
    rows = [
        {"method": "POS-ISP", "part": "parameter net (per image)", "params (M)": n_parameters(posisp.param_net) / 1e6,
         "MACs (M)": _macs(posisp_predict) / 1e6, memory_label: memory(posisp_predict), "time (ms)": param_ms,
         "FPS": 1000 / param_ms},
        {"method": "POS-ISP", "part": "sequence decoder (once per task)", "params (M)": n_parameters(posisp.decoder) / 1e6,
         "MACs (M)": _macs(decoder_predict) / 1e6, memory_label: memory(decoder_predict),
         "time (ms)": _median_ms(decoder_predict, repeats), "FPS": float("nan")},
        {"method": "AdaptiveISP", "part": f"policy net x {T} stages (per image)", "params (M)": n_parameters(policy) / 1e6,
         "MACs (M)": T * _macs(policy_forward_once) / 1e6, memory_label: memory(policy_forward_once),
         "time (ms)": policy_ms, "FPS": 1000 / policy_ms},
    ]
    isp_rows = [
        {"method": "POS-ISP", "pipeline length": len(posisp.pipeline()), "ISP time (ms)": _median_ms(posisp_isp, repeats) - param_ms},
        {"method": "AdaptiveISP", "pipeline length": aisp_length, "ISP time (ms)": policy_isp_ms},
    ]
    out = pd.DataFrame(rows)
    return out.round(3), pd.DataFrame(isp_rows).round(2)


# ----------------------------------------------------------------------------- training logs


def training_log(method: str, seed_index: int = 0, kind: str = "train") -> pd.DataFrame:
    """The shipped ``_train.csv`` (``kind="train"``: the trainer's metrics) or ``_val.csv`` (``"val"``: val mAP of
    each snapshot, the learning curve) of ``method``'s seed ``seed_index``; empty when not shipped."""
    files = shipped_files(method)
    if seed_index >= len(files):
        return pd.DataFrame()
    path = files[seed_index].with_name(f"{files[seed_index].stem}_{kind}.csv")
    return pd.read_csv(path).assign(seed=seed_index, method=method) if path.is_file() else pd.DataFrame()


def decoded_pipelines(method: str) -> pd.DataFrame:
    """Per shipped seed of a POS-ISP method: its decoded pipeline and length (``EOS`` never emitted = length 10)."""
    rows = []
    for k, path in enumerate(shipped_files(method)):
        model = load_model(path)
        rows.append({"method": PAPER_NAMES.get(method, method), "seed": k, "pipeline": " -> ".join(model.pipeline()) or "(empty)",
                     "length": len(model.pipeline()), "file": path.name})
    return pd.DataFrame(rows, columns=["method", "seed", "pipeline", "length", "file"])


__all__ = ["METRICS", "PAPER_NAMES", "SEED_FILES", "SPLITS", "STOP", "SequenceISP", "all_dataset", "concat_caches",
           "decoded_pipelines", "default_isp", "efficiency_rows", "file_cache", "fn_caches", "isp_from_file", "learned_files",
           "load_policy", "retrained_file",
           "main_rows", "method_caches", "paired_claims", "shipped_files", "short_sequence_search", "split_caches",
           "test_sets", "training_log"]


# ----------------------------------------------------------------------------- retraining (retrain=True, the paper profile)


def retrained_file(params: Mapping[str, Any], *, baseline: str = "none", smoke: bool = False) -> Path:
    """Train POS-ISP with the notebook's ``seed``, ``iterations``, data and detector (authors' settings otherwise);
    the run folder ``<cache>/runs/posisp_<settings hash>`` resumes an interrupted run. Returns the exported file."""
    overrides = {"seed": params["seed"], "iterations": params["iterations"], "baseline": baseline, "imgsz": params["imgsz"],
                 "device": params["device"], "data_root": params["data_root"],
                 "dataset": params["dataset"] if params["data_root"] else "", "detector_weights": params["detector_weights"],
                 "progress_bar": False, "log_every": max(1, min(50, params["iterations"] // 4)),
                 "snapshot_every": 0}
    if smoke:
        overrides.update(batch_size=2, loss_clip_images=4, n_train=8)
    args = from_overrides(posisp_train.Args, overrides)
    run_dir = cache_dir() / "runs" / f"posisp_{settings_hash(flat_dict(args))}"
    export = run_dir / "model.pt"
    if not export.is_file():
        posisp_train.train(from_overrides(posisp_train.Args, {**overrides, "out_dir": str(run_dir), "export": str(export)}))
    return export


def learned_files(params: Mapping[str, Any], method: str, *, smoke: bool = False) -> list[Path]:
    """The files a notebook scores for ``method``: retrained (POS-ISP with ``retrain=True``) or the shipped seeds."""
    if params.get("retrain") and method in ("posisp", "posisp_loo"):
        return [retrained_file(params, baseline="loo" if method == "posisp_loo" else "none", smoke=smoke)]
    return shipped_files(method)


# ----------------------------------------------------------------------------- selection and shipping (maintainers)


def validation_curve(run_dir: str | Path, val: Any, detector: Any, *, imgsz: int, batch_size: int = 16,
                     device: str = "cpu") -> pd.DataFrame:
    """Validation mAP (percent) of every exported snapshot of a run (POS-ISP, AdaptiveISP or a baseline).

    Returns:
        One row per snapshot: ``iteration, mAP@0.5, mAP@0.75, mAP@0.5:0.95, file``.
    """
    rows = []
    for iteration, path in aisp.snapshot_files(run_dir).items():
        res = aisp.evaluate_isp(isp_from_file(path, device), val, detector, batch_size=batch_size, imgsz=imgsz)
        rows.append({"iteration": iteration, **{m: round(float(res[m]), 2) for m in METRICS}, "file": path.name})
    return pd.DataFrame(rows)


def ship_best_snapshot(run_dir: str | Path, curve: pd.DataFrame, dest: str | Path) -> dict[str, Any]:
    """Copy the snapshot :func:`ispbench.chapters.adaptiveisp.best_snapshot` picks to ``dest`` with its logs:
    ``<dest stem>_val.csv`` (the validation curve) and ``<dest stem>_train.csv`` (the trainer's metrics)."""
    run_dir, dest = Path(run_dir), Path(dest)
    best = aisp.best_snapshot(curve)
    source = aisp.snapshot_files(run_dir)[best]
    if is_posisp_file(source):  # shipped in float16 (as the AdaptiveISP policies are): half the size
        model = load_model(source)
        export_model(model, dest, metadata={**model.metadata, "snapshot": source.name}, half=True)
    else:
        with atomic.atomic_open(dest, "wb") as f:
            f.write(source.read_bytes())
    atomic.write_text(dest.with_name(dest.stem + "_val.csv"), curve.to_csv(index=False))
    atomic.write_text(dest.with_name(dest.stem + "_train.csv"), (run_dir / "metrics.csv").read_text())
    return {"file": dest.name, "iteration": best, "val": float(curve.set_index("iteration").loc[best, aisp.SELECTION_METRIC])}


def write_family_card(family: str, *, description: str, data: str, selection: str, machine: str,
                      entries: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> Path:
    """Write ``WEIGHTS_DIR/<family>.md`` and ``.json``: the files, their roles, recipes (the exact commands) and
    metrics. ``entries``: per file ``file, role, seed, command, snapshot_iteration, iterations, train_wall_time_s,
    val_metrics, test_metrics`` (mAP dicts in percent)."""
    files = {}
    lines = [f"# {family}: shipped checkpoints", "", description, "", f"Data: {data}.", "", f"Selection: {selection}.",
             "Each file's `_val.csv` is its learning curve (val mAP of every snapshot), `_train.csv` the trainer's metrics log.",
             "", "## Files and metrics (mAP in %, 160 px)", "",
             "| file | role | snapshot / iterations | train time (s) | val mAP@0.5:0.95 | test mAP@0.5 | test mAP@0.75 | test mAP@0.5:0.95 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        path = WEIGHTS_DIR / e["file"]
        v, t = e["val_metrics"], e["test_metrics"]
        lines.append(f"| `{e['file']}` | {e['role']} | {e['snapshot_iteration']} / {e['iterations']} | {e['train_wall_time_s']:.0f} | "
                     f"{v['mAP@0.5:0.95']:.2f} | {t['mAP@0.5']:.2f} | {t['mAP@0.75']:.2f} | {t['mAP@0.5:0.95']:.2f} |")
        files[e["file"]] = {**e, "sha256_16": candidates.file_sha256(path)[:16], "size_bytes": path.stat().st_size,
                            "val_curve": path.stem + "_val.csv", "train_log": path.stem + "_train.csv"}
    lines += ["", "## Recipes", ""]
    for e in entries:
        lines += [f"`{e['file']}`:", "", "```bash", e["command"], "```", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += [f"Machine: {machine}.", ""]
    atomic.write_json(WEIGHTS_DIR / f"{family}.json", {"family": family, "data": data, "selection": selection,
                                                       "machine": machine, "files": files, "notes": list(notes)})
    return atomic.write_text(WEIGHTS_DIR / f"{family}.md", "\n".join(lines))


def ship_runs(family: str, runs: Sequence[Mapping[str, Any]], *, description: str, notes: Sequence[str] = (),
              select: bool = True, imgsz: int = 160, batch_size: int = 16, task: str = "detection",
              n_train: int = 0, keep_shipped: bool = False) -> list[dict[str, Any]]:
    """Score each run's snapshots on the low-light val split, ship the best (or, ``select=False``, the run's
    ``final.pt``) to ``WEIGHTS_DIR/<file>`` with its logs, score it on the low-light test split, and write the
    family's card (:func:`write_family_card`). ``runs``: per file ``file, run_dir, role, seed, command``.
    ``task="segmentation"``: scored by the frozen YOLO11n-seg on the splits with masks (mask mAP). ``n_train``: the
    runs saw only the first ``n_train`` train images (the card says so). ``keep_shipped``: the family's card keeps
    its other files' entries (a seed added later, whose siblings' run folders are gone)."""
    if task == "segmentation":
        scorer = FrozenSegmenter(imgsz=imgsz)
        val, test = (embedded_split(split, "low", "", 0, with_masks=True) for split in ("val", "test"))

        def score(isp, dataset):
            return evaluate_isp_segmentation(isp, dataset, scorer, batch_size=batch_size, imgsz=imgsz)
    else:
        scorer = aisp.load_detector("", imgsz=imgsz).model
        val, test = (load_detection_split("", "embedded", split, 0, imgsz, light="low") for split in ("val", "test"))

        def score(isp, dataset):
            return aisp.evaluate_isp(isp, dataset, scorer, batch_size=batch_size, imgsz=imgsz)
    entries = []
    for r in runs:
        run_dir, dest = Path(r["run_dir"]), WEIGHTS_DIR / r["file"]
        summary = json.loads((run_dir / "summary.json").read_text())
        iterations_total = int(summary.get("iterations", summary.get("search_iterations", 0) + summary.get("finetune_iterations", 0)))
        if select:
            curve = pd.DataFrame([{"iteration": it, **{m: round(float(res[m]), 2) for m in METRICS}, "file": path.name}
                                  for it, path in aisp.snapshot_files(run_dir).items()
                                  for res in [score(isp_from_file(path), val)]])
            shipped = ship_best_snapshot(run_dir, curve, dest)
            iteration = shipped["iteration"]
            val_metrics = curve.set_index("iteration").loc[iteration, list(METRICS)].to_dict()
        else:
            final = run_dir / "final.pt"
            if is_posisp_file(final):
                model = load_model(final)
                export_model(model, dest, metadata=model.metadata, half=True)
            else:
                with atomic.atomic_open(dest, "wb") as f:
                    f.write(final.read_bytes())
            atomic.write_text(dest.with_name(dest.stem + "_train.csv"), (run_dir / "metrics.csv").read_text())
            res = score(isp_from_file(dest), val)
            val_metrics = {m: round(float(res[m]), 2) for m in METRICS}
            atomic.write_text(dest.with_name(dest.stem + "_val.csv"),
                              pd.DataFrame([{"iteration": iterations_total, **val_metrics, "file": dest.name}]).to_csv(index=False))
            iteration = iterations_total
        test_res = score(isp_from_file(dest), test)
        entries.append({"file": r["file"], "role": r["role"], "seed": r["seed"],
                        "command": f"{r['command']}  # shipped: the snapshot at iteration {iteration}" if select else r["command"],
                        "snapshot_iteration": int(iteration), "iterations": iterations_total,
                        "train_wall_time_s": float(summary["elapsed_s"]),
                        "val_metrics": {m: round(float(val_metrics[m]), 2) for m in METRICS},
                        "test_metrics": {m: round(float(test_res[m]), 2) for m in METRICS}})
    card = WEIGHTS_DIR / f"{family}.json"
    if keep_shipped and card.is_file():
        fields = ("file", "role", "seed", "command", "snapshot_iteration", "iterations", "train_wall_time_s", "val_metrics",
                  "test_metrics")
        new = {e["file"] for e in entries}
        kept = [{k: e[k] for k in fields} for name, e in json.loads(card.read_text())["files"].items() if name not in new]
        entries = sorted(kept + entries, key=lambda e: (e["seed"], e["file"]))
    scorer_file = "embedded_yolo11n_seg.pt" if task == "segmentation" else "embedded_yolo.pt"
    data = (f"embedded detection set {candidates.dataset_version(load_detection_split('', 'embedded', 'test', 0, imgsz)).split(':')[1]}: "
            f"trained on {f'the first {n_train} images of the low-light train split' if n_train else 'the low-light train split (800 images)'}, snapshots scored on the low-light val split (200), test split "
            f"(200) never used for selection; {imgsz} px. Frozen {task} network `{scorer_file}` (sha256 "
            f"{candidates.file_sha256(WEIGHTS_DIR / scorer_file)[:16]}...)" + ("; mAP is mask mAP" if task == "segmentation" else ""))
    selection = ("the snapshot with the best val mAP@0.5:0.95 (ispbench.chapters.adaptiveisp.best_snapshot), the same rule "
                 "for every method" if select else "the run's final model (no snapshot selection)")
    write_family_card(family, description=description, data=data, selection=selection,
                      machine=f"x86_64, torch {torch.__version__}, 1 thread per run, 2-core CPU shared by 3-5 jobs",
                      entries=entries, notes=notes)
    return entries


# ----------------------------------------------------------------------------- instance segmentation (LIS-Dark / LIS-All stand-ins)


def segmentation_sets(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{cache split name: dataset with instance masks}``: the embedded low- and normal-light test splits (the
    stand-ins of LIS-Dark and LIS-All); empty on real data (LIS is scored by the AdaptiveISP Table 2 notebook)."""
    if params["data_root"]:
        return {}
    return {split: embedded_split("test", light, "", params["n_images"], with_masks=True)
            for split, light in {part for parts in SPLITS.values() for part in parts}}


def segmentation_splits(make: Callable[[str, Any], dict], sets: Mapping[str, Any], name: str) -> dict[str, dict]:
    """``{"Dark": result, "All": result}`` of one ISP scored by the segmenter, from ``make(split, dataset)`` per part."""
    parts = {split: make(split, ds) for split, ds in sets.items()}
    return {table_split: (parts[SPLITS[table_split][0][0]] if len(SPLITS[table_split]) == 1 else
                          seg_cache.concat_results([parts[s] for s, _ in SPLITS[table_split]], name))
            for table_split in table_splits(sets)}


def segmentation_results(files: Mapping[str, Sequence[Path]], sets: Mapping[str, Any], segmenter: Any, *, imgsz: int,
                         batch_size: int = 8, device: str = "cpu") -> dict[str, list[dict[str, dict]]]:
    """Per row name, per seed, ``{"Dark": result, "All": result}``: the input, the default ISP and the ISPs in ``files``."""
    def fn(name, isp):
        return lambda split, ds: seg_cache.segmentation_caches_for_fn(name, isp, ds, segmenter, split=split, imgsz=imgsz,
                                                                      batch_size=batch_size)

    out = {"Input RAW": [segmentation_splits(fn("input", None), sets, "input")],
           "Camera ISP": [segmentation_splits(fn("default_isp", default_isp), sets, "default_isp")]}
    for row, paths in files.items():
        out[row] = [segmentation_splits(lambda split, ds, p=p: seg_cache.segmentation_caches_for_file(
            p, ds, segmenter, split=split, imgsz=imgsz, batch_size=batch_size, device=device), sets, p.stem) for p in paths]
    return out


def segmentation_rows(results: Mapping[str, Sequence[Mapping[str, dict]]], sets: Mapping[str, Any]) -> pd.DataFrame:
    """Mask-mAP rows ``method, split, dataset, metric, value, median, ci_low, ci_high, n_seeds`` (mean over seeds)."""
    rows = []
    for method, per_seed in results.items():
        for split in table_splits(sets):
            rows += [{**r, "split": split, "dataset": {"Dark": "LIS-Dark", "All": "LIS-All"}[split]}
                     for r in seg_cache.seed_mask_map_rows(method, [s[split] for s in per_seed])]
    return pd.DataFrame(rows)


def segmentation_claims(results: Mapping[str, Sequence[Mapping[str, dict]]], pairs: Sequence[tuple[str, str]],
                        sets: Mapping[str, Any]) -> pd.DataFrame:
    """Paired bootstrap of mask mAP, per split."""
    rows = []
    for split in table_splits(sets):
        for a, b in pairs:
            if a in results and b in results:
                rows += [{**r, "split": split} for r in seg_cache.paired_mask_rows(
                    a, [s[split] for s in results[a]], b, [s[split] for s in results[b]])]
    return pd.DataFrame(rows)
