"""Per-image segmentation caches and bootstrap intervals of **mask** mAP (AdaptiveISP Table 2, POS-ISP's segmentation task).

The segmentation counterpart of :func:`ispbench.detection_baselines.candidates.cached_evaluation`
and :mod:`ispbench.chapters.detection_intervals`:

* **Cache** (:func:`segmentation_cache`, :class:`SegmentationCache`): one run of
  :func:`ispbench.tasks.segmentation_eval.evaluate_isp_segmentation` per ISP and split, stored with
  what re-scoring needs: per image the box predictions (``x1, y1, x2, y2, score, class``, original
  pixels; the scores and classes of the masks too), the ``(n, m)`` mask IoUs of every prediction
  with every ground-truth object, the ground truth (``class, cx, cy, w, h``), the image size and
  the segmenter's loss. Mask mAP, box mAP and any subset or resample are then recomputed without
  the segmenter (:meth:`SegmentationCache.result`). :func:`cached_segmentation` returns that result.
* **Intervals**: mask mAP is not a mean of per-image values, so its interval comes from
  :func:`ispbench.stats.bootstrap_statistic` over test images. :class:`MaskMapResampler` matches
  each image's predictions to its own ground truth once (from the cached mask IoUs, greedily, as
  :func:`ispbench.tasks.map_eval.evaluate_map_from_iou`'s ``"ultralytics"`` method does: matching
  never crosses images); a resample only pools the drawn images' matches and integrates the
  precision/recall curves. On all images it reproduces the mask mAP of the evaluation exactly
  (``tests/chapters/test_segmentation_intervals.py``). :func:`seed_mask_map_estimates` (mean and
  median over training seeds, 95% interval of the seed-mean) and :func:`paired_mask_map_difference`
  (A - B on the same resampled images) mirror :func:`~ispbench.chapters.detection_intervals.seed_map_estimates`
  and :func:`~ispbench.chapters.detection_intervals.paired_map_difference`; :func:`seed_mask_map_rows`
  and :func:`paired_mask_rows` give the table rows (the columns of
  :func:`ispbench.chapters.adaptiveisp.seed_map_rows` / ``paired_rows``).

Box mAP of the segmenter's boxes: the results also carry ``predictions``, ``ground_truth`` and
``image_sizes``, so :func:`ispbench.chapters.adaptiveisp.seed_map_rows` gives its intervals.

Cache file (``<root>/<name>__<split>__<imgsz>px.pt``, default root ``cache_dir()/segmentation_cache``,
written with :func:`ispbench.atomic.torch_save`, read with ``weights_only=True``)::

    {"format": "ispbench.segmentation_cache/1",
     "key": {"name", "segmenter_sha256", "split", "imgsz", "dataset_version",
             "conf", "iou", "max_det", "rect", "method", "code_version"},
     "predictions": [(n_i, 6) float64 x1 y1 x2 y2 score class, original pixels],
     "mask_ious": [(n_i, m_i) float64],  "ground_truth": [(m_i, 5) float64 class cx cy w h],
     "image_sizes": (N, 2) int64,  "per_image_loss": (N,) float64,  "names": {id: name},
     "info": {...},  "metrics": {"mask": {mAP@...}, "box": {mAP@...}}}

A file whose key differs from the one asked for is rebuilt (``on_mismatch="rebuild"``) or refused
(:class:`~ispbench.detection_baselines.candidates.CacheKeyError`, naming the fields that differ).

This module imports no other chapter module but :mod:`.detection_intervals`, so any chapter
(AdaptiveISP, POS-ISP) can import it.

Example:
    >>> seg = FrozenSegmenter()                                                         # doctest: +SKIP
    >>> test = load_segmentation_split("", "embedded", "test", 0, 160)                  # doctest: +SKIP
    >>> res = [segmentation_caches_for_file(f, test, seg, split="test", imgsz=160)      # doctest: +SKIP
    ...        for f in shipped_seed_files("hpo")]
    >>> seed_mask_map_rows("Hyperparameter Optimization", res)                         # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ispbench import atomic, stats
from ispbench.chapters.detection_intervals import (
    MAP_METRICS,
    MAP_RESAMPLES,
    MapResampler,
    paired_difference_from_resamplers,
    seed_estimates_from_resamplers,
)
from ispbench.detection_baselines import candidates
from ispbench.detection_baselines.candidates import CacheKeyError
from ispbench.detection_baselines.models import load_baseline
from ispbench.detection_baselines.models import make_isp_fn as baseline_isp_fn
from ispbench.methods.adaptiveisp.inference import load_policy
from ispbench.methods.adaptiveisp.inference import make_isp_fn as policy_isp_fn
from ispbench.methods.posisp import inference as posisp_inference
from ispbench.paths import cache_dir
from ispbench.tasks.map_eval import (
    AUTHORS_EVAL,
    COCO_IOU_THRESHOLDS,
    _greedy_match,
    as_percent,
    evaluate_map,
    evaluate_map_from_iou,
)
from ispbench.tasks.segmentation_eval import evaluate_isp_segmentation
from ispbench.training.checkpoint import safe_load

#: Format tag of a segmentation cache file.
CACHE_FORMAT = "ispbench.segmentation_cache/1"
#: Fields of a cache key, in order.
KEY_FIELDS = ("name", "segmenter_sha256", "split", "imgsz", "dataset_version", "conf", "iou", "max_det", "rect", "method",
              "code_version")
#: ``evaluate_isp_segmentation`` settings that are part of the key.
EVAL_SETTINGS = ("conf", "iou", "max_det", "rect", "method")
#: Source folders hashed into the key beyond :data:`ispbench.detection_baselines.candidates.CODE_FOLDERS`
#: (POS-ISP files are scored here too).
EXTRA_CODE_FOLDERS = ("methods/posisp",)
#: The three mask-mAP columns (the names of the detection tables).
METRICS = MAP_METRICS

__all__ = [
    "CACHE_FORMAT", "KEY_FIELDS", "METRICS", "MaskMapResampler", "SegmentationCache", "cached_segmentation",
    "concat_results", "default_cache_root", "load_segmentation_cache", "mask_map_intervals", "mask_resampler",
    "paired_mask_map_difference", "paired_mask_rows", "save_segmentation_cache", "seed_mask_map_estimates",
    "seed_mask_map_rows", "segmentation_cache", "segmentation_cache_key", "segmentation_caches_for_file",
    "segmentation_caches_for_fn", "segmentation_code_version", "segmentation_dataset_version",
    "segmentation_isp_from_file", "segmenter_sha256",
]


# ----------------------------------------------------------------------------- fingerprints


_SEGMENTER_SHA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_sha256(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def segmenter_sha256(segmenter: Any) -> str:
    """The segmenter's weights file sha256, or ``"state:<sha256>"`` of a YAML-built segmenter's tensors.

    Hashed once per segmenter object (as :func:`~ispbench.detection_baselines.candidates.detector_sha256`).
    """
    if segmenter not in _SEGMENTER_SHA:
        weights = getattr(segmenter, "weights", None)
        _SEGMENTER_SHA[segmenter] = (candidates.file_sha256(weights) if weights else
                                     "state:" + _state_sha256(segmenter.model))
    return _SEGMENTER_SHA[segmenter]


@functools.lru_cache(maxsize=1)
def segmentation_code_version() -> str:
    """:func:`~ispbench.detection_baselines.candidates.code_version` plus the sources of :data:`EXTRA_CODE_FOLDERS`."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(candidates.code_version().encode())
    for folder in EXTRA_CODE_FOLDERS:
        for path in sorted((root / folder).glob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def segmentation_dataset_version(dataset: Any) -> str:
    """:func:`~ispbench.detection_baselines.candidates.dataset_version` of a dataset with masks.

    The embedded set's version also fixes its masks (``...:masks``); a content-hashed dataset (LIS,
    a list of items) gets its masks hashed too (a second read of every item).
    """
    version = candidates.dataset_version(dataset)
    if not version.startswith("content:"):
        return f"{version}:masks"
    h = hashlib.sha256()
    for i in range(len(dataset)):
        item = dataset[i]
        if "masks" not in item:
            raise ValueError(f"dataset[{i}]: no 'masks' (N, H, W); a segmentation cache needs instance masks")
        h.update(torch.as_tensor(item["masks"]).bool().cpu().contiguous().numpy().tobytes())
    return f"{version}:masks{h.hexdigest()[:16]}"


# ----------------------------------------------------------------------------- the cache


def _as_rows(x: Any, width: int) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1, width)


