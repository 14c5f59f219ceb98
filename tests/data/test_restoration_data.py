"""Embedded restoration data: sizes, shared clean crops, determinism, PSNR ranges per kind, subsets, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ispbench.data import photos
from ispbench.data import restoration as R


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` images in [0, 1]."""
    return -10.0 * torch.log10(((a - b) ** 2).flatten(1).mean(1))


@pytest.fixture(scope="module")
def val_set() -> R.RestorationSet:
    return R.RestorationSet("val", crops_per_photo=1, size=32)


@pytest.fixture(scope="module")
def psnr_sets() -> dict[str, R.RestorationSet]:
    return {"in": R.RestorationSet("val", crops_per_photo=2, size=48),
            "ood": R.RestorationSet("val", crops_per_photo=2, size=48, ood=True)}


def test_constants_are_consistent():
    assert R.DEGRADATIONS == ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze", "deblur", "lowlight")
    assert set(R.TASK_OF) == set(R.DEGRADATIONS) | set(R.OOD_DEGRADATIONS) == set(R.DEGRADATION_RANGES)
    assert set(R.TASK_OF.values()) == set(R.TASKS)
    # one out-of-distribution kind per task
    assert sorted(R.TASK_OF[k] for k in R.OOD_DEGRADATIONS) == sorted(R.TASKS)


def test_length_order_and_item_shapes(val_set):
    names = photos.photo_names("val")
    assert len(val_set) == len(names) * len(R.DEGRADATIONS) == 14
    assert val_set.clean.shape == val_set.degraded.shape == (14, 3, 32, 32)
    assert val_set.clean.dtype == val_set.degraded.dtype == torch.float32
    assert val_set.photo == [n for n in names for _ in R.DEGRADATIONS]
    assert val_set.kind == list(R.DEGRADATIONS) * len(names)
    assert val_set.task == [R.TASK_OF[k] for k in val_set.kind]
    assert val_set.crop.tolist() == [0] * 14
    degraded, clean, kind_index = val_set[4]
    assert degraded.shape == clean.shape == (3, 32, 32)
    assert isinstance(kind_index, int) and val_set.kinds[kind_index] == val_set.kind[4] == "dehaze"
    assert torch.equal(degraded, val_set.degraded[4]) and torch.equal(clean, val_set.clean[4])
    for x in (val_set.clean, val_set.degraded):
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    with pytest.raises(IndexError):
        val_set[14]


def test_clean_crop_is_shared_across_kinds():
    ds = R.RestorationSet("test", kinds=("derain", "deblur", "real_noise"), crops_per_photo=2, size=24)
    for name in photos.photo_names("test"):
        for c in range(2):
            rows = [i for i in range(len(ds)) if ds.photo[i] == name and ds.crop[i] == c]
            assert len(rows) == 3
            assert all(torch.equal(ds.clean[rows[0]], ds.clean[r]) for r in rows)
    # and the crops of one photo differ from each other
    assert not torch.equal(ds.clean[0], ds.clean[1])


def test_construction_is_deterministic_and_seeded(val_set):
    again = R.RestorationSet("val", crops_per_photo=1, size=32)
    assert torch.equal(again.clean, val_set.clean) and torch.equal(again.degraded, val_set.degraded)
    other = R.RestorationSet("val", crops_per_photo=1, size=32, seed=1)
    assert not torch.equal(other.clean, val_set.clean)
    assert not torch.equal(other.degraded, val_set.degraded)


def test_sample_does_not_depend_on_which_kinds_or_their_order(val_set):
    kinds = ("lowlight", "derain", "denoise_25")
    reordered = R.RestorationSet("val", kinds=kinds, crops_per_photo=1, size=32)
    assert [reordered.kinds[i] for i in reordered.kind_index] == reordered.kind
    for i in range(len(reordered)):
        j = next(j for j in range(len(val_set))
                 if val_set.photo[j] == reordered.photo[i] and val_set.kind[j] == reordered.kind[i])
        assert torch.equal(reordered.degraded[i], val_set.degraded[j])


def test_every_in_domain_kind_degrades(val_set):
    values = psnr(val_set.degraded, val_set.clean)
    for i, kind in enumerate(val_set.kind):
        assert not torch.equal(val_set.degraded[i], val_set.clean[i]), kind
        assert float(values[i]) < 40.0, kind


# mean PSNR (dB) of degraded vs clean on the val photos at 48 px, 2 crops: neither trivial nor destroying.
# The low-light kinds sit below 8 dB on purpose: LOL's own low/normal pairs are about 8 dB apart.
PSNR_RANGES = {
    "denoise_15": (23.5, 26.5), "denoise_25": (19.0, 22.5), "denoise_50": (13.5, 17.0),
    "derain": (22.0, 32.0), "dehaze": (11.0, 22.0), "deblur": (18.0, 30.0), "lowlight": (6.0, 12.0),
    "real_noise": (22.0, 31.0), "dense_rain": (12.0, 21.0), "nonuniform_haze": (9.0, 18.0),
    "other_blur": (17.0, 32.0), "lowlight_street": (5.0, 10.0),
}


def test_mean_psnr_per_kind_is_in_a_sane_range(psnr_sets):
    means = {}
    for ds in psnr_sets.values():
        values = psnr(ds.degraded, ds.clean)
        for kind in ds.kinds:
            rows = torch.from_numpy(np.asarray(ds.kind) == kind)
            means[kind] = float(values[rows].mean())
    assert set(means) == set(PSNR_RANGES)
    outside = {k: round(v, 2) for k, v in means.items() if not PSNR_RANGES[k][0] <= v <= PSNR_RANGES[k][1]}
    assert not outside, f"mean PSNR outside its range: {outside}"
    assert means["denoise_15"] > means["denoise_25"] > means["denoise_50"]
    # the out-of-distribution rain and low light are harder than the in-domain ones
    assert means["dense_rain"] < means["derain"] - 5 and means["lowlight_street"] < means["lowlight"]


