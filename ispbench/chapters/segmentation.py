"""Helpers behind AdaptiveISP Table 2: instance segmentation with the ISPs trained for detection.

The paper puts its detection-trained ISPs ("ISP trained on LOD with YOLOv3") in front of a YOLO-v5
segmentor and reports mask mAP (its Table 2, on raw COCO). Here the same ISPs (every shipped
training seed of HPO, attention-aware learning and AdaptiveISP, plus ReconfigISP and POS-ISP when
their files are shipped) are scored by the frozen embedded YOLO11n-seg
(:class:`ispbench.tasks.segmenter.FrozenSegmenter`) on the embedded low-light test split with
instance masks, or (``seg_data_root``) on prepared LIS. Every ISP is scored once and cached per
image (:mod:`.segmentation_intervals`), so the intervals over images and the paired bootstraps
re-score resamples without the segmenter.

Parameters the notebook adds to the AdaptiveISP group: ``seg_data_root`` / ``seg_dataset`` (the
segmentation test data; ``data_root`` / ``dataset`` stay the detection data the ISPs are retrained
on with ``retrain=True``, as the paper trains them on LOD) and ``segmenter_weights``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ispbench import papers
from ispbench.chapters import adaptiveisp as aisp
from ispbench.chapters import posisp as ps
from ispbench.chapters import segmentation_intervals as si
from ispbench.data.default_isp import default_isp
from ispbench.data.prepared import DatasetMissingError, prepare_command
from ispbench.data.segmentation_sets import REAL_SEGMENTATION_DATASETS, load_segmentation_split
from ispbench.data.synthetic_detection import CLASS_NAMES
from ispbench.detection_baselines.models import make_isp_fn as baseline_isp_fn
from ispbench.methods.adaptiveisp.inference import make_isp_fn as policy_isp_fn
from ispbench.tasks.segmentation_eval import evaluate_isp_segmentation
from ispbench.tasks.segmenter import DEFAULT_SEG_WEIGHTS, FrozenSegmenter

#: The only dataset of the paper's Table 2 in ``ispbench/papers/adaptiveisp.csv``.
PAPER_DATASET = "Raw COCO"
#: Our row names (the paper's method names; "Default ISP" and "POS-ISP" are our extra rows).
ROW_NAMES = {**aisp.PAPER_NAMES, "reconfigisp": "ReconfigISP", "posisp": "POS-ISP"}
#: The learned ISPs of Table 1, scored with every shipped training seed.
LEARNED = ("hpo", "attention", "adaptiveisp")
#: Scored when their shipped files exist (:func:`ispbench.chapters.posisp.shipped_files`).
OPTIONAL = ("reconfigisp", "posisp")
METRICS = si.METRICS
#: The split name the caches are filed under.
SPLIT = "test"

__all__ = ["LEARNED", "METRICS", "OPTIONAL", "PAPER_DATASET", "ROW_NAMES", "box_summary", "claims",
           "describe_segmentation_data", "load_segmentation_test", "load_segmenter", "mask_rows", "paper_metrics", "prepare_segmenter",
           "refusal_message", "table2_pairs", "table2_results", "verdict_table", "wide"]


def _real_data(params: Mapping[str, Any]) -> bool:
    return bool(params["seg_data_root"]) and params["seg_dataset"] != "embedded"


def refusal_message(params: Mapping[str, Any]) -> str:
    """Why the ``paper`` profile refuses the embedded segmentation data, and what to do instead."""
    what = "seg_dataset is 'embedded'" if params["seg_data_root"] else "seg_data_root is empty"
    real = params["seg_dataset"] if params["seg_dataset"] in REAL_SEGMENTATION_DATASETS else "lis_all"
    return (f"the {params['profile']} profile needs a real segmentation dataset but {what}: no fallback to the embedded "
            f"data. Prepare LIS once with `{prepare_command('lis', 'DIR')}` (DIR holding annotations/lis_coco_png_*.json, "
            "RAW-dark/<n>.CR2 and RAW-normal/<n>.CR2; see data_cards/lis.md) and pass seg_data_root=DIR with "
            f"seg_dataset={real!r} ('lis_all' = LIS-All, 'lis_dark' = LIS-Dark) and a COCO-trained segmenter_weights, "
            f"e.g. `ispbench run adaptiveisp/table2 --profile {params['profile']} -p seg_data_root DIR -p data_root LOD_DIR`.")


def load_segmenter(segmenter_weights: str = "", *, imgsz: int, device: str = "cpu",
                   allow_random: bool = False) -> aisp.Loaded:
    """The frozen segmenter: ``segmenter_weights`` or the shipped embedded YOLO11n-seg.

    With ``allow_random`` (smoke profile only) a missing file gives a randomly initialised YOLO11n-seg
    built from ultralytics' YAML, and the note says so.
    """
    path = Path(segmenter_weights) if segmenter_weights else DEFAULT_SEG_WEIGHTS
    if path.is_file() or not allow_random:
        seg = FrozenSegmenter(path if segmenter_weights else None, imgsz=imgsz, device=device)
        return aisp.Loaded(seg, "shipped" if not segmenter_weights else "given", path.name)
    torch.manual_seed(0)
    seg = FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=len(CLASS_NAMES), imgsz=imgsz, device=device,
                          names=list(CLASS_NAMES))
    return aisp.Loaded(seg, "untrained", f"RANDOM-INIT YOLO11n-seg: {path} is missing (smoke profile); mAP numbers are meaningless")


def prepare_segmenter(params: Mapping[str, Any], *, smoke: bool = False) -> aisp.Loaded:
    """The frozen segmenter of Table 2, checked against its data; prints where it came from.

    Args:
        params: the notebook's parameters (``segmenter_weights``, ``seg_data_root``, ``seg_dataset``,
            ``imgsz``, ``device``, ``profile``; with ``retrain`` the detection ones of
            :func:`ispbench.chapters.adaptiveisp.prepare_detector` too).
        smoke: smoke profile: a missing segmenter gives a random one (and the note says so).

    Raises:
        DatasetMissingError: the ``paper`` profile with an empty ``seg_data_root`` (or ``seg_dataset="embedded"``),
            or, with ``retrain=True``, an empty ``data_root`` (the ISPs are retrained on the detection data).
        ValueError: ``retrain=True`` with ``iterations <= 0``; real (COCO-80) data and a segmenter without 80 classes.
    """
    if aisp.requires_real_data(params) and not _real_data(params):
        raise DatasetMissingError(refusal_message(params))
    if params["retrain"]:
        det = aisp.prepare_detector(params, smoke=smoke)  # the detector the ISPs are retrained with
        print("retraining with detector:", det.note or "embedded YOLOv8n")
    seg = load_segmenter(params["segmenter_weights"], imgsz=params["imgsz"], device=params["device"], allow_random=smoke)
    if _real_data(params) and seg.model.nc != 80:
        raise ValueError(f"segmenter_weights: the {params['seg_dataset']!r} labels are COCO-80 class ids but the segmenter "
                         f"has {seg.model.nc} classes; pass a COCO-trained segmentation checkpoint (e.g. a local yolo11n-seg .pt)")
    print("segmenter:", seg.note, f"({seg.source})")
    return seg


def load_segmentation_test(params: Mapping[str, Any]) -> tuple[Any, str]:
    """The embedded low-light test split with instance masks, or (``seg_data_root``) prepared LIS.

    Returns:
        ``(dataset, name)``: the items (``image``, ``boxes``, ``labels``, ``masks``) and the data in words.

    Raises:
        DatasetMissingError: the ``paper`` profile without ``seg_data_root`` (:func:`refusal_message`).
    """
    real = _real_data(params)
    if aisp.requires_real_data(params) and not real:
        raise DatasetMissingError(refusal_message(params))
    test = load_segmentation_split(params["seg_data_root"] if real else "", params["seg_dataset"] if real else "embedded",
                                   "test", params["n_images"], params["imgsz"], light="low",
                                   require_real=aisp.requires_real_data(params))
    name = (f"{params['seg_dataset']} ({params['seg_data_root']})" if real
            else "embedded low-light test split with instance masks")
    return test, name


def _files(params: Mapping[str, Any], method: str) -> list[Path]:
    """The checkpoints scored for ``method``: a given AdaptiveISP ``checkpoint``, else the shipped seeds (none when retraining)."""
    if params["retrain"]:
        return []
    if method == "adaptiveisp" and params["checkpoint"]:
        return [Path(params["checkpoint"])]
    return aisp.shipped_seed_files(method) if method in LEARNED else ps.shipped_files(method)


def table2_results(params: Mapping[str, Any], dataset: Any, segmenter: Any, *, smoke: bool = False,
                   notes: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """``{row name: [segmentation result per training seed]}`` of Table 2 (:data:`ROW_NAMES`).

    Shipped models (the default): every shipped seed, each scored once and cached per image
    (:func:`.segmentation_intervals.segmentation_caches_for_file`); ReconfigISP and POS-ISP only when
    shipped. ``checkpoint``: that AdaptiveISP file. ``retrain=True`` (or, smoke only, missing files):
    the one model :func:`ispbench.chapters.adaptiveisp.load_models` gives per method (retrained on the
    detection data with the detection recipes), scored directly.
    """
    notes = {} if notes is None else notes
    kw = dict(split=SPLIT, imgsz=params["imgsz"], batch_size=params["batch_size"])
    results = {ROW_NAMES["default"]: [si.cached_segmentation("default_isp", default_isp, dataset, segmenter, **kw)]}
    notes[ROW_NAMES["default"]] = "the camera's static ISP (ispbench.data.default_isp)"
    for method in (*LEARNED, *OPTIONAL):
        files = _files(params, method)
        if files:
            results[ROW_NAMES[method]] = [si.segmentation_caches_for_file(f, dataset, segmenter, device=params["device"],
                                                                          loader=ps.isp_from_file, **kw) for f in files]
            notes[ROW_NAMES[method]] = f"{', '.join(f.name for f in files)} ({len(files)} training seed(s))"
        elif method in LEARNED:
            loaded = aisp.load_models(params, [method], smoke=smoke)[method]
            fn = policy_isp_fn(loaded.model) if method == "adaptiveisp" else baseline_isp_fn(loaded.model)
            results[ROW_NAMES[method]] = [evaluate_isp_segmentation(fn, dataset, segmenter, **kw)]
            notes[ROW_NAMES[method]] = aisp.source_note(loaded)
        else:
            notes[ROW_NAMES[method]] = ("not retrained by this notebook: row left out" if params["retrain"]
                                        else "no shipped checkpoint: row left out")
    return results


def mask_rows(results: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """Rows ``method, metric, value`` (mean mask mAP over seeds), ``median``, ``n_seeds``, ``ci_low``, ``ci_high``, ``unit``."""
    return pd.DataFrame([r for name, per_seed in results.items() for r in si.seed_mask_map_rows(name, per_seed)])


def paper_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the metrics the paper's Table 2 reports (mAP@0.5 and mAP@0.5:0.95; ours also has mAP@0.75)."""
    published = papers.load("AdaptiveISP")
    return rows[rows.metric.isin(set(published.loc[published.table == "2", "metric"]))].reset_index(drop=True)


