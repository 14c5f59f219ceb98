"""Open every page of the built book in headless Chromium and report what a reader would see broken.

``make check-book`` (after ``make book``) runs ``python -m ispbench.book_check``. It serves
``_build/html`` on ``127.0.0.1`` (a local HTTP server that records every 404), opens each HTML page in
headless Chromium (the Debian ``chromium`` and ``chromium-driver`` packages, driven by selenium) in a
1280 x 900 window, and reports, per page:

* ``missing-resource``: a file the page asked the server for that is not there (image, script, style);
* ``broken-link``: an internal ``<a href>`` whose file is missing, or whose ``#fragment`` is no id there;
* ``broken-image``: an ``<img>`` whose file is missing or that the browser could not decode;
* ``wide``: a table, figure or image wider than the main content column (its ``scrollWidth`` or box
  width against the column's content width: the reader would have to scroll sideways); content of a
  closed ``<details>`` (the folded long-format tables) is not on the page and is not measured;
* ``no-results-table``: a notebook result page (under ``book/executed/``) without any ``<table>``;
* ``raw-math``: math the reader sees as raw TeX (``\\(x^2\\)``): a ``.math`` element MathJax has not
  typeset within a few seconds of loading (MathJax missing, or blocked because it comes from a CDN);
* ``js-error``: a JavaScript error in the console (uncaught exceptions, ``console.error``) other than
  failed loads of external (non-local) resources: the check runs offline and blocks every other host.

Known failures go in an allow-list file (``--allow``), one per line ``PAGE | KIND | REASON`` or
``PAGE | KIND | DETAIL | REASON``: ``PAGE`` is the page's path under the HTML root (``fnmatch``
patterns allowed, ``book/executed/*.html``), ``KIND`` one of the kinds above, ``DETAIL`` an optional
``fnmatch`` pattern of the problem's text (``*THEBE_JS_URL*``), ``REASON`` why it is accepted for now
(required). A matching problem
is printed as ``known`` and does not fail; an entry that matches nothing is printed as stale.
The exit status is 1 when any problem is not allowed, 0 otherwise.

Example:
    python -m ispbench.book_check --html _build/html --allow .ci/book-check-allow.txt
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["Problem", "check_site", "load_allow_list", "main", "KINDS", "chromium_available"]

KINDS = ("missing-resource", "broken-link", "broken-image", "wide", "no-results-table", "raw-math", "js-error")
#: The Debian packages' paths (``apt-get install -y chromium chromium-driver``).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Chromium flags: headless, no sandbox (containers), nothing fetched from the network.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)
#: Pages whose paths start with one of these are notebook result pages (they must show a table).
RESULT_PAGES = ("book/executed/",)
#: Folders of the built book that hold no pages of their own.
SKIP_DIRS = ("_static", "_sources", "_images", "_sphinx_design_static", "_panels_static")

_MEASURE_JS = r"""
const col = ['article.bd-article', 'div.bd-article', 'main article', '[role=main]', 'main']
  .map(s => document.querySelector(s)).find(e => e) || document.body;
