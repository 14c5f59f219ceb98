"""Non-finite input refused at the entry points; saturation of raw counts reported; the opt-out;
finite inputs give the same outputs as with the check skipped."""

from __future__ import annotations

import threading
import types
import warnings

import numpy as np
import pytest
import torch

from ispbench.data.default_isp import default_isp
from ispbench.ops import (
    MAX_PARAMS,
    MODULE_NAMES,
    apply,
    apply_pipeline,
    apply_stage,
    finishing,
    finishing_np,
    n_params,
    squash,
)
from ispbench.ops import executor as E
from ispbench.ops import raw as R
from ispbench.ops.checks import (
    SaturationWarning,
    checks_enabled,
    count_nonfinite,
    require_finite,
    require_finite_number,
    unchecked,
)
from ispbench.ops.dng import read_raw_linear, write_dng
from ispbench.tasks import detection_eval as D
from ispbench.tasks import finishing_metrics as FM

NAN, INF = float("nan"), float("inf")


def _img(b=2, h=16, w=16, seed=0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _with(x: torch.Tensor, value: float, *where) -> torch.Tensor:
    x = x.clone()
    x[where] = value
    return x


# --------------------------------------------------------------------------- the check itself


def test_require_finite_names_argument_and_counts():
    x = _with(_with(torch.zeros(2, 3, 4, 4), NAN, 0, 0, 0, 0), -INF, 1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"^image has 2 non-finite values \(NaN/Inf\) of 96 \(1 NaN, 1 Inf\)"):
        require_finite("image", x)
    with pytest.raises(ValueError, match=r"a has 1 non-finite value \(NaN/Inf\) of 3 \(0 NaN, 1 Inf\)"):
        require_finite("a", np.array([1.0, np.inf, 2.0]))
    assert count_nonfinite(x) == 2 and count_nonfinite(torch.arange(3)) == 0


def test_require_finite_accepts_finite_overflowing_sums_and_integers():
    require_finite("big", torch.full((10,), 3e38))  # the sum overflows to inf: still finite values
    require_finite("big", np.full(10, 1e308))
    require_finite("half", torch.full((512, 512), 0.75, dtype=torch.float16))
    require_finite("ints", torch.arange(10))
    require_finite("empty", torch.zeros(0))
    with pytest.raises(ValueError, match="half has 1 non-finite"):
        require_finite("half", _with(torch.full((64, 64), 0.5, dtype=torch.float16), NAN, 3, 3))
    with pytest.raises(ValueError, match="wb_gains must be finite"):
        require_finite_number("wb_gains", (1.0, NAN, 1.0))


def test_require_finite_leaves_autograd_alone():
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    require_finite("image", x)
    apply("exposure", x, torch.ones(1, 1)).sum().backward()
    with unchecked():
        x2 = x.detach().clone().requires_grad_()
        apply("exposure", x2, torch.ones(1, 1)).sum().backward()
    assert torch.equal(x.grad, x2.grad)


# --------------------------------------------------------------------------- probes


def test_probe_default_isp_one_nan_pixel_refused():
    x = _with(_img(1) * 0.2, NAN, 0, 0, 3, 3)  # before: 768 of 768 outputs NaN
    with pytest.raises(ValueError, match=r"linear has 1 non-finite value"):
        default_isp(x)
    with pytest.raises(ValueError, match=r"linear has 1 non-finite value.*0 NaN, 1 Inf"):
        default_isp(_with(_img(1), INF, 0, 1, 0, 0)[0])  # (3, H, W) too
    with pytest.raises(ValueError, match="target_mean must be finite"):
        default_isp(_img(1), target_mean=NAN)


def test_probe_finish_nan_actions_refused():
    x = _img()
    with pytest.raises(ValueError, match=r"^actions has 18 non-finite values"):
        finishing.finish(x, torch.full((2, 9), NAN))
    with pytest.raises(ValueError, match=r"^actions has 1 non-finite value.*1 Inf"):  # not clamped to +1
        finishing.finish(x, _with(torch.zeros(2, 9), INF, 1, 0))
    with pytest.raises(ValueError, match=r"^image has 1 non-finite value"):
        finishing.finish(_with(x, NAN, 1, 2, 3, 4), torch.zeros(2, 9))
    with pytest.raises(ValueError, match=r"^params has 1 non-finite value"):
        finishing.finish_params(x, _with(finishing.scale_actions(torch.zeros(2, 9)), NAN, 0, 4))


def test_probe_finish_numpy_nan_actions_refused():
    img = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^actions has 9 non-finite values"):
        finishing_np.finish(img, np.full(9, np.nan))
    bad = img.copy()
    bad[2, 2, 1] = np.inf
    with pytest.raises(ValueError, match=r"^image has 1 non-finite value.*1 Inf"):
        finishing_np.finish(bad, np.zeros(9))
    with pytest.raises(ValueError, match="actions"):
        finishing_np.scale_actions(np.array([0, 0, 0, 0, np.nan, 0, 0, 0, 0.0]))


@pytest.mark.parametrize("metric", [FM.mse, FM.psnr, FM.ssim, FM.all_metrics])
def test_probe_metrics_refuse_nan(metric):
    x = _img(2, 16, 16)
    with pytest.raises(ValueError, match=r"^pred has 1 non-finite value"):
        metric(_with(x, NAN, 0, 0, 0, 0), x)
    with pytest.raises(ValueError, match=r"^target has 2 non-finite values"):
        metric(x, _with(_with(x, INF, 1, 0, 0, 0), NAN, 1, 1, 1, 1))


def test_lpips_wrapper_refuses_nan_before_the_network():
    calls = []
    model = FM.LPIPS.__new__(FM.LPIPS)  # no AlexNet weights here: a stand-in network
    model.model = lambda p, t: calls.append(1) or torch.zeros(p.shape[0], 1, 1, 1)
    model.device = torch.device("cpu")
    x = _img(2, 16, 16)
    assert model(x, x).shape == (2,)
    with pytest.raises(ValueError, match=r"^pred has 1 non-finite value"):
        model(_with(x, NAN, 0, 0, 0, 0), x)
    assert len(calls) == 1
    out = FM.all_metrics(x, x * 0.5, model)
    assert set(out) == {"PSNR", "SSIM", "LPIPS"} and checks_enabled()


def test_probe_tone_nan_is_a_value_error_not_an_index_error():
    x = _with(_img(1, 8, 8), NAN, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"^image has 1 non-finite value"):
        apply("tone", x, torch.ones(1, 8))
    with unchecked():  # the check skipped: NaN propagates (no out-of-range gather)
        y = apply("tone", x, torch.ones(1, 8))
    assert int(torch.isnan(y).sum()) == 1


def test_probe_raw_counts_beyond_white_level_warn(tmp_path):
    path = tmp_path / "over.dng"
    counts = np.full((32, 32), 1000, np.uint16)
    counts[:4, :8] = 5000  # 32 of 1024 above the white level 4095
    with pytest.warns(SaturationWarning, match=r"over\.dng: 32 of 1024 values \(3.12%\) exceed the white level 4095"):
        write_dng(path, counts, black_level=64, white_level=4095)
    with pytest.warns(SaturationWarning, match=r"read_raw_linear .*over\.dng: 32 of 1024 values .* clipped"):
        rgb, meta = read_raw_linear(path, white_balance="none", demosaic_algorithm="LINEAR")
    assert meta["white_level"] == 4095


def test_probe_24_bit_counts_refused_by_16_bit_dng(tmp_path):
    counts = np.full((32, 32), 1000, np.uint32)
    counts[0, 0] = 2**24 - 1
    with pytest.raises(ValueError, match=r"24-bit data.*16-bit range \[0, 65535\].*>> 8"):
        write_dng(tmp_path / "deep.dng", counts, white_level=65535)
    with pytest.raises(ValueError, match="16-bit range"):
        write_dng(tmp_path / "neg.dng", np.full((32, 32), -1, np.int32))
    assert not list(tmp_path.iterdir())  # nothing written


def test_in_range_counts_written_silently_any_integer_dtype(tmp_path):
    counts = np.random.default_rng(0).integers(64, 4096, (32, 32)).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        path = write_dng(tmp_path / "ok.dng", counts, black_level=64, white_level=4095)
        read_raw_linear(path, white_balance="none")
    import rawpy

    with rawpy.imread(str(path)) as raw:
        assert np.array_equal(raw.raw_image_visible, counts.astype(np.uint16))


def test_apply_black_white_level_warns_when_clipping():
    raw = torch.tensor([100.0, 5000.0, 2.0**24, 4095.0])
    with pytest.warns(SaturationWarning, match=r"raw: 2 of 4 values \(50%\) exceed the white level 4095"):
        x = R.apply_black_white_level(raw, 64, 4095)
    assert x.tolist()[1:] == [1.0, 1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaturationWarning)
        R.apply_black_white_level(raw, 64, 4095, clip=False)  # nothing clipped, nothing to report
        R.apply_black_white_level(torch.tensor([100.0, 4095.0]), 64, 4095)  # at white: not over


# --------------------------------------------------------------------------- entry points


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_apply_refuses_nonfinite_image_and_params(name):
    x, p = _img(), squash(name, torch.zeros(2, n_params(name)))
    with pytest.raises(ValueError, match=r"^image has 1 non-finite value"):
        apply(name, _with(x, NAN, 1, 0, 5, 5), p)
    with pytest.raises(ValueError, match=rf"^params for '{name}' has 1 non-finite value.*1 Inf"):
        apply(name, x, _with(p, INF, 0, 0))  # an Inf would otherwise be clamped into range


def test_apply_stage_refuses_image_and_used_params_only():
    x = _img(3)
    idx = torch.tensor([0, 6, -1])
    params = torch.zeros(3, MAX_PARAMS)
    params[:, :8] = 1.0
    params[2] = NAN  # the skipped sample's row is not used
    params[0, 1:] = NAN  # exposure uses column 0 only
    y = apply_stage(x, idx, params)
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=r"^image has 1 non-finite value"):
        apply_stage(_with(x, INF, 1, 0, 0, 0), idx, params)
    bad = params.clone()
    bad[1, 3] = NAN
    with pytest.raises(ValueError, match=r"^params for 'tone' \(rows of the samples that chose it\) has 1 non-finite"):
        apply_stage(x, idx, bad)
    with pytest.raises(ValueError, match=r"^params for 'exposure' has 3 non-finite"):
        apply_stage(x, torch.zeros(3, dtype=torch.long), {"exposure": torch.full((3, 1), NAN)})


