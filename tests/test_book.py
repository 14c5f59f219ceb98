"""Every notebook runs under the `smoke` profile, and the book builds with warnings as errors.

This is the `make book` path end to end, in a temporary copy of the book's sources, with the
`smoke` profile so that it takes minutes rather than the `embedded` profile's half hour.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ispbench import runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    book = tmp_path_factory.mktemp("book")
    # Every tracked file, as a fresh clone has them (the book includes the model cards from
    # ispbench/weights/), plus the clutter a checkout collects that the build must ignore.
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file() and not name.startswith(("book/executed/", "notebooks/")):
            (book / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, book / name)
    (book / ".pytest_cache").mkdir()
    (book / ".pytest_cache" / "README.md").write_text("# pytest cache directory\n")
    results = book / "results"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ISPBENCH_RESULTS", str(results))
    reports = runner.run(profile="smoke", publish_dir=book / "book" / "executed", results_root=results)
    yield book, reports
    monkeypatch.undo()


def test_every_notebook_runs_under_smoke(smoke_book):
    _, reports = smoke_book
    failures = [str(r.error) for r in reports if r.status == "failed"]
    assert not failures, "\n".join(failures)
    assert {r.notebook for r in reports} == set(runner.load_profile("smoke")["notebooks"])


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
