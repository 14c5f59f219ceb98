"""The ten differentiable ISP modules of AdaptiveISP (Appendix B, eqs. 12-22).

Every module maps an image ``(B, 3, H, W)`` (float32/float64, RGB, values in [0, 1]) and
per-sample parameters ``(B, n_params(name))`` in the *natural units of the paper* to an image
of the same shape. Gradients flow to both the image and the parameters.

=================  ========  ===================================  =========================
module             n_params  range (paper)                        equation
=================  ========  ===================================  =========================
exposure           1         p in [-3.5, 3.5] EV, ``x * 2**p``     eq. 12
white_balance      3         gains in [e^-1/2, e^1/2]             eq. 13
ccm                9         3x3 row-major in [-2, 2], each row    eq. 14
                             divided by its sum
gamma              1         p in [1/3, 3], ``max(x, 1e-3)**p``    eq. 15
denoise            1         strength in [0, 1]                   eq. 16 (NLM)
sharpen_blur       1         p in [0, 2] (code: [0, 10])          eq. 17
tone               8         slopes in [0.5, 2]                   eq. 18
contrast           1         p in [-1, 1]                         eqs. 19-20
saturation         1         p in [0, 1]                          eq. 21 (authors' code)
desaturation       1         p in [0, 1]                          eq. 22
=================  ========  ===================================  =========================

Conventions (decided here, tested in ``tests/ops/test_modules.py``):

* **Out-of-range parameters are clamped** to the module's range (per column) before use; the
  gradient of a clamped entry is zero. Policies should map unbounded outputs with
  :func:`squash` instead of relying on the clamp.
* **Wrong shapes are refused**: ``params for 'ccm' must have shape (B, 9), got (4, 3) ...``.
  Parameters are cast to the image's dtype and device.
* **Non-finite input is refused** (:func:`ispbench.ops.checks.require_finite`): NaN/Inf in the
  image or the parameters raise ``ValueError`` naming the argument and the count (one extra
  read of the image; skip it with :func:`ispbench.ops.checks.unchecked` where the input is known
  finite).
* **Outputs are clamped to [0, 1]** (``clamp=True``, the default) by the modules that can leave
  the range: exposure, white_balance, ccm, sharpen_blur, contrast. The others stay in [0, 1] by
  construction for inputs in [0, 1] (gamma, denoise, tone, saturation, desaturation). The
  authors' exposure does not clip (their over-exposure penalty ``mean(relu(x - 1)**2)`` needs
  values above 1): pass ``clamp=False`` to keep them.
* **Variants.** ``variant="paper"`` (default, used by all notebooks) follows the paper's
  equations; ``variant="code"`` follows the authors' public code where it differs:

  - white_balance: the R gain is fixed to 1 (``params[:, 0]`` is ignored) and the gains are then
    divided by ``1e-5 + 0.27 g_R + 0.67 g_G + 0.06 g_B`` so that a grey keeps its luminance;
  - sharpen_blur: factor range [0, 10] instead of [0, 2];
  - saturation: grey pixels (R = G = B) get hue 0 from the RGB->HSV conversion, so raising
    their saturation tints them red, as in the code; the paper variant leaves greys grey
    (hue is undefined there, our reading).

  ``variant="posisp"`` is POS-ISP's range variant of the same pool (its authors' code): white
  balance gains in [1/1.1, 1.1] divided by their luminance ``0.27 g_R + 0.67 g_G + 0.06 g_B`` (a
  grey keeps its level), sharpen amount in [1e-5, 10], gamma **linear** in [1/3, 3] (:func:`squash`
  maps every parameter linearly, gamma included), everything else as ``"paper"``.

Example:
    >>> import torch
    >>> from ispbench.ops import apply, identity_params
    >>> x = torch.rand(2, 3, 8, 8)
    >>> y = apply("exposure", x, torch.tensor([[1.0], [-1.0]]))
    >>> torch.allclose(apply("ccm", x, identity_params("ccm", 2)), x)
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ispbench.ops.checks import require_finite
from ispbench.ops.color import LUM_WEIGHTS, _check_image, luminance

#: The module pool, in the order the selector's outputs index it.
MODULE_NAMES: tuple[str, ...] = (
    "exposure",
    "white_balance",
    "ccm",
    "gamma",
    "denoise",
    "sharpen_blur",
    "tone",
    "contrast",
    "saturation",
    "desaturation",
)

#: The variants: ``"paper"`` (AdaptiveISP's equations, default), ``"code"`` (AdaptiveISP's code), ``"posisp"``
#: (POS-ISP's ranges, see the module docstring).
VARIANTS: tuple[str, ...] = ("paper", "code", "posisp")

_N_PARAMS = {
    "exposure": 1,
    "white_balance": 3,
    "ccm": 9,
    "gamma": 1,
    "denoise": 1,
    "sharpen_blur": 1,
    "tone": 8,
    "contrast": 1,
    "saturation": 1,
    "desaturation": 1,
}

#: Largest parameter count in the pool (the padded width of a ``(B, MAX_PARAMS)`` tensor).
MAX_PARAMS: int = max(_N_PARAMS.values())

_E = math.exp(0.5)
#: Per module, one ``(low, high)`` per parameter (paper variant).
PARAM_RANGES: dict[str, list[tuple[float, float]]] = {
    "exposure": [(-3.5, 3.5)],
    "white_balance": [(1.0 / _E, _E)] * 3,
    "ccm": [(-2.0, 2.0)] * 9,  # the paper gives no range; the authors' code uses [-2, 2]
    "gamma": [(1.0 / 3.0, 3.0)],
    "denoise": [(0.0, 1.0)],
    "sharpen_blur": [(0.0, 2.0)],
    "tone": [(0.5, 2.0)] * 8,
    "contrast": [(-1.0, 1.0)],
    "saturation": [(0.0, 1.0)],
    "desaturation": [(0.0, 1.0)],
}
#: Ranges of the ``"code"`` variant (only sharpen_blur differs: [0, 10]).
PARAM_RANGES_CODE: dict[str, list[tuple[float, float]]] = {**PARAM_RANGES, "sharpen_blur": [(0.0, 10.0)]}
#: Ranges of the ``"posisp"`` variant (POS-ISP's authors' code): white balance [1/1.1, 1.1], sharpen [1e-5, 10].
PARAM_RANGES_POSISP: dict[str, list[tuple[float, float]]] = {
    **PARAM_RANGES, "white_balance": [(1.0 / 1.1, 1.1)] * 3, "sharpen_blur": [(1e-5, 10.0)],
}
_RANGES_BY_VARIANT = {"paper": PARAM_RANGES, "code": PARAM_RANGES_CODE, "posisp": PARAM_RANGES_POSISP}

#: Run time per module in ms, from Table 4 of the AdaptiveISP paper (measured by the authors on a
#: GTX 1660 Ti at 512 x 512). Used for the cost penalty ``lambda_c * sum cost``.
MODULE_COST_MS: dict[str, float] = {
    "exposure": 1.7,
    "white_balance": 1.7,
    "ccm": 1.9,
    "gamma": 2.0,
    "denoise": 10.0,
    "sharpen_blur": 6.3,
    "tone": 2.7,
    "contrast": 2.1,
    "saturation": 2.0,
    "desaturation": 1.9,
}

# NLM settings (eq. 16): search window 11 x 11, patch 5 x 5, like the authors' code.
NLM_SEARCH = 11
NLM_PATCH = 5
#: ``h = 2 * (NLM_SIGMA_MAX * strength) ** 2``: strength 1 is tuned for luminance noise of
#: standard deviation 0.1 (the expected patch distance of two noisy copies is ``2 sigma**2``).
NLM_SIGMA_MAX = 0.1

_TONE_STEPS = 8
_SHARPEN_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# checks and parameter helpers


def _check_name(name: str) -> None:
    if name not in _N_PARAMS:
        raise ValueError(f"unknown ISP module {name!r}; valid names: {', '.join(MODULE_NAMES)}")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def n_params(name: str) -> int:
    """Number of parameters of module ``name`` (e.g. ``n_params("ccm") == 9``)."""
    _check_name(name)
    return _N_PARAMS[name]


def param_ranges(name: str, variant: str = "paper") -> list[tuple[float, float]]:
    """``(low, high)`` per parameter of ``name`` under ``variant``."""
    _check_name(name)
    _check_variant(variant)
    return list(_RANGES_BY_VARIANT[variant][name])


def _bounds(name: str, variant: str, like: Tensor) -> tuple[Tensor, Tensor]:
    ranges = param_ranges(name, variant)
    low = torch.tensor([r[0] for r in ranges], dtype=like.dtype, device=like.device)
    high = torch.tensor([r[1] for r in ranges], dtype=like.dtype, device=like.device)
    return low, high


def clamp_params(name: str, params: Tensor, variant: str = "paper") -> Tensor:
    """Clamp ``params`` ``(B, n)`` column-wise into the module's range (zero gradient outside)."""
    low, high = _bounds(name, variant, params)
    return torch.clamp(params, low, high)


