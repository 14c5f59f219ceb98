"""Lab 1: write two differentiable ISP modules and check them against :mod:`ispbench.ops.modules`.

The student writes

* ``white_balance(image, gains)``: ``image (B, 3, H, W)`` times per-channel ``gains (B, 3)``, the gains
  clamped to ``[e^-1/2, e^1/2]`` first and the output clamped to [0, 1] (AdaptiveISP eq. 13, the
  reference :func:`ispbench.ops.modules.white_balance`);
* ``gamma(image, p)``: ``max(image, 1e-3) ** p`` with ``p (B, 1)`` clamped to ``[1/3, 3]`` (eq. 15,
  :func:`ispbench.ops.modules.gamma`).

:func:`check_white_balance` and :func:`check_gamma` run the student's function on seeded random
inputs and compare with the reference: output shape and dtype, values in range, the clamps at
out-of-range parameters, the epsilon of gamma, and ``torch.autograd.gradcheck`` in float64 with
respect to the image and the parameter (at points away from the clamps' kinks, where the
derivative exists).

Example:
    >>> from ispbench.ops.modules import white_balance
    >>> all(r.passed for r in check_white_balance(white_balance))
    True
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ispbench.labs.checks import CheckResult, NotRun, call, compare, gradcheck_result
from ispbench.ops import modules

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: White-balance gain range (the reference's paper variant): ``[e^-1/2, e^1/2]``.
GAIN_RANGE = (math.exp(-0.5), math.exp(0.5))
#: Gamma exponent range: ``[1/3, 3]``.
GAMMA_RANGE = (1.0 / 3.0, 3.0)
#: Gamma's floor on the input (keeps ``x ** p`` differentiable at 0).
GAMMA_EPS = 1e-3


def random_inputs(n_params: int, *, batch: int = 2, size: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32,
                  low: float = 0.0, high: float = 1.0, param_low: float = 0.0, param_high: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``image (batch, 3, size, size)`` uniform in ``[low, high]`` and ``params (batch, n_params)``
    uniform in ``[param_low, param_high]``."""
    g = torch.Generator().manual_seed(seed)
    image = low + (high - low) * torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64)
    params = param_low + (param_high - param_low) * torch.rand(batch, n_params, generator=g, dtype=torch.float64)
    return image.to(dtype), params.to(dtype)


def _fmt(t: torch.Tensor) -> str:
    return str([[round(float(v), 4) for v in row] for row in t])


def _run(name: str, fn: Op, image: torch.Tensor, params: torch.Tensor, hint: str) -> torch.Tensor | CheckResult:
    try:
        return call(name, fn, image, params, hint=hint)
    except NotRun as err:
        return err.result


def _check_op(label: str, fn: Op, reference: Op, *, n_params: int, in_range: tuple[float, float],
              out_of_range: torch.Tensor, clamp_hint: str, value_hint: str, smooth: dict, trials: int,
              extra: list[tuple[str, torch.Tensor, torch.Tensor, str]]) -> list[CheckResult]:
    results: list[CheckResult] = []
    broadcast = (f"params is (B, {n_params}); reshape it to (B, {n_params}, 1, 1) so that it broadcasts over "
                 "(B, 3, H, W)")
    # 1. shape and dtype on float32 and float64
    for dtype in (torch.float32, torch.float64):
        name = f"{label}: shape and dtype ({str(dtype).replace('torch.', '')})"
        image, params = random_inputs(n_params, batch=3, size=5, seed=1, dtype=dtype, param_low=in_range[0],
                                      param_high=in_range[1])
        out = _run(name, fn, image, params, broadcast)
        if isinstance(out, CheckResult):
            results.append(out)
            continue
        ref = reference(image, params)
        if not isinstance(out, torch.Tensor):
            results.append(CheckResult(name, False, f"expected a torch.Tensor {tuple(ref.shape)}, got {type(out).__name__}"))
        elif out.shape != ref.shape or out.dtype != ref.dtype:
            results.append(CheckResult(name, False, f"expected {tuple(ref.shape)} {ref.dtype} for image (3, 3, 5, 5) "
                                                    f"and params (3, {n_params}), got {tuple(out.shape)} {out.dtype}. "
                                                    f"Hint: {broadcast}; keep the image's dtype"))
        else:
            results.append(CheckResult(name, True, f"{tuple(out.shape)} {out.dtype}, as the reference"))
    # 2. values against the reference on random in-range inputs
    name = f"{label}: values ({trials} random inputs, parameters in range)"
    worst: CheckResult | None = None
    for t in range(trials):
        image, params = random_inputs(n_params, batch=2, size=6, seed=100 + t, dtype=torch.float64,
                                      param_low=in_range[0], param_high=in_range[1])
        out = _run(name, fn, image, params, broadcast)
        res = out if isinstance(out, CheckResult) else compare(name, out, reference(image, params), atol=1e-9, rtol=1e-7,
                                                               inputs=f"random trial {t} (seed {100 + t})", hint=value_hint)
        if not res.passed:
            worst = res
            break
    results.append(worst or CheckResult(name, True, f"all {trials} trials match the reference to 1e-9"))
    # 3. out-of-range parameters are clamped, 4. module-specific cases
    image, _ = random_inputs(n_params, batch=out_of_range.shape[0], size=4, seed=7, dtype=torch.float64)
    cases = [(f"{label}: parameters outside the range are clamped", image, out_of_range, clamp_hint), *extra]
    for name, img, params, hint in cases:
        out = _run(name, fn, img, params, hint)
        results.append(out if isinstance(out, CheckResult) else
                       compare(name, out, reference(img, params), atol=1e-9, rtol=1e-7,
                               inputs=f"params {_fmt(params)}", hint=hint))
    # 5. gradcheck in float64 w.r.t. the image and the parameter, away from the kinks
    image, params = random_inputs(n_params, batch=2, size=3, seed=11, dtype=torch.float64, **smooth)
    image.requires_grad_(True)
    params.requires_grad_(True)
    results.append(gradcheck_result(f"{label}: gradcheck (float64)", fn, (image, params),
                                    what="the image and the parameters",
                                    hint="use differentiable torch operations only (no .item(), .numpy(), in-place "
                                         "writes into the input, or torch.no_grad())"))
    return results


