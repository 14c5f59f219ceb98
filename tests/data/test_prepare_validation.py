"""``ispbench data prepare`` validates what it reads (one test per probe of the reliability issue).

Each test builds a tiny download in the real format, breaks one thing, runs the command line and
checks: exit status, one stderr line naming the file and the field, and that the output folder
holds nothing half-written (no temporary files, every item either complete or absent).
"""

from __future__ import annotations

import io
import json
import tarfile
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from ispbench.data.prepare import main
from ispbench.data.prepared import DatasetMissingError, read_labels

from .conftest import H, W, bayer_fixture, labelme_json, voc_xml, write_dng

ITEM_PARTS = {
    "coco_raw": ("meta/.json", "labels/.txt", "linear/.png"),
    "oneplus": ("meta/.json", "labels/.txt", "linear/.png"),
    "lod": ("meta/.json", "labels/.txt", "linear/.png"),
    "fivek": ("meta/.json", "goal/.png", "linear/.png"),
}


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def refused(capsys, name, root, *extra, needles=(), rc_expected=1):
    """Run ``prepare name`` into ``root/out``; check the refusal and the output folder; return stderr."""
    out = root / "out"
    rc, _, err = run(capsys, name, "--root", root, "--out", out, *extra)
    assert rc == rc_expected, err
    assert err.strip() and "\n" not in err.strip(), f"expected one line, got {err!r}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert_nothing_half_written(out, ITEM_PARTS.get(name, ()))
    return err


def assert_nothing_half_written(out: Path, parts) -> None:
    if not out.exists():
        return
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp") or ".tmp" in p.name], files
    ids = {p.stem for p in files if p.parent.name in {"linear", "labels", "meta", "goal"}}
    for item_id in ids:
        present = [(out / sub / f"{item_id}{suffix}").is_file() for sub, suffix in (q.split("/") for q in parts)]
        assert all(present) or not any(present), (item_id, present)
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("status") != "complete":
        assert not (out / "splits").exists()  # an unfinished run writes no split files


def write_coco(root: Path, mutate=None) -> Path:
    from ispbench.data.prepared import COCO80_CATEGORY_IDS, COCO80_NAMES

    (root / "val2017").mkdir(parents=True)
    cv2.imwrite(str(root / "val2017" / "000000000139.jpg"), np.full((40, 60, 3), 100, np.uint8))
    doc = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "width": 60, "height": 40}],
        "annotations": [{"id": 1, "image_id": 139, "category_id": 1, "bbox": [6.0, 4.0, 12.0, 20.0], "iscrowd": 0}],
        "categories": [{"id": c, "name": COCO80_NAMES[i]} for i, c in enumerate(COCO80_CATEGORY_IDS)],
    }
    if mutate is not None:
        mutate(doc)
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(doc))  # json writes NaN as NaN, which Python's json reads back
    return path


def write_oneplus(root: Path, boxes=None, **fields) -> Path:
    (root / "data").mkdir(parents=True)
    cv2.imwrite(str(root / "data" / "0001.png"), bayer_fixture(1, top=1023))
    path = labelme_json(root / "data" / "0001.json", "0001.png", W, H, boxes or [("person", [[6, 4], [18, 28]], "rectangle")])
    if fields:
        doc = json.loads(path.read_text())
        doc.update(fields)
        path.write_text(json.dumps(doc))
    return path


def quiet_dng(path: Path, bayer: np.ndarray, **kw) -> Path:
    with warnings.catch_warnings():  # the DNG writer warns about counts above the white level
        warnings.simplefilter("ignore")
        return write_dng(path, bayer, **kw)


def write_fivek(root: Path, goal: np.ndarray, bayer=None, white_level=4095) -> tuple[Path, Path]:
    import tifffile

    stem = "a0001-fixture_DSC1"
    dng = quiet_dng(root / "raw_photos" / "HQa1to700" / "photos" / f"{stem}.dng",
                    bayer_fixture(1) if bayer is None else bayer, white_level=white_level)
    (root / "expertC").mkdir(parents=True)
    tif = root / "expertC" / f"{stem}.tif"
    tifffile.imwrite(tif, goal, photometric="rgb")
    return dng, tif


