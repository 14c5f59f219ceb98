"""LIS: COCO-format annotations (polygons, RLE), class mapping, masks, splits, preparation, refusals.

The fixture is a LIS layout written here: ``annotations/lis_coco_png_{train,test}+1.json`` (dark
images 2, 4 | 6) and ``lis_coco_png_{train,test}.json`` (normal images 1, 3 | 5), raw files
``RAW-dark/<n>.CR2`` and ``RAW-normal/<n>.CR2`` (DNG containers under the CR2 name, as the LOD
fixture: LibRaw identifies raw files by content). Every mask is drawn here in NumPy first, then
written as the annotation (polygon, several polygons, uncompressed RLE, compressed RLE), so the
decoded masks can be compared with the drawn ones pixel for pixel.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ispbench.data import segmentation_sets as ss
from ispbench.data.lis import (
    LIS_TO_COCO80,
    LISDataset,
    category_key,
    check_segmentation,
    decode_masks,
    decode_segmentation,
    load_lis_annotations,
    prepare,
    read_masks,
    rle_string_counts,
    write_masks,
)
from ispbench.data.prepare import main
from ispbench.data.prepared import COCO80_NAMES, DatasetFormatError, DatasetMissingError, read_labels, read_split

from .conftest import H, W, bayer_fixture, write_dng

#: The categories as the authors' configs list them (id = position + 1).
LIS_CATEGORIES = ("bicycle", "chair", "diningtable", "bottle", "motorbike", "car", "tvmonitor", "bus")
CAT_ID = {name: k + 1 for k, name in enumerate(LIS_CATEGORIES)}


# ---------------------------------------------------------------- drawing and encoding masks
def rect(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def rect_polygon(y0: int, y1: int, x0: int, x1: int) -> list[float]:
    """The polygon whose rasterisation (pixel centres inside) is ``rect(y0, y1, x0, x1)``."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE: column-major run lengths, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, bool).flatten(order="F")
    counts, value, run = [], False, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return counts


