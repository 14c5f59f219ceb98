"""Projecting targets onto the finishing pipeline's reachable set (the paper's Expert-C projection).

RLPixTuner's FiveK targets are expert retouches, which the nine-slider pipeline cannot reproduce
exactly; the paper projects them onto the pipeline with a large-budget CMA-ES and trains and
scores against the projections. :func:`project_onto_pipeline` does the same for one pair:
``a* = argmin_a MSE(finish(image, a), target)`` by :func:`~ispbench.finishing_baselines.search.cmaes_search`.

:func:`projected_expert_eval_set` builds a reachable evaluation set meant to be harder this way: the
targets are :func:`ispbench.data.photos.retouch_outside_family` retouches (per-channel tone
curves, a hue rotation, a large-radius local-contrast boost) of ``split`` crops, and the goals are
their projections ``finish(crop, a*)``. Unlike Random-Target's independent uniform sliders, ``a*``
is where the sliders jointly come closest to an edit none of them makes.

Measured (``test`` split, ``n=24``, 128 px, ``budget=1000``, seed 2468; one torch thread):
about 2.5 s of CPU time per pair (3.5-4.7 s wall on a busy 2-core machine; about 2 min for the
set, cached afterwards). The projected goals are 25.9 dB mean PSNR from the raw retouches (20.0 to
32.3 dB: the part of each edit the pipeline cannot express).

How hard the set is, 200 queries, mean PSNR to the goal (Random-Target =
``random_target_eval_set("test", n=24, size=128)`` for comparison): greedy coordinate search
38.0 dB (median 36.2) here against 38.3 dB (median 39.0) on Random-Target; CMA-ES 30.2 against
32.2 dB; uniform random search 22.8 against 24.0 dB. So the set is a little harder for CMA-ES and
random search but **not clearly harder for greedy search**: the per-item spread (about 6.5 dB sd)
dwarfs the gap. Stronger retouches did not change that (greedy's mean stayed at 36.0-43.9 dB over
eleven strength settings, the mildest retouches giving the easiest set). Greedy's worst
Random-Target items pair a brighter exposure with lowered highlights (clipping), an interaction
the uniform goals already contain.

Example:
    >>> actions, projected, db = project_onto_pipeline(image, target, budget=1000)   # doctest: +SKIP
    >>> ev = projected_expert_eval_set("test", n=24, size=128)                       # doctest: +SKIP
    >>> ev.goal_actions.shape
    torch.Size([24, 9])
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ispbench import atomic
from ispbench.data.photos import EvalSet, eval_crops, photo_names, retouch_outside_family
from ispbench.finishing_baselines.search import N_PARAMS, Pipeline, cmaes_search, psnr_from_mse
from ispbench.ops.checks import require_finite
from ispbench.paths import cache_dir
from ispbench.training.checkpoint import safe_load

#: Bump when the retouches, the crops or the projection change: old cache files are then ignored.
PROJECTION_VERSION = "1"
#: Resampled crops overshoot [0, 1] by float rounding (cv2's area filter); that much is accepted.
_RANGE_SLACK = 1e-4


def project_onto_pipeline(image: torch.Tensor, target: torch.Tensor, budget: int = 1000, seed: int = 0, *,
                          pipeline: Pipeline | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The pipeline output closest to ``target``: CMA-ES over the nine actions with ``budget`` queries.

    Args:
        image: input ``(3, H, W)`` in [0, 1].
        target: the image to approach, ``(3, H, W)`` in [0, 1] (need not be reachable).
        budget: pipeline queries (>= 1; the paper's projection uses a large one, default 1000).
        seed: CMA-ES seed.
        pipeline: ``(B,3,H,W), (B,9) -> (B,3,H,W)``; default ``ispbench.ops.finishing.finish``.

    Returns:
        ``(actions (9,) in [-1, 1], projected (3, H, W) = pipeline(image, actions), psnr_to_target)``
        with the PSNR in dB (capped at 100 dB).

    Example:
        >>> a, projected, db = project_onto_pipeline(x, retouched, budget=1000)   # doctest: +SKIP
    """
    for name, value in (("image", image), ("target", target)):
        if not isinstance(value, torch.Tensor) or value.dim() != 3 or value.shape[0] != 3:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a (3, H, W) tensor, got {shape}")
        require_finite(name, value)
        if float(value.min()) < -_RANGE_SLACK or float(value.max()) > 1.0 + _RANGE_SLACK:
            raise ValueError(f"{name} must have values in [0, 1], got [{float(value.min())}, {float(value.max())}]")
    if image.shape != target.shape:
        raise ValueError(f"image and target must have one shape, got {tuple(image.shape)} and {tuple(target.shape)}")
    if int(budget) < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    result = cmaes_search(image, target, int(budget), seed=int(seed), pipeline=pipeline)
    return result.actions.clone(), result.image.clone(), float(psnr_from_mse(result.loss))


def projected_expert_cache_path(split: str = "test", n: int = 24, size: int = 128, seed: int = 2468,
                                budget: int = 1000) -> Path:
    """The cache file of :func:`projected_expert_eval_set` for these arguments (and :data:`PROJECTION_VERSION`)."""
    name = f"projected_expert_v{PROJECTION_VERSION}_{split}_n{int(n)}_s{int(size)}_seed{int(seed)}_b{int(budget)}.pt"
    return cache_dir() / "projected_expert" / name


