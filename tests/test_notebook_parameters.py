"""Each notebook's ``PARAM_NAMES`` (what ``start_notebook`` records) lists exactly its parameters cell."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ispbench import parameters, runner

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


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.relative_to(NOTEBOOKS).with_suffix("").as_posix())
def test_parameters_cell_matches_the_declarations(path):
    notebook = path.relative_to(NOTEBOOKS).with_suffix("").as_posix()
    specs = parameters.declared(notebook)
    assert specs is not None, f"{notebook}: declare its parameters in ispbench/profiles/parameters.yaml"
    cell = runner.declared_parameters(path)
    assert sorted(cell) == sorted(specs), f"{notebook}: parameters cell and parameters.yaml name different parameters"
    for name, value in cell.items():
        assert value == specs[name]["default"], f"{notebook}: {name} defaults to {value!r}, declared {specs[name]['default']!r}"
        assert parameters.problem(value, specs[name]) is None, f"{notebook}: the cell's {name} = {value!r} fails its check"
        assert specs[name].get("help"), f"{notebook}: {name} needs a one-line meaning (help)"


@pytest.mark.parametrize("profile", parameters.available_profiles())
def test_every_profile_value_passes_the_checks(profile):
    spec = parameters.load_profile(profile)
    assert set(spec["notebooks"]) == set(parameters.declarations()), f"{profile}: lists other notebooks than parameters.yaml"
    for notebook in spec["notebooks"]:
        parameters.check(notebook, parameters.resolve(notebook, parameters.declared(notebook), spec))


def test_checks_refuse_bad_values_naming_the_parameter():
    for params, words in (({"image_size": -5}, "image_size must be >= 16, got -5"),
                          ({"image_size": "abc"}, "image_size must be an integer"),
                          ({"image_size": True}, "image_size must be an integer"),
                          ({"seed": -1}, "seed must be >= 0")):
        with pytest.raises(parameters.ParameterError, match=words):
            parameters.check("ops/gallery", params)
    with pytest.raises(parameters.ParameterError, match="imgsz must be a multiple of 32"):
        parameters.check("adaptiveisp/table1", {"imgsz": 100})
    with pytest.raises(parameters.ParameterError, match="lambda_cs item"):
        parameters.check("adaptiveisp/table4", {"lambda_cs": "0,-1"})
    with pytest.raises(parameters.ParameterError, match="resolutions item '8K' must be one of"):
        parameters.check("rlpixtuner/table2", {"resolutions": ["1K", "8K"]})
    with pytest.raises(parameters.ParameterError, match="unknown parameter"):
        parameters.check("ops/gallery", {"imagesize": 5})
    parameters.check("rlpixtuner/table2", {"max_seconds": 600})  # an int where a float is declared


def test_start_notebook_refuses_a_bad_direct_papermill_value():
    from ispbench.notebook import start_notebook

    with pytest.raises(ValueError, match="image_size must be >= 16"):
        start_notebook("ops/gallery", {"profile": "smoke", "image_size": -5}, param_names=["profile", "image_size"])
