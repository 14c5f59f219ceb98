"""Every notebook runs under the `smoke` profile, and the book builds with warnings as errors.

This is the `make book` path end to end, in a temporary copy of the book's sources, with the
`smoke` profile so that it takes minutes rather than the `embedded` profile's half hour.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ispbench import runner

ROOT = Path(__file__).resolve().parents[1]
#: A notebook "plots" when a code cell calls matplotlib (``plt.``), a pandas/axes ``.plot(`` or
#: ``imshow``, or a figure helper (``show_*``, ``plot_*``, ``*_figure``).
PLOTS = re.compile(r"\bplt\.|\.plot\(|\bimshow\(|\b(?:show|plot)_\w+\(|\w+_figure\(")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    book = tmp_path_factory.mktemp("book")
    # Every tracked file, as a fresh clone has them (the book includes the model cards from
    # ispbench/weights/), plus the clutter a checkout collects that the build must ignore.
    # (untracked files that git does not ignore count: they are what the next commit ships)
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file() and not name.startswith(("book/executed/", "notebooks/")):
            (book / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, book / name)
    (book / ".pytest_cache").mkdir()
    (book / ".pytest_cache" / "README.md").write_text("# pytest cache directory\n")
    results = book / "results"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ISPBENCH_RESULTS", str(results))
    # a headless backend in the caller's environment (the tests' own): the runner's kernels must
    # still draw their figures inline
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # two at a time, as `make book` does: the fixture is the longest part of `make test`
    reports = runner.run(profile="smoke", publish_dir=book / "book" / "executed", results_root=results, jobs=2)
    yield book, reports
    monkeypatch.undo()


# the fixture runs every notebook (about 8-10 minutes on 2 cores): more than the suite's 600 s per test
@pytest.mark.timeout(1800)
def test_every_notebook_runs_under_smoke(smoke_book):
    _, reports = smoke_book
    failures = [str(r.error) for r in reports if r.status == "failed"]
    assert not failures, "\n".join(failures)
    assert {r.notebook for r in reports} == set(runner.load_profile("smoke")["notebooks"])


@pytest.mark.timeout(1800)
def test_labs_solved_under_smoke_pass_every_check(smoke_book):
    """The book shows the labs solved (``solutions: true`` in every profile): each check passed."""
    book, reports = smoke_book
    labs = [r for r in reports if r.notebook.startswith("labs/") and r.status == "executed"]
    assert len(labs) >= 4, [r.notebook for r in reports]
    for report in labs:
        result = json.loads((book / "results" / "smoke" / report.slot / "result.json").read_text())
        assert result["parameters"]["solutions"] is True, report.notebook
        rows = result["tables"]["checks"]
        assert rows and all(row["passed"] for row in rows), (report.notebook, rows)


@pytest.mark.timeout(1800)
def test_notebooks_that_plot_show_their_figures(smoke_book):
    """An executed notebook whose source plots carries ``image/png`` outputs (MPLBACKEND=Agg draws none)."""
    book, reports = smoke_book
    plotting, missing = [], []
    for report in reports:
        if report.status == "failed":
            continue
        nb = nbformat.read(book / "book" / "executed" / f"{report.notebook}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not any(PLOTS.search(c.source) for c in code):
            continue
        plotting.append(report.notebook)
        images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
        if not images:
            missing.append(report.notebook)
    assert plotting, "no notebook plots: the pattern PLOTS no longer matches the notebooks' figures"
    assert not missing, f"notebooks that plot but show no figure (no image/png output): {missing}"


@pytest.mark.timeout(1800)
def test_published_pages_print_no_import_warnings(smoke_book):
    """Warnings a library prints on import (tqdm's "IProgress not found") would sit on every page."""
    book, reports = smoke_book
    noisy = {}
    for report in reports:
        if report.status == "failed":
            continue
        nb = nbformat.read(book / "book" / "executed" / f"{report.notebook}.ipynb", as_version=4)
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                       if o.get("output_type") == "stream")
        found = re.findall(r"\w*Warning: IProgress not found|TqdmWarning", text)
        if found:
            noisy[report.notebook] = sorted(set(found))
    assert not noisy, noisy


@pytest.mark.timeout(1800)
def test_book_builds_with_status_page(smoke_book, monkeypatch):
    book, reports = smoke_book
    if any(r.status == "failed" for r in reports):
        pytest.skip("a notebook failed; see test_every_notebook_runs_under_smoke")
    monkeypatch.setenv("ISPBENCH_RESULTS", str(book / "results"))
    from ispbench import report

    assert report.main(["--profile", "smoke", "--out", str(book / "book" / "status.md")]) == 0
    jb = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run([str(jb), "build", str(book), "-n", "-W", "--keep-going"],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    html = book / "_build" / "html"
    assert (html / "index.html").exists()
    status = (html / "book" / "status.html").read_text()
    assert "Reproduction status" in status
    # the summary links each table to its notebook page
    assert 'href="executed/adaptiveisp/table1.html"' in status
    # every notebook page's Colab badge is the book's own image, linked to the configured repository
    repo = runner.repository()
    for notebook_id in (r.notebook for r in reports):
        page = (html / "book" / "executed" / f"{notebook_id}.html").read_text()
        assert repo.colab_url(f"notebooks/{notebook_id}.ipynb") in page, notebook_id
        assert "colab.research.google.com/assets" not in page, notebook_id
        assert re.search(r'<img[^>]+src="[./]*_images/colab-badge[^"]*\.svg"', page), notebook_id