def _check_cached(state: object, path: Path, arguments: dict) -> dict:
    """The cached state if it is this version's file for these arguments; else a clear error."""
    keys = ("version", "arguments", "inputs", "goals", "goal_actions", "names", "description")
    if not isinstance(state, dict) or any(key not in state for key in keys):
        raise ValueError(f"{path}: not a projected-expert cache file (expected keys {keys}); delete it to rebuild")
    if state["version"] != PROJECTION_VERSION or state["arguments"] != arguments:
        raise ValueError(f"{path}: made for version {state['version']!r}, arguments {state['arguments']}, not "
                         f"version {PROJECTION_VERSION!r}, arguments {arguments}; delete it to rebuild")
    return state


def projected_expert_eval_set(split: str = "test", n: int = 24, size: int = 128, seed: int = 2468,
                              budget: int = 1000) -> EvalSet:
    """Crops of ``split`` photos whose goals are projections of out-of-family retouches (cached).

    Item ``i``: input = crop ``i`` of :func:`ispbench.data.photos.eval_crops` (photos round-robin,
    scale in [0.5, 1], from ``np.random.default_rng(seed)``; clipped to [0, 1]); the same generator then draws, crop
    by crop, the parameters of :func:`~ispbench.data.photos.retouch_outside_family`; ``a*`` =
    :func:`project_onto_pipeline` of that retouch (CMA-ES, ``budget`` queries, seed ``seed + i``);
    goal = ``finish(input, a*)`` and ``goal_actions`` = ``a*`` (so goals are reachable exactly).

    The set costs ``n * budget`` pipeline queries (see the module docstring for times), so it is
    written once to :func:`projected_expert_cache_path` (atomically) and read back with
    ``weights_only=True``; the file also keeps each item's ``psnr_to_target`` (dB, projection to
    raw retouch).

    Args:
        split: ``train``, ``val`` or ``test``.
        n: number of pairs (>= 1).
        size: crop side in pixels (>= 8).
        seed: seed of the crops and retouches.
        budget: CMA-ES queries per projection (>= 1).

    Returns:
        :class:`~ispbench.data.photos.EvalSet`: ``inputs``/``goals`` ``(n, 3, size, size)``,
        ``goal_actions`` ``(n, 9)``, ``names`` the photo of each item.

    Example:
        >>> ev = projected_expert_eval_set("test", n=24, size=128)   # doctest: +SKIP
        >>> len(ev), ev.names[:3]
        (24, ['chelsea', 'coffee', 'grace_hopper'])
    """
    names = photo_names(split)  # refuses an unknown split before any work
    for label, value, low in (("n", n, 1), ("size", size, 8), ("budget", budget, 1)):
        if int(value) < low:
            raise ValueError(f"{label} must be >= {low}, got {value}")
    arguments = {"split": split, "n": int(n), "size": int(size), "seed": int(seed), "budget": int(budget)}
    path = projected_expert_cache_path(split, n, size, seed, budget)
    if path.is_file():
        state = _check_cached(safe_load(path, what="projected-expert cache file"), path, arguments)
        return EvalSet(state["inputs"], state["goals"], state["goal_actions"], list(state["names"]),
                       state["description"])

    rng = np.random.default_rng(seed)
    crops, used = eval_crops(split, n, size, rng)
    inputs, goals = [], []
    actions = torch.zeros(int(n), N_PARAMS)
    psnr_to_target = torch.zeros(int(n), dtype=torch.float64)
    started = time.perf_counter()
    for i, crop in enumerate(np.clip(c, 0.0, 1.0) for c in crops):
        image = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        target = torch.from_numpy(np.ascontiguousarray(retouch_outside_family(crop, rng).transpose(2, 0, 1)))
        best_actions, projected, db = project_onto_pipeline(image, target, budget, seed=int(seed) + i)
        actions[i], psnr_to_target[i] = best_actions, db
        inputs.append(image)
        goals.append(projected)
    seconds_per_pair = (time.perf_counter() - started) / int(n)
    description = (f"projected expert targets: split {split!r} ({', '.join(names)}), {n} crops at {size}x{size}, "
                   f"out-of-family retouches (per-channel tone curves, hue rotation, local contrast) projected "
                   f"onto the pipeline by CMA-ES with {budget} queries (mean {float(psnr_to_target.mean()):.1f} dB "
                   f"from the raw retouches), seed {seed}")
    state = {"version": PROJECTION_VERSION, "arguments": arguments, "inputs": torch.stack(inputs),
             "goals": torch.stack(goals), "goal_actions": actions, "names": used, "description": description,
             "psnr_to_target": psnr_to_target, "seconds_per_pair": seconds_per_pair}
    atomic.torch_save(state, path)
    return EvalSet(state["inputs"], state["goals"], actions, list(used), description)


__all__ = ["project_onto_pipeline", "projected_expert_eval_set", "projected_expert_cache_path", "PROJECTION_VERSION"]
