"""IRPO's expert reward: a 1-5 quality judge, and NIQE, the no-reference stand-in that runs here.

IRPO's authors score each restoration with a vision-language model (Qwen-VL) prompted as an
image-restoration expert and shown the degraded input, the restoration and the ground truth; the
reply, an integer from 1 to 5, becomes the expert reward ``(score - 1) / 4`` in [0, 1]
(:func:`expert_reward`). Any object with a ``name`` and ``__call__(degraded, restored, clean) -> (B,)``
is a judge (:class:`ExpertJudge`). Two are provided:

* :class:`VLMJudge`: the paper's judge, a local vision-language model loaded with ``transformers``
  (optional: ``pip install "ispbench[vlm]"``). It never downloads: the model must be a local folder,
  else :class:`JudgeUnavailable` says what is missing.
* :class:`NIQEJudge`: the embedded stand-in. It maps NIQE linearly to [1, 5] so that the median
  NIQE of clean validation crops scores 5 and that of degraded ones scores 1
  (:meth:`NIQEJudge.calibrate`). It is **no-reference**: it looks at the restoration only, where
  the paper's judge also sees the degraded input and the ground truth.

NIQE (Mittal, Soundararajan and Bovik 2013, "Making a completely blind image quality analyzer"),
as implemented here:

1. grayscale = the project's luminance ``0.27 R + 0.67 G + 0.06 B`` (the paper's code uses
   ``rgb2gray``), scaled to [0, 255];
2. MSCN coefficients ``(I - mu) / (sigma + 1)`` with ``mu``, ``sigma`` the local mean and standard
   deviation under a 7x7 Gaussian window of standard deviation 7/6 (replicated borders);
3. the image is cropped to a whole number of non-overlapping ``P x P`` patches (``P = patch_size``,
   default 32 for this project's 64-128 px crops; the paper uses 96); the same is done on the 2x
   area-downsampled image with ``P/2`` patches, so both scales share one patch grid;
4. per patch and scale, 18 features: a GGD fit of the MSCN values (shape, variance) and AGGD fits
   (shape, mean, left variance, right variance) of the products of horizontally, vertically and
   diagonally (both diagonals) adjacent MSCN values, all by moment matching; 36 features a patch;
5. the pristine model (:func:`fit_niqe`) is the mean and covariance of the features of sharp
   patches of clean images: a patch is kept when its sharpness, the mean local ``sigma``, exceeds
   ``sharpness_fraction`` (0.75 in the paper) of its image's sharpest patch;
6. an image's score (:func:`niqe`) is ``sqrt((mu_p - mu_t)^T ((S_p + S_t) / 2)^+ (mu_p - mu_t))``,
   ``mu_t``, ``S_t`` the mean and covariance of all its patches' features, ``^+`` the
   pseudo-inverse. Lower is more natural.

Flat patches (MSCN variance below :data:`FLAT_VARIANCE`, e.g. clipped sky) and patches whose
products have no value of one sign have undefined features: :func:`niqe_features` returns NaN rows
for them and fitting and scoring leave them out, as the reference code's ``nanmean``/``nancov`` do.
An image with fewer than two defined patches is refused; nothing returns a default score.

NIQE is computed in NumPy/OpenCV without gradient (a reward, not a loss).

Example:
    >>> import torch
    >>> from ispbench.data.photos import load_photo
    >>> photo = load_photo("astronaut")                          # (512, 512, 3) in [0, 1]
    >>> model = fit_niqe([photo], patch_size=32, sharpness_fraction=0.0)
    >>> x = torch.from_numpy(photo[:128, :128]).permute(2, 0, 1)[None]
    >>> niqe(x, model).shape
    torch.Size([1])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ispbench.ops.checks import require_finite
from ispbench.ops.color import luminance_np

#: Features per patch: 18 at each of two scales.
N_FEATURES = 36
#: The MSCN stabilising constant ``C`` (images in 0-255).
MSCN_C = 1.0
#: Gaussian window of the local mean and deviation: 7x7, standard deviation 7/6.
MSCN_WINDOW, MSCN_SIGMA = 7, 7.0 / 6.0
#: A patch whose MSCN variance is below this is flat (e.g. clipped): its features are undefined.
FLAT_VARIANCE = 1e-8
#: How far outside [0, 1] an image value may stray (float rounding) before it is refused.
RANGE_TOLERANCE = 1e-3

# Shape grid of the moment-matching fits: 0.2 .. 10 in steps of 0.001 (as the reference code).
_ALPHA = np.arange(0.2, 10.0 + 1e-9, 0.001)
_LG1 = np.array([math.lgamma(1.0 / a) for a in _ALPHA])
_LG2 = np.array([math.lgamma(2.0 / a) for a in _ALPHA])
_LG3 = np.array([math.lgamma(3.0 / a) for a in _ALPHA])
#: GGD: E[x^2] / E[|x|]^2 = G(1/a) G(3/a) / G(2/a)^2, decreasing in a (reversed for np.interp).
_GGD_RATIO = np.exp(_LG1 + _LG3 - 2.0 * _LG2)
#: AGGD: G(2/a)^2 / (G(1/a) G(3/a)), increasing in a.
_AGGD_RATIO = np.exp(2.0 * _LG2 - _LG1 - _LG3)
#: AGGD mean factor G(2/a) / sqrt(G(1/a) G(3/a)): mean = (sigma_r - sigma_l) * factor.
_AGGD_MEAN = np.exp(_LG2 - 0.5 * (_LG1 + _LG3))


def _invert(ratio: np.ndarray, grid_ratio: np.ndarray) -> np.ndarray:
    """Shape ``a`` with ``grid_ratio(a) = ratio`` (clamped to the grid); NaN where ``ratio`` is not finite."""
    increasing = grid_ratio[-1] > grid_ratio[0]
    xs, ys = (grid_ratio, _ALPHA) if increasing else (grid_ratio[::-1], _ALPHA[::-1])
    ok = np.isfinite(ratio)
    out = np.full(ratio.shape, np.nan)
    out[ok] = np.interp(ratio[ok], xs, ys)
    return out


def ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean generalized Gaussian fit by moment matching, along the last axis.

    ``rho = E[x^2] / E[|x|]^2`` is matched to ``G(1/a) G(3/a) / G(2/a)^2`` on the grid
    ``a in [0.2, 10]`` (step 0.001, linear interpolation). A Gaussian has ``a = 2``, a Laplacian ``a = 1``.

    Args:
        x: ``(..., N)`` samples.

    Returns:
        ``(shape, variance)``, each ``(...)``; ``variance = E[x^2]``. NaN where ``E[x^2] <`` :data:`FLAT_VARIANCE`.

    Example:
        >>> a, v = ggd_fit(np.random.default_rng(0).standard_normal(100_000))
        >>> round(float(a), 1), round(float(v), 1)
        (2.0, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    var = np.mean(x * x, axis=-1)
    mean_abs = np.mean(np.abs(x), axis=-1)
    flat = var < FLAT_VARIANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(flat, np.nan, var / np.where(flat, 1.0, mean_abs) ** 2)
    shape = _invert(np.asarray(rho, dtype=np.float64), _GGD_RATIO)
    return shape, np.where(flat, np.nan, var)


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalized Gaussian fit by moment matching (Lasmar et al. 2009), along the last axis.

    ``sigma_l^2 = mean(x^2 | x < 0)``, ``sigma_r^2 = mean(x^2 | x > 0)``, ``g = sigma_l / sigma_r``,
    ``r = E[|x|]^2 / E[x^2]`` and ``R = r (g^3 + 1)(g + 1) / (g^2 + 1)^2`` is matched to
    ``G(2/a)^2 / (G(1/a) G(3/a))``; the mean is ``(sigma_r - sigma_l) G(2/a) / sqrt(G(1/a) G(3/a))``.

    Args:
        x: ``(..., N)`` samples.

    Returns:
        ``(shape, mean, left variance, right variance)``, each ``(...)``; NaN where one side has no
        sample or ``E[x^2] <`` :data:`FLAT_VARIANCE`.
    """
    x = np.asarray(x, dtype=np.float64)
    sq = x * x
    neg, pos = x < 0, x > 0
    n_neg, n_pos = neg.sum(-1), pos.sum(-1)
    second = sq.mean(-1)
    bad = (n_neg == 0) | (n_pos == 0) | (second < FLAT_VARIANCE)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_l = np.where(bad, np.nan, (sq * neg).sum(-1) / np.maximum(n_neg, 1))
        var_r = np.where(bad, np.nan, (sq * pos).sum(-1) / np.maximum(n_pos, 1))
        sig_l, sig_r = np.sqrt(var_l), np.sqrt(var_r)
        g = sig_l / sig_r
        r = np.abs(x).mean(-1) ** 2 / second
        big_r = r * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2
    shape = _invert(np.asarray(big_r, dtype=np.float64), _AGGD_RATIO)
    factor = np.full(shape.shape, np.nan)
    ok = np.isfinite(shape)
    factor[ok] = np.interp(shape[ok], _ALPHA, _AGGD_MEAN)
    return shape, (sig_r - sig_l) * factor, var_l, var_r


