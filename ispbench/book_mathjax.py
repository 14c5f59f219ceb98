"""Sphinx extension: the book typesets its math with a MathJax that ships with it, not one from a CDN.

Sphinx loads MathJax from ``cdn.jsdelivr.net`` by default, so a reader offline (or a lab room behind a
proxy) sees raw TeX such as ``\\(\\log \\pi(a \\mid x)\\)``. This extension takes the MathJax 3.2 files
that the ``sphinx-mathjax-offline`` package installs (a dependency of ispbench; its files only, not its
Sphinx hook), copies them under ``_static/mathjax`` of the built HTML and points ``mathjax_path`` at
the same combined component Sphinx loads from the CDN (``tex-mml-chtml.js``), so the pages are
typeset exactly as online. ``_config.yml`` lists it among the Sphinx extensions;
``python -m ispbench.book_check`` reports a page whose math is still raw TeX after loading (``raw-math``).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

__all__ = ["MATHJAX_COMPONENT", "MATHJAX_DIR", "mathjax_source", "setup"]

#: The combined MathJax component Sphinx uses by default (TeX and MathML input, CommonHTML output).
MATHJAX_COMPONENT = "tex-mml-chtml.js"
#: Where the copy lands under the built book's ``_static``.
MATHJAX_DIR = "mathjax"
_DISTRIBUTION = "sphinx-mathjax-offline"


def mathjax_source() -> Path:
    """The installed MathJax 3 folder (holds :data:`MATHJAX_COMPONENT`); a clear error when it is missing."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:  # an install without ispbench's dependencies
        raise RuntimeError(f"the book's offline MathJax needs the {_DISTRIBUTION} package: "
                           f"pip install {_DISTRIBUTION} (make install does)") from exc
    folder = Path(str(dist.locate_file(f"{_DISTRIBUTION}/static/mathjax")))
    if not (folder / MATHJAX_COMPONENT).is_file():
        raise RuntimeError(f"{folder}/{MATHJAX_COMPONENT} not found: reinstall {_DISTRIBUTION}")
    return folder


def _use_local_mathjax(app: Any, config: Any) -> None:
    mathjax_source()  # fail when the build starts, not after every page is written
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_COMPONENT}"  # relative: Sphinx resolves it under _static


def _copy_mathjax(app: Any, exception: BaseException | None) -> None:
    if exception is not None or getattr(app.builder, "format", "") != "html":
        return
    # node-main.js is MathJax's entry point for Node, never loaded by a page
    shutil.copytree(mathjax_source(), Path(app.outdir) / "_static" / MATHJAX_DIR, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("node-main.js"))


def setup(app: Any) -> dict[str, Any]:
    """Register the extension (Sphinx calls this)."""
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
