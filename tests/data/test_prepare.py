"""``ispbench data prepare``: layout checks, conversion, splits, re-runs, archive safety."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from ispbench.data.preparation import UnsafeArchiveError, extract_archive
from ispbench.data.prepare import main
from ispbench.data.prepared import DatasetFormatError, read_labels, read_split


def needs(module: str, attr: str):
    """Skip when a colleague's conversion function is not there yet."""
    mod = pytest.importorskip(module)
    if not hasattr(mod, attr):
        pytest.skip(f"{module}.{attr} not available yet")
    return getattr(mod, attr)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------- command line
def test_unknown_name_lists_valid_names(capsys, tmp_path):
    rc, _, err = run(capsys, "kitti", "--root", tmp_path)
    assert rc == 2
    assert "unknown dataset 'kitti'" in err and "lod, oneplus, coco_raw, fivek, hdrplus" in err


def test_help_returns_zero(capsys):
    assert main(["--help"]) == 0


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lod", ["RAW_dark/*.CR2", "found 0", "https://github.com/ying-fu/LODDataset"]),
        ("oneplus", ["found 0 pairs", "reconfigisp"]),
        ("coco_raw", ["annotations/instances_val2017.json", "annotations_trainval2017.zip"]),
        ("fivek", ["raw_photos/HQa*/photos/*.dng", "found 0", "data.csail.mit.edu/graphics/fivek"]),
        ("hdrplus", ["merged.dng", "found 0 scenes", "hdrplusdata.org"]),
    ],
)
def test_missing_download_gives_exact_instruction(capsys, tmp_path, name, expected):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, name, "--root", tmp_path / "empty")
    assert rc == 1
    for needle in expected:
        assert needle in err, (needle, err)


def test_root_that_is_not_a_folder(capsys, tmp_path):
    rc, _, err = run(capsys, "lod", "--root", tmp_path / "nowhere")
    assert rc == 1 and "is not a folder" in err and "LODDataset" in err


# ---------------------------------------------------------------- archives
def test_zip_with_parent_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/readme.txt", "fine")
        zf.writestr("../evil", "boom")
    target = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil'"):
        extract_archive(archive, target)
    assert not (tmp_path / "evil").exists() and not (target / "ok").exists()  # nothing written


def test_tar_with_escaping_link_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("data/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(archive, tmp_path / "root")
    abs_tar = tmp_path / "abs.tar.gz"
    with tarfile.open(abs_tar, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("/tmp/abs")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        extract_archive(abs_tar, tmp_path / "root")


def test_safe_zip_extracts(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("RAW_dark/readme.txt", "fine")
    extract_archive(archive, tmp_path / "root")
    assert (tmp_path / "root" / "RAW_dark" / "readme.txt").read_text() == "fine"


def test_prepare_extract_refuses_evil_zip(capsys, tmp_path):
    root = tmp_path / "LOD"
    root.mkdir()
    with zipfile.ZipFile(root / "LOD.zip", "w") as zf:
        zf.writestr("../evil", "boom")
    rc, _, err = run(capsys, "lod", "--root", root)
    assert rc == 1 and "re-run with --extract" in err
    rc, _, err = run(capsys, "lod", "--root", root, "--extract")
    assert rc == 1 and "refusing to extract" in err and "'../evil'" in err
    assert not (tmp_path / "evil").exists()


# ---------------------------------------------------------------- OnePlus (no colleague code needed)
def test_oneplus_prepare_load_and_rerun(capsys, oneplus_root):
    from ispbench.data.oneplus import OnePlusDataset

    rc, out, err = run(capsys, "oneplus", "--root", oneplus_root)
    assert rc == 0, err
    assert "2 converted, 0 already done" in out
    prepared = oneplus_root / "ispbench-prepared"
    assert read_split(prepared / "splits" / "val.txt") == ["0001", "0002"]
    labels, boxes = read_labels(prepared / "labels" / "0001.txt")
    assert labels.tolist() == [0, 5]
    np.testing.assert_allclose(boxes[0], [12 / 48, 16 / 32, 12 / 48, 24 / 32], atol=1e-6)
    ds = OnePlusDataset(oneplus_root, "val")
    item = ds[0]
    assert item["image"].shape == (3, 32, 48)
    # the demosaic keeps the measured R sample at (0, 0): bayer / 1023
    import cv2

    bayer = cv2.imread(str(oneplus_root / "data" / "0001.png"), cv2.IMREAD_UNCHANGED)
    assert abs(float(item["image"][0, 0, 0]) - bayer[0, 0] / 1023) < 1e-4
    assert abs(float(item["image"][2, 1, 1]) - bayer[1, 1] / 1023) < 1e-4
    mtime = (prepared / "linear" / "0001.png").stat().st_mtime_ns
    rc, out, _ = run(capsys, "oneplus", "--root", oneplus_root)
    assert rc == 0 and "0 converted, 2 already done" in out
    assert (prepared / "linear" / "0001.png").stat().st_mtime_ns == mtime
    # an interrupted run: one output missing -> only that item is redone
    (prepared / "labels" / "0002.txt").unlink()
    rc, out, _ = run(capsys, "oneplus", "--root", oneplus_root)
    assert rc == 0 and "1 converted, 1 already done" in out
    assert not list(prepared.rglob("*.tmp"))


def test_oneplus_corrupt_png_names_file(capsys, oneplus_root):
    (oneplus_root / "data" / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc, _, err = run(capsys, "oneplus", "--root", oneplus_root, "--out", oneplus_root.parent / "out")
    assert rc == 1 and "0002.png: not a decodable PNG" in err


def test_oneplus_size_mismatch_names_json(capsys, oneplus_root):
    doc = json.loads((oneplus_root / "data" / "0001.json").read_text())
    doc["imageWidth"] = 96
    (oneplus_root / "data" / "0001.json").write_text(json.dumps(doc))
    rc, _, err = run(capsys, "oneplus", "--root", oneplus_root)
    assert rc == 1 and "0001.json: imageWidth x imageHeight 96x32 differs" in err


# ---------------------------------------------------------------- COCO annotations (no colleague code needed)
def test_coco_annotations_conversion_by_hand(coco_root):
    from ispbench.data.coco_raw import load_coco_annotations

    coco = load_coco_annotations(coco_root / "annotations" / "instances_val2017.json")
    assert coco["labels"][139].tolist() == [0, 79]  # category 1 -> person 0, 90 -> toothbrush 79; crowd dropped
    np.testing.assert_allclose(coco["boxes"][139][0], [12 / 60, 14 / 40, 12 / 60, 20 / 40], atol=1e-6)
    np.testing.assert_allclose(coco["boxes"][139][1], [45 / 60, 20 / 40, 30 / 60, 20 / 40], atol=1e-6)
    assert coco["labels"][285].tolist() == [21]  # category 23 = bear


def test_coco_bad_categories_and_missing_image(capsys, coco_root):
    from ispbench.data.coco_raw import load_coco_annotations

    path = coco_root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    (coco_root / "val2017" / "000000000285.jpg").unlink()
    rc, _, err = run(capsys, "coco_raw", "--root", coco_root)
    assert rc == 1 and "1 images listed in" in err and "000000000285.jpg" in err
    doc["categories"] = doc["categories"][:3]
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match="field 'categories'"):
        load_coco_annotations(path)


def test_coco_raw_prepare_is_seeded_per_image(capsys, coco_root, tmp_path):
    needs("ispbench.ops.raw", "unprocess")
    needs("ispbench.ops.raw", "add_noise")
    from ispbench.data.coco_raw import RawCOCODataset

    rc, out, err = run(capsys, "coco_raw", "--root", coco_root)
    assert rc == 0, err
    ds = RawCOCODataset(coco_root, "val")
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 40, 60)
    assert ds[0]["labels"].tolist() == [0, 79]
    rc, _, err = run(capsys, "coco_raw", "--root", coco_root, "--out", tmp_path / "again")
    assert rc == 0, err
    again = RawCOCODataset(coco_root, "val", prepared=tmp_path / "again")
    assert torch.equal(ds[0]["image"], again[0]["image"])  # same seed -> same noise


# ---------------------------------------------------------------- raw-decoding datasets (need ispbench.ops.dng)
def test_lod_prepare_with_authors_splits(capsys, lod_root):
    needs("ispbench.ops.dng", "read_raw_linear")
    from ispbench.data.lod import LODDataset

    (lod_root / "train.txt").write_text("./images/2.png\n./images/4.png\n")
    (lod_root / "val.txt").write_text("./images/6.png\n")
    rc, out, err = run(capsys, "lod", "--root", lod_root)
    assert rc == 0, err
    prepared = lod_root / "ispbench-prepared"
    assert read_split(prepared / "splits" / "train.txt") == ["2", "4"]
    assert read_split(prepared / "splits" / "all.txt") == ["2", "4", "6"]
    assert json.loads((prepared / "manifest.json").read_text())["split_source"].startswith("authors")
    item = LODDataset(lod_root, "val")[0]
    assert item["image"].shape[0] == 3 and item["image"].shape[1:] == (32, 48)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["labels"].tolist() == [0, 60]
    np.testing.assert_allclose(item["boxes"][0].numpy(), [0.2, 0.4, 0.2, 0.6], atol=1e-6)
    assert item["meta"]["iso"] == 6400 and item["meta"]["file"] == "RAW_dark/6.CR2"
    rc, out, _ = run(capsys, "lod", "--root", lod_root)
    assert rc == 0 and "0 converted, 3 already done" in out


def test_lod_fallback_split_and_limit(capsys, lod_root, tmp_path):
    needs("ispbench.ops.dng", "read_raw_linear")
    rc, out, err = run(capsys, "lod", "--root", lod_root, "--out", tmp_path / "p", "--limit", "2")
    assert rc == 0, err
    assert "fallback" in out
    assert read_split(tmp_path / "p" / "splits" / "all.txt") == ["2", "4"]


def test_lod_errors_name_the_file(capsys, lod_root):
    (lod_root / "RAW-dark-Annotations" / "4.xml").unlink()
    rc, _, err = run(capsys, "lod", "--root", lod_root)
    assert rc == 1 and "no .xml annotation for 1 of 3" in err and "4.xml" in err
    (lod_root / "train.txt").write_text("4.png\n")
    (lod_root / "val.txt").write_text("6.png\n")
    from .conftest import voc_xml

    voc_xml(lod_root / "RAW-dark-Annotations" / "4.xml", 480, 320, [("car", 1, 1, 20, 20)])
    needs("ispbench.ops.dng", "read_raw_linear")
    (lod_root / "RAW_dark" / "2.CR2").write_bytes(b"II*\x00garbage")
    rc, _, err = run(capsys, "lod", "--root", lod_root)
    assert rc == 1 and "2.CR2: could not decode as a camera raw file" in err
    (lod_root / "RAW_dark" / "2.CR2").unlink()
    voc_xml(lod_root / "RAW-dark-Annotations" / "4.xml", 320, 480, [("car", 1, 1, 20, 20)])
    rc, _, err = run(capsys, "lod", "--root", lod_root)
    assert rc == 1 and "4.xml: size 320x480" in err and "aspect" in err
    voc_xml(lod_root / "RAW-dark-Annotations" / "4.xml", 480, 320, [("car", 1, 1, 20, 20)])
    (lod_root / "train.txt").write_text("4.png\n99.png\n")  # split lists are checked before any conversion
    rc, _, err = run(capsys, "lod", "--root", lod_root)
    assert rc == 1 and "train.txt: 1 entries name no file" in err and "'99'" in err


def test_fivek_prepare_splits_and_random_target(capsys, fivek_root):
    needs("ispbench.ops.dng", "read_raw_linear")
    from ispbench.data.fivek import FiveKDataset, random_actions

    rc, out, err = run(capsys, "fivek", "--root", fivek_root)
    assert rc == 0, err
    prepared = fivek_root / "ispbench-prepared"
    assert read_split(prepared / "splits" / "train.txt") == ["a0001-fixture_DSC1"]
    assert read_split(prepared / "splits" / "val.txt") == ["a4501-fixture_DSC4501", "a4502-fixture_DSC4502"]
    expert = FiveKDataset(fivek_root, "val")[0]
    assert expert["image"].shape == expert["goal"].shape == (3, 32, 48)
    import tifffile

    tif = tifffile.imread(fivek_root / "expertC" / "a4501-fixture_DSC4501.tif")
    assert abs(float(expert["goal"][1, 3, 5]) - tif[3, 5, 1] / 65535) < 1e-4
    stored = json.loads((prepared / "splits" / "random_target.json").read_text())["actions"]
    assert stored["a4501-fixture_DSC4501"] == random_actions("a4501-fixture_DSC4501")
    assert all(-1 <= a <= 1 for a in stored["a4502-fixture_DSC4502"]) and len(stored["a4502-fixture_DSC4502"]) == 9
    needs("ispbench.ops.finishing", "finish")
    from ispbench.ops.finishing import finish

    rnd = FiveKDataset(fivek_root, "val", target="random", size=16)[0]
    assert rnd["image"].shape == rnd["goal"].shape == (3, 16, 16)
    torch.testing.assert_close(rnd["goal"], finish(rnd["image"][None], rnd["actions"][None])[0].clamp(0, 1))


def test_fivek_missing_expert_c(capsys, fivek_root):
    for tif in (fivek_root / "expertC").glob("a4502*"):
        tif.unlink()
    rc, _, err = run(capsys, "fivek", "--root", fivek_root)
    assert rc == 1 and "no Expert C image for 1 DNG files" in err and "a4502" in err


def test_hdrplus_prepare(capsys, hdrplus_root):
    needs("ispbench.ops.dng", "read_raw_linear")
    from ispbench.data.hdrplus import HDRPlusDataset

    rc, out, err = run(capsys, "hdrplus", "--root", hdrplus_root)
    assert rc == 0, err
    ds = HDRPlusDataset(hdrplus_root)
    assert len(ds) == 2
    item = ds[1]
    assert item["image"].shape == item["goal"].shape == (3, 32, 48)  # final.jpg 2x larger, same aspect: resized
    assert item["meta"]["goal_resized"] is True


def test_hdrplus_missing_final(capsys, hdrplus_root):
    (hdrplus_root / "results_20171023" / "0007_20160722_100111_111" / "final.jpg").unlink()
    rc, _, err = run(capsys, "hdrplus", "--root", hdrplus_root)
    assert rc == 1 and "0007_20160722_100111_111/final.jpg" in err