def mscn(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients of a 0-255 grayscale image.

    Returns ``(mscn, sigma)``, both ``(H, W)`` float64: ``(I - mu) / (sigma + C)`` and the local
    standard deviation (7x7 Gaussian window, sigma 7/6, replicated borders, ``C = 1``).
    """
    img = np.asarray(gray, dtype=np.float64)
    k = (MSCN_WINDOW, MSCN_WINDOW)
    mu = cv2.GaussianBlur(img, k, MSCN_SIGMA, borderType=cv2.BORDER_REPLICATE)
    mu2 = cv2.GaussianBlur(img * img, k, MSCN_SIGMA, borderType=cv2.BORDER_REPLICATE)
    sigma = np.sqrt(np.maximum(mu2 - mu * mu, 0.0))
    return (img - mu) / (sigma + MSCN_C), sigma


def _blocks(x: np.ndarray, p: int) -> np.ndarray:
    """``(gh * p, gw * p)`` -> ``(gh * gw, p, p)`` non-overlapping patches, row-major."""
    gh, gw = x.shape[0] // p, x.shape[1] // p
    return x[: gh * p, : gw * p].reshape(gh, p, gw, p).transpose(0, 2, 1, 3).reshape(gh * gw, p, p)


def _scale_features(m: np.ndarray, p: int) -> np.ndarray:
    """18 features of each ``p x p`` patch of an MSCN map: ``(n_patches, 18)``."""
    b = _blocks(m, p)
    n = b.shape[0]
    feats = list(ggd_fit(b.reshape(n, -1)))
    products = (
        b[:, :, :-1] * b[:, :, 1:],  # horizontal neighbours
        b[:, :-1, :] * b[:, 1:, :],  # vertical
        b[:, :-1, :-1] * b[:, 1:, 1:],  # main diagonal
        b[:, :-1, 1:] * b[:, 1:, :-1],  # anti-diagonal
    )
    for prod in products:
        feats.extend(aggd_fit(prod.reshape(n, -1)))
    return np.stack(feats, axis=1)


def _check_patch_size(patch_size: Any) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)):
        raise TypeError(f"patch_size must be an int, got {type(patch_size).__name__}")
    p = int(patch_size)
    if p < 8 or p % 2:
        raise ValueError(f"patch_size must be an even integer >= 8 (the 2x-downsampled scale uses patch_size / 2), got {p}")
    return p


def _check_gray(gray: Any, patch_size: int, min_per_side: int) -> np.ndarray:
    if isinstance(gray, Tensor):
        gray = gray.detach().cpu().numpy()
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"gray must be a (H, W) array, got shape {g.shape}")
    require_finite("gray", g)
    h, w = g.shape
    if h // patch_size < min_per_side or w // patch_size < min_per_side:
        raise ValueError(
            f"image of {h}x{w} px is too small for NIQE with patch_size {patch_size}: need at least "
            f"{min_per_side} patches per side at both scales, i.e. at least {min_per_side * patch_size}x"
            f"{min_per_side * patch_size} px ({min_per_side * patch_size // 2} px with patches of "
            f"{patch_size // 2} at the 2x-downsampled scale); use a smaller patch_size or a larger image"
        )
    return g


def _features_and_sharpness(gray: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    gh, gw = gray.shape[0] // p, gray.shape[1] // p
    img = gray[: gh * p, : gw * p]
    m1, sigma1 = mscn(img)
    half = cv2.resize(img, (gw * p // 2, gh * p // 2), interpolation=cv2.INTER_AREA)
    m2, _ = mscn(half)
    feats = np.concatenate([_scale_features(m1, p), _scale_features(m2, p // 2)], axis=1)
    sharpness = _blocks(sigma1, p).reshape(gh * gw, -1).mean(1)
    return feats, sharpness


def niqe_features(gray: np.ndarray, patch_size: int = 32) -> np.ndarray:
    """The 36 NIQE features of each non-overlapping patch of a grayscale image.

    Columns 0-17 are the image's scale, 18-35 the 2x-downsampled one; at each: GGD (shape,
    variance) of the MSCN values, then AGGD (shape, mean, left variance, right variance) of the
    horizontal, vertical, main-diagonal and anti-diagonal neighbour products. Patches are in
    row-major order over ``(H // P) x (W // P)``; the image's right and bottom remainders are dropped.

    Args:
        gray: ``(H, W)`` float, values in 0-255, at least ``P x P``.
        patch_size: ``P``, even, >= 8.

    Returns:
        ``(n_patches, 36)`` float64; a row is NaN where the patch is flat (see module docstring).

    Example:
        >>> niqe_features(np.random.default_rng(0).uniform(0, 255, (64, 96)), 32).shape
        (6, 36)
    """
    p = _check_patch_size(patch_size)
    g = _check_gray(gray, p, 1)
    feats, _ = _features_and_sharpness(g, p)
    feats[~np.isfinite(feats).all(1)] = np.nan
    return feats


@dataclass
class NIQEModel:
    """A pristine NIQE model: mean ``(36,)`` and covariance ``(36, 36)`` of clean-patch features.

    ``to_dict`` gives plain lists and numbers (for JSON or a ``weights_only`` torch file);
    ``from_dict`` checks the shapes and rebuilds it.
    """

    mean: np.ndarray
    cov: np.ndarray
    patch_size: int
    n_patches: int
    sharpness_fraction: float | None = None

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.cov = np.asarray(self.cov, dtype=np.float64)
        if self.mean.shape != (N_FEATURES,):
            raise ValueError(f"NIQEModel.mean must have shape ({N_FEATURES},), got {self.mean.shape}")
        if self.cov.shape != (N_FEATURES, N_FEATURES):
            raise ValueError(f"NIQEModel.cov must have shape ({N_FEATURES}, {N_FEATURES}), got {self.cov.shape}")
        require_finite("NIQEModel.mean", self.mean)
        require_finite("NIQEModel.cov", self.cov)
        self.patch_size = _check_patch_size(self.patch_size)
        self.n_patches = int(self.n_patches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "patch_size": int(self.patch_size),
            "n_patches": int(self.n_patches),
            "sharpness_fraction": None if self.sharpness_fraction is None else float(self.sharpness_fraction),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NIQEModel:
        missing = [k for k in ("mean", "cov", "patch_size", "n_patches") if k not in d]
        if missing:
            raise ValueError(f"NIQEModel dict lacks {missing}; has {sorted(d)}")
        return cls(mean=np.asarray(d["mean"]), cov=np.asarray(d["cov"]), patch_size=d["patch_size"],
                   n_patches=d["n_patches"], sharpness_fraction=d.get("sharpness_fraction"))


def _to_hwc(image: Any, name: str) -> np.ndarray:
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        pass
    elif a.ndim == 3 and a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    else:
        raise ValueError(f"{name} must be an RGB image (3, H, W) or (H, W, 3), got shape {a.shape}")
    require_finite(name, a)
    lo, hi = float(a.min()), float(a.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must have values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.clip(a, 0.0, 1.0)


def _gray255(image: Any, name: str) -> np.ndarray:
    return luminance_np(_to_hwc(image, name)) * 255.0


def fit_niqe(images: Iterable[Any], patch_size: int = 32, sharpness_fraction: float | None = 0.75) -> NIQEModel:
    """Fit the pristine NIQE model on clean images.

    Args:
        images: RGB images, each ``(3, H, W)`` or ``(H, W, 3)``, NumPy or torch, in [0, 1] (a
            ``(B, 3, H, W)`` tensor iterates as such); sizes may differ, each at least ``P x P``.
        patch_size: ``P`` (even, >= 8); the score must use the same (:func:`niqe` takes it from the model).
        sharpness_fraction: keep a patch when its mean local sigma exceeds this fraction of its
            image's sharpest patch (paper: 0.75); ``None`` or 0 keeps every defined patch.

    Returns:
        :class:`NIQEModel` (``np.cov`` covariance, N - 1 normalisation).

    Raises:
        ValueError: on a bad image, or when fewer than 37 patches are kept (the 36 x 36 covariance
            would be singular): use more images or a lower ``sharpness_fraction``.
    """
    p = _check_patch_size(patch_size)
    frac = 0.0 if sharpness_fraction is None else float(sharpness_fraction)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"sharpness_fraction must be in [0, 1) or None, got {sharpness_fraction!r}")
    kept, n_images = [], 0
    for i, image in enumerate(images):
        gray = _check_gray(_gray255(image, f"images[{i}]"), p, 1)
        feats, sharp = _features_and_sharpness(gray, p)
        ok = np.isfinite(feats).all(1)
        if frac > 0 and ok.any():
            ok &= sharp > frac * sharp[ok].max()
        kept.append(feats[ok])
        n_images += 1
    if n_images == 0:
        raise ValueError("fit_niqe needs at least one image, got none")
    x = np.concatenate(kept, axis=0)
    if x.shape[0] <= N_FEATURES:
        raise ValueError(
            f"fit_niqe kept {x.shape[0]} patches from {n_images} images (patch_size {p}, sharpness_fraction "
            f"{frac}); a pristine model needs more than {N_FEATURES}: give more or larger images, or lower "
            "sharpness_fraction"
        )
    return NIQEModel(mean=x.mean(0), cov=np.cov(x, rowvar=False), patch_size=p, n_patches=x.shape[0],
                     sharpness_fraction=frac)


def _pinv_sym(a: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix (singular values below 36 eps max dropped).

    Through the SVD (as MATLAB's ``pinv``); on a busy CPU, OpenBLAS's threaded ``eigh`` of a 36 x 36
    matrix is an order of magnitude slower.
    """
    u, w, vt = np.linalg.svd((a + a.T) / 2)
    keep = w > N_FEATURES * np.finfo(np.float64).eps * float(w[0])
    inv = np.zeros_like(w)
    inv[keep] = 1.0 / w[keep]
    return (vt.T * inv) @ u.T


def niqe_score_gray(gray: np.ndarray, model: NIQEModel) -> float:
    """NIQE of one ``(H, W)`` 0-255 grayscale image under ``model`` (see :func:`niqe`)."""
    p = model.patch_size
    g = _check_gray(gray, p, 2)
    feats, _ = _features_and_sharpness(g, p)
    x = feats[np.isfinite(feats).all(1)]
    if x.shape[0] < 2:
        raise ValueError(
            f"image of {g.shape[0]}x{g.shape[1]} px has {x.shape[0]} of {feats.shape[0]} patches with defined NIQE "
            "features (the others are flat, e.g. clipped); NIQE needs at least 2"
        )
    d = model.mean - x.mean(0)
    s = (model.cov + np.cov(x, rowvar=False)) / 2
    return math.sqrt(max(float(d @ _pinv_sym(s) @ d), 0.0))


def _check_batch(images: Any, name: str) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W), got {tuple(images.shape)}")
    require_finite(name, images)
    return images