def disc(cy: float, cx: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def drawn_instances(stem: int, scale: int = 1) -> list[dict]:
    """The instances of image ``stem`` at ``scale`` x the raw size: name, drawn mask, segmentation."""
    from pycocotools import mask as coco_mask

    h, w = H * scale, W * scale
    s = scale
    a = rect(4 * s, 28 * s, 6 * s, 18 * s, h, w)
    b = rect(2 * s, 6 * s, 24 * s, 40 * s, h, w) | rect(20 * s, 30 * s, 36 * s, 46 * s, h, w)
    c = disc(16 * s, 30 * s, 5 * s, h, w)
    d = rect(10 * s, 14 * s, 2 * s, 44 * s, h, w) & ~disc(12 * s, 23 * s, 1.5 * s, h, w)
    compressed = coco_mask.encode(np.asfortranarray(d.astype(np.uint8)))["counts"].decode("ascii")
    instances = [
        {"name": "chair", "mask": a, "segmentation": [rect_polygon(4 * s, 28 * s, 6 * s, 18 * s)]},
        {"name": "tvmonitor", "mask": b, "segmentation": [rect_polygon(2 * s, 6 * s, 24 * s, 40 * s),
                                                         rect_polygon(20 * s, 30 * s, 36 * s, 46 * s)]},
        {"name": "motorbike", "mask": c, "segmentation": {"size": [h, w], "counts": rle_counts(c)}},
        {"name": "diningtable", "mask": d, "segmentation": {"size": [h, w], "counts": compressed}},
    ]
    return instances[: 1 + stem % 4]


def coco_doc(stems, scale: int = 1, suffix: str = ".png", crowd: bool = False) -> dict:
    images, annotations = [], []
    for k, stem in enumerate(stems):
        images.append({"id": 100 + k, "file_name": f"{stem}{suffix}", "width": W * scale, "height": H * scale})
        for inst in drawn_instances(stem, scale):
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + k, "category_id": CAT_ID[inst["name"]],
                                "bbox": bbox_of(inst["mask"]), "area": float(inst["mask"].sum()),
                                "segmentation": inst["segmentation"], "iscrowd": 0})
    if crowd and images:
        m = rect(0, 8, 0, 8, H * scale, W * scale)
        annotations.append({"id": len(annotations) + 1, "image_id": 100, "category_id": CAT_ID["car"], "bbox": bbox_of(m),
                            "area": 64.0, "segmentation": {"size": [H * scale, W * scale], "counts": rle_counts(m)}, "iscrowd": 1})
    categories = [{"id": CAT_ID[n], "name": n, "supercategory": "none"} for n in LIS_CATEGORIES]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_json_file(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


DARK = {"train": (2, 4), "test": (6,)}
NORMAL = {"train": (1, 3), "test": (5,)}


def build_lis(root: Path, *, normal: bool = True, scale: int = 1, annotations: Path | None = None) -> Path:
    ann = annotations or root / "annotations"
    for split, stems in DARK.items():
        write_json_file(ann / f"lis_coco_png_{split}+1.json", coco_doc(stems, scale, crowd=split == "train"))
        for n in stems:
            write_dng(root / "RAW-dark" / f"{n}.CR2", bayer_fixture(n, top=400), iso=6400, exposure_time=1 / 50)
    if normal:
        for split, stems in NORMAL.items():
            write_json_file(ann / f"lis_coco_png_{split}.json", coco_doc(stems, scale))
            for n in stems:
                write_dng(root / "RAW-normal" / f"{n}.CR2", bayer_fixture(n), iso=100, exposure_time=1 / 4)
    return root


@pytest.fixture
def lis_root(tmp_path) -> Path:
    return build_lis(tmp_path / "LIS")


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------- class mapping
def test_the_eight_lis_classes_map_to_coco80():
    assert {n: COCO80_NAMES[LIS_TO_COCO80[category_key(n)]] for n in LIS_CATEGORIES} == {
        "bicycle": "bicycle", "chair": "chair", "diningtable": "dining table", "bottle": "bottle",
        "motorbike": "motorcycle", "car": "car", "tvmonitor": "tv", "bus": "bus",
    }
    assert [LIS_TO_COCO80[category_key(n)] for n in LIS_CATEGORIES] == [1, 56, 60, 39, 3, 2, 62, 5]
    # COCO spellings and other separators are the same classes
    assert LIS_TO_COCO80[category_key("Dining Table")] == LIS_TO_COCO80[category_key("dining_table")] == 60
    assert LIS_TO_COCO80[category_key("TV")] == LIS_TO_COCO80[category_key("tv-monitor")] == 62
    assert LIS_TO_COCO80[category_key("motorcycle")] == 3
    assert "person" not in LIS_TO_COCO80  # LIS has no person class (unlike LOD)


# ---------------------------------------------------------------- parsing and mask decoding
def test_parse_maps_classes_normalises_boxes_and_drops_crowd(tmp_path):
    path = write_json_file(tmp_path / "a.json", coco_doc((3,), crowd=True))  # 3 % 4 = 3: four instances
    doc = load_lis_annotations(path)
    info = doc["images"]["3"]
    assert (info["width"], info["height"], info["file_name"]) == (W, H, "3.png")
    assert info["labels"].tolist() == [56, 62, 3, 60]  # chair, tv, motorcycle, dining table
    # chair: x 6..18, y 4..28 in a 48 x 32 image -> centre (12, 16), size 12 x 24
    np.testing.assert_allclose(info["boxes"][0], [12 / 48, 16 / 32, 12 / 48, 24 / 32], atol=1e-6)
    assert doc["dropped_crowd"] == 1 and doc["dropped_zero_area"] == 0
    assert info["fields"] == ["annotations[0]", "annotations[1]", "annotations[2]", "annotations[3]"]


@pytest.mark.parametrize("scale", [1, 3])
def test_decoded_masks_equal_the_drawn_ones(tmp_path, scale):
    path = write_json_file(tmp_path / "a.json", coco_doc((3,), scale))
    info = load_lis_annotations(path)["images"]["3"]
    masks = decode_masks(info, path)
    drawn = np.stack([inst["mask"] for inst in drawn_instances(3, scale)])
    assert masks.dtype == bool and masks.shape == (4, H * scale, W * scale)
    for k, kind in enumerate(("one polygon", "two polygons", "uncompressed RLE", "compressed RLE")):
        assert np.array_equal(masks[k], drawn[k]), kind


def test_decode_segmentation_by_hand():
    # RLE counts are column-major and start with zeros: [1, 2, 3] in 2 x 3 -> column 0 = (0, 1), column 1 = (1, 0)
    assert decode_segmentation({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3).astype(int).tolist() == [[0, 1, 0], [1, 0, 0]]
    # a triangle (0,0)-(4,0)-(0,4): the pixel centres strictly inside the lower-left half
    tri = decode_segmentation([[0, 0, 4, 0, 0, 4]], 4, 4)
    assert tri[0, 0] and tri[0, 2] and not tri[3, 3] and not tri[2, 2]
    assert check_segmentation([[0, 0, 4, 0, 0, 4]], 4, 4, "x", "s") == "polygon"
    assert check_segmentation({"size": [2, 3], "counts": "123"}, 2, 3, "x", "s") == "rle-compressed"


def test_rle_strings_agree_with_pycocotools():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = rng.random((h, w)) < rng.random()
        encoded = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]
        assert rle_string_counts(encoded) == rle_counts(m)
        assert np.array_equal(decode_segmentation({"size": [h, w], "counts": encoded.decode()}, h, w), m)
    assert rle_string_counts("1232") == [1, 2, 3, 4]
    for bad in ("1\x7f", "1p", "1h"):  # outside '0'..'o'; 'h' = 0x38 has the continuation bit and nothing follows
        with pytest.raises(ValueError):
            rle_string_counts(bad)


def test_mask_file_round_trip_and_corrupt_file(tmp_path):
    masks = np.random.default_rng(1).random((3, 7, 5)) < 0.4
    path = write_masks(tmp_path / "m.npz", masks)
    assert np.array_equal(read_masks(path), masks)
    assert read_masks(write_masks(tmp_path / "e.npz", np.zeros((0, 7, 5), bool))).shape == (0, 7, 5)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetFormatError, match="m.npz: not a readable mask file"):
        read_masks(path)
    with pytest.raises(DatasetMissingError, match="mask file not found"):
        read_masks(tmp_path / "none.npz")


