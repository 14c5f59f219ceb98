"""Input checks shared by the entry points: non-finite values refused, saturation reported.

:func:`require_finite` is the one place that refuses NaN/Inf. The entry points call it on their
images, parameters and actions: the ISP modules (:func:`ispbench.ops.modules.apply`), the stage
executor (:func:`~ispbench.ops.executor.apply_stage`, :func:`~ispbench.ops.executor.apply_pipeline`),
the finishing pipeline (:mod:`ispbench.ops.finishing`; :mod:`ispbench.ops.finishing_np` has its
own copy because it must not import ispbench), the default ISP, the finishing metrics and the
detection scorer. One NaN pixel would otherwise spread silently (the default ISP's global
exposure mean turns it into an all-NaN image) or crash far from its cause (the tone module's
lookup index).

Cost: one read of the tensor (a ``sum``; NaN and Inf always propagate into it, and only when the
sum is not finite are the non-finite entries counted, so an overflowing sum of finite values is
not refused). Measured with one CPU thread on ``(8, 3, 512, 512)`` float32 (``ispbench bench
ops``, row ``"require_finite (check)"``): about 1 ms, a third of the cheapest module (exposure,
about 3 ms), while ``torch.isfinite(x).all()`` costs about 19 ms. On CUDA the check also waits
for the tensor (one synchronisation). That is not negligible in a hot loop, so there is an
opt-out, :func:`unchecked`: use it only where the inputs are known finite, e.g. a trainer's
inner loop over images and actions it has already checked (or produced with finite-by-construction
ops, such as a ``tanh`` policy head on checked observations).

:func:`warn_saturation` reports raw counts clipped at a white level or bit depth
(:class:`SaturationWarning`), so saturation is never silent.

Example:
    >>> import torch
    >>> require_finite("image", torch.zeros(2, 3, 4, 4))
    >>> x = torch.zeros(2, 3); x[0, 1] = float("nan")
    >>> require_finite("image", x)
    Traceback (most recent call last):
    ...
    ValueError: image has 1 non-finite value (NaN/Inf) of 6 (1 NaN, 0 Inf); expected finite values
    >>> with unchecked():
    ...     require_finite("image", x)  # skipped: the caller vouches for its input
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "SaturationWarning",
    "checks_enabled",
    "count_nonfinite",
    "nonfinite_message",
    "require_finite",
    "require_finite_number",
    "unchecked",
    "warn_saturation",
]

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("ispbench_finite_checks", default=True)


class SaturationWarning(UserWarning):
    """Raw counts were clipped at a white level or bit depth (the clipped values carry no information)."""


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Skip :func:`require_finite` inside the ``with`` block (this thread / async context only).

    For hot loops whose inputs are already known finite; shapes, dtypes and ranges are still
    checked. Nesting is allowed; the previous state is restored on exit.

    Example:
        >>> import torch
        >>> from ispbench.ops import apply
        >>> x = torch.rand(2, 3, 8, 8)
        >>> require_finite("x", x)            # checked once ...
        >>> with unchecked():                 # ... then used many times without re-checking
        ...     y = apply("exposure", x, torch.zeros(2, 1))
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def checks_enabled() -> bool:
    """Whether :func:`require_finite` checks here (``False`` inside :func:`unchecked`)."""
    return _ENABLED.get()


def _nan_inf(x: Any) -> tuple[int, int, int]:
    """``(n_nan, n_inf, numel)`` of a float tensor or array."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        return int(torch.isnan(t).sum()), int(torch.isinf(t).sum()), t.numel()
    a = np.asarray(x)
    return int(np.isnan(a).sum()), int(np.isinf(a).sum()), a.size


def count_nonfinite(x: Any) -> int:
    """Number of NaN/Inf entries of a tensor or array (0 for integer and bool dtypes)."""
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.is_complex()):
            return 0
        return int((~torch.isfinite(x.detach())).sum())
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.inexact):
        return 0
    return int((~np.isfinite(a)).sum())


def nonfinite_message(name: str, n_nan: int, n_inf: int, numel: int) -> str:
    """The refusal text: ``"<name> has 3 non-finite values (NaN/Inf) of 768 (3 NaN, 0 Inf); ..."``."""
    n = n_nan + n_inf
    return (
        f"{name} has {n} non-finite value{'s' if n != 1 else ''} (NaN/Inf) of {numel} "
        f"({n_nan} NaN, {n_inf} Inf); expected finite values"
    )


def require_finite(name: str, x: Any) -> None:
    """Raise ``ValueError`` naming ``name`` and the count if ``x`` has NaN or Inf entries.

    Accepts a torch tensor (any device; gradients untouched) or a NumPy array / array-like.
    Integer and bool data are always finite (nothing is read). Skipped inside :func:`unchecked`.

    Args:
        name: the argument's name as the caller's user knows it (``"image"``, ``"params['ccm']"``).
        x: the values.

    Raises:
        ValueError: ``"<name> has <n> non-finite values (NaN/Inf) of <numel> (<a> NaN, <b> Inf); ..."``.
    """
    if not _ENABLED.get():
        return
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
            return
        t = x.detach()
        # one read: NaN/Inf always reach the sum; low-precision dtypes are summed in float32 so
        # that a large image of ordinary values does not overflow into the slow path
        s = t.sum(dtype=torch.float32) if t.dtype in (torch.float16, torch.bfloat16) else t.sum()
        if bool(torch.isfinite(s)):
            return
    else:
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.inexact) or a.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(a.sum()):
                return
        x = a
    n_nan, n_inf, numel = _nan_inf(x)
    if n_nan + n_inf:  # else the sum of finite values overflowed: fine
        raise ValueError(nonfinite_message(name, n_nan, n_inf, numel))


def require_finite_number(name: str, value: Any) -> None:
    """:func:`require_finite` for a Python number or a short sequence of numbers (cheap, always checked)."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    bad = [v for v in values if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"{name} must be finite, got {value!r} ({len(bad)} non-finite)")


def warn_saturation(where: str, n_over: int, total: int, limit: float, what: str = "white level",
                    consequence: str = "are clipped to it", stacklevel: int = 3) -> None:
    """Warn (:class:`SaturationWarning`) that ``n_over`` of ``total`` values exceed ``limit``.

    Example text: ``"raw: 12 of 4096 values (0.293%) exceed the white level 4095 and are clipped
    to it"``. Nothing is emitted when ``n_over`` is 0. ``stacklevel`` 3 points at the caller of
    the function that calls this one.
    """
    if n_over <= 0:
        return
    frac = 100.0 * n_over / max(total, 1)
    limit_text = f"{int(limit)}" if float(limit).is_integer() else f"{limit:g}"
    warnings.warn(
        f"{where}: {n_over} of {total} values ({frac:.3g}%) exceed the {what} {limit_text} and {consequence}",
        SaturationWarning,
        stacklevel=stacklevel,
    )
