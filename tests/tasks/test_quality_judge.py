"""IRPO's expert reward: NIQE (fits, features, scores), the NIQE judge, the VLM judge's refusals."""

from __future__ import annotations

import importlib.util
import json
import math

import cv2
import numpy as np
import pytest
import torch

from ispbench.data.photos import load_photo, photo_names, random_crop
from ispbench.ops.color import luminance_np
from ispbench.tasks import quality_judge as qj


def _ggd_sample(rng, alpha, scale, n):
    """Zero-mean GGD samples: |x| = scale * G^(1/alpha), G ~ Gamma(1/alpha), random sign."""
    mag = scale * rng.gamma(1.0 / alpha, 1.0, n) ** (1.0 / alpha)
    return mag * rng.choice([-1.0, 1.0], n)


def _crops(split, n, seed, size=128):
    rng = np.random.default_rng(seed)
    images = [load_photo(name) for name in photo_names(split)]
    return [random_crop(images[i % len(images)], size, rng, min_scale=0.5) for i in range(n)]


def _batch(crops):
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def fitted():
    """A model fitted on 48 train-photo crops (128 px, patch 32) and the clean, noisy, blurred crops."""
    crops = _crops("train", 48, 0)
    model = qj.fit_niqe(crops, patch_size=32, sharpness_fraction=0.75)
    clean = _batch(crops[:12])
    g = torch.Generator().manual_seed(0)
    noisy = (clean + 50 / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    blurred = _batch([cv2.GaussianBlur(c, (0, 0), 3.0) for c in crops[:12]])
    return model, clean, noisy, blurred


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.6, 3.0])
def test_ggd_fit_recovers_shape_and_variance(alpha):
    rng = np.random.default_rng(1)
    x = _ggd_sample(rng, alpha, 1.7, 400_000)
    shape, var = qj.ggd_fit(x)
    assert float(shape) == pytest.approx(alpha, rel=0.05)
    assert float(var) == pytest.approx(float(np.mean(x * x)))
    # the named cases: Gaussian -> 2, Laplacian -> 1
    assert float(qj.ggd_fit(rng.standard_normal(400_000))[0]) == pytest.approx(2.0, rel=0.03)
    assert float(qj.ggd_fit(rng.laplace(size=400_000))[0]) == pytest.approx(1.0, rel=0.03)


def test_aggd_fit_recovers_asymmetric_distribution():
    rng = np.random.default_rng(2)
    alpha, b_l, b_r, n = 1.5, 1.0, 2.0, 400_000
    left = rng.random(n) < b_l / (b_l + b_r)  # AGGD: P(x < 0) = b_l / (b_l + b_r)
    mag = rng.gamma(1 / alpha, 1.0, n) ** (1 / alpha)
    x = np.where(left, -b_l * mag, b_r * mag)
    shape, mean, var_l, var_r = qj.aggd_fit(x)
    g = math.gamma
    assert float(shape) == pytest.approx(alpha, rel=0.05)
    assert float(var_l) == pytest.approx(b_l**2 * g(3 / alpha) / g(1 / alpha), rel=0.03)
    assert float(var_r) == pytest.approx(b_r**2 * g(3 / alpha) / g(1 / alpha), rel=0.03)
    assert float(mean) == pytest.approx((b_r - b_l) * g(2 / alpha) / g(1 / alpha), rel=0.05)
    # symmetric Laplacian: shape 1, mean 0
    s, m, _, _ = qj.aggd_fit(rng.laplace(size=n))
    assert float(s) == pytest.approx(1.0, rel=0.05) and abs(float(m)) < 0.02


