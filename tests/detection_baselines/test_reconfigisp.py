"""ReconfigISP: the discretisation rule, the supernet's mixture, export/load, exact resume, the command line."""

from __future__ import annotations

import pytest
import torch
import toy_detection

from ispbench import cli, ops
from ispbench.detection_baselines import reconfigisp_train as rt
from ispbench.detection_baselines.hpo import HPOISP
from ispbench.detection_baselines.models import build_model, load_baseline, make_isp_fn
from ispbench.detection_baselines.reconfigisp import (
    SKIP,
    ReconfigDiscreteISP,
    ReconfigSupernet,
    discretise_architecture,
)
from ispbench.training import tasks
from ispbench.training.checkpoint import SettingsChangedError
from ispbench.training.config import from_overrides

FAST = ["exposure", "white_balance", "ccm", "gamma", "sharpen_blur", "tone", "contrast", "saturation", "desaturation"]


# ----------------------------------------------------------------------------- discretisation rule
def test_discretisation_takes_the_best_op_not_used_before_and_skip_may_repeat():
    names = ["exposure", "gamma", "tone", SKIP]
    alpha = torch.tensor([
        [5.0, 1.0, 0.0, 0.0],   # exposure
        [4.0, 3.0, 0.0, 0.0],   # exposure again is best -> runner-up gamma
        [9.0, 8.0, 1.0, 2.0],   # exposure, gamma used -> skip (2) beats tone (1)
        [0.0, 0.0, 0.0, 7.0],   # skip again
        [3.0, 3.0, 3.0, 1.0],   # exposure, gamma used; tone (3) beats skip (1)
    ])
    assert discretise_architecture(alpha, names) == ["exposure", "gamma", SKIP, SKIP, "tone"]
    assert discretise_architecture(torch.zeros(2, 4), names) == ["exposure", "gamma"]  # ties: the lower column
    assert discretise_architecture(torch.softmax(alpha, 1), names) == discretise_architecture(alpha, names)
    with pytest.raises(ValueError, match="alpha: expected"):
        discretise_architecture(torch.zeros(2, 3), names)


def test_discretise_carries_the_chosen_ops_parameters_and_drops_skips():
    torch.manual_seed(0)
    net = ReconfigSupernet(stages=3, modules=["exposure", "gamma", "tone"], denoise_window=5)
    with torch.no_grad():
        for t in range(3):
            for raw in net.raw[t].values():
                raw.add_(0.1 * (t + 1) + 0.01 * torch.arange(raw.numel()))  # different values per stage and module
        net.alpha.copy_(torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0], [5.0, 4.0, 0.0, 0.0]]))
    assert net.op_names == ["exposure", "gamma", "tone", SKIP] and net.architecture() == ["gamma", SKIP, "exposure"]
    model = net.discretise()
    assert isinstance(model, HPOISP) and model.method == "reconfigisp" and model.pipeline == ["gamma", "exposure"]
    assert model.denoise_window == 5 and model.config()["kwargs"] == {"denoise_window": 5}
    torch.testing.assert_close(model.raw["gamma"], net.raw[0]["gamma"], rtol=0, atol=0)
    torch.testing.assert_close(model.raw["exposure"], net.raw[2]["exposure"], rtol=0, atol=0)
    with torch.no_grad():
        model.raw["gamma"].add_(1.0)  # no shared storage
    assert not torch.equal(model.raw["gamma"], net.raw[0]["gamma"])
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, -1] = 9.0
    empty = net.discretise()
    assert empty.pipeline == [] and list(empty.parameters()) == []
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(make_isp_fn(empty)(x), x)  # all skips: the identity, through make_isp_fn