@torch.no_grad()
def niqe(images: Tensor, model: NIQEModel) -> Tensor:
    """NIQE per image (lower = more natural), ``(B,)`` float32 on the images' device.

    Args:
        images: ``(B, 3, H, W)`` (or ``(3, H, W)``) RGB in [0, 1]; ``H, W >= 2 * model.patch_size``.
        model: the pristine model (:func:`fit_niqe`); its ``patch_size`` is used.

    Raises:
        ValueError: non-finite or out-of-range values, an image smaller than 2 patches per side
            (message names the size and patch size), or fewer than 2 non-flat patches.

    Example:
        >>> # scores = niqe(restored, model)   # (B,)
    """
    if not isinstance(model, NIQEModel):
        raise TypeError(f"model must be a NIQEModel, got {type(model).__name__}")
    x = _check_batch(images, "images")
    out = [niqe_score_gray(_gray255(x[i], f"images[{i}]"), model) for i in range(x.shape[0])]
    return torch.tensor(out, dtype=torch.float32, device=x.device)


@runtime_checkable
class ExpertJudge(Protocol):
    """A judge of restorations: ``judge(degraded, restored, clean) -> (B,)`` scores in [1, 5]."""

    name: str

    def __call__(self, degraded: Tensor, restored: Tensor, clean: Tensor) -> Tensor: ...


