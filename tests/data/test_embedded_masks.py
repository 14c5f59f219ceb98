"""Instance masks of the embedded detection set: stored maps, re-rendering for old folders, the polygon export."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from ispbench.data import synthetic_detection as sd

TINY = sd.GeneratorConfig(seed=3, image_size=64, n_train=6, n_val=3, n_test=2, min_size=0.2, max_size=0.45)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return sd.generate(TINY, root=tmp_path_factory.mktemp("embedded_masks"))


def _copy_without(tmp_path, src, *names):
    """A copy of the dataset folder ``src`` with the sub-folders ``names`` removed (a folder from before masks)."""
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    for name in names:
        shutil.rmtree(dst / name)
    return dst


def _tight_box(mask: np.ndarray) -> np.ndarray:
    """Normalised ``cx, cy, w, h`` of the pixels of ``mask`` (H, W)."""
    s = mask.shape[0]
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([(x0 + x1) / 2 / s, (y0 + y1) / 2 / s, (x1 - x0) / s, (y1 - y0) / s])


def _even_odd_fill(polygon: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixels whose centre is inside ``polygon`` (P, 2) (continuous pixel coordinates) by the even-odd rule."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    inside = np.zeros((h, w), bool)
    a, b = polygon, np.roll(polygon, -1, axis=0)
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        if y1 == y2:
            continue
        crosses = ((y1 > yy) != (y2 > yy)) & (xx < x1 + (yy - y1) * (x2 - x1) / (y2 - y1))
        inside ^= crosses
    return inside


def test_instance_id_map_assigns_the_largest_visible_coverage():
    cov = np.zeros((3, 2, 4), np.float32)
    cov[0] = [[0.9, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]]
    cov[1] = [[0.1, 0.4, 0.7, 0.5], [0.0, 0.0, 0.0, 0.0]]  # 0.5 is not "above 0.5": background
    cov[2, 1] = [0.2, 0.51, 1.0, 0.0]
    np.testing.assert_array_equal(sd.instance_id_map(cov), [[1, 1, 2, 0], [0, 3, 3, 0]])
    assert sd.instance_id_map(np.zeros((0, 2, 2))).tolist() == [[0, 0], [0, 0]]
    masks = sd.masks_from_ids(sd.instance_id_map(cov), 3)
    assert masks.dtype == bool and masks.sum((1, 2)).tolist() == [2, 1, 2]
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        sd.instance_id_map(np.zeros((4, 4)))


def test_masks_are_stored_and_match_the_boxes(tiny_dir):
    for split in sd.SPLITS:
        ids = sd.load_masks(tiny_dir, split)
        labels = json.loads((tiny_dir / "labels" / f"{split}.json").read_text())
        assert ids.shape == (TINY.counts[split], 64, 64) and ids.dtype == np.uint8
        for i, entry in enumerate(labels):
            assert int(ids[i].max()) == len(entry["labels"])  # every listed object owns pixels, nothing else does
            for k, box in enumerate(entry["boxes"]):
                np.testing.assert_allclose(_tight_box(ids[i] == k + 1), box, atol=1e-6)
            # the stored map is what the scene renders to
            np.testing.assert_array_equal(ids[i], sd.instance_id_map(sd.render_scene(TINY, split, i)["masks"]))
    ds = sd.load_split("val", "low", root=tiny_dir, with_masks=True)
    item = ds[1]
    assert item["masks"].dtype == torch.bool and item["masks"].shape == (len(item["labels"]), 64, 64)
    assert torch.equal(item["masks"], torch.from_numpy(sd.masks_from_ids(sd.load_masks(tiny_dir, "val")[1], len(item["labels"]))))
    assert "masks" not in sd.load_split("val", "low", root=tiny_dir)[1]  # the detection path reads no masks


def test_ensure_masks_rewrites_a_folder_from_before_masks(tiny_dir, tmp_path):
    old = _copy_without(tmp_path, tiny_dir, "masks")
    with pytest.raises(FileNotFoundError, match="ensure_masks"):
        sd.EmbeddedDetection(old, "train", "low", with_masks=True)
    assert sd.ensure_masks(old) == old
    for split in sd.SPLITS:
        np.testing.assert_array_equal(sd.load_masks(old, split), sd.load_masks(tiny_dir, split))
    assert not list((old / "masks").glob(".*.tmp"))  # written atomically: no temporary file left
    before = (old / "masks" / "train.npz").stat().st_mtime_ns
    sd.ensure_masks(old)  # a no-op once written
    assert (old / "masks" / "train.npz").stat().st_mtime_ns == before
    # load_split(..., with_masks=True) writes them itself
    again = _copy_without(tmp_path / "again", tiny_dir, "masks")
    assert sd.load_split("test", "normal", root=again, with_masks=True)[0]["masks"].any()
    assert (again / "masks" / "test.npz").exists()


def test_ensure_masks_refuses_labels_the_generator_does_not_reproduce(tiny_dir, tmp_path):
    old = _copy_without(tmp_path, tiny_dir, "masks")
    labels_file = old / "labels" / "val.json"
    labels = json.loads(labels_file.read_text())
    labels[2]["boxes"][0][0] += 0.01
    labels_file.write_text(json.dumps(labels))
    with pytest.raises(ValueError, match=r"val\.json: scene val_00002") as info:
        sd.ensure_masks(old)
    assert "Regenerate" in str(info.value)
    assert not (old / "masks" / "val.npz").exists()


def test_mask_polygon_of_a_ring_and_of_two_parts():
    ring = np.zeros((40, 40), bool)
    yy, xx = np.mgrid[0:40, 0:40]
    r = np.hypot(yy - 19.5, xx - 19.5)
    ring[(r < 15) & (r > 7)] = True
    two = np.zeros((40, 40), bool)
    two[3:15, 4:20] = True
    two[25:37, 10:30] = True  # a part 10 px away, larger than its cut: kept
    for mask in (ring, two):
        poly = sd.mask_polygon(mask)
        np.testing.assert_array_equal(_even_odd_fill(poly, 40, 40), mask)  # the hole stays a hole, both parts filled
        ys, xs = np.nonzero(mask)
        np.testing.assert_allclose(poly.min(0), [xs.min(), ys.min()], atol=0.125 + 1e-9)
        np.testing.assert_allclose(poly.max(0), [xs.max() + 1, ys.max() + 1], atol=0.125 + 1e-9)
    sliver = two.copy()
    sliver[0, 39] = True  # one pixel far from everything: cheaper left out than cut to
    assert _even_odd_fill(sd.mask_polygon(sliver), 40, 40).sum() == two.sum()
    with pytest.raises(ValueError, match="empty"):
        sd.mask_polygon(np.zeros((4, 4), bool))


def test_seg_export_polygons_rasterise_to_the_masks(tiny_dir):
    from ispbench.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics.data.utils import polygon2mask

    data_yaml = (tiny_dir / "yolo_seg" / "data.yaml").read_text()
    assert "nc: 5" in data_yaml and f"path: {tiny_dir / 'yolo_seg'}" in data_yaml
    low_yaml = (tiny_dir / "yolo_seg_low" / "data.yaml").read_text()
    assert f"train: {tiny_dir / 'yolo_seg' / 'images' / 'train'}" in low_yaml
    n_instances = 0
    for base, splits in (("yolo_seg", sd.SPLITS), ("yolo_seg_low", ("val", "test"))):
        source = "yolo" if base == "yolo_seg" else "yolo_low"
        for split in splits:
            ids = sd.load_masks(tiny_dir, split)
            labels = json.loads((tiny_dir / "labels" / f"{split}.json").read_text())
            for i, entry in enumerate(labels):
                png = tiny_dir / base / "images" / split / f"{entry['scene_id']}.png"
                assert png.read_bytes() == (tiny_dir / source / "images" / split / png.name).read_bytes()
                lines = (tiny_dir / base / "labels" / split / f"{entry['scene_id']}.txt").read_text().splitlines()
                assert [int(line.split()[0]) for line in lines] == entry["labels"]
                for k, line in enumerate(lines):
                    poly = np.array(line.split()[1:], np.float64).reshape(-1, 2) * 64
                    truth = ids[i] == k + 1
                    for raster in (polygon2mask((64, 64), [poly.reshape(-1)]).astype(bool), _even_odd_fill(poly, 64, 64)):
                        iou = (raster & truth).sum() / (raster | truth).sum()
                        if truth.sum() >= 64:
                            assert iou > 0.9, (split, entry["scene_id"], k, iou)
                        else:  # an occlusion sliver (>= 16 px): a left-out speck or a cut line costs a pixel or three
                            assert (raster ^ truth).sum() <= 3, (split, entry["scene_id"], k, iou)
                    n_instances += 1
    assert n_instances >= 20


def test_ensure_seg_export_on_a_folder_without_it(tiny_dir, tmp_path):
    old = _copy_without(tmp_path, tiny_dir, "masks", "yolo_seg", "yolo_seg_low")
    data_yaml = sd.ensure_seg_export(old)
    assert data_yaml == old / "yolo_seg" / "data.yaml" and data_yaml.exists()
    for split in sd.SPLITS:
        names = sorted(p.name for p in (old / "yolo_seg" / "labels" / split).iterdir())
        assert names == sorted(p.name for p in (tiny_dir / "yolo_seg" / "labels" / split).iterdir())
        for name in names:
            assert (old / "yolo_seg" / "labels" / split / name).read_text() == (tiny_dir / "yolo_seg" / "labels" / split / name).read_text()
    png = old / "yolo_seg" / "images" / "val" / "val_00000.png"
    assert os.path.samefile(png, old / "yolo" / "images" / "val" / "val_00000.png")  # a hard link, not a copy
    assert not list(old.glob(".tmp-seg-*"))
    assert sd.ensure_seg_export(old) == data_yaml  # a no-op once written