def write_lod(root: Path, objects=None) -> None:
    for n in (2, 4):
        quiet_dng(root / "RAW_dark" / f"{n}.CR2", bayer_fixture(n))
        voc_xml(root / "RAW-dark-Annotations" / f"{n}.xml", W * 10, H * 10,
                objects if (objects is not None and n == 4) else [("person", 48, 32, 144, 224)])


# ---------------------------------------------------------------- probe: malformed COCO fields
def _del(key, where):
    return lambda d: where(d).pop(key)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (_del("id", lambda d: d["categories"][0]), "categories[0].id"),  # was KeyError: 'id'
        (lambda d: d["annotations"][0].update(bbox=["a", 4, 12, 20]), "annotations[0].bbox[0]"),  # was TypeError
        (lambda d: d["annotations"][0].update(category_id="x"), "annotations[0].category_id"),  # was ValueError
        (lambda d: d["annotations"][0].update(category_id=12), "annotations[0].category_id"),  # 12 is a gap in 1..90
        (lambda d: d["annotations"][0].update(iscrowd=2), "annotations[0].iscrowd"),
        (lambda d: d["annotations"][0].update(bbox=[6, 4, 12]), "annotations[0].bbox"),
        (lambda d: d["annotations"][0].update(bbox=[6, 4, -12, 20]), "annotations[0].bbox"),
        (lambda d: d["annotations"][0].update(bbox=[100, 4, 12, 20]), "annotations[0].bbox"),  # outside the 60x40 image
        (_del("image_id", lambda d: d["annotations"][0]), "annotations[0].image_id"),
        (lambda d: d["annotations"].__setitem__(0, "box"), "annotations[0]"),
        (lambda d: d["images"][0].update(width="abc"), "images[0].width"),
        (lambda d: d["images"][0].update(height=0), "images[0].height"),
        (lambda d: d["images"][0].update(id=True), "images[0].id"),
    ],
)
def test_coco_malformed_field_names_file_and_field(capsys, tmp_path, mutate, field):
    path = write_coco(tmp_path / "coco", mutate)
    refused(capsys, "coco_raw", tmp_path / "coco", needles=(str(path), f"'{field}'"))
    assert not (tmp_path / "coco" / "out").exists()  # annotations are checked before anything is written


def test_coco_nan_box_is_refused_not_written(capsys, tmp_path):
    path = write_coco(tmp_path / "coco", lambda d: d["annotations"][0].update(bbox=[float("nan"), 4.0, 12.0, 20.0]))
    assert "NaN" in path.read_text()
    err = refused(capsys, "coco_raw", tmp_path / "coco", needles=(str(path), "'annotations[0].bbox[0]'", "finite"))
    assert "nan" in err
    assert not (tmp_path / "coco" / "out").exists()


def test_coco_box_slightly_outside_is_clipped(tmp_path):
    from ispbench.data.coco_raw import load_coco_annotations

    # 0.5 px past the right border: within the tolerance (annotation tools round), clipped to the image
    path = write_coco(tmp_path / "coco", lambda d: d["annotations"][0].update(bbox=[50.0, 4.0, 10.5, 20.0]))
    boxes = load_coco_annotations(path)["boxes"][139]
    np.testing.assert_allclose(boxes[0], [55 / 60, 14 / 40, 10 / 60, 20 / 40], atol=1e-6)