def _images_list(images: Any, name: str) -> list[Tensor]:
    """A ``(B, 3, H, W)`` tensor, or a sequence of ``(3, H, W)``/``(B, 3, H, W)`` tensors, as a list of batches."""
    if isinstance(images, Tensor):
        return [_check_batch(images, name)]
    batches = [_check_batch(t if isinstance(t, Tensor) else torch.as_tensor(np.asarray(t)), f"{name}[{i}]")
               for i, t in enumerate(images)]
    if not batches:
        raise ValueError(f"{name} is empty")
    return batches


class NIQEJudge:
    """The embedded expert judge: NIQE of the restoration mapped linearly to 1-5.

    ``score = 5 - 4 (NIQE - good) / (bad - good)``, clamped to [1, 5]: ``good`` (e.g. the median NIQE
    of clean validation crops) scores 5, ``bad`` (the median of degraded ones) scores 1.
    No-reference: ``degraded`` and ``clean`` are accepted for the :class:`ExpertJudge` interface and
    **ignored**; only ``restored`` is scored (the paper's Qwen-VL judge sees all three).

    Example:
        >>> # judge = NIQEJudge.calibrate(clean_val, degraded_val, fit_niqe(train_crops))
        >>> # judge(degraded, restored, clean)   # (B,) in [1, 5]
    """

    name = "niqe-judge (stand-in for Qwen-VL)"

    def __init__(self, model: NIQEModel, good: float, bad: float) -> None:
        if not isinstance(model, NIQEModel):
            raise TypeError(f"model must be a NIQEModel, got {type(model).__name__}")
        good, bad = float(good), float(bad)
        if not (math.isfinite(good) and math.isfinite(bad)):
            raise ValueError(f"good and bad must be finite NIQE values, got good={good}, bad={bad}")
        if bad <= good:
            raise ValueError(f"bad NIQE ({bad:.4g}) must exceed good NIQE ({good:.4g}): lower NIQE is better")
        self.model, self.good, self.bad = model, good, bad

    def score_from_niqe(self, values: Tensor) -> Tensor:
        """Map NIQE values to [1, 5] (``good`` -> 5, ``bad`` -> 1, clamped)."""
        return (5.0 - 4.0 * (values - self.good) / (self.bad - self.good)).clamp(1.0, 5.0)

    def __call__(self, degraded: Tensor | None, restored: Tensor, clean: Tensor | None) -> Tensor:
        """Scores ``(B,)`` in [1, 5] of ``restored`` ``(B, 3, H, W)`` in [0, 1]; the other two are ignored."""
        return self.score_from_niqe(niqe(restored, self.model))

    @classmethod
    def calibrate(cls, clean_images: Any, degraded_images: Any, model: NIQEModel) -> NIQEJudge:
        """A judge with ``good`` = median NIQE of ``clean_images``, ``bad`` = median NIQE of ``degraded_images``.

        Each is a ``(B, 3, H, W)`` tensor in [0, 1] or a sequence of ``(3, H, W)``/``(B, 3, H, W)``
        tensors (sizes may differ).

        Raises:
            ValueError: when the degraded median is not above the clean one (the degradations do
                not raise NIQE under this model, so it cannot rank restorations).
        """
        good = float(torch.cat([niqe(b, model) for b in _images_list(clean_images, "clean_images")]).median())
        bad = float(torch.cat([niqe(b, model) for b in _images_list(degraded_images, "degraded_images")]).median())
        if bad <= good:
            raise ValueError(
                f"the degradations do not raise NIQE: median NIQE of degraded_images is {bad:.4g}, of clean_images "
                f"{good:.4g}; a NIQE judge cannot tell restorations apart under this model"
            )
        return cls(model, good, bad)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "good": self.good, "bad": self.bad}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NIQEJudge:
        return cls(NIQEModel.from_dict(d["model"]), d["good"], d["bad"])

    def __repr__(self) -> str:
        return f"NIQEJudge(good={self.good:.4g}, bad={self.bad:.4g}, patch_size={self.model.patch_size})"