def test_features_shape_flat_patches_and_shared_grid():
    rng = np.random.default_rng(3)
    gray = rng.uniform(0, 255, (64, 128))
    gray[:, :40] = 100.0  # the first patch column is flat (the 7x7 window reaches 3 px): its rows are NaN
    f = qj.niqe_features(gray, 32)
    assert f.shape == (8, 36)
    flat = ~np.isfinite(f).all(1)
    assert flat.tolist() == [True, False, False, False, True, False, False, False]
    # columns 18-35 are the 2x area-downsampled image's features on the same grid (patch 16)
    half = cv2.resize(gray, (64, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(f[~flat, 18:], qj.niqe_features(half, 16)[~flat, :18], rtol=1e-10)


def test_niqe_is_the_distance_formula_and_zero_on_its_own_image():
    photo = load_photo("astronaut")[:256, :256]
    model = qj.fit_niqe([photo], patch_size=32, sharpness_fraction=None)  # all 64 patches
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    assert model.n_patches == 64
    assert qj.niqe(x, model).item() == pytest.approx(0.0, abs=1e-3)
    other = load_photo("rocket")[:128, :160]
    feats = qj.niqe_features(luminance_np(other.astype(np.float64)) * 255, 32)
    d = model.mean - feats.mean(0)
    s = (model.cov + np.cov(feats, rowvar=False)) / 2
    expected = math.sqrt(d @ np.linalg.pinv(s) @ d)
    got = qj.niqe(torch.from_numpy(other).permute(2, 0, 1), model).item()
    assert got == pytest.approx(expected, rel=1e-4) and got > 1.0


def test_fit_keeps_only_sharp_patches():
    photos = [load_photo(name)[:256, :256] for name in ("astronaut", "rocket", "china", "zidane")]
    expected = 0
    for photo in photos:  # sharpness = mean local sigma per 32 x 32 patch, kept above 0.5 of the image's max
        _, sigma = qj.mscn(luminance_np(photo.astype(np.float64)) * 255)
        sharp = sigma.reshape(8, 32, 8, 32).mean(axis=(1, 3))
        expected += int((sharp > 0.5 * sharp.max()).sum())
    sharp_model = qj.fit_niqe(photos, patch_size=32, sharpness_fraction=0.5)
    all_model = qj.fit_niqe(photos, patch_size=32, sharpness_fraction=None)
    assert sharp_model.n_patches == expected < all_model.n_patches == 4 * 64


def test_niqe_ranks_clean_below_noise_and_blur(fitted):
    model, clean, noisy, blurred = fitted
    q_clean, q_noisy, q_blur = qj.niqe(clean, model), qj.niqe(noisy, model), qj.niqe(blurred, model)
    assert q_clean.shape == (12,) and q_clean.dtype == torch.float32
    assert bool((q_clean < q_noisy).all()), (q_clean, q_noisy)
    assert bool((q_clean < q_blur).all()), (q_clean, q_blur)


def test_niqe_refuses_bad_input(fitted):
    model = fitted[0]
    with pytest.raises(ValueError, match=r"60x60 px.*patch_size 32"):
        qj.niqe(torch.rand(1, 3, 60, 60), model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        qj.niqe(torch.rand(1, 3, 64, 64) * 2, model)
    with pytest.raises(ValueError, match="non-finite"):
        qj.niqe(torch.full((1, 3, 64, 64), math.nan), model)
    with pytest.raises(ValueError, match="0 of 4 patches"):
        qj.niqe(torch.full((1, 3, 64, 64), 0.5), model)  # flat: no score, no default
    with pytest.raises(ValueError, match="even integer"):
        qj.niqe_features(np.zeros((64, 64)), 15)
    with pytest.raises(ValueError, match="more than 36"):
        qj.fit_niqe([np.random.default_rng(0).random((64, 64, 3))], patch_size=32)


def test_model_round_trips(fitted, tmp_path):
    model, clean = fitted[0], fitted[1][:2]
    again = qj.NIQEModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(again.mean, model.mean)
    np.testing.assert_array_equal(again.cov, model.cov)
    assert (again.patch_size, again.n_patches, again.sharpness_fraction) == (32, model.n_patches, 0.75)
    torch.save(model.to_dict(), tmp_path / "niqe.pt")
    loaded = qj.NIQEModel.from_dict(torch.load(tmp_path / "niqe.pt", weights_only=True))
    assert torch.equal(qj.niqe(clean, loaded), qj.niqe(clean, model))
    bad = model.to_dict() | {"mean": [0.0] * 35}
    with pytest.raises(ValueError, match=r"mean must have shape \(36,\)"):
        qj.NIQEModel.from_dict(bad)


def test_judge_maps_good_to_5_bad_to_1_and_clamps(fitted):
    model, clean, noisy, _ = fitted
    judge = qj.NIQEJudge(model, good=4.0, bad=8.0)
    s = judge.score_from_niqe(torch.tensor([4.0, 8.0, 6.0, 1.0, 20.0]))
    assert s.tolist() == [5.0, 1.0, 3.0, 5.0, 1.0]
    q = qj.niqe(clean[:2], model)
    judge = qj.NIQEJudge(model, good=float(q[0]), bad=float(q[0]) + 2.0)
    out = judge(None, clean[:2], None)
    assert out[0].item() == pytest.approx(5.0)
    assert out[1].item() == pytest.approx(max(1.0, min(5.0, 5 - 2 * (q[1].item() - q[0].item()))), abs=1e-5)
    # no-reference: degraded and clean are ignored
    assert torch.equal(judge(noisy[:2], clean[:2], noisy[:2]), out)
    assert isinstance(judge, qj.ExpertJudge) and "stand-in" in judge.name
    with pytest.raises(ValueError, match="must exceed"):
        qj.NIQEJudge(model, good=5.0, bad=5.0)


def test_calibrate_uses_medians_and_refuses_when_degradation_does_not_raise_niqe(fitted):
    model, clean, noisy, _ = fitted
    judge = qj.NIQEJudge.calibrate(clean, [noisy[:6], noisy[6:]], model)
    assert judge.good == pytest.approx(qj.niqe(clean, model).median().item())
    assert judge.bad == pytest.approx(qj.niqe(noisy, model).median().item())
    scores = judge(clean, noisy, clean)
    assert bool((scores >= 1).all() and (scores <= 5).all())
    assert judge(None, clean, None).median() > scores.median()
    again = qj.NIQEJudge.from_dict(json.loads(json.dumps(judge.to_dict())))
    assert (again.good, again.bad) == (judge.good, judge.bad)
    with pytest.raises(ValueError, match="do not raise NIQE"):
        qj.NIQEJudge.calibrate(noisy, clean, model)


class _Fixed:
    name = "fixed-judge"

    def __init__(self, values):
        self.values = torch.tensor(values)

    def __call__(self, degraded, restored, clean):
        return self.values


def test_expert_reward_scales_and_validates(fitted):
    x = torch.rand(3, 3, 8, 8)
    assert qj.expert_reward(_Fixed([1.0, 3.0, 5.0]), x, x, x).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"fixed-judge.*outside \[1, 5\]"):
        qj.expert_reward(_Fixed([1.0, 3.0, 5.5]), x, x, x)
    with pytest.raises(ValueError, match=r"fixed-judge.*outside \[1, 5\]"):
        qj.expert_reward(_Fixed([0.0, 3.0, 5.0]), x, x, x)
    with pytest.raises(ValueError, match="fixed-judge.*non-finite"):
        qj.expert_reward(_Fixed([1.0, math.nan, 5.0]), x, x, x)
    with pytest.raises(ValueError, match=r"fixed-judge.*shape \(2,\)"):
        qj.expert_reward(_Fixed([1.0, 2.0]), x, x, x)
    model, clean, noisy, _ = fitted
    r = qj.expert_reward(qj.NIQEJudge(model, 3.0, 9.0), noisy, clean, clean)
    assert r.shape == (12,) and bool((r >= 0).all() and (r <= 1).all())


def test_parse_score():
    assert qj.parse_score("Score: 4/5") == 4
    assert qj.parse_score("I would rate the restoration 3.") == 3
    assert qj.parse_score("5") == 5
    for reply in ("10 out of 10", "3.5", "zero", "0"):
        with pytest.raises(ValueError, match="no integer score"):
            qj.parse_score(reply)
    assert qj.PROMPT.startswith("You are an image-restoration expert.") and "1 to 5" in qj.PROMPT


def test_vlm_judge_refuses_clearly(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(qj.JudgeUnavailable, match="no-such-model") as err:
        qj.VLMJudge(str(missing))
    assert "never downloads" in str(err.value)
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(qj.JudgeUnavailable) as err:
        qj.VLMJudge(str(empty))
    if importlib.util.find_spec("transformers") is None:
        assert 'pip install "ispbench[vlm]"' in str(err.value) and "local folder" in str(err.value)
    else:
        assert "empty-model" in str(err.value)