def test_apply_pipeline_checks_image_once_and_names_the_stage(monkeypatch):
    x = _img(2)
    modules = torch.tensor([[0, 3, 9], [7, -1, 0]])
    params = torch.zeros(2, 3, MAX_PARAMS)
    params[:, 1, 0] = 1.0  # gamma 1
    seen = []
    real = E.require_finite
    monkeypatch.setattr(E, "require_finite", lambda name, t: (seen.append(name), real(name, t)))
    apply_pipeline(x, modules, params)
    assert seen.count("image") == 1 and all(s.startswith("params[:, ") for s in seen if s != "image")
    with pytest.raises(ValueError, match=r"^image has 1 non-finite"):
        apply_pipeline(_with(x, NAN, 0, 0, 0, 0), modules, params)
    bad = params.clone()
    bad[0, 2, 0] = NAN
    with pytest.raises(ValueError, match=r"^params\[:, 2\] for 'desaturation' .*has 1 non-finite"):
        apply_pipeline(x, modules, bad)


def _dataset(n=4, h=48, w=64):
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(3, h, w, generator=g), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]]), "labels": torch.tensor([0])}
        for _ in range(n)
    ]


def test_detection_scorer_names_isp_output_and_items():
    det = types.SimpleNamespace(device=torch.device("cpu"), imgsz=64, stride=32)

    def broken_isp(x):
        y = x.clone()
        y[1, 0, :2, :3] = NAN  # item 1: 6 NaN
        y[3, 2, 0, 0] = INF  # item 3: 1 Inf
        return y

    with pytest.raises(ValueError, match=r"isp_fn output \(broken_isp\) has 7 non-finite values.*dataset items \[1, 3\] \(index: count \{1: 6, 3: 1\}\)"):
        D.evaluate_isp(broken_isp, _dataset(), det, batch_size=8)
    calls = []

    def second_call_broken(x):  # batches of 2: items 2, 3 in the second call
        calls.append(1)
        return _with(x, NAN, 1, 0, 0, 0) if len(calls) == 2 else x

    with pytest.raises(ValueError, match=r"has 1 non-finite value.*dataset items \[3\]"):
        D.evaluate_isp(second_call_broken, _dataset(), det, batch_size=2)
    data = _dataset()
    data[2]["image"][0, 0, 0] = NAN
    with pytest.raises(ValueError, match=r"dataset image \(the ISP input\) has 1 non-finite.*items \[2\]"):
        D.evaluate_isp(None, data, det)
    outputs = [d["image"] for d in _dataset()]
    outputs[2] = _with(outputs[2], NAN, 0, 1, 1)
    with pytest.raises(ValueError, match=r"isp_outputs_or_fn\[2\] \(precomputed ISP output\) has 1 non-finite.*\[2\]"):
        D.cross_detector_eval(outputs, _dataset(), {"d": det})