def check_white_balance(fn: Op, *, trials: int = 5) -> list[CheckResult]:
    """Check a student's ``white_balance(image (B, 3, H, W), gains (B, 3)) -> (B, 3, H, W)``.

    Against :func:`ispbench.ops.modules.white_balance` (paper variant): shape and dtype (float32,
    float64), values on ``trials`` random inputs with gains in range (to 1e-9 in float64), gains
    outside ``[e^-1/2, e^1/2]`` clamped, outputs above 1 clamped, and float64 gradcheck with respect
    to the image and the gains at points where no clamp is active.

    Returns:
        One :class:`~ispbench.labs.checks.CheckResult` per check; never raises on a broken ``fn``.
    """
    out_of_range = torch.tensor([[3.0, 1.0, 0.1], [0.2, 5.0, 1.2]], dtype=torch.float64)
    bright = torch.full((1, 3, 2, 2), 0.9, dtype=torch.float64)
    extra = [("white_balance: output clamped to [0, 1]", bright, torch.tensor([[1.6, 1.0, 0.8]], dtype=torch.float64),
              "an image of 0.9 times a gain of 1.6 (clamped to e^0.5 = 1.6487) is 1.44: clamp the output to [0, 1]")]
    return _check_op("white_balance", fn, modules.white_balance, n_params=3, in_range=(0.65, 1.6),
                     out_of_range=out_of_range,
                     clamp_hint="clamp each gain to [e^-1/2, e^1/2] = [0.6065, 1.6487] before multiplying",
                     value_hint="out = image * gains[:, :, None, None], then clamp to [0, 1]",
                     smooth=dict(low=0.05, high=0.55, param_low=0.7, param_high=1.5),
                     trials=trials, extra=extra)


def check_gamma(fn: Op, *, trials: int = 5) -> list[CheckResult]:
    """Check a student's ``gamma(image (B, 3, H, W), p (B, 1)) -> (B, 3, H, W)``.

    Against :func:`ispbench.ops.modules.gamma`: shape and dtype, values on ``trials`` random inputs
    with ``p`` in ``[1/3, 3]``, ``p`` outside the range clamped, the ``1e-3`` floor on the input (a
    black pixel gives ``1e-3 ** p``, not 0 or NaN), and float64 gradcheck with respect to the image
    and ``p``.

    Returns:
        One :class:`~ispbench.labs.checks.CheckResult` per check; never raises on a broken ``fn``.
    """
    out_of_range = torch.tensor([[0.05], [7.0]], dtype=torch.float64)
    black = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    extra = [("gamma: the 1e-3 floor at black pixels", black, torch.tensor([[0.5], [2.0]], dtype=torch.float64),
              "apply max(image, 1e-3) before the power: 0 ** p has an infinite or undefined derivative, and the "
              "reference gives 1e-3 ** p (0.0316 for p = 0.5)")]
    return _check_op("gamma", fn, modules.gamma, n_params=1, in_range=(0.4, 2.8), out_of_range=out_of_range,
                     clamp_hint="clamp p to [1/3, 3] first (p = 0.05 becomes 1/3, p = 7 becomes 3)",
                     value_hint="out = image.clamp_min(1e-3) ** p[:, :, None, None]",
                     smooth=dict(low=0.05, high=0.95, param_low=0.5, param_high=2.5),
                     trials=trials, extra=extra)


def cast_photo(photo: torch.Tensor, *, gains: tuple[float, float, float] = (0.75, 1.0, 1.35),
               gamma: float = 1.8) -> torch.Tensor:
    """A photo ``(B, 3, H, W)`` given a colour cast (per-channel ``gains``) and darkened by ``x ** gamma``:
    the input of the lab's demonstration, which white balance ``1 / gains`` and gamma ``1 / gamma`` undo."""
    g = torch.tensor(gains, dtype=photo.dtype).view(1, 3, 1, 1)
    return (photo * g).clamp(0, 1).clamp_min(GAMMA_EPS) ** gamma


__all__ = ["GAIN_RANGE", "GAMMA_EPS", "GAMMA_RANGE", "cast_photo", "check_gamma", "check_white_balance",
           "random_inputs"]
