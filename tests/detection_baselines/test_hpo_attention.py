"""HPO and Attention-aware baselines: forward, identity start, one training step, export round trip."""

from __future__ import annotations

import pytest
import torch

from ispbench import ops
from ispbench.detection_baselines.attention import AttentionISP
from ispbench.detection_baselines.hpo import HPOISP
from ispbench.detection_baselines.models import build_model, load_baseline, make_isp_fn
from ispbench.detection_baselines.pipeline import FIXED_PIPELINE
from ispbench.detection_baselines.train import Args, main_attention, main_hpo, train
from ispbench.training.config import parse

FAST = [m for m in FIXED_PIPELINE if m != "denoise"]  # NLM is slow on a CPU


def test_fixed_pipeline_has_ten_stages():
    assert len(FIXED_PIPELINE) == 10 and set(FIXED_PIPELINE) == set(ops.MODULE_NAMES)


@pytest.mark.parametrize("cls", [HPOISP, AttentionISP])
def test_forward_shape_range_and_identity_start(cls):
    torch.manual_seed(0)
    model = cls(FAST).eval()
    x = torch.rand(2, 3, 32, 32) * 0.5
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert (y - x).abs().max() < 0.06  # every stage starts at (near) its identity


def test_attention_params_differ_per_image():
    torch.manual_seed(0)
    model = AttentionISP(FAST)
    for p in model.heads.parameters():  # make the heads sensitive to the features
        torch.nn.init.normal_(p, std=0.5)
    model.eval()
    params = model.params(torch.cat([torch.full((1, 3, 32, 32), 0.01), torch.full((1, 3, 32, 32), 0.5)]))
    assert not torch.allclose(params["exposure"][0], params["exposure"][1])
    hpo = HPOISP(FAST)
    p = hpo.params(3)
    assert torch.equal(p["gamma"][0], p["gamma"][2])


def test_bad_pipeline_is_refused():
    with pytest.raises(ValueError, match="unknown module"):
        HPOISP(["exposure", "bogus"])


@pytest.mark.parametrize("method,lr", [("hpo", 0.05), ("attention", 1e-3)])
def test_one_training_step_changes_parameters_and_round_trips(tmp_path, tiny, method, lr):
    args = parse(Args, ["--detector-yaml", "yolov8n.yaml", "--detector-nc", "5", "--imgsz", "64",
                        "--batch-size", "2", "--iterations", "1", "--lr", str(lr),
                        "--pipeline", ",".join(FAST), "--out-dir", str(tmp_path / "run"),
                        "--no-progress-bar", "--export", str(tmp_path / "w.pt")], prog="test", base=Args(method=method))
    assert args.method == method and args.detection.imgsz == 64 and args.detection.detector_nc == 5
    torch.manual_seed(0)
    fresh = build_model(method, FAST)
    out = train(args)
    model = out["model"]
    changed = any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))
    assert changed and len(out["metrics"]) == 1
    loaded = load_baseline(tmp_path / "w.pt")
    x = torch.rand(2, 3, 64, 64) * 0.1
    assert torch.allclose(make_isp_fn(loaded)(x), make_isp_fn(model)(x), atol=1e-6)


@pytest.mark.parametrize("main,method", [(main_hpo, "hpo"), (main_attention, "attention")])
def test_each_command_defaults_to_its_method_and_resumes(tmp_path, tiny, capsys, main, method):
    argv = ["--detector-yaml", "yolov8n.yaml", "--detector-nc", "5", "--imgsz", "64", "--batch-size", "2",
            "--iterations", "2", "--pipeline", "exposure,gamma", "--out-dir", str(tmp_path / "r"), "--no-progress-bar"]
    assert main(argv) == 0
    assert load_baseline(tmp_path / "r" / "last.pt").method == method  # a training checkpoint loads too
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "load_baseline(" in err
    assert main(argv) == 0  # nothing left to train: resumes at the end
    assert "resumed from" in capsys.readouterr().err