#: The expert prompt (the authors' prompt, in this project's words): the three images come first.
PROMPT = (
    "You are an image-restoration expert. You are shown three images: first the degraded input, second "
    "the restoration produced from it, third the reference (ground-truth) image. Judge how well the "
    "restoration removes the degradation while staying faithful to the reference in structure, detail, "
    "colour and freedom from artefacts. Score the restoration image from 1 to 5, where 1 means very poor "
    "(the degradation remains or new artefacts appear) and 5 means excellent (indistinguishable from the "
    "reference). Reply with a single integer from 1 to 5 and nothing else."
)

_SCORE_RE = re.compile(r"(?<![\d.])([1-5])(?!\d|\.\d)")


class JudgeUnavailable(RuntimeError):
    """The vision-language judge cannot run here (``transformers`` missing or no local model)."""


def parse_score(reply: str) -> int:
    """The first stand-alone integer 1-5 in a judge's reply (``"Score: 4/5"`` -> 4; ``"10"``, ``"3.5"`` do not count).

    Raises:
        ValueError: quoting the reply when it holds no such integer.
    """
    m = _SCORE_RE.search(reply)
    if m is None:
        raise ValueError(f"the judge's reply holds no integer score from 1 to 5: {reply!r}")
    return int(m.group(1))


def _pil(image: Tensor) -> Image.Image:
    a = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a)


