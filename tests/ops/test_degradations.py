"""Synthetic degradations: shapes and ranges, determinism, hand-computed values, gradchecks, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from ispbench.ops import degradations as D

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image(*shape, seed: int = 0, dtype=torch.float32, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=gen(seed), dtype=dtype)


def delta_kernel(size: int = 3, at: tuple[int, int] | None = None) -> torch.Tensor:
    k = torch.zeros(size, size)
    k[at if at is not None else (size // 2, size // 2)] = 1.0
    return k


# every random degradation as img, generator -> img
RANDOM = {
    "gaussian_noise": lambda x, g: D.gaussian_noise(x, 25.0, g),
    "signal_dependent_noise": lambda x, g: D.signal_dependent_noise(x, 0.004, 0.01, g),
    "rain_streaks": lambda x, g: D.rain_streaks(x, g, density=0.01, length=10.0, angle_deg=15.0),
}
# and the deterministic ones
DETERMINISTIC = {
    "haze": lambda x: D.haze(x, torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), 0.6), 0.9),
    "blur": lambda x: D.blur(x, D.motion_blur_kernel(7, gen(3))),
    "low_light": lambda x: D.low_light(x, 0.2, 1.5),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_degradations_keep_shape_range_and_are_seeded(name):
    fn = RANDOM[name]
    x = image(2, 3, 24, 20)
    y = fn(x, gen(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert torch.equal(y, fn(x, gen(1)))  # equal generators, equal output
    assert not torch.equal(y, fn(x, gen(2)))  # another seed, another draw
    assert not torch.equal(y, x)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_degradations_keep_shape_and_range(name):
    x = image(2, 3, 16, 16, dtype=F64)
    y = DETERMINISTIC[name](x)
    assert y.shape == x.shape and y.dtype == F64
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert not torch.allclose(y, x)


@pytest.mark.parametrize("sigma", [15.0, 25.0, 50.0])
def test_gaussian_noise_std_matches_sigma_on_mid_grey(sigma):
    x = torch.full((1, 3, 128, 128), 0.5)
    noise = D.gaussian_noise(x, sigma, gen(0)) - x
    assert abs(float(noise.mean())) < 0.01
    assert float(noise.std()) == pytest.approx(sigma / 255.0, rel=0.1)


def test_gaussian_noise_per_image_sigma_and_zero_sigma():
    x = torch.full((2, 3, 64, 64), 0.5)
    y = D.gaussian_noise(x, torch.tensor([0.0, 25.0]).view(2, 1, 1, 1), gen(0))
    assert torch.equal(y[0], x[0])
    assert float((y[1] - x[1]).std()) == pytest.approx(25.0 / 255.0, rel=0.1)


def test_signal_dependent_noise_variance_is_shot_times_signal_plus_read_squared():
    shot, read = 0.004, 0.01
    for level in (0.1, 0.6):
        x = torch.full((1, 3, 128, 128), level, dtype=F64)
        noise = D.signal_dependent_noise(x, shot, read, gen(0)) - x
        assert float(noise.std()) == pytest.approx(math.sqrt(shot * level + read**2), rel=0.05)


def test_signal_dependent_noise_per_channel_terms():
    x = torch.full((1, 3, 96, 96), 0.5, dtype=F64)
    shot = torch.tensor([0.0, 0.002, 0.008], dtype=F64).view(1, 3, 1, 1)
    noise = D.signal_dependent_noise(x, shot, 0.0, gen(0)) - x
    stds = noise.std(dim=(0, 2, 3))
    assert float(stds[0]) == 0.0
    assert float(stds[2] / stds[1]) == pytest.approx(2.0, rel=0.05)


def test_rain_only_brightens_and_denser_longer_rain_covers_more():
    x = image(1, 3, 64, 64, high=0.5)
    light = D.rain_streaks(x, gen(0), density=0.002, length=8.0)
    heavy = D.rain_streaks(x, gen(0), density=0.01, length=20.0)
    assert bool((light >= x - 1e-6).all()) and bool((heavy >= x - 1e-6).all())  # screen blending
    assert float((heavy - x).mean()) > 3 * float((light - x).mean()) > 0.0
    assert torch.equal(D.rain_streaks(x, gen(0), density=0.01, intensity=0.0), x)


def test_rain_streaks_follow_the_angle():
    # vertical streaks: rows of the rain layer correlate along y, not along x
    x = torch.zeros(1, 3, 64, 64)
    rain = D.rain_streaks(x, gen(0), density=0.003, length=15.0, angle_deg=0.0, angle_jitter_deg=0.0)[0, 0]
    along = float((rain[1:] * rain[:-1]).mean())
    across = float((rain[:, 1:] * rain[:, :-1]).mean())
    assert along > 3 * across


def test_haze_identity_and_pure_airlight_and_hand_value():
    x = image(2, 3, 8, 8, dtype=F64)
    assert torch.equal(D.haze(x, 1.0, 0.8), x)
    airlight = torch.tensor([0.9, 0.8, 0.7], dtype=F64).view(1, 3, 1, 1).expand(2, 3, 1, 1)
    fog = D.haze(x, torch.zeros(2, 1, 8, 8, dtype=F64), airlight)
    assert torch.allclose(fog, airlight.expand_as(x))
    half = D.haze(x, 0.5, 0.8)
    assert torch.allclose(half, 0.5 * x + 0.4)


def test_depth_like_transmission_shape_range_depth_order_and_beta():
    t = D.depth_like_transmission(32, 40, 1.0, gen(0))
    assert t.shape == (1, 1, 32, 40)
    assert 0.0 < float(t.min()) and float(t.max()) <= 1.0
    assert float(t[..., :8, :].mean()) < float(t[..., -8:, :].mean())  # the top is far: less light through
    thick = D.depth_like_transmission(32, 40, 2.0, gen(0))
    assert bool((thick <= t + 1e-7).all()) and float(thick.mean()) < float(t.mean())
    assert torch.equal(D.depth_like_transmission(32, 40, 0.0, gen(0)), torch.ones(1, 1, 32, 40))
    assert torch.equal(t, D.depth_like_transmission(32, 40, 1.0, gen(0)))
    assert not torch.equal(t, D.depth_like_transmission(32, 40, 1.0, gen(1)))


def test_nonuniform_transmission_is_patchier():
    def spread(nonuniform: bool) -> float:
        logs = [D.depth_like_transmission(48, 48, 1.0, gen(s), nonuniform=nonuniform).log().std() for s in range(6)]
        return float(torch.stack(logs).mean())

    assert spread(True) > 1.5 * spread(False)


@pytest.mark.parametrize("kind", D.KERNEL_KINDS)
@pytest.mark.parametrize("size", [3, 9, 21])
def test_kernels_are_normalised_non_negative_and_seeded(kind, size):
    k = D.motion_blur_kernel(size, gen(size), kind=kind)
    assert k.shape == (size, size) and k.dtype == torch.float32
    assert float(k.min()) >= 0.0
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(k, D.motion_blur_kernel(size, gen(size), kind=kind))
    if size > 3:
        assert not torch.equal(k, D.motion_blur_kernel(size, gen(size + 1), kind=kind))
        assert float(k.max()) < 0.5  # spread over many pixels, not a delta


def test_motion_kernel_is_a_thin_path_and_defocus_a_round_disk():
    motion = D.motion_blur_kernel(15, gen(0))
    disk = D.motion_blur_kernel(15, gen(0), kind="defocus")
    # a shake path covers few pixels, a disk of the same kernel size many
    assert int((motion > 1e-4).sum()) < int((disk > 1e-4).sum())
    assert torch.allclose(disk, disk.flip(0)) and torch.allclose(disk, disk.T, atol=1e-7)


def test_blur_delta_is_identity_and_constant_mean_is_kept():
    x = image(2, 3, 16, 16)
    assert torch.equal(D.blur(x, delta_kernel(5)), x)
    grey = torch.full((1, 3, 16, 16), 0.37)
    for kind in D.KERNEL_KINDS:
        out = D.blur(grey, D.motion_blur_kernel(9, gen(1), kind=kind))
        assert torch.allclose(out, grey, atol=1e-6)


def test_blur_is_a_true_convolution_and_takes_one_kernel_per_image():
    x = image(2, 3, 10, 10)
    right = delta_kernel(3, at=(1, 2))  # weight right of the centre: content moves one pixel right
    y = D.blur(x, right)
    assert torch.equal(y[..., 1:], x[..., :-1])
    per_image = torch.stack([delta_kernel(3), right])
    z = D.blur(x, per_image)
    assert torch.equal(z[0], x[0]) and torch.equal(z[1], y[1])


def test_low_light_hand_values_and_colour_cast():
    x = torch.full((1, 3, 4, 4), 0.5, dtype=F64)
    assert torch.allclose(D.low_light(x, 0.2, 2.0), torch.full_like(x, 0.05))
    assert torch.equal(D.low_light(x, 1.0, 1.0), x)
    cast = torch.tensor([0.3, 0.2, 0.1], dtype=F64).view(1, 3, 1, 1)
    out = D.low_light(x, cast, 1.0)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.15, 0.1, 0.05], dtype=F64))


def test_gradcheck_haze():
    x = image(1, 3, 8, 8, dtype=F64, low=0.1, high=0.9).requires_grad_()
    t = image(1, 1, 8, 8, seed=1, dtype=F64, low=0.2, high=0.8).requires_grad_()
    a = torch.tensor([0.8, 0.7, 0.9], dtype=F64).view(1, 3, 1, 1).requires_grad_()
    assert torch.autograd.gradcheck(D.haze, (x, t, a))


def test_gradcheck_blur():
    x = image(1, 3, 8, 8, dtype=F64, low=0.1, high=0.9).requires_grad_()
    k = D.motion_blur_kernel(3, gen(0), kind="gaussian").to(F64).requires_grad_()
    assert torch.autograd.gradcheck(D.blur, (x, k))


def test_gradcheck_low_light():
    x = image(1, 3, 8, 8, dtype=F64, low=0.1, high=0.9).requires_grad_()
    exposure = torch.tensor([0.3, 0.25, 0.2], dtype=F64).view(1, 3, 1, 1).requires_grad_()
    gamma = torch.tensor(1.4, dtype=F64).view(1, 1, 1, 1).requires_grad_()
    assert torch.autograd.gradcheck(D.low_light, (x, exposure, gamma))


def test_low_light_gradient_is_finite_at_black():
    x = torch.zeros(1, 3, 4, 4, dtype=F64, requires_grad=True)
    gamma = torch.tensor(1.5, dtype=F64).view(1, 1, 1, 1).requires_grad_()
    D.low_light(x, 0.2, gamma).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(gamma.grad).all())


GOOD = torch.full((1, 3, 8, 8), 0.5)
REFUSALS = [
    (lambda: D.gaussian_noise(GOOD, -1.0, gen()), ValueError, "sigma"),
    (lambda: D.gaussian_noise(torch.rand(1, 1, 8, 8), 15.0, gen()), ValueError, "img must have shape"),
    (lambda: D.gaussian_noise(GOOD * 3.0, 15.0, gen()), ValueError, r"img must have values in \[0, 1\]"),
    (lambda: D.gaussian_noise(GOOD, 15.0, 0), TypeError, "generator"),
    (lambda: D.signal_dependent_noise(GOOD, -0.1, 0.0, gen()), ValueError, "shot"),
    (lambda: D.signal_dependent_noise(GOOD, 0.1, torch.ones(1, 2, 1, 1), gen()), ValueError, "read"),
    (lambda: D.rain_streaks(GOOD, gen(), density=0.0), ValueError, "density"),
    (lambda: D.rain_streaks(GOOD, gen(), length=0.5), ValueError, "length"),
    (lambda: D.rain_streaks(GOOD, gen(), intensity=1.5), ValueError, "intensity"),
    (lambda: D.haze(GOOD, 1.5, 0.8), ValueError, "transmission"),
    (lambda: D.haze(GOOD, torch.ones(1, 1, 4, 4), 0.8), ValueError, "transmission"),
    (lambda: D.haze(GOOD, 0.5, -0.1), ValueError, "airlight"),
    (lambda: D.depth_like_transmission(8, 8, -1.0, gen()), ValueError, "beta"),
    (lambda: D.depth_like_transmission(0, 8, 1.0, gen()), ValueError, "height"),
    (lambda: D.motion_blur_kernel(4, gen()), ValueError, "size must be odd"),
    (lambda: D.motion_blur_kernel(1, gen()), ValueError, "size must be >= 3"),
    (lambda: D.motion_blur_kernel(5, gen(), kind="box"), ValueError, "kind must be one of"),
    (lambda: D.blur(GOOD, torch.ones(3, 3)), ValueError, "kernel must sum to 1"),
    (lambda: D.blur(GOOD, torch.ones(4, 4) / 16), ValueError, "kernel must be"),
    (lambda: D.blur(GOOD, delta_kernel(3) * 2 - torch.full((3, 3), 1 / 9)), ValueError, "kernel must be non-negative"),
    (lambda: D.blur(GOOD, torch.ones(2, 3, 3) / 9), ValueError, "B = 1"),
    (lambda: D.blur(GOOD, torch.ones(17, 17) / 289), ValueError, "too small"),
    (lambda: D.low_light(GOOD, 0.0, 1.5), ValueError, r"exposure must be in \(0, 1\]"),
    (lambda: D.low_light(GOOD, 1.5, 1.5), ValueError, "exposure"),
    (lambda: D.low_light(GOOD, 0.3, 0.5), ValueError, "gamma"),
    (lambda: D.low_light(GOOD, "bright", 1.5), TypeError, "exposure"),
]


@pytest.mark.parametrize("call, error, message", REFUSALS)
def test_bad_inputs_are_refused_naming_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_non_finite_image_is_refused():
    x = GOOD.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="img has 1 non-finite value"):
        D.low_light(x, 0.5, 1.2)