@dataclass
class SegmentationCache:
    """One ISP's per-image segmentation record on one split (see the module docstring).

    ``result(indices)`` re-scores any subset (with repeats: a bootstrap resample) without the segmenter.
    """

    key: dict[str, Any]
    predictions: list[np.ndarray]
    mask_ious: list[np.ndarray]
    ground_truth: list[np.ndarray]
    image_sizes: list[tuple[int, int]]
    per_image_loss: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.predictions)
        if not (len(self.mask_ious) == len(self.ground_truth) == len(self.image_sizes) == len(self.per_image_loss) == n):
            raise ValueError(f"predictions, mask_ious, ground_truth, image_sizes, per_image_loss: expected one entry per "
                             f"image each, got {n}, {len(self.mask_ious)}, {len(self.ground_truth)}, "
                             f"{len(self.image_sizes)}, {len(self.per_image_loss)}")
        self.predictions = [_as_rows(p, 6) for p in self.predictions]
        self.ground_truth = [_as_rows(g, 5) for g in self.ground_truth]
        self.mask_ious = [np.asarray(m, dtype=np.float64).reshape(len(p), len(g))
                          for m, p, g in zip(self.mask_ious, self.predictions, self.ground_truth, strict=True)]
        self.image_sizes = [(int(s[0]), int(s[1])) for s in self.image_sizes]
        self.per_image_loss = np.asarray(self.per_image_loss, dtype=np.float64).reshape(-1)

    @property
    def name(self) -> str:
        return str(self.key["name"])

    def __len__(self) -> int:
        return len(self.predictions)

    def result(self, indices: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        """An ``evaluate_isp_segmentation``-style result over images ``indices`` (default all).

        Returns:
            Mask mAP at the top level (``mAP@0.5``, ``mAP@0.75``, ``mAP@0.5:0.95``, ``per_class`` ...,
            percent), ``box`` (box mAP dict, percent), ``per_image_loss``, ``mean_loss``,
            ``predictions``, ``mask_ious``, ``ground_truth``, ``image_sizes``, ``name``.
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices: expected values in [0, {len(self)}), got min {idx.min()}, max {idx.max()}")
        preds = [self.predictions[i] for i in idx]
        ious = [self.mask_ious[i] for i in idx]
        gts = [self.ground_truth[i] for i in idx]
        sizes = [self.image_sizes[i] for i in idx]
        method, names = self.key.get("method", "ultralytics"), self.names or None
        res = as_percent(evaluate_map_from_iou([p[:, 4] for p in preds], [p[:, 5] for p in preds], [g[:, 0] for g in gts],
                                               ious, COCO_IOU_THRESHOLDS, method=method, names=names))
        res["box"] = as_percent(evaluate_map(preds, gts, sizes, COCO_IOU_THRESHOLDS, method=method, names=names))
        losses = self.per_image_loss[idx]
        res.update(per_image_loss=losses.tolist(), mean_loss=float(losses.mean()) if losses.size else float("nan"),
                   predictions=preds, mask_ious=ious, ground_truth=gts, image_sizes=sizes, name=self.name)
        return res


def segmentation_cache_key(name: str, segmenter: Any, dataset: Any, *, split: str, imgsz: int | None = None,
                           data_version: str | None = None, conf: float = AUTHORS_EVAL["conf"],
                           iou: float = AUTHORS_EVAL["iou"], max_det: int = 300, rect: bool = True,
                           method: str = "ultralytics") -> dict[str, Any]:
    """``name`` + :func:`segmenter_sha256` + ``split`` + ``imgsz`` + :func:`segmentation_dataset_version`
    (or ``data_version``) + the settings of ``evaluate_isp_segmentation`` + :func:`segmentation_code_version`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return {"name": name, "segmenter_sha256": segmenter_sha256(segmenter), "split": str(split),
            "imgsz": int(imgsz or segmenter.imgsz),
            "dataset_version": data_version if data_version is not None else segmentation_dataset_version(dataset),
            "conf": float(conf), "iou": float(iou), "max_det": int(max_det), "rect": bool(rect), "method": str(method),
            "code_version": segmentation_code_version()}


def default_cache_root() -> Path:
    """``cache_dir()/segmentation_cache``."""
    return cache_dir() / "segmentation_cache"


def _cache_path(root: str | Path, key: dict[str, Any]) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._+=-]", "_", key["name"])
    return Path(root) / f"{safe}__{key['split']}__{key['imgsz']}px.pt"