def test_real_noise_is_stronger_in_shadows_and_in_red_and_blue():
    clean = torch.cat([torch.full((1, 3, 64, 32), 0.1), torch.full((1, 3, 64, 32), 0.8)], dim=3)
    residual = R.degrade(clean, "real_noise", torch.Generator().manual_seed(0)) - clean
    dark, bright = residual[..., :32], residual[..., 32:]
    assert float(dark.std()) > 1.3 * float(bright.std())
    per_channel = bright.std(dim=(0, 2, 3))
    assert float(per_channel[0]) > float(per_channel[1]) and float(per_channel[2]) > float(per_channel[1])


def test_lowlight_street_has_a_colour_cast():
    clean = torch.full((8, 3, 32, 32), 0.6)
    dark = R.degrade(clean, "lowlight_street", torch.Generator().manual_seed(0))
    means = dark.mean(dim=(2, 3))
    spread = means.max(dim=1).values / means.min(dim=1).values
    assert float(spread.median()) > 1.3
    plain = R.degrade(clean, "lowlight", torch.Generator().manual_seed(0)).mean(dim=(2, 3))
    assert float((plain.max(dim=1).values / plain.min(dim=1).values).max()) < 1.1  # no cast in-domain


def test_sensor_noise_matches_the_hand_derivation():
    shot, read = R.sensor_noise(3200.0)
    gain, full_well = 32.0, 20000.0
    assert float(shot[0, 1]) == pytest.approx(gain / full_well)
    assert float(read[0, 1]) == pytest.approx(math.hypot(2.0 * gain / full_well, 2.0 / (16383 - 512)))
    assert float(shot[0, 0]) == pytest.approx(gain / full_well / 0.6)
    assert float(read[0, 2]) == pytest.approx(float(read[0, 1]) / 0.75)
    with pytest.raises(ValueError, match="iso"):
        R.sensor_noise(0.0)


def test_degrade_is_seeded_and_keeps_shape():
    clean = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    for kind in R.DEGRADATIONS + R.OOD_DEGRADATIONS:
        a = R.degrade(clean, kind, torch.Generator().manual_seed(5))
        assert a.shape == clean.shape and 0.0 <= float(a.min()) and float(a.max()) <= 1.0, kind
        assert torch.equal(a, R.degrade(clean, kind, torch.Generator().manual_seed(5))), kind
        assert not torch.equal(a, R.degrade(clean, kind, torch.Generator().manual_seed(6))), kind


def test_subset_keeps_the_chosen_rows(val_set):
    rows = [5, 0, 12]
    sub = val_set.subset(np.asarray(rows))
    assert len(sub) == 3 and isinstance(sub, R.RestorationSet)
    assert torch.equal(sub.clean, val_set.clean[rows]) and torch.equal(sub.degraded, val_set.degraded[rows])
    assert sub.photo == [val_set.photo[i] for i in rows]
    assert sub.kind == [val_set.kind[i] for i in rows] and sub.task == [val_set.task[i] for i in rows]
    assert sub.crop.tolist() == val_set.crop[rows].tolist()
    assert sub.kinds == val_set.kinds and sub.split == "val" and sub.size == 32
    degraded, clean, kind_index = sub[1]
    assert torch.equal(degraded, val_set.degraded[0]) and kind_index == val_set[0][2]
    assert len(val_set.subset(torch.tensor([3]))) == 1 and len(val_set.subset([])) == 0
    with pytest.raises(ValueError, match="indices must be in"):
        val_set.subset([14])
    with pytest.raises(ValueError, match="indices must be a 1-D sequence of ints"):
        val_set.subset([0.5])


def test_ood_flag_picks_the_ood_kinds():
    ds = R.RestorationSet("test", crops_per_photo=1, size=16, ood=True)
    assert ds.kinds == R.OOD_DEGRADATIONS and len(ds) == 3 * len(R.OOD_DEGRADATIONS)
    assert set(ds.task) == set(R.TASKS)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown degradation kind 'sharpen'.*denoise_15.*lowlight_street"):
        R.degrade(torch.rand(1, 3, 16, 16), "sharpen", torch.Generator())
    with pytest.raises(ValueError, match=r"'sharpen'.*valid kinds.*derain"):
        R.RestorationSet("val", kinds=("derain", "sharpen"), crops_per_photo=1, size=16)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "heldout"}, "split must be one of"),
    ({"size": 8}, "size must be an int >= 16"),
    ({"crops_per_photo": 0}, "crops_per_photo must be an int >= 1"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"kinds": ()}, "kinds must be a non-empty sequence"),
    ({"kinds": "derain"}, "kinds must be a non-empty sequence"),
    ({"kinds": ("derain", "derain")}, "must not repeat"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        R.RestorationSet(**{"split": "val", "crops_per_photo": 1, "size": 16, **kwargs})


def test_degrade_refuses_bad_images():
    with pytest.raises(ValueError, match=r"clean must be a tensor of shape \(B, 3, H, W\)"):
        R.degrade(torch.rand(3, 16, 16), "derain", torch.Generator())
    with pytest.raises(ValueError, match="at least 8 x 8"):
        R.degrade(torch.rand(1, 3, 4, 16), "derain", torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        R.degrade(torch.rand(1, 3, 16, 16), "derain", 0)


def test_splits_share_no_photo():
    sets = {split: R.RestorationSet(split, kinds=("denoise_15",), crops_per_photo=1, size=16)
            for split in ("train", "val", "test")}
    used = {split: set(ds.photo) for split, ds in sets.items()}
    assert used["train"] == set(photos.photo_names("train"))
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
