"""The papermill runner: parameters, provenance, failures that keep the last good results, cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from ispbench import results, runner

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
    result = json.loads((tiny_project["results_root"] / "smoke" / "tiny" / "demo" / "result.json").read_text())
    assert result["metrics"]["value"] == 10  # scale from the profile reached the notebook
    assert result["seed"] == 3  # a profile default the notebook declares
    assert result["profile"] == "smoke"
    prov = result["provenance"]
    for key in ("git_commit", "device", "packages", "python"):
        assert key in prov
    assert "torch" in prov["packages"] and result["wall_time_s"] >= 0
    executed = nbformat.read(report.output, as_version=4)
    assert executed.metadata.papermill.parameters["scale"] == 5


def _slot(project, slot="tiny/demo"):
    return project["results_root"] / "smoke" / slot


def test_command_line_override_goes_to_its_own_run_folder_and_cache(tiny_project):
    (own,) = _run(tiny_project)
    own_result = (_slot(tiny_project) / "result.json").read_text()
    (first,) = _run(tiny_project, overrides={"scale": 7})
    assert first.status == "executed" and first.slot.startswith("runs/tiny/demo-") and not first.profile_results
    ad_hoc = json.loads((_slot(tiny_project, first.slot) / "result.json").read_text())
    assert ad_hoc["metrics"]["value"] == 14
    assert (_slot(tiny_project) / "result.json").read_text() == own_result  # profile's results untouched
    (again,) = _run(tiny_project, overrides={"scale": 7})
    assert again.status == "cached"
    (same,) = _run(tiny_project, overrides={"scale": 5})  # the profile's own value: the profile's slot
    assert same.status == "cached" and same.slot == "tiny/demo"
    (tiny_project["package_dir"] / "code.py").write_text("x = 2\n")  # package code changed
    (recoded,) = _run(tiny_project)
    assert recoded.status == "executed"
    result = json.loads((_slot(tiny_project) / "result.json").read_text())
    assert result["metrics"]["value"] == 10


def _set_profile_value(project, **values):
    path = project["profiles_dir"] / "smoke.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["notebooks"]["tiny/demo"].update(values)
    path.write_text(yaml.safe_dump(spec))


def test_failing_notebook_reports_cell_and_keeps_last_good_results(tiny_project, capsys):
    (good,) = _run(tiny_project)
    result_file = _slot(tiny_project) / "result.json"
    good_result = result_file.read_text()
    good_notebook = good.output.read_text()

    _set_profile_value(tiny_project, fail=True)  # the profile's own slot
    (bad,) = _run(tiny_project)
    assert bad.status == "failed" and bad.slot == "tiny/demo"
    message = str(bad.error)
    assert "tiny/demo" in message and "ValueError" in message and "asked to fail" in message
    assert bad.error.cell_index == 3 and "cell 3 `from ispbench.results import write_results, Timer`" in message
    assert result_file.read_text() == good_result  # last good results kept
    assert good.output.read_text() == good_notebook  # last good executed copy kept
    assert bad.error.failed_copy and bad.error.failed_copy.exists()
    assert "FAILED" in capsys.readouterr().out
    leftovers = [p for p in tiny_project["results_root"].rglob("*") if p.name.startswith(".staging")
                 or p.name.endswith(".running.ipynb")]
    assert not leftovers


def test_failure_message_quotes_the_failing_cells_own_first_line(tiny_project):
    nb_path = tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("before = 1  # cell 3: runs fine"))
    nb.cells.insert(3, nbformat.v4.new_markdown_cell("Some prose (cell 4)."))
    nb.cells.append(nbformat.v4.new_code_cell("# cell 6 fails\nraise KeyError('in cell six')"))
    nbformat.write(nb, nb_path)
    (bad,) = _run(tiny_project)
    assert bad.status == "failed"
    assert bad.error.cell_index == 6 and bad.error.first_line == "# cell 6 fails", str(bad.error)
    assert "cell 6 `# cell 6 fails`" in str(bad.error) and "KeyError" in str(bad.error)


def _consistent(project):
    """The published set: result, executed notebook and key all from one run."""
    folder = _slot(project)
    assert folder.is_symlink()
    result = json.loads((folder / "result.json").read_text())
    executed = nbformat.read(folder / "executed.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["scale"] == result["parameters"]["scale"]
    assert (folder / "cache.key").read_text().strip()
    return result


def test_publishing_killed_midway_keeps_the_previous_set_and_the_next_run_repairs(tiny_project, monkeypatch):
    (good,) = _run(tiny_project)
    before = _consistent(tiny_project)
    key_before = (_slot(tiny_project) / "cache.key").read_text()
    _set_profile_value(tiny_project, scale=6)
    real_replace = results.os.replace

    def crash(*args, **kwargs):  # the rename of the staged set happened; the switch crashes
        raise OSError("disk unplugged while publishing")

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(OSError, match="disk unplugged"):
        _run(tiny_project)
    monkeypatch.setattr(results.os, "replace", real_replace)
    after = _consistent(tiny_project)
    assert after == before and (_slot(tiny_project) / "cache.key").read_text() == key_before
    versions = tiny_project["results_root"] / "smoke" / ".versions" / "tiny" / "demo"
    assert len(list(versions.iterdir())) == 1  # nothing half-published left
    (again,) = _run(tiny_project)  # not "cached": the key is the old run's
    assert again.status == "executed"
    assert _consistent(tiny_project)["metrics"]["value"] == 12


def test_a_killed_run_leaves_nothing_the_next_start_keeps(tiny_project, tmp_path):
    (good,) = _run(tiny_project)
    profile_dir = tiny_project["results_root"] / "smoke"
    versions = profile_dir / ".versions" / "tiny" / "demo"
    # what os._exit in the middle of a run leaves: a staging folder of a dead process, a renamed
    # but never linked version, a half-made link, the old layout's running copy and staging folder
    script = ("import os, sys\nsys.path.insert(0, %r)\nfrom ispbench import results\n"
              "s = results.new_staging(%r, 'tiny/demo')\nopen(os.path.join(s, 'result.json'), 'w').write('{')\n"
              "os._exit(1)\n") % (str(Path(runner.__file__).parents[1]), str(profile_dir))
    subprocess.run([sys.executable, "-c", script], check=False)
    (versions / "v1-1").mkdir()
    (profile_dir / "tiny" / ".demo.link-1").symlink_to("nowhere")
    (profile_dir / "notebooks" / "tiny").mkdir(parents=True)
    (profile_dir / "notebooks" / "tiny" / ".demo.running.ipynb").write_text("{}")
    (tiny_project["results_root"] / ".staging-abc").mkdir()
    assert len(list(versions.iterdir())) == 3
    (cached,) = _run(tiny_project)
    assert cached.status == "cached"
    assert list(versions.iterdir()) == [_slot(tiny_project).resolve()]
    names = [p.name for p in tiny_project["results_root"].rglob("*")]
    assert not [n for n in names if n.startswith((".staging", ".demo.")) or n.endswith(".running.ipynb")]


def test_bad_parameter_values_are_refused_before_any_kernel(monkeypatch, results_env):
    import papermill

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    for name, value, words in (("image_size", -5, "image_size must be >= 16, got -5"),
                               ("image_size", "abc", "image_size must be an integer"),
                               ("image_size", 1.5, "image_size must be an integer")):
        with pytest.raises(runner.RunnerError, match=words):
            runner.run(["ops/gallery"], profile="smoke", overrides={name: value}, results_root=results_env)
    with pytest.raises(runner.RunnerError, match="n_images must be an integer"):
        runner.run(["adaptiveisp/table1"], profile="smoke", overrides={"n_images": "abc"}, results_root=results_env)
    with pytest.raises(runner.RunnerError, match="device must be a torch device"):
        runner.run(["ops/gallery"], profile="smoke", overrides={"device": "gpu"}, results_root=results_env)


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
    badge = published.cells[1].source
    assert runner.repository().colab_url("notebooks/tiny/demo.ipynb") in badge or "colab.research.google.com/github/" in badge
    assert f"[![Open in Colab](/{runner.COLAB_BADGE})]" in badge  # the book's own image, no external URL
    assert "colab.research.google.com/assets" not in badge
    assert "--profile smoke" in published.cells[1].source
    tags = {tag for cell in published.cells for tag in cell.metadata.get("tags", [])}
    assert "remove-cell" in tags and "hide-input" in tags


def test_publish_puts_the_paper_table_first_with_its_code_folded(tiny_project, tmp_path):
    nb_path = tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    intro = nbformat.v4.new_markdown_cell("What this page shows.")
    table = nbformat.v4.new_code_cell("print('paper table')")
    table.metadata["tags"] = [runner.PAPER_TABLE_TAG]
    nb.cells = [nb.cells[1], nb.cells[0], intro, nb.cells[2], table]  # parameters, title, intro, code, table
    nbformat.write(nb, nb_path)
    _run(tiny_project, publish_dir=tmp_path / "book")
    published = nbformat.read(tmp_path / "book" / "tiny" / "demo.ipynb", as_version=4)
    sources = [c.source for c in published.cells]
    assert sources[0] == "# Tiny" and "Open in Colab" in sources[1] and sources[2] == "What this page shows."
    assert sources[3] == "print('paper table')"
    assert "paper table" in published.cells[3].outputs[0]["text"]  # executed where it stood, shown first
    assert "hide-input" in published.cells[3].metadata["tags"]
    assert sources.index(nb.cells[3].source) > 3  # the computing code follows the results


def test_publish_leaves_a_labs_exercise_stub_open_and_folds_its_solution(tiny_project, tmp_path):
    nb_path = tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    stub = nbformat.v4.new_code_cell("def f():\n    raise NotImplementedError('write f')")
    stub.metadata["tags"] = [runner.EXERCISE_TAG]
    solution = nbformat.v4.new_code_cell("def f():\n    return 1")
    solution.metadata["tags"] = ["solution", "hide-input"]
    nb.cells = nb.cells + [stub, solution]
    nbformat.write(nb, nb_path)
    _run(tiny_project, publish_dir=tmp_path / "book")
    published = nbformat.read(tmp_path / "book" / "tiny" / "demo.ipynb", as_version=4)
    tags = {c.source: set(c.metadata.get("tags", [])) for c in published.cells}
    assert "hide-input" not in tags[stub.source]  # the student reads the stub without a click
    assert "hide-input" in tags[solution.source]
    assert "hide-input" in tags[nb.cells[2].source]  # other code still folded


THREADS_NOTEBOOK_CODE = """
import os
from ispbench.results import write_results
write_results("tiny/threads", profile=profile, parameters={}, data="no data: a test notebook",
              metrics={"omp_threads": os.environ.get("OMP_NUM_THREADS", "unset")}, seed=seed, device=device)