def squash(name: str, raw: Tensor, variant: str = "paper") -> Tensor:
    """Map unbounded policy outputs ``raw`` ``(B, n)`` into module ``name``'s range.

    ``low + (high - low) * (tanh(raw) + 1) / 2`` per column, except gamma, which uses
    ``exp(tanh(raw) * ln 3)`` like the authors' code (log-symmetric: raw 0 -> gamma 1). In the
    ``"code"`` variant white-balance gains are ``exp(0.5 * tanh(raw))`` as in the authors' code. In the
    ``"posisp"`` variant every parameter, gamma included, is linear in ``(tanh(raw) + 1) / 2``.

    Example:
        >>> squash("exposure", torch.zeros(2, 1))
        tensor([[0.],
                [0.]])
    """
    _check_name(name)
    _check_variant(variant)
    if raw.ndim != 2 or raw.shape[1] != _N_PARAMS[name]:
        raise ValueError(f"raw outputs for {name!r} must have shape (B, {_N_PARAMS[name]}), got {tuple(raw.shape)}")
    t = torch.tanh(raw)
    if name == "gamma" and variant != "posisp":
        return torch.exp(t * math.log(3.0))
    if name == "white_balance" and variant == "code":
        return torch.exp(0.5 * t)
    low, high = _bounds(name, variant, raw)
    return low + (high - low) * (t + 1.0) / 2.0


