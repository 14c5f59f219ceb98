"""Quick start: one call per task with the shipped models, for your own photos and raw files.

* :func:`load_image` / :func:`save_image`: an sRGB file <-> a ``(3, H, W)`` float tensor in [0, 1].
* :func:`tune_photo`: RLPixTuner's tuning loop (the shipped ``ispbench/weights/rlpixtuner_td3bc.pt``)
  tunes the 9 sliders of the finishing pipeline so that a photo matches a goal look.
* :func:`process_raw`: AdaptiveISP (the shipped policy ``ispbench/weights/adaptiveisp_embedded.pt``)
  picks an ISP pipeline for a raw file (DNG, CR2, NEF, ...) or a linear RGB image, and the
  embedded detector (``ispbench/weights/embedded_yolo.pt``) finds objects in the result.
* :func:`write_linear_dng`: write a linear RGB image as a DNG (a test raw file for :func:`process_raw`),
  with a documented default colour matrix and neutral, or those of :func:`ispbench.ops.raw.unprocess`.

Example:
    >>> from ispbench import quickstart as qs
    >>> photo = qs.load_image("photo.png")                          # doctest: +SKIP
    >>> traj = qs.tune_photo(photo, (photo * 1.2).clamp(0, 1))      # doctest: +SKIP
    >>> qs.save_image(traj.best[0], "tuned.png")                    # doctest: +SKIP
    >>> result = qs.process_raw("shot.dng")                         # doctest: +SKIP
    >>> result.pipeline[0]                                          # doctest: +SKIP
    {'stage': 0, 'module': 'ccm', 'params': [...]}

The shipped checkpoints are small models trained on the project's embedded data (see their model
cards, ``ispbench/weights/*.md``): they show the methods working, not the papers' numbers.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch

from ispbench.atomic import atomic_open
from ispbench.methods.adaptiveisp.inference import DEFAULT_WEIGHTS as ADAPTIVEISP_WEIGHTS
from ispbench.methods.adaptiveisp.inference import load_policy, run_policy
from ispbench.methods.rlpixtuner import shipped_weights
from ispbench.methods.rlpixtuner.inference import Policy, Trajectory, tune
from ispbench.ops.checks import require_finite
from ispbench.ops.dng import XYZ_TO_LINEAR_SRGB, read_raw_linear, write_dng
from ispbench.ops.geometry import boxes_from_letterbox, letterbox
from ispbench.ops.raw import mosaic
from ispbench.tasks.detection_eval import PAD_VALUE
from ispbench.tasks.detector import FrozenDetector

__all__ = [
    "load_image", "save_image", "tune_photo", "process_raw", "write_linear_dng", "RawResult", "Detections",
    "DEFAULT_NEUTRAL", "DEFAULT_COLOR_MATRIX", "Trajectory",
]

#: :func:`write_linear_dng`'s default DNG ``ColorMatrix1`` (XYZ D65 -> camera): "camera RGB = linear sRGB".
DEFAULT_COLOR_MATRIX = XYZ_TO_LINEAR_SRGB
#: :func:`write_linear_dng`'s default DNG ``AsShotNeutral``: (1, 1, 1), "the image is already white-balanced".
DEFAULT_NEUTRAL = (1.0, 1.0, 1.0)
#: File types :func:`load_image` reads (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


# -- images ---------------------------------------------------------------------------------------
def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an sRGB image file as a ``(3, H, W)`` float32 tensor in [0, 1] (RGB order).

    Reads PNG, JPEG and TIFF, 8-bit (divided by 255) or 16-bit (divided by 65535); float TIFFs are
    taken as they are and must lie in [0, 1]. Grey images are repeated to three channels; an alpha
    channel is dropped. No colour management: the values are taken as sRGB.

    Args:
        path: the image file.

    Returns:
        ``(3, H, W)`` float32 in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PNG/JPEG/TIFF, or the file cannot be decoded (corrupt, truncated); the
            message names the file.

    Example:
        >>> img = load_image("photo.png")                  # doctest: +SKIP
        >>> img.shape, img.dtype
        (torch.Size([3, 512, 768]), torch.float32)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: image file not found: {path}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"load_image: {path}: expected a PNG, JPEG or TIFF file ({', '.join(IMAGE_SUFFIXES)}), "
                         f"got suffix {path.suffix!r}")
    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise ValueError(f"load_image: cannot decode {path} ({data.size} bytes): not a readable PNG/JPEG/TIFF "
                         "(corrupt or truncated file?)")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    else:
        raise ValueError(f"load_image: {path}: expected 1, 3 or 4 channels, got {arr.shape[2]}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"load_image: {path}: a float image must be finite and in [0, 1], "
                             f"got range [{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]")
    else:
        raise ValueError(f"load_image: {path}: unsupported sample type {arr.dtype} (expected 8- or 16-bit)")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def save_image(image: torch.Tensor, path: str | os.PathLike, *, bits: int = 8) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, 3, H, W)``) image in [0, 1] as an 8- or 16-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded. The file is written to a temporary file and renamed
    (:func:`ispbench.atomic.atomic_open`), so an interrupted call never leaves half a file.

    Args:
        image: ``(3, H, W)`` or ``(1, 3, H, W)`` float tensor, sRGB in [0, 1].
        path: target file; must end in ``.png``.
        bits: 8 or 16.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_image: path must end in .png, got {path}")
    if bits not in (8, 16):
        raise ValueError(f"save_image: bits must be 8 or 16, got {bits!r}")
    x = _as_chw("image", image)
    require_finite("image", x)
    scale, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    arr = (x.detach().cpu().double().clamp(0, 1).permute(1, 2, 0).numpy() * scale).round().astype(dtype)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"save_image: OpenCV could not encode a PNG for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())
    return path


def _as_chw(name: str, image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (3, H, W), got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{name}: expected shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    return image


def _as_batch(name: str, image: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    """A path or a (3, H, W) / (B, 3, H, W) tensor in [0, 1] -> (B, 3, H, W) float32."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a file path or a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    require_finite(name, image)
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError(f"{name}: values must be in [0, 1], got [{float(image.min()):.4g}, {float(image.max()):.4g}]")
    return image.float()