"""


def test_jobs_run_notebooks_at_once_with_their_share_of_the_threads(tiny_project, monkeypatch):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nseed = 0\ndevice = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(THREADS_NOTEBOOK_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tiny_project["notebooks_dir"] / "tiny" / "threads.ipynb")
    nb.metadata["ispbench"] = {"run_alone": True}  # a notebook that times itself
    nb.cells[1].source = nb.cells[1].source.replace("tiny/threads", "tiny/alone")
    nbformat.write(nb, tiny_project["notebooks_dir"] / "tiny" / "alone.ipynb")
    (tiny_project["profiles_dir"] / "smoke.yaml").write_text(yaml.safe_dump(
        {"description": "test", "defaults": {"device": "cpu", "seed": 3},
         "notebooks": {"tiny/alone": {}, "tiny/threads": {}, "tiny/demo": {"scale": 5}}}, sort_keys=False))
    monkeypatch.setattr(runner, "_usable_cpus", lambda: 4)  # the parent decides the share
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    reports = _run(tiny_project, jobs=2)
    assert [r.notebook for r in reports] == ["tiny/alone", "tiny/threads", "tiny/demo"]  # the profile's order
    assert [r.status for r in reports] == ["executed"] * 3, [r.error for r in reports]
    read = lambda slot: json.loads((_slot(tiny_project, slot) / "result.json").read_text())["metrics"]  # noqa: E731
    assert read("tiny/threads")["omp_threads"] == "2" and read("tiny/demo")["value"] == 10
    assert read("tiny/alone")["omp_threads"] == "unset"  # by itself, torch's own thread count
    assert "OMP_NUM_THREADS" not in runner.os.environ  # set in the workers only
    assert [r.status for r in _run(tiny_project, jobs=2)] == ["cached"] * 3
    with pytest.raises(runner.RunnerError, match="jobs: expected a whole number of at least 1, got 0"):
        _run(tiny_project, jobs=0)


def test_jobs_start_the_longest_notebook_first(tiny_project):
    import io

    base = nbformat.read(tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb", as_version=4)
    for name, seconds in {"quick": None, "long": {"smoke": 900, "embedded": 1}, "middle": {"smoke": 60}}.items():
        if seconds is not None:
            base.metadata["ispbench"] = {"seconds": seconds}
        nbformat.write(base, tiny_project["notebooks_dir"] / "tiny" / f"{name}.ipynb")
    (tiny_project["profiles_dir"] / "smoke.yaml").write_text(yaml.safe_dump(
        {"description": "test", "defaults": {"device": "cpu", "seed": 3},
         "notebooks": {"tiny/quick": {}, "tiny/middle": {}, "tiny/long": {}}}, sort_keys=False))
    stream = io.StringIO()
    reports = _run(tiny_project, jobs=2, stream=stream)
    started = [line.split()[1] for line in stream.getvalue().splitlines() if line.endswith(" ...")]
    assert started == ["tiny/long", "tiny/middle", "tiny/quick"]  # by this profile's hint; unhinted last
    assert [r.notebook for r in reports] == ["tiny/quick", "tiny/middle", "tiny/long"]  # reported in profile order
    assert [r.status for r in reports] == ["executed"] * 3


def test_a_bad_seconds_hint_names_the_notebook(tiny_project):
    nb_path = tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["ispbench"] = {"seconds": {"smoke": "long"}}
    nbformat.write(nb, nb_path)
    with pytest.raises(runner.RunnerError, match=r"demo.ipynb: metadata ispbench.seconds: expected"):
        _run(tiny_project, jobs=2)


def test_a_failing_notebook_among_jobs_is_reported_and_the_others_published(tiny_project):
    nb = nbformat.read(tiny_project["notebooks_dir"] / "tiny" / "demo.ipynb", as_version=4)
    nbformat.write(nb, tiny_project["notebooks_dir"] / "tiny" / "other.ipynb")
    (tiny_project["profiles_dir"] / "smoke.yaml").write_text(yaml.safe_dump(
        {"description": "test", "defaults": {"device": "cpu", "seed": 3},
         "notebooks": {"tiny/demo": {"fail": True}, "tiny/other": {"scale": 2}}}, sort_keys=False))
    failed, other = _run(tiny_project, jobs=2)
    assert failed.status == "failed" and "asked to fail" in str(failed.error)  # came back from its worker
    assert failed.error.failed_copy is not None and failed.error.failed_copy.is_file()
    assert other.status == "executed" and other.output.is_file()  # and the other notebook still published


def test_notebook_failure_survives_pickling():
    import pickle

    failure = runner.NotebookFailure("a/b", 3, 7, "ValueError", "bad", Path("x.ipynb"), "x = 1")
    again = pickle.loads(pickle.dumps(failure))
    assert again == failure and str(again) == str(failure)
