"""``evaluation.load_eval_pairs``: the notebooks' (input, goal) pairs from a prepared FiveK folder
(built here from tiny DNG + Expert C TIFF fixtures via ``ispbench data prepare``'s code) or embedded photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ispbench.chapters.rlpixtuner import load_eval_pairs
from ispbench.data.prepared import DatasetMissingError

H, W = 32, 48


@pytest.fixture
def fivek_prepared(tmp_path) -> Path:
    """A FiveK download with ids 1 (train), 4501, 4502 (val), prepared to ``root/ispbench-prepared``."""
    import tifffile

    from ispbench.data.fivek import prepare
    from ispbench.ops.dng import write_dng

    root = tmp_path / "fivek_dataset"
    rng = np.random.default_rng(1)
    for n, folder in ((1, "HQa1to700"), (4501, "HQa4201to5000"), (4502, "HQa4201to5000")):
        stem = f"a{n:04d}-fixture_DSC{n}"
        dng = root / "raw_photos" / folder / "photos" / f"{stem}.dng"
        dng.parent.mkdir(parents=True, exist_ok=True)
        write_dng(dng, rng.integers(64, 4095, (H, W)).astype(np.uint16), pattern="RGGB", black_level=64, white_level=4095)
        (root / "expertC").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "expertC" / f"{stem}.tif", rng.integers(0, 65535, (H, W, 3)).astype(np.uint16),
                         photometric="rgb")
    prepare(root, log=lambda *_: None)
    return root


def test_fivek_random_target_pairs(fivek_prepared):
    from ispbench.data.fivek import random_actions
    from ispbench.ops.finishing import finish

    pairs = load_eval_pairs(str(fivek_prepared), "fivek", "", n_images=0, resolution=16, target="random")
    assert pairs.names == ["a4501-fixture_DSC4501", "a4502-fixture_DSC4502"]  # default split: val
    assert pairs.inputs.shape == pairs.goals.shape == (2, 3, 16, 16)
    assert float(pairs.inputs.min()) >= 0 and float(pairs.goals.max()) <= 1
    expected = torch.tensor([random_actions(n) for n in pairs.names])
    torch.testing.assert_close(pairs.goal_actions, expected)
    # the goal is the pipeline applied to the (resized) input with the stored actions
    torch.testing.assert_close(pairs.goals, finish(pairs.inputs, expected).clamp(0, 1), atol=1e-5, rtol=0)
    assert "fivek" in pairs.description and "16x16" in pairs.description

    one = load_eval_pairs(str(fivek_prepared), "fivek", "train", n_images=5, resolution=8, target="expert_c")
    assert one.names == ["a0001-fixture_DSC1"] and one.goal_actions is None and one.inputs.shape == (1, 3, 8, 8)
    first = load_eval_pairs(str(fivek_prepared), "fivek", "val", n_images=1, resolution=8, target="expert_c")
    assert first.names == ["a4501-fixture_DSC4501"]
    assert not torch.allclose(first.inputs, first.goals)


def test_missing_or_unprepared_folder_names_path_and_command(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetMissingError) as err:
        load_eval_pairs(str(missing), "fivek", resolution=16)
    assert str(missing) in str(err.value) and f"ispbench data prepare fivek --root {missing}" in str(err.value)
    empty = tmp_path / "hdrplus"
    empty.mkdir()
    with pytest.raises(DatasetMissingError) as err:
        load_eval_pairs(str(empty), "hdrplus", resolution=16)
    assert "ispbench-prepared" in str(err.value) and "ispbench data prepare hdrplus" in str(err.value)
    with pytest.raises(DatasetMissingError, match="data_root is empty"):
        load_eval_pairs("", "fivek", require_real=True)
    with pytest.raises(ValueError, match="dataset"):
        load_eval_pairs("", "kitti")


def test_embedded_fallback_matches_photo_sets():
    from ispbench.data.photos import expert_target_eval_set, random_target_eval_set

    rnd = load_eval_pairs("", "fivek", n_images=2, resolution=16, target="random", seed=5)
    ref = random_target_eval_set("test", n=2, size=16, seed=5)
    torch.testing.assert_close(rnd.goals, ref.goals)
    exp = load_eval_pairs("", "hdrplus", n_images=2, resolution=16, target="expert", seed=7)
    torch.testing.assert_close(exp.goals, expert_target_eval_set("test", n=2, size=16, seed=7).goals)
    with pytest.raises(ValueError, match="embedded goals are 'random', 'projected' or 'expert'"):
        load_eval_pairs("", "fivek", n_images=2, resolution=16, target="expert_c")