# ----------------------------------------------------------------------------- supernet forward
def test_forward_shape_range_identity_start_and_gradients_reach_alpha_and_parameters():
    torch.manual_seed(0)
    net = ReconfigSupernet(stages=2, modules=FAST)
    assert tuple(net.alpha.shape) == (2, len(FAST) + 1) and float(net.alpha.detach().abs().max()) < 0.01
    assert len(net.module_parameters()) == 2 * len(FAST) and net.arch_parameters() == [net.alpha]
    x = torch.rand(3, 3, 24, 20) * 0.5
    y = net(x)
    assert y.shape == x.shape and float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    assert (y - x).abs().max() < 0.06  # every op starts near its identity, so does their mixture
    y.mean().backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.module_parameters())
    with pytest.raises(ValueError, match="linear"):
        net(torch.rand(3, 24, 20))
    with pytest.raises(ValueError, match="NaN|Inf|non-finite"):
        net(torch.full((1, 3, 4, 4), float("nan")))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stages"):
        ReconfigSupernet(stages=0)
    with pytest.raises(ValueError, match="unknown module"):
        ReconfigSupernet(modules=["exposure", "bogus"])
    with pytest.raises(ValueError, match="distinct"):
        ReconfigSupernet(modules=["exposure", "exposure"])
    with pytest.raises(ValueError, match="denoise_window"):
        ReconfigSupernet(denoise_window=4)


@pytest.mark.parametrize("op", ["exposure", "gamma", "tone", "denoise", SKIP])
def test_mixture_with_a_one_hot_alpha_is_that_op(op):
    torch.manual_seed(1)
    net = ReconfigSupernet(stages=1, modules=["exposure", "gamma", "tone", "denoise"], denoise_window=3)
    with torch.no_grad():
        for raw in net.raw[0].values():
            raw.add_(0.3 * torch.randn(raw.shape))
        net.alpha.zero_()
        net.alpha[0, net.op_names.index(op)] = 60.0  # softmax: the others get e^-60
    x = torch.rand(2, 3, 16, 16) * 0.4
    expected = x if op == SKIP else ops.apply(op, x, net.stage_params(0, 2)[op])
    with ops.modules.nlm_search_window(3):
        torch.testing.assert_close(net(x), expected.clamp(0, 1), rtol=1e-5, atol=1e-6)


def test_supernet_with_one_hot_distinct_ops_equals_its_discretisation():
    torch.manual_seed(2)
    net = ReconfigSupernet(stages=4, modules=FAST)
    with torch.no_grad():
        for stage in net.raw:
            for raw in stage.values():
                raw.add_(0.3 * torch.randn(raw.shape))
        net.alpha.zero_()
        for t, op in enumerate(["tone", SKIP, "exposure", "contrast"]):
            net.alpha[t, net.op_names.index(op)] = 60.0
    x = torch.rand(2, 3, 16, 16) * 0.4
    model = net.discretise()
    assert model.pipeline == ["tone", "exposure", "contrast"]
    torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- trainer
def _args(out, **kw) -> rt.Args:
    base = dict(detector_yaml="yolov8n.yaml", detector_nc=5, imgsz=64, batch_size=2, stages=2, modules="exposure,gamma,contrast",
                search_iterations=3, finetune_iterations=3, log_every=2, lr=0.05, arch_lr=0.05, out_dir=str(out),
                progress_bar=False, seed=1)
    return from_overrides(rt.Args, {**base, **kw})


@pytest.fixture
def toy(monkeypatch):
    """The toy problem of ``tests/toy_detection.py`` behind the detection task (fast: 32 px, no YOLO)."""
    return toy_detection.install(monkeypatch, tasks)


def _toy_args(out, **kw) -> rt.Args:
    return _args(out, **{"imgsz": toy_detection.SIZE, "batch_size": 4, **kw})


