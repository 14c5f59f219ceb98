"""IRPO's rewards: the general reward's weights, the GMSD stand-in, and each restoration term's direction."""

from __future__ import annotations

import pytest
import torch

from ispbench.ops.degradations import blur, gaussian_noise, haze, motion_blur_kernel, rain_streaks
from ispbench.tasks import restoration_rewards as rr
from ispbench.tasks.finishing_metrics import LPIPSUnavailable, lpips_available
from ispbench.tasks.restoration_eval import evaluate_restoration, per_task_means


def photo_crops(n: int = 2, size: int = 64) -> torch.Tensor:
    from ispbench.data.photos import load_photo

    img = torch.from_numpy(load_photo("chelsea").transpose(2, 0, 1).copy())
    return torch.stack([img[:, 40 + 30 * i:40 + 30 * i + size, 100:100 + size] for i in range(n)])


def test_general_reward_is_one_for_a_perfect_restoration_and_lower_otherwise():
    clean = photo_crops()
    g = torch.Generator().manual_seed(0)
    noisy = gaussian_noise(clean, 25.0, g)
    assert torch.allclose(rr.general_reward(clean, clean, perceptual="gmsd"), torch.ones(2))
    r = rr.general_reward(noisy, clean, perceptual="gmsd")
    assert (r < 0.9).all() and (r > 0.3).all()
    # the weights: PSNR 20 dB -> 0.4 * 0.5; a zero distance
    fake = lambda a, b: torch.zeros(a.shape[0])  # noqa: E731
    expected = 0.4 * (rr.psnr(noisy, clean) / 40).clamp(0, 1) + 0.3 * rr.ssim(noisy, clean).clamp(0, 1) + 0.3
    assert torch.allclose(rr.general_reward(noisy, clean, perceptual=fake), expected)


def test_gmsd_orders_degradations_and_is_zero_for_identical_images():
    clean = photo_crops()
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(rr.gmsd(clean, clean), torch.zeros(2), atol=1e-6)
    mild, strong = gaussian_noise(clean, 10.0, g), gaussian_noise(clean, 50.0, g)
    assert (rr.gmsd(mild, clean) < rr.gmsd(strong, clean)).all()
    with pytest.raises(ValueError, match="pred and target"):
        rr.gmsd(clean[:, :1], clean[:, :1])


def test_lpips_is_never_silently_replaced():
    if lpips_available():
        pytest.skip("the AlexNet weights are present here")
    with pytest.raises(LPIPSUnavailable, match="alexnet"):
        rr.general_reward(photo_crops(1), photo_crops(1), perceptual="lpips")
    with pytest.raises(ValueError, match="perceptual"):
        rr.perceptual_distance("ssim")


@pytest.mark.parametrize("task", rr.TASKS)
def test_each_restoration_term_prefers_the_clean_image_to_its_degradation(task):
    clean = photo_crops()
    g = torch.Generator().manual_seed(1)
    degraded = {
        "denoise": lambda: gaussian_noise(clean, 25.0, g),
        "derain": lambda: rain_streaks(clean, g, density=0.01, length=14.0, angle_deg=10.0),
        "dehaze": lambda: haze(clean, torch.full((1, 1, 1, 1), 0.4), 0.9),
        "deblur": lambda: blur(clean, motion_blur_kernel(11, g)),
        "lowlight": lambda: clean * torch.tensor([0.2, 0.25, 0.4]).view(1, 3, 1, 1),
    }[task]()
    tasks = [task] * 2
    perfect = rr.restoration_reward(clean, clean, tasks)
    worse = rr.restoration_reward(degraded, clean, tasks)
    assert torch.allclose(perfect, torch.ones(2), atol=1e-4), perfect
    assert (worse < perfect - 0.05).all() and (worse >= 0).all(), (task, worse)


def test_restoration_reward_validates_tasks():
    clean = photo_crops()
    with pytest.raises(ValueError, match="one task per image"):
        rr.restoration_reward(clean, clean, ["denoise"])
    with pytest.raises(ValueError, match="unknown"):
        rr.restoration_reward(clean, clean, ["denoise", "desnow"])


def test_evaluate_restoration_rows_and_task_means():
    from dataclasses import dataclass

    @dataclass
    class Two:
        degraded: torch.Tensor
        clean: torch.Tensor
        photo: list
        kind: list
        task: list
        crop: list

        def __len__(self):
            return 2

    clean = photo_crops()
    data = Two(gaussian_noise(clean, 25.0, torch.Generator().manual_seed(0)), clean, ["a", "b"], ["denoise_25", "dehaze"],
               ["denoise", "dehaze"], [0, 0])
    rows = evaluate_restoration(lambda x: x, data, batch_size=1)
    assert list(rows.columns) == ["photo", "kind", "task", "crop", "psnr", "ssim", "input_psnr", "input_ssim"]
    assert rows.psnr.tolist() == pytest.approx(rows.input_psnr.tolist())
    perfect = evaluate_restoration(lambda x: clean[: len(x)] if len(x) == 2 else x, data)
    assert (perfect.psnr > 90).all()
    means = per_task_means(rows)
    assert list(means.index) == ["denoise", "dehaze", "average"]
    assert means.loc["average", "psnr"] == pytest.approx(rows.psnr.mean())
    with pytest.raises(ValueError, match="returned"):
        evaluate_restoration(lambda x: x[:, :, :8], data)
