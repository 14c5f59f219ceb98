"""Each notebook's ``PARAM_NAMES`` (what ``start_notebook`` records) lists exactly its parameters cell."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ispbench import runner

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _param_names_assignment(path: Path) -> list[str] | None:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PARAM_NAMES" for t in node.targets):
                return list(ast.literal_eval(node.value))
    return None


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.relative_to(NOTEBOOKS).with_suffix("").as_posix())
def test_param_names_match_the_parameters_cell(path):
    names = _param_names_assignment(path)
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    if "start_notebook(" not in code:
        pytest.skip("notebook does not use start_notebook")
    assert names == list(runner.declared_parameters(path)), f"{path}: PARAM_NAMES must list the parameters cell, in order"
