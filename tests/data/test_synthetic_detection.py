"""Tests of the embedded detection dataset: generator, camera, cache, loader, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ispbench.data import camera
from ispbench.data import generate as generate_cli
from ispbench.data import synthetic_detection as sd

TINY = sd.GeneratorConfig(seed=3, image_size=64, n_train=6, n_val=3, n_test=2, min_size=0.2, max_size=0.45)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return sd.generate(TINY, root=tmp_path_factory.mktemp("embedded"))


def test_render_is_deterministic_and_seed_dependent():
    a = sd.render_scene(TINY, "train", 1)
    b = sd.render_scene(TINY, "train", 1)
    np.testing.assert_array_equal(a["reflectance"], b["reflectance"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    raw_a, meta_a = sd.photograph(a, "low", TINY, "train", 1)
    raw_b, meta_b = sd.photograph(b, "low", TINY, "train", 1)
    np.testing.assert_array_equal(raw_a, raw_b)
    assert meta_a == meta_b
    other = sd.GeneratorConfig(**{**TINY.__dict__, "seed": 4})
    c = sd.render_scene(other, "train", 1)
    assert not np.array_equal(a["reflectance"], c["reflectance"])
    assert not np.array_equal(sd.photograph(c, "low", other, "train", 1)[0], raw_a)
    assert other.version_hash() != TINY.version_hash()


def test_generated_files_identical_for_same_seed(tiny_dir, tmp_path):
    again = sd.generate(TINY, root=tmp_path)
    assert again.name == tiny_dir.name
    for split in sd.SPLITS:
        for light in sd.LIGHTS:
            np.testing.assert_array_equal(np.load(again / "raw" / f"{split}_{light}.npy"), np.load(tiny_dir / "raw" / f"{split}_{light}.npy"))
        assert (again / "labels" / f"{split}.json").read_text() == (tiny_dir / "labels" / f"{split}.json").read_text()


def test_boxes_inside_image_and_match_objects():
    n_boxes = 0
    for i in range(6):
        scene = sd.render_scene(TINY, "train", i)
        boxes, labels, masks = scene["boxes"], scene["labels"], scene["masks"]
        assert len(boxes) == len(labels) == len(masks)
        assert labels.min(initial=0) >= 0 and labels.max(initial=0) < len(sd.CLASS_NAMES)
        for (cx, cy, w, h), mask in zip(boxes, masks, strict=True):
            assert 0 < w <= 1 and 0 < h <= 1
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6
            ys, xs = np.nonzero(mask > 0.5)
            s = TINY.image_size
            my, mx = (ys.mean() + 0.5) / s, (xs.mean() + 0.5) / s
            assert abs(mx - cx) <= w / 2 and abs(my - cy) <= h / 2
            # The box is tight: the mask touches all four sides.
            assert xs.min() / s == pytest.approx(cx - w / 2, abs=1e-5)
            assert (ys.max() + 1) / s == pytest.approx(cy + h / 2, abs=1e-5)
            n_boxes += 1
    assert n_boxes >= 6


def test_low_light_is_darker_and_noisier(tiny_dir):
    low = sd.load_split("train", "low", root=tiny_dir)
    normal = sd.load_split("train", "normal", root=tiny_dir)

    def noise_to_signal(img):  # difference of horizontally adjacent same-colour raw sites
        g = img[1]
        return float((g[:, 2:] - g[:, :-2]).abs().mean() / g.mean().clamp_min(1e-6))

    mean_low = np.mean([low[i]["image"].mean().item() for i in range(len(low))])
    mean_normal = np.mean([normal[i]["image"].mean().item() for i in range(len(normal))])
    nsr_low = np.mean([noise_to_signal(low[i]["image"]) for i in range(len(low))])
    nsr_normal = np.mean([noise_to_signal(normal[i]["image"]) for i in range(len(normal))])
    assert mean_low < mean_normal  # auto-exposure makes up for much of the light: a modest difference on average
    assert nsr_low > nsr_normal
    assert np.mean([low[i]["meta"]["iso"] for i in range(len(low))]) > np.mean([normal[i]["meta"]["iso"] for i in range(len(normal))])
    # The lux ranges overlap (a bright "low" scene can out-shine a dim "normal" one); on average they do not.
    assert np.mean([low[i]["meta"]["light"] for i in range(len(low))]) < np.mean([normal[i]["meta"]["light"] for i in range(len(normal))])


def test_auto_exposure_program_line():
    """Hand-computed legs of the program: shutter, ISO at 1/60 s, shutter at ISO 800, ISO at 1/15 s, under-exposure."""
    program = camera.AUTO_PROGRAM
    metered = 0.2
    # t * ISO wanted = 0.18 * 15871 DN / (0.2 * lux * 4000 e * 0.794 DN/e) * 100 = 1799 / lux (ISO s).
    per_lux = 0.18 * 15871 / (0.2 * 4000 * (16383 - 512) / 20000) * 100
    t, iso = camera.auto_exposure(metered, per_lux / (100 / 500), program)  # wants 1/500 s at ISO 100
    assert (t, iso) == (pytest.approx(1 / 500), 100.0)
    t, iso = camera.auto_exposure(metered, per_lux / (400 / 60), program)  # ISO 400 at 1/60 s
    assert (t, iso) == (pytest.approx(1 / 60), pytest.approx(400.0))
    t, iso = camera.auto_exposure(metered, per_lux / (800 / 30), program)  # 1/30 s at ISO 800
    assert (t, iso) == (pytest.approx(1 / 30), pytest.approx(800.0))
    t, iso = camera.auto_exposure(metered, per_lux / (3200 / 15), program)  # ISO 3200 at 1/15 s
    assert (t, iso) == (pytest.approx(1 / 15), pytest.approx(3200.0))
    t, iso = camera.auto_exposure(metered, per_lux / (64000 / 15), program)  # 3.3 stops under at the limits
    assert (t, iso) == (pytest.approx(1 / 15), 6400.0)
    t, iso = camera.auto_exposure(metered, 1e9, program)  # brighter than 1/8000 s at ISO 100 allows
    assert (t, iso) == (pytest.approx(1 / 8000), 100.0)


def test_sensing_conditions_span_the_cameras_range():
    """Over 80 scenes per light the camera uses ISO 100-6400 and 1/1000-1/15 s, every illuminant, and blurs long exposures."""
    cfg = sd.GeneratorConfig(image_size=32)
    metas = {light: [sd.photograph(sd.render_scene(cfg, "train", i), light, cfg, "train", i)[1] for i in range(80)]
             for light in sd.LIGHTS}
    iso = {light: [m["iso"] for m in ms] for light, ms in metas.items()}
    times = [m["exposure_time"] for ms in metas.values() for m in ms]
    assert min(iso["low"]) <= 200 and max(iso["low"]) == 6400 and min(iso["normal"]) == 100
    assert min(times) <= 1 / 1000 and max(times) == pytest.approx(1 / 15)
    for light, ms in metas.items():
        seen = {m["illuminant"].split(":")[0] for m in ms}
        assert seen == set(sd.ILLUMINANT_MIX[light]), light
    assert any(m["underexposure_ev"] > 3 for m in metas["low"])
    assert all(m["underexposure_ev"] < 0.5 for m in metas["normal"])
    blur_long = [m["motion_blur_px"] for ms in metas.values() for m in ms if m["exposure_time"] > 1 / 20]
    blur_short = [m["motion_blur_px"] for ms in metas.values() for m in ms if m["exposure_time"] < 1 / 500]
    assert np.median(blur_long) > 10 * np.median(blur_short)


def test_mixed_illuminant_varies_across_the_frame_and_blur_keeps_energy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        field, name = sd._illuminant_field("low", rng, 32)
        if name.startswith("mixed"):
            break
    assert name.startswith("mixed") and field.shape == (3, 32, 32)
    assert field[1].mean() == pytest.approx(1.0, rel=1e-5)
    ratio = field[2] / field[0]
    assert ratio.max() > 1.5 * ratio.min()
    radiance = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    blurred = sd._motion_blur(radiance, 5.0, 0.3)
    assert blurred.mean() == pytest.approx(radiance.mean(), rel=0.02)
    assert blurred.std() < 0.8 * radiance.std()
    assert sd._motion_blur(radiance, 0.2, 0.3) is radiance


def test_camera_flat_field_snr_follows_exposure():
    rng = np.random.default_rng(0)
    flat = np.full((3, 64, 64), 0.3, np.float32)
    lin_bright = camera.raw_to_linear(camera.capture(flat, 1000.0, 0.01, 100, rng))
    lin_dark = camera.raw_to_linear(camera.capture(flat, 1.0, 1 / 30, 6400, rng))
    snr = lambda x: float(x[1].mean() / x[1].std())  # noqa: E731
    assert snr(lin_bright) > 5 * snr(lin_dark)
    # Expected green level: 0.3 * 1000 lux * 0.01 s * 4000 e * 0.794 DN/e / 15871 DN = 0.6.
    assert lin_bright[1].mean().item() == pytest.approx(0.6, rel=0.02)


def test_mosaic_demosaic_round_trip_and_black_level():
    rgb = torch.rand(2, 3, 8, 8)
    bayer = camera.mosaic(rgb)
    assert bayer.shape == (2, 1, 8, 8)
    assert torch.equal(bayer[:, 0, 0::2, 0::2], rgb[:, 0, 0::2, 0::2])  # R at (0, 0) for RGGB
    assert torch.equal(bayer[:, 0, 1::2, 1::2], rgb[:, 2, 1::2, 1::2])  # B at (1, 1)
    flat = torch.full((1, 3, 8, 8), 0.4)
    torch.testing.assert_close(camera.demosaic_bilinear(camera.mosaic(flat)), flat)
    black = np.full((8, 8), camera.SENSOR.black_level, np.uint16)
    assert camera.raw_to_linear(black).abs().max().item() == 0.0
    with pytest.raises(ValueError, match="pattern"):
        camera.mosaic(rgb, "RGBX")


def test_load_split_items_and_collate(tiny_dir):
    ds = sd.load_split("val", "low", root=tiny_dir)
    assert len(ds) == TINY.n_val
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["boxes"].shape == (len(item["labels"]), 4) and item["labels"].dtype == torch.int64
    assert {"iso", "exposure_time", "light", "scene_id"} <= set(item["meta"])
    assert item["meta"]["scene_id"] == "val_00000"
    images, targets = sd.collate_detection([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 64, 64)
    n = sum(len(ds[i]["labels"]) for i in range(3))
    assert targets.shape == (n, 6)
    assert set(targets[:, 0].long().tolist()) <= {0, 1, 2}
    first = targets[targets[:, 0] == 0]
    torch.testing.assert_close(first[:, 1].long(), ds[0]["labels"])
    torch.testing.assert_close(first[:, 2:], ds[0]["boxes"])
    with pytest.raises(ValueError, match="split"):
        sd.load_split("training", "low", root=tiny_dir)
    with pytest.raises(ValueError, match="light"):
        sd.load_split("val", "dim", root=tiny_dir)


def test_yolo_layout_matches_labels(tiny_dir):
    data_yaml = (tiny_dir / "yolo" / "data.yaml").read_text()
    assert "nc: 5" in data_yaml and "0: disc" in data_yaml
    for split in sd.SPLITS:
        labels = json.loads((tiny_dir / "labels" / f"{split}.json").read_text())
        pngs = sorted((tiny_dir / "yolo" / "images" / split).glob("*.png"))
        assert len(pngs) == len(labels)
        for entry in labels:
            rows = (tiny_dir / "yolo" / "labels" / split / f"{entry['scene_id']}.txt").read_text().split("\n")
            rows = [r.split() for r in rows if r]
            assert [int(r[0]) for r in rows] == entry["labels"]
            np.testing.assert_allclose([[float(v) for v in r[1:]] for r in rows] or np.zeros((0, 4)), np.array(entry["boxes"]).reshape(-1, 4), atol=1e-6)
    assert len(list((tiny_dir / "yolo_low" / "images" / "val").glob("*.png"))) == TINY.n_val
    assert (tiny_dir / "info.json").exists() and sd.is_complete(tiny_dir)


def test_cache_is_reused(tiny_dir, monkeypatch):
    stamp = (tiny_dir / "info.json").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(sd, "render_scene", boom)
    assert sd.generate(TINY, root=tiny_dir.parent) == tiny_dir
    assert (tiny_dir / "info.json").stat().st_mtime_ns == stamp
    assert not list(tiny_dir.parent.glob(".tmp-*"))


def test_generate_cli(tmp_path, capsys):
    rc = generate_cli.main(["embedded-detection", "--root", str(tmp_path), "--scenes", "6", "--image-size", "32", "--seed", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "generated" in out and str(tmp_path) in out
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    info = json.loads((folder / "info.json").read_text())
    assert info["counts"] == {"train": 4, "val": 1, "test": 1}
    rc = generate_cli.main(["embedded-detection", "--root", str(tmp_path), "--scenes", "6", "--image-size", "32", "--seed", "1"])
    assert rc == 0 and "re-used" in capsys.readouterr().out
    rc = generate_cli.main(["imagenet", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown dataset 'imagenet'" in err and "embedded-detection" in err


def test_stale_temporary_folders_are_removed(tmp_path):
    cfg = sd.GeneratorConfig(seed=9, image_size=32, n_train=1, n_val=1, n_test=1)
    stale = tmp_path / f".tmp-{cfg.version_hash()}-999999999-1"  # no such process
    stale.mkdir()
    (stale / "raw").mkdir()
    path = sd.generate(cfg, root=tmp_path)
    assert not stale.exists() and sd.is_complete(path)
    with pytest.raises(FileNotFoundError, match="incomplete"):
        (path / "COMPLETE").unlink()
        sd.ensure_dataset(path)


def test_dataset_pickles_without_the_frames(tiny_dir):
    import pickle

    ds = sd.load_split("train", "normal", root=tiny_dir)
    first = ds[0]["image"]
    blob = pickle.dumps(ds)
    assert len(blob) < 64 * 64 * 2 * len(ds)  # the memory map is not serialised
    torch.testing.assert_close(pickle.loads(blob)[0]["image"], first)


def test_a_concurrent_generator_keeps_the_copy_that_finished_first(tiny_dir, tmp_path, monkeypatch):
    """Two notebooks generating at once: the one finishing second must not delete the folder the first
    one's readers already use."""
    first = sd.generate(TINY, root=tmp_path)
    (first / "in-use-by-a-reader").write_text("x")
    real = sd.is_complete
    calls = []

    def stale_at_start(path):  # the second generator started before the first one's rename
        calls.append(path)
        return False if len(calls) == 1 else real(path)

    monkeypatch.setattr(sd, "is_complete", stale_at_start)
    again = sd.generate(TINY, root=tmp_path)
    assert again == first and (first / "in-use-by-a-reader").is_file()
    assert not list(tmp_path.glob(".tmp-*"))  # its own copy discarded


def test_generators_started_together_render_the_dataset_once(tmp_path, monkeypatch):
    import threading

    real, writes = sd._write_dataset, []

    def counted(*args, **kwargs):
        writes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sd, "_write_dataset", counted)
    outs = []
    threads = [threading.Thread(target=lambda: outs.append(sd.generate(TINY, root=tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 2 and outs[0] == outs[1] and sd.is_complete(outs[0])
    assert writes == [1]  # the second waited for the lock and reused the first one's copy
