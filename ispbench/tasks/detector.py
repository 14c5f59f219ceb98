"""A frozen ultralytics detector and its per-image loss: the task that scores an ISP output (AdaptiveISP, POS-ISP).

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

Evaluation over a dataset (letterboxing, batching, mAP) is in :mod:`ispbench.tasks.detection_eval`.

Example:
    >>> det = FrozenDetector(model_yaml="yolov8n.yaml", nc=3, imgsz=64)   # doctest: +SKIP
    >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)                    # doctest: +SKIP
    >>> t = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3]])                      # doctest: +SKIP
    >>> det.per_image_loss(x, t).shape                                      # doctest: +SKIP
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ultralytics' NMS runs torchvision's C++ kernel only when torchvision is already imported, else a Python
# loop; the kept boxes are identical and a test split scores 21-25% faster (measured 2026-12-07)
import torchvision  # noqa: F401
from torch import nn

from ispbench.offline import configure_ultralytics
from ispbench.paths import WEIGHTS_DIR
from ispbench.tasks.map_eval import AUTHORS_EVAL

configure_ultralytics()

#: The embedded detector shipped with the package (made by ``ispbench train detector``).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "embedded_yolo.pt"

__all__ = ["DEFAULT_WEIGHTS", "FrozenDetector"]


def _namespace(args: Mapping[str, Any]):
    from ultralytics.utils import IterableSimpleNamespace

    return IterableSimpleNamespace(**dict(args))


def _load_ultralytics_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """An ultralytics checkpoint, read with ``weights_only=True`` (never unpickling code).

    Ultralytics checkpoints pickle the model's classes; its own restricted loader
    (``torch_safe_load(..., safe_only=True)``) allow-lists exactly the torch and ultralytics
    ``nn.Module`` classes the file references and refuses anything else (a crafted pickle that would
    call a function). Then the same model set-up as ``ultralytics.nn.tasks.load_checkpoint``.

    Raises:
        ValueError: naming the file, when it is refused or unreadable.
    """
    import pickle

    from ultralytics.nn.tasks import guess_model_task, torch_safe_load

    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):  # ultralytics would load unrestricted
        raise RuntimeError(f"loading {path} safely needs torch >= 2.6 (restricted weights_only loading); "
                           f"torch {torch.__version__} is installed")
    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except (TypeError, pickle.UnpicklingError, ModuleNotFoundError) as e:
        raise ValueError(f"weights: refused to load {path}: not a plain ultralytics detection checkpoint "
                         f"(restricted weights_only=True load: {str(e).strip().splitlines()[0][:300]})") from e
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise ValueError(f"weights: {path} holds no ultralytics model (keys {sorted(ckpt)[:8]})")
    model = model.float()
    model.pt_path = str(path)
    model.task = getattr(model, "task", guess_model_task(model))
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
    return model.eval(), ckpt


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
        imgsz: default evaluation size of :func:`~ispbench.tasks.detection_eval.evaluate_isp` (longer side after resizing;
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
            model, ckpt = _load_ultralytics_checkpoint(path)
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
                "letterbox them first (ispbench.ops.geometry.letterbox)"
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
        outputs: tuple[torch.Tensor, dict[str, Any]] | None = None,
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
            outputs: :meth:`raw_forward` of these ``images`` when the caller already has it (an
                evaluation that also calls :meth:`predict` runs the network once, not twice).

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
        _, raw = self.raw_forward(images) if outputs is None else outputs
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
        outputs: tuple[torch.Tensor, dict[str, Any]] | None = None,
    ) -> list[torch.Tensor]:
        """Detections after NMS.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1], H, W multiples of the stride.
            conf: confidence threshold (authors: 0.001).
            iou: NMS IoU threshold (authors: 0.6).
            max_det: detections kept per image.
            multi_label: a box may carry several classes (ultralytics' validator does this).
            outputs: :meth:`raw_forward` of these ``images``, if already computed.

        Returns:
            One ``(n, 6)`` float tensor per image, rows ``x1, y1, x2, y2, score, class``, in
            pixels of the input, sorted by descending score.
        """
        from ultralytics.utils.nms import non_max_suppression

        decoded, _ = self.raw_forward(images) if outputs is None else outputs
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
