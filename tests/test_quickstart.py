"""ispbench.quickstart: image files, the test DNG, and the README's / intro's quick-start snippets as run."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from ispbench import quickstart as qs
from ispbench.ops.dng import read_raw_linear
from ispbench.ops.raw import unprocess

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- quickstart-test -->"
SIZE = 128


def _photo(path: Path) -> np.ndarray:
    rgb = np.ascontiguousarray(data.astronaut()[::4, ::4])  # (128, 128, 3) uint8
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def snippets(path: Path) -> list[str]:
    """The fenced ```python blocks of ``path`` right after a ``<!-- quickstart-test -->`` line."""
    pattern = re.escape(MARK) + r"\s*\n```python\n(.*?)\n```"
    return re.findall(pattern, path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", ["README.md", "book/intro.md"])
def test_documented_snippets_run_with_the_documented_shapes(doc, tmp_path, monkeypatch):
    blocks = snippets(ROOT / doc)
    assert len(blocks) >= 2, f"{doc}: expected the quick-start snippets marked {MARK}"
    _photo(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, f"{doc} snippet", "exec"), ns)  # noqa: S102 - the documented code
    assert ns["photo"].shape == (3, SIZE, SIZE)
    traj, result = ns["traj"], ns["result"]
    assert traj.best.shape == traj.final.shape == (1, 3, SIZE, SIZE)
    assert traj.actions.shape == (10, 1, 9) and traj.psnrs.shape == (11, 1)
    assert traj.best_psnr.shape == (1,) and 1 <= int(traj.best_step) <= 10
    assert qs.load_image(tmp_path / "tuned.png").shape == (3, SIZE, SIZE)
    assert result.image.shape == (3, SIZE, SIZE) and 0 <= result.image.min() and result.image.max() <= 1
    assert result.pipeline and all({"stage", "module", "params"} <= set(s) for s in result.pipeline)
    det = result.detections
    n = len(det)
    assert det.boxes.shape == (n, 4) and det.scores.shape == (n,) and len(det.names) == n
    assert list(tmp_path.glob("*.dng")), "the snippets write a test DNG"
    assert "torch.Size" in out.getvalue()


def test_load_image_8_and_16_bit_png_tiff_jpeg(tmp_path):
    rgb = _photo(tmp_path / "p8.png")
    x = qs.load_image(tmp_path / "p8.png")
    assert x.dtype == torch.float32 and x.shape == (3, SIZE, SIZE)
    assert torch.equal(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    rgb16 = (rgb.astype(np.uint16) * 257 + 3)
    for name in ("p16.png", "p16.tif"):
        assert cv2.imwrite(str(tmp_path / name), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
        y = qs.load_image(tmp_path / name)
        assert torch.allclose(y, torch.from_numpy(rgb16).permute(2, 0, 1).float() / 65535)
    assert cv2.imwrite(str(tmp_path / "p.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert (qs.load_image(tmp_path / "p.jpg") - x).abs().mean() < 0.03
    assert cv2.imwrite(str(tmp_path / "grey.png"), rgb[:, :, 0])
    g = qs.load_image(tmp_path / "grey.png")
    assert torch.equal(g[0], g[2]) and torch.equal(g[0], x[0])


def test_load_image_refuses_missing_corrupt_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        qs.load_image(tmp_path / "nope.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        qs.load_image(bad)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        qs.load_image(tmp_path / "empty.jpg")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="notes.txt"):
        qs.load_image(tmp_path / "notes.txt")


def test_save_image_round_trips_8_and_16_bit(tmp_path):
    x = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(0))
    qs.save_image(x, tmp_path / "a.png")
    assert (qs.load_image(tmp_path / "a.png") - x).abs().max() <= 0.5 / 255 + 1e-6
    qs.save_image(x[None], tmp_path / "b.png", bits=16)
    assert (qs.load_image(tmp_path / "b.png") - x).abs().max() <= 0.5 / 65535 + 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary left
    with pytest.raises(ValueError, match="bits"):
        qs.save_image(x, tmp_path / "c.png", bits=12)
    with pytest.raises(ValueError, match=".png"):
        qs.save_image(x, tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="image"):
        qs.save_image(torch.rand(4, 8, 8), tmp_path / "c.png")


def test_write_linear_dng_reads_back_as_the_image(tmp_path):
    lin = (torch.linspace(0.05, 0.9, 48)[None, None, :] * torch.tensor([1.0, 0.7, 0.4])[:, None, None]).expand(3, 32, 48)
    qs.write_linear_dng(tmp_path / "x.dng", lin)
    rgb, meta = read_raw_linear(tmp_path / "x.dng")
    assert rgb.shape == (32, 48, 3) and meta["pattern"] == "RGGB" and meta["white_level"] == 65535
    # default colour matrix (camera = linear sRGB) and neutral (1, 1, 1): the image comes back
    assert np.abs(rgb[4:-4, 4:-4].transpose(2, 0, 1) - lin[:, 4:-4, 4:-4].numpy()).max() < 0.02
    with pytest.raises(ValueError, match="even"):
        qs.write_linear_dng(tmp_path / "odd.dng", torch.rand(3, 31, 48))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        qs.write_linear_dng(tmp_path / "hi.dng", torch.full((3, 32, 32), 1.5))


def test_write_linear_dng_undoes_unprocess_colour(tmp_path):
    srgb = torch.rand(1, 3, 1, 1, generator=torch.Generator().manual_seed(3)).expand(1, 3, 32, 32) * 0.6 + 0.2
    raw, meta = unprocess(srgb, torch.Generator().manual_seed(1), mosaic_output=False)
    qs.write_linear_dng(tmp_path / "u.dng", raw[0], unprocess_metadata=meta)
    rgb, _ = read_raw_linear(tmp_path / "u.dng")
    got = rgb[8:-8, 8:-8].reshape(-1, 3).mean(0)
    want = torch.linalg.solve(meta["rgb2cam"][0], raw[0, :, 0, 0] * meta["gains"][0]).numpy()  # linear sRGB
    # LibRaw normalises the white-balance multipliers (the smallest to 1): colour comes back, brightness up to a gain
    ratio = got / want
    assert np.allclose(ratio, ratio.mean(), rtol=0.03)


def test_tune_photo_and_process_raw_accept_tensors_and_refuse_bad_input(tmp_path):
    photo = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    traj = qs.tune_photo(photo, photo.clamp(0.2, 0.8), steps=3)
    assert traj.actions.shape == (3, 1, 9) and traj.best.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="goal"):
        qs.tune_photo(photo, torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        qs.tune_photo(photo * 3, photo)
    res = qs.process_raw(photo ** 2.2, detect=False)
    assert res.image.shape == (3, 32, 32) and res.detections is None and res.metadata == {}
    with pytest.raises(FileNotFoundError, match="missing.dng"):
        qs.process_raw(tmp_path / "missing.dng")
    with pytest.raises(TypeError, match="path_or_linear"):
        qs.process_raw(np.zeros((3, 32, 32)))