class VLMJudge:
    """The paper's expert judge: a local vision-language model (e.g. Qwen-VL) scoring 1-5.

    Needs the optional ``transformers`` (``pip install "ispbench[vlm]"``) and the model as a local
    folder (``from_pretrained(..., local_files_only=True)``: nothing is downloaded). Each restoration
    is shown with its degraded input and reference and :data:`PROMPT`; greedy decoding; the reply's
    first integer 1-5 is the score (:func:`parse_score`).

    Raises:
        JudgeUnavailable: the folder does not exist, ``transformers`` is missing, or loading fails.
    """

    def __init__(self, model_path: str, device: str | torch.device = "cpu", max_new_tokens: int = 8) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise JudgeUnavailable(
                f"no vision-language model folder at {str(path)!r}: VLMJudge loads a local model only (it never "
                "downloads); put a Qwen-VL checkpoint (config.json, weights, processor files) in a folder and pass its path"
            )
        try:
            import transformers
        except ImportError as err:
            raise JudgeUnavailable(
                'VLMJudge needs the optional `transformers` package: pip install "ispbench[vlm]" (or pip install '
                f"transformers); the model must then be a local folder such as {str(path)!r}"
            ) from err
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = auto.from_pretrained(str(path), local_files_only=True).to(device).eval()
        except Exception as err:  # any loading failure means the judge is unavailable
            raise JudgeUnavailable(f"could not load a vision-language model from the local folder {str(path)!r}: {err}") from err
        self.name = f"vlm-judge ({path.name})"
        self.device = torch.device(device)
        self.max_new_tokens = int(max_new_tokens)

    def reply(self, degraded: Tensor, restored: Tensor, clean: Tensor) -> str:
        """The model's raw reply for one ``(3, H, W)`` triple."""
        content = [
            {"type": "text", "text": "Degraded input:"}, {"type": "image"},
            {"type": "text", "text": "Restoration:"}, {"type": "image"},
            {"type": "text", "text": "Reference (ground truth):"}, {"type": "image"},
            {"type": "text", "text": PROMPT},
        ]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)
        inputs = self.processor(text=[text], images=[_pil(degraded), _pil(restored), _pil(clean)],
                                return_tensors="pt").to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0]

    @torch.no_grad()
    def __call__(self, degraded: Tensor, restored: Tensor, clean: Tensor) -> Tensor:
        """Scores ``(B,)`` float32 in {1, ..., 5} of ``(B, 3, H, W)`` triples in [0, 1]."""
        r = _check_batch(restored, "restored")
        d, c = _check_batch(degraded, "degraded"), _check_batch(clean, "clean")
        if d.shape != r.shape or c.shape != r.shape:
            raise ValueError(f"degraded, restored and clean must share one shape, got {tuple(d.shape)}, "
                             f"{tuple(r.shape)}, {tuple(c.shape)}")
        scores = [parse_score(self.reply(d[i], r[i], c[i])) for i in range(r.shape[0])]
        return torch.tensor(scores, dtype=torch.float32, device=r.device)


