"""Embedded low-light detection dataset: generated scenes, a simulated raw camera, YOLO boxes.

A stand-in for LOD (AdaptiveISP's low-light raw detection set) that the project builds itself,
deterministically from a seed (1200 scenes: about 2 CPU-minutes, single process). Each *scene* (a few objects of
:data:`CLASS_NAMES` on a photo-crop or procedural background, with a smooth illumination field,
per-object shading and partial occlusion) is rendered once as linear reflectance and then
photographed twice by the simulated camera of :mod:`ispbench.data.camera`:

* ``normal`` light: 30-30,000 lux; daylight, shade, cool or warm LED, or a mix of two across
  the frame; the camera's one auto-exposure program gives 1/4700-1/25 s at ISO 100-800;
* ``low`` light: 0.02-300 lux; tungsten, sodium, warm or cool LED, shade, or mixed; 1/60-1/15 s
  at ISO 100-6400, the darkest scenes up to about 6 stops under-exposed (dark, noisy, colour-cast).

Hand shake blurs long exposures (up to about 8 px at 1/15 s).

On disk (``cache_dir()/embedded_detection/<version hash>/``)::

    info.json                         generator parameters, counts, timing, class names
    raw/{split}_{light}.npy           (N, H, W) uint16 14-bit RGGB Bayer frames (black level 512)
    meta/{split}_{light}.json         per-image metadata (iso, exposure_time, light, ...)
    labels/{split}.json               boxes per scene (the same for both lights)
    masks/{split}.npz                 ``instance_ids``: (N, H, W) uint8 instance-id maps (0 = background,
                                      k = the k-th object of the scene's label list), see ``instance_id_map``
    yolo/images/{split}/*.png         normal-light sRGB (static default ISP), for the detector
    yolo/labels/{split}/*.txt         YOLO labels ``class cx cy w h`` (normalised)
    yolo/data.yaml                    ultralytics data file
    yolo_low/images/{val,test}/*.png  low-light sRGB through the same default ISP (evaluation)
    yolo_low/labels/..., yolo_low/data.yaml
    yolo_seg/images/{split}/*.png     the same PNGs as ``yolo/`` (hard links where possible), for the segmenter
    yolo_seg/labels/{split}/*.txt     YOLO segment labels ``class x1 y1 x2 y2 ...`` (one polygon per object,
                                      holes and separate parts joined by zero-width cuts, see ``mask_polygon``)
    yolo_seg/data.yaml, yolo_seg_low/ (low-light val/test, like ``yolo_low/``)
    COMPLETE                          written last (a folder without it is never used)

Folders generated before the masks existed (same version hash: the masks change no pixel) get
``masks/`` from ``ensure_masks`` (the scenes re-rendered and checked against the stored boxes)
and ``yolo_seg*/`` from ``ensure_seg_export``; ``load_split(..., with_masks=True)`` calls the first.

Example:
    >>> ds = load_split("val", "low")                     # doctest: +SKIP
    >>> sample = ds[0]; sample["image"].shape             # doctest: +SKIP
    torch.Size([3, 160, 160])
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate_detection)  # doctest: +SKIP
    >>> load_split("val", "low", with_masks=True)[0]["masks"].shape  # doctest: +SKIP
    torch.Size([3, 160, 160])
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ispbench import atomic
from ispbench.data import camera
from ispbench.data.default_isp import default_isp
from ispbench.paths import cache_dir

#: Object classes (index = YOLO class id).
CLASS_NAMES: tuple[str, ...] = ("disc", "box", "triangle", "ring", "cross")
SPLITS: tuple[str, ...] = ("train", "val", "test")
LIGHTS: tuple[str, ...] = ("low", "normal")
#: Bump when the scene or camera model changes (part of the version hash).
GENERATOR_VERSION = 2
#: Photos (scikit-image sample data, all public domain / CC0) used as background crops.
PHOTO_BACKGROUNDS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel")
#: Mean hue (HSV, [0, 1)) of each class's colour palette; colours are jittered around it.
CLASS_HUES: tuple[float, ...] = (0.0, 0.62, 0.15, 0.80, 0.45)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines the generated data (hashed into the folder name)."""

    seed: int = 0
    image_size: int = 160
    n_train: int = 800
    n_val: int = 200
    n_test: int = 200
    min_objects: int = 1
    max_objects: int = 5
    #: Object size (bounding-circle diameter) as a fraction of the image side, log-uniform.
    min_size: float = 0.12
    max_size: float = 0.40
    #: Largest fraction of an object that earlier objects' visible parts may cover.
    max_occlusion: float = 0.35
    photo_background_prob: float = 0.6
    #: Scene illuminance ranges in lux, drawn log-uniformly. Auto-exposure then spans 1/4700-1/25 s at
    #: ISO 100-800 in normal light and 1/60-1/15 s at ISO 100-6400, up to ~6 stops under-exposed, in low light.
    normal_lux: tuple[float, float] = (30.0, 30000.0)
    low_lux: tuple[float, float] = (0.02, 300.0)
    #: Hand-shake speed during the exposure in pixels per second at 160 px, drawn log-uniformly.
    shake_px_per_s: tuple[float, float] = (10.0, 120.0)

    @property
    def counts(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "generator_version": GENERATOR_VERSION,
            "class_names": list(CLASS_NAMES),
            "photo_backgrounds": list(PHOTO_BACKGROUNDS),
            "sensor": dataclasses.asdict(camera.SENSOR),
            "exposure_program": dataclasses.asdict(camera.AUTO_PROGRAM),
            "illuminants": {k: list(v) for k, v in ILLUMINANTS.items()},
            "illuminant_mix": ILLUMINANT_MIX,
            "mixed_pairs": {k: [list(p) for p in v] for k, v in MIXED_PAIRS.items()},
        }

    def version_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def config_for(scenes: int | None = None, seed: int = 0, image_size: int = 160) -> GeneratorConfig:
    """Config with ``scenes`` in total, split 4:1:1 into train/val/test (default 1200)."""
    if scenes is None:
        return GeneratorConfig(seed=seed, image_size=image_size)
    if scenes < 3:
        raise ValueError(f"scenes must be >= 3 (train/val/test each need one), got {scenes}")
    n_val = max(1, scenes // 6)
    n_test = max(1, scenes // 6)
    return GeneratorConfig(seed=seed, image_size=image_size, n_train=scenes - n_val - n_test, n_val=n_val, n_test=n_test)


# --------------------------------------------------------------------------------------------
# Scene model
# --------------------------------------------------------------------------------------------

_PHOTO_CACHE: dict[str, np.ndarray] = {}


def _photo(name: str) -> np.ndarray:
    """A scikit-image sample image as linear float32 RGB (H, W, 3) (inverse sRGB curve)."""
    if name not in _PHOTO_CACHE:
        import skimage.data  # noqa: PLC0415

        img = getattr(skimage.data, name)().astype(np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        _PHOTO_CACHE[name] = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)
    return _PHOTO_CACHE[name]


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys  # noqa: PLC0415

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], (size, size)."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(rng: np.random.Generator, cfg: GeneratorConfig) -> tuple[np.ndarray, str]:
    """Linear reflectance background (H, W, 3) and a short description of its source."""
    s = cfg.image_size
    if rng.random() < cfg.photo_background_prob:
        name = PHOTO_BACKGROUNDS[int(rng.integers(len(PHOTO_BACKGROUNDS)))]
        img = _photo(name)
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (s, s), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if name in ("brick", "grass", "gravel"):  # grayscale textures: tint them
            crop = crop * _hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.5), 1.0)
        bg = crop * rng.uniform(0.5, 1.0)
        return np.ascontiguousarray(bg, dtype=np.float32), f"photo:{name}"
    # Procedural: two-colour gradient modulated by low-frequency noise, optional stripes.
    c0 = _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.7))
    c1 = _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.7))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    ramp = ((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.71) / 1.42
    noise = _smooth_noise(rng, s, int(rng.integers(3, 9)))
    mix = np.clip(0.6 * ramp + 0.4 * noise, 0, 1)[..., None]
    bg = c0 * (1 - mix) + c1 * mix
    kind = "gradient"
    if rng.random() < 0.4:
        period = rng.uniform(0.04, 0.15)
        a2 = rng.uniform(0, math.pi)
        stripes = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * ((xx * math.cos(a2) + yy * math.sin(a2)) / period)))
        bg = bg * (1.0 - rng.uniform(0.15, 0.45) * stripes[..., None])
        kind = "stripes"
    grain = 1.0 + 0.08 * (rng.random((s, s, 1)).astype(np.float32) - 0.5)
    return np.ascontiguousarray(bg * grain, dtype=np.float32), f"procedural:{kind}"


