"""``detection_sets.load_detection_split``: embedded vs prepared real data, and the missing-folder refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.data import detection_sets as ev
from ispbench.data.preparation import write_labels, write_manifest, write_png16, write_split
from ispbench.data.prepared import FORMAT_VERSION, IMAGE_FORMAT, DatasetMissingError, collate_detection


@pytest.fixture
def prepared_lod(tmp_path):
    """A tiny prepared LOD folder (the output format of ``ispbench data prepare lod``): 3 images, 24x36."""
    root = tmp_path / "LOD"
    out = root / "ispbench-prepared"
    rng = np.random.default_rng(0)
    ids = ["2", "4", "6"]
    for k, item in enumerate(ids):
        write_png16(out / "linear" / f"{item}.png", rng.uniform(0, 0.2, (24, 36, 3)))
        write_labels(out / "labels" / f"{item}.txt", [0, 60][: k + 1], np.array([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.2, 0.2]])[: k + 1])
    write_split(out / "splits" / "all.txt", ids)
    write_split(out / "splits" / "val.txt", ids[1:])
    write_manifest(out, "lod", split_source="test fixture", split_sizes={"all": 3, "val": 2})
    assert FORMAT_VERSION and IMAGE_FORMAT
    return root


def test_real_lod_is_loaded_letterboxed_with_coco_labels(prepared_lod):
    ds = ev.load_detection_split(str(prepared_lod), "lod", "test", 0, 32)  # test -> the paper's "all" split
    assert len(ds) == 3 and ds.split == "all"
    item = ds[2]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["labels"].tolist() == [0, 60]  # COCO-80 ids: person, dining table
    batch = collate_detection([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 32, 32) and batch["targets"].shape == (3, 6)
    assert len(ev.load_detection_split(str(prepared_lod), "lod", "val", 1, 32)) == 1


def test_empty_data_root_gives_the_embedded_split():
    ds = ev.load_detection_split("", "lod", "val", 5, 160)
    assert len(ds) == 5 and ds[0]["image"].shape[0] == 3


def test_missing_data_root_names_path_and_prepare_command(tmp_path):
    missing = tmp_path / "no_such_LOD"
    with pytest.raises(DatasetMissingError) as err:
        ev.load_detection_split(str(missing), "lod", "test", 0, 160)
    assert str(missing) in str(err.value) and "ispbench data prepare lod --root" in str(err.value)


def test_unprepared_folder_and_bad_name_are_refused(tmp_path):
    with pytest.raises(DatasetMissingError, match="ispbench data prepare lod"):
        ev.load_detection_split(str(tmp_path), "lod", "test", 0, 160)
    with pytest.raises(ValueError, match="dataset"):
        ev.load_detection_split(str(tmp_path), "fivek", "test", 0, 160)


def test_check_detector_classes():
    class Det:
        nc = 6

    ev.check_detector_classes(Det(), "", "lod")  # embedded: any detector
    with pytest.raises(ValueError, match="COCO"):
        ev.check_detector_classes(Det(), "/data/LOD", "lod")
    Det.nc = 80
    ev.check_detector_classes(Det(), "/data/LOD", "lod")
