"""IRPO's real restoration sets: fixture trees in the authors' (and the releases') layouts, pairing,
crops, seeded noise, the evaluation code on the loaded sets, and every refusal."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ispbench.data import restoration as R
from ispbench.data import restoration_paper as P
from ispbench.data.prepared import DatasetFormatError, DatasetMissingError
from ispbench.tasks.restoration_eval import evaluate_restoration

H, W = 27, 37  # odd sizes: cropped to 24 x 32 (multiples of 8), offsets (1, 2)


def pattern(k: int, h: int = H, w: int = W) -> np.ndarray:
    """A distinct uint8 RGB image per ``k``: a ramp with a per-image and per-channel offset."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(7 * k + 3 * y + 5 * x + 60 * c) % 256 for c in range(3)], axis=2).astype(np.uint8)


def write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), params)
    return path


def as_image(t: torch.Tensor) -> np.ndarray:
    """``(3, h, w)`` in [0, 1] -> uint8 ``(h, w, 3)``."""
    return np.rint(t.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


def decoded(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


def crop(img: np.ndarray) -> np.ndarray:
    return img[1:25, 2:34]  # centre crop of 27 x 37 down to 24 x 32


def pairs_tree(root: Path, degraded: list[str], clean: list[str], offset: int = 100) -> None:
    """Degraded image ``i`` is ``pattern(i)``, its clean counterpart ``pattern(i + offset)``."""
    for i, (d, c) in enumerate(zip(degraded, clean, strict=True)):
        write(root / d, pattern(i))
        write(root / c, pattern(i + offset))


def check_pairs(data: P.PairedRestorationSet, offset: int = 100) -> None:
    for i in range(len(data)):
        assert np.array_equal(as_image(data.degraded[i]), crop(pattern(i))), i
        assert np.array_equal(as_image(data.clean[i]), crop(pattern(i + offset))), i


# ---------------------------------------------------------------- the table
def test_table_lists_every_set_with_a_stand_in_kind():
    assert list(P.PAPER_SETS) == [
        "bsd400_wed", "rain100l_train", "reside_ots", "gopro_train", "lol_train",
        "bsd68", "urban100", "rain100l_test", "sots_outdoor", "gopro_test", "lol_test",
        "sidd", "gt_rain", "rrshid", "reloblur", "loli_street"]
    roles = {role: [s.name for s in P.PAPER_SETS.values() if s.role == role] for role in P.ROLES}
    assert [len(roles[r]) for r in ("train", "test", "ood")] == [5, 6, 5]
    for spec in P.PAPER_SETS.values():
        assert spec.task in R.TASKS and spec.source and spec.released and spec.folders[-1] == ""
        if spec.noise:
            assert spec.sigmas == (15, 25, 50) and spec.name in {"bsd400_wed", "bsd68", "urban100"}
        else:
            assert R.TASK_OF[spec.kind] == spec.task, spec.name
    # one set per task in and out of domain, labelled with the embedded stand-in kinds
    assert sorted(P.PAPER_SETS[n].kind for n in roles["ood"]) == sorted(R.OOD_DEGRADATIONS)
    assert sorted(P.PAPER_SETS[n].task for n in roles["train"]) == sorted(R.TASKS)
    text = P.describe_layout("sots_outdoor")
    assert "<root>/test/dehaze" in text and "input/*" in text and "target/<id>.png" in text and "500 pairs" in text
    assert "reference names it" in P.describe_layout("rrshid") and "hazy/*" in P.describe_layout("rrshid")


# ---------------------------------------------------------------- the authors' layouts
def test_rain100l_train_pairs_rain_with_norain_in_natural_order(tmp_path):
    pairs_tree(tmp_path / "Train" / "Derain", [f"rainy/rain-{k}.png" for k in (1, 2, 10)],
               [f"gt/norain-{k}.png" for k in (1, 2, 10)])
    data = P.load_restoration_pairs(tmp_path, "rain100l_train")
    assert len(data) == 3 and data.degraded.shape == data.clean.shape == (3, 3, 24, 32)
    assert data.degraded.dtype == torch.float32
    assert [p.name for p in data.degraded_files] == ["rain-1.png", "rain-2.png", "rain-10.png"]
    assert data.photo == ["norain-1", "norain-2", "norain-10"]
    assert data.kind == ["derain"] * 3 and data.task == ["derain"] * 3 and data.crop.tolist() == [0, 0, 0]
    check_pairs(data)
    # the set's own folder works as root too, and max_images keeps the first pairs
    small = P.load_restoration_pairs(tmp_path / "Train" / "Derain", "rain100l_train", max_images=2)
    assert len(small) == 2 and torch.equal(small.clean, data.clean[:2])


def test_rain100l_test_gopro_test_lol_test_pair_input_with_target(tmp_path):
    names = {"rain100l_test": ("test/derain/Rain100L", ["1.png", "2.png", "3.png"]),
             "gopro_test": ("test/deblur/gopro", ["GOPR0384_11_00_000001.png", "GOPR0384_11_00_000002.png"]),
             "lol_test": ("test/enhance/lol", ["1.png", "22.png"])}
    for folder, files in names.values():
        pairs_tree(tmp_path / folder, [f"input/{f}" for f in files], [f"target/{f}" for f in files])
    for name, (folder, files) in names.items():
        data = P.load_restoration_pairs(tmp_path, name)
        assert len(data) == len(files) and data.folder == tmp_path / folder
        assert data.task[0] == P.PAPER_SETS[name].task
        check_pairs(data)


def test_sots_outdoor_maps_hazy_names_to_clear_names(tmp_path):
    folder = tmp_path / "test" / "dehaze"
    pairs_tree(folder, ["input/0001_0.8_0.2.jpg", "input/0002_1_0.16.jpg"], ["target/0001.png", "target/0002.png"])
    data = P.load_restoration_pairs(tmp_path, "sots_outdoor")
    assert [p.name for p in data.clean_files] == ["0001.png", "0002.png"] and data.photo == ["0001", "0002"]
    assert data.kind == ["dehaze", "dehaze"]
    for i, path in enumerate(data.degraded_files):  # JPEG: the decoded file, cropped
        assert np.array_equal(as_image(data.degraded[i]), crop(decoded(path)))
        assert np.array_equal(as_image(data.clean[i]), crop(pattern(i + 100)))
    assert not np.array_equal(crop(decoded(data.degraded_files[0])), crop(decoded(data.degraded_files[1])))


def test_reside_ots_shares_one_clear_image_between_hazy_versions(tmp_path):
    folder = tmp_path / "Train" / "Dehaze"
    hazy = ["synthetic/part1/0025_0.8_0.04.jpg", "synthetic/part1/0025_1_0.2.jpg", "synthetic/part2/3068_0.8_0.1.jpg"]
    for i, name in enumerate(hazy):
        write(folder / name, pattern(i))
    write(folder / "original" / "0025.jpg", pattern(50))  # the code keeps the hazy suffix, INSTALL.md shows .png
    write(folder / "original" / "3068.png", pattern(51))
    data = P.load_restoration_pairs(tmp_path, "reside_ots")
    assert len(data) == 3 and data.photo == ["0025", "0025", "3068"]
    assert [p.name for p in data.clean_files] == ["0025.jpg", "0025.jpg", "3068.png"]
    assert torch.equal(data.clean[0], data.clean[1])
    assert np.array_equal(as_image(data.clean[2]), crop(pattern(51)))


def test_gopro_and_lol_in_the_authors_and_the_release_layouts(tmp_path):
    pairs_tree(tmp_path / "data" / "Train" / "Deblur", ["blur/GOPR0372_07_00_000047.png", "blur/GOPR0372_07_00_000048.png"],
               ["sharp/GOPR0372_07_00_000047.png", "sharp/GOPR0372_07_00_000048.png"])
    pairs_tree(tmp_path / "data" / "Train" / "Enhance", ["low/2.png", "low/5.png"], ["gt/2.png", "gt/5.png"])
    for name in ("gopro_train", "lol_train"):
        data = P.load_restoration_pairs(tmp_path / "data", name)
        assert len(data) == 2
        check_pairs(data)
    # the releases: GOPRO_Large/<split>/<sequence>/{blur,sharp}/, LOLdataset/{our485,eval15}/{low,high}/
    release = tmp_path / "GOPRO_Large"
    pairs_tree(release / "train", ["GOPR0372_07_00/blur/000047.png", "GOPR0374_11_01/blur/000001.png"],
               ["GOPR0372_07_00/sharp/000047.png", "GOPR0374_11_01/sharp/000001.png"])
    write(release / "train" / "GOPR0372_07_00" / "blur_gamma" / "000047.png", pattern(9))  # not read
    pairs_tree(release / "test", ["GOPR0384_11_00/blur/000001.png"], ["GOPR0384_11_00/sharp/000001.png"], offset=7)
    train = P.load_restoration_pairs(release, "gopro_train")
    assert len(train) == 2 and train.folder == release / "train" and train.photo == ["000047", "000001"]
    check_pairs(train)
    test = P.load_restoration_pairs(tmp_path, "gopro_test")  # found as <root>/GOPRO_Large/test
    assert len(test) == 1 and test.folder == release / "test"
    check_pairs(test, offset=7)
    lol = tmp_path / "LOLdataset"
    pairs_tree(lol / "eval15", ["low/1.png", "low/22.png"], ["high/1.png", "high/22.png"])
    pairs_tree(lol / "our485", ["low/2.png"], ["high/2.png"], offset=3)
    check_pairs(P.load_restoration_pairs(lol, "lol_test"))
    check_pairs(P.load_restoration_pairs(lol, "lol_train"), offset=3)


# ---------------------------------------------------------------- out-of-domain layouts
def test_sidd_pairs_noisy_with_gt_in_each_scene_folder(tmp_path):
    folder = tmp_path / "OOD" / "SIDD"
    pairs_tree(folder, ["Data/0001_001_S6_00100_00060_3200_L/NOISY_SRGB_010.PNG",
                        "Data/0002_001_S6_00100_00020_3200_N/NOISY_SRGB_010.PNG"],
               ["Data/0001_001_S6_00100_00060_3200_L/GT_SRGB_010.PNG",
                "Data/0002_001_S6_00100_00020_3200_N/GT_SRGB_010.PNG"])
    data = P.load_restoration_pairs(tmp_path, "sidd")
    assert len(data) == 2 and data.kind == ["real_noise"] * 2 and data.task == ["denoise"] * 2
    check_pairs(data)
    # the same stem in every scene: photos are the relative paths, so the scenes stay apart
    assert data.photo == ["Data/0001_001_S6_00100_00060_3200_L/GT_SRGB_010",
                          "Data/0002_001_S6_00100_00020_3200_N/GT_SRGB_010"]
    # the converted layout (input/ + target/ PNGs) is accepted too
    pairs_tree(tmp_path / "blocks", ["input/0.png", "input/1.png"], ["target/0.png", "target/1.png"])
    check_pairs(P.load_restoration_pairs(tmp_path / "blocks", "sidd"))


def test_gt_rain_pairs_every_rainy_frame_with_the_scene_clean_frame(tmp_path):
    scene = tmp_path / "GT-RAIN_test" / "Gurutto_1-2"
    for k in range(2):
        write(scene / f"Gurutto_1-2-R-{k:03d}.png", pattern(k))
    write(scene / "Gurutto_1-2-C-000.png", pattern(100))
    data = P.load_restoration_pairs(tmp_path, "gt_rain")
    assert len(data) == 2 and data.photo == ["Gurutto_1-2-C-000"] * 2 and data.kind == ["dense_rain"] * 2
    assert np.array_equal(as_image(data.degraded[1]), crop(pattern(1)))
    assert np.array_equal(as_image(data.clean[1]), crop(pattern(100)))


@pytest.mark.parametrize("name, degraded, clean, kind", [
    ("rrshid", "hazy", "clear", "nonuniform_haze"), ("rrshid", "hazy", "gt", "nonuniform_haze"),
    ("reloblur", "blur", "sharp", "other_blur"), ("loli_street", "low", "high", "lowlight_street"),
])
def test_assumed_ood_layouts(tmp_path, name, degraded, clean, kind):
    folder = tmp_path / {"rrshid": "OOD/RRSHID", "reloblur": "OOD/ReLoBlur", "loli_street": "OOD/LoLI-Street/Val"}[name]
    pairs_tree(folder, [f"{degraded}/{k}.png" for k in (3, 12)], [f"{clean}/{k}.png" for k in (3, 12)])
    data = P.load_restoration_pairs(tmp_path, name)
    assert len(data) == 2 and data.kind == [kind] * 2 and data.photo == ["3", "12"]
    check_pairs(data)


# ---------------------------------------------------------------- noise sets
def test_bsd68_adds_seeded_gaussian_noise(tmp_path):
    folder = tmp_path / "test" / "denoise" / "bsd68"
    write(folder / "3096.png", np.full((H, W, 3), 128, np.uint8))
    write(folder / "12084.png", pattern(1))
    write(folder / "101085.jpg", pattern(2))
    data = P.load_restoration_pairs(tmp_path, "bsd68", sigma=25)
    assert len(data) == 3 and data.kind == ["denoise_25"] * 3 and data.task == ["denoise"] * 3
    assert [p.name for p in data.clean_files] == ["3096.png", "12084.png", "101085.jpg"] == [p.name for p in data.degraded_files]
    assert np.array_equal(as_image(data.clean[0]), np.full((24, 32, 3), 128, np.uint8))
    assert np.array_equal(as_image(data.clean[1]), crop(pattern(1)))
    noise = data.degraded[0] - data.clean[0]  # mid-grey: no clipping at sigma 25
    assert abs(float(noise.std()) * 255.0 - 25.0) < 2.0 and abs(float(noise.mean()) * 255.0) < 1.5
    assert 0.0 <= float(data.degraded.min()) and float(data.degraded.max()) <= 1.0
    again = P.load_restoration_pairs(tmp_path, "bsd68", sigma=25)
    assert torch.equal(again.degraded, data.degraded)
    other_seed = P.load_restoration_pairs(tmp_path, "bsd68", sigma=25, seed=1)
    assert not torch.equal(other_seed.degraded, data.degraded) and torch.equal(other_seed.clean, data.clean)
    # an image's noise does not depend on the other images loaded
    second = P.load_restoration_pairs(tmp_path, "bsd68", sigma=25, max_images=2)
    assert torch.equal(second.degraded, data.degraded[:2])
    sigma50 = P.load_restoration_pairs(tmp_path, "bsd68", sigma=50)
    assert sigma50.kind[0] == "denoise_50" and float((sigma50.degraded[0] - sigma50.clean[0]).std()) > 1.7 * float(noise.std())
    # the authors' 8-bit noisy images: floor(255 * noisy) / 255
    q = P.load_restoration_pairs(tmp_path, "bsd68", sigma=25, quantize=True)
    levels = q.degraded * 255.0
    assert torch.allclose(levels, torch.round(levels), atol=1e-4)  # on the 8-bit grid
    below = data.degraded - q.degraded
    assert float(below.min()) > -1e-6 and float(below.max()) < 1.0 / 255.0 + 1e-6 and float(below.mean()) > 0.3 / 255.0


def test_urban100_and_the_training_clean_images_are_noise_sets(tmp_path):
    write(tmp_path / "test" / "denoise" / "urban100" / "img_001.png", pattern(0))
    write(tmp_path / "Train" / "Denoise" / "00001.bmp", pattern(1))  # WED ships .bmp
    write(tmp_path / "Train" / "Denoise" / "a247012.jpg", pattern(2))
    urban = P.load_restoration_pairs(tmp_path, "urban100", sigma=15)
    assert len(urban) == 1 and urban.kind == ["denoise_15"]
    train = P.load_restoration_pairs(tmp_path, "bsd400_wed", sigma=50, size=16)
    assert train.clean.shape == (2, 3, 16, 16) and train.photo == ["00001", "a247012"]
    assert np.array_equal(as_image(train.clean[0]), pattern(1)[5:21, 10:26])


# ---------------------------------------------------------------- sizes
def test_size_centre_crops_and_mixed_sizes_give_image_lists(tmp_path):
    folder = tmp_path / "test" / "derain" / "Rain100L"
    write(folder / "input" / "1.png", pattern(0))
    write(folder / "target" / "1.png", pattern(100))
    write(folder / "input" / "2.png", pattern(1, 41, 19))
    write(folder / "target" / "2.png", pattern(101, 41, 19))
    square = P.load_restoration_pairs(tmp_path, "rain100l_test", size=16)
    assert square.degraded.shape == (2, 3, 16, 16) and square.size == (16, 16)
    assert np.array_equal(as_image(square.degraded[0]), pattern(0)[5:21, 10:26])
    assert np.array_equal(as_image(square.clean[1]), pattern(101, 41, 19)[12:28, 1:17])
    rect = P.load_restoration_pairs(tmp_path, "rain100l_test", size=(8, 16))
    assert rect.clean.shape == (2, 3, 8, 16)
    # without size: each image cropped to multiples of 8 (of 16 with multiple=16)
    full = P.load_restoration_pairs(tmp_path, "rain100l_test")
    assert isinstance(full.degraded, P.ImageList) and full.degraded.sizes == [(24, 32), (40, 16)]
    assert full.degraded[0].shape == (3, 24, 32) and full.degraded[1:2].shape == (1, 3, 40, 16)
    assert np.array_equal(as_image(full.clean[1]), pattern(101, 41, 19)[0:40, 1:17])
    with pytest.raises(ValueError, match="differ in size.*batch_size=1"):
        full.degraded[0:2]
    assert P.load_restoration_pairs(tmp_path, "rain100l_test", multiple=16).clean.sizes == [(16, 32), (32, 16)]
    # the evaluation code scores it one image at a time: the identity restores the input PSNR
    rows = evaluate_restoration(lambda x: x, full, batch_size=1)
    assert rows.photo.tolist() == ["1", "2"] and rows.task.tolist() == ["derain", "derain"]
    assert np.allclose(rows.psnr, rows.input_psnr) and np.isfinite(rows.psnr).all()
    with pytest.raises(ValueError, match="multiples of 8"):
        P.load_restoration_pairs(tmp_path, "rain100l_test", size=12)
    with pytest.raises(DatasetFormatError, match=r"2\.png: 41x19 px is smaller than the crop 24x24"):
        P.load_restoration_pairs(tmp_path, "rain100l_test", size=24)


def test_getitem_and_subset(tmp_path):
    files = [f"{k}.png" for k in range(3)]
    pairs_tree(tmp_path / "test" / "enhance" / "lol", [f"input/{f}" for f in files], [f"target/{f}" for f in files])
    data = P.load_restoration_pairs(tmp_path, "lol_test")
    degraded, clean, kind_index = data[2]
    assert torch.equal(degraded, data.degraded[2]) and torch.equal(clean, data.clean[2]) and kind_index == 0
    assert data.kinds[kind_index] == "lowlight"
    worst = data.subset([2, 0])
    assert worst.photo == ["2", "0"] and torch.equal(worst.clean, data.clean[[2, 0]])
    assert [p.name for p in worst.degraded_files] == ["2.png", "0.png"] and len(data) == 3
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(ValueError, match="indices"):
        data.subset([3])


# ---------------------------------------------------------------- refusals
def test_missing_root_and_missing_set_folder_name_paths_and_layout(tmp_path):
    missing = tmp_path / "no_such_data"
    with pytest.raises(DatasetMissingError) as err:
        P.load_restoration_pairs(missing, "rain100l_train")
    assert str(missing) in str(err.value) and "rainy/rain-*" in str(err.value) and "gt/norain-<k>" in str(err.value)
    (tmp_path / "Train" / "Derain" / "rainy").mkdir(parents=True)  # the folder exists but holds no image
    with pytest.raises(DatasetMissingError) as err:
        P.load_restoration_pairs(tmp_path, "rain100l_train")
    msg = str(err.value)
    assert str(tmp_path / "Train" / "Derain") in msg and "no images matching rainy/rain-*" in msg
    assert "Rain100L" in msg and "rainTrain.txt" in msg
    with pytest.raises(DatasetMissingError, match=r"test/dehaze \(no such folder\)"):
        P.load_restoration_pairs(tmp_path, "sots_outdoor")


def test_missing_counterparts_are_counted_and_listed(tmp_path):
    folder = tmp_path / "Train" / "Derain"
    for k in range(1, 8):
        write(folder / "rainy" / f"rain-{k}.png", pattern(k))
    write(folder / "gt" / "norain-4.png", pattern(0))
    with pytest.raises(DatasetFormatError) as err:
        P.load_restoration_pairs(tmp_path, "rain100l_train")
    msg = str(err.value)
    assert "6 of 7 degraded images have no clean counterpart" in msg
    assert "rainy/rain-1.png (expected gt/norain-1.*)" in msg and "rainy/rain-6.png" in msg
    assert "rain-7.png" not in msg and "rain-4.png" not in msg  # the first five missing only
    # several clean files of one name
    pairs_tree(tmp_path / "test" / "enhance" / "lol", ["input/1.png"], ["target/1.png"])
    write(tmp_path / "test" / "enhance" / "lol" / "target" / "1.jpg", pattern(3))
    with pytest.raises(DatasetFormatError, match=r"match several clean files .*input/1\.png -> 1\.jpg, 1\.png"):
        P.load_restoration_pairs(tmp_path, "lol_test")


def test_unreadable_image_and_mismatched_pair_name_the_files(tmp_path):
    folder = tmp_path / "test" / "deblur" / "gopro"
    pairs_tree(folder, ["input/a.png", "input/b.png"], ["target/a.png", "target/b.png"])
    (folder / "target" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match=r"target/b\.png: not a decodable image"):
        P.load_restoration_pairs(tmp_path, "gopro_test")
    write(folder / "target" / "b.png", pattern(5, 20, 20))
    with pytest.raises(DatasetFormatError) as err:
        P.load_restoration_pairs(tmp_path, "gopro_test")
    assert "input/b.png is 27x37 px" in str(err.value) and "target/b.png is 20x20 px" in str(err.value)


def test_bad_names_and_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        P.load_restoration_pairs(tmp_path, "rain100h")
    assert "unknown restoration set 'rain100h'" in str(err.value) and "sots_outdoor, gopro_test" in str(err.value)
    with pytest.raises(ValueError, match="unknown restoration set"):
        P.describe_layout("bsd500")
    with pytest.raises(ValueError, match=r"pass sigma.*15, 25, 50"):
        P.load_restoration_pairs(tmp_path, "bsd68")
    with pytest.raises(ValueError, match="sigma applies only to the noise sets"):
        P.load_restoration_pairs(tmp_path, "sidd", sigma=25)
    for kwargs, field in (({"sigma": -5}, "sigma"), ({"sigma": float("nan")}, "sigma"), ({"sigma": 25, "max_images": -1}, "max_images"),
                          ({"sigma": 25, "seed": -1}, "seed"), ({"sigma": 25, "multiple": 0}, "multiple"),
                          ({"sigma": 25, "size": (16, 20)}, "size"), ({"sigma": 25, "size": True}, "size")):
        with pytest.raises(ValueError, match=field):
            P.load_restoration_pairs(tmp_path, "bsd68", **kwargs)