def _key(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_train_exports_a_discrete_model_that_load_baseline_reads(tmp_path, toy):
    out = rt.train(_toy_args(tmp_path / "run", export=str(tmp_path / "w.pt"), snapshot_every=2, denoise_window=5))
    model, supernet = out["model"], out["supernet"]
    assert [r["phase"] for r in out["metrics"]] == ["search", "search", "finetune", "finetune"]
    assert [r["iteration"] for r in out["metrics"]] == [2, 3, 4, 6]  # every log_every-th iteration and the end of the search
    assert out["metrics"][0]["architecture"].count(">") == 1 and out["metrics"][0]["val_loss"] > 0
    loaded = load_baseline(tmp_path / "w.pt")
    assert isinstance(loaded, ReconfigDiscreteISP) and loaded.method == "reconfigisp"
    assert loaded.pipeline == model.pipeline and loaded.denoise_window == 5
    meta = loaded.metadata
    assert meta["architecture"] == supernet.architecture() and meta["op_names"] == ["exposure", "gamma", "contrast", SKIP]
    assert [h["iteration"] for h in meta["alpha_history"]] == [0, 2, 3] and len(meta["alpha_history"][0]["weights"]) == 2
    torch.testing.assert_close(torch.tensor(meta["alpha"], dtype=torch.float32), supernet.alpha.detach())
    assert meta["search_iterations"] == 3 and meta["finetune_iterations"] == 3 and meta["train_args"]["task"] == "detection"
    x = torch.rand(2, 3, 32, 32) * 0.1
    torch.testing.assert_close(make_isp_fn(loaded)(x), make_isp_fn(model)(x), rtol=0, atol=1e-6)
    # the search moved alpha; fine-tuning moved the parameters carried over from the search
    assert meta["alpha_history"][0]["weights"] != meta["alpha_history"][-1]["weights"]
    searched = supernet.discretise()
    assert searched.pipeline == model.pipeline
    assert any(not torch.equal(searched.raw[m], model.raw[m]) for m in model.pipeline)
    assert load_baseline(out["out_dir"] / "last.pt").pipeline == model.pipeline  # the checkpoint loads too
    snaps = {p.name: load_baseline(p).metadata["phase"] for p in sorted(out["out_dir"].glob("model_it*.pt"))}
    assert snaps == {"model_it2.pt": "search", "model_it4.pt": "finetune", "model_it6.pt": "finetune"}
    assert build_model("reconfigisp", ["gamma"], denoise_window=3).denoise_window == 3


def test_resume_equals_uninterrupted(tmp_path, toy, capsys):
    """Stopped mid search (2), at the discretisation (3) and mid fine-tuning (4), then run to the end."""
    full = rt.train(_toy_args(tmp_path / "full"))
    for stop_after, at in ((2, 2), (1, 3), (1, 4)):
        rt.train(_toy_args(tmp_path / "split", stop_after=stop_after, export=str(tmp_path / "never.pt")))
        assert not (tmp_path / "never.pt").exists()
        assert load_baseline(tmp_path / "split" / "last.pt").metadata["iterations"] == at
    resumed = rt.train(_toy_args(tmp_path / "split"))
    err = capsys.readouterr().err
    assert all(f"at iteration {at} of 6" in err for at in (2, 3, 4))
    for a, b in ((full["supernet"], resumed["supernet"]), (full["model"], resumed["model"])):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k, v in sa.items():
            assert torch.equal(v, sb[k]), k
    assert full["model"].pipeline == resumed["model"].pipeline
    assert len(full["metrics"]) == 4 and _key(full["metrics"]) == _key(resumed["metrics"])
    assert full["summary"]["architecture"] == resumed["summary"]["architecture"]
    assert [s["start"] for s in resumed["summary"]["segments"]] == [0, 2, 3, 4]


def test_changed_setting_refused_then_recorded_and_bad_args(tmp_path, toy):
    out = tmp_path / "run"
    rt.train(_toy_args(out, stop_after=1))
    with pytest.raises(SettingsChangedError, match=r"arch_lr: 0.05 -> 0.5"):
        rt.train(_toy_args(out, arch_lr=0.5))
    result = rt.train(_toy_args(out, arch_lr=0.5, allow_changed_settings=True))
    assert result["summary"]["segments"][-1]["changed"] == {"arch_lr": [0.05, 0.5]}
    with pytest.raises(ValueError, match="task must be one of"):
        rt.train(_toy_args(tmp_path / "x", task="bogus"))
    with pytest.raises(ValueError, match="held_out_fraction"):
        rt.train(_toy_args(tmp_path / "x", held_out_fraction=1.0))


def test_command_line_on_the_yolo_detection_task(tmp_path, tiny, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "reconfigisp", "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--search-iterations" in text and "--arch-lr" in text and "--denoise-window" in text
    argv = ["train", "reconfigisp", "--detector-yaml", "yolov8n.yaml", "--detector-nc", "5", "--imgsz", "64", "--batch-size", "2",
            "--stages", "1", "--modules", "exposure,gamma", "--search-iterations", "1", "--finetune-iterations", "1",
            "--out-dir", str(tmp_path / "r"), "--no-progress-bar"]
    assert cli.main(argv) == 0
    assert load_baseline(tmp_path / "r" / "last.pt").method == "reconfigisp"
    assert "load_baseline(" in capsys.readouterr().err
