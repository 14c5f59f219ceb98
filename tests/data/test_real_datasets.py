"""Loaders of the real datasets: annotation parsing, box conventions, resizing, collation, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ispbench.data import REAL_DATASETS, get_dataset
from ispbench.data.lod import LOD_TO_COCO80, LODDataset, parse_voc_xml
from ispbench.data.oneplus import parse_labelme, read_bayer_png
from ispbench.data.preparation import (
    coco_xywh_to_cxcywh_norm,
    demosaic_bilinear,
    write_labels,
    write_manifest,
    write_png16,
    write_split,
    xyxy_to_cxcywh_norm,
)
from ispbench.data.prepared import (
    COCO80_NAMES,
    COCO91_TO_80,
    DatasetFormatError,
    DatasetMissingError,
    collate_detection,
    collate_finishing,
    read_labels,
    read_png16,
    resize_sample,
)

from .conftest import labelme_json, voc_xml


# ---------------------------------------------------------------- class tables and boxes
def test_class_tables_point_at_the_right_coco_names():
    assert {k: COCO80_NAMES[v] for k, v in LOD_TO_COCO80.items() if k in {"motorbike", "diningtable", "bottle", "chair"}} == {
        "motorbike": "motorcycle", "diningtable": "dining table", "bottle": "bottle", "chair": "chair",
    }
    assert COCO91_TO_80[1] == 0 and COCO91_TO_80[90] == 79 and COCO80_NAMES[COCO91_TO_80[23]] == "bear"
    assert COCO80_NAMES[COCO91_TO_80[67]] == "dining table"


def test_box_conversions_by_hand():
    # corners (10, 20, 30, 60) in a 100 (w) x 200 (h) image: centre (20, 40), size 20 x 40
    np.testing.assert_allclose(xyxy_to_cxcywh_norm([[10, 20, 30, 60]], 100, 200), [[0.2, 0.2, 0.2, 0.2]])
    # COCO x, y, w, h = (6, 4, 12, 20) in 60 x 40: centre (12, 14)
    np.testing.assert_allclose(coco_xywh_to_cxcywh_norm([[6, 4, 12, 20]], 60, 40), [[0.2, 0.35, 0.2, 0.5]])
    # clipping: a box leaving the image on the right keeps only the inside part
    np.testing.assert_allclose(xyxy_to_cxcywh_norm([[80, 0, 120, 100]], 100, 100), [[0.9, 0.5, 0.2, 1.0]])


def test_parse_voc_xml_maps_classes_and_normalises(tmp_path):
    path = voc_xml(tmp_path / "2.xml", 480, 320, [("person", 48, 32, 144, 224), ("motorbike", 0, 0, 480, 320)])
    ann = parse_voc_xml(path)
    assert ann["labels"].tolist() == [0, 3]
    np.testing.assert_allclose(ann["boxes"][0], [0.2, 0.4, 0.2, 0.6], atol=1e-6)
    np.testing.assert_allclose(ann["boxes"][1], [0.5, 0.5, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("<annotation><size><width>10", "not a parsable VOC XML"),
        ("<annotation><object><name>person</name></object></annotation>", "'size'"),
        ("<annotation><size><width>10</width></size></annotation>", "size/height"),
        ("<annotation><size><width>10</width><height>10</height></size><object><name>horse</name></object></annotation>", "'horse'"),
        (
            "<annotation><size><width>10</width><height>10</height></size><object><name>car</name>"
            "<bndbox><xmin>1</xmin><ymin>a</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>",
            "object[0]/bndbox/ymin",
        ),
    ],
)
def test_parse_voc_xml_errors_name_file_and_field(tmp_path, text, needle):
    path = tmp_path / "7.xml"
    path.write_text(text)
    with pytest.raises(DatasetFormatError) as err:
        parse_voc_xml(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_parse_labelme_rectangle_and_polygon(tmp_path):
    path = labelme_json(tmp_path / "1.json", "1.png", 48, 32,
                        [("Person", [[18, 28], [6, 4]], "rectangle"), ("car", [[24, 0], [48, 16], [30, 10]], "polygon")])
    ann = parse_labelme(path)
    assert ann["labels"].tolist() == [0, 2]
    # rectangle corners given in any order: x 6..18, y 4..28 -> centre (12, 16), size 12 x 24
    np.testing.assert_allclose(ann["boxes"][0], [12 / 48, 16 / 32, 12 / 48, 24 / 32], atol=1e-6)
    np.testing.assert_allclose(ann["boxes"][1], [36 / 48, 8 / 32, 24 / 48, 16 / 32], atol=1e-6)


def test_parse_labelme_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid labelme JSON"):
        parse_labelme(bad)
    path = labelme_json(tmp_path / "2.json", "2.png", 48, 32, [("truck", [[0, 0], [4, 4]], "rectangle")])
    with pytest.raises(DatasetFormatError, match=r"field 'shapes\[0\]\.label' is 'truck'"):
        parse_labelme(path)
    path.write_text(json.dumps({"shapes": []}))
    with pytest.raises(DatasetFormatError, match="missing field 'imageWidth'"):
        parse_labelme(path)


def test_read_bayer_png_checks_bit_depth(tmp_path):
    import cv2

    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.full((4, 4), 1023, np.uint16))
    assert read_bayer_png(ok).max() == 1.0
    too_big = tmp_path / "big.png"
    cv2.imwrite(str(too_big), np.full((4, 4), 4000, np.uint16))
    with pytest.raises(DatasetFormatError, match="exceeds 1023"):
        read_bayer_png(too_big)
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="single-channel 16-bit"):
        read_bayer_png(rgb)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(ok.read_bytes()[:20])
    with pytest.raises(DatasetFormatError, match="corrupt or truncated"):
        read_bayer_png(corrupt)


def test_demosaic_keeps_samples_and_recovers_flat_colours():
    rgb = np.array([0.8, 0.4, 0.1], np.float32)
    bayer = np.empty((6, 8), np.float32)
    bayer[0::2, 0::2] = rgb[0]
    bayer[0::2, 1::2] = rgb[1]
    bayer[1::2, 0::2] = rgb[1]
    bayer[1::2, 1::2] = rgb[2]
    out = demosaic_bilinear(bayer, "RGGB")
    np.testing.assert_allclose(out, np.broadcast_to(rgb, out.shape), atol=1e-6)
    with pytest.raises(ValueError, match="even H and W"):
        demosaic_bilinear(np.zeros((3, 4)))


# ---------------------------------------------------------------- prepared-format files
def test_png16_round_trip_and_corrupt_file(tmp_path):
    x = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    x[0, 0] = [1.5, -0.2, 0.5]
    path = write_png16(tmp_path / "a.png", x)
    y = read_png16(path)
    assert y.dtype == np.float32 and y.shape == (5, 7, 3)
    assert np.abs(y[1:] - x[1:]).max() <= 0.5 / 65535 + 1e-7
    np.testing.assert_allclose(y[0, 0], [1.0, 0.0, round(0.5 * 65535) / 65535])  # clipped
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DatasetFormatError, match="a.png: not a decodable PNG"):
        read_png16(path)


def test_label_file_errors_name_line(tmp_path):
    path = write_labels(tmp_path / "x.txt", [0, 79], np.array([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]))
    labels, boxes = read_labels(path)
    assert labels.tolist() == [0, 79] and boxes.shape == (2, 4)
    path.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DatasetFormatError, match=r"x.txt:1: expected 5 fields"):
        read_labels(path)
    path.write_text("0 0.5 0.5 0.2 0.2\n80 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetFormatError, match=r"x.txt:2: class 80 outside"):
        read_labels(path)


def _prepared_detection(root, name="lod", ids=("2", "4"), shape=(40, 80)):
    out = root / "ispbench-prepared"
    rng = np.random.default_rng(3)
    for k, i in enumerate(ids):
        write_png16(out / "linear" / f"{i}.png", rng.random((*shape, 3)) * 0.1)
        write_labels(out / "labels" / f"{i}.txt", [0, 60][: k + 1], np.array([[0.5, 0.5, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5]])[: k + 1])
        (out / "meta").mkdir(exist_ok=True)
        (out / "meta" / f"{i}.json").write_text(json.dumps({"iso": 6400, "exposure_time": 0.02, "camera": "Canon EOS 5D Mark IV", "file": f"RAW_dark/{i}.CR2"}))
    write_split(out / "splits" / "val.txt", ids)
    write_manifest(out, name)
    return out


def test_detection_loader_items_and_collate(tmp_path):
    _prepared_detection(tmp_path)
    ds = LODDataset(tmp_path, "val")
    assert len(ds) == 2
    item = ds[1]
    assert item["image"].shape == (3, 40, 80) and item["image"].dtype == torch.float32
    assert item["labels"].dtype == torch.int64 and item["labels"].tolist() == [0, 60]
    assert item["meta"]["iso"] == 6400 and item["meta"]["file"] == "RAW_dark/4.CR2" and item["meta"]["id"] == "4"
    batch = collate_detection([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 40, 80)
    assert batch["targets"].shape == (3, 6)
    assert batch["targets"][:, 0].tolist() == [0, 1, 1] and batch["targets"][:, 1].tolist() == [0, 0, 60]


def test_letterbox_adjusts_boxes_by_hand(tmp_path):
    _prepared_detection(tmp_path)
    ds = LODDataset(tmp_path, "val", size=40)  # 40 x 80 -> scale 0.5 -> 20 x 40, 10 px bars top and bottom
    item = ds[1]
    assert item["image"].shape == (3, 40, 40)
    assert item["meta"]["pad"] == (10, 0) and item["meta"]["scale"] == (0.5, 0.5)
    assert float(item["image"][:, :10].abs().max()) == 0.0  # black padding
    np.testing.assert_allclose(item["boxes"][0].numpy(), [0.5, 0.5, 0.5, 0.25], atol=1e-6)
    np.testing.assert_allclose(item["boxes"][1].numpy(), [0.25, (0.75 * 20 + 10) / 40, 0.5, 0.25], atol=1e-6)
    plain = LODDataset(tmp_path, "val", size=(20, 20), resize="plain")[1]
    assert plain["image"].shape == (3, 20, 20)
    np.testing.assert_allclose(plain["boxes"][1].numpy(), [0.25, 0.75, 0.5, 0.5], atol=1e-6)


def test_collate_refuses_mixed_sizes(tmp_path):
    a = {"image": torch.zeros(3, 4, 4), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "meta": {}}
    b = {"image": torch.zeros(3, 4, 6), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "meta": {}}
    with pytest.raises(ValueError, match="size="):
        collate_detection([a, b])
    out = collate_detection([a, a])
    assert out["targets"].shape == (0, 6)


def test_loader_errors_missing_prepare_split_and_corrupt_file(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"ispbench data prepare lod --root"):
        LODDataset(tmp_path, "val")
    out = _prepared_detection(tmp_path)
    with pytest.raises(DatasetMissingError, match=r"splits/train.txt not found; available splits: val"):
        LODDataset(tmp_path, "train")
    with pytest.raises(DatasetFormatError, match="'dataset' is 'lod', expected 'oneplus'"):
        get_dataset("oneplus", tmp_path, "val")
    (out / "linear" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = LODDataset(tmp_path, "val")
    with pytest.raises(DatasetFormatError, match=r"linear/4.png: not a decodable PNG"):
        ds[1]
    (out / "linear" / "4.png").unlink()
    with pytest.raises(DatasetMissingError, match=r"4.png listed in split 'val' is missing"):
        ds[1]
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        get_dataset("kitti", tmp_path)
    assert set(REAL_DATASETS) == {"lod", "lis", "oneplus", "coco_raw", "fivek", "hdrplus"}


def test_finishing_loader_and_collate(tmp_path):
    out = tmp_path / "ispbench-prepared"
    rng = np.random.default_rng(4)
    for i in ("s1", "s2"):
        write_png16(out / "linear" / f"{i}.png", rng.random((16, 24, 3)))
        write_png16(out / "goal" / f"{i}.png", rng.random((16, 24, 3)))
    write_split(out / "splits" / "all.txt", ["s1", "s2"])
    write_manifest(out, "hdrplus")
    from ispbench.data.hdrplus import HDRPlusDataset

    ds = HDRPlusDataset(tmp_path, size=8)
    item = ds[0]
    assert item["image"].shape == (3, 8, 8) and item["goal"].shape == (3, 8, 8)
    batch = collate_finishing([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 8, 8) and batch["goals"].shape == (2, 3, 8, 8)
    write_png16(out / "goal" / "s2.png", rng.random((8, 8, 3)))
    with pytest.raises(DatasetFormatError, match=r"goal/s2.png has shape"):
        HDRPlusDataset(tmp_path)[1]


def test_resize_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resize: expected"):
        resize_sample(torch.zeros(3, 4, 4), None, 2, "crop")
    with pytest.raises(ValueError, match="size: expected positive"):
        resize_sample(torch.zeros(3, 4, 4), None, 0)


def test_read_exif_from_dng_fixture(tmp_path):
    from ispbench.data.preparation import read_exif

    from .conftest import _tifffile_dng, bayer_fixture

    path = tmp_path / "x.dng"
    _tifffile_dng(path, bayer_fixture(0), iso=3200, exposure_time=1 / 25)
    meta = read_exif(path)
    assert meta["iso"] == 3200 and abs(meta["exposure_time"] - 0.04) < 1e-9 and meta["camera"] == "ispbench fixture"
    (tmp_path / "broken.dng").write_bytes(b"nope")
    assert read_exif(tmp_path / "broken.dng") == {"iso": None, "exposure_time": None, "camera": None}