def _object_mask(cls: int, rng: np.random.Generator, cfg: GeneratorConfig, ss: int = 4) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 in [0, 1] of one object of class ``cls``."""
    s = cfg.image_size
    diam = math.exp(rng.uniform(math.log(cfg.min_size), math.log(cfg.max_size))) * s
    r = diam / 2
    cx = rng.uniform(r, s - r)
    cy = rng.uniform(r, s - r)
    rot = rng.uniform(0, 2 * math.pi)
    # Draw super-sampled in a local window around the object, then area-downsample.
    x0 = max(int(math.floor(cx - r)) - 2, 0)
    y0 = max(int(math.floor(cy - r)) - 2, 0)
    x1 = min(int(math.ceil(cx + r)) + 2, s)
    y1 = min(int(math.ceil(cy + r)) + 2, s)
    canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    cx, cy = cx - x0, cy - y0
    shift = 4  # cv2 sub-pixel bits
    scale = ss * (1 << shift)

    def pts(poly: np.ndarray) -> np.ndarray:
        c, si = math.cos(rot), math.sin(rot)
        x = poly[:, 0] * c - poly[:, 1] * si + cx
        y = poly[:, 0] * si + poly[:, 1] * c + cy
        return np.round(np.stack([x, y], 1) * scale).astype(np.int32)

    name = CLASS_NAMES[cls]
    if name == "disc":
        cv2.circle(canvas, (round(cx * scale), round(cy * scale)), round(r * scale), 255, -1, cv2.LINE_8, shift)
    elif name == "ring":
        cv2.circle(canvas, (round(cx * scale), round(cy * scale)), round(r * scale), 255, -1, cv2.LINE_8, shift)
        inner = r * rng.uniform(0.45, 0.62)
        cv2.circle(canvas, (round(cx * scale), round(cy * scale)), round(inner * scale), 0, -1, cv2.LINE_8, shift)
    elif name == "box":
        aspect = rng.uniform(0.6, 1.0)
        half = r / math.sqrt(1 + aspect**2)
        poly = np.array([[-half, -half * aspect], [half, -half * aspect], [half, half * aspect], [-half, half * aspect]])
        cv2.fillPoly(canvas, [pts(poly)], 255, cv2.LINE_8, shift)
    elif name == "triangle":
        angles = np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.2, 0.2, 3)
        radii = r * rng.uniform(0.85, 1.0, 3)
        poly = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [pts(poly)], 255, cv2.LINE_8, shift)
    elif name == "cross":
        arm = r * rng.uniform(0.32, 0.45)
        length = r * 0.95
        for poly in (
            np.array([[-length, -arm / 2], [length, -arm / 2], [length, arm / 2], [-length, arm / 2]]),
            np.array([[-arm / 2, -length], [arm / 2, -length], [arm / 2, length], [-arm / 2, length]]),
        ):
            cv2.fillPoly(canvas, [pts(poly)], 255, cv2.LINE_8, shift)
    else:  # pragma: no cover - CLASS_NAMES and this function must agree
        raise AssertionError(name)
    out = np.zeros((s, s), np.float32)
    out[y0:y1, x0:x1] = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return out


def _object_albedo(cls: int, rng: np.random.Generator, s: int, mask: np.ndarray) -> np.ndarray:
    """Linear albedo (H, W, 3) of an object: class palette colour, shading gradient, texture."""
    hue = CLASS_HUES[cls] + rng.normal(0.0, 0.04)
    colour = _hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.45, 0.95))
    colour = np.where(colour <= 0.04045, colour / 12.92, ((colour + 0.055) / 1.055) ** 2.4)  # to linear
    ys, xs = np.nonzero(mask > 0.5)
    cy, cx = (ys.mean(), xs.mean()) if len(ys) else (s / 2, s / 2)
    extent = max(np.ptp(ys) if len(ys) else 1, np.ptp(xs) if len(xs) else 1, 1)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    shade = 0.8 + 0.35 * ((xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)) / extent
    shade = np.clip(shade, 0.45, 1.15)
    texture = 1.0 + 0.1 * (_smooth_noise(rng, s, 24) - 0.5)
    return (colour[None, None, :] * (shade * texture)[..., None]).astype(np.float32)


def render_scene(cfg: GeneratorConfig, split: str, index: int) -> dict[str, Any]:
    """Render one scene's linear reflectance (light-independent) and its boxes.

    Deterministic in ``(cfg.seed, split, index)`` and independent of generation order.

    Returns:
        ``{"reflectance": (3, H, W) float32, "illumination": (H, W) float32 in [0.35, 1],
        "boxes": (N, 4) cx, cy, w, h normalised, "labels": (N,) int64, "masks": (N, H, W)
        float32 visible coverage, "background": str}``
    """
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index, 1])
    s = cfg.image_size
    img, background = _background(rng, cfg)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects: list[tuple[int, np.ndarray]] = []  # (class, coverage)
    occupied = np.zeros((s, s), np.float32)
    for _ in range(n):
        cls = int(rng.integers(len(CLASS_NAMES)))
        for _attempt in range(20):
            cov = _object_mask(cls, rng, cfg)
            area = cov.sum()
            if area > 0 and (cov * occupied).sum() / area <= cfg.max_occlusion:
                break
        else:
            continue
        albedo = _object_albedo(cls, rng, s, cov)
        img = img * (1 - cov[..., None]) + albedo * cov[..., None]
        objects.append((cls, cov))
        occupied = np.maximum(occupied, cov)
    # Visible coverage: what later (front) objects leave of each object.
    visible = []
    front = np.zeros((s, s), np.float32)
    for cls, cov in reversed(objects):
        visible.append((cls, cov * (1 - front)))
        front = np.maximum(front, cov)
    visible.reverse()
    boxes, labels, masks = [], [], []
    for cls, vis in visible:
        ys, xs = np.nonzero(vis > 0.5)
        if len(ys) < 16:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        boxes.append([(x0 + x1) / 2 / s, (y0 + y1) / 2 / s, (x1 - x0) / s, (y1 - y0) / s])
        labels.append(cls)
        masks.append(vis)
    # Smooth illumination field: a soft spotlight and a linear falloff, in [0.35, 1].
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    px, py = rng.uniform(0, 1, 2)
    spot = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * rng.uniform(0.25, 0.6) ** 2))
    illum = 0.35 + 0.65 * (rng.uniform(0.3, 0.7) + 0.5 * spot)
    illum = np.clip(illum / illum.max(), 0.35, 1.0).astype(np.float32)
    return {
        "reflectance": np.ascontiguousarray(np.clip(img, 0, 1).transpose(2, 0, 1), dtype=np.float32),
        "illumination": illum,
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, np.int64),
        "masks": np.asarray(masks, np.float32).reshape(-1, s, s),
        "background": background,
    }


# Illuminants: RGB multipliers of a white reflector (normalised to green = 1 when used).
ILLUMINANTS: dict[str, tuple[float, float, float]] = {
    "daylight": (1.0, 1.0, 1.0),
    "shade": (0.85, 1.0, 1.22),  # overcast / open shade, about 7500 K
    "tungsten": (1.0, 0.62, 0.32),
    "sodium": (1.0, 0.55, 0.12),  # low-pressure-like sodium street light
    "warm_led": (1.0, 0.78, 0.52),
    "cool_led": (0.9, 1.0, 0.98),  # 5000 K white LED with its green-heavy spectrum
}
#: Which illuminants each light condition draws, with probabilities; ``mixed`` blends two of the
#: others across the frame (a window and a lamp): ``(probability, first, second)``.
ILLUMINANT_MIX: dict[str, dict[str, float]] = {
    "normal": {"daylight": 0.5, "shade": 0.15, "cool_led": 0.15, "warm_led": 0.1, "mixed": 0.1},
    "low": {"tungsten": 0.2, "sodium": 0.2, "warm_led": 0.2, "cool_led": 0.15, "shade": 0.1, "mixed": 0.15},
}
MIXED_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "normal": (("daylight", "tungsten"), ("daylight", "warm_led"), ("shade", "cool_led")),
    "low": (("tungsten", "cool_led"), ("sodium", "shade"), ("warm_led", "cool_led")),
}


def _illuminant_field(light: str, rng: np.random.Generator, s: int) -> tuple[np.ndarray, str]:
    """Per-pixel illuminant colour (3, H, W), normalised to a mean green of 1, and its name."""
    names = list(ILLUMINANT_MIX[light])
    probs = np.array([ILLUMINANT_MIX[light][n] for n in names])
    name = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    jitter = rng.uniform(0.93, 1.07, 3)
    if name != "mixed":
        colour = np.asarray(ILLUMINANTS[name]) * jitter
        field = np.broadcast_to((colour / colour[1])[:, None, None], (3, s, s))
        return np.ascontiguousarray(field, dtype=np.float32), name
    pairs = MIXED_PAIRS[light]
    first, second = pairs[int(rng.integers(len(pairs)))]
    c0 = np.asarray(ILLUMINANTS[first]) / ILLUMINANTS[first][1]
    c1 = np.asarray(ILLUMINANTS[second]) / ILLUMINANTS[second][1]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.clip(((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle)) * rng.uniform(1.5, 4.0) + 0.5, 0, 1)
    field = (c0[:, None, None] * (1 - ramp) + c1[:, None, None] * ramp) * jitter[:, None, None]
    return (field / field[1].mean()).astype(np.float32), f"mixed:{first}+{second}"


def _motion_blur(radiance: np.ndarray, length_px: float, angle: float) -> np.ndarray:
    """Blur ``(3, H, W)`` along a line of ``length_px`` pixels (hand shake during the exposure)."""
    if length_px < 0.5:
        return radiance
    size = int(math.ceil(length_px)) | 1
    kernel = np.zeros((size * 4, size * 4), np.float32)  # drawn 4x super-sampled, then area-averaged
    c = size * 2 - 0.5
    dx, dy = math.cos(angle) * length_px * 2, math.sin(angle) * length_px * 2
    cv2.line(kernel, (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16)), 1.0, 4,
             cv2.LINE_AA, 4)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    kernel /= max(float(kernel.sum()), 1e-8)
    return np.stack([cv2.filter2D(ch, -1, kernel, borderType=cv2.BORDER_REFLECT101) for ch in radiance]).astype(np.float32)


def photograph(scene: dict[str, Any], light: str, cfg: GeneratorConfig, split: str, index: int) -> tuple[np.ndarray, dict]:
    """Photograph a rendered scene with the simulated camera under ``light`` ("low"/"normal").

    The scene illuminance is log-uniform in the light's lux range, the illuminant is drawn from
    :data:`ILLUMINANT_MIX` (``mixed`` = two illuminants blended across the frame), the camera's
    :data:`~ispbench.data.camera.AUTO_PROGRAM` picks shutter and ISO, and hand shake of
    ``cfg.shake_px_per_s`` (log-uniform, at 160 px) blurs the frame by ``rate x exposure time`` pixels.

    Returns:
        ``(raw (H, W) uint16, meta dict)``.
    """
    if light not in LIGHTS:
        raise ValueError(f"light must be one of {LIGHTS}, got {light!r}")
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index, 2 + LIGHTS.index(light)])
    lo, hi = cfg.normal_lux if light == "normal" else cfg.low_lux
    s = cfg.image_size
    illuminant, illuminant_name = _illuminant_field(light, rng, s)
    lux = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    radiance = scene["reflectance"] * scene["illumination"][None] * illuminant
    metered = float(radiance[1].mean() * camera.SENSOR.sensitivity[1])
    t, iso = camera.auto_exposure(max(metered, 1e-4), lux, camera.AUTO_PROGRAM)
    shake = math.exp(rng.uniform(math.log(cfg.shake_px_per_s[0]), math.log(cfg.shake_px_per_s[1]))) * s / 160.0
    blur_px = shake * t
    radiance = _motion_blur(radiance, blur_px, rng.uniform(0, math.pi))
    raw = camera.capture(radiance, lux, t, iso, rng)
    # How far below the metering target the frame is (0 = well exposed; > 0 = stops too dark).
    wanted = camera.AUTO_PROGRAM.target * (camera.SENSOR.white_level - camera.SENSOR.black_level)
    got = metered * lux * t * camera.SENSOR.electrons_per_lux_second * camera.SENSOR.dn_per_electron_base * iso / 100.0
    meta = {
        "scene_id": f"{split}_{index:05d}",
        "iso": iso,
        "exposure_time": t,
        "light": lux,
        "light_condition": light,
        "illuminant": illuminant_name,
        "illuminant_rgb": [round(float(v), 5) for v in illuminant.reshape(3, -1).mean(1)],
        "motion_blur_px": round(float(blur_px), 3),
        "underexposure_ev": round(max(math.log2(wanted / max(got, 1e-9)), 0.0), 3),
        "background": scene["background"],
        "black_level": camera.SENSOR.black_level,
        "white_level": camera.SENSOR.white_level,
        "pattern": camera.SENSOR.pattern,
    }
    return raw, meta


# --------------------------------------------------------------------------------------------
# Instance masks and segment (polygon) labels
# --------------------------------------------------------------------------------------------

#: Key of the instance-id maps in ``masks/{split}.npz``.
MASKS_KEY = "instance_ids"
#: Super-sampling of ``mask_polygon``'s contour tracing (outline within ``1 / (2 * 4)`` px of the pixel edges).
POLYGON_UPSAMPLE = 4


def instance_id_map(masks: np.ndarray) -> np.ndarray:
    """Visible coverages of a scene's objects -> one instance-id map.

    A pixel belongs to the object with the largest visible coverage where that coverage is
    above 0.5 (at most one object can exceed 0.5: the objects in front of it cover less than
    half of the pixel), else to the background. The pixels of object ``k`` are exactly its
    ``coverage > 0.5`` pixels, the ones its box is tight around (:func:`render_scene`).

    Args:
        masks: ``(N, H, W)`` float visible coverage in [0, 1] (``render_scene(...)["masks"]``), N <= 255.

    Returns:
        ``(H, W)`` uint8: 0 = background, ``k`` = the ``k``-th object (1-based, the label order).

    Example:
        >>> cov = np.zeros((2, 4, 4), np.float32); cov[0, :2] = 1.0; cov[1, 1:3] = 0.9; cov[1, 1] = 0.0
        >>> instance_id_map(cov)[:, 0].tolist()
        [1, 1, 2, 0]
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks: expected (N, H, W) coverages, got shape {masks.shape}")
    if len(masks) > 255:
        raise ValueError(f"masks: at most 255 objects fit a uint8 instance-id map, got {len(masks)}")
    if len(masks) == 0:
        return np.zeros(masks.shape[1:], np.uint8)
    best = masks.argmax(0)
    return np.where(masks.max(0) > 0.5, best + 1, 0).astype(np.uint8)


