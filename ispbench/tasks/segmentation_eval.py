"""Score an ISP with a frozen instance segmenter over a dataset with instance masks (POS-ISP, AdaptiveISP Table 2).

:func:`evaluate_isp_segmentation` is the segmentation counterpart of
:func:`ispbench.tasks.detection_eval.evaluate_isp`, with the same order of operations and
conventions: each linear image is resized so its longer side is ``imgsz``, the ISP maps it to
sRGB, the output is letterboxed (grey 114/255 padding, ultralytics' validation canvas with
``rect=True``) and the :class:`~ispbench.tasks.segmenter.FrozenSegmenter` predicts boxes and masks.
Predicted masks (ultralytics' ``process_mask`` on the canvas) are cut out of the padding and
resized to the item's original pixels, where they are compared with the item's ground-truth
masks (:mod:`ispbench.tasks.mask_eval`; full resolution, where ultralytics' validator uses a
quarter of it). NaN/Inf in a dataset image or an ISP output are refused (``ValueError`` naming
the items). The embedded segmenter sees images at 160 px (192 x 192 canvas).

Dataset items: ``image`` (3, H, W) linear camera RGB, ``boxes`` (N, 4) normalised ``cx, cy, w, h``,
``labels`` (N,), ``masks`` (N, H, W) bool (``load_split(..., with_masks=True)``).

Example:
    >>> ds = synthetic_detection.load_split("val", "low", with_masks=True)   # doctest: +SKIP
    >>> res = evaluate_isp_segmentation(my_isp, ds, FrozenSegmenter())       # doctest: +SKIP
    >>> res["mAP@0.5:0.95"], res["box"]["mAP@0.5:0.95"]                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ispbench.ops.geometry import LetterboxLayout, boxes_from_letterbox, letterbox, resize_image
from ispbench.tasks.detection_eval import PAD_VALUE, _isp_outputs, _targets_on_canvas
from ispbench.tasks.map_eval import AUTHORS_EVAL, COCO_IOU_THRESHOLDS, as_percent, evaluate_map
from ispbench.tasks.mask_eval import MaskEvaluator, mask_iou
from ispbench.tasks.segmenter import FrozenSegmenter

__all__ = ["evaluate_isp_segmentation", "masks_to_letterbox"]


def masks_to_letterbox(masks: torch.Tensor, layout: LetterboxLayout) -> torch.Tensor:
    """``(N, H, W)`` bool masks of an image -> ``(N, Hc, Wc)`` bool on its letterbox canvas (area resize, ``>= 0.5``).

    Example:
        >>> _, layout = letterbox(torch.zeros(1, 3, 8, 16), 32, pad_value=0.0)
        >>> masks_to_letterbox(torch.ones(1, 8, 16, dtype=torch.bool), layout).sum().item()
        512
    """
    (nh, nw), (top, left), (ch, cw) = layout.resized, layout.pad, layout.canvas
    m = masks.float()
    if m.shape[-2:] != (nh, nw):
        m = resize_image(m[None], (nh, nw), "area")[0] if len(m) else m.new_zeros(0, nh, nw)
    return F.pad(m, (left, cw - nw - left, top, ch - nh - top)).ge(0.5)


def _masks_from_letterbox(masks: torch.Tensor, layout: LetterboxLayout) -> torch.Tensor:
    """``(n, Hc, Wc)`` bool canvas masks -> ``(n, H, W)`` bool at ``layout.orig`` (the padding cut off)."""
    (nh, nw), (top, left) = layout.resized, layout.pad
    m = masks[:, top : top + nh, left : left + nw]
    if tuple(m.shape[-2:]) != tuple(layout.orig):
        m = F.interpolate(m[None].float(), size=tuple(layout.orig), mode="bilinear", align_corners=False)[0].ge(0.5)
    return m


def _item_masks(dataset: Any, index: int, n: int, size: tuple[int, int]) -> torch.Tensor:
    item = dataset[index]
    if "masks" not in item:
        raise ValueError(f"dataset[{index}]: no 'masks' (N, H, W); open the embedded data with "
                         "load_split(..., with_masks=True) (EmbeddedDetection(..., with_masks=True))")
    masks = torch.as_tensor(item["masks"]).bool()
    if masks.ndim != 3 or len(masks) != n or tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(f"dataset[{index}]['masks']: expected ({n}, {size[0]}, {size[1]}) (one per box, the image's size), "
                         f"got {tuple(masks.shape)}")
    return masks


def evaluate_isp_segmentation(
    isp_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    dataset: Any,
    segmenter: FrozenSegmenter,
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
    """Run an ISP over a dataset with instance masks and score its outputs with a frozen segmenter.

    Args:
        isp_fn: linear ``(B, 3, H, W)`` -> sRGB ``(B, 3, H, W)`` in [0, 1]; ``None`` scores the
            inputs as they are. Called under ``torch.no_grad``.
        dataset: sequence of dicts ``image``, ``boxes``, ``labels``, ``masks`` (see the module docstring).
        segmenter: the frozen segmenter.
        batch_size: images per ISP/segmenter call (only changes speed).
        imgsz: evaluation size (default ``segmenter.imgsz``).
        conf, iou, max_det: NMS settings (authors: 0.001, 0.6, 300).
        method: AP definition, ``"ultralytics"`` (the authors') or ``"coco101"`` (pycocotools).
        iou_thresholds: default 0.5:0.05:0.95.
        rect: ultralytics-val canvas (default) or an ``imgsz`` square.

    Returns:
        The mask mAP dict of :func:`ispbench.tasks.mask_eval.evaluate_mask_map` (``mAP@0.5``,
        ``mAP@0.75``, ``mAP@0.5:0.95`` in percent, ``per_class`` ...), plus ``box``: the box mAP dict
        (:func:`ispbench.tasks.map_eval.evaluate_map`, percent) of the same predictions;
        ``per_image_loss`` (list: the segmenter's scaled loss of each output) and ``mean_loss``;
        ``predictions`` (per image ``(n, 6)`` rows ``x1, y1, x2, y2, score, class`` in original
        pixels), ``mask_ious`` (per image ``(n, m)`` mask IoU of each prediction with each
        ground-truth object; 0 for classes the image has no object of), ``ground_truth`` (per image
        ``(m, 5)`` class, cx, cy, w, h) and ``image_sizes``: with
        :func:`~ispbench.tasks.map_eval.evaluate_map_from_iou` they give the mask mAP of any resample of images.

    Raises:
        ValueError: bad items (e.g. no ``masks``) or settings; NaN/Inf in a dataset image or an ISP output.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    imgsz = int(imgsz or segmenter.imgsz)
    if imgsz % segmenter.stride:
        raise ValueError(f"imgsz: must be a multiple of the segmenter stride {segmenter.stride}, got {imgsz}")
    outputs = _isp_outputs(isp_fn, dataset, batch_size=batch_size, imgsz=imgsz, device=segmenter.device)
    prepared = []  # (canvas image, canvas targets (m, 4), labels, canvas masks, layout with the original size)
    gts, sizes, gt_masks = [], [], []
    for i, (y, boxes, labels, orig) in enumerate(outputs):
        masks = _item_masks(dataset, i, len(labels), orig)
        lb, layout = letterbox(y[None], imgsz, pad_value=PAD_VALUE, rect=rect, stride=segmenter.stride)
        prepared.append((lb[0], _targets_on_canvas(boxes, layout), labels.float(), masks_to_letterbox(masks, layout),
                         layout._replace(orig=tuple(orig))))  # predictions map back to the item's own pixels
        gts.append(torch.cat([labels.float()[:, None], boxes], 1).numpy())
        sizes.append(tuple(orig))
        gt_masks.append(masks)
    evaluator = MaskEvaluator(iou_thresholds, method=method, names=segmenter.names)
    preds: list[np.ndarray] = []
    ious: list[np.ndarray] = []
    losses: list[float] = []
    start = 0
    while start < len(prepared):
        stop = start + 1
        while stop < len(prepared) and stop - start < batch_size and prepared[stop][0].shape == prepared[start][0].shape:
            stop += 1
        chunk = prepared[start:stop]
        x = torch.stack([c[0] for c in chunk]).to(segmenter.device)
        targets = torch.cat([torch.cat([torch.full((len(t), 1), float(k)), lab[:, None], t], 1)
                             for k, (_, t, lab, _, _) in enumerate(chunk)])
        canvas_masks = torch.cat([c[3] for c in chunk])
        with torch.no_grad():
            outputs = segmenter.raw_forward(x)  # one forward for the loss and the detections
            losses.extend(segmenter.per_image_loss(x, targets, canvas_masks, outputs=outputs).cpu().tolist())
            detections, proto = segmenter.detect(x, conf=conf, iou=iou, max_det=max_det, outputs=outputs)
        for k, (d, (_, _, lab, _, layout)) in enumerate(zip(detections, chunk, strict=True)):
            i = start + k
            rows = boxes_from_letterbox(d[:, :6].cpu(), layout).numpy()
            g_cls = lab.long().numpy()
            iou_m = np.zeros((len(d), len(g_cls)))
            keep = np.flatnonzero(np.isin(rows[:, 5].astype(np.int64), g_cls))  # other classes never match
            if len(keep) and len(g_cls):
                canvas = segmenter.masks_of(proto[k], d[torch.from_numpy(keep)], tuple(x.shape[-2:]))
                iou_m[keep] = mask_iou(_masks_from_letterbox(canvas, layout).cpu().numpy(), gt_masks[i].numpy())
            evaluator.add_iou(rows[:, 4], rows[:, 5], g_cls, iou_m)
            preds.append(rows)
            ious.append(iou_m)
        start = stop
    res = evaluator.compute()
    res["box"] = as_percent(evaluate_map(preds, gts, sizes, iou_thresholds, method=method, names=segmenter.names))
    res["per_image_loss"] = losses
    res["mean_loss"] = float(np.mean(losses)) if losses else float("nan")
    res["predictions"] = preds
    res["mask_ious"] = ious
    res["ground_truth"], res["image_sizes"] = gts, sizes
    return res
