"""Execute the book's notebooks with a named profile through papermill.

A *profile* is a YAML parameter set (``ispbench/profiles/<name>.yaml``)::

    description: what the profile is for
    defaults:            # given to every notebook that declares the parameter
      device: cpu
      seed: 0
    notebooks:           # the book's notebooks, in order, with their own parameters
      ops/gallery: {image_size: 256}

The three profiles are ``smoke`` (seconds per notebook, used by the tests), ``embedded`` (the
default: meaningful results on the project's own data on a CPU) and ``paper`` (the papers'
data and settings, on a GPU).

For each notebook the runner

1. merges the profile's defaults and notebook parameters with command-line overrides, refuses
   any name the notebook's ``parameters`` cell does not declare, and checks every value against
   its declaration (``ispbench/profiles/parameters.yaml``) before any kernel starts;
2. picks where the run publishes: ``results/<profile>/<name>`` when the parameters are the
   profile's, else ``results/<profile>/runs/<name>-<hash>`` (see :mod:`ispbench.results`);
3. skips the notebook when the published set's cache key (notebook source, parameters, profile
   and every file of the ``ispbench`` package) equals this run's;
4. executes it with an explicit kernel into a fresh staging folder (``$ISPBENCH_STAGING``), where
   the notebook's ``write_results`` also writes;
5. on success adds the cache key and publishes the whole set (results, CSVs, executed notebook,
   key) with one atomic switch of a link; on failure or interruption removes the staging folder,
   keeps the last good set untouched, keeps the failed copy as ``<slot>.failed.ipynb`` and reports
   the notebook, cell and error. Each start first removes what interrupted runs left behind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ispbench import atomic, parameters, results
from ispbench.paths import PACKAGE_DIR, REPO_DIR

KERNEL_NAME = "ispbench"
PROFILES_DIR = parameters.PROFILES_DIR
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
#: Injected into every notebook that declares it, so a notebook knows the profile it runs under.
PROFILE_PARAMETER = parameters.PROFILE_PARAMETER
#: The book's configuration; its ``repository`` section is the one place the project's repository
#: is named (Jupyter Book's repository button, the Colab badges, the notebooks' Colab install cell).
BOOK_CONFIG = REPO_DIR / "_config.yml"
#: The "Open in Colab" badge, a local image shipped with the book (no external image to load).
COLAB_BADGE = "book/_static/colab-badge.svg"
#: matplotlib's inline backend: every kernel the runner starts draws its figures into the notebook
#: (as ``image/png`` outputs) whatever ``$MPLBACKEND`` the caller has (``Agg`` draws nothing).
KERNEL_MPLBACKEND = "module://matplotlib_inline.backend_inline"
#: The kernel environment the runner sets for every notebook, and the variables it removes: a
#: run's device is its ``device`` parameter, never ``$ISPBENCH_DEVICE`` (see ispbench.notebook).
KERNEL_ENV = {"MPLBACKEND": KERNEL_MPLBACKEND}
KERNEL_ENV_REMOVED = ("ISPBENCH_DEVICE",)
#: The thread-count variables a kernel's torch, NumPy and OpenMP read at start (``run(jobs=...)`` sets them).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


class RunnerError(Exception):
    """A problem the user can fix: unknown profile, notebook or parameter, or a failing notebook."""


@dataclass
class NotebookFailure(RunnerError):
    """A notebook raised while executing."""

    notebook: str
    cell_index: int | None
    execution_count: int | None
    error_name: str
    error_value: str
    failed_copy: Path | None = None

    first_line: str = ""

    def __str__(self) -> str:
        # cell_index is 1-based and counts the cells of the source notebook (not papermill's
        # injected parameters cell), so it matches what the user sees when opening the notebook.
        where = f"cell {self.cell_index}" if self.cell_index is not None else "an unknown cell"
        if self.first_line:
            where += f" `{self.first_line}`"
        if self.execution_count is not None:
            where += f" (execution count {self.execution_count})"
        text = f"notebook {self.notebook!r} failed at {where}: {self.error_name}: {self.error_value}"
        if self.failed_copy:
            text += f"\n  the failed executed copy is at {self.failed_copy}; the last good results are kept"
        return text

    def __reduce__(self):
        # an exception unpickles as cls(*args), and a dataclass's args are empty: rebuild from the fields,
        # so a failure comes back from a ``run(jobs=...)`` worker process
        return (type(self), (self.notebook, self.cell_index, self.execution_count, self.error_name,
                             self.error_value, self.failed_copy, self.first_line))


# ----------------------------------------------------------------------------- profiles


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """Names of the profile YAML files."""
    return parameters.available_profiles(profiles_dir)


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """Read and check a profile; unknown names are refused with the list of valid ones."""
    try:
        return parameters.load_profile(name, profiles_dir)
    except parameters.ParameterError as exc:
        raise RunnerError(str(exc)) from None


# ----------------------------------------------------------------------------- notebooks


def notebook_path(notebook_id: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    return Path(notebooks_dir) / f"{notebook_id}.ipynb"


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and default values in the notebook's ``parameters`` cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RunnerError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    namespace: dict[str, Any] = {}
    try:
        exec(compile(cells[0].source, str(path), "exec"), {}, namespace)  # plain literals only
    except Exception as exc:  # noqa: BLE001 - report any problem with the cell
        raise RunnerError(f"{path}: the parameters cell must hold plain literals ({exc})") from exc
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


def resolve_parameters(
    notebook_id: str,
    declared: Mapping[str, Any],
    profile: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    """Profile defaults < profile notebook parameters < command-line overrides.

    Defaults are given only to notebooks that declare them; notebook parameters and overrides
    must be declared, else the error lists the valid names.
    """
    try:
        return parameters.resolve(notebook_id, declared, profile, overrides)
    except parameters.ParameterError as exc:
        raise RunnerError(str(exc)) from None


def check_parameters(notebook_id: str, params: Mapping[str, Any]) -> None:
    """Refuse a value its declaration does not allow, naming the parameter (before any kernel starts)."""
    try:
        parameters.check(notebook_id, params)
    except parameters.ParameterError as exc:
        raise RunnerError(f"{exc}; nothing was run") from None


# ----------------------------------------------------------------------------- cache


def package_fingerprint(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of every file of the package (code, profiles, paper numbers, shipped weights)."""
    digest = hashlib.sha256()
    for path in sorted(Path(package_dir).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
            digest.update(path.relative_to(package_dir).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_key(notebook: Path, params: Mapping[str, Any], profile: str, fingerprint: str) -> str:
    """Changes whenever the notebook's source, its parameters or the package code change."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    source = json.dumps([[c.cell_type, c.source] for c in nb.cells])
    payload = json.dumps({"source": source, "params": params, "profile": profile, "package": fingerprint},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


# ----------------------------------------------------------------------------- execution


def ensure_kernel(kernel_name: str = KERNEL_NAME) -> None:
    """Install the project's kernel spec into this environment if it is missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=kernel_name, display_name="Python (ispbench)", prefix=sys.prefix)


@dataclass
class RunReport:
    notebook: str
    status: str  # "executed" | "cached" | "failed"
    seconds: float = 0.0
    output: Path | None = None
    error: NotebookFailure | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: where the run published, relative to ``results/<profile>``: the notebook id, or
    #: ``runs/<id>-<hash>`` for parameters other than the profile's
    slot: str = ""

    @property
    def profile_results(self) -> bool:
        """True when the run stands as the profile's result (its parameters are the profile's)."""
        return not self.slot.startswith(f"{results.RUNS}/")


def _failure_from(exc: Exception, notebook_id: str) -> NotebookFailure:
    return NotebookFailure(
        notebook=notebook_id,
        cell_index=getattr(exc, "cell_index", None),
        execution_count=getattr(exc, "exec_count", None),
        error_name=getattr(exc, "ename", type(exc).__name__),
        error_value=str(getattr(exc, "evalue", exc)).strip().splitlines()[0] if str(getattr(exc, "evalue", exc)).strip() else "",
    )


#: papermill's tag of the two markdown cells it adds to a failed copy (a note on top, an anchor
#: just before the failing cell), which shift every index of the copy.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


def _locate_failed_cell(failure: NotebookFailure) -> None:
    """Find the failing cell in the executed copy (the code cell holding the error output) and give
    its 1-based number among the source notebook's cells and its own first line."""
    import nbformat

    if failure.failed_copy is None:
        return
    cells = nbformat.read(failure.failed_copy, as_version=4).cells
    added = {PAPERMILL_ERROR_TAG, "injected-parameters"}
    source_cells = [c for c in cells if not added & set(c.metadata.get("tags", []))]
    failing = next((i for i, c in enumerate(source_cells) if c.cell_type == "code"
                    and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    if failing is None:
        return
    cell = source_cells[failing]
    failure.first_line = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")[:80]
    failure.cell_index = failing + 1
    failure.execution_count = cell.get("execution_count", failure.execution_count)


def execute_notebook(
    notebook_id: str,
    *,
    profile: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    results_root: Path | None = None,
    force: bool = False,
    kernel_name: str = KERNEL_NAME,
    fingerprint: str | None = None,
) -> RunReport:
    """Execute one notebook (or reuse its cached run). See the module docstring."""
    import papermill

    source = notebook_path(notebook_id, notebooks_dir)
    if not source.exists():
        raise RunnerError(f"notebook {notebook_id!r} not found: expected {source}")
    declared = declared_parameters(source)
    params = resolve_parameters(notebook_id, declared, profile, overrides or {})
    check_parameters(notebook_id, params)
    own = params == resolve_parameters(notebook_id, declared, profile, {})
    slot = results.slot_name(notebook_id, profile["name"], params, own=own)
    results_root = Path(results_root or os.environ.get("ISPBENCH_RESULTS", REPO_DIR / "results"))
    profile_dir = results_root / profile["name"]
    profile_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(source, params, profile["name"], fingerprint or package_fingerprint())
    published = results.current(profile_dir, slot)
    link = profile_dir / slot
    if (not force and published is not None and (published / results.EXECUTED_FILE).is_file()
            and (published / results.KEY_FILE).is_file()
            and (published / results.KEY_FILE).read_text().strip() == key):
        return RunReport(notebook_id, "cached", output=link / results.EXECUTED_FILE, parameters=params, slot=slot)

    staging = results.new_staging(profile_dir, slot)
    executed = staging / results.EXECUTED_FILE
    failed = link.with_name(f"{link.name}.failed.ipynb")
    saved_env = {k: os.environ.get(k) for k in ("ISPBENCH_RESULTS", results.STAGING_ENV, results.STAGING_NAME_ENV,
                                                *KERNEL_ENV, *KERNEL_ENV_REMOVED)}
    # the kernel inherits this environment: write_results of this notebook writes into staging,
    # figures are drawn inline, and the device is the notebook's parameter
    os.environ.update({"ISPBENCH_RESULTS": str(results_root), results.STAGING_ENV: str(staging),
                       results.STAGING_NAME_ENV: notebook_id, **KERNEL_ENV})
    for name in KERNEL_ENV_REMOVED:
        os.environ.pop(name, None)
    start = time.perf_counter()
    try:
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=params, kernel_name=kernel_name,
                cwd=str(REPO_DIR), progress_bar=False, log_output=False,
            )
        except Exception as exc:  # noqa: BLE001 - papermill raises several types
            failure = _failure_from(exc, notebook_id)
            if executed.exists():
                failed.parent.mkdir(parents=True, exist_ok=True)
                os.replace(executed, failed)
                failure.failed_copy = failed
                _locate_failed_cell(failure)
            return RunReport(notebook_id, "failed", time.perf_counter() - start, error=failure,
                             parameters=params, slot=slot)
        finally:
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        seconds = time.perf_counter() - start
        # Success: the key joins the set, and the whole set is published with one switch.
        atomic.write_text(staging / results.KEY_FILE, key + "\n")
        results.publish_set(staging, profile_dir, slot)
        if failed.exists():
            failed.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published
    return RunReport(notebook_id, "executed", seconds, output=link / results.EXECUTED_FILE, parameters=params,
                     slot=slot)


@dataclass(frozen=True)
class Repository:
    """The project's repository as ``_config.yml`` names it (``repository: {url, branch}``).

    Example:
        >>> repo = Repository("https://github.com/ispbench/ispbench", "main")
        >>> repo.colab_url("notebooks/ops/gallery.ipynb")
        'https://colab.research.google.com/github/ispbench/ispbench/blob/main/notebooks/ops/gallery.ipynb'
    """

    url: str
    branch: str = "main"

    @property
    def github_path(self) -> str:
        """``owner/name`` of a GitHub URL."""
        prefix = "https://github.com/"
        if not self.url.startswith(prefix) or len(self.url[len(prefix):].strip("/").split("/")) != 2:
            raise RunnerError(f"{BOOK_CONFIG.name}: repository.url must be https://github.com/OWNER/NAME "
                              f"(Colab opens notebooks from GitHub), got {self.url!r}")
        return self.url[len(prefix):].strip("/").removesuffix(".git")

    def colab_url(self, relative: str) -> str:
        """The Colab link that opens file ``relative`` (a path in the repository) from GitHub."""
        return f"https://colab.research.google.com/github/{self.github_path}/blob/{self.branch}/{relative}"

    @property
    def pip_requirement(self) -> str:
        """What ``pip install`` takes to install ispbench from the repository."""
        return f"ispbench @ git+{self.url.rstrip('/')}"


def repository(config: Path = BOOK_CONFIG) -> Repository:
    """Read ``repository.url`` and ``repository.branch`` from the book's ``_config.yml``."""
    try:
        section = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("repository") or {}
    except OSError as exc:
        raise RunnerError(f"cannot read the book configuration {config} ({exc}); it names the repository") from exc
    url = str(section.get("url") or "").strip()
    if not url:
        raise RunnerError(f"{config}: no repository.url (the repository the Colab badges and install cell use)")
    return Repository(url.rstrip("/"), str(section.get("branch") or "main"))


def colab_install_source(repo: Repository | None = None) -> str:
    """The source of every notebook's first cell (tag ``colab-install``), built from ``_config.yml``.

    On Colab it installs ispbench from the repository and sets ``ISPBENCH_DEVICE=auto``, so that
    :func:`ispbench.notebook.start_notebook` uses the runtime's GPU when it has one; elsewhere it
    does nothing. ``tests/test_repository.py`` checks every notebook's cell is this text.
    """
    repo = repo or repository()
    return (
        "# Install ispbench when running on Google Colab (no-op elsewhere); there, use the GPU if the runtime has one.\n"
        "import os\n"
        "\n"
        "try:\n"
        "    import google.colab  # noqa: F401\n"
        "\n"
        "    IN_COLAB = True\n"
        "except ImportError:\n"
        "    IN_COLAB = False\n"
        "if IN_COLAB:\n"
        f"    get_ipython().run_line_magic(\"pip\", 'install -q \"{repo.pip_requirement}\"')\n"
        "    os.environ.setdefault(\"ISPBENCH_DEVICE\", \"auto\")  # start_notebook: cuda when available"
    )


#: Tag of the notebook cells that show the results in the paper's layout: :func:`publish` puts them
#: first on the page, after the title and its introduction, with their code folded.
PAPER_TABLE_TAG = "paper-table"
#: A lab's exercise stub: the one kind of code cell the book shows open (its solution stays folded).
EXERCISE_TAG = "exercise"


def publish(report: RunReport, publish_dir: Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """Copy an executed notebook into the book, with a Colab badge for its source notebook.

    The badge links to the source notebook in the repository of ``_config.yml`` (:func:`repository`)
    and shows the book's local image :data:`COLAB_BADGE`.
    """
    import nbformat

    nb = nbformat.read(report.output, as_version=4)
    source = notebook_path(report.notebook, notebooks_dir)
    try:
        relative = source.resolve().relative_to(REPO_DIR).as_posix()
    except ValueError:
        relative = f"notebooks/{report.notebook}.ipynb"
    profile = report.parameters.get(PROFILE_PARAMETER, "?")
    # The badge image is the book's own file (a path from the book's root), so it shows offline.
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open in Colab](/{COLAB_BADGE})]({repository().colab_url(relative)})\n\n"
        f"*Executed with profile `{profile}` by `ispbench run {report.notebook} --profile {profile}`; "
        f"parameters: `{json.dumps(report.parameters, default=str)}`.*"
    )
    badge.metadata["tags"] = ["ispbench-badge"]
    # The page reads: title, badge and provenance, the introduction, the results in the paper's
    # layout (cells tagged PAPER_TABLE_TAG, their code folded: ispbench.chapters.render), then the
    # notebook. The Colab install cell is left out of the page (the badge's notebook keeps it);
    # parameter cells are folded. Only the order on the page changes: the outputs are as executed.
    title = next((c for c in nb.cells if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), None)
    intro = []
    if title is not None:
        for cell in nb.cells[nb.cells.index(title) + 1:]:
            if cell.cell_type != "markdown":
                break
            intro.append(cell)
    results_cells = [c for c in nb.cells if PAPER_TABLE_TAG in c.metadata.get("tags", [])]
    cells = [c for c in nb.cells if c is not title and not any(c is x for x in intro + results_cells)]
    for cell in cells + results_cells:
        tags = cell.metadata.setdefault("tags", [])
        if "colab-install" in tags:
            tags.append("remove-cell")
        elif cell.cell_type == "code" and not {"hide-input", "remove-input", "hide-cell", EXERCISE_TAG} & set(tags):
            tags.append("hide-input")  # code folded: the page shows results first, code on one click; stubs stay open
    nb.cells = ([title] if title is not None else []) + [badge] + intro + results_cells + cells
    target = Path(publish_dir) / f"{report.notebook}.ipynb"
    with atomic.atomic_open(target, "w", encoding="utf-8") as handle:
        nbformat.write(nb, handle)
    return target


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container's CPU set limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ispbench_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(Path(path).read_text()).get("metadata", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise RunnerError(f"{path}: not a readable notebook ({exc})") from exc
    return meta.get("ispbench") or {}


def runs_alone(path: Path) -> bool:
    """True when the notebook's metadata say ``"ispbench": {"run_alone": true}``: it reports timings, so
    ``run(jobs=...)`` runs it after the others, by itself, with every thread."""
    return bool(_ispbench_metadata(path).get("run_alone", False))


def expected_seconds(path: Path, profile: str) -> float:
    """The notebook's ``"ispbench": {"seconds": {profile: s}}`` metadata (a measured cold run), else 0.

    ``run(jobs=...)`` starts the longest first, so that no long notebook starts last and runs on while the
    other workers idle.
    """
    hint = _ispbench_metadata(path).get("seconds", {})
    value = hint.get(profile, 0) if isinstance(hint, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RunnerError(f"{path}: metadata ispbench.seconds: expected {{profile: seconds >= 0}}, got {hint!r}")
    return float(value)


def _execute_with_threads(threads: int, notebook_id: str, kwargs: dict[str, Any]) -> RunReport:
    """:func:`execute_notebook` in a worker process whose kernels use ``threads`` CPU threads."""
    # set before the kernel starts, inherited by it: torch reads these when it is imported
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    return execute_notebook(notebook_id, **kwargs)


def run(
    notebooks: Iterable[str] | None = None,
    *,
    profile: str = "embedded",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    publish_dir: Path | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    profiles_dir: Path = PROFILES_DIR,
    results_root: Path | None = None,
    kernel_name: str = KERNEL_NAME,
    package_dir: Path = PACKAGE_DIR,
    stream=None,
    jobs: int = 1,
) -> list[RunReport]:
    """Execute the profile's notebooks (or the given ones), printing one progress line each.

    With ``jobs`` > 1 that many notebooks run at once, each in its own process, and each kernel gets
    ``cpu_count // jobs`` threads (at least one). It pays where a notebook leaves cores idle (kernel start,
    imports, small tensors: the smoke profile); a conv-heavy notebook on one thread can take more than twice
    its two-thread time (irpo/main, measured 2026-12-07). The notebooks start longest first, by their
    ``ispbench.seconds`` hints (:func:`expected_seconds`). Reports come back in the profile's order either
    way; each notebook is published as soon as it succeeds.
    """
    stream = stream or sys.stdout
    if not isinstance(jobs, int) or jobs < 1:
        raise RunnerError(f"jobs: expected a whole number of at least 1, got {jobs!r}")
    spec = load_profile(profile, profiles_dir)
    selected = list(dict.fromkeys(notebooks)) if notebooks else list(spec["notebooks"])  # each once
    if not selected:
        raise RunnerError(f"profile {profile!r} lists no notebooks")
    unknown = [n for n in selected if not notebook_path(n, notebooks_dir).exists()]
    if unknown:
        known = sorted(p.relative_to(notebooks_dir).with_suffix("").as_posix()
                       for p in Path(notebooks_dir).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        raise RunnerError(f"unknown notebook(s) {', '.join(unknown)}; valid notebooks: {', '.join(known)}")
    if kernel_name == KERNEL_NAME:
        ensure_kernel(kernel_name)
    fingerprint = package_fingerprint(package_dir)
    root = Path(results_root or os.environ.get("ISPBENCH_RESULTS", REPO_DIR / "results"))
    for stale in results.clean_stale(root / profile):
        print(f"removed {stale} (left by an interrupted run)", file=stream, flush=True)
    kwargs = dict(profile=spec, overrides=overrides, notebooks_dir=notebooks_dir, results_root=results_root,
                  force=force, kernel_name=kernel_name, fingerprint=fingerprint)
    prefixes = {notebook_id: f"[{i}/{len(selected)}] {notebook_id} ({profile})" for i, notebook_id in enumerate(selected, 1)}

    def finish(report: RunReport) -> RunReport:
        prefix = prefixes[report.notebook]
        if report.status == "failed":
            print(f"{prefix} FAILED after {report.seconds:.1f} s\n  {report.error}", file=stream, flush=True)
        elif report.status == "cached":
            print(f"{prefix} cached: source, parameters and package unchanged", file=stream, flush=True)
        else:
            print(f"{prefix} executed in {report.seconds:.1f} s", file=stream, flush=True)
        if report.status != "failed" and not report.profile_results:
            print(f"  parameters differ from profile {profile!r}'s: results are in "
                  f"{root / profile / report.slot}, not the profile's (and not in the book)", file=stream, flush=True)
        if publish_dir and report.status != "failed" and report.profile_results:
            publish(report, Path(publish_dir), notebooks_dir)
        return report

    if jobs == 1:
        reports = []
        for notebook_id in selected:
            print(f"{prefixes[notebook_id]} ...", file=stream, flush=True)
            reports.append(finish(execute_notebook(notebook_id, **kwargs)))
        return reports
    alone = [n for n in selected if runs_alone(notebook_path(n, notebooks_dir))]
    # longest first (sorted is stable: unhinted notebooks keep the profile's order after the hinted ones)
    shared = sorted((n for n in selected if n not in alone),
                    key=lambda n: -expected_seconds(notebook_path(n, notebooks_dir), spec["name"]))
    threads = max(1, _usable_cpus() // max(1, min(jobs, len(shared))))
    print(f"running {min(jobs, len(shared))} notebooks at a time, {threads} CPU thread(s) each; then "
          f"{len(alone)} that time themselves, one at a time", file=stream, flush=True)
    done: dict[str, RunReport] = {}
    if shared:
        # spawn, not fork: a forked child would share this process's open files and threads
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {}
            for notebook_id in shared:
                print(f"{prefixes[notebook_id]} ...", file=stream, flush=True)
                futures[pool.submit(_execute_with_threads, threads, notebook_id, kwargs)] = notebook_id
            try:
                for future in concurrent.futures.as_completed(futures):
                    notebook_id = futures[future]
                    try:
                        report = future.result()
                    except concurrent.futures.process.BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                        report = RunReport(notebook_id, "failed", error=NotebookFailure(
                            notebook_id, None, None, type(exc).__name__, f"its worker process died: {exc}"))
                    except RunnerError as exc:  # a bad result file or notebook, found in the worker
                        report = RunReport(notebook_id, "failed", error=NotebookFailure(
                            notebook_id, None, None, type(exc).__name__, str(exc)))
                    done[notebook_id] = finish(report)
            except BaseException:  # Ctrl-C or a bug: run nothing more, wait for the running ones to clean up
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    for notebook_id in alone:  # their timings must not include a neighbour's load
        print(f"{prefixes[notebook_id]} ... (alone)", file=stream, flush=True)
        done[notebook_id] = finish(execute_notebook(notebook_id, **kwargs))
    return [done[notebook_id] for notebook_id in selected]


# ----------------------------------------------------------------------------- CLI


def _parse_value(text: str) -> Any:
    """``-p name value`` values are YAML scalars, as with papermill's ``-y``: 3 -> int, true -> bool."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ispbench run",
        description="Execute the book's notebooks (all of the profile's, or the ones named) through papermill.",
    )
    parser.add_argument("notebooks", nargs="*", help="notebook ids, e.g. adaptiveisp/table1 (default: all of the profile)")
    parser.add_argument("--profile", default="embedded", help="parameter set: smoke, embedded (default) or paper")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter (repeatable), as papermill's -p")
    parser.add_argument("--force", action="store_true", help="execute even when the cache says nothing changed")
    parser.add_argument("--publish", type=Path, default=None, help="copy executed notebooks here for the book")
    parser.add_argument("--list", action="store_true", help="list the profile's notebooks and their parameters")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="notebooks to run at once, each kernel with cpu_count/jobs threads (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            spec = load_profile(args.profile)
            for notebook_id, params in spec["notebooks"].items():
                print(f"{notebook_id}: {json.dumps(params)}")
            return 0
        overrides = {name: _parse_value(value) for name, value in args.parameter}
        start = time.perf_counter()
        reports = run(args.notebooks or None, profile=args.profile, overrides=overrides,
                      force=args.force, publish_dir=args.publish, jobs=args.jobs)
        wall = time.perf_counter() - start
    except RunnerError as exc:
        print(f"ispbench run: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in reports if r.status == "failed"]
    executed = sum(r.status == "executed" for r in reports)
    print(f"{len(reports)} notebooks: {executed} executed, {len(reports) - executed - len(failed)} cached, "
          f"{len(failed)} failed; {sum(r.seconds for r in reports):.1f} s of notebook time, {wall:.1f} s wall")
    return 1 if failed else 0