def masks_from_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """``(H, W)`` instance-id map -> ``(n, H, W)`` bool masks of objects ``1 .. n``.

    Example:
        >>> masks_from_ids(np.array([[0, 1], [2, 2]], np.uint8), 2).sum((1, 2)).tolist()
        [1, 2]
    """
    return np.asarray(ids)[None] == np.arange(1, n + 1, dtype=np.int64)[:, None, None]


def _nearest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices ``(i, j)`` of the closest points ``a[i]``, ``b[j]`` of two ``(n, 2)`` point lists."""
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def _splice(polygon: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Join a closed ``ring`` into a closed ``polygon`` along a zero-width cut between their closest points.

    The result walks ``polygon`` to the cut, once around ``ring`` and back along the same cut, so
    an even-odd fill (OpenCV's ``fillPoly``, ultralytics' ``polygon2mask``) leaves a hole where
    ``ring`` is a hole and fills it where ``ring`` is a separate part.
    """
    i, j = _nearest_pair(polygon, ring)
    return np.concatenate([polygon[: i + 1], np.roll(ring, -j, axis=0), ring[j : j + 1], polygon[i:]])


def mask_polygon(mask: np.ndarray, upsample: int = POLYGON_UPSAMPLE) -> np.ndarray:
    """One instance mask -> one closed polygon outlining it, holes and separate parts included.

    The mask is super-sampled ``upsample`` times (nearest) and its outer and hole contours
    traced (OpenCV, ``RETR_CCOMP``), simplified by at most ``0.1`` px (Douglas-Peucker), then
    each hole is spliced into its outer contour and every further part into the largest one
    with zero-width cuts (``_splice``; ultralytics labels hold one polygon per object). A
    rasterised cut is a line of pixels, so a detached part smaller (in pixels) than its cut is
    long is left out (a sliver that occlusion cut off). The outline runs within
    ``1 / (2 * upsample)`` px of the pixel edges, so the polygon's bounding box is the mask's
    tight box to that tolerance (``polygon2mask`` of ultralytics gives the mask back exactly
    where no cut or left-out sliver intervenes; ``tests/data/test_synthetic_detection.py``).

    Args:
        mask: ``(H, W)`` bool, at least one pixel set.
        upsample: super-sampling factor of the tracing.

    Returns:
        ``(P, 2)`` float64 points ``x, y`` in continuous pixel coordinates (pixel ``(row i, column j)``
        spans ``[j, j + 1] x [i, i + 1]``); divide by ``(W, H)`` for a YOLO label.

    Example:
        >>> m = np.zeros((8, 8), bool); m[2:6, 1:7] = True
        >>> p = mask_polygon(m); (p.min(0).round(3).tolist(), p.max(0).round(3).tolist())
        ([1.125, 2.125], [6.875, 5.875])
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected (H, W), got shape {mask.shape}")
    if not mask.any():
        raise ValueError("mask: empty (no pixel set); an object needs at least one pixel for a polygon")
    big = np.repeat(np.repeat(mask.astype(np.uint8), upsample, 0), upsample, 1)
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    rings = [cv2.approxPolyDP(c, 0.1 * upsample, True).reshape(-1, 2).astype(np.float64) for c in contours]
    parent = hierarchy.reshape(-1, 4)[:, 3]
    outers = [k for k in range(len(rings)) if parent[k] < 0]
    parts = []
    for k in outers:
        polygon = rings[k]
        for h in (h for h in range(len(rings)) if parent[h] == k):
            polygon = _splice(polygon, rings[h])
        parts.append((cv2.contourArea(contours[k].astype(np.float32)), polygon))
    parts.sort(key=lambda part: -part[0])
    polygon = parts[0][1]
    for area, part in parts[1:]:
        i, j = _nearest_pair(polygon, part)
        if area <= upsample * float(np.hypot(*(polygon[i] - part[j]))):
            continue  # the cut's 1-px line (in a rasterised label) would cost more pixels than the part holds
        polygon = _splice(polygon, part)
    return (polygon + 0.5) / upsample


def segment_label_lines(ids: np.ndarray, labels: Any) -> str:
    """YOLO segment label file text of one scene: one line ``class x1 y1 x2 y2 ...`` (normalised) per object.

    Args:
        ids: ``(H, W)`` instance-id map (``instance_id_map``).
        labels: ``(N,)`` class ids of objects ``1 .. N``.
    """
    h, w = ids.shape
    lines = []
    for k, cls in enumerate(np.asarray(labels).reshape(-1).tolist()):
        poly = mask_polygon(ids == k + 1) / np.array([w, h], np.float64)
        lines.append(f"{int(cls)} " + " ".join(f"{v:.6f}" for v in np.clip(poly, 0.0, 1.0).reshape(-1)) + "\n")
    return "".join(lines)


def _save_masks(target: Path, ids: np.ndarray) -> None:
    """Write ``(N, H, W)`` uint8 instance-id maps to ``target`` (``.npz``, compressed) atomically."""
    with atomic.atomic_open(target, "wb") as handle:
        np.savez_compressed(handle, **{MASKS_KEY: np.ascontiguousarray(ids, dtype=np.uint8)})


def load_masks(path: str | os.PathLike, split: str) -> np.ndarray:
    """``(N, H, W)`` uint8 instance-id maps of ``split`` from the dataset folder ``path``.

    Raises:
        FileNotFoundError: ``masks/{split}.npz`` missing (the message says how to write it).
        ValueError: the file holds no ``instance_ids`` array of shape (N, H, W).
    """
    file = Path(path) / "masks" / f"{split}.npz"
    if not file.exists():
        raise FileNotFoundError(
            f"{file} missing: this dataset was generated before instance masks were stored. Write them with "
            f"`ispbench.data.synthetic_detection.ensure_masks({str(Path(path))!r})` (re-renders the scenes, "
            "about 20 s per 1200), or load with `load_split(..., with_masks=True)`, which does it"
        )
    with np.load(file) as data:
        if MASKS_KEY not in data.files:
            raise ValueError(f"{file}: expected an array {MASKS_KEY!r}, found {data.files}")
        ids = data[MASKS_KEY]
    if ids.ndim != 3 or ids.dtype != np.uint8:
        raise ValueError(f"{file}: {MASKS_KEY!r} must be (N, H, W) uint8, got {ids.shape} {ids.dtype}")
    return ids


def config_from_info(info: dict[str, Any], where: str | os.PathLike = "info.json") -> GeneratorConfig:
    """The :class:`GeneratorConfig` recorded in a dataset's ``info.json`` (its ``config`` entry)."""
    recorded = info.get("config")
    if not isinstance(recorded, dict):
        raise ValueError(f"{where}: expected a 'config' object with the generator parameters")
    fields = {f.name: f for f in dataclasses.fields(GeneratorConfig)}
    missing = sorted(set(fields) - set(recorded))
    if missing:
        raise ValueError(f"{where}: 'config' lacks the generator parameters {missing}")
    values = {name: tuple(recorded[name]) if isinstance(recorded[name], list) else recorded[name] for name in fields}
    return GeneratorConfig(**values)