# ---------------------------------------------------------------- bad annotations: file and field
def _mutate(doc: dict, how: str) -> dict:
    doc = copy.deepcopy(doc)
    ann = doc["annotations"][0]
    if how == "unknown class":
        doc["categories"][1]["name"] = "horse"
    elif how == "short polygon":
        ann["segmentation"] = [[1, 1, 5, 5]]
    elif how == "odd polygon":
        ann["segmentation"] = [[1, 1, 5, 5, 3]]
    elif how == "text coordinate":
        ann["segmentation"] = [[1, "a", 5, 5, 3, 9]]
    elif how == "polygon outside":
        ann["segmentation"] = [[1, 1, 500, 1, 1, 9]]
    elif how == "rle size":
        ann["segmentation"] = {"size": [H + 1, W], "counts": [H * W]}
    elif how == "rle sum":
        ann["segmentation"] = {"size": [H, W], "counts": [5, 5]}
    elif how == "rle string":
        ann["segmentation"] = {"size": [H, W], "counts": "!!"}
    elif how == "rle without counts":
        ann["segmentation"] = {"size": [H, W]}
    elif how == "no segmentation":
        del ann["segmentation"]
    elif how == "segmentation number":
        ann["segmentation"] = 3
    elif how == "box outside":
        ann["bbox"] = [40.0, 0.0, 30.0, 5.0]
    elif how == "unknown image":
        ann["image_id"] = 999
    elif how == "unknown category":
        ann["category_id"] = 42
    elif how == "width":
        doc["images"][0]["width"] = -4
    return doc


