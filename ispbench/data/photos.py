"""Embedded photographs: real colour photos that ship inside installed packages.

RLPixTuner trains and evaluates on MIT-Adobe FiveK (4,500 / 500 images) and tests cross-dataset
generalisation on HDR+. Neither can ship with this project, so the ``embedded`` profile uses a
handful of real photographs that already sit in the site-packages of our dependencies
(scikit-image, scikit-learn, matplotlib, ultralytics). Sources and licences:
``data_cards/embedded_photos.md``.

Three disjoint splits, split **by image** (no photo appears in two splits, :data:`SPLITS`):

* ``train``: ``astronaut``, ``rocket``, the Middlebury stereo pair ``motorcycle_left`` and
  ``motorcycle_right`` (kept together, so no near-duplicate view leaks into another split),
  scikit-learn's ``china`` and ultralytics' ``zidane``. Training pairs are random crops, flips and
  resizes. scikit-image's microscopy and astronomy images are not used: they are not photographs
  a camera pipeline finishes.
* ``val``: scikit-learn's ``flower`` and ultralytics' ``bus``: checkpoint selection during training
  (stands in for FiveK's validation images); never in a table.
* ``test``: scikit-image ``chelsea`` and ``coffee``, matplotlib's ``grace_hopper``: the tables
  (Random-Target, the expert-like HDR+ stand-in and the projected-expert set); never used for
  training, checkpoint selection or proxy fitting.

Targets:

* Random-Target (the paper's Table 1 right half, :func:`random_target_eval_set`): the goal is
  ``finish(input, a_goal)`` with seeded uniform random slider values ``a_goal ~ U(-goal_scale, goal_scale)^9``.
* Expert-like (:func:`expert_target_eval_set`, the HDR+ stand-in): a fixed classical enhancement that
  is **not** the finishing pipeline, so the goal may be unreachable exactly, as with HDR+'s experts.
* Out-of-family retouches (:func:`retouch_outside_family`): per-channel tone curves, a hue rotation
  and a large-radius local-contrast boost, none of which the nine sliders can express;
  ``ispbench.finishing_baselines.projection`` projects them onto the pipeline (the paper's Expert-C
  projection): a reachable target set meant to be harder than Random-Target (measured there).

Example:
    >>> from ispbench.data import photos
    >>> photos.photo_names("test")
    ['chelsea', 'coffee', 'grace_hopper']
    >>> img = photos.load_photo("chelsea")            # (300, 451, 3) float32 in [0, 1]
    >>> ds = photos.PhotoCrops("train", size=64, seed=0)
    >>> x, goal, a = ds[0]                            # (3, 64, 64), (3, 64, 64), (9,)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ispbench.ops.color import luminance_np
from ispbench.ops.finishing import finish

#: name -> (package, how to load, licence note). Loading never touches the network.
_SOURCES: dict[str, tuple[str, str, str]] = {
    "astronaut": ("scikit-image", "skimage.data.astronaut", "NASA, public domain"),
    "rocket": ("scikit-image", "skimage.data.rocket", "SpaceX, public domain"),
    "motorcycle_left": ("scikit-image", "skimage.data.stereo_motorcycle[0]", "Middlebury 2014 stereo, (c) Scharstein et al., research use"),
    "motorcycle_right": ("scikit-image", "skimage.data.stereo_motorcycle[1]", "Middlebury 2014 stereo, (c) Scharstein et al., research use"),
    "chelsea": ("scikit-image", "skimage.data.chelsea", "S. van der Walt, CC0"),
    "coffee": ("scikit-image", "skimage.data.coffee", "R. Michetti, CC0"),
    "china": ("scikit-learn", "sklearn.datasets.load_sample_image('china.jpg')", "CC BY 2.0, Flickr user danielbuechele (via scikit-learn)"),
    "flower": ("scikit-learn", "sklearn.datasets.load_sample_image('flower.jpg')", "CC BY 2.0, Flickr user vultilion (via scikit-learn)"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "US Navy photograph, public domain"),
    "bus": ("ultralytics", "assets/bus.jpg", "shipped with ultralytics (AGPL-3.0 package)"),
    "zidane": ("ultralytics", "assets/zidane.jpg", "shipped with ultralytics (AGPL-3.0 package)"),
}

#: Disjoint photo splits (no photo in two splits; the stereo pair stays together in ``train``).
#: Microscopy and astronomy images of scikit-image are left out: they are not photographs a
#: camera pipeline finishes.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "china", "zidane"),
    "val": ("flower", "bus"),
    "test": ("chelsea", "coffee", "grace_hopper"),
}

N_PARAMS = 9


def photo_names(split: str | None = None) -> list[str]:
    """Names of the embedded photos, of one split (``train``/``val``/``test``) or all (in split order)."""
    if split is None:
        return [n for s in SPLITS.values() for n in s]
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return list(SPLITS[split])


def photo_source(name: str) -> dict[str, str]:
    """Package, location and licence of an embedded photo."""
    if name not in _SOURCES:
        raise ValueError(f"unknown photo {name!r}; valid: {sorted(_SOURCES)}")
    package, where, licence = _SOURCES[name]
    return {"name": name, "package": package, "location": where, "licence": licence}


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"could not read image {path}")
    return bgr[..., ::-1].copy()


@functools.lru_cache(maxsize=None)
def _load_uint8(name: str) -> np.ndarray:
    if name not in _SOURCES:
        raise ValueError(f"unknown photo {name!r}; valid: {sorted(_SOURCES)}")
    package, where, _ = _SOURCES[name]
    if package == "scikit-image":
        import skimage.data

        if name.startswith("motorcycle_"):
            img = skimage.data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
        else:
            img = getattr(skimage.data, where.split(".")[-1])()
        return np.ascontiguousarray(img[..., :3])
    if package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(f"{name}.jpg")[..., :3])
    if package == "matplotlib":
        import matplotlib

        return _read_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    if package == "ultralytics":
        try:
            import importlib.util

            spec = importlib.util.find_spec("ultralytics")
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"photo {name!r} ships with the `ultralytics` package, which is not "
                "installed: `pip install ultralytics` (a dependency of ispbench's detection tasks)"
            )
        return _read_rgb(Path(spec.origin).parent / where)
    raise AssertionError(package)


def load_photo(name: str) -> np.ndarray:
    """Load an embedded photo as float32 ``(H, W, 3)`` RGB in [0, 1] (sRGB-encoded values).

    The finishing pipeline works on display-referred images (like Lightroom's sliders), so the
    photos are used as stored, without linearisation.
    """
    return _load_uint8(name).astype(np.float32) / 255.0


def _resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = (size, size) if isinstance(size, int) else size
    interp = cv2.INTER_AREA if (h < img.shape[0] or w < img.shape[1]) else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, *, min_scale: float = 0.3,
                flip: bool = True) -> np.ndarray:
    """A random square crop (side ``U(min_scale, 1) * min(H, W)``), resized to ``size``, random h-flip."""
    h, w = img.shape[:2]
    side = int(round(rng.uniform(min_scale, 1.0) * min(h, w)))
    side = max(side, 8)
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = _resize(img[y : y + side, x : x + side], size)
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop, dtype=np.float32)


def random_goal_actions(rng: np.random.Generator, n: int, goal_scale: float = 0.5) -> np.ndarray:
    """Seeded Random-Target slider values ``U(-goal_scale, goal_scale)``, shape ``(n, 9)`` float32."""
    return rng.uniform(-goal_scale, goal_scale, size=(n, N_PARAMS)).astype(np.float32)


def _limit_side(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) <= max_side:
        return img
    f = max_side / min(h, w)
    return _resize(img, (int(round(h * f)), int(round(w * f))))


def _default_finish() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return finish


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


class PhotoCrops(torch.utils.data.Dataset):
    """Random-Target training/evaluation pairs from embedded photos.

    Item ``i`` is ``(input (3, size, size), goal (3, size, size), goal_actions (9,))`` with
    ``goal = finish(input, goal_actions)``; it is a deterministic function of ``(seed, i)``.
    :meth:`sample` draws a batch from an external ``np.random.Generator`` (what the trainer uses,
    so that its stream can be checkpointed).

    Args:
        split: ``train`` (training), ``val`` (checkpoint selection) or ``test`` (the tables).
        size: side of the square crops.
        seed: base seed of the per-item random streams.
        length: nominal ``len()`` (items are generated on the fly).
        goal_scale: half-width of the uniform distribution of goal slider values.
        min_scale: smallest crop side as a fraction of the photo's short side.
        max_side: photos are downscaled to this short side before cropping.
        finish: the pipeline ``(B,3,H,W), (B,9) -> (B,3,H,W)``; default ``ispbench.ops.finishing.finish``.
    """

    def __init__(self, split: str = "train", size: int = 64, seed: int = 0, *, length: int = 10_000,
                 goal_scale: float = 0.5, min_scale: float = 0.3, max_side: int = 384,
                 finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size}")
        self.split, self.size, self.seed, self.length = split, int(size), int(seed), int(length)
        self.goal_scale, self.min_scale = float(goal_scale), float(min_scale)
        self.names = photo_names(split)
        # Photos are first downscaled so that their short side is at most ``max_side`` (crops are
        # then resized again; keeps per-crop cost low on CPU and adds scale variety).
        self.images = [_limit_side(load_photo(n), max_side) for n in self.names]
        self._finish = finish

    @property
    def finish(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self._finish is None:
            self._finish = _default_finish()
        return self._finish

    def __len__(self) -> int:
        return self.length

    def crops(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """``n`` random crops ``(n, 3, size, size)`` (photo chosen uniformly)."""
        out = []
        for _ in range(n):
            img = self.images[int(rng.integers(len(self.images)))]
            out.append(_to_tensor(random_crop(img, self.size, rng, min_scale=self.min_scale)))
        return torch.stack(out)

    @torch.no_grad()
    def sample(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch ``(inputs (n,3,S,S), goals (n,3,S,S), goal_actions (n,9))`` from ``rng``."""
        x = self.crops(rng, n)
        a = torch.from_numpy(random_goal_actions(rng, n, self.goal_scale))
        goal = self.finish(x, a).clamp(0, 1)
        return x, goal, a

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        x, g, a = self.sample(rng, 1)
        return x[0], g[0], a[0]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for i in range(self.length):
            yield self[i]


@dataclass
class EvalSet:
    """A fixed evaluation set: ``inputs``/``goals`` ``(N, 3, S, S)``, ``goal_actions`` ``(N, 9)`` or None."""

    inputs: torch.Tensor
    goals: torch.Tensor
    goal_actions: torch.Tensor | None
    names: list[str]
    description: str

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def eval_crops(split: str, n: int, size: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """The crops every fixed evaluation set is built from: ``n`` seeded crops of the ``split`` photos.

    Photos are used round-robin (item ``i`` comes from photo ``i mod len(split)``); each crop is a
    :func:`random_crop` with scale in [0.5, 1] and a random horizontal flip, drawn from ``rng`` in
    item order.

    Args:
        split: ``train``, ``val`` or ``test``.
        n: number of crops (>= 1).
        size: side of the square crops in pixels (>= 8).
        rng: the generator the crops are drawn from (advanced by the call).

    Returns:
        ``(crops, names)``: ``n`` float32 arrays ``(size, size, 3)`` in [0, 1] (up to float rounding
        of the area resize, about 1e-7) and the photo name of each.

    Example:
        >>> crops, names = eval_crops("test", 4, 32, np.random.default_rng(0))
        >>> names
        ['chelsea', 'coffee', 'grace_hopper', 'chelsea']
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    names = photo_names(split)
    images = [load_photo(name) for name in names]
    crops, used = [], []
    for i in range(int(n)):
        k = i % len(names)
        crops.append(random_crop(images[k], int(size), rng, min_scale=0.5))
        used.append(names[k])
    return crops, used


def random_target_eval_set(split: str = "test", n: int = 32, size: int = 128, seed: int = 1234, *,
                           goal_scale: float = 0.5, finish: Callable | None = None) -> EvalSet:
    """The fixed Random-Target evaluation set: ``n`` seeded crops of the ``split`` photos.

    Crops come from :func:`eval_crops` (photos round-robin, scale in [0.5, 1]); the goal slider
    values ``U(-goal_scale, goal_scale)^9`` are drawn after them from the same ``seed``.
    """
    names = photo_names(split)
    rng = np.random.default_rng(seed)
    crops, used = eval_crops(split, n, size, rng)
    x = torch.stack([_to_tensor(crop) for crop in crops])
    a = torch.from_numpy(random_goal_actions(rng, n, goal_scale))
    fn = finish or _default_finish()
    with torch.no_grad():
        goal = fn(x, a).clamp(0, 1)
    desc = (f"embedded photos, split {split!r} ({', '.join(names)}), {n} crops at {size}x{size}, "
            f"random targets U(-{goal_scale}, {goal_scale})^9, seed {seed}")
    return EvalSet(x, goal, a, used, desc)


def expert_like_target(img: np.ndarray) -> np.ndarray:
    """A fixed classical "expert" enhancement (not the finishing pipeline), ``(H,W,3)`` -> ``(H,W,3)``.

    Grey-world white balance (half strength), auto-levels on luminance (0.5/99.5 percentiles),
    a gamma toward mid-grey mean and a +20 % saturation boost. Used as HDR+-like targets.
    """
    x = img.astype(np.float32)
    means = x.reshape(-1, 3).mean(0) + 1e-6
    gains = np.sqrt(means.mean() / means)  # half-strength grey world
    x = np.clip(x * gains, 0, 1)
    lum = luminance_np(x)
    lo, hi = np.percentile(lum, [0.5, 99.5])
    x = np.clip((x - lo) / max(hi - lo, 1e-3), 0, 1)
    lum = luminance_np(x)
    gamma = float(np.clip(np.log(0.45) / np.log(max(lum.mean(), 1e-3)), 0.6, 1.6))
    x = np.power(x, gamma)
    lum = luminance_np(x)[..., None]
    x = np.clip(lum + 1.2 * (x - lum), 0, 1)
    return x.astype(np.float32)


def expert_target_eval_set(split: str = "test", n: int = 12, size: int = 128, seed: int = 4321, *,
                           degrade: bool = True) -> EvalSet:
    """The HDR+ stand-in: crops of ``split`` photos; input = a flat, dim "camera" rendering of the
    crop (if ``degrade``: ``0.8 * crop ** 1.3``, a little desaturated), goal = :func:`expert_like_target`
    of the crop. Goals are not generated by the pipeline, so ``goal_actions`` is None.

    Crops come from :func:`eval_crops` (photos round-robin, scale in [0.5, 1], fixed by ``seed``).
    """
    names = photo_names(split)
    crops, used = eval_crops(split, n, size, np.random.default_rng(seed))
    xs, gs = [], []
    for crop in crops:
        inp = crop
        if degrade:
            inp = 0.8 * np.power(crop, 1.3)
            lum = luminance_np(inp)[..., None]
            inp = np.clip(lum + 0.85 * (inp - lum), 0, 1).astype(np.float32)
        xs.append(_to_tensor(inp))
        gs.append(_to_tensor(expert_like_target(crop)))
    packages = sorted({photo_source(name)["package"] for name in names})
    inputs = "flat 'camera' inputs" if degrade else "the crops as inputs"
    desc = (f"expert-like targets (HDR+ stand-in): split {split!r} ({', '.join(names)}; from "
            f"{', '.join(packages)}), {n} crops at {size}x{size}, {inputs}, classical expert-like "
            f"targets, seed {seed}")
    return EvalSet(torch.stack(xs), torch.stack(gs), None, used, desc)


#: Ranges of :func:`retouch_outside_family`'s random parameters (drawn uniformly).
RETOUCH_RANGES: dict[str, tuple[float, float]] = {
    "shared_log_gamma": (-0.8, 0.8),     # one power curve for all channels, gamma = exp(shared + own)
    "channel_log_gamma": (-0.5, 0.5),    # each channel's own extra log-gamma
    "channel_s_curve": (-0.9, 0.9),      # per-channel S-curve strength (< 0: inverse S, a "fade")
    "hue_degrees": (15.0, 35.0),         # |hue rotation| around the grey axis; the sign is random
    "local_contrast_amount": (0.3, 0.8),  # unsharp-mask amount
}
#: Gaussian sigma of the local-contrast blur as a fraction of the short side (8 px at 128 px).
LOCAL_CONTRAST_SIGMA_FRACTION = 1.0 / 16.0


def _reflect_index(index: np.ndarray, length: int) -> np.ndarray:
    """Mirror indices into ``[0, length)`` without repeating the edge (OpenCV's reflect-101)."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded >= length, period - folded, folded)


def _gaussian_blur_matrix(length: int, sigma: float) -> np.ndarray:
    """``(length, length)`` matrix ``M`` with ``M @ signal`` = the signal blurred by a Gaussian of ``sigma``.

    The kernel is truncated at 3 sigma and normalised; borders are mirrored (reflect-101), so every
    row sums to 1.
    """
    radius = max(int(np.ceil(3.0 * sigma)), 1)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    rows = np.repeat(np.arange(length), offsets.size)
    cols = _reflect_index(rows + np.tile(offsets, length), length)
    matrix = np.zeros((length, length))
    np.add.at(matrix, (rows, cols), np.tile(kernel, length))
    return matrix


def _hue_rotation_matrix(degrees: float) -> np.ndarray:
    """``(3, 3)`` rotation of RGB vectors by ``degrees`` around the grey axis ``(1, 1, 1) / sqrt(3)``."""
    theta = np.deg2rad(degrees)
    axis = np.ones(3) / np.sqrt(3.0)
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1.0 - np.cos(theta)) * np.outer(axis, axis)


def retouch_outside_family(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random retouch the nine-slider finishing pipeline cannot express, ``(H, W, 3)`` -> ``(H, W, 3)``.

    Three steps, each clipped to [0, 1], with parameters drawn uniformly from :data:`RETOUCH_RANGES`
    (in this order, from ``rng``):

    1. **Per-channel tone curves.** Channel ``c`` gets ``y = x ** gamma_c`` with
       ``log gamma_c = shared + own_c`` (shared in [-0.8, 0.8], own in [-0.5, 0.5], so gamma in
       about [0.27, 3.7]), then an S-curve ``y + s_c (3y^2 - 2y^3 - y)`` with ``s_c`` in [-0.9, 0.9]
       (negative: an inverse S). Both are smooth and strictly increasing (the S-curve is for any
       ``s`` in (-2, 1)). The pipeline's tone sliders act on all channels alike (or as plain gains),
       so different curves per channel are out of reach.
    2. **Hue rotation** of every RGB vector around the grey axis by ``+-`` 15..35 degrees (random
       sign; Rodrigues' formula): grey stays grey, chroma turns. The pipeline only scales channels.
    3. **Local-contrast boost**: an unsharp mask ``x + amount (x - blur(x))``, amount in [0.3, 0.8],
       with a Gaussian blur of sigma = short side / 16 (8 px at 128 px; reflect-101 borders). The
       pipeline's texture slider uses a 3x3 blur and cannot reach this radius. The blur is two dense
       ``(H, H)``/``(W, W)`` matrix products: meant for crops (quick up to about 1000 px a side).

    The strengths are above the mildest useful ones on purpose (a shared power curve, S-curves in
    both directions, up to 35 degrees of hue): with weaker retouches the projected goals
    (``ispbench.finishing_baselines.projection``) were easier for greedy search than Random-Target.

    Args:
        img: ``(H, W, 3)`` RGB in [0, 1] (float; returned as float32).
        rng: the ``np.random.Generator`` the parameters are drawn from (advanced by the call).

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].

    Example:
        >>> crop = load_photo("chelsea")[:128, :128]
        >>> retouch_outside_family(crop, np.random.default_rng(0)).shape
        (128, 128, 3)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"img must be a numpy array (H, W, 3), got {type(img).__name__} of shape {shape}")
    x = img.astype(np.float64)
    # resampling (cv2's area filter) can overshoot [0, 1] by float rounding; anything more is refused
    if not np.isfinite(x).all() or x.min() < -1e-4 or x.max() > 1.0 + 1e-4:
        raise ValueError(f"img must be finite with values in [0, 1], got range [{np.nanmin(x)}, {np.nanmax(x)}] "
                         f"and {int((~np.isfinite(x)).sum())} non-finite values")
    x = np.clip(x, 0.0, 1.0)
    ranges = RETOUCH_RANGES
    shared = rng.uniform(*ranges["shared_log_gamma"])
    gamma = np.exp(shared + rng.uniform(*ranges["channel_log_gamma"], size=3))
    s_curve = rng.uniform(*ranges["channel_s_curve"], size=3)
    x = np.power(x, gamma)
    x = np.clip(x + s_curve * (x * x * (3.0 - 2.0 * x) - x), 0.0, 1.0)

    degrees = rng.uniform(*ranges["hue_degrees"]) * rng.choice([-1.0, 1.0])
    x = np.clip(x @ _hue_rotation_matrix(degrees).T, 0.0, 1.0)

    amount = rng.uniform(*ranges["local_contrast_amount"])
    height, width = x.shape[:2]
    sigma = LOCAL_CONTRAST_SIGMA_FRACTION * min(height, width)
    planes = x.transpose(2, 0, 1)  # (3, H, W)
    blurred = _gaussian_blur_matrix(height, sigma) @ planes @ _gaussian_blur_matrix(width, sigma).T
    x = np.clip(planes + amount * (planes - blurred), 0.0, 1.0).transpose(1, 2, 0)
    return np.ascontiguousarray(x, dtype=np.float32)


def full_resolution(name: str, resolution: tuple[int, int]) -> np.ndarray:
    """Photo ``name`` resized to ``(H, W)`` (for wall-time measurements at 720p ... 4K)."""
    return _resize(load_photo(name), resolution)


RESOLUTIONS: dict[str, tuple[int, int]] = {
    "720P": (720, 1280), "1K": (1080, 1920), "2K": (1440, 2560), "4K": (2160, 3840),
}

__all__ = [
    "photo_names", "photo_source", "load_photo", "PhotoCrops", "EvalSet", "random_target_eval_set",
    "expert_target_eval_set", "expert_like_target", "random_crop", "random_goal_actions", "eval_crops",
    "retouch_outside_family", "RETOUCH_RANGES", "LOCAL_CONTRAST_SIGMA_FRACTION", "full_resolution",
    "RESOLUTIONS", "SPLITS",
]
