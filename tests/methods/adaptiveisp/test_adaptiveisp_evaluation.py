"""Notebook helpers: paper names, file names, rows, and the refusal of a missing checkpoint."""

from __future__ import annotations

import pytest

from ispbench.chapters import adaptiveisp as ev


def test_names_and_paths():
    assert ev.PAPER_NAMES["hpo"] == "Hyperparameter Optimization"
    assert ev.PAPER_NAMES["attention"] == "Attention-aware Learning"
    assert ev.lambda_tag(0.0) == "0" and ev.lambda_tag(0.005) == "0.005" and ev.lambda_tag(0.1) == "0.1"
    assert ev.adaptiveisp_weights(0.0).name == "adaptiveisp_embedded.pt"
    assert ev.adaptiveisp_weights(0.01).name == "adaptiveisp_embedded_lc0.01.pt"
    assert ev.adaptiveisp_weights(0.0, reuse_penalty=False).name == "adaptiveisp_embedded_noreuse.pt"


def test_rows():
    # evaluate_isp reports percent; the rows keep it (rounded to 2 decimals), without a dataset no interval
    rows = ev.map_rows("AdaptiveISP", {"mAP@0.5": 50.004, "mAP@0.75": 25.0, "mAP@0.5:0.95": 20.0}, setting="stages=2")
    assert [r["value"] for r in rows] == [50.0, 25.0, 20.0] and rows[0]["setting"] == "stages=2"
    assert all(r["n_seeds"] == 1 and r["ci_low"] != r["ci_low"] for r in rows)  # NaN bounds
    pipes = [[{"module": "ccm"}, {"module": "ccm"}], [{"module": "exposure"}]]
    freq = {r["setting_module"]: r["value"] for r in ev.frequency_rows(pipes, ["ccm", "exposure", "gamma"])}
    assert freq == {"CCM": 100.0, "Exposure": 50.0, "Gamma": 0.0}


def test_missing_variant_is_refused_with_instruction(tmp_path):
    with pytest.raises(FileNotFoundError, match="retrain=True"):
        ev.adaptiveisp_policy(str(tmp_path / "nope.pt"))
