"""Where ispbench keeps things: the repository, generated data, results, shipped weights.

Every location can be moved with an environment variable, so that a Colab user, CI and a
workstation can all point the same notebooks at their own disks.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout holding the package (for an editable install); falls back to the cwd.
REPO_DIR = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()
#: Small artefacts that ship inside the package (trained checkpoints with their model cards).
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def cache_dir() -> Path:
    """Generated data (embedded datasets) and downloaded-by-hand weights.

    ``$ISPBENCH_CACHE``, else ``<repo>/.cache/ispbench``.
    """
    path = Path(os.environ.get("ISPBENCH_CACHE", REPO_DIR / ".cache" / "ispbench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str) -> Path:
    """Result files (JSON/CSV with provenance) of one profile: ``$ISPBENCH_RESULTS/<profile>``."""
    root = Path(os.environ.get("ISPBENCH_RESULTS", REPO_DIR / "results"))
    path = root / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(default: str | os.PathLike | None = None) -> Path:
    """Root of the user's own copies of the papers' datasets: ``$ISPBENCH_DATA`` or ``~/data``."""
    if default:
        return Path(default).expanduser()
    return Path(os.environ.get("ISPBENCH_DATA", Path.home() / "data")).expanduser()
