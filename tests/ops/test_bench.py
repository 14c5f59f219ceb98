"""Smoke test of ``ispbench bench ops`` on tiny images; and the references agree with the modules."""

from __future__ import annotations

import json

import pytest
import torch

from ispbench.ops import MODULE_NAMES, apply
from ispbench.ops.bench import _balanced_cycle, main, nlm_unfold_reference, parse_case, sharpen_unfold_reference
from ispbench.tasks.detector import DEFAULT_WEIGHTS


def test_bench_main_writes_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPBENCH_RESULTS", str(tmp_path))
    assert main(["--size", "16", "--batches", "1", "2", "--repeats", "1", "--profile", "smoke",
                 "--denoise-cases", "16x1", "24x2"]) == 0
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
    # denoise: today's and the former implementation side by side, forward and forward+backward
    dn = record["tables"]["denoise"]
    assert {(r["implementation"], r["pass"], r["size"], r["batch"]) for r in dn} == {
        (impl, which, size, batch)
        for impl in ("today (_nlm)", "former (_nlm_reference)")
        for which in ("forward", "forward+backward")
        for size, batch in ((16, 1), (24, 2))
    }
    assert all(r["median_ms"] > 0 and r["speedup_vs_former"] > 0 for r in dn)
    assert all(r["speedup_vs_former"] == 1 for r in dn if r["implementation"].startswith("former"))


@pytest.mark.slow  # about 30 whole training steps (policy and value nets, detector, Adam): ~1 min on 2 cores
def test_bench_step_table(tmp_path, monkeypatch):
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"embedded detector {DEFAULT_WEIGHTS} missing")
    monkeypatch.setenv("ISPBENCH_RESULTS", str(tmp_path))
    assert main(["--size", "8", "--batches", "1", "--repeats", "1", "--profile", "smoke", "--no-references",
                 "--denoise-cases", "--step", "--step-size", "32", "--step-batch", "2", "--step-windows", "3"]) == 0
    record = json.loads((tmp_path / "smoke" / "bench" / "ops.json").read_text())
    assert "denoise" not in record["tables"]
    rows = {(r["part"], r["modules"], r["denoise"]): r for r in record["tables"]["step"]}
    assert rows[("ISP part", "(a) 9 modules, no denoise", "today")]["ratio_to_a"] == 1
    for part in ("ISP part", "whole step"):
        for label in ("(b) all 10 modules", "(c) all denoise"):
            assert rows[(part, label, "today")]["median_ms_per_step"] > 0
            assert rows[(part, label, "former")]["ratio_to_a"] > 0
        assert (part, "(c) all denoise", "today, nlm_search_window(3)") in rows
    assert rows[("detector", "per-image loss, forward+backward to the image", "")]["median_ms_per_step"] > 0


def test_parse_case_and_balanced_cycle():
    assert parse_case("160x8") == (160, 8)
    with pytest.raises(ValueError, match="SIZExBATCH"):
        parse_case("160")
    cycle = _balanced_cycle([0, 3, 5], 4, torch.Generator().manual_seed(0))
    assert len(cycle) == 3 and all(c.shape == (4,) for c in cycle)
    assert sorted(torch.cat(cycle).tolist()) == [0] * 4 + [3] * 4 + [5] * 4


def test_references_match_modules():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 10, generator=g, dtype=torch.float64)
    s = torch.tensor([[0.4], [1.0]], dtype=torch.float64)
    assert torch.allclose(nlm_unfold_reference(x, s[:, 0]), apply("denoise", x, s))
    q = torch.tensor([[0.3], [1.7]], dtype=torch.float64)
    assert torch.allclose(sharpen_unfold_reference(x, q), apply("sharpen_blur", x, q))