def ensure_masks(path: str | os.PathLike) -> Path:
    """Write ``masks/{split}.npz`` into a complete dataset folder that lacks them (a no-op otherwise).

    Re-renders every scene from the generator parameters in ``info.json`` (scenes are
    deterministic; about 15 ms each), checks that the re-rendered labels and boxes are the ones in
    ``labels/{split}.json`` and writes each split's instance-id maps atomically.

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: not a complete dataset folder.
        ValueError: a re-rendered scene differs from ``labels/{split}.json`` (the generator no longer
            reproduces this dataset; the message names the file and the scene).
    """
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path}: not a complete embedded-detection dataset (no COMPLETE file)")
    cfg: GeneratorConfig | None = None
    for split in SPLITS:
        target = path / "masks" / f"{split}.npz"
        if target.exists():
            continue
        if cfg is None:
            cfg = config_from_info(json.loads((path / "info.json").read_text()), path / "info.json")
        labels_file = path / "labels" / f"{split}.json"
        entries = json.loads(labels_file.read_text())
        ids = np.zeros((len(entries), cfg.image_size, cfg.image_size), np.uint8)
        for i, entry in enumerate(entries):
            scene = render_scene(cfg, split, i)
            boxes = np.round(scene["boxes"], 6)
            stored = np.asarray(entry["boxes"], np.float64).reshape(-1, 4)
            if scene["labels"].tolist() != list(entry["labels"]) or boxes.shape != stored.shape or not np.allclose(boxes, stored, atol=2e-6):
                raise ValueError(
                    f"{labels_file}: scene {entry.get('scene_id', i)} (index {i}) re-rendered from {path / 'info.json'} "
                    f"gives labels {scene['labels'].tolist()} and boxes {boxes.tolist()}, but the file holds labels "
                    f"{entry['labels']} and boxes {entry['boxes']}: this generator no longer reproduces the dataset, so "
                    "its masks cannot be re-made. Regenerate it (`ispbench data generate embedded-detection --force`)."
                )
            ids[i] = instance_id_map(scene["masks"])
        _save_masks(target, ids)
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)


