"""Run one stage (or a whole pipeline) of per-sample module choices over a batch.

The authors' code runs all ten modules on every sample at every stage and keeps one by a
one-hot mask. Here each module runs **only on the samples that chose it**: the samples are
gathered with ``index_select``, processed, and scattered back with ``index_copy_``; so a stage
costs the sum of the chosen modules' costs, not ten modules per sample.

Conventions:

* module indices index :data:`ispbench.ops.modules.MODULE_NAMES`; :data:`STOP` (-1) means
  "skip": the sample passes unchanged (a stopped or shorter pipeline).
* parameters are either a dict ``name -> (B, n_params(name))`` (rows of samples that did not
  choose the module are ignored; absent names are only an error if some sample chose them), or
  a padded tensor ``(B, MAX_PARAMS)`` whose first ``n_params`` columns are used.
* gradients flow to the image and to the parameters of the chosen modules.
* NaN/Inf are refused (``ValueError`` naming the argument and the count): the image once per
  call (once per pipeline in :func:`apply_pipeline`, not once per stage), the parameters of the
  rows that use them (padding columns and rows of other modules are ignored, as their values
  are). :func:`ispbench.ops.checks.unchecked` skips these checks.

Example:
    >>> import torch
    >>> from ispbench.ops import apply_stage, apply_pipeline, MAX_PARAMS
    >>> x = torch.rand(4, 3, 8, 8)
    >>> idx = torch.tensor([0, 9, -1, 0])  # exposure, desaturation, skip, exposure
    >>> y = apply_stage(x, idx, torch.zeros(4, MAX_PARAMS))
    >>> y.shape
    torch.Size([4, 3, 8, 8])
"""

from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import Tensor

from ispbench.ops import modules as _m
from ispbench.ops.checks import require_finite, unchecked

#: Module index meaning "skip this stage" (pipeline stopped or shorter).
STOP: int = -1

Params = Union[Tensor, Mapping[str, Tensor]]


def _check_indices(module_index: Tensor, batch: int, name: str = "module_index", shape: str = "(B,)") -> None:
    if not isinstance(module_index, Tensor) or module_index.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must be an integer tensor of shape {shape}, got {getattr(module_index, 'dtype', type(module_index))}")
    n = len(_m.MODULE_NAMES)
    if module_index.numel() and (int(module_index.min()) < STOP or int(module_index.max()) >= n):
        raise ValueError(f"{name} values must be in [{STOP}, {n - 1}] ({STOP} = skip), got min {int(module_index.min())}, max {int(module_index.max())}")


def _params_for(params: Params, name: str, batch: int) -> Tensor:
    n = _m.n_params(name)
    if isinstance(params, Mapping):
        if name not in params:
            raise ValueError(f"params has no entry for chosen module {name!r}; keys: {sorted(params)}")
        p = params[name]
        if p.ndim != 2 or p.shape != (batch, n):
            raise ValueError(f"params[{name!r}] must have shape (B, {n}), got {tuple(p.shape)} (B = {batch})")
        return p
    if not isinstance(params, Tensor) or params.ndim != 2 or params.shape[0] != batch or params.shape[1] < n:
        shape = tuple(params.shape) if isinstance(params, Tensor) else type(params).__name__
        raise ValueError(f"padded params must have shape (B, {_m.MAX_PARAMS}) with B = {batch}, got {shape}")
    return params[:, :n]


