"""Score an ISP with a frozen detector over a detection dataset (AdaptiveISP Tables 1, 3, 5).

:func:`evaluate_isp` runs an ISP function over a detection dataset and scores its outputs with a
:class:`~ispbench.tasks.detector.FrozenDetector` and :func:`ispbench.tasks.map_eval.evaluate_map`
(default ``method="ultralytics"``, the authors' AP; the notebooks use this default);
:func:`cross_detector_eval` scores the same outputs with several detectors. Outputs are
letterboxed with :func:`ispbench.ops.geometry.letterbox` and ultralytics' grey padding
:data:`PAD_VALUE`; predictions are mapped back to the original pixels. NaN/Inf in a dataset image or
in an ISP output are refused with a ``ValueError`` naming the output and the dataset item indices
(with their counts), not scored.

Example:
    >>> det = FrozenDetector()                                   # doctest: +SKIP
    >>> res = evaluate_isp(my_isp, dataset, det)                 # doctest: +SKIP
    >>> res["mAP@0.5"]                                           # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ispbench.ops.checks import require_finite
from ispbench.ops.geometry import LetterboxLayout, boxes_from_letterbox, boxes_to_letterbox, letterbox, resize_longest
from ispbench.tasks.detector import FrozenDetector
from ispbench.tasks.map_eval import AUTHORS_EVAL, COCO_IOU_THRESHOLDS, as_percent, evaluate_map

#: Letterbox padding value of the detection evaluation (ultralytics pads with grey 114/255).
PAD_VALUE = 114.0 / 255.0

__all__ = [
    "PAD_VALUE",
    "collate_letterboxed",
    "cross_detector_eval",
    "evaluate_isp",
]


def _targets_on_canvas(boxes: torch.Tensor, layout: LetterboxLayout) -> torch.Tensor:
    """Normalised ``cx, cy, w, h`` ``(N, 4)`` of the image -> float32, normalised to the canvas, in [0, 1]."""
    return boxes_to_letterbox(boxes.float(), layout).clamp(0, 1)


def collate_letterboxed(
    items: Sequence[Mapping[str, Any]], imgsz: int, stride: int = 32, *, rect: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Letterbox dataset items into a detector batch ``(images (B, 3, Hc, Wc), targets (N, 6))``.

    Each item's image is resized (longer side ``imgsz``) and padded (square, or the
    ultralytics-val canvas with ``rect=True``, which then needs items of one aspect ratio);
    its boxes are mapped onto the canvas. ``targets`` rows: ``batch_index, class, cx, cy, w, h``
    normalised to the canvas, ready for :meth:`~ispbench.tasks.detector.FrozenDetector.per_image_loss`.

    Example:
        >>> x, t = collate_letterboxed([ds[0], ds[1]], 512)      # doctest: +SKIP
    """
    imgs, rows = [], []
    for k, item in enumerate(items):
        img, boxes, labels = _check_item(item, k)
        lb, layout = letterbox(img[None], imgsz, pad_value=PAD_VALUE, rect=rect, stride=stride)
        t = _targets_on_canvas(boxes, layout)
        imgs.append(lb[0])
        rows.append(torch.cat([torch.full((len(t), 1), float(k)), labels.float()[:, None], t], 1))
    return torch.stack(imgs), torch.cat(rows) if rows else torch.zeros(0, 6)


def _check_item(item: Any, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(item, Mapping) or not {"image", "boxes", "labels"} <= set(item):
        raise ValueError(f"dataset[{i}]: expected a dict with 'image' (3, H, W), 'boxes' (N, 4), 'labels' (N,)")
    img = torch.as_tensor(item["image"])
    boxes = torch.as_tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(item["labels"]).reshape(-1)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"dataset[{i}]['image']: expected (3, H, W), got {tuple(img.shape)}")
    if len(boxes) != len(labels):
        raise ValueError(f"dataset[{i}]: {len(boxes)} boxes but {len(labels)} labels")
    return img.float(), boxes, labels


