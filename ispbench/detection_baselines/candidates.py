"""How much can per-image adaptivity gain? Candidate fixed pipelines, a per-image detection cache, oracle rows.

AdaptiveISP claims a per-image pipeline beats a tuned static one. To bound what adaptivity can gain
this module builds the controls:

* **Candidate fixed pipelines** (:func:`candidate_pipelines`): ``n`` sequences of
  :data:`CANDIDATE_LENGTH` distinct modules (AdaptiveISP's ``T = 5``) from the nine non-Denoise
  modules, hand-picked ones (:data:`HAND_PICKED`) first, then seeded random draws. Each is tuned as
  the HPO baseline tunes its pipeline (:func:`tune_candidate`: :mod:`.train` with ``--pipeline
  a,b,c,d,e``, fewer iterations), and :func:`tune_and_rank` tunes all of them (each in its own run
  folder, finished ones skipped) and ranks them on the **validation** split by mAP@0.5:0.95.
* **Per-image detection cache** (:func:`cached_evaluation`, :class:`DetectionCache`): one run of
  :func:`ispbench.tasks.detection_eval.evaluate_isp` per ISP and split, stored with its per-image
  detections (the ``predictions``/``ground_truth``/``image_sizes`` of the evaluate_isp result) and
  per-image detector losses, so that any subset or per-image selection is re-scored without the
  detector (:meth:`DetectionCache.result`; bootstrap intervals over images: pass that result to
  ``ispbench.chapters.detection_intervals.map_intervals``).
* **Oracle** (:func:`oracle`): per test image, the cached ISP with the lowest detector loss on that
  image (it sees the test labels: an upper bound on any selector over that set), scored by mAP over
  the chosen per-image detections. What it chooses from is any list of caches (the K best fixed
  candidates, plus HPO or AdaptiveISP's own output if wanted).
* **Random pipeline** (:class:`RandomPipelineISP`): per image, 5 distinct modules of the HPO
  baseline's pipeline in a random order (seeded by the image's index), each with HPO's tuned parameters.

Cache file (``<root>/<name>__<split>__<imgsz>px.pt``, written with :func:`ispbench.atomic.torch_save`,
read with ``weights_only=True``)::

    {"format": "ispbench.detection_cache/1",
     "key": {"name", "weights_sha256", "split", "imgsz", "dataset_version",
             "conf", "iou", "max_det", "rect", "method"},
     "predictions": [(n_i, 6) float32 x1 y1 x2 y2 score class, original pixels],
     "ground_truth": [(m_i, 5) float64 class cx cy w h],  "image_sizes": (N, 2) int64,
     "per_image_loss": (N,) float64,  "names": {class id: name},  "info": {...},  "metrics": {mAP@...}}

A file whose key differs from the one asked for is rebuilt (``on_mismatch="rebuild"``) or refused
(:class:`CacheKeyError`, naming the fields that differ).

Example:
    >>> pipes = candidate_pipelines(40, seed=0)                                     # doctest: +SKIP
    >>> ranked = tune_and_rank(pipes, root, detector, val, k=20, iterations=50)    # doctest: +SKIP
    >>> tests = [candidate_cache(c, test, detector, split="test") for c in ranked]  # doctest: +SKIP
    >>> oracle(tests[:5]).result()["mAP@0.5:0.95"]                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ispbench import atomic, ops
from ispbench.paths import cache_dir
from ispbench.tasks.detection_eval import as_percent, evaluate_isp
from ispbench.tasks.detector import DEFAULT_WEIGHTS, FrozenDetector
from ispbench.tasks.map_eval import AUTHORS_EVAL, evaluate_map
from ispbench.training.checkpoint import safe_load, settings_hash
from ispbench.training.config import flat_dict, parse
from ispbench.training.detection import DetectionSettings, build_detector, train_dataset

from . import train as baseline_train
from .hpo import HPOISP
from .models import load_baseline, make_isp_fn
from .pipeline import render_pipeline

#: Length of a candidate pipeline: AdaptiveISP's number of stages ``T``.
CANDIDATE_LENGTH = 5
#: Modules candidates are drawn from: the pool without Denoise (seconds per image on a CPU, as in the baselines).
CANDIDATE_POOL: tuple[str, ...] = tuple(m for m in ops.MODULE_NAMES if m != "denoise")
#: Hand-picked candidates, always first: the HPO pipeline's first five stages (conventional ISP order),
#: then orders that start with exposure or gamma (the modules a dark raw image needs first).
HAND_PICKED: tuple[tuple[str, ...], ...] = (
    ("exposure", "white_balance", "ccm", "sharpen_blur", "gamma"),
    ("exposure", "gamma", "ccm", "sharpen_blur", "contrast"),
    ("exposure", "white_balance", "ccm", "gamma", "tone"),
    ("gamma", "exposure", "white_balance", "contrast", "saturation"),
    ("exposure", "white_balance", "gamma", "tone", "sharpen_blur"),
    ("gamma", "ccm", "tone", "contrast", "desaturation"),
)
#: Format tag of a cache file.
CACHE_FORMAT = "ispbench.detection_cache/1"
#: Fields of a cache key, in order.
KEY_FIELDS = ("name", "weights_sha256", "split", "imgsz", "dataset_version", "conf", "iou", "max_det", "rect", "method",
              "code_version")
#: Source folders whose code decides an ISP's output and its score (hashed into every cache key, so that an
#: edited module or detector wrapper never serves detections computed by the old code).
CODE_FOLDERS = ("ops", "tasks", "detection_baselines", "methods/adaptiveisp", "data")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (16 hex digits) of the package's source files in :data:`CODE_FOLDERS`."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).glob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- candidate pipelines


def candidate_pipelines(n: int, *, seed: int = 0, length: int = CANDIDATE_LENGTH, include_denoise: bool = False,
                        extra: Sequence[Sequence[str]] = ()) -> list[tuple[str, ...]]:
    """``n`` distinct module sequences of ``length`` distinct modules, deterministic in ``seed``.

    Order: :data:`HAND_PICKED` (those of length ``length``), then ``extra``, then random draws (first
    ``length`` entries of a seeded permutation of the pool), duplicates skipped. The list for ``n``
    is a prefix of the list for any larger ``n``.

    Args:
        n: number of candidates (>= 1, at most the number of distinct sequences).
        seed: seed of the random draws.
        length: modules per pipeline (AdaptiveISP: 5).
        include_denoise: also draw Denoise (off by default: seconds per image on a CPU).
        extra: more hand-picked sequences, placed after :data:`HAND_PICKED`.

    Returns:
        ``n`` tuples of module names.

    Example:
        >>> candidate_pipelines(2)
        [('exposure', 'white_balance', 'ccm', 'sharpen_blur', 'gamma'), ('exposure', 'gamma', 'ccm', 'sharpen_blur', 'contrast')]
    """
    pool = tuple(ops.MODULE_NAMES) if include_denoise else CANDIDATE_POOL
    if not 1 <= length <= len(pool):
        raise ValueError(f"length: expected 1..{len(pool)}, got {length}")
    total = 1
    for k in range(length):
        total *= len(pool) - k
    if not 1 <= n <= total:
        raise ValueError(f"n: expected 1..{total} (distinct sequences of {length} of {len(pool)} modules), got {n}")
    out: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()

    def add(seq: Sequence[str]) -> None:
        seq = tuple(seq)
        if seq not in seen and len(out) < n:
            seen.add(seq)
            out.append(seq)

    for seq in extra:
        bad = [m for m in seq if m not in pool]
        if len(seq) != length or len(set(seq)) != length or bad:
            raise ValueError(f"extra: {tuple(seq)} is not {length} distinct modules of {pool}")
    for seq in [*(h for h in HAND_PICKED if len(h) == length and set(h) <= set(pool)), *extra]:
        add(seq)
    rng = np.random.default_rng(seed)
    while len(out) < n:
        add(pool[i] for i in rng.permutation(len(pool))[:length])
    return out


def pipeline_slug(pipeline: Sequence[str]) -> str:
    """``("exposure", "gamma") -> "exposure-gamma"`` (run folders, cache names)."""
    return "-".join(pipeline)


# ----------------------------------------------------------------------------- fingerprints


_DETECTOR_SHA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state_sha256(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def detector_sha256(detector: FrozenDetector) -> str:
    """The detector's weights file sha256, or ``"state:<sha256>"`` of a YAML-built detector's tensors.

    Hashed once per detector object (the file may be replaced later; the loaded model is what was hashed).
    """
    if detector not in _DETECTOR_SHA:
        weights = getattr(detector, "weights", None)
        _DETECTOR_SHA[detector] = file_sha256(weights) if weights else "state:" + _state_sha256(detector.model)
    return _DETECTOR_SHA[detector]


def _settings_detector_sha(settings: Any) -> str:
    """What a trainer's :class:`~ispbench.training.detection.DetectionSettings` will load, as a fingerprint."""
    if settings.detector_yaml:
        return f"yaml:{settings.detector_yaml}:nc{settings.detector_nc}"
    path = Path(settings.detector_weights) if settings.detector_weights else DEFAULT_WEIGHTS
    return file_sha256(path) if path.is_file() else f"missing:{path}"  # the trainer then says what to do