# ---------------------------------------------------------------- probe: malformed labelme fields
@pytest.mark.parametrize(
    "shapes, fields, field",
    [
        (None, {"imageWidth": "abc"}, "imageWidth"),  # was: could not convert string to float
        (None, {"imageHeight": float("nan")}, "imageHeight"),
        (None, {"shapes": {"a": 1}}, "shapes"),
        ([("person", [["a", 4], [18, 28]], "rectangle")], {}, "shapes[0].points[0][0]"),
        ([("person", [[float("nan"), 4], [18, 28]], "rectangle")], {}, "shapes[0].points[0][0]"),
        ([("person", [[6, 4]], "rectangle")], {}, "shapes[0].points"),
        ([("person", [[6, 4, 1], [18, 28]], "rectangle")], {}, "shapes[0].points[0]"),
        ([("person", [[60, 4], [90, 28]], "rectangle")], {}, "shapes[0].points"),  # outside the 48x32 image
        ([("truck", [[6, 4], [18, 28]], "rectangle")], {}, "shapes[0].label"),  # unknown class
    ],
)
def test_labelme_malformed_field_names_file_and_field(capsys, tmp_path, shapes, fields, field):
    path = write_oneplus(tmp_path / "op", shapes, **fields)
    refused(capsys, "oneplus", tmp_path / "op", needles=(str(path), f"'{field}'"))
    assert not (tmp_path / "op" / "out").exists()


def test_labelme_label_not_a_string(capsys, tmp_path):
    path = write_oneplus(tmp_path / "op")
    doc = json.loads(path.read_text())
    doc["shapes"][0]["label"] = 3
    path.write_text(json.dumps(doc))
    refused(capsys, "oneplus", tmp_path / "op", needles=(str(path), "'shapes[0].label' is 3"))


# ---------------------------------------------------------------- VOC XML (LOD)
@pytest.mark.parametrize(
    "objects, field",
    [
        ([("person", "nan", 32, 144, 224)], "object[0]/bndbox/xmin"),
        ([("person", 48, 32, 144, "inf")], "object[0]/bndbox/ymax"),
        ([("person", 400, 32, 600, 224)], "object[0]/bndbox"),  # xmax 600 > width 480
        ([("truck", 48, 32, 144, 224)], "object 0"),
    ],
)
def test_voc_malformed_field_names_file_and_field(capsys, tmp_path, objects, field):
    write_lod(tmp_path / "LOD", objects)
    refused(capsys, "lod", tmp_path / "LOD", needles=("RAW-dark-Annotations/4.xml", field))
    assert not (tmp_path / "LOD" / "out").exists()  # every XML is checked before the first image is converted


# ---------------------------------------------------------------- probe: float HDR goal out of range
def test_hdr_float_goal_is_refused(capsys, tmp_path):
    goal = np.random.default_rng(0).uniform(0, 8, (H, W, 3)).astype(np.float32)  # ~87% above 1
    _, tif = write_fivek(tmp_path / "fk", goal)
    err = refused(capsys, "fivek", tmp_path / "fk", needles=(str(tif), "pixel values", "outside [0, 1]", "more than 1%"))
    assert f"{int((goal > 1).sum())} of {goal.size} values" in err


def test_float_goal_slightly_out_of_range_warns_with_count(capsys, tmp_path):
    goal = np.full((H, W, 3), 0.5, np.float32)
    goal[0, :5, 0] = 1.2  # 5 of 4608 values: clipped with a warning
    _, tif = write_fivek(tmp_path / "fk", goal)
    rc, out, err = run(capsys, "fivek", "--root", tmp_path / "fk", "--out", tmp_path / "fk" / "out")
    assert rc == 0, err
    assert f"warning: {tif}: pixel values: 5 of {goal.size} values" in out and "clipped to [0, 1]" in out
    stored = cv2.imread(str(tmp_path / "fk" / "out" / "goal" / "a0001-fixture_DSC1.png"), cv2.IMREAD_UNCHANGED)
    assert stored.max() == 65535 and stored[0, 0, 2] == 65535  # clipped to 1.0 (BGR on disk)


def test_nan_tiff_names_file(capsys, tmp_path):
    goal = np.full((H, W, 3), 0.5, np.float32)
    goal[3, 4, 1] = np.nan
    _, tif = write_fivek(tmp_path / "fk", goal)
    refused(capsys, "fivek", tmp_path / "fk", needles=(str(tif), "1 NaN or infinite values"))
    assert not (tmp_path / "fk" / "out").exists()


