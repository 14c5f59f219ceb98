"""A frozen ultralytics detector as the task that scores an ISP output (AdaptiveISP, POS-ISP).

:class:`FrozenDetector` wraps any ultralytics detection checkpoint (YOLOv3u, YOLOv8, YOLO11,
end-to-end YOLO26 ...) or a model built from a YAML file. Its weights are frozen and its
BatchNorm layers stay in eval mode (even when a parent module calls ``.train()``), but the
graph stays open to the *input* images, so an ISP in front of it can be trained through it.

Per-image loss (the AdaptiveISP reward is ``clip(L_in) - clip(L_out)`` with ``L`` this loss)
    One batched forward pass of the detector in eval mode. In eval mode ultralytics' ``Detect``
    head returns ``(decoded, raw)``, where ``raw`` is the same dict of raw head maps
    (``boxes``: ``(B, 4*reg_max, A)`` DFL logits, ``scores``: ``(B, nc, A)`` class logits,
    ``feats``: the pyramid feature maps) that the training-mode forward returns; the loss is
    computed from ``raw``, so BatchNorm uses its running statistics and they are never updated.
    The detector's own criterion (``model.init_criterion()``: ``v8DetectionLoss`` for
    v3u/v5u/v8/v11 heads; ``E2ELoss`` for end-to-end heads (YOLOv10, YOLO26): 0.8 x one-to-many
    + 0.2 x one-to-one, its weights at the start of training) is then called once per image on
    that image's slice of ``raw`` and its own targets (``mode="loop"``). This is exactly the
    loss of the image alone: ultralytics' criterion normalises the box and class terms by the
    sum of the assigned target scores *over the whole batch*, so one batched call would not
    split into per-image terms. For ``v8DetectionLoss`` heads (v3u/v5u/v8/v11, the default)
    ``mode="batched"`` gives the same numbers faster: the task-aligned assignment is run once
    for the batch (it is independent per image) and only the final sums and normalisations are
    taken per image (``_batched_components``); ``tests/tasks/test_detection.py`` checks it
    against the loop and against single-image calls. Targets need not be sorted by image.

    Terms, each multiplied by the checkpoint's gains (``box`` 7.5, ``cls`` 0.5, ``dfl`` 1.5 by
    default) and summed: ``box`` = CIoU loss of the foreground anchors chosen by the
    task-aligned assigner, weighted by their target scores; ``cls`` = binary cross-entropy of
    all anchors' class logits against the assigner's soft targets (this term also carries the
    "objectness": background anchors are pushed to 0); ``dfl`` = distribution focal loss of
    the box-side distributions (heads with ``reg_max == 1`` use an L1 side loss in its place).
    All divided by ``max(1, sum of target scores)`` of the image. An image with no object has
    only the ``cls`` term (all anchors against 0). Note the scale: these losses are often
    several units per image (gains 7.5/0.5/1.5), while the authors' reward clips their YOLOv3
    loss to [0, 1]; the reward's clipping range must be chosen for the detector in use.

    Cost (yolov8n, batch 8, CPU-seconds on one thread, fused BN): forward with grad 0.18 s at
    256 px / 0.82 s at 512 px (no-grad forward 0.17 / 0.68 s); the per-image reduction adds
    6 / 15 ms batched (18 / 32 ms looped); loss + backward to the images 0.32 / 1.31 s.

Prediction: eval-mode forward, then ultralytics' ``non_max_suppression`` (multi-label, as its
validator does), boxes ``x1, y1, x2, y2`` in pixels of the input.

Evaluation: :func:`evaluate_isp` and :func:`cross_detector_eval` run an ISP function over a
detection dataset and score it with :func:`ispbench.tasks.map_eval.evaluate_map` (default
``method="ultralytics"``, the authors' AP; the notebooks use this default).

Example:
    >>> det = FrozenDetector(model_yaml="yolov8n.yaml", nc=3, imgsz=64)   # doctest: +SKIP
    >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)                    # doctest: +SKIP
    >>> t = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3]])                      # doctest: +SKIP
    >>> det.per_image_loss(x, t).shape                                      # doctest: +SKIP
    torch.Size([2])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ispbench.offline import configure_ultralytics
from ispbench.paths import WEIGHTS_DIR
from ispbench.tasks.map_eval import AUTHORS_EVAL, COCO_IOU_THRESHOLDS, DetectionEvaluator, evaluate_map

configure_ultralytics()

#: The embedded detector shipped with the package (made by ``ispbench train detector``).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "embedded_yolo.pt"
#: Letterbox padding value (ultralytics pads with grey 114/255).
PAD_VALUE = 114.0 / 255.0

__all__ = [
    "AUTHORS_EVAL",
    "DEFAULT_WEIGHTS",
    "DetectionEvaluator",
    "FrozenDetector",
    "collate_letterboxed",
    "cross_detector_eval",
    "evaluate_isp",
    "evaluate_map",
    "letterbox",
    "rect_canvas",
    "resize_longest",
]


def _namespace(args: Mapping[str, Any]):
    from ultralytics.utils import IterableSimpleNamespace

    return IterableSimpleNamespace(**dict(args))


def _fuse_conv_bn(model: nn.Module) -> None:
    """Fold eval-mode BatchNorm into the preceding convolution of ultralytics ``Conv``/``DWConv``.

    Numerically the same function as eval-mode BN (to float rounding) and ~20-25 % faster on
    CPU. Only the conv blocks are touched: the detection head's branches stay as they are
    (``DetectionModel.fuse`` would also drop the one-to-many branch of end-to-end heads, which the
    loss needs).
    """
    from ultralytics.nn.modules import Conv, DWConv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    for m in model.modules():
        if isinstance(m, (Conv, DWConv)) and hasattr(m, "bn") and isinstance(m.bn, nn.BatchNorm2d):
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            delattr(m, "bn")
            m.forward = m.forward_fuse


def _slice_raw(raw: Any, b: int) -> Any:
    """The ``b``-th image of a (possibly nested) dict/list of batched head outputs, batch dim kept."""
    if isinstance(raw, torch.Tensor):
        return raw[b : b + 1]
    if isinstance(raw, dict):
        return {k: _slice_raw(v, b) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return type(raw)(_slice_raw(v, b) for v in raw)
    return raw


class FrozenDetector(nn.Module):
    """A frozen ultralytics detector: per-image differentiable loss, predictions, class names.

    Args:
        weights: an ultralytics detection checkpoint (``.pt``). Default: the embedded detector
            ``ispbench/weights/embedded_yolo.pt``. Never a bare name such as ``yolov8n.pt``
            unless that file exists (ultralytics would download it; ispbench refuses).
        model_yaml: build a randomly initialised model from this ultralytics YAML instead
            (``"yolov8n.yaml"``, ``"yolov3-tinyu.yaml"``, ...), for tests.
        nc: number of classes for ``model_yaml``.
        imgsz: default evaluation size of :func:`evaluate_isp` (longer side after resizing;
            authors: 512). The embedded detector was trained at ``train_args["imgsz"]``.
            ``per_image_loss`` and ``predict`` take any size that is a multiple of the stride.
        device: torch device.
        fuse: fold BatchNorm into convolutions (same function, faster). ``False`` keeps the BN
            layers (in eval mode).
        names: class names for a ``model_yaml`` model (default ``class0``, ``class1`` ...).

    Attributes:
        model: the ultralytics ``DetectionModel`` (eval mode, ``requires_grad=False``).
        names: ``dict[int, str]`` class names.
        nc: number of classes. ``stride``: the largest stride (32). ``weights``: the file or None.
        train_args: the checkpoint's training arguments (``imgsz``, loss gains ...), ``{}`` for YAML.
        loss_names: names of the loss terms (``box_loss``, ``cls_loss``, ``dfl_loss``).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        model_yaml: str | Path | None = None,
        nc: int | None = None,
        imgsz: int = 512,
        device: str | torch.device = "cpu",
        fuse: bool = True,
        names: Mapping[int, str] | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        from ultralytics.cfg import DEFAULT_CFG_DICT

        if weights is not None and model_yaml is not None:
            raise ValueError("FrozenDetector: give either weights= or model_yaml=, not both")
        if not isinstance(imgsz, (int, np.integer)) or imgsz <= 0:
            raise ValueError(f"imgsz: expected a positive int, got {imgsz!r}")
        device = torch.device(device)
        if model_yaml is not None:
            from ultralytics.nn.tasks import DetectionModel

            if nc is not None and (not isinstance(nc, (int, np.integer)) or nc < 1):
                raise ValueError(f"nc: expected a positive int, got {nc!r}")
            model = DetectionModel(str(model_yaml), nc=nc, verbose=False)
            train_args: dict[str, Any] = {}
            self.weights = None
        else:
            path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
            if not path.is_file():
                if weights is None:
                    raise FileNotFoundError(
                        f"The embedded detector weights are missing: {path}. Create them with "
                        "`ispbench train detector` (trains a small YOLOv8n on the embedded synthetic "
                        "dataset and writes that file), or pass weights= an existing ultralytics .pt file."
                    )
                raise FileNotFoundError(
                    f"Detector weights not found: {path}. Pass the path of an existing ultralytics "
                    "detection checkpoint (.pt); ispbench never downloads weights by name. For the "
                    "embedded detector run `ispbench train detector`."
                )
            if path.suffix != ".pt":
                raise ValueError(f"weights: expected an ultralytics .pt checkpoint, got {path}")
            from ultralytics.nn.tasks import load_checkpoint

            model, ckpt = load_checkpoint(str(path), device="cpu", fuse=False)
            train_args = dict(ckpt.get("train_args") or {})
            task = getattr(model, "task", "detect")
            if task != "detect":
                raise TypeError(f"weights: {path} is an ultralytics '{task}' model; a 'detect' model is needed")
            self.weights = path
        from ultralytics.nn.modules import Detect

        head = model.model[-1]
        if not isinstance(head, Detect) or type(head).__name__ not in ("Detect", "v10Detect"):
            raise TypeError(f"FrozenDetector: unsupported head {type(head).__name__}; expected a Detect head")
        # The criterion reads the loss gains (box, cls, dfl) from model.args as attributes.
        model.args = _namespace({**DEFAULT_CFG_DICT, **train_args})
        #: The checkpoint's training arguments (empty for a YAML model), e.g. ``train_args["imgsz"]``.
        self.train_args = train_args
        model = model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if fuse:
            _fuse_conv_bn(model)
        self.model = model.to(device)
        self.criterion = model.init_criterion()
        self._move_criterion(device)
        self.nc = int(head.nc)
        raw_names = names if names is not None else getattr(model, "names", None)
        if raw_names is None or (model_yaml is not None and names is None):
            raw_names = {i: f"class{i}" for i in range(self.nc)}
        if not isinstance(raw_names, Mapping):
            raw_names = dict(enumerate(raw_names))
        self.names: dict[int, str] = {int(k): str(v) for k, v in raw_names.items()}
        self.stride = int(model.stride.max())
        self.end2end = bool(getattr(head, "end2end", False))
        self.imgsz = int(imgsz)
        if self.imgsz % self.stride:
            raise ValueError(f"imgsz: must be a multiple of the detector stride {self.stride}, got {imgsz}")
        crit = getattr(self.criterion, "one2many", self.criterion)
        self.loss_names = tuple(crit.loss_names)

    # -- nn.Module plumbing ------------------------------------------------------------------
    def train(self, mode: bool = True) -> FrozenDetector:  # noqa: D102 - documented in class
        """Always stays in eval mode (frozen BatchNorm statistics), whatever ``mode`` is."""
        super().train(False)
        return self

    def _move_criterion(self, device: torch.device) -> None:
        crits = [self.criterion]
        if hasattr(self.criterion, "one2many"):
            crits = [self.criterion.one2many, self.criterion.one2one]
        for c in crits:
            c.device = device
            c.proj = c.proj.to(device)
            c.bbox_loss = c.bbox_loss.to(device)
            c.stride = c.stride.to(device) if isinstance(c.stride, torch.Tensor) else c.stride
            if getattr(c, "class_weights", None) is not None:
                c.class_weights = c.class_weights.to(device)

    def _apply(self, fn, *args, **kwargs):  # keeps the criterion on the model's device
        out = super()._apply(fn, *args, **kwargs)
        try:
            self._move_criterion(next(self.model.parameters()).device)
        except (AttributeError, StopIteration):
            pass
        return out

    @property
    def device(self) -> torch.device:
        """The device of the detector's weights."""
        return next(self.model.parameters()).device

    # -- checks ------------------------------------------------------------------------------
    def _check_images(self, images: Any, name: str = "images") -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"{name}: H and W must be multiples of the detector stride {self.stride}, got {h}x{w}; "
                "letterbox them first (ispbench.tasks.detection.letterbox)"
            )
        if not images.is_floating_point():
            raise TypeError(f"{name}: expected a float tensor in [0, 1], got {images.dtype}")
        return images.to(device=self.device, dtype=next(self.model.parameters()).dtype)

    def _check_targets(self, targets: Any, batch_size: int) -> torch.Tensor:
        if not isinstance(targets, torch.Tensor):
            targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        if targets.numel() == 0:
            targets = targets.reshape(0, 6)
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise ValueError(
                "targets: expected shape (N, 6), rows batch_index, class, cx, cy, w, h (normalised to [0, 1]); "
                f"got {tuple(targets.shape)}"
            )
        targets = targets.detach().to(device=self.device, dtype=torch.float32)
        if len(targets):
            bi, cl = targets[:, 0], targets[:, 1]
            if (bi < 0).any() or (bi >= batch_size).any() or (bi != bi.round()).any():
                raise ValueError(f"targets: batch_index (column 0) must be integers in [0, {batch_size})")
            if (cl < 0).any() or (cl >= self.nc).any() or (cl != cl.round()).any():
                raise ValueError(f"targets: class (column 1) must be integers in [0, {self.nc})")
            if (targets[:, 2:] < 0).any() or (targets[:, 2:] > 1).any():
                raise ValueError("targets: cx, cy, w, h (columns 2-5) must be normalised to [0, 1]")
        return targets

    # -- the task ----------------------------------------------------------------------------
    def raw_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Eval-mode forward: ``(decoded (B, 4 + nc, A), raw head outputs dict)``.

        Gradients flow to ``images``; weights and BN statistics are untouched.
        """
        self.model.eval()
        out = self.model(self._check_images(images))
        if not isinstance(out, tuple) or len(out) != 2:
            raise RuntimeError("FrozenDetector: the detection head did not return (decoded, raw) in eval mode")
        return out

    def per_image_loss(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        return_components: bool = False,
        mode: str = "auto",
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The detector's own training loss of each image alone, differentiable w.r.t. ``images``.

        Args:
            images: ``(B, 3, H, W)`` sRGB in [0, 1] (H, W multiples of the stride, 32).
            targets: ``(N, 6)`` rows ``batch_index, class, cx, cy, w, h`` normalised to [0, 1].
            return_components: also return the ``(B, 3)`` gain-weighted terms
                (``self.loss_names``: box, cls, dfl).
            mode: ``"loop"``: the detector's criterion called on each image alone (any head);
                ``"batched"``: one task-aligned assignment for the batch (it is per-image
                independent) and the box/cls/DFL terms reduced per image (``v8DetectionLoss``
                heads with DFL only; equal to ``"loop"`` to float rounding, tested);
                ``"auto"`` (default): ``"batched"`` where supported, else ``"loop"``.

        Returns:
            ``(B,)`` loss per image (sum of the weighted terms; see the module docstring), and
            the ``(B, 3)`` components if asked.

        Example:
            >>> det.per_image_loss(torch.rand(2, 3, 64, 64), torch.tensor([[1, 0, .5, .5, .2, .2]]))  # doctest: +SKIP
            tensor([45.3, 13.1])
        """
        if mode not in ("auto", "loop", "batched"):
            raise ValueError(f"mode: expected 'auto', 'loop' or 'batched', got {mode!r}")
        batched_ok = type(self.criterion).__name__ == "v8DetectionLoss" and self.criterion.use_dfl
        if mode == "batched" and not batched_ok:
            raise ValueError(f"mode='batched' supports v8DetectionLoss with DFL, not {type(self.criterion).__name__}")
        images = self._check_images(images)
        targets = self._check_targets(targets, images.shape[0])
        _, raw = self.raw_forward(images)
        if mode != "loop" and batched_ok:
            comps = self._batched_components(raw, targets, images.shape[0])
            total = comps.sum(1)
            return (total, comps) if return_components else total
        comps = []
        bidx = targets[:, 0].long()
        for b in range(images.shape[0]):
            t = targets[bidx == b]
            batch = {"batch_idx": torch.zeros(len(t), device=t.device), "cls": t[:, 1:2], "bboxes": t[:, 2:6]}
            loss, _ = self.criterion(_slice_raw(raw, b), batch)
            comps.append(loss)
        comps = torch.stack(comps)  # (B, 3)
        total = comps.sum(1)
        return (total, comps) if return_components else total

    def _batched_components(self, raw: dict[str, Any], targets: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``(B, 3)`` gain-weighted box/cls/DFL terms of ``v8DetectionLoss``, normalised per image.

        Same steps as the criterion (decode, task-aligned assignment, CIoU, BCE, DFL) with its own
        building blocks; only the final sums and the ``max(1, sum of target scores)``
        normalisation are taken per image instead of over the batch.
        """
        from ultralytics.utils.metrics import bbox_iou
        from ultralytics.utils.tal import bbox2dist, make_anchors

        c = self.criterion
        feats = raw["feats"]
        pred_distri = raw["boxes"].permute(0, 2, 1).contiguous()  # (B, A, 4 * reg_max)
        pred_scores = raw["scores"].permute(0, 2, 1).contiguous()  # (B, A, nc)
        dtype, dev = pred_scores.dtype, pred_scores.device
        anchor_points, stride_tensor = make_anchors(feats, c.stride, 0.5)
        imgsz = torch.tensor(feats[0].shape[2:], device=dev, dtype=dtype) * c.stride[0]
        order = torch.argsort(targets[:, 0], stable=True)  # the criterion's padding needs sorted rows
        t = c.preprocess(targets[order], batch_size, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = t.split((1, 4), 2)
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        pred_bboxes = c.bbox_decode(anchor_points, pred_distri)  # grid units, xyxy
        _, target_bboxes, target_scores, fg_mask, _ = c.assigner(
            pred_scores.detach().sigmoid(),
            (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
            anchor_points * stride_tensor,
            gt_labels,
            gt_bboxes,
            mask_gt,
        )
        tss = target_scores.sum((1, 2)).clamp(min=1)  # (B,) per-image normaliser
        bce = c.bce(pred_scores, target_scores.to(dtype))
        if c.class_weights is not None:
            bce = bce * c.class_weights
        loss_cls = bce.sum((1, 2)) / tss
        b_idx, a_idx = fg_mask.nonzero(as_tuple=True)
        weight = target_scores[b_idx, a_idx].sum(-1, keepdim=True)  # (n_fg, 1)
        tb = (target_bboxes / stride_tensor)[b_idx, a_idx]
        iou = bbox_iou(pred_bboxes[b_idx, a_idx], tb, xywh=False, CIoU=True)
        zeros = pred_scores.new_zeros(batch_size)
        loss_box = zeros.index_add(0, b_idx, ((1.0 - iou) * weight).view(-1)) / tss
        dfl = c.bbox_loss.dfl_loss
        target_ltrb = bbox2dist(anchor_points[a_idx], tb, dfl.reg_max - 1)
        per = dfl(pred_distri[b_idx, a_idx].view(-1, dfl.reg_max), target_ltrb) * weight
        loss_dfl = zeros.index_add(0, b_idx, per.view(-1)) / tss
        # Keep every head output in the graph even with no foreground (as the criterion does).
        loss_box = loss_box + 0.0 * pred_distri.sum((1, 2))
        h = c.hyp
        return torch.stack([loss_box * h.box, loss_cls * h.cls, loss_dfl * h.dfl], 1)

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        conf: float = AUTHORS_EVAL["conf"],
        iou: float = AUTHORS_EVAL["iou"],
        max_det: int = 300,
        *,
        multi_label: bool = True,
    ) -> list[torch.Tensor]:
        """Detections after NMS.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1], H, W multiples of the stride.
            conf: confidence threshold (authors: 0.001).
            iou: NMS IoU threshold (authors: 0.6).
            max_det: detections kept per image.
            multi_label: a box may carry several classes (ultralytics' validator does this).

        Returns:
            One ``(n, 6)`` float tensor per image, rows ``x1, y1, x2, y2, score, class``, in
            pixels of the input, sorted by descending score.
        """
        from ultralytics.utils.nms import non_max_suppression

        decoded, _ = self.raw_forward(images)
        out = non_max_suppression(
            decoded,
            conf_thres=conf,
            iou_thres=iou,
            multi_label=multi_label,
            max_det=max_det,
            nc=self.nc,
            end2end=self.end2end,
        )
        h, w = images.shape[-2:]
        res = []
        for d in out:
            d = d[:, :6].float()
            d[:, [0, 2]] = d[:, [0, 2]].clamp(0, w)
            d[:, [1, 3]] = d[:, [1, 3]].clamp(0, h)
            res.append(d[torch.argsort(d[:, 4], descending=True, stable=True)])
        return res

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`per_image_loss`."""
        return self.per_image_loss(images, targets)

    def __repr__(self) -> str:
        src = str(self.weights) if self.weights is not None else "built from YAML"
        return f"FrozenDetector({src}, nc={self.nc}, imgsz={self.imgsz}, stride={self.stride}, loss={self.loss_names})"


# -- resizing ------------------------------------------------------------------------------
def resize_longest(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` so that the longer side is ``size`` (bilinear, antialiased), keeping aspect."""
    h, w = images.shape[-2:]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) == (h, w):
        return images
    return F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=s < 1)


def rect_canvas(h: int, w: int, size: int, stride: int = 32, pad: float = 0.5) -> tuple[int, int]:
    """Canvas of ultralytics' rectangular validation batches (and the authors' YOLOv3 ``test.py``).

    The image is scaled so its longer side is ``size``; each canvas side is that side in
    strides plus ``pad`` stride, rounded up: ``ceil(side / stride + pad) * stride``. With the
    default ``pad=0.5`` a 160x160 image sits in a 192x192 canvas, a 512x341 one in 544x384.
    """
    s = size / max(h, w)
    return (
        int(math.ceil(h * s / stride + pad)) * stride,
        int(math.ceil(w * s / stride + pad)) * stride,
    )


def letterbox(
    images: torch.Tensor,
    size: int,
    pad_value: float = PAD_VALUE,
    *,
    rect: bool = False,
    stride: int = 32,
) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Resize (longer side = ``size``) and pad centrally onto a canvas.

    Args:
        images: ``(B, 3, H, W)``.
        size: longer side after resizing (a multiple of the detector stride).
        pad_value: fill of the border (ultralytics: 114/255).
        rect: ``False``: a ``size x size`` square canvas. ``True``: ultralytics' validation
            canvas :func:`rect_canvas` (half a stride of extra border, as the authors evaluated).
        stride: the detector stride (for ``rect``).

    Returns:
        ``(padded (B, 3, Hc, Wc), scale, (pad_top, pad_left))``; a pixel ``(x, y)`` of the
        input maps to ``(x * scale + pad_left, y * scale + pad_top)``.
    """
    h, w = images.shape[-2:]
    resized = resize_longest(images, size)
    nh, nw = resized.shape[-2:]
    ch, cw = rect_canvas(h, w, size, stride) if rect else (size, size)
    top, left = (ch - nh) // 2, (cw - nw) // 2
    out = F.pad(resized, (left, cw - nw - left, top, ch - nh - top), value=pad_value)
    return out, nh / h, (top, left)


def _targets_to_letterbox(
    boxes: torch.Tensor,
    orig: tuple[int, int],
    new: tuple[int, int],
    pad: tuple[int, int],
    size: int | tuple[int, int],
) -> torch.Tensor:
    """Normalised ``cx, cy, w, h`` of the original image -> normalised on the padded canvas.

    ``size``: the canvas side (square) or ``(Hc, Wc)``.
    """
    (nh, nw), (top, left) = new, pad
    ch, cw = (size, size) if isinstance(size, (int, np.integer)) else size
    out = boxes.clone().float()
    out[:, 0] = (boxes[:, 0] * nw + left) / cw
    out[:, 1] = (boxes[:, 1] * nh + top) / ch
    out[:, 2] = boxes[:, 2] * nw / cw
    out[:, 3] = boxes[:, 3] * nh / ch
    return out.clamp(0, 1)


def _boxes_from_letterbox(
    det: torch.Tensor, orig: tuple[int, int], new: tuple[int, int], pad: tuple[int, int]
) -> torch.Tensor:
    """Detections ``(n, 6)`` in letterboxed pixels -> pixels of the original ``(H, W)`` image."""
    (h, w), (nh, nw), (top, left) = orig, new, pad
    d = det.clone()
    d[:, [0, 2]] = ((d[:, [0, 2]] - left) * (w / nw)).clamp(0, w)
    d[:, [1, 3]] = ((d[:, [1, 3]] - top) * (h / nh)).clamp(0, h)
    return d


def collate_letterboxed(
    items: Sequence[Mapping[str, Any]], imgsz: int, stride: int = 32, *, rect: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Letterbox dataset items into a detector batch ``(images (B, 3, Hc, Wc), targets (N, 6))``.

    Each item's image is resized (longer side ``imgsz``) and padded (square, or the
    ultralytics-val canvas with ``rect=True``, which then needs items of one aspect ratio);
    its boxes are mapped onto the canvas. ``targets`` rows: ``batch_index, class, cx, cy, w, h``
    normalised to the canvas, ready for :meth:`FrozenDetector.per_image_loss`.

    Example:
        >>> x, t = collate_letterboxed([ds[0], ds[1]], 512)      # doctest: +SKIP
    """
    imgs, rows = [], []
    for k, item in enumerate(items):
        img, boxes, labels = _check_item(item, k)
        lb, _, pad = letterbox(img[None], imgsz, rect=rect, stride=stride)
        new = tuple(resize_longest(img[None], imgsz).shape[-2:])
        t = _targets_to_letterbox(boxes, tuple(img.shape[-2:]), new, pad, tuple(lb.shape[-2:]))
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
        orig = tuple(x.shape[-2:])
        x = resize_longest(x, imgsz)
        with torch.no_grad():
            y = isp_fn(x) if isp_fn is not None else x
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"isp_fn: expected an output of shape {tuple(x.shape)} (same as its input), got {got}")
        for k, (img, boxes, labels) in enumerate(items):
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
    for i, (y, boxes, labels, orig) in enumerate(outputs):
        if not torch.isfinite(y).all():
            raise ValueError(f"ISP output {i} has NaN/inf values")
        lb, _, pad = letterbox(y[None], imgsz, rect=rect, stride=detector.stride)
        canvas = tuple(lb.shape[-2:])
        t = _targets_to_letterbox(boxes, orig, tuple(y.shape[-2:]), pad, canvas)
        prepared.append((lb[0], t, labels.float(), (orig, tuple(y.shape[-2:]), pad)))
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
            losses.extend(detector.per_image_loss(x, targets).cpu().tolist())
        for d, (_, _, _, meta) in zip(detector.predict(x, conf=conf, iou=iou, max_det=max_det), chunk):
            preds.append(_boxes_from_letterbox(d.cpu(), *meta).numpy())
        start = stop
    res = as_percent(evaluate_map(preds, gts, sizes, iou_thresholds, method=method, names=detector.names))
    res["per_image_loss"] = losses
    res["mean_loss"] = float(np.mean(losses)) if losses else float("nan")
    res["predictions"] = preds
    return res


def as_percent(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`evaluate_map`'s fractions (pycocotools' unit) -> percent, the unit of the papers, results and book.

    Scales ``mAP@*``, the ``ap`` array and every class's ``AP@*`` by 100; counts stay as they are.
    """
    out = dict(result)
    for key in [k for k in out if k.startswith("mAP@")]:
        out[key] = 100.0 * out[key]
    if "ap" in out:
        out["ap"] = 100.0 * np.asarray(out["ap"])
    out["per_class"] = {c: {k: (100.0 * v if k.startswith("AP@") else v) for k, v in row.items()}
                        for c, row in out.get("per_class", {}).items()}
    return out


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
    ultralytics' validation canvas (:func:`rect_canvas`: each side rounded up to a multiple of
    the stride after adding half a stride, as the authors' YOLOv3 ``test.py`` and
    ``yolo val`` do); ``rect=False`` uses an ``imgsz x imgsz`` square. Predictions are
    mapped back to the original pixel grid and scored against the original boxes.
    Consecutive outputs with the same canvas are batched (detections do not depend on the
    batch: BatchNorm is frozen), so ``batch_size`` only changes speed.

    Args:
        isp_fn: linear ``(B, 3, H, W)`` -> sRGB ``(B, 3, H, W)`` in [0, 1]; ``None`` scores the
            input images as they are. Called under ``torch.no_grad``.
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
        :func:`evaluate_map`'s dict (``mAP@0.5``, ``mAP@0.75``, ``mAP@0.5:0.95``, ``per_class``
        ...) plus ``per_image_loss`` (list, the detector's loss of each output),
        ``mean_loss`` and ``predictions`` (per image, original pixels).
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
        detectors: name -> :class:`FrozenDetector`. Their class indices must share one label map.
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