const cs = getComputedStyle(col);
const colWidth = col.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
const describe = (el) => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  if (el.className && typeof el.className === 'string') s += '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.');
  let text = '';
  if (el.tagName === 'TABLE') text = Array.from(el.querySelectorAll('th')).slice(0, 6).map(t => t.innerText.trim()).join(', ');
  else if (el.tagName === 'IMG') text = (el.getAttribute('src') || '').slice(0, 60);
  else text = (el.innerText || '').trim().slice(0, 60);
  return s + (text ? ' [' + text.replace(/\s+/g, ' ') + ']' : '');
};
const wide = [];
for (const el of col.querySelectorAll('table, figure, img')) {
  if (el.closest('details:not([open])')) continue;  // folded: not on the page until the reader opens it
  const w = Math.max(el.scrollWidth, el.getBoundingClientRect().width);
  if (w > colWidth + 2) wide.push([describe(el), Math.round(w), Math.round(colWidth)]);
}
const links = Array.from(document.querySelectorAll('a[href]')).map(a => [a.href, (a.innerText || '').trim().slice(0, 40)]);
const images = Array.from(document.querySelectorAll('img')).map(i => [i.src, i.complete, i.naturalWidth]);
return {colWidth: colWidth, wide: wide, links: links, images: images, tables: col.querySelectorAll('table').length};
"""

#: The ``.math`` elements (Sphinx's and MyST's inline and display math) still showing TeX, not typeset by
#: MathJax (which puts an ``mjx-container`` in each one it renders).
_RAW_MATH_JS = r"""
return Array.from(document.querySelectorAll('.math'))
  .filter(el => !el.querySelector('mjx-container') && /\\[(\[]|\$/.test(el.textContent))
  .map(el => el.textContent.trim().replace(/\s+/g, ' ').slice(0, 60));
"""
#: How long a page's MathJax may take to typeset (it loads and renders after the page's load event).
MATH_WAIT_S = 10.0


@dataclass(frozen=True)
class Problem:
    """One thing wrong on one page: ``page`` (path under the HTML root), ``kind`` (:data:`KINDS`), ``detail``."""

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Allowed:
    """An allow-list entry: ``page`` pattern, ``kind``, ``reason``, its line number, ``detail`` pattern."""

    page: str
    kind: str
    reason: str
    line: int
    detail: str = "*"

    def matches(self, p: Problem) -> bool:
        return (p.kind == self.kind and fnmatch.fnmatchcase(p.page, self.page)
                and fnmatch.fnmatchcase(p.detail, self.detail))


def chromium_available(chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> bool:
    """Whether Chromium, its driver and selenium are installed."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return all(os.access(p, os.X_OK) for p in (chromium, chromedriver))


def load_allow_list(path: str | os.PathLike) -> list[Allowed]:
    """Read ``PAGE | KIND | REASON`` or ``PAGE | KIND | DETAIL | REASON`` lines (``#`` comments, blank lines
    ignored); a bad line is a ``ValueError``."""
    entries = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [s.strip() for s in line.split("|")]
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"{path}:{n}: expected 'PAGE | KIND | REASON' or 'PAGE | KIND | DETAIL | REASON', got {raw!r}")
        if parts[1] not in KINDS:
            raise ValueError(f"{path}:{n}: kind {parts[1]!r} is not one of {', '.join(KINDS)}")
        detail = parts[2] if len(parts) == 4 else "*"
        entries.append(Allowed(parts[0], parts[1], parts[-1], n, detail))
    return entries


class _Handler(http.server.SimpleHTTPRequestHandler):
    missing: list[tuple[str, str]]  # (path, referer), set per server

    def send_error(self, code, message=None, explain=None):  # noqa: D102 - records 404s
        if code == 404:
            self.missing.append((unquote(urlsplit(self.path).path), self.headers.get("Referer", "")))
        super().send_error(code, message, explain)

    def log_message(self, format, *args):  # noqa: A002, D102 - quiet
        pass


def _serve(root: Path):
    missing: list[tuple[str, str]] = []
    handler = type("Handler", (_Handler,), {"missing": missing})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, missing


def _driver(chromium: str, chromedriver: str, profile: str, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    # offline: every host but the local server fails at once instead of waiting for DNS
    opts.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def _pages(root: Path) -> list[str]:
    pages = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/", 1)[0] not in SKIP_DIRS:
            pages.append(rel)
    return pages


def _local_file(root: Path, url: str, base: str) -> Path | None:
    """The file under ``root`` a same-origin URL points to (``None`` for another origin or a non-http URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != base:
        return None
    path = unquote(parts.path).lstrip("/")
    target = root / path
    if path == "" or path.endswith("/"):
        target = target / "index.html"
    return target


@functools.lru_cache(maxsize=256)
def _ids(path: Path) -> frozenset[str]:
    text = path.read_text(errors="replace")
    return frozenset(m[1] or m[2] for m in re.finditer(r"""\b(?:id|name)=(?:"([^"]+)"|'([^']+)')""", text))