# ---------------------------------------------------------------- probe: DNG above its white level
def test_dng_above_white_level_is_refused(capsys, tmp_path):
    goal = np.full((H, W, 3), 30000, np.uint16)
    dng, _ = write_fivek(tmp_path / "fk", goal, bayer=bayer_fixture(1, top=4095), white_level=1023)
    refused(capsys, "fivek", tmp_path / "fk", needles=(str(dng), "above the file's white level 1023", "WhiteLevel"))
    assert not (tmp_path / "fk" / "out").exists()


def test_dng_few_samples_above_white_level_warn_and_are_counted(capsys, tmp_path):
    bayer = bayer_fixture(1, top=3000)
    bayer[0, :4] = 4095  # 4 of 1536 samples above the white level 4000
    dng, _ = write_fivek(tmp_path / "fk", np.full((H, W, 3), 30000, np.uint16), bayer=bayer, white_level=4000)
    rc, out, err = run(capsys, "fivek", "--root", tmp_path / "fk", "--out", tmp_path / "fk" / "out")
    assert rc == 0, err
    assert f"warning: {dng}: 4 of {bayer.size} raw samples" in out and "white level 4000" in out
    meta = json.loads((tmp_path / "fk" / "out" / "meta" / "a0001-fixture_DSC1.json").read_text())
    assert meta["raw_above_white"] == 4