def dataset_version(dataset: Any) -> str:
    """A fingerprint of a detection dataset: the embedded set's version hash, split, light and item indices,
    else the sha256 of every item's image, boxes and labels (reads every item once)."""
    indices = None
    base = dataset
    while isinstance(base, torch.utils.data.Subset):
        idx = list(base.indices)
        indices = idx if indices is None else [idx[i] for i in indices]
        base = base.dataset
    info = Path(base.path) / "info.json" if getattr(base, "path", None) else None
    if info is not None and info.is_file() and hasattr(base, "split"):
        version = json.loads(info.read_text())["version"]
        rows = "all" if indices is None else hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:12]
        return f"embedded:{version}:{base.split}:{getattr(base, 'light', '')}:n{len(dataset)}:{rows}"
    h = hashlib.sha256()
    for i in range(len(dataset)):
        item = dataset[i]
        for k in ("image", "boxes", "labels"):
            h.update(torch.as_tensor(item[k]).detach().cpu().contiguous().numpy().tobytes())
    return f"content:n{len(dataset)}:{h.hexdigest()}"


# ----------------------------------------------------------------------------- per-image detection cache


class CacheKeyError(ValueError):
    """A cache file whose key is not the one asked for."""


@dataclass
class DetectionCache:
    """One ISP's per-image detections and detector losses on one split (see the module docstring).

    ``result(indices)`` re-scores any subset (with repeats: a bootstrap resample) without the detector.
    """

    key: dict[str, Any]
    predictions: list[np.ndarray]
    ground_truth: list[np.ndarray]
    image_sizes: list[tuple[int, int]]
    per_image_loss: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.key["name"])

    def __len__(self) -> int:
        return len(self.predictions)

    def result(self, indices: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        """An ``evaluate_isp``-style result (mAP in percent, ``per_image_loss``, ``mean_loss``,
        ``predictions``, ``ground_truth``, ``image_sizes``) over images ``indices`` (default all)."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices: expected values in [0, {len(self)}), got min {idx.min()}, max {idx.max()}")
        preds = [self.predictions[i] for i in idx]
        gts = [self.ground_truth[i] for i in idx]
        sizes = [self.image_sizes[i] for i in idx]
        res = as_percent(evaluate_map(preds, gts, sizes, method=self.key["method"], names=self.names or None))
        losses = self.per_image_loss[idx]
        res.update(per_image_loss=losses.tolist(), mean_loss=float(losses.mean()) if losses.size else float("nan"),
                   predictions=preds, ground_truth=gts, image_sizes=sizes)
        return res


def cache_key(name: str, detector: FrozenDetector, dataset: Any, *, split: str, imgsz: int | None = None,
              data_version: str | None = None, conf: float = AUTHORS_EVAL["conf"], iou: float = AUTHORS_EVAL["iou"],
              max_det: int = 300, rect: bool = True, method: str = "ultralytics") -> dict[str, Any]:
    """The key of a cache: ``name`` + the detector's :func:`detector_sha256` + ``split`` + ``imgsz`` +
    :func:`dataset_version` (or ``data_version``) + the evaluation settings of ``evaluate_isp``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return {"name": name, "weights_sha256": detector_sha256(detector), "split": str(split),
            "imgsz": int(imgsz or detector.imgsz),
            "dataset_version": data_version if data_version is not None else dataset_version(dataset),
            "conf": float(conf), "iou": float(iou), "max_det": int(max_det), "rect": bool(rect), "method": str(method),
            "code_version": code_version()}


def cache_path(root: str | Path, key: dict[str, Any]) -> Path:
    """``<root>/<name>__<split>__<imgsz>px.pt`` (unsafe characters of the name replaced by ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._+=-]", "_", key["name"])
    return Path(root) / f"{safe}__{key['split']}__{key['imgsz']}px.pt"


def default_cache_root() -> Path:
    """``cache_dir()/detection_cache``."""
    return cache_dir() / "detection_cache"


def save_cache(cache: DetectionCache, path: str | Path) -> Path:
    """Write ``cache`` atomically (safe-loadable: tensors, numbers, strings, plain containers)."""
    payload = {
        "format": CACHE_FORMAT, "key": dict(cache.key),
        "predictions": [torch.as_tensor(np.asarray(p, dtype=np.float32).reshape(-1, 6)) for p in cache.predictions],
        "ground_truth": [torch.as_tensor(np.asarray(g, dtype=np.float64).reshape(-1, 5)) for g in cache.ground_truth],
        "image_sizes": torch.as_tensor(np.asarray(cache.image_sizes, dtype=np.int64).reshape(-1, 2)),
        "per_image_loss": torch.as_tensor(np.asarray(cache.per_image_loss, dtype=np.float64)),
        "names": {int(k): str(v) for k, v in cache.names.items()}, "info": dict(cache.info),
    }
    payload["metrics"] = {k: float(v) for k, v in cache.result().items() if k.startswith("mAP@")}
    path = atomic.torch_save(payload, path)
    cache.path = Path(path)
    return cache.path


def load_cache(path: str | Path, expected_key: dict[str, Any] | None = None) -> DetectionCache:
    """Read a cache file; with ``expected_key`` refuse one whose key differs.

    Raises:
        FileNotFoundError: no such file.
        CacheKeyError: wrong format, or a key that differs from ``expected_key`` (the message names each field).
    """
    path = Path(path)
    payload = safe_load(path, what="detection cache")
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise CacheKeyError(f"{path}: not a detection cache (format {CACHE_FORMAT!r})")
    key = payload["key"]
    if expected_key is not None:
        diff = {k: (key.get(k), expected_key.get(k)) for k in KEY_FIELDS if key.get(k) != expected_key.get(k)}
        if diff:
            raise CacheKeyError(f"{path}: cache key differs: " + ", ".join(f"{k}: {a!r} (file) != {b!r} (asked)"
                                                                          for k, (a, b) in diff.items()))
    return DetectionCache(
        key=dict(key), predictions=[p.numpy() for p in payload["predictions"]],
        ground_truth=[g.numpy() for g in payload["ground_truth"]],
        image_sizes=[(int(h), int(w)) for h, w in payload["image_sizes"].tolist()],
        per_image_loss=payload["per_image_loss"].numpy().astype(np.float64),
        names={int(k): str(v) for k, v in payload.get("names", {}).items()}, info=dict(payload.get("info", {})), path=path)


def cached_evaluation(name: str, isp_fn: Callable[[torch.Tensor], torch.Tensor] | None, dataset: Any,
                      detector: FrozenDetector, *, split: str, root: str | Path | None = None, imgsz: int | None = None,
                      batch_size: int = 8, data_version: str | None = None, on_mismatch: str = "rebuild",
                      info: dict[str, Any] | None = None, **eval_settings: Any) -> DetectionCache:
    """``evaluate_isp(isp_fn, dataset, detector)`` once, cached per image under :func:`cache_key`.

    Args:
        name: what the ISP is (part of the key: a different model needs a different name).
        isp_fn: linear ``(B, 3, H, W)`` -> sRGB ``(B, 3, H, W)`` (as in ``evaluate_isp``; an object with a
            ``reset()`` method, such as :class:`RandomPipelineISP`, is reset first).
        dataset, detector, imgsz, batch_size: as in ``evaluate_isp``.
        split: the split's name (``"val"``, ``"test"``; part of the key).
        root: cache folder (default :func:`default_cache_root`).
        data_version: the dataset's fingerprint if known (default :func:`dataset_version`).
        on_mismatch: an existing file with another key: ``"rebuild"`` (overwrite) or ``"refuse"``
            (:class:`CacheKeyError`).
        info: JSON-able notes stored with the cache (e.g. per-image pipelines).
        eval_settings: ``conf``, ``iou``, ``max_det``, ``rect``, ``method`` of ``evaluate_isp`` (part of the key).
    """
    if on_mismatch not in ("rebuild", "refuse"):
        raise ValueError(f"on_mismatch: expected 'rebuild' or 'refuse', got {on_mismatch!r}")
    unknown = set(eval_settings) - {"conf", "iou", "max_det", "rect", "method"}
    if unknown:
        raise ValueError(f"eval_settings: unknown {sorted(unknown)}; expected conf, iou, max_det, rect, method")
    key = cache_key(name, detector, dataset, split=split, imgsz=imgsz, data_version=data_version, **eval_settings)
    path = cache_path(root or default_cache_root(), key)
    if path.is_file():
        try:
            return load_cache(path, key)
        except CacheKeyError as err:
            if on_mismatch == "refuse":
                raise
            print(f"rebuilding {path.name}: {err}", file=sys.stderr)
    if hasattr(isp_fn, "reset"):
        isp_fn.reset()
    res = evaluate_isp(isp_fn, dataset, detector, batch_size=batch_size, imgsz=key["imgsz"], conf=key["conf"],
                       iou=key["iou"], max_det=key["max_det"], rect=key["rect"], method=key["method"])
    cache = DetectionCache(key=key, predictions=[np.asarray(p) for p in res["predictions"]],
                           ground_truth=[np.asarray(g) for g in res["ground_truth"]],
                           image_sizes=[tuple(int(s) for s in sz) for sz in res["image_sizes"]],
                           per_image_loss=np.asarray(res["per_image_loss"], dtype=np.float64),
                           names=dict(detector.names), info=dict(info or {}))
    save_cache(cache, path)
    return cache


# ----------------------------------------------------------------------------- per-image selection, oracle


def _check_same_images(caches: Sequence[DetectionCache]) -> None:
    if not caches:
        raise ValueError("caches: expected at least one DetectionCache")
    first = caches[0]
    for c in caches[1:]:
        diff = [k for k in KEY_FIELDS if k != "name" and c.key.get(k) != first.key.get(k)]
        if diff or len(c) != len(first):
            raise ValueError(f"caches: {c.name!r} and {first.name!r} were not scored on the same images/detector/settings "
                             f"(differ in {diff or ['number of images']})")


def select_per_image(caches: Sequence[DetectionCache], choice: Sequence[int] | np.ndarray,
                     name: str = "selection") -> DetectionCache:
    """Per image ``i`` the detections and loss of ``caches[choice[i]]``: the output of a per-image selector.

    ``choice`` holds ``len(caches[0])`` indices into ``caches``; ``info["choice"]``/``info["from"]`` record it.
    """
    _check_same_images(caches)
    choice = np.asarray(choice, dtype=np.int64).reshape(-1)
    n = len(caches[0])
    if len(choice) != n or (choice.size and (choice.min() < 0 or choice.max() >= len(caches))):
        raise ValueError(f"choice: expected {n} indices in [0, {len(caches)}), got {len(choice)} "
                         f"in [{choice.min() if choice.size else '-'}, {choice.max() if choice.size else '-'}]")
    first = caches[0]
    return DetectionCache(
        key={**first.key, "name": name}, predictions=[caches[c].predictions[i] for i, c in enumerate(choice)],
        ground_truth=list(first.ground_truth), image_sizes=list(first.image_sizes),
        per_image_loss=np.array([caches[c].per_image_loss[i] for i, c in enumerate(choice)], dtype=np.float64),
        names=dict(first.names), info={"choice": choice.tolist(), "from": [c.name for c in caches]})


def oracle_choice(caches: Sequence[DetectionCache]) -> np.ndarray:
    """Per image, the index of the cache with the lowest detector loss (ties: the first). ``(N,)`` int64."""
    _check_same_images(caches)
    losses = np.stack([c.per_image_loss for c in caches])  # (n_caches, N)
    return np.argmin(losses, axis=0).astype(np.int64)


def oracle(caches: Sequence[DetectionCache], name: str = "oracle") -> DetectionCache:
    """The loss oracle over ``caches``: per image the lowest-loss ISP (uses the labels: an upper bound).

    Example:
        >>> best5 = oracle(test_caches[:5], name="oracle_top5")     # doctest: +SKIP
        >>> best5.result()["mAP@0.5:0.95"], best5.info["from"]      # doctest: +SKIP
    """
    return select_per_image(caches, oracle_choice(caches), name=name)


# ----------------------------------------------------------------------------- random pipeline


def random_pipeline(index: int, modules: Sequence[str], *, length: int = CANDIDATE_LENGTH, seed: int = 0) -> tuple[str, ...]:
    """``length`` distinct ``modules`` in a random order, seeded by ``(seed, index)`` (the image's index)."""
    if not 1 <= length <= len(modules):
        raise ValueError(f"length: expected 1..{len(modules)} (the modules given), got {length}")
    rng = np.random.default_rng([int(seed), int(index)])
    return tuple(modules[i] for i in rng.permutation(len(modules))[:length])


class RandomPipelineISP:
    """Per image: :func:`random_pipeline` of the HPO model's modules, each with HPO's tuned parameters.

    Images are numbered in call order (``evaluate_isp`` calls in dataset order, once per item):
    image ``k`` of a call is item ``next_index + k``; :meth:`reset` starts again at 0.

    Args:
        hpo: the HPO baseline (:class:`~.hpo.HPOISP`; e.g. ``load_baseline(default_weights("hpo"))``).
        length: modules per image (5).
        seed: seed of the per-image draws.
    """

    def __init__(self, hpo: HPOISP, *, length: int = CANDIDATE_LENGTH, seed: int = 0) -> None:
        if not isinstance(hpo, HPOISP):
            raise TypeError(f"hpo: expected an HPOISP model, got {type(hpo).__name__}")
        self.modules = tuple(hpo.pipeline)
        self.length, self.seed = int(length), int(seed)
        random_pipeline(0, self.modules, length=self.length)  # checks length
        with torch.no_grad():
            self.params = {k: v.detach().clone() for k, v in hpo.params(1).items()}  # {name: (1, n)}
        self.hpo_sha256 = _state_sha256(hpo)
        self.next_index = 0

    @property
    def name(self) -> str:
        """Cache name: ``random<length>_hpo<sha12>_seed<seed>``."""
        return f"random{self.length}_hpo{self.hpo_sha256[:12]}_seed{self.seed}"

    def pipeline_for(self, index: int) -> tuple[str, ...]:
        return random_pipeline(index, self.modules, length=self.length, seed=self.seed)

    def reset(self) -> None:
        self.next_index = 0

    def __call__(self, linear: torch.Tensor) -> torch.Tensor:
        out = []
        for k in range(linear.shape[0]):
            pipe = self.pipeline_for(self.next_index + k)
            params = {m: self.params[m].to(linear) for m in pipe}
            with torch.no_grad():
                out.append(render_pipeline(linear[k:k + 1], pipe, params))
        self.next_index += linear.shape[0]
        return torch.cat(out)


def random_pipeline_cache(hpo: HPOISP, dataset: Any, detector: FrozenDetector, *, split: str, seed: int = 0,
                          length: int = CANDIDATE_LENGTH, **kwargs: Any) -> DetectionCache:
    """:func:`cached_evaluation` of :class:`RandomPipelineISP` (``info["pipelines"]``: each image's modules)."""
    isp = RandomPipelineISP(hpo, length=length, seed=seed)
    info = {"pipelines": [list(isp.pipeline_for(i)) for i in range(len(dataset))], "modules": list(isp.modules)}
    return cached_evaluation(isp.name, isp, dataset, detector, split=split, info=info, **kwargs)


# ----------------------------------------------------------------------------- tuning candidates


def default_candidate_args() -> baseline_train.Args:
    """The HPO trainer's settings for candidates: HPO's recipe (Adam 0.05, batch 8), 1 thread, no bar."""
    return baseline_train.Args(method="hpo", lr=0.05, batch_size=8, threads=1, progress_bar=False)


def candidate_args(pipeline: Sequence[str], root: str | Path, *, iterations: int = 50,
                   base: baseline_train.Args | None = None) -> baseline_train.Args:
    """:class:`.train.Args` tuning ``pipeline`` for ``iterations`` in its own run folder under ``root``.

    The folder, ``<root>/<slug>__<hash>``, is named by the pipeline and a hash of every training setting
    and of the detector's sha256, so another length, seed or detector never shares it; the model is
    exported to ``<folder>/model.pt``.
    """
    bad = [m for m in pipeline if m not in ops.MODULE_NAMES]
    if bad or len(set(pipeline)) != len(pipeline) or not pipeline:
        raise ValueError(f"pipeline: expected distinct modules of {ops.MODULE_NAMES}, got {tuple(pipeline)}")
    if iterations < 1:
        raise ValueError(f"iterations: expected >= 1, got {iterations}")
    base = base or default_candidate_args()
    args = dataclasses.replace(base, method="hpo", pipeline=",".join(pipeline), iterations=int(iterations),
                               checkpoint_every=min(base.checkpoint_every, max(1, iterations // 2)), out_dir="", export="")
    digest = settings_hash({**flat_dict(args), "detector_sha256": _settings_detector_sha(args.detection)})
    out = Path(root) / f"{pipeline_slug(pipeline)}__{digest}"
    return dataclasses.replace(args, out_dir=str(out), export=str(out / "model.pt"))


def tune_candidate(pipeline: Sequence[str], root: str | Path, *, iterations: int = 50,
                   base: baseline_train.Args | None = None) -> Path:
    """Tune one candidate's parameters as HPO tunes its pipeline (:func:`.train.train`); returns the export.

    Skips a finished run (its ``model.pt`` exists); an interrupted one resumes from its ``last.pt``.

    Raises:
        RuntimeError: the detector weights file changed while tuning (the run folder is then stale).
    """
    args = candidate_args(pipeline, root, iterations=iterations, base=base)
    export = Path(args.export)
    if export.is_file():
        return export
    before = _settings_detector_sha(args.detection)
    baseline_train.train(args)
    if _settings_detector_sha(args.detection) != before:
        export.unlink(missing_ok=True)
        raise RuntimeError(f"the detector weights changed while tuning {pipeline_slug(pipeline)}; delete {args.out_dir}")
    return export


@dataclass
class Candidate:
    """A tuned candidate: its pipeline, exported model, cache name and validation mAP@0.5:0.95 (percent)."""

    pipeline: tuple[str, ...]
    model_path: Path
    name: str
    val_map: float
    val_cache: DetectionCache | None = None


def candidate_cache(candidate: Candidate | Path, dataset: Any, detector: FrozenDetector, *, split: str,
                    **kwargs: Any) -> DetectionCache:
    """:func:`cached_evaluation` of a tuned candidate (a :class:`Candidate` or its exported ``model.pt``)."""
    path = candidate.model_path if isinstance(candidate, Candidate) else Path(candidate)
    model = load_baseline(path, device=str(detector.device))
    name = f"fixed_{path.parent.name}"
    return cached_evaluation(name, make_isp_fn(model), dataset, detector, split=split,
                             info={"pipeline": list(model.pipeline), "model": str(path),
                                   "model_sha256": file_sha256(path)}, **kwargs)


def tune_and_rank(pipelines: Sequence[Sequence[str]], root: str | Path, detector: FrozenDetector, val_dataset: Any, *,
                  k: int = 20, iterations: int = 50, base: baseline_train.Args | None = None, split: str = "val",
                  cache_root: str | Path | None = None, **kwargs: Any) -> list[Candidate]:
    """Tune every pipeline (resumable, :func:`tune_candidate`), score each on ``val_dataset`` (cached), return the
    ``k`` best by mAP@0.5:0.95 (ties: candidate order).

    Args:
        pipelines: e.g. :func:`candidate_pipelines`.
        root: parent of the run folders.
        detector: the frozen detector that scores them (the one the trainer loads from ``base.detection``).
        val_dataset: the **validation** split (never the test split: ranking on test would leak).
        k, iterations, base: how many to return; :func:`candidate_args`.
        split, cache_root, kwargs: :func:`cached_evaluation`'s ``split``, ``root`` and other options.

    Raises:
        ValueError: the trainer's detector file is not ``detector``'s (YAML-built detectors are not compared).
    """
    base = base or default_candidate_args()
    if not base.detection.detector_yaml and detector.weights is not None:
        if _settings_detector_sha(base.detection) != detector_sha256(detector):
            raise ValueError("detector: its weights differ from the trainer's detection.detector_weights "
                             f"({base.detection.detector_weights or DEFAULT_WEIGHTS})")
    ranked = []
    for n, pipe in enumerate(pipelines):
        path = tune_candidate(pipe, root, iterations=iterations, base=base)
        cache = candidate_cache(path, val_dataset, detector, split=split, root=cache_root, **kwargs)
        score = float(cache.result()["mAP@0.5:0.95"])
        ranked.append((-score, n, Candidate(tuple(pipe), path, cache.name, score, cache)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [c for _, _, c in ranked[:k]]


# ----------------------------------------------------------------------------- command line


@dataclass
class CandidatesArgs:
    """Arguments of ``ispbench train candidates`` (``--field-name value``)."""

    n: int = 20
    """number of candidate pipelines (:func:`candidate_pipelines`: hand-picked first, then seeded draws)"""
    draw_seed: int = 0
    """seed of the candidate draws"""
    seed: int = 0
    """seed of each candidate's tuning (the HPO trainer's ``--seed``)"""
    iterations: int = 50
    """tuning iterations per candidate"""
    lr: float = 0.05
    """Adam learning rate (HPO's recipe)"""
    batch_size: int = 8
    """images per iteration"""
    threads: int = 1
    """torch CPU threads"""
    k: int = 20
    """how many of the best (validation mAP@0.5:0.95) to list"""
    n_val: int = 0
    """validation images (0 = all)"""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    """training data and frozen detector"""
    root: str = ""
    """parent of the run folders (empty = ``<cache>/runs/candidates``)"""
    cache_root: str = ""
    """detection-cache folder (empty = ``<cache>/detection_cache``)"""
    out: str = ""
    """write the ranking as JSON here (empty = ``<root>/ranking.json``)"""


def main(argv: list[str] | None = None) -> int:
    """``ispbench train candidates [--n 40 --iterations 50 ...]``: tune, rank on val, print the ``k`` best."""
    args = parse(CandidatesArgs, argv, prog="ispbench train candidates", description=main.__doc__ or "")
    root = Path(args.root or cache_dir() / "runs" / "candidates")
    base = baseline_train.Args(method="hpo", seed=args.seed, threads=args.threads, detection=args.detection, lr=args.lr,
                               batch_size=args.batch_size, progress_bar=False)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    detector = build_detector(args.detection)
    val = train_dataset(args.detection, "val", args.n_val)
    ranked = tune_and_rank(candidate_pipelines(args.n, seed=args.draw_seed), root, detector, val, k=args.k,
                           iterations=args.iterations, base=base, cache_root=args.cache_root or None)
    rows = [{"rank": r + 1, "pipeline": list(c.pipeline), "val_mAP@0.5:0.95": round(c.val_map, 3), "name": c.name,
             "model": str(c.model_path)} for r, c in enumerate(ranked)]
    atomic.write_json(args.out or root / "ranking.json", {"args": flat_dict(args), "ranking": rows})
    for row in rows:
        print(f"{row['rank']:>3}  {row['val_mAP@0.5:0.95']:7.3f}  {','.join(row['pipeline'])}")
    return 0


__all__ = [
    "CACHE_FORMAT", "CANDIDATE_LENGTH", "CANDIDATE_POOL", "HAND_PICKED", "KEY_FIELDS", "Candidate", "CacheKeyError",
    "CandidatesArgs",
    "DetectionCache", "RandomPipelineISP", "cache_key", "cache_path", "cached_evaluation", "candidate_args",
    "candidate_cache", "candidate_pipelines", "dataset_version", "default_cache_root", "default_candidate_args",
    "detector_sha256", "file_sha256", "load_cache", "main", "oracle", "oracle_choice", "pipeline_slug", "random_pipeline",
    "random_pipeline_cache", "save_cache", "select_per_image", "tune_and_rank", "tune_candidate",
]
