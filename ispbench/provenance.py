"""Provenance of a result: which code, data, parameters and machine produced it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from typing import Any

from ispbench.paths import REPO_DIR

#: Packages whose versions are recorded beside every result.
TRACKED_PACKAGES = (
    "ispbench", "torch", "torchvision", "ultralytics", "numpy", "papermill", "lpips", "rawpy", "cma",
)


def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` when it has uncommitted changes; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed version of each package, or ``"not installed"``."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description(device: str | None = None) -> str:
    """A human-readable name of the machine a result was computed on, e.g. ``cpu (2 threads, x86_64)``."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return f"cpu ({platform.machine()})"
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def collect(device: str | None = None) -> dict[str, Any]:
    """Everything but the notebook-specific fields: commit, versions, device, platform."""
    return {
        "git_commit": git_commit(),
        "device": device_description(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