# --------------------------------------------------------------------------- opt-out


def test_unchecked_skips_and_restores_and_is_per_thread():
    x = _with(_img(1, 8, 8), NAN, 0, 0, 0, 0)
    assert checks_enabled()
    with unchecked():
        assert not checks_enabled()
        with unchecked():
            pass
        assert not checks_enabled()
        assert torch.isnan(apply("exposure", x, torch.zeros(1, 1))).sum() == 1
        other = []
        t = threading.Thread(target=lambda: other.append(checks_enabled()))
        t.start()
        t.join()
        assert other == [True]  # another thread still checks
    assert checks_enabled()
    with pytest.raises(KeyError), unchecked():
        raise KeyError("inside")
    assert checks_enabled()  # restored after an exception too
    with pytest.raises(ValueError):
        apply("exposure", x, torch.zeros(1, 1))


# --------------------------------------------------------------------------- finite inputs unchanged


def _outputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 20, 18, generator=g)
    out = {}
    for name in MODULE_NAMES:
        p = squash(name, torch.randn(3, n_params(name), generator=g))
        out[name] = apply(name, x, p)
        out[name + "/code"] = apply(name, x, p, variant="code", clamp=False)
    out["stage"] = apply_stage(x, torch.tensor([0, 6, 4]), torch.randn(3, MAX_PARAMS, generator=g))
    out["pipeline"] = apply_pipeline(x, torch.tensor([[0, 3], [9, -1], [7, 8]]), torch.randn(3, 2, MAX_PARAMS, generator=g))
    a = torch.rand(3, 9, generator=g) * 2 - 1
    out["finish"] = finishing.finish(x, a)
    out["finish_np"] = torch.from_numpy(finishing_np.finish(x[0].permute(1, 2, 0).contiguous().numpy(), a[0].numpy()))
    out["default_isp"] = default_isp(x * 0.2)
    out["psnr"], out["ssim"] = FM.psnr(out["finish"], x), FM.ssim(out["finish"], x)
    return out


def test_finite_inputs_bit_identical_with_check_skipped():
    checked = _outputs()
    with unchecked():
        skipped = _outputs()
    assert checked.keys() == skipped.keys()
    for key in checked:
        assert torch.equal(checked[key], skipped[key]), key
