"""Result files: what every notebook writes, and what the book's tables are rendered from.

A notebook's results are one set, published all at once: ``results/<profile>/<name>`` is a
symbolic link to a fresh folder ``results/<profile>/.versions/<name>/v<time>/`` holding
``result.json``, one ``<table>.csv`` per table and, from ``ispbench run``, the executed notebook
``executed.ipynb`` and the runner's ``cache.key``. A run builds the new folder under a
``.staging-<pid>-*`` name, renames it, and then switches the link with one atomic rename, so a
reader sees either the old set or the new one, never a mixture; a crash leaves the old set in
place and only garbage that :func:`clean_stale` removes on the next start.

A run whose parameters are not its profile's (``-p`` overrides, a direct papermill run with
other values) goes to ``results/<profile>/runs/<name>-<parameters hash>`` instead, never over
the profile's results; :func:`all_results` (the status page, the book) reads only the profile's
sets whose recorded parameters match the profile. Names that are no notebook (a tool's output
such as ``bench/ops``) are written file by file as ``results/<profile>/<name>.json``.

The record (``result.json``)::

    {"name": "adaptiveisp/table1", "profile": "embedded", "data": "embedded low-light test split",
     "parameters": {...}, "seed": 0, "wall_time_s": 812.4,
     "provenance": {"git_commit": ..., "device": ..., "packages": {...}},
     "tables": {"map": [{"method": ..., "metric": ..., "value": ...}, ...]},
     "metrics": {...}}

Tables are lists of records (one dict per row) so they load straight into pandas; each is also
a CSV for people who prefer a spreadsheet.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ispbench import atomic, provenance
from ispbench import parameters as declarations
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


#: Set by ``ispbench run`` in the kernel's environment: the staging folder of the notebook
#: ``$ISPBENCH_STAGING_NAME``; that notebook's ``write_results`` writes its set there.
STAGING_ENV, STAGING_NAME_ENV = "ISPBENCH_STAGING", "ISPBENCH_STAGING_NAME"
RESULT_FILE, EXECUTED_FILE, KEY_FILE = "result.json", "executed.ipynb", "cache.key"
VERSIONS, RUNS, STAGING_PREFIX = ".versions", "runs", ".staging-"


class ResultFileError(ValueError):
    """A result file that cannot be read; the message names it and how to regenerate it."""


# ----------------------------------------------------------------------------- published sets


def slot_name(name: str, profile: str, params: Mapping[str, Any], *, own: bool | None = None) -> str:
    """Where a run of notebook ``name`` publishes, relative to ``results/<profile>``: ``name`` when
    its parameters are the profile's (``own``, default `ispbench.parameters.matches_profile`),
    else ``runs/<name>-<parameters hash>``."""
    if own is None:
        own = declarations.matches_profile(name, profile, params)
    return name if own else f"{RUNS}/{name}-{declarations.parameters_hash(params)}"


def new_staging(profile_dir: Path, slot: str) -> Path:
    """A fresh, empty staging folder for ``slot`` (named after this process, for :func:`clean_stale`)."""
    versions = Path(profile_dir) / VERSIONS / slot
    versions.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=versions))


def current(profile_dir: Path, slot: str) -> Path | None:
    """The folder the slot's link points at, or None (no link, or a dangling one)."""
    link = Path(profile_dir) / slot
    if not link.is_symlink():
        return None
    target = link.resolve()
    return target if target.is_dir() else None


def publish_set(staging: Path, profile_dir: Path, slot: str) -> Path:
    """Make ``staging`` the slot's published set: rename it to its version name, then switch the
    link with one atomic ``os.replace``; older versions are removed. Returns the link."""
    staging = Path(staging)
    version = staging.with_name(f"v{time.time_ns()}-{os.getpid()}")
    os.rename(staging, version)
    link = Path(profile_dir) / slot
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        raise ResultFileError(f"{link} is a plain file or folder, not a published set: move it away and rerun")
    tmp_link = link.with_name(f".{link.name}.link-{os.getpid()}")
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    try:
        os.symlink(os.path.relpath(version, link.parent), tmp_link)
        os.replace(tmp_link, link)  # the one switch: old set -> new set
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        if tmp_link.is_symlink():
            tmp_link.unlink()
        raise
    _prune(version.parent, keep=version)
    return link


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_owner_alive(path: Path) -> bool:
    try:
        pid = int(path.name[len(STAGING_PREFIX):].split("-")[0])
    except ValueError:
        return False
    return pid != os.getpid() and _pid_alive(pid)


def _prune(versions: Path, keep: Path | None) -> None:
    for child in versions.iterdir() if versions.is_dir() else ():
        if child == keep or (child.name.startswith(STAGING_PREFIX) and _staging_owner_alive(child)):
            continue
        if child.is_dir() and (child.name.startswith(STAGING_PREFIX) or child.name.startswith("v")):
            shutil.rmtree(child, ignore_errors=True)


def clean_stale(profile_dir: Path) -> list[Path]:
    """Remove what interrupted runs left under ``results/<profile>``: staging folders of dead
    processes, versions no link points at, half-made links, and the old layout's
    ``.staging-*`` folders and ``.*.running.ipynb`` files. Returns what was removed."""
    profile_dir = Path(profile_dir)
    removed: list[Path] = []
    versions_root = profile_dir / VERSIONS
    if versions_root.is_dir():
        for versions in sorted({p.parent for p in versions_root.rglob("*") if p.is_dir()
                                and (p.name.startswith(STAGING_PREFIX) or p.name.startswith("v"))}):
            slot = versions.relative_to(versions_root).as_posix()
            keep = current(profile_dir, slot)
            before = set(versions.iterdir())
            _prune(versions, keep)
            removed += sorted(before - set(versions.iterdir()))
    for stray in list(profile_dir.rglob(".*.link-*")) + list(profile_dir.rglob(".*.running.ipynb")):
        if stray.is_symlink() or stray.is_file():
            stray.unlink()
            removed.append(stray)
    for root in (profile_dir, profile_dir.parent):
        for stale in root.glob(f"{STAGING_PREFIX}*") if root.is_dir() else ():
            if stale.is_dir() and not _staging_owner_alive(stale):
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale)
    return removed