@pytest.mark.parametrize(
    "how, field",
    [
        ("unknown class", "categories[1].name' is 'horse'"),
        ("short polygon", "annotations[0].segmentation[0]' is a list of 4 numbers"),
        ("odd polygon", "annotations[0].segmentation[0]' is a list of 5 numbers"),
        ("text coordinate", "annotations[0].segmentation[0][1]' is 'a'"),
        ("polygon outside", "annotations[0].segmentation[0]' spans x 1..500"),
        ("rle size", "annotations[0].segmentation.size' is [33, 48]"),
        ("rle sum", "annotations[0].segmentation.counts' covers 10 pixels; expected height * width = 1536"),
        ("rle string", "annotations[0].segmentation.counts' is not a compressed COCO RLE string"),
        ("rle without counts", "annotations[0].segmentation' is an object without 'size' and 'counts'"),
        ("no segmentation", "annotations[0].segmentation' is missing"),
        ("segmentation number", "annotations[0].segmentation' is int"),
        ("box outside", "annotations[0].bbox'"),
        ("unknown image", "annotations[0].image_id' 999 is not in 'images'"),
        ("unknown category", "annotations[0].category_id' 42 is not in 'categories'"),
        ("width", "images[0].width' is -4"),
    ],
)
def test_malformed_annotation_names_file_and_field(tmp_path, how, field):
    path = write_json_file(tmp_path / "lis_coco_png_test+1.json", _mutate(coco_doc((2, 3)), how))
    with pytest.raises(DatasetFormatError) as err:
        load_lis_annotations(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)


def test_unknown_class_stops_prepare_with_one_line(capsys, lis_root):
    path = lis_root / "annotations" / "lis_coco_png_test+1.json"
    write_json_file(path, _mutate(json.loads(path.read_text()), "unknown class"))
    rc, _, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert str(path) in err and "'horse'" in err and "tvmonitor" in err
    assert not (lis_root / "ispbench-prepared" / "linear").exists()  # checked before anything is written


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="bad.json: not valid JSON"):
        load_lis_annotations(bad)
    with pytest.raises(DatasetMissingError, match="none.json: annotation file not found"):
        load_lis_annotations(tmp_path / "none.json")


# ---------------------------------------------------------------- preparation and reading
def test_prepare_writes_dark_and_all_splits_and_masks(capsys, lis_root):
    rc, out, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 0, err
    assert "6 converted, 0 already done" in out
    prepared = lis_root / "ispbench-prepared"
    splits = {p.stem: read_split(p) for p in (prepared / "splits").glob("*.txt")}
    assert splits == {
        "dark_train": ["dark_2", "dark_4"], "dark_test": ["dark_6"], "dark_all": ["dark_2", "dark_4", "dark_6"],
        "all_train": ["normal_1", "dark_2", "normal_3", "dark_4"], "all_test": ["normal_5", "dark_6"],
        "all_all": ["normal_1", "dark_2", "normal_3", "dark_4", "normal_5", "dark_6"],
    }
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["subsets"] == ["dark", "all"]
    assert manifest["dropped_crowd"] == 1 and manifest["split_sizes"]["dark_test"] == 1
    assert manifest["classes"]["tvmonitor"] == "tv"
    labels, boxes = read_labels(prepared / "labels" / "dark_6.txt")  # 6 % 4 = 2: chair, tv, motorcycle
    assert labels.tolist() == [56, 62, 3]
    np.testing.assert_allclose(boxes[0], [12 / 48, 16 / 32, 12 / 48, 24 / 32], atol=1e-6)
    # a re-run skips finished items
    rc, out, _ = run(capsys, "lis", "--root", lis_root)
    assert rc == 0 and "0 converted, 6 already done" in out


def test_dark_items_hold_linear_raw_boxes_and_drawn_masks(lis_root):
    prepare(lis_root, log=lambda _: None)
    ds = LISDataset(lis_root, "test", "dark")
    assert len(ds) == 1 and ds.ids == ["dark_6"]
    item = ds[0]
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["labels"].tolist() == [56, 62, 3] and item["boxes"].shape == (3, 4)
    drawn = np.stack([inst["mask"] for inst in drawn_instances(6)])
    assert item["masks"].dtype == torch.bool and np.array_equal(item["masks"].numpy(), drawn)
    meta = item["meta"]
    assert meta["light"] == "dark" and meta["pair_id"] == "normal_5" and meta["iso"] == 6400
    assert meta["file"] == "RAW-dark/6.CR2" and meta["annotation"] == "annotations/lis_coco_png_test+1.json"
    assert meta["lis_split"] == "test" and meta["empty_masks"] == 0