def expert_reward(judge: ExpertJudge, degraded: Tensor, restored: Tensor, clean: Tensor) -> Tensor:
    """IRPO's expert reward ``(score - 1) / 4`` in [0, 1], ``(B,)``, from a judge's 1-5 scores.

    Raises:
        ValueError: naming the judge, when its output is not a ``(B,)`` tensor of finite values in [1, 5].
    """
    name = getattr(judge, "name", type(judge).__name__)
    r = _check_batch(restored, "restored")
    s = judge(degraded, r, clean)
    if not isinstance(s, Tensor):
        raise TypeError(f"judge {name!r} returned {type(s).__name__}, expected a torch tensor (B,)")
    if tuple(s.shape) != (r.shape[0],):
        raise ValueError(f"judge {name!r} returned shape {tuple(s.shape)}, expected ({r.shape[0]},)")
    s = s.float()
    n_bad = int((~torch.isfinite(s)).sum())
    if n_bad:
        raise ValueError(f"judge {name!r} returned {n_bad} non-finite scores: {s.tolist()}")
    if bool((s < 1).any() or (s > 5).any()):
        raise ValueError(f"judge {name!r} returned scores outside [1, 5]: {s.tolist()}")
    return (s - 1.0) / 4.0


__all__ = [
    "N_FEATURES", "ggd_fit", "aggd_fit", "mscn", "niqe_features", "NIQEModel", "fit_niqe", "niqe",
    "niqe_score_gray", "ExpertJudge", "NIQEJudge", "PROMPT", "JudgeUnavailable", "parse_score", "VLMJudge",
    "expert_reward",
]
