"""Embedded photographs: real colour photos that ship inside installed packages.

RLPixTuner trains and evaluates on MIT-Adobe FiveK (4,500 / 500 images) and tests cross-dataset
generalisation on HDR+. Neither can ship with this project, so the ``embedded`` profile uses a
handful of real photographs that already sit in the site-packages of our dependencies. Sources
and licences: ``data_cards/embedded_photos.md``.

Three disjoint splits, split **by image** (no photo appears in two splits):

* ``train``: scikit-image ``astronaut``, ``rocket``, ``motorcycle_left``, ``immunohistochemistry``,
  ``hubble_deep_field``, ``retina``. Training pairs are random crops, flips and resizes.
* ``heldout``: scikit-image ``chelsea`` and ``coffee``: never used for training or for proxy
  fitting; stands in for the FiveK validation images.
* ``heldout2``: the "second held-out source" standing in for HDR+: photos from *other packages*
  (matplotlib's ``grace_hopper.jpg``; ultralytics' ``bus.jpg`` and ``zidane.jpg``), with
  "expert-like" targets made by a fixed classical enhancement that is **not** the finishing
  pipeline (so, as with HDR+'s expert targets, the goal may be unreachable exactly).

Random-Target (the paper's Table 1 right half): the goal is ``finish(input, a_goal)`` with seeded
uniform random slider values ``a_goal ~ U(-goal_scale, goal_scale)^9``.

Example:
    >>> from ispbench.data import photos
    >>> photos.photo_names("heldout")
    ['chelsea', 'coffee']
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
    "immunohistochemistry": ("scikit-image", "skimage.data.immunohistochemistry", "CMMI, no known copyright restrictions"),
    "hubble_deep_field": ("scikit-image", "skimage.data.hubble_deep_field", "NASA, public domain"),
    "retina": ("scikit-image", "skimage.data.retina", "M. Haggstrom, CC0"),
    "chelsea": ("scikit-image", "skimage.data.chelsea", "S. van der Walt, CC0"),
    "coffee": ("scikit-image", "skimage.data.coffee", "R. Michetti, CC0"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "US Navy photograph, public domain"),
    "bus": ("ultralytics", "assets/bus.jpg", "shipped with ultralytics (AGPL-3.0 package)"),
    "zidane": ("ultralytics", "assets/zidane.jpg", "shipped with ultralytics (AGPL-3.0 package)"),
}

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "motorcycle_left", "immunohistochemistry", "hubble_deep_field", "retina"),
    "heldout": ("chelsea", "coffee"),
    "heldout2": ("grace_hopper", "bus", "zidane"),
}

N_PARAMS = 9


def photo_names(split: str | None = None) -> list[str]:
    """Names of the embedded photos, of one split (``train``/``heldout``/``heldout2``) or all."""
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

        if name == "motorcycle_left":
            img = skimage.data.stereo_motorcycle()[0]
        else:
            img = getattr(skimage.data, where.split(".")[-1])()
        return np.ascontiguousarray(img[..., :3])
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
                f"photo {name!r} of the heldout2 split ships with the `ultralytics` package, which is not "
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
        split: ``train``, ``heldout`` or ``heldout2``.
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


def random_target_eval_set(split: str = "heldout", n: int = 32, size: int = 128, seed: int = 1234, *,
                           goal_scale: float = 0.5, finish: Callable | None = None) -> EvalSet:
    """The fixed Random-Target evaluation set: ``n`` seeded crops of the ``split`` photos.

    Photos are used round-robin, crops are random (scale in [0.5, 1]) but fixed by ``seed``.
    """
    names = photo_names(split)
    rng = np.random.default_rng(seed)
    imgs = [load_photo(nm) for nm in names]
    xs, used = [], []
    for i in range(n):
        k = i % len(names)
        xs.append(_to_tensor(random_crop(imgs[k], size, rng, min_scale=0.5)))
        used.append(names[k])
    x = torch.stack(xs)
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


def expert_target_eval_set(split: str = "heldout2", n: int = 12, size: int = 128, seed: int = 4321, *,
                           degrade: bool = True) -> EvalSet:
    """The HDR+ stand-in: crops of ``split`` photos; input = a flat, dim "camera" rendering of the
    crop (if ``degrade``: ``0.8 * crop ** 1.3``, a little desaturated), goal = :func:`expert_like_target`
    of the crop. Goals are not generated by the pipeline, so ``goal_actions`` is None.
    """
    names = photo_names(split)
    rng = np.random.default_rng(seed)
    imgs = [load_photo(nm) for nm in names]
    xs, gs, used = [], [], []
    for i in range(n):
        k = i % len(names)
        crop = random_crop(imgs[k], size, rng, min_scale=0.5)
        inp = crop
        if degrade:
            inp = 0.8 * np.power(crop, 1.3)
            lum = luminance_np(inp)[..., None]
            inp = np.clip(lum + 0.85 * (inp - lum), 0, 1).astype(np.float32)
        xs.append(_to_tensor(inp))
        gs.append(_to_tensor(expert_like_target(crop)))
        used.append(names[k])
    desc = (f"second held-out source (HDR+ stand-in): {', '.join(names)} from matplotlib/ultralytics, "
            f"{n} crops at {size}x{size}, flat 'camera' inputs, classical expert-like targets, seed {seed}")
    return EvalSet(torch.stack(xs), torch.stack(gs), None, used, desc)


def full_resolution(name: str, resolution: tuple[int, int]) -> np.ndarray:
    """Photo ``name`` resized to ``(H, W)`` (for wall-time measurements at 720p ... 4K)."""
    return _resize(load_photo(name), resolution)


RESOLUTIONS: dict[str, tuple[int, int]] = {
    "720P": (720, 1280), "1K": (1080, 1920), "2K": (1440, 2560), "4K": (2160, 3840),
}

__all__ = [
    "photo_names", "photo_source", "load_photo", "PhotoCrops", "EvalSet", "random_target_eval_set",
    "expert_target_eval_set", "expert_like_target", "random_crop", "random_goal_actions",
    "full_resolution", "RESOLUTIONS", "SPLITS",
]