def test_masks_are_letterboxed_with_the_image(lis_root):
    prepare(lis_root, log=lambda _: None)
    item = LISDataset(lis_root, "test", "dark", size=24)[0]  # 32 x 48 -> 16 x 24, 4 px bars top and bottom
    assert item["image"].shape == (3, 24, 24) and item["masks"].shape == (3, 24, 24)
    assert item["meta"]["pad"] == (4, 0)
    # the chair (rows 4..27, columns 6..17) halves to rows 2..13, columns 3..8, then moves down by 4
    assert np.array_equal(item["masks"][0].numpy(), rect(6, 18, 3, 9, 24, 24))
    assert not item["masks"][:, :4].any() and not item["masks"][:, 20:].any()


def test_annotations_larger_than_the_raw_image_are_scaled(tmp_path):
    root = build_lis(tmp_path / "LIS", normal=False, scale=2)  # annotations 96 x 64, raw 48 x 32
    prepare(root, log=lambda _: None)
    item = LISDataset(root, "train", "dark")[1]  # dark_4: 4 % 4 = 0 -> the chair only
    assert item["masks"].shape == (1, H, W) and np.array_equal(item["masks"][0].numpy(), rect(4, 28, 6, 18))
    assert json.loads((root / "ispbench-prepared" / "meta" / "dark_4.json").read_text())["annotation_size"] == [96, 64]


def test_load_segmentation_split_picks_lis_dark_and_lis_all(lis_root):
    prepare(lis_root, log=lambda _: None)
    dark = ss.load_segmentation_split(str(lis_root), "lis_dark", "test", 0, 32)
    assert len(dark) == 1 and dark.subset == "dark" and dark.split == "dark_test"
    every = ss.load_segmentation_split(str(lis_root), "lis_all", "val", 0, 32)  # val -> LIS's test set
    assert every.ids == ["normal_5", "dark_6"] and {every[i]["meta"]["light"] for i in range(2)} == {"dark", "normal"}
    assert len(ss.load_segmentation_split(str(lis_root), "lis_all", "train", 3, 32)) == 3
    batch = ss.collate_segmentation([every[0], every[1]])
    n = len(every[0]["labels"]) + len(every[1]["labels"])  # 5 % 4 = 1: two instances; 6: three
    assert batch["images"].shape == (2, 3, 32, 32) and batch["targets"].shape == (n, 6) == (5, 6)
    assert batch["masks"].shape == (5, 32, 32) and batch["masks"].dtype == torch.bool
    assert batch["targets"][:, 0].tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="masks"):
        ss.collate_segmentation([{k: v for k, v in every[0].items() if k != "masks"}])


def test_splits_and_annotations_from_another_folder(capsys, tmp_path):
    root = build_lis(tmp_path / "LOD", annotations=tmp_path / "LIS-annotations")  # raw files with LOD, JSON elsewhere
    rc, _, err = run(capsys, "lis", "--root", root)
    assert rc == 1 and "lis_coco_png_train+1.json" in err and "--splits" in err
    rc, out, err = run(capsys, "lis", "--root", root, "--splits", tmp_path / "LIS-annotations")
    assert rc == 0, err
    assert json.loads((root / "ispbench-prepared" / "manifest.json").read_text())["annotation_files"]["dark_test"] == str(
        tmp_path / "LIS-annotations" / "lis_coco_png_test+1.json")


def test_lis_all_without_normal_raw_files_is_explained(capsys, tmp_path):
    root = build_lis(tmp_path / "LIS", normal=False)
    logs: list[str] = []
    summary = prepare(root, log=logs.append)
    assert set(summary["splits"]) == {"dark_train", "dark_test", "dark_all"}
    assert any("LIS-Dark only" in line for line in logs)
    with pytest.raises(DatasetMissingError) as err:
        LISDataset(root, "test", "all")
    assert "RAW-normal/<n>.CR2" in str(err.value) and "available splits: dark_all, dark_test, dark_train" in str(err.value)


def test_limit_keeps_the_first_images_of_each_lighting(lis_root):
    summary = prepare(lis_root, limit=1, log=lambda _: None)
    assert summary["splits"]["dark_train"] == 1 and summary["splits"]["dark_test"] == 0 and summary["splits"]["all_train"] == 2


# ---------------------------------------------------------------- missing and mismatched files
def test_missing_download_names_files_and_sources(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "lis", "--root", tmp_path / "empty")
    assert rc == 1
    for needle in ("lis_coco_png_train+1.json", "github.com/Linwei-Chen/LIS", "github.com/ying-fu/LODDataset", "RAW-dark/<n>.CR2"):
        assert needle in err, (needle, err)


