"""Notebooks call package code instead of copying it: no block of six code lines recurs in three notebooks.

Lines are normalised before comparing: comments, blank lines and leading/trailing whitespace are
dropped, every string literal becomes ``S`` and every number ``N`` (so a block copied with other
constants still counts), and import statements are left out (importing the same helpers is not
copied logic). The ``colab-install`` and ``parameters`` cells are the notebooks' fixed preamble
(DEVELOPING.md, "Notebooks") and are not compared. Code cells of one notebook are joined, so a
block may span cells.
"""

from __future__ import annotations

import io
import json
import tokenize
from collections import defaultdict
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WINDOW = 6
MAX_NOTEBOOKS = 2
PREAMBLE_TAGS = {"colab-install", "parameters"}
#: string tokens (Python 3.12 splits f-strings into start/middle/end tokens)
STRING_TOKENS = {tokenize.STRING} | {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                                     if hasattr(tokenize, n)}


def normalised_lines(source: str) -> list[str]:
    """Code lines of ``source`` with comments, strings, numbers and imports normalised away."""
    lines: dict[int, list[str]] = defaultdict(list)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for tok in tokens:
        if tok.type in skip:
            continue
        text = "S" if tok.type in STRING_TOKENS else "N" if tok.type == tokenize.NUMBER else tok.string
        lines[tok.start[0]].append(text)
    out = []
    for number in sorted(lines):
        line = " ".join(lines[number])
        if line.startswith(("import ", "from ")) and " import " in f" {line} ":
            continue
        out.append(line)
    return out


def notebook_lines(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and not PREAMBLE_TAGS & set(c.get("metadata", {}).get("tags", []))]
    return [line for cell in code for line in normalised_lines("".join(cell["source"]))]


def repeated_blocks(paths: list[Path], window: int = WINDOW) -> dict[tuple[str, ...], set[str]]:
    """Blocks of ``window`` consecutive normalised lines -> the notebooks they occur in."""
    where: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for path in paths:
        lines = notebook_lines(path)
        for start in range(len(lines) - window + 1):
            where[tuple(lines[start:start + window])].add(path.relative_to(NOTEBOOKS).as_posix())
    return where


def test_normalisation_drops_comments_strings_numbers_and_imports():
    source = 'import torch\nx = f(\"a\", 3)  # note\n\n# only a comment\ny = g(x)\n'
    assert normalised_lines(source) == ["x = f ( S , N )", "y = g ( x )"]


def test_the_check_finds_a_block_copied_into_three_notebooks(tmp_path):
    block = "".join(f"v{i} = compute({i})\n" for i in range(WINDOW))
    for name in ("a", "b", "c"):
        cells = [{"cell_type": "code", "metadata": {}, "source": [f"start_{name} = 1\n", block]}]
        (tmp_path / f"{name}.ipynb").write_text(json.dumps({"cells": cells}))
    lines = [notebook_lines(tmp_path / f"{n}.ipynb") for n in "abc"]
    assert all(len(x) == WINDOW + 1 for x in lines)
    where: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for name, ls in zip("abc", lines, strict=True):
        for start in range(len(ls) - WINDOW + 1):
            where[tuple(ls[start:start + WINDOW])].add(name)
    assert max(len(v) for v in where.values()) == 3


def test_no_six_lines_recur_in_three_notebooks():
    paths = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    copied = {block: names for block, names in repeated_blocks(paths).items() if len(names) > MAX_NOTEBOOKS}
    report = "\n\n".join(f"in {sorted(names)}:\n  " + "\n  ".join(block) for block, names in list(copied.items())[:5])
    assert not copied, f"{len(copied)} blocks of {WINDOW} lines recur in 3+ notebooks; move them into ispbench/chapters:\n{report}"
