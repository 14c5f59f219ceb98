"""Shared test set-up: no network, a headless matplotlib, results kept out of the checkout."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def results_env(tmp_path, monkeypatch):
    """Point ``$ISPBENCH_RESULTS`` at a temporary folder for the test."""
    root = tmp_path / "results"
    monkeypatch.setenv("ISPBENCH_RESULTS", str(root))
    return root


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (learning tests: steady timing beside other jobs), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
