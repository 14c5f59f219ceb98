"""PSNR / SSIM / LPIPS of the photo-finishing task."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import structural_similarity

from ispbench.tasks import finishing_metrics as fm


def test_psnr_hand_computed():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.full((1, 3, 4, 4), 0.1)  # MSE 0.01 -> 20 dB
    assert fm.psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)
    assert fm.psnr(x, x).item() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="one shape"):
        fm.psnr(x, torch.zeros(1, 3, 4, 5))


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_matches_skimage(noise):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 37, 45, generator=g)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = fm.ssim(x, y)
    for i in range(2):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), gaussian_weights=True,
                                    sigma=1.5, data_range=1.0, channel_axis=-1)
        assert ours[i].item() == pytest.approx(ref, abs=1e-3)
    assert fm.ssim(x, x).allclose(torch.ones(2))


def test_lpips_offline_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert not fm.lpips_available()
    with pytest.raises(fm.LPIPSUnavailable) as err:
        fm.LPIPS()
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    m = fm.all_metrics(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert math.isnan(m["LPIPS"].item())


def test_lpips_proceeds_when_weights_file_present(tmp_path, monkeypatch):
    import lpips

    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / fm.ALEXNET_FILE).write_bytes(b"placeholder")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    built = {}

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            built["net"] = net

        def forward(self, a, b):
            assert a.min() >= -1 and a.max() <= 1  # inputs rescaled to [-1, 1]
            return (a - b).abs().mean((1, 2, 3), keepdim=True)

    monkeypatch.setattr(lpips, "LPIPS", FakeLPIPS)
    assert fm.lpips_available()
    model = fm.LPIPS()
    x = torch.rand(2, 3, 8, 8)
    out = model(x, x)
    assert built["net"] == "alex" and out.shape == (2,) and torch.all(out == 0)