def _write_data_yaml(base: Path, final: Path, splits: tuple[str, ...], train_images: Path, version: str) -> None:
    """ultralytics ``data.yaml`` of the export folder ``base`` that will live at ``final``."""
    lines = [f"# Generated by ispbench.data.synthetic_detection (version {version})"]
    lines.append(f"path: {final}")
    lines.append("train: " + ("images/train" if "train" in splits else str(train_images)))
    lines.append("val: images/val")
    lines.append("test: images/test")
    lines.append(f"nc: {len(CLASS_NAMES)}")
    lines.append("names:")
    lines += [f"  {k}: {v}" for k, v in enumerate(CLASS_NAMES)]
    atomic.write_text(base / "data.yaml", "\n".join(lines) + "\n")


def _write_seg_export(data: Path, dest: Path, final: Path, version: str) -> None:
    """Write ``yolo_seg/`` and ``yolo_seg_low/`` into ``dest`` from the masks, labels and PNGs in ``data``.

    ``final`` is the dataset folder the exports will live in (their ``data.yaml`` paths).
    """
    for base_name, image_source, splits in (("yolo_seg", "yolo", SPLITS), ("yolo_seg_low", "yolo_low", ("val", "test"))):
        base = dest / base_name
        for split in splits:
            (base / "images" / split).mkdir(parents=True, exist_ok=True)
            (base / "labels" / split).mkdir(parents=True, exist_ok=True)
            ids = load_masks(data, split)
            entries = json.loads((data / "labels" / f"{split}.json").read_text())
            if len(ids) != len(entries):
                raise ValueError(f"{data / 'masks' / f'{split}.npz'}: {len(ids)} masks for {len(entries)} scenes in labels/{split}.json")
            for i, entry in enumerate(entries):
                stem = entry["scene_id"]
                src = data / image_source / "images" / split / f"{stem}.png"
                if not src.exists():
                    raise FileNotFoundError(f"{src} missing: the dataset folder {data} is incomplete; regenerate it")
                _link_or_copy(src, base / "images" / split / f"{stem}.png")
                (base / "labels" / split / f"{stem}.txt").write_text(segment_label_lines(ids[i], entry["labels"]))
        _write_data_yaml(base, final / base_name, splits, final / "yolo_seg" / "images" / "train", version)