def save_segmentation_cache(cache: SegmentationCache, path: str | Path) -> Path:
    """Write ``cache`` atomically (safe-loadable: tensors, numbers, strings, plain containers)."""
    res = cache.result()
    payload = {
        "format": CACHE_FORMAT, "key": dict(cache.key),
        "predictions": [torch.as_tensor(p) for p in cache.predictions],
        "mask_ious": [torch.as_tensor(m) for m in cache.mask_ious],
        "ground_truth": [torch.as_tensor(g) for g in cache.ground_truth],
        "image_sizes": torch.as_tensor(np.asarray(cache.image_sizes, dtype=np.int64).reshape(-1, 2)),
        "per_image_loss": torch.as_tensor(cache.per_image_loss),
        "names": {int(k): str(v) for k, v in cache.names.items()}, "info": dict(cache.info),
        "metrics": {"mask": {m: float(res[m]) for m in METRICS}, "box": {m: float(res["box"][m]) for m in METRICS}},
    }
    path = atomic.torch_save(payload, path)
    cache.path = Path(path)
    return cache.path


def load_segmentation_cache(path: str | Path, expected_key: dict[str, Any] | None = None) -> SegmentationCache:
    """Read a cache file (``weights_only=True``); with ``expected_key`` refuse one whose key differs.

    Raises:
        FileNotFoundError: no such file.
        CacheKeyError: wrong format, or a key that differs from ``expected_key`` (the message names each field).
    """
    path = Path(path)
    payload = safe_load(path, what="segmentation cache")
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise CacheKeyError(f"{path}: not a segmentation cache (format {CACHE_FORMAT!r})")
    key = payload["key"]
    if expected_key is not None:
        diff = {k: (key.get(k), expected_key.get(k)) for k in KEY_FIELDS if key.get(k) != expected_key.get(k)}
        if diff:
            raise CacheKeyError(f"{path}: cache key differs: " + ", ".join(f"{k}: {a!r} (file) != {b!r} (asked)"
                                                                          for k, (a, b) in diff.items()))
    return SegmentationCache(
        key=dict(key), predictions=[p.numpy() for p in payload["predictions"]],
        mask_ious=[m.numpy() for m in payload["mask_ious"]], ground_truth=[g.numpy() for g in payload["ground_truth"]],
        image_sizes=[(int(h), int(w)) for h, w in payload["image_sizes"].tolist()],
        per_image_loss=payload["per_image_loss"].numpy(), names={int(k): str(v) for k, v in payload.get("names", {}).items()},
        info=dict(payload.get("info", {})), path=path)