# ---------------------------------------------------------------- probe: corrupt archives
def _truncated_tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for k in range(2):
            data = np.random.default_rng(k).bytes(100_000)
            info = tarfile.TarInfo(f"RAW_dark/{k}.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    whole = buf.getvalue()
    return whole[: len(whole) * 3 // 4]  # the first member is complete, the second cut off


def _truncated_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("RAW_dark/readme.txt", "x" * 1000)
    whole = buf.getvalue()
    return whole[: len(whole) - 30]


@pytest.mark.parametrize(
    "name, payload",
    [
        ("LOD.zip", b"PK\x03\x04garbage"),  # was zipfile.BadZipFile
        ("LOD.zip", _truncated_zip()),
        ("LOD.tar.gz", b"\x1f\x8b\x08\x00garbage"),  # was EOFError
        ("LOD.tar.gz", _truncated_tgz()),
        ("LOD.tar", b"not a tar file at all" * 30),  # tarfile.ReadError
    ],
)
def test_corrupt_archive_names_the_archive(capsys, tmp_path, name, payload):
    root = tmp_path / "LOD"
    root.mkdir()
    (root / name).write_bytes(payload)
    refused(capsys, "lod", root, "--extract", needles=(str(root / name), "corrupt or truncated archive"))
    assert sorted(p.name for p in root.iterdir()) == [name]  # nothing half-extracted, no 'extracted' marker


# ---------------------------------------------------------------- probe: half-present split lists
@pytest.mark.parametrize("present, missing", [("train.txt", "val.txt"), ("val.txt", "train.txt")])
def test_lod_half_present_splits_are_refused(capsys, tmp_path, present, missing):
    root = tmp_path / "LOD"
    write_lod(root)
    (root / present).write_text("2.png\n")
    err = refused(capsys, "lod", root, needles=(f"found {root / present} but not {root / missing}",))
    assert "fallback" not in err and "neither" not in err
    assert not (root / "out").exists()


def test_lod_half_present_splits_dir(capsys, tmp_path):
    root = tmp_path / "LOD"
    write_lod(root)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("4.png\n")
    refused(capsys, "lod", root, "--splits", tmp_path / "splits",
            needles=(f"found {tmp_path / 'splits' / 'val.txt'} but not {tmp_path / 'splits' / 'train.txt'}",),
            rc_expected=1)


def test_oneplus_half_present_splits_are_refused(capsys, tmp_path):
    root = tmp_path / "op"
    write_oneplus(root)
    (root / "train.txt").write_text("0001.png\n")
    refused(capsys, "oneplus", root, needles=(f"found {root / 'train.txt'} but not {root / 'val.txt'}",))


# ---------------------------------------------------------------- probe: re-run with other settings
def test_rerun_with_other_max_side_is_refused(capsys, tmp_path):
    root = tmp_path / "op"
    write_oneplus(root)
    out = root / "out"
    rc, _, err = run(capsys, "oneplus", "--root", root, "--out", out, "--max-side", "24")
    assert rc == 0, err
    manifest = (out / "manifest.json").read_text()
    image = (out / "linear" / "0001.png").read_bytes()
    err = refused(capsys, "oneplus", root, "--max-side", "12",
                  needles=(str(out / "manifest.json"), "max_side=24", "max_side=12", "another --out", f"delete {out}"))
    assert (out / "manifest.json").read_text() == manifest and (out / "linear" / "0001.png").read_bytes() == image
    rc, _, err = run(capsys, "oneplus", "--root", root, "--out", out)  # no --max-side = full size: differs too
    assert rc == 1 and "max_side=None" in err
    rc, out_text, err = run(capsys, "oneplus", "--root", root, "--out", out, "--max-side", "24")
    assert rc == 0 and "0 converted, 1 already done" in out_text


def test_interrupted_run_records_its_settings(capsys, tmp_path, monkeypatch):
    """A run stopped after its first item leaves a stub manifest: loaders refuse it, re-runs check it."""
    from ispbench.data import oneplus

    root = tmp_path / "op"
    write_oneplus(root)
    cv2.imwrite(str(root / "data" / "0002.png"), bayer_fixture(2, top=1023))
    labelme_json(root / "data" / "0002.json", "0002.png", W, H, [("car", [[1, 1], [9, 9]], "rectangle")])
    out = root / "out"
    real = oneplus.write_png16
    calls = []

    def crash_on_second(path, rgb):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, rgb)

    monkeypatch.setattr(oneplus, "write_png16", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        oneplus.prepare(root, out, max_side=24, log=lambda _: None)
    monkeypatch.setattr(oneplus, "write_png16", real)
    stub = json.loads((out / "manifest.json").read_text())
    assert stub["status"] == "incomplete" and stub["max_side"] == 24
    assert not list(out.rglob("*.tmp")) and not (out / "splits").exists()
    with pytest.raises(DatasetMissingError, match="did not finish"):
        oneplus.OnePlusDataset(root, "val", prepared=out)
    rc, _, err = run(capsys, "oneplus", "--root", root, "--out", out, "--max-side", "40")
    assert rc == 1 and "max_side=24" in err and "max_side=40" in err
    rc, text, err = run(capsys, "oneplus", "--root", root, "--out", out, "--max-side", "24")
    assert rc == 0 and "1 converted, 1 already done" in text, err
    assert len(oneplus.OnePlusDataset(root, "val", prepared=out)) == 2


# ---------------------------------------------------------------- probe: zero or negative sizes
@pytest.mark.parametrize("value", ["-5", "0"])
def test_non_positive_max_side_is_a_usage_error(capsys, tmp_path, value):
    root = tmp_path / "op"
    write_oneplus(root)
    refused(capsys, "oneplus", root, "--max-side", value, needles=("--max-side", value), rc_expected=2)
    assert not (root / "out").exists()


def test_prepare_function_refuses_non_positive_max_side(tmp_path):
    from ispbench.data import oneplus
    from ispbench.data.preparation import resize_max_side

    root = tmp_path / "op"
    write_oneplus(root)
    with pytest.raises(ValueError, match="max_side"):
        oneplus.prepare(root, tmp_path / "out", max_side=-5, log=lambda _: None)
    with pytest.raises(ValueError, match="max_side"):
        resize_max_side(np.zeros((4, 4, 3), np.float32), 0)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the written labels stay valid
def test_prepared_labels_are_finite_and_normalised(capsys, tmp_path):
    root = tmp_path / "op"
    write_oneplus(root, [("person", [[-0.4, 4], [18, 32.3]], "rectangle")])  # within tolerance: clipped
    rc, _, err = run(capsys, "oneplus", "--root", root, "--out", root / "out")
    assert rc == 0, err
    labels, boxes = read_labels(root / "out" / "labels" / "0001.txt")
    assert labels.tolist() == [0] and np.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 1).all()
    np.testing.assert_allclose(boxes[0], [9 / 48, 18 / 32, 18 / 48, 28 / 32], atol=1e-6)