def ensure_seg_export(path: str | os.PathLike) -> Path:
    """The ultralytics segmentation export ``yolo_seg/data.yaml`` of a dataset folder, written if missing.

    Writes the masks first if needed (``ensure_masks``), then ``yolo_seg/`` (the normal-light
    PNGs of ``yolo/`` with polygon labels) and ``yolo_seg_low/`` (low-light val/test, like
    ``yolo_low/``) into a temporary folder, renamed into place (``yolo_seg/`` last: once it
    exists, both are complete).

    Returns:
        The path of ``yolo_seg/data.yaml``.
    """
    path = ensure_masks(path)
    final = path / "yolo_seg"
    if (final / "data.yaml").exists():
        return final / "data.yaml"
    info = json.loads((path / "info.json").read_text())
    tmp = path / f".tmp-seg-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        _write_seg_export(path, tmp, path, info["version"])
        for name in ("yolo_seg_low", "yolo_seg"):
            if (final / "data.yaml").exists():  # a concurrent writer finished first
                break
            if (path / name).exists():  # an incomplete copy left by a crash
                shutil.rmtree(path / name, ignore_errors=True)
            os.rename(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "data.yaml"


# --------------------------------------------------------------------------------------------
# Generation and caching
# --------------------------------------------------------------------------------------------


def default_root() -> Path:
    """``cache_dir()/embedded_detection``: parent of the version-hash folders."""
    return cache_dir() / "embedded_detection"


def dataset_dir(cfg: GeneratorConfig, root: str | os.PathLike | None = None) -> Path:
    """Folder of the dataset generated with ``cfg`` (it may not exist yet)."""
    return Path(root or default_root()) / cfg.version_hash()


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / "COMPLETE").exists()