def test_missing_raw_file_and_missing_test_annotations(capsys, lis_root):
    (lis_root / "RAW-dark" / "4.CR2").unlink()
    rc, _, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 1 and "no dark raw file for 1 of 3 annotated images" in err and "RAW-dark/4.CR2" in err
    (lis_root / "annotations" / "lis_coco_png_test+1.json").unlink()
    rc, _, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 1 and "not the dark test ones" in err and "lis_coco_png_test+1.json" in err


def test_rendered_pngs_instead_of_raw_files_are_refused(capsys, tmp_path):
    import cv2

    root = tmp_path / "LIS"
    write_json_file(root / "annotations" / "lis_coco_png_train+1.json", coco_doc((2,)))
    write_json_file(root / "annotations" / "lis_coco_png_test+1.json", coco_doc((4,)))
    (root / "RAW-dark" / "JPEGImages").mkdir(parents=True)
    cv2.imwrite(str(root / "RAW-dark" / "JPEGImages" / "2.png"), np.zeros((H, W, 3), np.uint8))
    rc, _, err = run(capsys, "lis", "--root", root)
    assert rc == 1 and "found 0" in err and "rendered copies, not camera raw" in err and "JPEGImages" in err


def test_image_in_train_and_test_is_refused(capsys, lis_root):
    write_json_file(lis_root / "annotations" / "lis_coco_png_test+1.json", coco_doc((4, 6)))
    rc, _, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 1 and "1 dark images are in both" in err and "['4']" in err


def test_annotation_of_another_aspect_ratio_is_refused(capsys, lis_root):
    path = lis_root / "annotations" / "lis_coco_png_test+1.json"
    doc = json.loads(path.read_text())
    doc["images"][0].update(width=H, height=W)  # portrait annotation for a landscape raw file
    for ann in doc["annotations"]:
        ann["segmentation"], ann["bbox"] = [rect_polygon(1, 5, 1, 5)], [1.0, 1.0, 4.0, 4.0]
    write_json_file(path, doc)
    rc, _, err = run(capsys, "lis", "--root", lis_root)
    assert rc == 1 and str(path) in err and "does not match the aspect ratio" in err


# ---------------------------------------------------------------- refusals of the data choice
def test_paper_profile_refuses_the_embedded_data():
    with pytest.raises(DatasetMissingError) as err:
        ss.load_segmentation_split("", "lis_dark", "test", 0, 64, require_real=True)
    msg = str(err.value)
    assert "data_root is empty" in msg and "ispbench data prepare lis --root DIR" in msg and "lis_dark" in msg
    with pytest.raises(DatasetMissingError, match="dataset is 'embedded'"):
        ss.load_segmentation_split("/some/dir", "embedded", "test", 0, 64, require_real=True)


def test_empty_data_root_gives_the_embedded_split(monkeypatch):
    calls = []
    monkeypatch.setattr(ss, "embedded_split", lambda *a, **kw: calls.append((a, kw)) or "embedded")
    assert ss.load_segmentation_split("", "lis_all", "val", 5, 160) == "embedded"
    assert calls == [(("val", "low", "", 5), {"with_masks": True})]


def test_missing_or_unprepared_data_root_and_bad_names(tmp_path):
    missing = tmp_path / "no_such_LIS"
    with pytest.raises(DatasetMissingError) as err:
        ss.load_segmentation_split(str(missing), "lis_dark", "test", 0, 64)
    assert str(missing) in str(err.value) and "ispbench data prepare lis --root" in str(err.value)
    with pytest.raises(DatasetMissingError, match="ispbench data prepare lis"):
        ss.load_segmentation_split(str(tmp_path), "lis_dark", "test", 0, 64)
    with pytest.raises(ValueError, match="dataset"):
        ss.load_segmentation_split(str(tmp_path), "lod", "test", 0, 64)
    with pytest.raises(ValueError, match="split"):
        ss.load_segmentation_split(str(tmp_path), "lis_dark", "holdout", 0, 64)
    with pytest.raises(ValueError, match="subset"):
        LISDataset(tmp_path, "test", "normal")
