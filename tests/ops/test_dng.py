"""DNG writing (tifffile) read back by rawpy/LibRaw, and the linear raw reader."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy
import torch
import torch.nn.functional as F

from ispbench.ops import raw as R
from ispbench.ops.dng import RAWPY_SETTINGS, read_raw_linear, write_dng

BLACK, WHITE = 512, 16383


def linear_scene(h=48, w=64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 5, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).clamp(0.05, 0.8)


def to_counts(bayer01: np.ndarray, black=BLACK, white=WHITE) -> np.ndarray:
    return np.round(black + bayer01 * (white - black)).astype(np.uint16)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_rawpy_reads_back_exact_mosaic(tmp_path, pattern):
    counts = np.random.default_rng(0).integers(BLACK, WHITE + 1, (32, 48)).astype(np.uint16)
    path = write_dng(tmp_path / f"{pattern}.dng", counts, pattern=pattern, black_level=BLACK, white_level=WHITE,
                     iso=800, exposure_time=1 / 60, as_shot_neutral=(0.5, 1.0, 0.8), camera="Test Cam")
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left
    with rawpy.imread(str(path)) as raw:
        assert np.array_equal(raw.raw_image, counts)
        desc = raw.color_desc.decode()
        assert "".join(desc[i] for i in raw.raw_pattern.ravel()) == pattern
        assert list(raw.black_level_per_channel) == [BLACK] * 4
        assert raw.white_level == WHITE
        assert raw.camera_whitebalance[:3] == pytest.approx([2.0, 1.0, 1.25], rel=1e-4)
    _, meta = read_raw_linear(path, half_size=True)
    assert meta["pattern"] == pattern and meta["white_level"] == WHITE and meta["black_level"] == [BLACK] * 4
    assert meta["iso"] == 800 and meta["exposure_time"] == pytest.approx(1 / 60, rel=1e-4)
    assert meta["camera"] == "Test Cam"


def test_per_channel_black_levels(tmp_path):
    counts = np.full((24, 24), 3000, np.uint16)
    path = write_dng(tmp_path / "b.dng", counts, black_level=(100, 200, 300, 400), white_level=4095)
    with rawpy.imread(str(path)) as raw:
        # LibRaw reports per colour R, G, B, G2; RGGB block order is R, G, G2, B
        assert list(raw.black_level_per_channel) == [100, 200, 400, 300]


def test_linear_output_matches_scene(tmp_path):
    scene = linear_scene()  # linear sRGB, white-balanced
    counts = to_counts(R.mosaic(scene, "RGGB")[0, 0].numpy())
    path = write_dng(tmp_path / "s.dng", counts, pattern="RGGB", black_level=BLACK, white_level=WHITE)
    want = scene[0].permute(1, 2, 0).numpy()
    for algo in ("LINEAR", "AHD"):
        rgb, meta = read_raw_linear(path, demosaic_algorithm=algo)
        assert rgb.dtype == np.float32 and rgb.shape == (48, 64, 3)
        assert rgb.min() >= 0 and rgb.max() <= 1
        err = np.abs(rgb - want)
        assert err.mean() < 5e-3, (algo, err.mean())  # demosaicing differs at edges only
        assert meta["rawpy_settings"]["demosaic_algorithm"] == algo
    # camera white balance from AsShotNeutral undoes a colour cast; "none" keeps it
    gains = np.array([2.0, 1.0, 1.25])
    cast = scene / torch.tensor(gains).view(1, 3, 1, 1)
    counts = to_counts(R.mosaic(cast, "RGGB")[0, 0].numpy())
    path = write_dng(tmp_path / "wb.dng", counts, black_level=BLACK, white_level=WHITE, as_shot_neutral=1 / gains)
    rgb, _ = read_raw_linear(path, demosaic_algorithm="LINEAR", white_balance="camera")
    assert np.abs(rgb - want).mean() < 5e-3
    rgb, _ = read_raw_linear(path, demosaic_algorithm="LINEAR", white_balance="none")
    ratio = np.median(rgb[4:-4, 4:-4] / want[4:-4, 4:-4], axis=(0, 1))
    np.testing.assert_allclose(ratio, 1 / gains, rtol=2e-3)
    rgb, _ = read_raw_linear(path, demosaic_algorithm="LINEAR", white_balance=tuple(gains), output_color="raw")
    assert np.abs(rgb - want).mean() < 5e-3


def test_settings_are_documented():
    assert RAWPY_SETTINGS["gamma"] == (1, 1)
    assert RAWPY_SETTINGS["no_auto_bright"] is True and RAWPY_SETTINGS["output_bps"] == 16
    assert RAWPY_SETTINGS["adjust_maximum_thr"] == 0.0


def test_corrupt_and_missing_files_name_the_path(tmp_path):
    bad = tmp_path / "corrupt.dng"
    bad.write_bytes(b"II*\x00" + b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="corrupt.dng"):
        read_raw_linear(bad)
    with pytest.raises(FileNotFoundError, match="missing.dng"):
        read_raw_linear(tmp_path / "missing.dng")


def test_bad_arguments_refused(tmp_path):
    counts = np.zeros((32, 32), np.uint16)
    with pytest.raises(ValueError, match="uint16"):
        write_dng(tmp_path / "a.dng", counts.astype(np.float32))
    with pytest.raises(ValueError, match="at least 22"):
        write_dng(tmp_path / "a.dng", np.zeros((16, 16), np.uint16))
    with pytest.raises(ValueError, match="even"):
        write_dng(tmp_path / "a.dng", np.zeros((33, 32), np.uint16))
    with pytest.raises(ValueError, match="pattern"):
        write_dng(tmp_path / "a.dng", counts, pattern="RGBG")
    with pytest.raises(ValueError, match="white_level"):
        write_dng(tmp_path / "a.dng", counts, black_level=5000, white_level=4095)
    with pytest.raises(ValueError, match="color_matrix"):
        write_dng(tmp_path / "a.dng", counts, color_matrix=np.eye(4))
    assert not (tmp_path / "a.dng").exists()
    path = write_dng(tmp_path / "ok.dng", counts + 100, white_level=4095)
    with pytest.raises(ValueError, match="white_balance"):
        read_raw_linear(path, white_balance="auto")
    with pytest.raises(ValueError, match="output_color"):
        read_raw_linear(path, output_color="adobe")
