"""Colab: the repository named once (``_config.yml``), the notebooks' install cell, the badge, the GPU."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from ispbench import notebook, runner

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_repository_is_read_from_the_book_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    repo = runner.repository()
    assert repo.url == config["url"].rstrip("/") and repo.branch == config["branch"]
    assert repo.colab_url("notebooks/ops/gallery.ipynb") == (
        f"https://colab.research.google.com/github/{repo.github_path}/blob/{repo.branch}/notebooks/ops/gallery.ipynb")
    assert repo.pip_requirement == f"ispbench @ git+{repo.url}"


def test_repository_setting_is_checked(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork/\n  branch: dev\n")
    repo = runner.repository(config)
    assert repo.colab_url("a.ipynb") == "https://colab.research.google.com/github/someone/fork/blob/dev/a.ipynb"
    assert 'git+https://github.com/someone/fork"' in runner.colab_install_source(repo)
    config.write_text("title: x\n")
    with pytest.raises(runner.RunnerError, match="repository.url"):
        runner.repository(config)
    with pytest.raises(runner.RunnerError, match="OWNER/NAME"):
        runner.Repository("https://gitlab.com/a/b").colab_url("x.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "notebooks").as_posix())
def test_install_cell_is_built_from_the_setting(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "colab-install" in c.metadata.get("tags", [])]
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert len(cells) == 1 and first_code is cells[0], f"{path}: the first code cell must be the one colab-install cell"
    assert cells[0].source == runner.colab_install_source(), (
        f"{path}: the colab-install cell differs from ispbench.runner.colab_install_source() (built from "
        "_config.yml repository.url); rewrite it with that text")


def test_install_cell_is_a_no_op_off_colab():
    namespace: dict = {}
    exec(compile(runner.colab_install_source(), "colab-install", "exec"), namespace)
    assert namespace["IN_COLAB"] is False


def test_badge_image_ships_with_the_book():
    badge = ROOT / runner.COLAB_BADGE
    assert badge.is_file() and badge.read_text().lstrip().startswith("<svg")
    assert "Open in Colab" in badge.read_text()


def test_auto_device_resolves_to_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert notebook.resolve_device("auto") == "cuda" and notebook.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert notebook.resolve_device("auto") == "cpu"


def test_colab_device_variable_replaces_the_parameter(monkeypatch):
    names = ["profile", "seed", "device"]
    monkeypatch.delenv(notebook.DEVICE_ENV, raising=False)
    namespace = {"profile": "smoke", "seed": 0, "device": "cpu"}
    assert notebook.start_notebook("ops/gallery", namespace, param_names=names).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(notebook.DEVICE_ENV, "auto")  # what the install cell sets on Colab
    run = notebook.start_notebook("ops/gallery", namespace, param_names=names)
    assert run.device == "cuda" and run.parameters["device"] == "cuda" and namespace["device"] == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    namespace["device"] = "cpu"
    assert notebook.start_notebook("ops/gallery", namespace, param_names=names).device == "cpu"