# ----------------------------------------------------------------------------- writing


def result_path(name: str, profile: str) -> Path:
    """Path of the result file of ``name`` (e.g. ``"rlpixtuner/table1"``) as the profile's result:
    ``results/<profile>/<name>/result.json`` for a notebook, ``results/<profile>/<name>.json`` for a
    tool's output (no published set)."""
    root = results_dir(profile)
    if declarations.declared(name) is not None or (root / name).is_symlink():
        return root / name / RESULT_FILE
    return root / f"{name}.json"


def _write_set(folder: Path, record: Mapping[str, Any], tables: Mapping[str, list], *, flat_stem: str | None = None
               ) -> Path:
    json_path = folder / (f"{flat_stem}.json" if flat_stem else RESULT_FILE)
    atomic.write_json(json_path, record)
    for key, rows in tables.items():
        if rows:
            import pandas as pd

            csv = folder / (f"{flat_stem}__{key}.csv" if flat_stem else f"{key}.csv")
            with atomic.atomic_path(csv) as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False)
    return json_path


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
    """Write one notebook's results with full provenance, all at once (see the module docstring).

    Under ``ispbench run`` the set goes to the runner's staging folder, which the runner
    publishes with the executed notebook and cache key. Run any other way (papermill, Jupyter),
    a declared notebook publishes its set itself: as the profile's results when its parameters
    are the profile's (without a cache key, so the next ``ispbench run`` re-executes it), else to
    its own ``results/<profile>/runs/<name>-<hash>/``.

    Args:
        name: notebook id, its path under ``notebooks/`` without ``.ipynb``.
        profile: ``smoke``, ``embedded`` or ``paper``.
        parameters: the papermill parameters the notebook ran with.
        data: which data produced the numbers, in words (e.g. ``"embedded low-light test split, 64 images"``).
        tables: named tables, each a DataFrame or a list of row dicts.
        metrics: free-form scalar results.
        seed, device, wall_time_s: as run.

    Returns:
        The path of the JSON file (through the published link).
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
    staging = os.environ.get(STAGING_ENV)
    if staging and os.environ.get(STAGING_NAME_ENV) == name:
        return _write_set(Path(staging), record, tables)
    root = results_dir(profile)
    if declarations.declared(name) is None:  # a tool's output: file by file
        path = root / f"{name}.json"
        return _write_set(path.parent, record, tables, flat_stem=path.name[: -len(".json")])
    slot = slot_name(name, profile, record["parameters"])
    staging_dir = new_staging(root, slot)
    try:
        _write_set(staging_dir, record, tables)
        link = publish_set(staging_dir, root, slot)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    if slot != name:
        print(f"results of {name!r}: parameters differ from profile {profile!r}'s, so they went to {link} "
              f"(the profile's results are untouched)", file=sys.stderr)
    return link / RESULT_FILE


# ----------------------------------------------------------------------------- reading


def _load(path: Path, name: str, profile: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(
            f"result file {path} (notebook {name!r}, profile {profile!r}) is not valid JSON ({exc}); "
            f"regenerate it with `ispbench run {name} --profile {profile} --force`"
        ) from exc


def read_results(name: str, profile: str) -> dict[str, Any]:
    """Load the profile's result of ``name``; a clear error if it does not exist or is corrupt."""
    path = result_path(name, profile)
    if not path.exists():
        raise FileNotFoundError(
            f"no results for notebook {name!r} under profile {profile!r}: expected {path}; "
            f"run `ispbench run {name} --profile {profile}` first"
        )
    return _load(path, name, profile)


def _published(root: Path) -> list[tuple[str, Path]]:
    """(name, result.json) of every published set of the profile (not ``runs/``)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in (VERSIONS, RUNS)]
        for entry in [*dirnames, *filenames]:
            path = here / entry
            if path.is_symlink() and not entry.startswith(".") and (path / RESULT_FILE).is_file():
                out.append((path.relative_to(root).as_posix(), path / RESULT_FILE))
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink() and not d.startswith(".")]
    return out


def all_results(profile: str, *, matching_only: bool = True) -> list[dict[str, Any]]:
    """Every result of a profile, sorted by notebook name: the published sets whose recorded
    parameters match the profile's (``matching_only``), and tools' flat result files. Ad-hoc runs
    (``runs/``) are left out."""
    root = results_dir(profile)
    found: dict[str, dict[str, Any]] = {}
    for name, path in _published(root):
        record = _load(path, name, profile)
        if matching_only and not declarations.matches_profile(name, profile, record.get("parameters") or {}):
            continue
        found[name] = record
    for path in root.rglob("*.json"):
        relative = path.relative_to(root)
        if relative.parts[0] in (VERSIONS, RUNS) or any(p.startswith(".") for p in relative.parts):
            continue
        if any(parent.is_symlink() for parent in path.parents if root in parent.parents):
            continue
        name = relative.with_suffix("").as_posix()
        if declarations.declared(name) is None and name not in found:  # old layout of a notebook: ignored
            found[name] = _load(path, name, profile)
    return [found[k] for k in sorted(found)]