def generate(
    cfg: GeneratorConfig | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
    verbose: bool = False,
) -> Path:
    """Generate the dataset for ``cfg`` (default: :class:`GeneratorConfig()`), or re-use it.

    Written into a temporary sibling folder and renamed into place when complete, so a crash
    never leaves a half-written dataset that looks usable.

    Args:
        cfg: generator parameters.
        root: parent folder of the version-hash folders (default :func:`default_root`).
        force: regenerate even if a complete copy exists.
        verbose: print progress.

    Returns:
        The dataset folder ``root/<version hash>``.
    """
    cfg = cfg or GeneratorConfig()
    out = dataset_dir(cfg, root)
    if is_complete(out) and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # one generator per dataset at a time: a second notebook (ispbench run --jobs) waits, then reuses the copy
    with open(out.parent / f".{out.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(out) and not force:
            return out
        return _write_dataset(cfg, out, force=force, verbose=verbose)


def _write_dataset(cfg: GeneratorConfig, out: Path, *, force: bool, verbose: bool) -> Path:
    """:func:`generate`'s work, with its lock held: render every split into a temporary folder, rename it to ``out``."""
    _remove_stale_tmp(out)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        for sub in ("raw", "meta", "labels", "masks"):
            (tmp / sub).mkdir()
        s = cfg.image_size
        for split, n in cfg.counts.items():
            raws = {light: np.zeros((n, s, s), np.uint16) for light in LIGHTS}
            ids = np.zeros((n, s, s), np.uint8)
            metas: dict[str, list[dict]] = {light: [] for light in LIGHTS}
            labels_json = []
            yolo_dirs = {"normal": tmp / "yolo"} | ({"low": tmp / "yolo_low"} if split != "train" else {})
            for base in yolo_dirs.values():
                (base / "images" / split).mkdir(parents=True, exist_ok=True)
                (base / "labels" / split).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                scene = render_scene(cfg, split, i)
                ids[i] = instance_id_map(scene["masks"])
                stem = f"{split}_{i:05d}"
                label_txt = "".join(
                    f"{int(c)} {b[0]:.6f} {b[1]:.6f} {b[2]:.6f} {b[3]:.6f}\n" for c, b in zip(scene["labels"], scene["boxes"], strict=True)
                )
                labels_json.append(
                    {"scene_id": stem, "labels": scene["labels"].tolist(), "boxes": np.round(scene["boxes"], 6).tolist()}
                )
                for light in LIGHTS:
                    raw, meta = photograph(scene, light, cfg, split, i)
                    raws[light][i] = raw
                    metas[light].append(meta)
                    if light in yolo_dirs:
                        srgb = default_isp(camera.raw_to_linear(raw)[None])[0]
                        png = (srgb.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
                        base = yolo_dirs[light]
                        cv2.imwrite(str(base / "images" / split / f"{stem}.png"), png[..., ::-1])
                        (base / "labels" / split / f"{stem}.txt").write_text(label_txt)
                if verbose and (i + 1) % 100 == 0:
                    print(f"  {split}: {i + 1}/{n} scenes ({time.perf_counter() - start:.0f} s)", flush=True)
            for light in LIGHTS:
                np.save(tmp / "raw" / f"{split}_{light}.npy", raws[light])
                atomic.write_json(tmp / "meta" / f"{split}_{light}.json", metas[light])
            atomic.write_json(tmp / "labels" / f"{split}.json", labels_json)
            _save_masks(tmp / "masks" / f"{split}.npz", ids)
        for base, splits in ((tmp / "yolo", SPLITS), (tmp / "yolo_low", ("val", "test"))):
            _write_data_yaml(base, out / base.name, splits, out / "yolo" / "images" / "train", cfg.version_hash())
        _write_seg_export(tmp, tmp, out, cfg.version_hash())
        elapsed = time.perf_counter() - start
        atomic.write_json(
            tmp / "info.json",
            {
                "name": "embedded-detection",
                "version": cfg.version_hash(),
                "config": cfg.to_dict(),
                "counts": cfg.counts,
                "image_size": [cfg.image_size, cfg.image_size],
                "class_names": list(CLASS_NAMES),
                "generation_time_s": round(elapsed, 2),
            },
        )
        (tmp / "COMPLETE").write_text(f"{elapsed:.2f}\n")
        # generate() holds the lock and found no complete copy (or was forced): what is here is stale
        if out.exists():
            shutil.rmtree(out)
        try:
            os.rename(tmp, out)
        except OSError:
            if not is_complete(out):  # pragma: no cover - lost a race with nothing usable
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _remove_stale_tmp(out: Path) -> None:
    """Delete temporary folders of ``out`` left by generator processes that no longer run."""
    for tmp in out.parent.glob(f".tmp-{out.name}-*"):
        try:
            pid = int(tmp.name.split("-")[2])
            os.kill(pid, 0)  # raises if no such process
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def ensure_dataset(root: str | os.PathLike | None = None, cfg: GeneratorConfig | None = None) -> Path:
    """The dataset folder: ``root`` itself if it holds a complete dataset, else generate ``cfg``
    under ``root`` (or the cache) and return it."""
    if root is not None and (Path(root) / "info.json").exists():
        if not is_complete(root):
            raise FileNotFoundError(f"{root} is an incomplete embedded-detection dataset (no COMPLETE file); delete it and regenerate")
        return Path(root)
    return generate(cfg, root=root)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class EmbeddedDetection(torch.utils.data.Dataset):
    """One split of the embedded detection set in one light condition.

    Items are dicts like the real raw loaders':
    ``image`` (3, H, W) float32 linear camera RGB in [0, 1] (black level subtracted, normalised
    by the white level, bilinear-demosaiced, no white balance); ``boxes`` (N, 4) float32
    normalised ``cx, cy, w, h``; ``labels`` (N,) int64; ``meta`` dict with ``iso``,
    ``exposure_time`` (s), ``light`` (lux), ``scene_id`` and more. With ``with_masks=True`` also
    ``masks`` (N, H, W) bool instance masks, one per box (from ``masks/{split}.npz``, read once
    on first use; ``ensure_masks`` writes it for a folder generated before masks existed).
    """

    def __init__(self, path: str | os.PathLike, split: str, light: str, *, with_masks: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if light not in LIGHTS:
            raise ValueError(f"light must be one of {LIGHTS}, got {light!r}")
        self.path = Path(path)
        self.split, self.light = split, light
        raw_file = self.path / "raw" / f"{split}_{light}.npy"
        if not raw_file.exists():
            raise FileNotFoundError(f"{raw_file} missing: regenerate with `ispbench data generate embedded-detection`")
        self._raw_file = raw_file
        self._raw: np.ndarray | None = None
        self.meta = json.loads((self.path / "meta" / f"{split}_{light}.json").read_text())
        self.targets = json.loads((self.path / "labels" / f"{split}.json").read_text())
        if not len(self.raw) == len(self.meta) == len(self.targets):
            raise ValueError(f"{self.path}: raw/meta/labels counts disagree for {split}/{light}")
        self.class_names = CLASS_NAMES
        self.with_masks = bool(with_masks)
        self._ids: np.ndarray | None = None
        if self.with_masks:
            self._masks_file = self.path / "masks" / f"{split}.npz"
            if not self._masks_file.exists():
                load_masks(self.path, split)  # raises, saying how to write them

    @property
    def instance_ids(self) -> np.ndarray:
        """``(N, H, W)`` uint8 instance-id maps of the split (``with_masks=True`` only; loaded once)."""
        if not self.with_masks:
            raise AttributeError("instance_ids: this EmbeddedDetection was opened without with_masks=True")
        if self._ids is None:
            ids = load_masks(self.path, self.split)
            if ids.shape[0] != len(self.targets) or ids.shape[1:] != self.raw.shape[1:]:
                raise ValueError(f"{self._masks_file}: instance-id maps {ids.shape} do not match {len(self.targets)} scenes "
                                 f"of {self.raw.shape[1:]} pixels; delete the file and run ensure_masks({str(self.path)!r})")
            self._ids = ids
        return self._ids

    @property
    def raw(self) -> np.ndarray:
        """``(N, H, W)`` uint16 Bayer frames, memory-mapped (opened lazily, once per process)."""
        if self._raw is None:
            self._raw = np.load(self._raw_file, mmap_mode="r")
        return self._raw

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers re-open the memory map
        state = dict(self.__dict__)
        state["_raw"] = None
        state["_ids"] = None
        return state

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        raw = np.asarray(self.raw[index], dtype=np.float32)
        target = self.targets[index]
        item = {
            "image": camera.raw_to_linear(raw).contiguous(),
            "boxes": torch.tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(target["labels"], dtype=torch.int64),
            "meta": dict(self.meta[index]),
        }
        if self.with_masks:
            ids = self.instance_ids[index]
            n = len(target["labels"])
            if int(ids.max(initial=0)) > n:
                raise ValueError(f"{self._masks_file}: image {index} has instance id {int(ids.max())} but "
                                 f"labels/{self.split}.json lists {n} objects")
            item["masks"] = torch.from_numpy(masks_from_ids(ids, n))
        return item


def load_split(split: str, light: str, root: str | os.PathLike | None = None, *, with_masks: bool = False) -> EmbeddedDetection:
    """Load a split of the embedded detection dataset, generating it (cached) if needed.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        light: ``"low"`` or ``"normal"``.
        root: a dataset folder (one holding ``info.json``), or a parent folder to generate the
            default configuration under, or ``None`` for ``cache_dir()/embedded_detection``.
        with_masks: items also hold ``masks`` (N, H, W) bool; writes the folder's masks first if it
            predates them (``ensure_masks``).

    Returns:
        A :class:`EmbeddedDetection` torch Dataset.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if light not in LIGHTS:
        raise ValueError(f"light must be one of {LIGHTS}, got {light!r}")
    path = ensure_dataset(root)
    if with_masks:
        ensure_masks(path)
    return EmbeddedDetection(path, split, light, with_masks=with_masks)


def collate_detection(batch: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into ``(images (B, 3, H, W), targets (N, 6))``.

    ``targets`` rows are ``batch_index, class, cx, cy, w, h`` (normalised), the ultralytics
    batch format.
    """
    if not batch:
        raise ValueError("collate_detection got an empty batch")
    images = torch.stack([b["image"] for b in batch])
    rows = []
    for i, b in enumerate(batch):
        n = len(b["labels"])
        rows.append(torch.cat([torch.full((n, 1), float(i)), b["labels"].float().view(n, 1), b["boxes"].float().view(n, 4)], 1))
    return images, torch.cat(rows, 0) if rows else torch.zeros((0, 6))