def segmentation_cache(name: str, isp_fn: Callable[[torch.Tensor], torch.Tensor] | None, dataset: Any, segmenter: Any, *,
                       split: str, imgsz: int | None = None, batch_size: int = 8, root: str | Path | None = None,
                       data_version: str | None = None, on_mismatch: str = "rebuild", info: dict[str, Any] | None = None,
                       **eval_settings: Any) -> SegmentationCache:
    """``evaluate_isp_segmentation(isp_fn, dataset, segmenter)`` once, cached per image under :func:`segmentation_cache_key`.

    Args:
        name: what the ISP is (part of the key: a different model needs a different name).
        isp_fn: linear ``(B, 3, H, W)`` -> sRGB ``(B, 3, H, W)``, or ``None`` (the input as it is); an object
            with a ``reset()`` method is reset first.
        dataset, segmenter, imgsz, batch_size: as in ``evaluate_isp_segmentation`` (items with ``masks``).
        split: the split's name (``"test"``; part of the key).
        root: cache folder (default :func:`default_cache_root`).
        data_version: the dataset's fingerprint if known (default :func:`segmentation_dataset_version`).
        on_mismatch: an existing file with another key: ``"rebuild"`` (overwrite) or ``"refuse"`` (``CacheKeyError``).
        info: JSON-able notes stored with the cache.
        eval_settings: ``conf``, ``iou``, ``max_det``, ``rect``, ``method`` (part of the key).
    """
    if on_mismatch not in ("rebuild", "refuse"):
        raise ValueError(f"on_mismatch: expected 'rebuild' or 'refuse', got {on_mismatch!r}")
    unknown = set(eval_settings) - set(EVAL_SETTINGS)
    if unknown:
        raise ValueError(f"eval_settings: unknown {sorted(unknown)}; expected {', '.join(EVAL_SETTINGS)}")
    key = segmentation_cache_key(name, segmenter, dataset, split=split, imgsz=imgsz, data_version=data_version,
                                 **eval_settings)
    path = _cache_path(root or default_cache_root(), key)
    if path.is_file():
        try:
            return load_segmentation_cache(path, key)
        except CacheKeyError as err:
            if on_mismatch == "refuse":
                raise
            print(f"rebuilding {path.name}: {err}", file=sys.stderr)
    if hasattr(isp_fn, "reset"):
        isp_fn.reset()
    res = evaluate_isp_segmentation(isp_fn, dataset, segmenter, batch_size=batch_size, imgsz=key["imgsz"],
                                    **{k: key[k] for k in EVAL_SETTINGS})
    cache = SegmentationCache(key=key, predictions=res["predictions"], mask_ious=res["mask_ious"],
                              ground_truth=res["ground_truth"], image_sizes=res["image_sizes"],
                              per_image_loss=res["per_image_loss"], names=dict(getattr(segmenter, "names", {}) or {}),
                              info=dict(info or {}))
    save_segmentation_cache(cache, path)
    return cache


