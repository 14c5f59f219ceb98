"""Result files: what every notebook writes, and what the book's tables are rendered from.

A result file is ``results/<profile>/<name>.json``::

    {"name": "adaptiveisp/table1", "profile": "embedded", "data": "embedded low-light test split",
     "parameters": {...}, "seed": 0, "wall_time_s": 812.4,
     "provenance": {"git_commit": ..., "device": ..., "packages": {...}},
     "tables": {"map": [{"method": ..., "metric": ..., "value": ...}, ...]},
     "metrics": {...}}

Tables are lists of records (one dict per row) so they load straight into pandas. Each table
is also written as ``results/<profile>/<name>__<table>.csv`` for people who prefer a spreadsheet.
Writes are atomic: a failing run never replaces the last good file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from ispbench import atomic, provenance
from ispbench.paths import results_dir


class Timer:
    """Wall-clock timer that notebooks start in their first code cell."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _records(table: Any) -> list[dict[str, Any]]:
    if hasattr(table, "to_dict"):  # pandas DataFrame
        return table.to_dict(orient="records")
    return [dict(row) for row in table]


def result_path(name: str, profile: str) -> Path:
    """Path of the result file of notebook ``name`` (e.g. ``"rlpixtuner/table1"``) under ``profile``."""
    return results_dir(profile) / f"{name}.json"


def write_results(
    name: str,
    *,
    profile: str,
    parameters: Mapping[str, Any],
    data: str,
    tables: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str | None = None,
    wall_time_s: float | None = None,
) -> Path:
    """Write one notebook's results with full provenance, atomically.

    Args:
        name: notebook id, its path under ``notebooks/`` without ``.ipynb``.
        profile: ``smoke``, ``embedded`` or ``paper``.
        parameters: the papermill parameters the notebook ran with.
        data: which data produced the numbers, in words (e.g. ``"embedded low-light test split, 64 images"``).
        tables: named tables, each a DataFrame or a list of row dicts.
        metrics: free-form scalar results.
        seed, device, wall_time_s: as run.

    Returns:
        The path of the JSON file.
    """
    tables = {key: _records(value) for key, value in (tables or {}).items()}
    record = {
        "name": name,
        "profile": profile,
        "data": data,
        "parameters": dict(parameters),
        "seed": seed,
        "wall_time_s": wall_time_s,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance.collect(device),
        "tables": tables,
        "metrics": dict(metrics or {}),
    }
    path = result_path(name, profile)
    atomic.write_json(path, record)
    for key, rows in tables.items():
        if rows:
            import pandas as pd

            with atomic.atomic_path(path.with_name(f"{path.stem}__{key}.csv")) as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False)
    return path


def read_results(name: str, profile: str) -> dict[str, Any]:
    """Load a result file written by :func:`write_results`; a clear error if it does not exist."""
    path = result_path(name, profile)
    if not path.exists():
        raise FileNotFoundError(
            f"no results for notebook {name!r} under profile {profile!r}: expected {path}; "
            f"run `ispbench run {name} --profile {profile}` first"
        )
    return json.loads(path.read_text())


def all_results(profile: str) -> list[dict[str, Any]]:
    """Every result file of a profile, sorted by notebook name."""
    root = results_dir(profile)
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")]
