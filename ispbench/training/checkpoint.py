"""Seeding, RNG states and checkpoints of a run folder (``<out_dir>/last.pt``).

Every trainer seeds once with :func:`ispbench.seeding.seed_everything`, keeps its own
generators (a ``torch.Generator`` for data order, a ``numpy.random.Generator`` for crops ...),
and stores :func:`rng_state` in each checkpoint, so a resumed run draws the same numbers as an
uninterrupted one. The state is made of tensors, lists, ints, floats and strings only, so
``torch.load(path, weights_only=True)`` reads it::

    gens = {"data": data_rng, "explore": explore_gen}
    save_checkpoint(run_dir, {"step": step, "rng": rng_state(gens), ...})
    ckpt = load_checkpoint(run_dir, resume=True)      # None (and says why) when there is none
    if ckpt is not None:
        restore_rng_state(ckpt["rng"], gens)
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ispbench import atomic

#: The checkpoint every trainer writes in its run folder (and resumes from).
CHECKPOINT_NAME = "last.pt"

Generators = Mapping[str, "torch.Generator | np.random.Generator"]


def _numpy_global_state() -> dict[str, Any]:
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def _python_state() -> dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    return {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next}


def _generator_state(gen: torch.Generator | np.random.Generator) -> Any:
    if isinstance(gen, torch.Generator):
        return gen.get_state()
    if isinstance(gen, np.random.Generator):
        return gen.bit_generator.state  # a dict of str and (big) ints
    raise TypeError(f"rng_state: expected torch.Generator or numpy.random.Generator, got {type(gen).__name__}")


def rng_state(generators: Generators | None = None) -> dict[str, Any]:
    """The torch, NumPy and Python global RNG states plus those of ``generators`` (by name).

    Returns:
        ``{"torch": ByteTensor, "numpy": {...}, "python": {...}, "generators": {name: state}}``,
        readable with ``torch.load(..., weights_only=True)``.
    """
    return {"torch": torch.get_rng_state(), "numpy": _numpy_global_state(), "python": _python_state(),
            "generators": {name: _generator_state(gen) for name, gen in (generators or {}).items()}}


def restore_rng_state(state: Mapping[str, Any], generators: Generators | None = None) -> None:
    """Set the global RNGs and every generator in ``generators`` back to ``state`` (from :func:`rng_state`).

    Raises:
        KeyError: when ``state`` lacks one of ``generators``' names.
    """
    torch.set_rng_state(state["torch"])
    npg = state["numpy"]
    np.random.set_state((npg["bit_generator"], npg["key"].numpy().astype(np.uint32), npg["pos"], npg["has_gauss"],
                         npg["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    saved = state["generators"]
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"restore_rng_state: the checkpoint has no state of generator {name!r} (has {sorted(saved)})")
        if isinstance(gen, torch.Generator):
            gen.set_state(saved[name])
        else:
            gen.bit_generator.state = saved[name]


def checkpoint_path(run_dir: str | Path) -> Path:
    """``<run_dir>/last.pt``."""
    return Path(run_dir) / CHECKPOINT_NAME


def save_checkpoint(run_dir: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically to ``<run_dir>/last.pt`` (temporary file, then rename)."""
    return atomic.torch_save(dict(payload), checkpoint_path(run_dir))


def load_checkpoint(run_dir: str | Path, *, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` for a fresh start; says which on stderr.

    Args:
        run_dir: the run folder.
        resume: whether resuming was asked; ``False`` starts fresh even when ``last.pt`` exists.

    Returns:
        The loaded checkpoint (CPU tensors) or ``None``.
    """
    path = checkpoint_path(run_dir)
    if not resume:
        if path.exists():
            print(f"not resuming (resume off): {path} will be overwritten", file=sys.stderr)
        return None
    if not path.exists():
        print(f"resume asked but there is no checkpoint at {path}: starting a fresh run", file=sys.stderr)
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt


__all__ = ["CHECKPOINT_NAME", "checkpoint_path", "load_checkpoint", "restore_rng_state", "rng_state", "save_checkpoint"]
