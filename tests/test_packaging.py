"""Packaging: the package imports, pyproject and environment.yml agree, the lock pins everything."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


#: Extras a user installs only for one path (``pip install -e ".[vlm]"``: IRPO's vision-language judge under
#: ``paper``): pinned in the lock, left out of environment.yml (which names them in a comment).
OPTIONAL_EXTRAS = ("vlm",)


def _pyproject_names(*, optional: bool = True) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if optional or extra not in OPTIONAL_EXTRAS:
            names |= {_name(r) for r in requirements}
    return names


def test_package_imports():
    import ispbench
    import ispbench.cli
    import ispbench.runner

    assert ispbench.__version__


def test_environment_yml_names_the_same_packages_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_names = {_name(r) for r in pip_section if not r.startswith("-")}
    conda_names |= {_name(d) for d in env["dependencies"] if isinstance(d, str) and _name(d) not in {"python", "pip"}}
    assert conda_names == _pyproject_names(optional=False)
    assert "python=3.11" in env["dependencies"]
    text = (ROOT / "environment.yml").read_text()
    assert all(f".[{extra}]" in text for extra in OPTIONAL_EXTRAS)  # the comment says how to add them


def test_lock_pins_every_dependency_exactly():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock line {line!r} is not pinned with =="
            lock[_name(name)] = version
    missing = {n for n in _pyproject_names() if n not in lock}
    assert not missing, f"requirements.lock does not pin {sorted(missing)}"
    assert lock["jupyter-book"].startswith("1.")


def test_cli_help_and_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "ispbench", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "bench ops" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "ispbench", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "valid:" in bad.stderr


def test_every_notebook_is_in_every_profile_and_the_toc():
    from ispbench import runner

    notebooks = {p.relative_to(ROOT / "notebooks").with_suffix("").as_posix()
                 for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    toc = (ROOT / "_toc.yml").read_text()
    for profile in runner.available_profiles():
        listed = set(runner.load_profile(profile)["notebooks"])
        assert listed == notebooks, f"profile {profile}: {sorted(listed ^ notebooks)}"
    for notebook in notebooks:
        assert f"book/executed/{notebook}" in toc, f"{notebook} is not in _toc.yml"


def test_source_notebooks_have_no_outputs_and_one_parameters_cell():
    import nbformat

    for path in (ROOT / "notebooks").rglob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path}: {len(tagged)} parameters cells"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path} is committed with outputs"
