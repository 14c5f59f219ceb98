"""ispbench.book_check on a tiny hand-made site, in real headless Chromium (skipped when it is not installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ispbench import book_check

CSS = "<style>body{margin:0} main{width:800px} article{width:700px;padding:0 20px}</style>"
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head>{CSS}{head}</head><body><main><article class='bd-article'>{body}</article></main></body></html>"


def _site(root: Path) -> None:
    (root / "img").mkdir(parents=True)
    (root / "img" / "dot.png").write_bytes(__import__("base64").b64decode(PNG_1PX))
    (root / "index.html").write_text(_page(
        "<h1 id='top'>Good</h1><a href='wide.html'>wide</a> <a href='#top'>top</a> <a href='https://example.org/x'>ext</a>"
        "<img src='https://example.org/badge.svg'>"
        "<img src='img/dot.png'><table><tr><th>a</th></tr><tr><td>1</td></tr></table>"
        # a folded long table (closed <details>) is not on the page: not measured
        f"<details><summary>long</summary><table><tr>{''.join(f'<th>c{i}</th>' for i in range(40))}</tr></table></details>"))
    (root / "broken.html").write_text(_page("<a href='missing.html'>gone</a> <a href='index.html#nowhere'>frag</a>"
                                            "<img src='img/none.png'>"))
    cells = "".join(f"<th>column_{i}</th>" for i in range(40))
    (root / "wide.html").write_text(_page(f"<div style='overflow-x:auto'><table><tr>{cells}</tr></table></div>"))
    (root / "jserror.html").write_text(_page("<p>hi</p>", "<script>window.addEventListener('load', () => "
                                                          "{ undefinedFunction(); });</script>"))
    (root / "math.html").write_text(_page("<p>A formula MathJax never typesets: <span class='math'>\\(x^2\\)</span></p>"))
    (root / "book" / "executed").mkdir(parents=True)
    (root / "book" / "executed" / "nb.html").write_text(_page("<p>no table here</p>"))


needs_chromium = pytest.mark.skipif(not book_check.chromium_available(), reason="chromium + chromedriver + selenium not installed")


@pytest.fixture(autouse=True)
def _short_math_wait(monkeypatch):
    monkeypatch.setattr(book_check, "MATH_WAIT_S", 2.0)  # each raw-math page waits this long


@needs_chromium
def test_check_site_finds_each_kind_of_problem(tmp_path):
    _site(tmp_path)
    problems = book_check.check_site(tmp_path, log=lambda _: None)
    by_page: dict[str, set[str]] = {}
    for p in problems:
        by_page.setdefault(p.page, set()).add(p.kind)
    assert "index.html" not in by_page, [str(p) for p in problems if p.page == "index.html"]
    assert by_page["broken.html"] == {"broken-link", "broken-image", "missing-resource"}
    assert sum(p.kind == "broken-link" for p in problems) == 2  # the missing file and the missing #fragment
    assert by_page["wide.html"] == {"wide"}
    wide = next(p for p in problems if p.kind == "wide")
    assert "column_0" in wide.detail and "content column 700 px" in wide.detail
    assert by_page["jserror.html"] == {"js-error"}
    assert "undefinedFunction" in next(p.detail for p in problems if p.kind == "js-error")
    assert by_page["book/executed/nb.html"] == {"no-results-table"}
    assert by_page["math.html"] == {"raw-math"}
    assert "x^2" in next(p.detail for p in problems if p.kind == "raw-math")


@needs_chromium
def test_the_books_own_mathjax_typesets_offline(tmp_path):
    """The MathJax files the book ships (ispbench.book_mathjax) render TeX with every other host blocked."""
    from ispbench import book_mathjax

    shutil.copytree(book_mathjax.mathjax_source(), tmp_path / "_static" / "mathjax")
    script = f"<script defer src='_static/mathjax/{book_mathjax.MATHJAX_COMPONENT}'></script>"
    (tmp_path / "index.html").write_text(_page("<p>Inline <span class='math notranslate'>\\(\\log \\pi(a \\mid x)\\)</span></p>"
                                                "<div class='math notranslate'>\\[A_i = (r_i - \\bar r) / \\sigma\\]</div>", script))
    problems = book_check.check_site(tmp_path, log=lambda _: None)
    assert problems == [], [str(p) for p in problems]


def test_a_missing_mathjax_package_is_a_clear_error(monkeypatch):
    from ispbench import book_mathjax

    def not_installed(name):
        raise book_mathjax.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(book_mathjax.importlib.metadata, "distribution", not_installed)
    with pytest.raises(RuntimeError, match="pip install sphinx-mathjax-offline"):
        book_mathjax.mathjax_source()


@needs_chromium
def test_main_fails_on_new_problems_and_passes_with_an_allow_list(tmp_path, capsys):
    site = tmp_path / "html"
    _site(site)
    assert book_check.main(["--html", str(site)]) == 1
    allow = tmp_path / "allow.txt"
    allow.write_text("# known\nbroken.html | broken-link | test\nbroken.html | broken-image | test\n"
                     "broken.html | missing-resource | test\nwide.html | wide | test\njserror.html | js-error | test\n"
                     "book/executed/*.html | no-results-table | test\nmath.html | raw-math | test\nother.html | wide | fixed already\n")
    assert book_check.main(["--html", str(site), "--allow", str(allow)]) == 0
    out = capsys.readouterr().out
    assert "known  wide.html: wide" in out and "stale" in out and "0 new" in out


def test_allow_list_refuses_bad_lines(tmp_path):
    f = tmp_path / "allow.txt"
    f.write_text("page.html | wide\n")
    with pytest.raises(ValueError, match="PAGE | KIND | REASON"):
        book_check.load_allow_list(f)
    f.write_text("page.html | too-wide | reason\n")
    with pytest.raises(ValueError, match="too-wide"):
        book_check.load_allow_list(f)
    f.write_text("# c\n\nbook/*.html | wide | tables in long format\n")
    (entry,) = book_check.load_allow_list(f)
    assert entry.matches(book_check.Problem("book/a.html", "wide", "x")) and not entry.matches(
        book_check.Problem("book/a.html", "js-error", "x"))
    f.write_text("* | js-error | *THEBE_JS_URL* | duplicated script\n")
    (entry,) = book_check.load_allow_list(f)
    assert entry.matches(book_check.Problem("a.html", "js-error", "x THEBE_JS_URL y"))
    assert not entry.matches(book_check.Problem("a.html", "js-error", "TypeError: x is undefined"))


@needs_chromium
def test_screenshot_writes_a_png_per_page(tmp_path):
    _site(tmp_path / "site")
    paths = book_check.screenshot(tmp_path / "site", ["index.html", "wide.html"], tmp_path / "shots")
    assert [p.name for p in paths] == ["index.png", "wide.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    with pytest.raises(FileNotFoundError, match="nope.html"):
        book_check.screenshot(tmp_path / "site", ["nope.html"], tmp_path / "shots")
