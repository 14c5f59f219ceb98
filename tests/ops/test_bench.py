"""Smoke test of ``ispbench bench ops`` on tiny images; and the references agree with the modules."""

from __future__ import annotations

import json

import torch

from ispbench.ops import MODULE_NAMES, apply
from ispbench.ops.bench import main, nlm_unfold_reference, sharpen_unfold_reference


def test_bench_main_writes_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPBENCH_RESULTS", str(tmp_path))
    assert main(["--size", "16", "--batches", "1", "2", "--repeats", "1", "--profile", "smoke"]) == 0
    record = json.loads((tmp_path / "smoke" / "bench" / "ops.json").read_text())
    assert record["data"] == "random 16x16 tensors"
    rows = record["tables"]["ops"]
    modules = {r["module"] for r in rows}
    assert set(MODULE_NAMES) <= modules
    assert {"denoise (unfold reference)", "sharpen_blur (unfold reference)", "executor: one module per sample"} <= modules
    assert all(r["median_ms"] > 0 and r["ratio_to_floor"] > 0 for r in rows)
    assert {r["batch"] for r in rows} == {1, 2}
    assert next(r for r in rows if r["module"] == "denoise")["paper_ms_table4"] == 10
    assert (tmp_path / "smoke" / "bench" / "ops__ops.csv").exists()


def test_references_match_modules():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 10, generator=g, dtype=torch.float64)
    s = torch.tensor([[0.4], [1.0]], dtype=torch.float64)
    assert torch.allclose(nlm_unfold_reference(x, s[:, 0]), apply("denoise", x, s))
    q = torch.tensor([[0.3], [1.7]], dtype=torch.float64)
    assert torch.allclose(sharpen_unfold_reference(x, q), apply("sharpen_blur", x, q))
