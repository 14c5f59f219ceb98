"""The papermill runner: parameters, provenance, failures that keep the last good results, cache."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from ispbench import runner

TINY_NOTEBOOK_CODE = """
from ispbench.results import write_results, Timer
timer = Timer()
if fail:
    raise ValueError("asked to fail")
value = scale * 2
write_results("tiny/demo", profile=profile, parameters={"scale": scale, "fail": fail},
              data="no data: a test notebook", metrics={"value": value}, seed=seed, device=device,
              wall_time_s=timer.elapsed)
"""


def _make_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nseed = 0\ndevice = "cpu"\nscale = 1\nfail = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), params, nbformat.v4.new_code_cell(TINY_NOTEBOOK_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def tiny_project(tmp_path, results_env):
    notebooks = tmp_path / "notebooks"
    _make_notebook(notebooks / "tiny" / "demo.ipynb")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "smoke.yaml").write_text(yaml.safe_dump(
        {"description": "test", "defaults": {"device": "cpu", "seed": 3, "not_declared_anywhere": 1},
         "notebooks": {"tiny/demo": {"scale": 5}}}))
    package = tmp_path / "package"  # stands in for ispbench/ in the cache key
    package.mkdir()
    (package / "code.py").write_text("x = 1\n")
    return {"notebooks_dir": notebooks, "profiles_dir": profiles, "results_root": results_env,
            "package_dir": package}


def _run(project, **kwargs):
    return runner.run(profile=kwargs.pop("profile", "smoke"), **project, **kwargs)


def test_runner_executes_and_records_provenance(tiny_project):
    (report,) = _run(tiny_project)
    assert report.status == "executed", report.error
    result = json.loads((tiny_project["results_root"] / "smoke" / "tiny" / "demo.json").read_text())
    assert result["metrics"]["value"] == 10  # scale from the profile reached the notebook
    assert result["seed"] == 3  # a profile default the notebook declares
    assert result["profile"] == "smoke"
    prov = result["provenance"]
    for key in ("git_commit", "device", "packages", "python"):
        assert key in prov
    assert "torch" in prov["packages"] and result["wall_time_s"] >= 0
    executed = nbformat.read(report.output, as_version=4)
    assert executed.metadata.papermill.parameters["scale"] == 5


def test_command_line_override_and_cache(tiny_project):
    (first,) = _run(tiny_project, overrides={"scale": 7})
    assert first.status == "executed"
    (again,) = _run(tiny_project, overrides={"scale": 7})
    assert again.status == "cached"
    (changed,) = _run(tiny_project, overrides={"scale": 8})
    assert changed.status == "executed"
    (tiny_project["package_dir"] / "code.py").write_text("x = 2\n")  # package code changed
    (recoded,) = _run(tiny_project, overrides={"scale": 8})
    assert recoded.status == "executed"
    result = json.loads((tiny_project["results_root"] / "smoke" / "tiny" / "demo.json").read_text())
    assert result["metrics"]["value"] == 16


def test_failing_notebook_reports_cell_and_keeps_last_good_results(tiny_project, capsys):
    (good,) = _run(tiny_project)
    result_file = tiny_project["results_root"] / "smoke" / "tiny" / "demo.json"
    good_result = result_file.read_text()
    good_notebook = good.output.read_text()

    (bad,) = _run(tiny_project, overrides={"fail": True})
    assert bad.status == "failed"
    message = str(bad.error)
    assert "tiny/demo" in message and "ValueError" in message and "asked to fail" in message
    assert bad.error.cell_index is not None and "cell" in message
    assert result_file.read_text() == good_result  # last good results kept
    assert good.output.read_text() == good_notebook  # last good executed copy kept
    assert bad.error.failed_copy and bad.error.failed_copy.exists()
    assert "FAILED" in capsys.readouterr().out


def test_unknown_profile_lists_valid_ones(tiny_project):
    with pytest.raises(runner.RunnerError, match=r"unknown profile 'nope'; valid profiles: smoke"):
        _run(tiny_project, profile="nope")


def test_unknown_parameter_lists_valid_ones(tiny_project):
    with pytest.raises(runner.RunnerError) as info:
        _run(tiny_project, overrides={"scael": 2})
    text = str(info.value)
    assert "scael" in text and "valid parameters: device, fail, profile, scale, seed" in text


def test_unknown_notebook_lists_valid_ones(tiny_project):
    with pytest.raises(runner.RunnerError, match="valid notebooks: tiny/demo"):
        _run(tiny_project, notebooks=["tiny/missing"])


def test_cli_refuses_unknown_profile(capsys):
    assert runner.main(["--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'nope'" in err and "embedded" in err and "smoke" in err and "paper" in err


def test_parameters_cell_must_be_plain_literals(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = undefined_name + 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(runner.RunnerError, match="plain literals"):
        runner.declared_parameters(path)


def test_cache_key_changes_with_package_code(tmp_path):
    _make_notebook(tmp_path / "n.ipynb")
    key_a = runner.cache_key(tmp_path / "n.ipynb", {"a": 1}, "smoke", "fingerprint-1")
    assert key_a == runner.cache_key(tmp_path / "n.ipynb", {"a": 1}, "smoke", "fingerprint-1")
    assert key_a != runner.cache_key(tmp_path / "n.ipynb", {"a": 1}, "smoke", "fingerprint-2")
    assert key_a != runner.cache_key(tmp_path / "n.ipynb", {"a": 2}, "smoke", "fingerprint-1")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("x = 1\n")
    before = runner.package_fingerprint(package)
    (package / "m.py").write_text("x = 2\n")
    assert runner.package_fingerprint(package) != before


def test_publish_puts_title_and_badge_first_and_hides_install(tiny_project, tmp_path):
    nb_path = tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    install = nbformat.v4.new_code_cell("pass  # pip install on Colab")
    install.metadata["tags"] = ["colab-install"]
    nb.cells = [install, nb.cells[1], nb.cells[0], nb.cells[2]]  # install, parameters, title, code
    nbformat.write(nb, nb_path)
    (report,) = _run(tiny_project, publish_dir=tmp_path / "book")
    published = nbformat.read(tmp_path / "book" / "tiny" / "demo.ipynb", as_version=4)
    assert published.cells[0].source.startswith("# Tiny")
    assert "colab.research.google.com/github/" in published.cells[1].source
    assert "--profile smoke" in published.cells[1].source
    tags = {tag for cell in published.cells for tag in cell.metadata.get("tags", [])}
    assert "remove-cell" in tags and "hide-input" in tags
