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

Every file is read with :func:`safe_load` (``weights_only=True``: tensors, plain containers and
numbers only, never arbitrary pickled objects, so a crafted ``.pt`` cannot run code). A resume
continues only with the settings the checkpoint was written with: :func:`resume_segments` compares
them (:func:`setting_changes`) and refuses a difference, naming each (``lr: 0.0001 -> 0.5``),
unless the trainer's ``--allow-changed-settings`` is given; then the changes are recorded per
segment in the checkpoint (``segments``). Settings in :data:`SEGMENT_SETTINGS` (where the run
goes, how long it runs, how often it logs and checkpoints, threads, progress bar) may change
between segments freely; they are recorded too.
"""

from __future__ import annotations

import hashlib
import json
import pickle
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

#: Settings that may differ between the segments of one run (a resume) without ``--allow-changed-settings``:
#: where the run and its exports go, how far it runs (``iterations``/``total_steps``: with a decaying
#: learning rate a longer run continues on the new schedule), when this invocation stops, how often it
#: logs, checkpoints and snapshots, the final evaluation's size, threads and the progress bar. Everything
#: else (seed, learning rates, gamma, env count, data, detector, evaluation cadence ...) must match.
SEGMENT_SETTINGS = frozenset({
    "out_dir", "exp_name", "export", "iterations", "total_steps", "stop_after", "max_minutes", "checkpoint_every",
    "log_every", "snapshot_every", "final_eval_images", "threads", "progress_bar", "progress", "resume",
    "allow_changed_settings", "save_buffer",
})


#: Settings left out of :func:`settings_hash`: where the run goes and how this invocation runs, not what it trains.
HASH_EXCLUDED = frozenset({"out_dir", "exp_name", "export", "resume", "allow_changed_settings", "stop_after", "max_minutes",
                           "threads", "progress_bar", "progress"})


def settings_hash(flat: Mapping[str, Any], *, exclude: frozenset[str] = HASH_EXCLUDED, length: int = 10) -> str:
    """A short hex digest of a run's flat settings (minus ``exclude``), for run folders named by their settings.

    Two retrainings with different settings (seed, learning rate, length ...) get different folders; a rerun
    with the same settings finds its own ``last.pt`` and resumes. Example: ``runs/hpo__seed0__3f2a9c41d0``.
    """
    kept = {k: v for k, v in sorted(flat.items()) if k not in exclude}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=repr).encode()).hexdigest()[:length]


class UnsafeCheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read with ``weights_only=True`` (pickled code or objects)."""


class SettingsChangedError(ValueError):
    """A resume asked with settings that differ from those the checkpoint was written with."""


def safe_load(path: str | Path, *, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, refusing pickled objects with the file named.

    Args:
        path: the ``.pt`` file.
        what: what the file is, for the message (``"AdaptiveISP policy"``).

    Raises:
        UnsafeCheckpointError: when the file needs anything beyond tensors, plain containers, numbers
            and strings (a pickle that would construct objects or call functions: never executed).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpointError(
            f"{path}: refused to load this {what}: it is not a plain tensor file (weights_only=True load failed: "
            f"{first}). ispbench never unpickles objects from files; re-export it from a trusted run"
        ) from e


_ABSENT = object()


def _fmt(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value) if isinstance(value, str) else str(value)


def setting_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (saved value, current value)}`` of every flat setting that differs (absent on one side too)."""
    changes: dict[str, tuple[Any, Any]] = {}
    for name in [*saved, *(k for k in current if k not in saved)]:
        old, new = saved.get(name, _ABSENT), current.get(name, _ABSENT)
        if old is _ABSENT or new is _ABSENT or type(old) is not type(new) or old != new:
            if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool) \
                    and not isinstance(new, bool) and old == new:
                continue  # 1 == 1.0: the same setting
            changes[name] = (old, new)
    return changes


def format_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """``"lr: 0.0001 -> 0.5, seed: 0 -> 1"``."""
    return ", ".join(f"{k}: {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in changes.items())


def resume_segments(ckpt: Mapping[str, Any] | None, current: Mapping[str, Any], *, path: str | Path,
                    position: int, allow_changed: bool,
                    segment_settings: frozenset[str] = SEGMENT_SETTINGS) -> list[dict[str, Any]]:
    """Check a resume's settings against the checkpoint's and return the run's segment records.

    Args:
        ckpt: the loaded checkpoint (its flat settings under ``"args"``), or ``None`` for a fresh run.
        current: this invocation's flat settings (:func:`ispbench.training.config.flat_dict`).
        path: the checkpoint file, for messages.
        position: where this segment starts (iteration or env step).
        allow_changed: the trainer's ``--allow-changed-settings``: accept (and record) changed settings.
        segment_settings: names that may change between segments without the flag.

    Returns:
        The list to store as the checkpoint's ``"segments"``: the checkpoint's own records plus
        ``{"start": position, "changed": {name: [old, new]}, "segment_changes": {...}}`` for this
        segment (``[{"start": 0}]`` for a fresh run). Values are plain scalars (``weights_only``-safe);
        an absent side is ``None``.

    Raises:
        SettingsChangedError: when a setting outside ``segment_settings`` differs and ``allow_changed``
            is off; the message lists every difference and names the flag.
    """
    if ckpt is None:
        return [{"start": 0}]
    saved = ckpt.get("args") or {}
    changes = setting_changes(saved, current)
    strict = {k: v for k, v in changes.items() if k not in segment_settings}
    loose = {k: v for k, v in changes.items() if k in segment_settings}
    if strict and not allow_changed:
        raise SettingsChangedError(
            f"{path} was written with other settings: {format_changes(strict)}. Resume with the checkpoint's settings, "
            f"use another out_dir for a new run, or pass --allow-changed-settings to continue with the new values "
            f"(recorded in the checkpoint's segments)")
    if strict:
        print(f"resuming with changed settings (--allow-changed-settings): {format_changes(strict)}", file=sys.stderr)

    def plain(d: Mapping[str, tuple[Any, Any]]) -> dict[str, list[Any]]:
        return {k: [None if a is _ABSENT else a, None if b is _ABSENT else b] for k, (a, b) in d.items()}

    return [*ckpt.get("segments", [{"start": 0}]), {"start": int(position), "changed": plain(strict),
                                                      "segment_changes": plain(loose)}]

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
    return safe_load(path, what="training checkpoint")


__all__ = ["CHECKPOINT_NAME", "HASH_EXCLUDED", "SEGMENT_SETTINGS", "SettingsChangedError", "UnsafeCheckpointError", "checkpoint_path",
           "format_changes", "load_checkpoint", "restore_rng_state", "resume_segments", "rng_state", "safe_load",
           "save_checkpoint", "setting_changes", "settings_hash"]
