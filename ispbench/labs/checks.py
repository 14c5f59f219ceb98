"""Grading helpers shared by the labs: one :class:`CheckResult` per check, printed with a hint.

A check never raises on a student's function: a stub that raises ``NotImplementedError``, a wrong
shape or an exception inside the function becomes a failed :class:`CheckResult` whose message says
what was expected and what to try (:func:`call`, :func:`compare`, :func:`gradcheck_result`).

Example:
    >>> r = [CheckResult("shape", True, "(2, 3, 4, 4) as expected"), CheckResult("values", False, "off by 0.1")]
    >>> _ = report(*r)
    ✓ shape: (2, 3, 4, 4) as expected
    ✗ values: off by 0.1
    >>> solved(r)
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of a student's function.

    Attributes:
        name: what was checked, e.g. ``"white_balance: values"``.
        passed: whether the function passed.
        message: what was found; when failed, what was expected (shape, value at a test point,
            tolerance) and a hint.
    """

    name: str
    passed: bool
    message: str


class NotRun(Exception):
    """Raised by :func:`call` when the student's function could not be run (the failed result is attached)."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message)
        self.result = result


def _flatten(results: Iterable[CheckResult | Iterable[CheckResult]]) -> list[CheckResult]:
    out: list[CheckResult] = []
    for r in results:
        if isinstance(r, CheckResult):
            out.append(r)
        elif isinstance(r, Iterable) and not isinstance(r, (str, bytes)):
            out.extend(_flatten(r))
        else:
            raise TypeError(f"results: expected CheckResult objects or lists of them, got {type(r).__name__}")
    return out


def report(*results: CheckResult | Iterable[CheckResult]) -> list[CheckResult]:
    """Print one ``✓``/``✗`` line per check (lists are flattened) and return the checks as one list."""
    flat = _flatten(results)
    for r in flat:
        print(f"{'✓' if r.passed else '✗'} {r.name}: {r.message}")
    return flat


def solved(results: CheckResult | Iterable[CheckResult]) -> bool:
    """True when every check in ``results`` passed (and there is at least one)."""
    flat = _flatten([results])
    return bool(flat) and all(r.passed for r in flat)


def require(results: CheckResult | Iterable[CheckResult]) -> None:
    """Raise ``AssertionError`` listing every failed check (the labs call this when run with ``solutions=True``).

    Raises:
        AssertionError: some check failed, or ``results`` is empty.
    """
    flat = _flatten([results])
    if not flat:
        raise AssertionError("require: no check results were given (did the check cells run?)")
    failed = [r for r in flat if not r.passed]
    if failed:
        lines = "\n".join(f"  ✗ {r.name}: {r.message}" for r in failed)
        raise AssertionError(f"{len(failed)} of {len(flat)} checks failed:\n{lines}")


def results_frame(results: CheckResult | Iterable[CheckResult]) -> pd.DataFrame:
    """The checks as a table: columns ``check``, ``passed``, ``message``."""
    flat = _flatten([results])
    return pd.DataFrame({"check": [r.name for r in flat], "passed": [r.passed for r in flat],
                         "message": [r.message for r in flat]})


def call(name: str, fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or :class:`NotRun` carrying a failed :class:`CheckResult` that says why.

    A ``NotImplementedError`` is reported as an unfinished exercise; any other exception with its
    type and message, plus ``hint``.
    """
    if not callable(fn):
        raise NotRun(CheckResult(name, False, f"expected a function, got {type(fn).__name__}"))
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise NotRun(CheckResult(name, False, f"not implemented yet ({err or 'NotImplementedError'}); "
                                              "fill in the exercise cell and run it again")) from None
    except Exception as err:  # noqa: BLE001 - any failure of the student's code becomes a message
        extra = f" Hint: {hint}" if hint else ""
        raise NotRun(CheckResult(name, False, f"raised {type(err).__name__}: {err}.{extra}")) from None


def _describe(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"


def compare(name: str, got: Any, expected: torch.Tensor, *, atol: float = 1e-6, rtol: float = 1e-5,
            inputs: str = "", hint: str = "") -> CheckResult:
    """Check a tensor against the reference: type, shape, dtype, then values within ``atol + rtol |expected|``.

    The failure message names the worst entry (index, expected and received value) and the tolerance.

    Args:
        name: the check's name.
        got: what the student's function returned.
        expected: the reference tensor.
        inputs: the test inputs in words (shown in the message).
        hint: added to a value mismatch's message.
    """
    where = f" for {inputs}" if inputs else ""
    if not isinstance(got, torch.Tensor):
        return CheckResult(name, False, f"expected a torch.Tensor {_describe(expected)}{where}, got {type(got).__name__}")
    if got.shape != expected.shape:
        return CheckResult(name, False, f"expected shape {tuple(expected.shape)}{where}, got {tuple(got.shape)}. "
                                        "Hint: check how the parameters broadcast over the image")
    if got.dtype != expected.dtype:
        return CheckResult(name, False, f"expected dtype {expected.dtype}{where} (the input's), got {got.dtype}; "
                                        "do not hard-code float32")
    g, e = got.detach().double(), expected.detach().double()
    if not torch.isfinite(g).all():
        bad = int((~torch.isfinite(g)).sum())
        return CheckResult(name, False, f"{bad} non-finite value(s){where}; expected finite values. {hint}".strip())
    err = (g - e).abs()
    tol = atol + rtol * e.abs()
    if bool((err <= tol).all()):
        return CheckResult(name, True, f"matches the reference{where} (max |error| {float(err.max()):.2g}, "
                                       f"tolerance {atol:g} + {rtol:g}|ref|)")
    i = int((err - tol).flatten().argmax())
    index = tuple(int(k) for k in torch.unravel_index(torch.tensor(i), e.shape))
    msg = (f"differs from the reference{where}: at index {index} expected {float(e.flatten()[i]):.6g}, "
           f"got {float(g.flatten()[i]):.6g} ({int((err > tol).sum())} of {e.numel()} entries beyond "
           f"{atol:g} + {rtol:g}|ref|)")
    return CheckResult(name, False, f"{msg}. Hint: {hint}" if hint else msg)


def gradcheck_result(name: str, fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], *,
                     what: str = "", hint: str = "") -> CheckResult:
    """``torch.autograd.gradcheck`` of ``fn`` at float64 ``inputs`` as a :class:`CheckResult`.

    ``inputs`` must require grad; ``what`` names them in the message (e.g. ``"the image and the gains"``).
    """
    label = what or "its inputs"
    try:
        ok = torch.autograd.gradcheck(fn, tuple(inputs), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True)
    except NotImplementedError as err:
        return CheckResult(name, False, f"not implemented yet ({err or 'NotImplementedError'})")
    except Exception as err:  # noqa: BLE001 - gradcheck's own report is the helpful part
        text = str(err).strip().splitlines()
        first = " ".join(text[:3])[:400] if text else type(err).__name__
        extra = f" Hint: {hint}" if hint else ""
        return CheckResult(name, False, f"gradient w.r.t. {label} is wrong (float64 gradcheck, eps 1e-6, atol 1e-5): "
                                        f"{type(err).__name__}: {first}.{extra}")
    return CheckResult(name, bool(ok), f"analytic gradient w.r.t. {label} matches finite differences (float64)")


__all__ = ["CheckResult", "NotRun", "call", "compare", "gradcheck_result", "report", "require", "results_frame",
           "solved"]