def cached_segmentation(name: str, isp_fn: Callable[[torch.Tensor], torch.Tensor] | None, dataset: Any, segmenter: Any,
                        *, split: str, imgsz: int | None = None, batch_size: int = 8, **kwargs: Any) -> dict[str, Any]:
    """:func:`segmentation_cache`'s :meth:`~SegmentationCache.result` on all images: the cached
    ``evaluate_isp_segmentation`` result (mask mAP in percent at the top level, ``box``, per-image records)."""
    return segmentation_cache(name, isp_fn, dataset, segmenter, split=split, imgsz=imgsz, batch_size=batch_size,
                              **kwargs).result()


def segmentation_caches_for_fn(name: str, isp_fn: Callable[[torch.Tensor], torch.Tensor] | None, dataset: Any,
                               segmenter: Any, *, split: str, imgsz: int | None = None, batch_size: int = 8,
                               **kwargs: Any) -> dict[str, Any]:
    """The cached segmentation result of an ISP function (``None`` = the input as it is): :func:`cached_segmentation`."""
    return cached_segmentation(name, isp_fn, dataset, segmenter, split=split, imgsz=imgsz, batch_size=batch_size, **kwargs)


def segmentation_isp_from_file(path: str | Path, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """The ISP function of an exported POS-ISP model, AdaptiveISP policy or baseline (HPO, attention,
    ReconfigISP), told apart by the file's ``format``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    fmt = str(payload.get("format", "")) if isinstance(payload, dict) else ""
    if fmt == posisp_inference.EXPORT_FORMAT:
        return posisp_inference.make_isp_fn(posisp_inference.load_model(path, device))
    if fmt.startswith("ispbench.adaptiveisp.policy"):
        return policy_isp_fn(load_policy(path, device))
    return baseline_isp_fn(load_baseline(path, device))


def segmentation_caches_for_file(path: str | Path, dataset: Any, segmenter: Any, *, split: str, imgsz: int | None = None,
                                 batch_size: int = 8, device: str = "cpu",
                                 loader: Callable[[Path, str], Callable] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The cached segmentation result of the ISP in checkpoint ``path``, cached under ``<stem>__<sha256[:12]>``.

    Args:
        path: an exported POS-ISP model, AdaptiveISP policy or HPO / attention / ReconfigISP model.
        loader: ``(path, device) -> isp_fn`` (default :func:`segmentation_isp_from_file`); only called when
            the cache has to be computed.
        dataset, segmenter, split, imgsz, batch_size, kwargs: as in :func:`segmentation_cache`.
    """
    path = Path(path)
    sha = candidates.file_sha256(path)
    name = f"{path.stem}__{sha[:12]}"

    class _Lazy:  # the model is loaded only if the cache is (re)computed
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            if not hasattr(self, "fn"):
                self.fn = (loader or segmentation_isp_from_file)(path, device)
            return self.fn(x)

    info = {"model": str(path), "model_sha256": sha, **kwargs.pop("info", {})}
    return cached_segmentation(name, _Lazy(), dataset, segmenter, split=split, imgsz=imgsz, batch_size=batch_size,
                               info=info, **kwargs)


def concat_results(results: Sequence[dict[str, Any]], name: str = "concatenated") -> dict[str, Any]:
    """One result over the images of several (e.g. POS-ISP's All split = the low- and normal-light tests), re-scored."""
    if not results:
        raise ValueError("results: expected at least one segmentation result")
    cache = SegmentationCache(
        key={"name": name, "method": _method(results[0])},
        predictions=[p for r in results for p in _field(r, "predictions")],
        mask_ious=[m for r in results for m in _field(r, "mask_ious")],
        ground_truth=[g for r in results for g in _field(r, "ground_truth")],
        image_sizes=[s for r in results for s in _field(r, "image_sizes")],
        per_image_loss=[v for r in results for v in _field(r, "per_image_loss")])
    return cache.result()


# ----------------------------------------------------------------------------- intervals


def _field(result: dict[str, Any], key: str) -> Any:
    if key not in result:
        raise ValueError(f"result: no {key!r}; expected an evaluate_isp_segmentation / cached_segmentation result "
                         "(predictions, mask_ious, ground_truth, image_sizes per image)")
    return result[key]


def _method(result: dict[str, Any]) -> str:
    return str(result.get("method", "ultralytics"))


class MaskMapResampler(MapResampler):
    """Per-image matches from given IoU matrices (masks), ready to recompute mAP (percent) on item indices.

    The matching of :func:`ispbench.tasks.map_eval.evaluate_map_from_iou` (``"ultralytics"``: each image's
    predictions in descending score order claim their best unclaimed same-class object); resampling and AP as
    :class:`~ispbench.chapters.detection_intervals.MapResampler`.

    Args:
        scores: per image ``(n,)``.
        pred_classes: per image ``(n,)``.
        gt_classes: per image ``(m,)``.
        ious: per image ``(n, m)`` IoU of every prediction with every ground-truth object.

    Example:
        >>> r = MaskMapResampler([np.array([0.9])], [np.array([0])], [np.array([0])], [np.array([[0.8]])])
        >>> [round(float(v), 1) for v in r(np.array([0]))]
        [99.5, 99.5, 69.7]
    """

    def __init__(self, scores: Sequence[Any], pred_classes: Sequence[Any], gt_classes: Sequence[Any],
                 ious: Sequence[Any]) -> None:
        if not (len(scores) == len(pred_classes) == len(gt_classes) == len(ious)):
            raise ValueError(f"scores, pred_classes, gt_classes, ious: expected one entry per image each, got "
                             f"{len(scores)}, {len(pred_classes)}, {len(gt_classes)}, {len(ious)}")
        self.n_images = len(scores)
        thresholds = np.asarray(COCO_IOU_THRESHOLDS)
        self._i50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
        self._i75 = int(np.flatnonzero(np.isclose(thresholds, 0.75))[0])
        image_of, all_scores, classes, tps = [], [], [], []
        gt_counts: dict[int, np.ndarray] = {}
        for i in range(self.n_images):
            score = np.asarray(scores[i], dtype=np.float64).reshape(-1)
            p_cls = np.asarray(pred_classes[i]).reshape(-1).astype(np.int64)
            g_cls = np.asarray(gt_classes[i]).reshape(-1).astype(np.int64)
            iou = np.asarray(ious[i], dtype=np.float64)
            if iou.shape != (len(score), len(g_cls)) or len(p_cls) != len(score):
                raise ValueError(f"ious[{i}]: expected ({len(score)}, {len(g_cls)}) for {len(score)} predictions and "
                                 f"{len(g_cls)} objects, got {iou.shape} ({len(p_cls)} classes)")
            for c in np.unique(g_cls):
                gt_counts.setdefault(int(c), np.zeros(self.n_images, dtype=np.int64))[i] += int((g_cls == c).sum())
            order = np.argsort(-score, kind="mergesort")
            iou = iou[order] * (p_cls[order][:, None] == g_cls[None, :])
            tps.append(_greedy_match(iou, thresholds, coco_ties=False))
            image_of.append(np.full(len(order), i, dtype=np.int64))
            all_scores.append(score[order])
            classes.append(p_cls[order])
        image_of_all = np.concatenate(image_of) if image_of else np.zeros(0, np.int64)
        score_all = np.concatenate(all_scores) if all_scores else np.zeros(0)
        class_all = np.concatenate(classes) if classes else np.zeros(0, np.int64)
        tp_all = np.concatenate(tps, axis=0) if tps else np.zeros((0, len(thresholds)), bool)
        self._classes = sorted(gt_counts)
        self._gt_counts = gt_counts
        self._per_class = {}
        for c in self._classes:
            sel = np.flatnonzero(class_all == c)
            order = sel[np.argsort(-score_all[sel], kind="mergesort")]
            self._per_class[c] = (image_of_all[order], tp_all[order])


def mask_resampler(result: dict[str, Any]) -> MaskMapResampler:
    """:class:`MaskMapResampler` of a segmentation result (its ``predictions``, ``mask_ious``, ``ground_truth``).

    Raises:
        ValueError: a result without those per-image records, or scored with another AP than ``"ultralytics"``.
    """
    if _method(result) != "ultralytics":
        raise ValueError(f"result: mask-mAP intervals resample the 'ultralytics' AP, this result used {_method(result)!r}")
    preds, ious, gts = _field(result, "predictions"), _field(result, "mask_ious"), _field(result, "ground_truth")
    preds = [_as_rows(p, 6) for p in preds]
    return MaskMapResampler([p[:, 4] for p in preds], [p[:, 5] for p in preds], [_as_rows(g, 5)[:, 0] for g in gts], ious)


def _check_same_images(results: Sequence[dict[str, Any]], what: str) -> None:
    first = _field(results[0], "ground_truth")
    for k, r in enumerate(results[1:], start=1):
        gt = _field(r, "ground_truth")
        if len(gt) != len(first) or not all(np.array_equal(_as_rows(a, 5), _as_rows(b, 5)) for a, b in zip(gt, first, strict=True)):
            raise ValueError(f"{what}[{k}]: not scored on the same images as {what}[0] (ground truth differs)")


def _resamplers(results: Sequence[dict[str, Any]], what: str = "results") -> list[MaskMapResampler]:
    if not results:
        raise ValueError(f"{what}: expected one segmentation result per training seed, got none")
    _check_same_images(results, what)
    return [mask_resampler(r) for r in results]


def mask_map_intervals(result: dict[str, Any], *, n_resamples: int = MAP_RESAMPLES,
                       confidence: float = stats.DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals over images of the three mask-mAP values of one result: ``{metric: (ci_low, ci_high)}``."""
    r = mask_resampler(result)
    boot = stats.bootstrap_statistic(r, r.n_images, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return {m: (float(boot.ci_low[k]), float(boot.ci_high[k])) for k, m in enumerate(METRICS)}


def seed_mask_map_estimates(results: Sequence[dict[str, Any]], *, n_resamples: int = MAP_RESAMPLES,
                            confidence: float = stats.DEFAULT_CONFIDENCE, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Mask mAP over training seeds: mean and median over seeds, 95% bootstrap interval over images of the seed-mean.

    Every resample draws the same images for all seeds (the seeds are all kept); each seed's mask mAP
    is recomputed on them from the cached IoUs.

    Args:
        results: one segmentation result per training seed, all on the same images.

    Returns:
        ``{metric: {"mean", "median", "ci_low", "ci_high", "n_seeds", "per_seed"}}`` in percent.
    """
    return seed_estimates_from_resamplers(_resamplers(results), METRICS, n_resamples=n_resamples, confidence=confidence,
                                          seed=seed)


def paired_mask_map_difference(results_a: Sequence[dict[str, Any]], results_b: Sequence[dict[str, Any]], *,
                               n_resamples: int = MAP_RESAMPLES, confidence: float = stats.DEFAULT_CONFIDENCE,
                               seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of ``maskmAP(A) - maskmAP(B)`` (seed-means) on the same resampled images.

    Returns:
        ``{metric: {"difference", "ci_low", "ci_high", "fraction_a_better", "n_seeds_a", "n_seeds_b"}}``;
        A beats B at 95% when ``ci_low > 0``.

    Raises:
        ValueError: A and B were not scored on the same images.
    """
    ra, rb = _resamplers(results_a, "results_a"), _resamplers(results_b, "results_b")
    _check_same_images([results_a[0], results_b[0]], "[results_a[0], results_b[0]]")
    return paired_difference_from_resamplers(ra, rb, METRICS, n_resamples=n_resamples, confidence=confidence, seed=seed)


# ----------------------------------------------------------------------------- table rows


def seed_mask_map_rows(method: str, results: Sequence[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    """Segmentation results of several training seeds -> rows ``method, metric, value`` (mean mask mAP over
    seeds), ``median``, extra columns and the 95% interval over images of the seed-mean (``n_seeds``,
    ``ci_low``, ``ci_high``, ``unit``): the columns of :func:`ispbench.chapters.adaptiveisp.seed_map_rows`."""
    est = seed_mask_map_estimates(results)
    return [{"method": method, "metric": m, "value": round(est[m]["mean"], 2), "median": round(est[m]["median"], 2),
             **extra, **stats.interval_fields(est[m]["ci_low"], est[m]["ci_high"], n_seeds=est[m]["n_seeds"], metric=m,
                                              digits=2)}
            for m in METRICS]


def paired_mask_rows(name_a: str, results_a: Sequence[dict[str, Any]], name_b: str,
                     results_b: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """"A beats B?" on mask mAP: the paired bootstrap of A - B on the same images, one row per metric
    (the columns of :func:`ispbench.chapters.adaptiveisp.paired_rows`)."""
    cmp = paired_mask_map_difference(results_a, results_b)
    return [{"comparison": f"{name_a} - {name_b}", "metric": m, "difference": round(c["difference"], 2),
             "ci_low": round(c["ci_low"], 2), "ci_high": round(c["ci_high"], 2),
             "P(A > B)": round(c["fraction_a_better"], 3), "seeds": f"{c['n_seeds_a']} vs {c['n_seeds_b']}",
             "verdict": "A better" if c["ci_low"] > 0 else ("B better" if c["ci_high"] < 0 else "no clear difference")}
            for m, c in cmp.items()]