def check_site(root: str | os.PathLike, *, width: int = 1280, height: int = 900, chromium: str = CHROMIUM,
               chromedriver: str = CHROMEDRIVER, result_pages: tuple[str, ...] = RESULT_PAGES,
               pages: list[str] | None = None, log=print) -> list[Problem]:
    """Open every HTML page under ``root`` in headless Chromium; return the problems found (see the module doc).

    Args:
        root: the built HTML (``_build/html``).
        width, height: the browser window in pixels.
        chromium, chromedriver: the executables.
        result_pages: path prefixes of the pages that must show a results table.
        pages: only these paths under ``root`` (default: every ``*.html`` outside :data:`SKIP_DIRS`).
        log: called with one progress line per page.
    """
    root = Path(root).resolve()
    if not (root / "index.html").is_file() and pages is None:
        raise FileNotFoundError(f"{root}/index.html not found: build the book first (make book)")
    if not chromium_available(chromium, chromedriver):
        raise FileNotFoundError(f"headless check needs {chromium}, {chromedriver} and selenium: "
                                "apt-get install -y chromium chromium-driver; pip install selenium")
    pages = _pages(root) if pages is None else pages
    problems: list[Problem] = []
    with _browser(root, chromium, chromedriver, width, height) as (driver, base, missing):
        driver.set_page_load_timeout(60)
        for i, page in enumerate(pages, 1):
            t0 = time.perf_counter()
            found = _check_page(driver, root, base, page, missing, result_pages)
            problems += found
            log(f"[{i}/{len(pages)}] {page}: {len(found)} problem(s) ({time.perf_counter() - t0:.1f} s)")
    return problems


@contextlib.contextmanager
def _browser(root: Path, chromium: str, chromedriver: str, width: int, height: int):
    """Serve ``root`` on localhost and drive a fresh headless Chromium profile: ``(driver, base URL, 404 list)``;
    everything is stopped and removed on exit."""
    server, missing = _serve(root)
    profile = tempfile.mkdtemp(prefix="ispbench-chromium-")
    driver = None
    try:
        driver = _driver(chromium, chromedriver, profile, width, height)
        yield driver, f"http://127.0.0.1:{server.server_address[1]}", missing
    finally:
        if driver is not None:
            driver.quit()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


def _check_page(driver, root: Path, base: str, page: str, missing: list, result_pages: tuple[str, ...]) -> list[Problem]:
    out: list[Problem] = []
    url = f"{base}/{page}"
    del missing[:]
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(url)
    deadline = time.time() + 10
    while driver.execute_script("return document.readyState") != "complete" and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # let scripts that run on load finish
    info = driver.execute_script(_MEASURE_JS)
    for path, _referer in list(missing):
        if not path.endswith("favicon.ico"):
            out.append(Problem(page, "missing-resource", f"{path} (404)"))
    seen = set()
    for href, text in info["links"]:
        target = _local_file(root, href, base)
        if target is None or href in seen:
            continue
        seen.add(href)
        frag = unquote(urlsplit(href).fragment)
        if not target.is_file():
            out.append(Problem(page, "broken-link", f"{href.removeprefix(base + '/')} ('{text}'): no such file"))
        elif frag and target.suffix == ".html" and frag not in _ids(target):
            out.append(Problem(page, "broken-link", f"{href.removeprefix(base + '/')} ('{text}'): no id '{frag}'"))
    for src, complete, natural in info["images"]:
        target = _local_file(root, src, base)
        if target is not None and not target.is_file():
            out.append(Problem(page, "broken-image", f"{src.removeprefix(base + '/')}: no such file"))
        elif complete and not natural and (target is not None or src.startswith("data:")):
            out.append(Problem(page, "broken-image", f"{src[:80]}: the browser could not decode it"))
    for desc, w, col in info["wide"]:
        out.append(Problem(page, "wide", f"{desc}: {w} px wide, content column {col} px"))
    raw_math, deadline = driver.execute_script(_RAW_MATH_JS), time.time() + MATH_WAIT_S
    while raw_math and time.time() < deadline:
        time.sleep(0.2)
        raw_math = driver.execute_script(_RAW_MATH_JS)
    if raw_math:
        out.append(Problem(page, "raw-math", f"{len(raw_math)} formula(s) not typeset, e.g. {raw_math[0]}"))
    if page.startswith(result_pages) and not info["tables"]:
        out.append(Problem(page, "no-results-table", "a notebook result page with no <table>"))
    for entry in driver.get_log("browser"):
        msg = entry.get("message", "")
        if entry.get("level") != "SEVERE":
            continue
        if "Failed to load resource" in msg or "net::ERR" in msg:
            source = msg.split(" ", 1)[0]
            if source.startswith(base):
                continue  # a local 404: reported above as missing-resource
            if source.startswith(("http://", "https://")):
                continue  # an external resource: the check runs offline
        out.append(Problem(page, "js-error", msg[:300]))
    return out