def _batches(dataset: Any, batch_size: int):
    """Consecutive items of the same image shape, up to ``batch_size`` at a time: (indices, items)."""
    idx, items, shape = [], [], None
    for i in range(len(dataset)):
        img, boxes, labels = _check_item(dataset[i], i)
        if items and (img.shape != shape or len(items) == batch_size):
            yield idx, items
            idx, items = [], []
        idx.append(i)
        items.append((img, boxes, labels))
        shape = img.shape
    if items:
        yield idx, items


def _refuse_nonfinite(what: str, y: torch.Tensor, indices: Sequence[int]) -> None:
    """Refuse NaN/Inf in ``y`` ``(B, ...)``, whose rows are dataset items ``indices``; the message
    names ``what`` and each offending item with its count."""
    try:
        require_finite(what, y)
    except ValueError as err:
        per_item = (~torch.isfinite(y.detach())).flatten(1).sum(1).tolist()
        bad = {int(indices[k]): int(n) for k, n in enumerate(per_item) if n}
        raise ValueError(f"{err}; in dataset items {sorted(bad)} (index: count {bad})") from None


def _isp_outputs(
    isp_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    dataset: Any,
    *,
    batch_size: int,
    imgsz: int,
    device: torch.device,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """Run the ISP on every item (resized so the longer side is ``imgsz``).

    Returns a list of ``(srgb (3, h, w) on CPU, boxes, labels, original (H, W))``.
    """
    out = []
    for idx, items in _batches(dataset, batch_size):
        x = torch.stack([it[0] for it in items]).to(device)
        _refuse_nonfinite("dataset image (the ISP input)", x, idx)
        orig = tuple(x.shape[-2:])
        x = resize_longest(x, imgsz)
        with torch.no_grad():
            y = isp_fn(x) if isp_fn is not None else x
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"isp_fn: expected an output of shape {tuple(x.shape)} (same as its input), got {got}")
        if isp_fn is not None:
            _refuse_nonfinite(f"isp_fn output ({getattr(isp_fn, '__name__', type(isp_fn).__name__)})", y, idx)
        for k, (_, boxes, labels) in enumerate(items):
            out.append((y[k].detach().float().cpu(), boxes, labels, orig))
    return out


def _score(
    outputs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]],
    detector: FrozenDetector,
    *,
    batch_size: int,
    imgsz: int,
    conf: float,
    iou: float,
    max_det: int,
    method: str,
    iou_thresholds: Any,
    rect: bool,
) -> dict[str, Any]:
    """Letterbox sRGB outputs (longer side ``imgsz``), compute per-image losses, predictions, mAP."""
    if imgsz % detector.stride:
        raise ValueError(f"imgsz: must be a multiple of the detector stride {detector.stride}, got {imgsz}")
    # Letterbox every output, then batch consecutive outputs with the same canvas.
    prepared = []
    gts, sizes = [], []
    for y, boxes, labels, orig in outputs:  # finite: checked where the outputs were made
        lb, layout = letterbox(y[None], imgsz, pad_value=PAD_VALUE, rect=rect, stride=detector.stride)
        t = _targets_on_canvas(boxes, layout)
        # predictions map back to the original image, not to the resized ISP output
        prepared.append((lb[0], t, labels.float(), layout._replace(orig=orig)))
        gts.append(torch.cat([labels.float()[:, None], boxes], 1).numpy())
        sizes.append(orig)
    preds: list[np.ndarray] = []
    losses: list[float] = []
    start = 0
    while start < len(prepared):
        stop = start + 1
        while (
            stop < len(prepared)
            and stop - start < batch_size
            and prepared[stop][0].shape == prepared[start][0].shape
        ):
            stop += 1
        chunk = prepared[start:stop]
        x = torch.stack([c[0] for c in chunk]).to(detector.device)
        rows = [
            torch.cat([torch.full((len(t), 1), float(k)), lab[:, None], t], 1)
            for k, (_, t, lab, _) in enumerate(chunk)
            if len(t)
        ]
        targets = torch.cat(rows) if rows else torch.zeros(0, 6)
        with torch.no_grad():
            outputs = detector.raw_forward(x)  # one forward for the loss and the detections
            losses.extend(detector.per_image_loss(x, targets, outputs=outputs).cpu().tolist())
            detections = detector.predict(x, conf=conf, iou=iou, max_det=max_det, outputs=outputs)
        for d, (_, _, _, meta) in zip(detections, chunk, strict=True):
            preds.append(boxes_from_letterbox(d.cpu(), meta).numpy())
        start = stop
    res = as_percent(evaluate_map(preds, gts, sizes, iou_thresholds, method=method, names=detector.names))
    res["per_image_loss"] = losses
    res["mean_loss"] = float(np.mean(losses)) if losses else float("nan")
    res["predictions"] = preds
    # what the predictions were matched against, so that mAP can be recomputed on resampled images
    res["ground_truth"], res["image_sizes"] = gts, sizes
    return res