def identity_params(
    name: str, batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Parameters ``(batch, n)`` for which module ``name`` returns its input.

    exposure 0, white_balance 1s, ccm the identity matrix, gamma 1, denoise strength 0 (defined
    as an exact identity, see :func:`denoise`), sharpen_blur 1, tone equal slopes (1s),
    contrast 0, saturation 0, desaturation 0. For the ``"code"`` white balance, gains of 1 give
    the factor ``1 / (1 + 1e-5)``, an identity up to 1e-5.
    """
    _check_name(name)
    n = _N_PARAMS[name]
    if name == "ccm":
        row = torch.eye(3, dtype=dtype, device=device).reshape(1, 9)
        return row.expand(batch, 9).clone()
    value = {"white_balance": 1.0, "gamma": 1.0, "sharpen_blur": 1.0, "tone": 1.0}.get(name, 0.0)
    return torch.full((batch, n), value, dtype=dtype, device=device)


def unsquash(name: str, params: Tensor, limit: float = 0.95, variant: str = "paper") -> Tensor:
    """Inverse of :func:`squash`: raw values ``(B, n)`` whose squash is ``params`` ``(B, n)``.

    ``tanh`` is limited to ``+-limit`` so that a value at a range end (desaturation 0, say) maps to a
    finite raw value; its squash is then slightly inside the range (0.025 for desaturation 0).

    Example:
        >>> unsquash("exposure", torch.zeros(1, 1))
        tensor([[0.]])
    """
    _check_name(name)
    _check_variant(variant)
    if params.ndim != 2 or params.shape[1] != _N_PARAMS[name]:
        raise ValueError(f"params for {name!r} must have shape (B, {_N_PARAMS[name]}), got {tuple(params.shape)}")
    if name == "gamma" and variant != "posisp":
        t = torch.log(params) / math.log(3.0)
    elif name == "white_balance" and variant == "code":
        t = 2.0 * torch.log(params)
    else:
        low, high = _bounds(name, variant, params)
        t = 2 * (params - low) / (high - low) - 1
    return torch.atanh(t.clamp(-limit, limit))


def identity_raw(name: str, n: int, limit: float = 0.95) -> Tensor:
    """Raw values ``(n,)`` whose :func:`squash` is (close to) module ``name``'s identity.

    Used to start parameter heads and fixed pipelines at "do nothing". Falls back to zeros for a
    name outside the pool (toy pools in tests).
    """
    if name not in _N_PARAMS:
        return torch.zeros(n)
    ident = identity_params(name, 1).double()
    return unsquash(name, ident, limit).float()[0]

def _prepare(name: str, image: Tensor, params: Tensor, variant: str) -> Tensor:
    _check_name(name)
    _check_variant(variant)
    _check_image(image)
    n = _N_PARAMS[name]
    if not isinstance(params, Tensor):
        raise TypeError(f"params for {name!r} must be a torch.Tensor of shape (B, {n}), got {type(params).__name__}")
    b = image.shape[0]
    if params.ndim != 2 or params.shape[1] != n or params.shape[0] != b:
        raise ValueError(
            f"params for {name!r} must have shape (B, {n}), got {tuple(params.shape)} "
            f"(B = {b}, the image batch)"
        )
    require_finite("image", image)
    require_finite(f"params for {name!r}", params)  # before the clamp, which would hide an Inf
    params = params.to(dtype=image.dtype, device=image.device)
    return clamp_params(name, params, variant)


def _clamp01(t: Tensor, clamp: bool) -> Tensor:
    if not clamp:
        return t
    if t.requires_grad:
        return t.clamp(0.0, 1.0)
    return t.clamp_(0.0, 1.0)  # fresh temporary, no autograd: saves a full-size allocation


def _col(p: Tensor) -> Tensor:
    """(B, 1) -> (B, 1, 1, 1) for broadcasting."""
    return p.reshape(-1, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# kernels: (image, params already checked and clamped, variant, clamp) -> image


def _exposure(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    return _clamp01(x * torch.exp2(_col(p)), clamp)


def _white_balance(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    if variant == "code":
        g = torch.cat([torch.ones_like(p[:, :1]), p[:, 1:]], dim=1)
        scale = 1e-5 + LUM_WEIGHTS[0] * g[:, 0] + LUM_WEIGHTS[1] * g[:, 1] + LUM_WEIGHTS[2] * g[:, 2]
        p = g / scale[:, None]
    elif variant == "posisp":  # gains > 0 in this variant's range: no guard needed
        p = p / (LUM_WEIGHTS[0] * p[:, :1] + LUM_WEIGHTS[1] * p[:, 1:2] + LUM_WEIGHTS[2] * p[:, 2:3])
    return _clamp01(x * p.reshape(-1, 3, 1, 1), clamp)


def _normalised_ccm(p: Tensor, eps: float = 1e-6) -> Tensor:
    m = p.reshape(-1, 3, 3)
    s = m.sum(dim=2, keepdim=True)
    # safe divide: a row summing to ~0 is divided by +-eps (sign kept, 0 -> +eps)
    s = torch.where(s.abs() < eps, torch.where(s < 0, -eps, eps) * torch.ones_like(s), s)
    return m / s


def _ccm(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    b, _, h, w = x.shape
    m = _normalised_ccm(p)
    out = torch.bmm(m, x.reshape(b, 3, h * w)).reshape(b, 3, h, w)
    return _clamp01(out, clamp)


def _gamma(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    return torch.pow(x.clamp_min(1e-3), _col(p))


def _nlm_reference(x: Tensor, strength: Tensor) -> Tensor:
    """The former implementation of :func:`_nlm`, kept as the reference (plain autograd, 121 offsets).

    Used only by the tests and ``ispbench bench ops`` (its ``former (_nlm_reference)`` rows). Same
    function as :func:`_nlm` at the authors' settings; autograd stores every intermediate
    (distance and weight maps of all 121 offsets), which makes its backward pass slow.
    """
    b, _, h, w = x.shape
    rs, rp = NLM_SEARCH // 2, NLM_PATCH // 2
    lum = luminance(x)
    lum_p = F.pad(lum, (rs + rp,) * 4, mode="replicate")  # (B, 1, H+2(rs+rp), W+2(rs+rp))
    # image with a channel of ones: the weighted sum of channel 3 is the normaliser
    x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    x1_p = F.pad(x1, (rs,) * 4, mode="replicate")  # (B, 4, H+2rs, W+2rs)
    hh = 2.0 * (NLM_SIGMA_MAX * strength) ** 2  # (B,)
    inv_h = _col(1.0 / hh.clamp_min(1e-12))  # (B, 1, 1, 1)
    center = lum_p[:, :, rs : rs + h + 2 * rp, rs : rs + w + 2 * rp]
    acc = torch.zeros_like(x1)
    for dy in range(NLM_SEARCH):
        # all 11 horizontal offsets of this row at once: (B, 11, H+2rp, W+2rp)
        shifted = torch.cat([lum_p[:, :, dy : dy + h + 2 * rp, dx : dx + w + 2 * rp] for dx in range(NLM_SEARCH)], 1)
        dist = F.avg_pool2d((shifted - center).square_(), NLM_PATCH, stride=1)  # (B, 11, H, W)
        weight = torch.exp(-dist * inv_h)
        for dx in range(NLM_SEARCH):
            acc = acc.addcmul_(x1_p[:, :, dy : dy + h, dx : dx + w], weight[:, dx : dx + 1])
    return acc[:, :3] / acc[:, 3:]


# --- fast NLM -------------------------------------------------------------------------------------
# One sample, coordinates outside the image clamped (replicate padding). s = a * lum with
# a = sqrt(1 / (h * patch**2)); D_d(q) = (s(q) - s(q + d))**2; F_d = patch x patch box sum of D_d;
# weight w_d(p) = exp(-F_d(p)) = exp(-dist_d(p) / h). Symmetry: D_{-d}(q) = D_d(q - d), so
# w_{-d}(p) = w_d(p - d): one box-filtered map per pair {d, -d}, evaluated on the image grown by
# the search radius r ("E"), gives both weights: 60 maps instead of 121 at 11 x 11 (the centre
# weight is exactly 1). D_d is needed on E grown by the patch radius ("Q"), s on Q + r (padding
# P = 2r + patch radius). The backward pass recomputes the maps instead of storing them.

_NLM_WINDOW: contextvars.ContextVar[int] = contextvars.ContextVar("ispbench_nlm_search_window", default=NLM_SEARCH)
#: CPU work split of the fast NLM (speed only, never the result; tuned with ``ispbench bench ops``
#: at 160 and 512 px): one sample at a time, offsets in groups of ``_NLM_CPU_GROUP``, image rows
#: in strips so that a group's ``(1, k, rows, W)`` maps hold about ``_NLM_CPU_BUDGET`` values
#: (they then stay in the L2 cache). On CUDA the whole batch and a whole window row go at once.
_NLM_CPU_GROUP = 4
_NLM_CPU_BUDGET = 160_000
#: Weights are ``exp(-min(dist / h, 40))``: the output moves by at most 120 e^-40 (5e-16) of the
#: pixel range (the centre weight is 1), and no weight or product of one becomes a subnormal float,
#: which made small strengths (a policy starting near the identity, strength 0.025) 2.5x slower on
#: CPUs (measured: 62 -> 24 ms per 160 px image, forward + backward).
_NLM_EXP_CAP = 40.0


@contextlib.contextmanager
def nlm_search_window(window: int) -> Iterator[None]:
    """Inside, ``apply("denoise", ...)`` searches a ``window x window`` neighbourhood (odd, >= 1).

    A named speed option, **not the paper's module**: outside it the window is the authors' 11
    (``NLM_SEARCH``). The cost is proportional to ``(window**2 - 1) / 2`` (5: 12 offset
    pairs instead of 60). The authors' 11-pixel window at 512 px covers the scene area of a 3-5
    pixel window at 160 px (:func:`scaled_search_window`). The 5 x 5 patch and ``h`` are
    unchanged; window 1 is the identity. It is a context variable, like
    :func:`ispbench.ops.checks.unchecked`, so it reaches the module through the executor and the
    trainers. How much the output changes (scikit-image's astronaut at 160 px plus Gaussian noise
    of standard deviation 0.05, values in [0, 1]; ``tests/ops/test_denoise.py`` checks these):
    strength 0.5: window 5 differs from 11 by 0.010 on average and 0.39 at most (edge pixels),
    window 3 by 0.016 / 0.42; strength 1: window 5 by 0.017 / 0.32, window 3 by 0.027 / 0.38.
    On this image the smaller windows remove at least as much noise (RMSE to the clean image
    0.028-0.042 against 0.033-0.057 with 11 x 11; the noisy input's is 0.048).

    Raises:
        ValueError: ``window`` is not an odd int >= 1.

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> with nlm_search_window(5):
        ...     y = apply("denoise", x, torch.tensor([[0.5]]))
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"nlm_search_window: window must be an odd int >= 1, got {window!r}")
    token = _NLM_WINDOW.set(window)
    try:
        yield
    finally:
        _NLM_WINDOW.reset(token)


def scaled_search_window(size: int, reference_size: int = 512, reference_window: int = NLM_SEARCH) -> int:
    """Odd search window that covers at ``size`` px what ``reference_window`` covers at ``reference_size``.

    ``reference_window * size / reference_size`` rounded to the nearest odd integer, at least 3
    (160 px -> 3, 256 px -> 5, 512 px -> 11). For :func:`nlm_search_window`.

    Example:
        >>> scaled_search_window(160), scaled_search_window(512)
        (3, 11)
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"scaled_search_window: size must be a positive int, got {size!r}")
    half = math.floor((reference_window * size / reference_size - 1) / 2 + 0.5)
    return max(3, 2 * half + 1)


def _box_sum(t: Tensor, k: int) -> Tensor:
    """``k x k`` box sum over the last two dims, "valid" (each dim shrinks by ``k - 1``).

    Separable; per axis from pair sums (3 adds for k = 5). No running sums: no cancellation
    error in float32.
    """
    if k == 1:
        return t
    for dim in (t.ndim - 1, t.ndim - 2):
        size = t.shape[dim]
        n = size - k + 1
        pairs = t.narrow(dim, 0, size - 1) + t.narrow(dim, 1, size - 1)
        terms = [(pairs, o) for o in range(0, k - 1, 2)] + ([(t, k - 1)] if k % 2 else [])
        if len(terms) == 1:
            out = terms[0][0].narrow(dim, terms[0][1], n).clone()
        else:
            out = terms[0][0].narrow(dim, terms[0][1], n) + terms[1][0].narrow(dim, terms[1][1], n)
        for src, o in terms[2:]:
            out.add_(src.narrow(dim, o, n))
        t = out
    return t


def _pad_adjoint(g: Tensor, pad: int) -> Tensor:
    """Adjoint of ``F.pad(., (pad,) * 4, mode="replicate")``: border sums folded back, ``(..., H, W)``."""
    if pad == 0:
        return g
    h = g.shape[-2] - 2 * pad
    rows = g[..., pad : pad + h, :].clone()
    rows[..., 0, :] += g[..., :pad, :].sum(-2)
    rows[..., -1, :] += g[..., pad + h :, :].sum(-2)
    w = rows.shape[-1] - 2 * pad
    out = rows[..., pad : pad + w].clone()
    out[..., 0] += rows[..., :pad].sum(-1)
    out[..., -1] += rows[..., pad + w :].sum(-1)
    return out


def _nlm_groups(rs: int, k: int) -> Iterator[tuple[int, int, int]]:
    """Half of the search window in groups ``(dy, first dx, count)`` of consecutive offsets:
    ``dy = 0, dx = 1..rs`` and ``dy = 1..rs, dx = -rs..rs`` (the other half are their negatives)."""
    rows = [(0, 1, rs)] + [(dy, -rs, 2 * rs + 1) for dy in range(1, rs + 1)]
    for dy, dx0, count in rows:
        for i in range(0, count, k):
            yield dy, dx0 + i, min(k, count - i)


def _shifted(t: Tensor, c: int, r0: int, c0: int, k: int, rows: int, cols: int) -> Tensor:
    """Read-only view ``(n, k, rows, cols)`` of ``t`` ``(n, C, H, W)``: ``[b, j, r, m] = t[b, c, r0 + r, c0 + j + m]``."""
    sn, sc, sh, sw = t.stride()
    return t.as_strided((t.shape[0], k, rows, cols), (sn, sw, sh, sw), t.storage_offset() + c * sc + r0 * sh + c0 * sw)


def _nlm_weights(sp: Tensor, dy: int, dx0: int, k: int, hq: int, wq: int, rs: int, rp: int) -> tuple[Tensor, Tensor]:
    """Differences ``(n, k, hq, wq)`` of the scaled padded luminance ``sp`` on Q and weights ``(n, k, hq - 2rp, wq - 2rp)`` on E."""
    diff = torch.empty((sp.shape[0], k, hq, wq), dtype=sp.dtype, device=sp.device)
    torch.sub(sp[:, :, rs : rs + hq, rs : rs + wq], _shifted(sp, 0, rs + dy, rs + dx0, k, hq, wq), out=diff)
    return diff, _box_sum(diff * diff, 2 * rp + 1).clamp_(max=_NLM_EXP_CAP).neg_().exp_()


def _nlm_split(x: Tensor, rs: int, rp: int) -> tuple[int, int, int]:
    """(samples per chunk, offsets per group, image rows per strip) for ``x``."""
    b, _, h, w = x.shape
    if x.device.type != "cpu":
        return b, 2 * rs + 1, h
    q = 2 * (rs + rp)
    return 1, _NLM_CPU_GROUP, max(16, _NLM_CPU_BUDGET // (_NLM_CPU_GROUP * (w + q)) - q)


def _nlm_forward(x: Tensor, a: Tensor, rs: int, rp: int, k: int, strip: int) -> Tensor:
    """Numerator and normaliser ``(n, 4, H, W)`` (channel 3 = sum of weights) for ``a`` ``(n, 1, 1, 1)``."""
    h, w = x.shape[-2:]
    pad = 2 * rs + rp
    sp = F.pad(luminance(x) * a, (pad,) * 4, mode="replicate")
    x1p = F.pad(torch.cat([x, torch.ones_like(x[:, :1])], 1), (rs,) * 4, mode="replicate")
    strips = []
    for r0 in range(0, h, strip):
        hs = min(strip, h - r0)
        sp_s, x1p_s = sp[:, :, r0 : r0 + hs + 2 * pad], x1p[:, :, r0 : r0 + hs + 2 * rs]
        hq, wq = hs + 2 * (rs + rp), w + 2 * (rs + rp)
        acc = x1p_s[:, :, rs : rs + hs, rs : rs + w].clone()  # centre offset, weight 1
        for dy, dx0, kk in _nlm_groups(rs, k):
            wt = _nlm_weights(sp_s, dy, dx0, kk, hq, wq, rs, rp)[1]  # (n, kk, hs + 2rs, w + 2rs) on E
            for j in range(kk):
                dx = dx0 + j
                wj = wt[:, j : j + 1]
                # w_d(p) x(p + d)  and  w_{-d}(p) x(p - d) = w_d(p - d) x(p - d)
                acc.addcmul_(x1p_s[:, :, rs + dy : rs + dy + hs, rs + dx : rs + dx + w], wj[:, :, rs : rs + hs, rs : rs + w])
                acc.addcmul_(x1p_s[:, :, rs - dy : rs - dy + hs, rs - dx : rs - dx + w],
                             wj[:, :, rs - dy : rs - dy + hs, rs - dx : rs - dx + w])
        strips.append(acc)
    return torch.cat(strips, 2) if len(strips) > 1 else strips[0]


def _nlm_backward(x: Tensor, a: Tensor, out: Tensor, z: Tensor, grad: Tensor, rs: int, rp: int, k: int,
                  strip: int, need_x: bool = True) -> tuple[Tensor | None, Tensor]:
    """Gradients w.r.t. ``x`` ``(n, 3, H, W)`` (``None`` unless ``need_x``) and ``a`` ``(n,)`` of ``sum(grad * out)``.

    With g = grad / Z and s = sum_c g_c out_c: dL/dw_d(p) = sum_c g_c(p) x_c(p + d) - s(p);
    dL/dx(p + d) += w_d(p) g(p); dL/dF_d = -w_d dL/dw_d, through the box sum (its adjoint is the
    same box on the zero-padded map) and D_d to s; then the replicate padding is folded back, and
    dL/da = sum dL/ds * lum (s = a lum). Strips split the output pixels p; each strip adds its
    share to the padded gradients. Without ``need_x`` (a trainer's input image from its replay
    pool) the direct ``dL/dx`` terms are skipped, about a fifth of the work.
    """
    h, w = x.shape[-2:]
    pad = 2 * rs + rp
    s_img = luminance(x) * a
    sp = F.pad(s_img, (pad,) * 4, mode="replicate")
    xp = F.pad(x, (rs,) * 4, mode="replicate")
    g = grad / z
    s_all = (g * out).sum(1, keepdim=True)
    dxp = torch.zeros_like(xp)
    dsp = torch.zeros_like(sp)
    for r0 in range(0, h, strip):
        hs = min(strip, h - r0)
        sp_s, xp_s = sp[:, :, r0 : r0 + hs + 2 * pad], xp[:, :, r0 : r0 + hs + 2 * rs]
        dsp_s, dxp_s = dsp[:, :, r0 : r0 + hs + 2 * pad], dxp[:, :, r0 : r0 + hs + 2 * rs]
        g_s, s_s = g[:, :, r0 : r0 + hs], s_all[:, :, r0 : r0 + hs]
        hq, wq = hs + 2 * (rs + rp), w + 2 * (rs + rp)
        he, we = hs + 2 * rs, w + 2 * rs
        # zero outside the strip: a strip's terms only
        gz, sz = F.pad(g_s, (2 * rs,) * 4), F.pad(s_s, (2 * rs,) * 4)
        if need_x:
            dxp_s[:, :, rs : rs + hs, rs : rs + w] += g_s  # centre offset
        for dy, dx0, kk in _nlm_groups(rs, k):
            diff, wt = _nlm_weights(sp_s, dy, dx0, kk, hq, wq, rs, rp)
            # dL/dw on E: offset d at q (pixel p = q) plus offset -d at q (pixel p = q + d)
            dw = torch.zeros_like(wt)
            dw_img = dw[:, :, rs : rs + hs, rs : rs + w]
            for c in range(3):
                dw_img.addcmul_(g_s[:, c : c + 1], _shifted(xp_s, c, rs + dy, rs + dx0, kk, hs, w))
                dw.addcmul_(xp_s[:, c : c + 1], _shifted(gz, c, rs + dy, rs + dx0, kk, he, we))
            dw_img.sub_(s_s)
            dw.sub_(_shifted(sz, 0, rs + dy, rs + dx0, kk, he, we))
            for j in range(kk if need_x else 0):
                dx = dx0 + j
                wj = wt[:, j : j + 1]
                dxp_s[:, :, rs + dy : rs + dy + hs, rs + dx : rs + dx + w].addcmul_(g_s, wj[:, :, rs : rs + hs, rs : rs + w])
                dxp_s.addcmul_(gz[:, :, rs + dy : rs + dy + he, rs + dx : rs + dx + we], wj)
            # -dL/dF on E -> -dL/dD on Q (box adjoint) -> times (s(q) - s(q + d)); the factor -2 at the end
            e = diff.mul_(_box_sum(F.pad(dw.mul_(wt), (2 * rp,) * 4), 2 * rp + 1))
            dsp_s[:, :, rs : rs + hq, rs : rs + wq] += e.sum(1, keepdim=True)
            for j in range(kk):
                dx = dx0 + j
                dsp_s[:, :, rs + dy : rs + dy + hq, rs + dx : rs + dx + wq] -= e[:, j : j + 1]
    ds = _pad_adjoint(dsp, pad).mul_(-2.0)  # dL/ds, (n, 1, H, W)
    da = (ds * s_img).sum((1, 2, 3)) / a.reshape(-1)
    if not need_x:
        return None, da
    wts = torch.tensor(LUM_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return _pad_adjoint(dxp, rs).addcmul_(wts, ds * a), da


class _NLMFunction(torch.autograd.Function):
    """``(x (B, 3, H, W), a (B,), rs, rp) -> (B, 3, H, W)``; first-order gradients for ``x`` and ``a``."""

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, rs: int, rp: int) -> Tensor:  # type: ignore[override]
        chunk, k, strip = _nlm_split(x, rs, rp)
        a4 = a.reshape(-1, 1, 1, 1)
        acc = torch.cat([_nlm_forward(x[i : i + chunk], a4[i : i + chunk], rs, rp, k, strip) for i in range(0, x.shape[0], chunk)])
        z = acc[:, 3:]
        out = acc[:, :3] / z
        ctx.save_for_backward(x, a, out, z)
        ctx.rs, ctx.rp = rs, rp
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, a, out, z = ctx.saved_tensors
        need_x = bool(ctx.needs_input_grad[0])
        chunk, k, strip = _nlm_split(x, ctx.rs, ctx.rp)
        a4 = a.reshape(-1, 1, 1, 1)
        parts = [
            _nlm_backward(x[i : i + chunk], a4[i : i + chunk], out[i : i + chunk], z[i : i + chunk],
                          grad[i : i + chunk], ctx.rs, ctx.rp, k, strip, need_x)
            for i in range(0, x.shape[0], chunk)
        ]
        dx = torch.cat([p[0] for p in parts]) if need_x else None
        return dx, torch.cat([p[1] for p in parts]), None, None


def _nlm(x: Tensor, strength: Tensor, search_window: int = NLM_SEARCH) -> Tensor:
    """Luminance-guided non-local means ``(B, 3, H, W) -> (B, 3, H, W)``, strength ``(B,)`` > 0.

    The function of :func:`_nlm_reference` (for ``search_window = 11``), computed from one
    box-filtered distance map per symmetric offset pair, with a hand-written backward pass that
    recomputes the maps (:class:`_NLMFunction`). First-order gradients only (no double backward).
    """
    rs, rp = search_window // 2, NLM_PATCH // 2
    hh = 2.0 * (NLM_SIGMA_MAX * strength) ** 2  # (B,)
    a = torch.sqrt(1.0 / (hh.clamp_min(1e-12) * NLM_PATCH**2))  # w = exp(-dist / h) = exp(-box(a^2 D))
    if rs == 0:
        return x.clone()
    return _NLMFunction.apply(x, a, rs, rp)


def _denoise(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    strength = p[:, 0]
    active = strength > 0
    if not bool(active.any()):
        return x.clone()
    window = _NLM_WINDOW.get()
    if bool(active.all()):
        return _nlm(x, strength, window)
    rows = torch.nonzero(active).flatten()  # strength 0 is the identity: only the others run
    return x.index_copy(0, rows, _nlm(x.index_select(0, rows), strength.index_select(0, rows), window))


def _box3_sum(x: Tensor) -> Tensor:
    """3 x 3 box sum with replicate padding, separable: four shifted adds (much faster than a
    depthwise ``conv2d`` on CPU)."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    r = (xp[..., :-2] + xp[..., 1:-1]).add_(xp[..., 2:])
    return (r[..., :-2, :] + r[..., 1:-1, :]).add_(r[..., 2:, :])


def _blur(x: Tensor) -> Tensor:
    """``conv(x, [[1,1,1],[1,5,1],[1,1,1]] / 13)`` with replicate padding."""
    return torch.add(_box3_sum(x), x, alpha=4.0).div_(13.0)


def _sharpen_blur(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    # p I + (1 - p) (S + 4 I) / 13  ==  I (9p + 4) / 13 + S (1 - p) / 13,  S = 3x3 box sum
    p = _col(p)
    out = torch.mul(_box3_sum(x), (1.0 - p) / 13.0).addcmul_(x, (9.0 * p + 4.0) / 13.0)
    return _clamp01(out, clamp)


def _tone(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    b = x.shape[0]
    steps = _TONE_STEPS
    s = p / p.sum(dim=1, keepdim=True)  # normalised slopes, sum 1
    prefix = torch.cumsum(s, dim=1) - s  # P_k / P_L
    k = torch.arange(steps, dtype=x.dtype, device=x.device)
    # on segment k the curve is a_k + b_k x with b_k = L s_k, a_k = P_k - k s_k
    slope = steps * s
    offset = prefix - k * s
    xf = x.clamp(0.0, 1.0).reshape(b, -1)
    # min 0 too: inside ``unchecked()`` a NaN pixel (long(NaN) is INT64_MIN) gives a NaN output, not an index error
    idx = (xf * steps).long().clamp_(0, steps - 1)
    out = torch.addcmul(torch.gather(offset, 1, idx), torch.gather(slope, 1, idx), xf)
    return out.reshape(x.shape)


def _contrast(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    lum = luminance(x).clamp_(0.0, 1.0)
    # 0.5 - cos(pi lum) / 2 == sin(pi lum / 2)**2; divide by lum + 1e-6 (authors' safe divide)
    ratio = torch.sin(lum * (0.5 * math.pi)).square_().div_(lum + 1e-6)
    # lerp(x, x * ratio, p) == x * ((1 - p) + p ratio): one full-size multiply
    p = _col(p)
    return _clamp01(x * torch.addcmul(1.0 - p, p, ratio), clamp)


def _saturation(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    # HSV round trip in closed form: keeping hue and value, a channel is v - v s a_c with a_c
    # fixed by the hue, so raising s to s' gives x' = v - (v - x) s'/s.  With
    # s' = s + (1 - s) m, m = (0.5 - |0.5 - v|) 0.8 and s = c / v (c = max - min):
    # lerp(x, x', p) = x + f (x - v) with f = p m (1 - s) / s = p m min / c.
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    c = v - mn
    m = 0.4 - 0.8 * (0.5 - v).abs()
    colourful = c > 0
    f = torch.where(colourful, _col(p) * m * mn / torch.where(colourful, c, torch.ones_like(c)), torch.zeros_like(c))
    out = torch.addcmul(-f * v, x, 1.0 + f)  # x (1 + f) - f v: one full-size pass
    if variant == "code":
        # grey pixel: hue 0, s' = m  ->  (v, v (1 - m), v (1 - m)); lerp by p
        g = torch.where(colourful, torch.zeros_like(c), _col(p) * v * m)
        out = out - torch.cat([torch.zeros_like(g), g, g], dim=1)
    return out


def _desaturation(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
    lum = luminance(x)
    return torch.lerp(x, lum.expand_as(x), _col(p))


#: name -> kernel(image, clamped params, variant, clamp). The executor calls through
#: :func:`apply`; tests may wrap entries to count calls.
KERNELS: dict[str, Callable[[Tensor, Tensor, str, bool], Tensor]] = {
    "exposure": _exposure,
    "white_balance": _white_balance,
    "ccm": _ccm,
    "gamma": _gamma,
    "denoise": _denoise,
    "sharpen_blur": _sharpen_blur,
    "tone": _tone,
    "contrast": _contrast,
    "saturation": _saturation,
    "desaturation": _desaturation,
}


def apply(name: str, image: Tensor, params: Tensor, *, variant: str = "paper", clamp: bool = True) -> Tensor:
    """Apply ISP module ``name`` to ``image`` with per-sample ``params``.

    Args:
        name: one of :data:`MODULE_NAMES`.
        image: ``(B, 3, H, W)`` float32/float64, values in [0, 1].
        params: ``(B, n_params(name))`` in the paper's units (see the module table above);
            clamped into :func:`param_ranges`.
        variant: ``"paper"`` (default) or ``"code"`` (the authors' code where it differs).
        clamp: clamp the output to [0, 1] for the modules that can leave it.

    Returns:
        ``(B, 3, H, W)``, same dtype and device as ``image``.

    Raises:
        ValueError: unknown name or variant, wrong image or params shape, NaN/Inf in ``image`` or
            ``params`` (the message names the argument and counts them; not checked inside
            :func:`ispbench.ops.checks.unchecked`).

    Example:
        >>> x = torch.full((1, 3, 2, 2), 0.25)
        >>> apply("exposure", x, torch.tensor([[1.0]]))[0, 0, 0, 0].item()
        0.5
    """
    p = _prepare(name, image, params, variant)
    return KERNELS[name](image, p, variant, clamp)


def _make_doc(name: str, text: str) -> Callable[..., Tensor]:
    def op(image: Tensor, params: Tensor, *, variant: str = "paper", clamp: bool = True) -> Tensor:
        return apply(name, image, params, variant=variant, clamp=clamp)

    op.__name__ = name
    op.__qualname__ = name
    op.__doc__ = text
    return op


exposure = _make_doc(
    "exposure",
    """Exposure, eq. 12: ``x * 2**p``, p ``(B, 1)`` in [-3.5, 3.5] EV; output clamped to [0, 1].

    Example:
        >>> exposure(torch.full((1, 3, 2, 2), 0.25), torch.tensor([[1.0]])).max().item()
        0.5
    """,
)
white_balance = _make_doc(
    "white_balance",
    """White balance, eq. 13: per-channel gains ``(B, 3)`` in [e^-1/2, e^1/2]; clamped output.

    ``variant="code"``: R gain fixed to 1, gains divided by ``1e-5 + 0.27 g_R + 0.67 g_G + 0.06 g_B``.
    ``variant="posisp"``: gains in [1/1.1, 1.1] divided by ``0.27 g_R + 0.67 g_G + 0.06 g_B``.
    """,
)
ccm = _make_doc(
    "ccm",
    """Colour correction matrix, eq. 14: ``(B, 9)`` row-major 3x3, each row divided by its sum
    (rows summing to less than 1e-6 in magnitude are divided by +-1e-6); clamped output.
    """,
)
gamma = _make_doc("gamma", """Gamma, eq. 15: ``max(x, 1e-3) ** p``, p ``(B, 1)`` in [1/3, 3].""")
denoise = _make_doc(
    "denoise",
    """Differentiable non-local means guided by luminance, eq. 16; strength p ``(B, 1)`` in [0, 1].

    For every pixel and each of the 11 x 11 search offsets, the distance ``d`` is the mean over a
    5 x 5 patch of squared luminance differences (eq. 20 luminance, replicate padding); the RGB
    output is the average of the offset pixels weighted by ``exp(-d / h)`` with
    ``h = 2 (0.1 p)**2`` (strength 1 suits luminance noise of standard deviation 0.1).
    Strength 0 is defined as the exact identity (the h -> 0 limit, except for exact ties); those
    samples are not computed.
    Cost: one box-filtered distance map per symmetric offset pair (60 for 11 x 11; the weights of
    ``d`` and ``-d`` are the same map shifted), and a backward pass that recomputes them instead
    of storing them: about 8 ms forward and 25 ms forward + backward per 160 px image on one CPU
    thread, ~10x faster than the former implementation (kept as ``_nlm_reference``; ``ispbench
    bench ops`` times both). Speed option, not the authors' module: :func:`nlm_search_window`
    (smaller search window). First-order gradients only (no double backward).
    """,
)
sharpen_blur = _make_doc(
    "sharpen_blur",
    """Sharpen/blur, eq. 17: ``p I + (1 - p) blur(I)``, blur kernel [[1,1,1],[1,5,1],[1,1,1]]/13
    with replicate padding; p ``(B, 1)`` in [0, 2] ([0, 10] for ``variant="code"``, [1e-5, 10] for
    ``"posisp"``); clamped output.
    """,
)
tone = _make_doc(
    "tone",
    """Tone curve, eq. 18: 8 slopes ``(B, 8)`` in [0.5, 2] of a monotone piecewise-linear curve
    through (k/8, P_k/P_8); evaluated as a per-segment lookup ``a_k + b_k x`` (same values as the
    sum of clipped ramps). Input clipped to [0, 1] as the equation's ``clip`` does.
    """,
)
contrast = _make_doc(
    "contrast",
    """Contrast, eqs. 19-20: ``lerp(x, x / lum * (0.5 - cos(pi lum) / 2), p)``, p ``(B, 1)`` in
    [-1, 1], lum clipped to [0, 1], divide by ``lum + 1e-6``; clamped output.
    """,
)
saturation = _make_doc(
    "saturation",
    """Saturation (authors' code; eq. 21 in the paper is garbled): in HSV,
    ``s' = s + (1 - s)(0.5 - |0.5 - v|) 0.8``, back to RGB, then ``lerp(x, x', p)``, p ``(B, 1)``
    in [0, 1]. Grey pixels stay grey (paper variant) or are tinted red as the code's hue-0
    convention does (``variant="code"``).
    """,
)
desaturation = _make_doc(
    "desaturation", """Desaturation, eq. 22: ``lerp(x, (lum, lum, lum), p)``, p ``(B, 1)`` in [0, 1]."""
)