# -- RLPixTuner -----------------------------------------------------------------------------------
#: The shipped policy ``tune_photo`` uses by default (see its ``checkpoint`` argument).
QUICKSTART_POLICY = "rlpixtuner_td3bc.pt"

@functools.lru_cache(maxsize=4)
def _rlpixtuner_policy(path: str) -> Policy:
    return Policy.load(path)


def tune_photo(image: torch.Tensor | str | os.PathLike, goal: torch.Tensor | str | os.PathLike, steps: int = 10,
               checkpoint: str | os.PathLike = "", *, keep_images: bool = False) -> Trajectory:
    """Tune the finishing pipeline's 9 sliders so that ``image`` looks like ``goal`` (RLPixTuner).

    The policy makes ``steps`` black-box queries of the pipeline, starting from neutral sliders;
    see :func:`ispbench.methods.rlpixtuner.inference.tune` and :class:`Trajectory` for what comes back.

    Args:
        image: the photo: a file path or a ``(3, H, W)`` / ``(B, 3, H, W)`` tensor in [0, 1].
        goal: the look to reach, the same size as ``image`` (path or tensor).
        steps: pipeline queries (at most the policy's ``max_steps``, 10 for the shipped one).
        checkpoint: a policy file (``policy.pt`` of ``ispbench train rlpixtuner``); ``""``: the shipped
            ``ispbench/weights/rlpixtuner_td3bc.pt``, TD3 with a regression toward the goal's sliders in
            the absolute MDP: the only shipped policy that improves on the input (about +8 dB on the test
            pairs). The pure-TD3 policies of the paper's method (``rlpixtuner_embedded_seed*.pt``) make
            images worse at the budget a CPU allowed (model card ``ispbench/weights/rlpixtuner_embedded.md``).
        keep_images: also return every intermediate image (``Trajectory.images``).

    Returns:
        A :class:`Trajectory` with ``B = 1`` for one image: ``best`` ``(1, 3, H, W)``, ``best_psnr``
        ``(1,)``, ``actions`` ``(steps, 1, 9)`` ...
    """
    x, g = _as_batch("image", image), _as_batch("goal", goal)
    if x.shape != g.shape:
        raise ValueError(f"goal: must have the shape of image {tuple(x.shape)}, got {tuple(g.shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    path = str(checkpoint) if str(checkpoint) else str(shipped_weights(QUICKSTART_POLICY))
    return tune(_rlpixtuner_policy(path), x, g, steps=steps, keep_images=keep_images)


# -- AdaptiveISP ----------------------------------------------------------------------------------
@dataclass
class Detections:
    """Objects found in one image by the detector.

    Attributes:
        boxes: ``(n, 4)`` float ``x1, y1, x2, y2`` in pixels of the image, by descending score.
        scores: ``(n,)`` confidences in [0, 1].
        classes: ``(n,)`` long class indices.
        names: ``n`` class names (``detector.names[class]``).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class RawResult:
    """What :func:`process_raw` returns for one image.

    Attributes:
        image: ``(3, H, W)`` the AdaptiveISP output, sRGB in [0, 1] (save it with :func:`save_image`).
        pipeline: per stage ``{"stage": t, "module": name, "params": [floats]}`` (as
            :func:`~ispbench.methods.adaptiveisp.inference.run_policy` gives it; a STOP ends it early).
        detections: :class:`Detections` on ``image`` (``None`` when ``detect=False``).
        linear: ``(3, H, W)`` the linear RGB input the policy saw.
        metadata: the raw file's metadata from :func:`~ispbench.ops.dng.read_raw_linear` (``{}`` for a tensor).
    """

    image: torch.Tensor
    pipeline: list[dict]
    detections: Detections | None
    linear: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=4)
def _adaptiveisp_policy(path: str):
    return load_policy(path)


@functools.lru_cache(maxsize=2)
def _detector(path: str) -> FrozenDetector:
    return FrozenDetector(path or None)


def process_raw(path_or_linear: str | os.PathLike | torch.Tensor, checkpoint: str | os.PathLike = "",
                detect: bool = True, *, conf: float = 0.25, iou: float = 0.6, detector: str | os.PathLike = "",
                white_balance: str | Sequence[float] = "camera") -> RawResult:
    """Process a raw file (or linear RGB) with the shipped AdaptiveISP policy; optionally detect objects.

    A file is decoded by :func:`ispbench.ops.dng.read_raw_linear` (rawpy/LibRaw, linear sRGB
    primaries, the camera's white balance, AHD demosaic). The policy then picks, per stage, one ISP
    module and its parameters (greedy, 5 stages). With ``detect``, the output is letterboxed to the
    detector's training size (grey padding, as in evaluation), detected, and the boxes mapped back
    to pixels of the output.

    Args:
        path_or_linear: a raw file (DNG, CR2, NEF, ARW, ...) or a linear RGB tensor ``(3, H, W)`` /
            ``(1, 3, H, W)`` in [0, 1].
        checkpoint: an AdaptiveISP policy file; ``""``: the shipped ``adaptiveisp_embedded.pt``.
        detect: run the detector on the output.
        conf: detection confidence threshold (0.25 for looking at detections; mAP evaluation uses 0.001).
        iou: NMS IoU threshold.
        detector: an ultralytics detection checkpoint; ``""``: the embedded detector.
        white_balance: for a file, :func:`read_raw_linear`'s ``white_balance``.

    Returns:
        A :class:`RawResult`: ``image`` ``(3, H, W)``, ``pipeline``, ``detections``, ``linear``, ``metadata``.
    """
    metadata: dict[str, Any] = {}
    if isinstance(path_or_linear, (str, os.PathLike)):
        rgb, metadata = read_raw_linear(path_or_linear, white_balance=white_balance)
        linear = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    elif isinstance(path_or_linear, torch.Tensor):
        linear = _as_batch("path_or_linear", path_or_linear)
        if linear.shape[0] != 1:
            raise ValueError(f"path_or_linear: one image (3, H, W) or (1, 3, H, W), got {tuple(path_or_linear.shape)}")
        linear = linear[0]
    else:
        raise TypeError(f"path_or_linear: expected a raw file path or a torch.Tensor, got {type(path_or_linear).__name__}")
    policy = _adaptiveisp_policy(str(checkpoint) if str(checkpoint) else str(ADAPTIVEISP_WEIGHTS))
    run = run_policy(policy, linear[None].float())
    out = run.outputs[0].cpu()
    detections = _detect(out, str(detector), conf=conf, iou=iou) if detect else None
    return RawResult(out, run.pipelines[0], detections, linear, metadata)


def _detect(image: torch.Tensor, weights: str, *, conf: float, iou: float) -> Detections:
    det = _detector(weights)
    size = int(det.train_args.get("imgsz", det.imgsz))
    lb, layout = letterbox(image[None], size, pad_value=PAD_VALUE, stride=det.stride)
    with torch.no_grad():
        d = det.predict(lb.to(det.device), conf=conf, iou=iou, multi_label=False)[0].cpu()
    d = boxes_from_letterbox(d, layout)
    classes = d[:, 5].long()
    return Detections(d[:, :4], d[:, 4], classes, [det.names[int(c)] for c in classes])


# -- test raw files -------------------------------------------------------------------------------
def write_linear_dng(
    path: str | os.PathLike,
    linear: torch.Tensor,
    *,
    rgb2cam: torch.Tensor | np.ndarray | None = None,
    gains: torch.Tensor | Sequence[float] | None = None,
    unprocess_metadata: Mapping[str, Any] | None = None,
    pattern: str = "RGGB",
    black_level: int = 0,
    white_level: int = 65535,
    **dng_tags: Any,
) -> Path:
    """Write a linear RGB image as a Bayer DNG that :func:`process_raw` and any raw reader decode.

    The image is mosaicked (``pattern``), scaled to counts ``black_level + x * (white_level -
    black_level)``, rounded and written with :func:`ispbench.ops.dng.write_dng` (atomically).

    Colour: by default the image is taken as **linear sRGB, already white-balanced**: the DNG's
    ``ColorMatrix1`` is :data:`DEFAULT_COLOR_MATRIX` (XYZ D65 -> linear sRGB, i.e. "camera RGB =
    linear sRGB") and its ``AsShotNeutral`` is :data:`DEFAULT_NEUTRAL` (1, 1, 1). Reading it back
    with ``read_raw_linear(path)`` then gives the image again (up to demosaicking). For camera RGB
    made by :func:`ispbench.ops.raw.unprocess` (``mosaic_output=False``) pass its metadata
    (``unprocess_metadata=meta``, or ``rgb2cam=meta["rgb2cam"]`` and ``gains=meta["gains"]``): the
    colour matrix becomes ``rgb2cam @ XYZ_TO_LINEAR_SRGB`` and the neutral ``1 / gains``, so a raw
    reader undoes the simulated camera's colour and white balance.

    Args:
        path: target ``.dng`` file.
        linear: ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]; H and W even and >= 22.
        rgb2cam: ``(3, 3)`` linear sRGB -> camera matrix (``None``: identity).
        gains: ``(3,)`` forward white-balance gains of the camera (``None``: no gains, neutral (1, 1, 1)).
        unprocess_metadata: the metadata dict :func:`~ispbench.ops.raw.unprocess` returned (its first sample).
        pattern: Bayer layout, RGGB, BGGR, GRBG or GBRG.
        black_level, white_level: the counts of 0 and 1.
        **dng_tags: passed on to :func:`~ispbench.ops.dng.write_dng` (``iso``, ``exposure_time``, ``camera``).

    Returns:
        The path written.

    Example:
        >>> write_linear_dng("test.dng", torch.rand(3, 64, 96) ** 2.2)      # doctest: +SKIP
        PosixPath('test.dng')
    """
    x = _as_chw("linear", linear).detach().cpu().double()
    require_finite("linear", x)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"linear: values must be in [0, 1], got [{float(x.min()):.4g}, {float(x.max()):.4g}]")
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or h < 22 or w < 22:
        raise ValueError(f"linear: H and W must be even and >= 22 for a Bayer DNG, got (3, {h}, {w}); crop it first")
    if unprocess_metadata is not None:
        if rgb2cam is not None or gains is not None:
            raise ValueError("write_linear_dng: give unprocess_metadata or rgb2cam/gains, not both")
        rgb2cam, gains = unprocess_metadata["rgb2cam"], unprocess_metadata["gains"]
    m = np.eye(3) if rgb2cam is None else np.asarray(torch.as_tensor(rgb2cam).detach().cpu().double()).reshape(-1, 3, 3)[0]
    color_matrix = m @ np.asarray(XYZ_TO_LINEAR_SRGB) if rgb2cam is not None else DEFAULT_COLOR_MATRIX
    if gains is None:
        neutral: Sequence[float] = DEFAULT_NEUTRAL
    else:
        g = np.asarray(torch.as_tensor(gains).detach().cpu().double()).reshape(-1, 3)[0]
        if (g <= 0).any():
            raise ValueError(f"gains: must be 3 positive numbers, got {g.tolist()}")
        neutral = tuple(float(v) for v in 1.0 / g)
    bayer = mosaic(x[None], pattern)[0, 0].numpy()
    counts = np.round(black_level + bayer * (white_level - black_level)).astype(np.uint16)
    return write_dng(path, counts, pattern=pattern, black_level=black_level, white_level=white_level,
                     as_shot_neutral=neutral, color_matrix=color_matrix, **dng_tags)