def evaluate_isp(
    isp_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    dataset: Any,
    detector: FrozenDetector,
    *,
    batch_size: int = 8,
    imgsz: int | None = None,
    conf: float = AUTHORS_EVAL["conf"],
    iou: float = AUTHORS_EVAL["iou"],
    max_det: int = 300,
    method: str = "ultralytics",
    iou_thresholds: Any = COCO_IOU_THRESHOLDS,
    rect: bool = True,
) -> dict[str, Any]:
    """Run an ISP over a detection dataset and score its outputs with a frozen detector.

    Order (as in the authors' code, which resizes before the ISP): each linear image is
    resized so its longer side is ``imgsz``, the ISP runs on that, then the sRGB output is
    letterboxed (centred, grey 114/255 padding). With ``rect=True`` (default) the canvas is
    ultralytics' validation canvas (:func:`~ispbench.ops.geometry.rect_canvas`: each side rounded up to a multiple of
    the stride after adding half a stride, as the authors' YOLOv3 ``test.py`` and
    ``yolo val`` do); ``rect=False`` uses an ``imgsz x imgsz`` square. Predictions are
    mapped back to the original pixel grid and scored against the original boxes.
    Consecutive outputs with the same canvas are batched (detections do not depend on the
    batch: BatchNorm is frozen), so ``batch_size`` only changes speed.

    Args:
        isp_fn: linear ``(B, 3, H, W)`` -> sRGB ``(B, 3, H, W)`` in [0, 1]; ``None`` scores the
            input images as they are. Called under ``torch.no_grad``. An output with NaN/Inf
            raises ``ValueError`` naming ``isp_fn output`` and the dataset items (index: count).
        dataset: sequence of dicts ``image`` (3, H, W), ``boxes`` (N, 4) normalised
            ``cx, cy, w, h``, ``labels`` (N,).
        detector: the frozen detector.
        batch_size: images per ISP/detector call (consecutive images of equal size are batched).
        imgsz: evaluation size (default ``detector.imgsz``; authors: 512).
        conf, iou, max_det: NMS settings (authors: 0.001, 0.6, 300).
        method: AP definition, ``"ultralytics"`` (authors') or ``"coco101"``.
        iou_thresholds: default 0.5:0.05:0.95.
        rect: ultralytics-val / authors' canvas (default) or a square (see above).

    Returns:
        :func:`~ispbench.tasks.map_eval.evaluate_map`'s dict (``mAP@0.5``, ``mAP@0.75``, ``mAP@0.5:0.95``, ``per_class``
        ...) plus ``per_image_loss`` (list, the detector's loss of each output),
        ``mean_loss``, ``predictions`` (per image, original pixels) and what they were matched against, ``ground_truth`` (per image ``(m, 5)`` class, cx, cy, w, h normalised) and ``image_sizes`` (``(H, W)``).

    Raises:
        ValueError: bad items or settings; NaN/Inf in a dataset image or an ISP output (the
            message names which and lists the dataset item indices with their counts).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    imgsz = int(imgsz or detector.imgsz)
    outputs = _isp_outputs(isp_fn, dataset, batch_size=batch_size, imgsz=imgsz, device=detector.device)
    return _score(
        outputs,
        detector,
        batch_size=batch_size,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        max_det=max_det,
        method=method,
        iou_thresholds=iou_thresholds,
        rect=rect,
    )


def cross_detector_eval(
    isp_outputs_or_fn: Callable[[torch.Tensor], torch.Tensor] | Sequence[torch.Tensor] | None,
    dataset: Any,
    detectors: Mapping[str, FrozenDetector],
    *,
    batch_size: int = 8,
    imgsz: int | None = None,
    conf: float = AUTHORS_EVAL["conf"],
    iou: float = AUTHORS_EVAL["iou"],
    max_det: int = 300,
    method: str = "ultralytics",
    rect: bool = True,
) -> dict[str, dict[str, Any]]:
    """Score the *same* ISP outputs with several detectors (AdaptiveISP Table 3).

    Args:
        isp_outputs_or_fn: an ISP function (run once, at ``imgsz``), ``None`` (the inputs
            themselves), or precomputed sRGB outputs: one ``(3, h, w)`` tensor per dataset item,
            with the aspect ratio of the item's image.
        dataset: as in :func:`evaluate_isp` (its boxes and labels are the ground truth).
        detectors: name -> :class:`~ispbench.tasks.detector.FrozenDetector`. Their class indices must share one label map.
        batch_size, imgsz, conf, iou, max_det, method, rect: as in :func:`evaluate_isp`
            (``imgsz`` default: the first detector's).

    Returns:
        name -> :func:`evaluate_isp`-style result dict.
    """
    if not detectors:
        raise ValueError("detectors: expected at least one name -> FrozenDetector")
    first = next(iter(detectors.values()))
    imgsz = int(imgsz or first.imgsz)
    if callable(isp_outputs_or_fn) or isp_outputs_or_fn is None:
        outputs = _isp_outputs(isp_outputs_or_fn, dataset, batch_size=batch_size, imgsz=imgsz, device=first.device)
    else:
        given = list(isp_outputs_or_fn)
        if len(given) != len(dataset):
            raise ValueError(f"isp_outputs_or_fn: {len(given)} outputs for {len(dataset)} dataset items")
        outputs = []
        for i, y in enumerate(given):
            img, boxes, labels = _check_item(dataset[i], i)
            y = torch.as_tensor(y).float().cpu()
            if y.ndim != 3 or y.shape[0] != 3:
                raise ValueError(f"isp_outputs_or_fn[{i}]: expected (3, h, w), got {tuple(y.shape)}")
            _refuse_nonfinite(f"isp_outputs_or_fn[{i}] (precomputed ISP output)", y[None], [i])
            ih, iw = img.shape[-2:]
            if not math.isclose(y.shape[1] / y.shape[2], ih / iw, rel_tol=0.02):
                raise ValueError(
                    f"isp_outputs_or_fn[{i}]: aspect {y.shape[1]}x{y.shape[2]} differs from the image's {ih}x{iw}"
                )
            outputs.append((resize_longest(y[None], imgsz)[0], boxes, labels, (ih, iw)))
    results = {}
    for name, det in detectors.items():
        ncls = max((int(o[2].max()) + 1 for o in outputs if len(o[2])), default=0)
        if ncls > det.nc:
            raise ValueError(f"detectors[{name!r}]: has {det.nc} classes but the dataset uses class {ncls - 1}")
        results[name] = _score(
            outputs,
            det,
            batch_size=batch_size,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            method=method,
            iou_thresholds=COCO_IOU_THRESHOLDS,
            rect=rect,
        )
    return results