def apply_stage(
    image: Tensor,
    module_index: Tensor,
    params: Params,
    *,
    variant: str = "paper",
    clamp: bool = True,
) -> Tensor:
    """Apply, per sample, the module it chose.

    Args:
        image: ``(B, 3, H, W)`` in [0, 1], finite.
        module_index: ``(B,)`` integer, index into ``MODULE_NAMES`` or ``STOP`` (-1 = unchanged).
        params: dict ``name -> (B, n)`` or padded tensor ``(B, MAX_PARAMS)``; the entries the
            chosen modules use must be finite.
        variant, clamp: passed to :func:`ispbench.ops.modules.apply`.

    Returns:
        ``(B, 3, H, W)``; sample ``b`` is ``apply(MODULE_NAMES[module_index[b]], image[b:b+1], ...)``.

    Raises:
        ValueError: bad shapes or indices; NaN/Inf in ``image`` or in the used ``params``.
    """
    _m._check_image(image)
    b = image.shape[0]
    _check_indices(module_index, b)
    if module_index.shape != (b,):
        raise ValueError(f"module_index must have shape (B,) = ({b},), got {tuple(module_index.shape)}")
    require_finite("image", image)
    return _stage(image, module_index, params, variant, clamp, "params")


def _stage(image: Tensor, module_index: Tensor, params: Params, variant: str, clamp: bool, params_name: str) -> Tensor:
    """:func:`apply_stage` once ``image`` (finite) and ``module_index`` are checked; checks the used params."""
    b = image.shape[0]
    module_index = module_index.to(image.device)
    chosen = torch.unique(module_index).tolist()
    active = [int(i) for i in chosen if i != STOP]
    if not active:
        return image.clone()
    if len(active) == 1 and STOP not in chosen:  # whole batch chose one module: no gather/scatter
        name = _m.MODULE_NAMES[active[0]]
        p = _params_for(params, name, b)
        require_finite(f"{params_name} for {name!r}", p)
        with unchecked():  # image and params checked above: no second pass in apply
            return _m.apply(name, image, p, variant=variant, clamp=clamp)
    out = image.clone()
    for i in active:
        name = _m.MODULE_NAMES[i]
        rows = torch.nonzero(module_index == i).flatten()
        p = _params_for(params, name, b).index_select(0, rows)
        require_finite(f"{params_name} for {name!r} (rows of the samples that chose it)", p)
        with unchecked():
            y = _m.apply(name, image.index_select(0, rows), p, variant=variant, clamp=clamp)
        out.index_copy_(0, rows, y.to(out.dtype))
    return out


def apply_pipeline(
    image: Tensor,
    modules: Tensor,
    params: Tensor,
    *,
    variant: str = "paper",
    clamp: bool = True,
    return_stages: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Apply per-sample pipelines of variable length.

    Args:
        image: ``(B, 3, H, W)`` in [0, 1], finite (checked once, not per stage).
        modules: ``(B, T)`` integer module indices; ``STOP`` (-1) skips that stage for that
            sample (a pipeline that stopped early is padded with -1).
        params: ``(B, T, MAX_PARAMS)`` padded parameters of each stage.
        variant, clamp: passed to each module.
        return_stages: also return the list of the T intermediate images.

    Returns:
        ``(B, 3, H, W)`` (and the per-stage images when ``return_stages``).

    Raises:
        ValueError: bad shapes or indices; NaN/Inf in ``image`` or in the params a stage uses
            (named ``params[:, t] for 'name'``).
    """
    _m._check_image(image)
    b = image.shape[0]
    if not isinstance(modules, Tensor) or modules.ndim != 2 or modules.shape[0] != b:
        raise ValueError(f"modules must have shape (B, T) with B = {b}, got {tuple(getattr(modules, 'shape', ()))}")
    _check_indices(modules, b, "modules", "(B, T)")
    t_len = modules.shape[1]
    if not isinstance(params, Tensor) or params.ndim != 3 or params.shape[:2] != (b, t_len) or params.shape[2] < _m.MAX_PARAMS:
        raise ValueError(
            f"params must have shape (B, T, {_m.MAX_PARAMS}) = ({b}, {t_len}, {_m.MAX_PARAMS}), "
            f"got {tuple(getattr(params, 'shape', ()))}"
        )
    require_finite("image", image)  # once: every stage maps finite images and params to finite images
    stages = []
    x = image
    for t in range(t_len):
        idx = modules[:, t]
        if bool((idx != STOP).any()):
            x = _stage(x, idx, params[:, t], variant, clamp, f"params[:, {t}]")
        stages.append(x)
    return (x, stages) if return_stages else x
