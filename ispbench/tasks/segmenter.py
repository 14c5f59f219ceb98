"""A frozen ultralytics instance segmenter and its per-image loss: the segmentation task of POS-ISP and AdaptiveISP.

POS-ISP (and AdaptiveISP's Table 2) train an ISP in front of a frozen ultralytics YOLO11n-seg on
LIS, with the segmenter's own training loss scaled by 0.01 as the task loss. :class:`FrozenSegmenter`
is that task network: any ultralytics ``Segment``-head checkpoint (YOLOv8-seg, YOLO11-seg), by
default the embedded YOLO11n-seg :data:`DEFAULT_SEG_WEIGHTS` (``ispbench train detector --task
segment``), or a model built from a ``-seg`` YAML. As in :class:`~ispbench.tasks.detector.FrozenDetector`
the weights are frozen, BatchNorm stays in eval mode and the graph stays open to the input images.
Checkpoints are read with the restricted ``weights_only`` loader (never unpickling code).

Per-image loss
    One batched eval-mode forward. The ``Segment`` head then returns ``((decoded, proto), raw)``
    where ``raw`` is the training-mode dict (``boxes`` DFL logits, ``scores`` class logits,
    ``mask_coefficient`` ``(B, 32, A)``, ``proto`` ``(B, 32, H/4, W/4)``, ``feats``). The
    segmenter's own criterion, ``v8SegmentationLoss``, is called once per image on that image's
    slice of ``raw`` with its own targets and masks: ultralytics normalises the box/class terms by
    the batch's sum of target scores and the mask term by the batch's foreground count, so one
    batched call would not split into per-image terms. Terms (``loss_names``): ``box`` (CIoU),
    ``seg`` (per-instance BCE of the prototype mask inside its box, divided by the box area, times
    the box gain), ``cls`` (BCE, also the objectness), ``dfl``, ``sem`` (0: no semantic branch), each
    with the checkpoint's gains (7.5 / 7.5 / 0.5 / 1.5), summed and multiplied by ``loss_scale``
    (default :data:`AUTHORS_LOSS_SCALE` = 0.01, the POS-ISP authors' x0.01). The criterion takes one
    ``(N, h, w)`` mask per target row (``overlap_mask`` off); masks are area-downsampled to the
    prototype resolution (``>= 0.5``), as ultralytics' training (``mask_ratio`` 4) rasterises them.

    Cost (YOLO11n-seg, 160 px, batch 8 with 3 objects each, one CPU thread, fused BN, measured on
    the project's 2-core machine while other jobs kept it at load ~3, so an idle core is faster):
    forward with grad 0.47 s; the eight per-image criterion calls add 0.15 s (the per-image loop
    costs about a third of a forward); loss + backward to the images 1.2 s; ``predict`` 0.58 s.

Prediction: eval-mode forward, ultralytics' ``non_max_suppression`` (multi-label, as its validator
does), then each kept box's mask from the prototypes (``process_mask``: coefficients x
prototypes, bilinear upsampling to the input, cropped to the box, ``> 0``).

Evaluation over a dataset (letterboxing, batching, mask and box mAP) is in
:mod:`ispbench.tasks.segmentation_eval`.

Example:
    >>> seg = FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=64)   # doctest: +SKIP
    >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)                       # doctest: +SKIP
    >>> t = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3]])                         # doctest: +SKIP
    >>> m = torch.zeros(1, 64, 64, dtype=torch.bool); m[0, 22:42, 22:42] = True  # doctest: +SKIP
    >>> seg.per_image_loss(x, t, m).shape                                      # doctest: +SKIP
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ispbench.offline import configure_ultralytics
from ispbench.paths import WEIGHTS_DIR
from ispbench.tasks.detector import _fuse_conv_bn, _load_ultralytics_checkpoint, _namespace, _slice_raw
from ispbench.tasks.map_eval import AUTHORS_EVAL

configure_ultralytics()

#: The embedded instance segmenter shipped with the package (``ispbench train detector --task segment``).
DEFAULT_SEG_WEIGHTS = WEIGHTS_DIR / "embedded_yolo11n_seg.pt"
#: POS-ISP's scale of the YOLO11n-seg loss in its reward (the authors' code multiplies it by 0.01).
AUTHORS_LOSS_SCALE = 0.01

__all__ = ["AUTHORS_LOSS_SCALE", "DEFAULT_SEG_WEIGHTS", "FrozenSegmenter"]


class FrozenSegmenter(nn.Module):
    """A frozen ultralytics instance segmenter: per-image differentiable loss, predictions with masks.

    Args:
        weights: an ultralytics segmentation checkpoint (``.pt``). Default: the embedded
            YOLO11n-seg :data:`DEFAULT_SEG_WEIGHTS`. Never a bare name such as ``yolo11n-seg.pt``
            unless that file exists (ispbench never downloads weights).
        model_yaml: build a randomly initialised model from this ultralytics ``-seg`` YAML instead
            (``"yolo11n-seg.yaml"``), for tests.
        nc: number of classes for ``model_yaml``.
        imgsz: default evaluation size of :func:`~ispbench.tasks.segmentation_eval.evaluate_isp_segmentation`
            (the embedded segmenter was trained at 160; a multiple of the stride, 32).
        device: torch device.
        fuse: fold BatchNorm into the convolutions (same function, faster).
        names: class names for a ``model_yaml`` model (default ``class0``, ``class1`` ...).
        loss_scale: factor of :meth:`per_image_loss` (default 0.01, the POS-ISP authors').

    Attributes:
        model: the ultralytics ``SegmentationModel`` (eval mode, ``requires_grad=False``).
        names: ``dict[int, str]``; ``nc``; ``stride`` (32); ``weights`` (the file or None);
        ``train_args`` (the checkpoint's training arguments); ``loss_names`` (box, seg, cls, dfl, sem).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        model_yaml: str | Path | None = None,
        nc: int | None = None,
        imgsz: int = 160,
        device: str | torch.device = "cpu",
        fuse: bool = True,
        names: Mapping[int, str] | Sequence[str] | None = None,
        loss_scale: float = AUTHORS_LOSS_SCALE,
    ) -> None:
        super().__init__()
        from ultralytics.cfg import DEFAULT_CFG_DICT
        from ultralytics.nn.modules import Segment

        if weights is not None and model_yaml is not None:
            raise ValueError("FrozenSegmenter: give either weights= or model_yaml=, not both")
        if not isinstance(imgsz, (int, np.integer)) or imgsz <= 0:
            raise ValueError(f"imgsz: expected a positive int, got {imgsz!r}")
        if not isinstance(loss_scale, (int, float)) or not np.isfinite(loss_scale) or loss_scale <= 0:
            raise ValueError(f"loss_scale: expected a positive finite number, got {loss_scale!r}")
        device = torch.device(device)
        if model_yaml is not None:
            from ultralytics.nn.tasks import SegmentationModel

            if nc is not None and (not isinstance(nc, (int, np.integer)) or nc < 1):
                raise ValueError(f"nc: expected a positive int, got {nc!r}")
            model = SegmentationModel(str(model_yaml), nc=nc, verbose=False)
            train_args: dict[str, Any] = {}
            self.weights = None
        else:
            path = Path(weights) if weights is not None else DEFAULT_SEG_WEIGHTS
            if not path.is_file():
                how = ("Create them with `ispbench train detector --task segment --model yolo11n-seg.yaml` (trains "
                       "YOLO11n-seg on the embedded dataset's masks and writes that file)")
                if weights is None:
                    raise FileNotFoundError(f"The embedded segmenter weights are missing: {path}. {how}, or pass "
                                            "weights= an existing ultralytics segmentation .pt file.")
                raise FileNotFoundError(f"Segmenter weights not found: {path}. Pass the path of an existing ultralytics "
                                        f"segmentation checkpoint (.pt); ispbench never downloads weights by name. {how}.")
            if path.suffix != ".pt":
                raise ValueError(f"weights: expected an ultralytics .pt checkpoint, got {path}")
            model, ckpt = _load_ultralytics_checkpoint(path)
            train_args = dict(ckpt.get("train_args") or {})
            task = getattr(model, "task", "segment")
            if task != "segment":
                raise TypeError(f"weights: {path} is an ultralytics '{task}' model; a 'segment' model is needed")
            self.weights = path
        head = model.model[-1]
        if type(head) is not Segment or getattr(head, "end2end", False):
            raise TypeError(f"FrozenSegmenter: unsupported head {type(head).__name__}; expected a (YOLOv8/YOLO11) Segment head")
        model.args = _namespace({**DEFAULT_CFG_DICT, **train_args})  # the criterion reads its gains here
        self.train_args = train_args
        model = model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if fuse:
            _fuse_conv_bn(model)
        self.model = model.to(device)
        self.criterion = model.init_criterion()
        self.criterion.overlap = False  # one (h, w) mask per target row, not an instance-id map per image
        self._move_criterion(device)
        self.loss_scale = float(loss_scale)
        self.nc = int(head.nc)
        self.nm = int(head.nm)
        raw_names = names if names is not None else getattr(model, "names", None)
        if raw_names is None or (model_yaml is not None and names is None):
            raw_names = {i: f"class{i}" for i in range(self.nc)}
        if not isinstance(raw_names, Mapping):
            raw_names = dict(enumerate(raw_names))
        self.names: dict[int, str] = {int(k): str(v) for k, v in raw_names.items()}
        self.stride = int(model.stride.max())
        self.imgsz = int(imgsz)
        if self.imgsz % self.stride:
            raise ValueError(f"imgsz: must be a multiple of the segmenter stride {self.stride}, got {imgsz}")
        self.loss_names = tuple(self.criterion.loss_names)

    # -- nn.Module plumbing ------------------------------------------------------------------
    def train(self, mode: bool = True) -> FrozenSegmenter:  # noqa: D102 - documented in class
        """Always stays in eval mode (frozen BatchNorm statistics), whatever ``mode`` is."""
        super().train(False)
        return self

    def _move_criterion(self, device: torch.device) -> None:
        c = self.criterion
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
        """The device of the segmenter's weights."""
        return next(self.model.parameters()).device

    # -- checks ------------------------------------------------------------------------------
    def _check_images(self, images: Any) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images: expected a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"images: H and W must be multiples of the segmenter stride {self.stride}, got {h}x{w}; "
                             "letterbox them first (ispbench.ops.geometry.letterbox)")
        if not images.is_floating_point():
            raise TypeError(f"images: expected a float tensor in [0, 1], got {images.dtype}")
        return images.to(device=self.device, dtype=next(self.model.parameters()).dtype)

    def _check_targets(self, targets: Any, batch_size: int) -> torch.Tensor:
        if not isinstance(targets, torch.Tensor):
            targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        if targets.numel() == 0:
            targets = targets.reshape(0, 6)
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise ValueError("targets: expected shape (N, 6), rows batch_index, class, cx, cy, w, h (normalised to [0, 1]); "
                             f"got {tuple(targets.shape)}")
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

    def _check_masks(self, masks: Any, n_targets: int, image_hw: tuple[int, int], proto_hw: tuple[int, int]) -> torch.Tensor:
        """``(N, H, W)`` target masks -> float ``(N, h, w)`` 0/1 at the prototype resolution."""
        if not isinstance(masks, torch.Tensor):
            masks = torch.as_tensor(np.asarray(masks))
        if masks.numel() == 0 and n_targets == 0:
            return torch.zeros(0, *proto_hw, device=self.device)
        if masks.ndim != 3 or len(masks) != n_targets:
            raise ValueError(f"masks: expected (N, H, W) with one mask per target row (N = {n_targets}), got {tuple(masks.shape)}")
        hw = tuple(masks.shape[-2:])
        if hw not in (tuple(image_hw), tuple(proto_hw)):
            raise ValueError(f"masks: expected the images' size {tuple(image_hw)} (or the prototypes' {tuple(proto_hw)}), got {hw}")
        masks = masks.detach().to(device=self.device, dtype=torch.float32)
        if ((masks != 0) & (masks != 1)).any():
            raise ValueError("masks: expected binary masks (bool or 0/1)")
        if hw != tuple(proto_hw):
            masks = F.interpolate(masks[None], size=proto_hw, mode="area")[0].ge(0.5).float()
        return masks

    # -- the task ----------------------------------------------------------------------------
    def raw_forward(self, images: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
        """Eval-mode forward: ``((decoded (B, 4 + nc + nm, A), proto (B, nm, H/4, W/4)), raw head dict)``.

        Gradients flow to ``images``; weights and BN statistics are untouched.
        """
        self.model.eval()
        out = self.model(self._check_images(images))
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], tuple) and isinstance(out[1], dict)):
            raise RuntimeError("FrozenSegmenter: the Segment head did not return ((decoded, proto), raw) in eval mode")
        return out

    def per_image_loss(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        masks: torch.Tensor,
        *,
        return_components: bool = False,
        outputs: tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The segmenter's own training loss of each image alone, times ``loss_scale``, differentiable w.r.t. ``images``.

        Args:
            images: ``(B, 3, H, W)`` sRGB in [0, 1] (H, W multiples of the stride, 32).
            targets: ``(N, 6)`` rows ``batch_index, class, cx, cy, w, h`` normalised to [0, 1].
            masks: ``(N, H, W)`` bool instance masks, one per target row (or at the prototype
                resolution ``(N, H/4, W/4)``).
            return_components: also return the ``(B, 5)`` scaled terms (``self.loss_names``:
                box, seg, cls, dfl, sem), which sum to the loss.
            outputs: :meth:`raw_forward` of these ``images`` when the caller already has it (an
                evaluation that also calls :meth:`detect` runs the network once, not twice).

        Returns:
            ``(B,)`` loss per image (see the module docstring), and the components if asked.

        Example:
            >>> seg.per_image_loss(torch.rand(2, 3, 64, 64), t, m)  # doctest: +SKIP
            tensor([0.61, 0.19])
        """
        images = self._check_images(images)
        targets = self._check_targets(targets, images.shape[0])
        (_, proto), raw = self.raw_forward(images) if outputs is None else outputs
        gt_masks = self._check_masks(masks, len(targets), tuple(images.shape[-2:]), tuple(proto.shape[-2:]))
        bidx = targets[:, 0].long()
        comps = []
        for b in range(images.shape[0]):
            sel = bidx == b
            t = targets[sel]
            batch = {"batch_idx": torch.zeros(len(t), device=t.device), "cls": t[:, 1:2], "bboxes": t[:, 2:6],
                     "masks": gt_masks[sel]}
            loss, _ = self.criterion(_slice_raw(raw, b), batch)
            comps.append(loss)
        comps = torch.stack(comps) * self.loss_scale  # (B, 5)
        total = comps.sum(1)
        return (total, comps) if return_components else total

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        conf: float = AUTHORS_EVAL["conf"],
        iou: float = AUTHORS_EVAL["iou"],
        max_det: int = 300,
        *,
        multi_label: bool = True,
        outputs: tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Detections after NMS with their mask coefficients, and the prototypes (masks made later, for the rows needed).

        ``outputs``: :meth:`raw_forward` of these ``images``, if already computed.

        Returns:
            ``(detections, proto)``: one ``(n, 6 + nm)`` tensor per image, rows ``x1, y1, x2, y2,
            score, class, coefficients...`` in pixels of the input, sorted by descending score;
            ``proto`` ``(B, nm, H/4, W/4)``. :meth:`masks_of` turns rows into masks.
        """
        from ultralytics.utils.nms import non_max_suppression

        (decoded, proto), _ = self.raw_forward(images) if outputs is None else outputs
        out = non_max_suppression(decoded, conf_thres=conf, iou_thres=iou, multi_label=multi_label, max_det=max_det, nc=self.nc)
        h, w = images.shape[-2:]
        res = []
        for d in out:
            d = d.float()
            d[:, [0, 2]] = d[:, [0, 2]].clamp(0, w)
            d[:, [1, 3]] = d[:, [1, 3]].clamp(0, h)
            res.append(d[torch.argsort(d[:, 4], descending=True, stable=True)])
        return res, proto

    @staticmethod
    def masks_of(proto: torch.Tensor, detections: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Masks of detection rows: ``proto (nm, h, w)``, ``detections (n, 6 + nm)`` -> ``(n, H, W)`` bool at ``shape``.

        Ultralytics' ``process_mask`` with upsampling: coefficients x prototypes, bilinear to
        ``shape``, cropped to each box, ``> 0``.
        """
        from ultralytics.utils.ops import process_mask

        if len(detections) == 0:
            return torch.zeros(0, *shape, dtype=torch.bool, device=proto.device)
        return process_mask(proto, detections[:, 6:], detections[:, :4], shape, upsample=True).bool()

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        conf: float = AUTHORS_EVAL["conf"],
        iou: float = AUTHORS_EVAL["iou"],
        max_det: int = 300,
        *,
        multi_label: bool = True,
    ) -> list[dict[str, torch.Tensor]]:
        """Instances after NMS.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1], H, W multiples of the stride.
            conf, iou, max_det: NMS settings (authors: 0.001, 0.6, 300).
            multi_label: a box may carry several classes (ultralytics' validator does this).

        Returns:
            One dict per image: ``boxes`` ``(n, 4)`` ``x1, y1, x2, y2`` in pixels, ``scores`` ``(n,)``,
            ``classes`` ``(n,)`` int64, ``masks`` ``(n, H, W)`` bool, sorted by descending score.
        """
        detections, proto = self.detect(images, conf, iou, max_det, multi_label=multi_label)
        shape = tuple(images.shape[-2:])
        return [{"boxes": d[:, :4], "scores": d[:, 4], "classes": d[:, 5].long(), "masks": self.masks_of(proto[b], d, shape)}
                for b, d in enumerate(detections)]

    def forward(self, images: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`per_image_loss`."""
        return self.per_image_loss(images, targets, masks)

    def __repr__(self) -> str:
        src = str(self.weights) if self.weights is not None else "built from YAML"
        return (f"FrozenSegmenter({src}, nc={self.nc}, imgsz={self.imgsz}, stride={self.stride}, "
                f"loss_scale={self.loss_scale}, loss={self.loss_names})")
