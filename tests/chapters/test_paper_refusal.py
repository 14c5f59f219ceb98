"""The ``paper`` profile never falls back to the embedded data: it refuses, naming data_root and the fix."""

from __future__ import annotations

import pytest

from ispbench import parameters
from ispbench.chapters import adaptiveisp
from ispbench.data.detection_sets import load_detection_split
from ispbench.data.prepared import DatasetMissingError


def _paper_params(notebook):
    return parameters.profile_parameters(notebook, "paper")


@pytest.mark.parametrize("notebook", ["adaptiveisp/table1", "adaptiveisp/table3", "adaptiveisp/table4",
                                      "adaptiveisp/table5", "adaptiveisp/table8", "adaptiveisp/pipelines"])
def test_adaptiveisp_paper_profile_with_empty_data_root_refuses(notebook):
    params = _paper_params(notebook)
    assert params["data_root"] == ""  # what paper.yaml ships
    for load in (adaptiveisp.prepare_detector, adaptiveisp.load_test_split):
        with pytest.raises(DatasetMissingError) as info:
            load(params)
        text = str(info.value)
        assert "data_root" in text and "ispbench data prepare lod" in text and "paper" in text


def test_detection_split_require_real_refuses_embedded():
    with pytest.raises(DatasetMissingError, match="dataset is 'embedded'"):
        load_detection_split("/some/dir", "embedded", "test", 2, 64, require_real=True)
    assert len(load_detection_split("", "lod", "test", 2, 64)) == 2  # other profiles: the embedded split


@pytest.mark.parametrize("notebook", ["rlpixtuner/table1", "rlpixtuner/table3", "rlpixtuner/table4",
                                      "rlpixtuner/trajectory"])
def test_rlpixtuner_paper_profile_with_empty_data_root_refuses(notebook):
    from ispbench.chapters import rlpixtuner

    p = _paper_params(notebook)
    with pytest.raises(DatasetMissingError, match="data_root is empty.*ispbench data prepare"):
        rlpixtuner.load_eval_pairs(p["data_root"], p["dataset"], p["split"], p["n_images"], p["resolution"],
                                   target=p.get("target", "random"), require_real=p["profile"] == "paper")


def test_posisp_paper_profile_with_empty_data_root_refuses():
    from ispbench.chapters import posisp

    params = _paper_params("posisp/main")
    assert params["data_root"] == "" and params["retrain"] is True
    for load in (adaptiveisp.prepare_detector, posisp.test_sets):
        with pytest.raises(DatasetMissingError) as info:
            load(params)
        assert "data_root" in str(info.value) and "ispbench data prepare lod" in str(info.value)


def test_table9_paper_profile_with_empty_data_root_refuses():
    from ispbench.chapters import limited_data

    params = _paper_params("adaptiveisp/table9")
    assert params["data_root"] == "" and params["retrain"] is True and params["dataset"] == "oneplus"
    with pytest.raises(DatasetMissingError) as info:
        limited_data.load_test_split(params)
    assert "data_root" in str(info.value) and "ispbench data prepare oneplus" in str(info.value)