def screenshot(root: str | os.PathLike, pages: list[str], out_dir: str | os.PathLike, *, width: int = 1280,
               max_height: int = 6000, chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> list[Path]:
    """Full-page PNG screenshots of ``pages`` (paths under ``root``) as a reader's browser shows them.

    Returns:
        The PNG paths, ``<out_dir>/<page with / as _>.png``.
    """
    root = Path(root).resolve()
    missing_pages = [p for p in pages if not (root / p).is_file()]
    if missing_pages:
        raise FileNotFoundError(f"not in {root}: {', '.join(missing_pages)} (build the book first)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _browser(root, chromium, chromedriver, width, 900) as (driver, base, _):
        for page in pages:
            driver.get(f"{base}/{page}")
            height = int(driver.execute_script("return document.body.scrollHeight"))
            driver.set_window_size(width, min(max(height, 900), max_height))
            target = out_dir / (page.replace("/", "_").removesuffix(".html") + ".png")
            driver.save_screenshot(str(target))
            written.append(target)
            driver.set_window_size(width, 900)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m ispbench.book_check``: check the built book; exit 1 on any problem not in the allow-list.

    ``--screenshot DIR PAGE ...`` instead writes full-page screenshots of those pages into ``DIR``.
    """
    ap = argparse.ArgumentParser(prog="python -m ispbench.book_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", help="the built book (default _build/html)")
    ap.add_argument("--allow", default="", help="allow-list file of known failures: PAGE | KIND | REASON lines")
    ap.add_argument("--width", type=int, default=1280, help="browser window width in px (default 1280)")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--chromedriver", default=CHROMEDRIVER)
    ap.add_argument("--screenshot", nargs="+", metavar=("DIR", "PAGE"), default=None,
                    help="write full-page PNGs of these pages (paths under --html) into DIR instead of checking")
    args = ap.parse_args(argv)
    if args.screenshot:
        if len(args.screenshot) < 2:
            ap.error("--screenshot needs a folder and at least one page, e.g. --screenshot shots book/status.html")
        for path in screenshot(args.html, args.screenshot[1:], args.screenshot[0], width=args.width,
                               chromium=args.chromium, chromedriver=args.chromedriver):
            print(path)
        return 0
    allowed = load_allow_list(args.allow) if args.allow else []
    problems = check_site(args.html, width=args.width, chromium=args.chromium, chromedriver=args.chromedriver)
    known = [p for p in problems if any(a.matches(p) for a in allowed)]
    new = [p for p in problems if p not in known]
    for p in known:
        print(f"known  {p}")
    for p in new:
        print(f"FAIL   {p}")
    for a in allowed:
        if not any(a.matches(p) for p in problems):
            print(f"stale  {args.allow}:{a.line}: '{a.page} | {a.kind}' matches nothing now: remove it")
    print(f"book check: {len(problems)} problem(s), {len(known)} known (allow-list), {len(new)} new")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