def wide(rows: pd.DataFrame) -> pd.DataFrame:
    """``method x metric`` of ``value`` with the interval beside it (``"12.34 [11.0, 13.5]"``), rows in table order."""
    cells = rows.assign(cell=[f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in zip(rows.value, rows.ci_low, rows.ci_high,
                                                                                 strict=True)])
    table = cells.pivot(index="method", columns="metric", values="cell")[list(METRICS)]
    return table.reindex(list(dict.fromkeys(rows.method))).rename_axis(columns=None)


def box_summary(results: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """Box mAP (percent) of the segmenter's boxes per row: mean over seeds, for reference beside the mask mAP."""
    return pd.DataFrame({m: [round(float(np.mean([r["box"][m] for r in per_seed])), 2) for per_seed in results.values()]
                         for m in METRICS}, index=pd.Index(list(results), name="method"))


def table2_pairs(results: Mapping[str, Sequence[dict]]) -> list[tuple[str, str]]:
    """The comparisons of Table 2 whose rows exist: AdaptiveISP against HPO (the paper's claim), attention,
    the default ISP and ReconfigISP; POS-ISP against AdaptiveISP."""
    a = ROW_NAMES["adaptiveisp"]
    pairs = [(a, ROW_NAMES[m]) for m in ("hpo", "attention", "default", "reconfigisp")] + [(ROW_NAMES["posisp"], a)]
    return [(x, y) for x, y in pairs if x in results and y in results]


def claims(results: Mapping[str, Sequence[dict]], pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Paired bootstrap rows on mask mAP (``comparison, metric, difference, ci_low, ci_high, P(A > B), seeds, verdict``)."""
    return pd.DataFrame([r for a, b in pairs for r in si.paired_mask_rows(a, results[a], b, results[b])])


def verdict_table(claims: pd.DataFrame, metric: str = "mAP@0.5:0.95") -> pd.DataFrame:
    """One line per comparison on ``metric``: ``difference [95% CI]`` and the verdict."""
    main = claims[claims.metric == metric]
    return pd.DataFrame({f"A - B (mask {metric})": main.comparison,
                         "difference [95% CI]": [f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                                                 for d, lo, hi in zip(main.difference, main.ci_low, main.ci_high, strict=True)],
                         "verdict": main.verdict}).set_index(f"A - B (mask {metric})")


def describe_segmentation_data(data_name: str, n_images: int, segmenter: aisp.Loaded, *, imgsz: int,
                               smoke: bool = False) -> str:
    """The ``data`` sentence of the Table 2 result file: data, size, segmenter (and the smoke warning)."""
    return (f"{data_name} ({n_images} images), {imgsz} px, segmenter: {segmenter.note or 'embedded YOLO11n-seg'}; "
            "ISPs trained for detection" + (" [SMOKE: tiny run, numbers meaningless]" if smoke else ""))
