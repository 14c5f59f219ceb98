"""The IRPO chapter's tables: per-benchmark rows, the kind-balanced average, paired claims, the smoke models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ispbench.chapters import irpo


def scores(offset: float, kinds=("dehaze", "derain", "denoise_25", "deblur", "lowlight", "denoise_15"), per_kind=4) -> pd.DataFrame:
    rows = []
    for k, kind in enumerate(kinds):
        for i in range(per_kind):
            rows.append({"photo": f"p{i % 2}", "kind": kind, "task": kind.split("_")[0], "crop": i,
                         "psnr": 20.0 + k + offset + 0.1 * i, "ssim": 0.5 + 0.01 * k})
    return pd.DataFrame(rows)


def test_rows_per_benchmark_and_a_kind_balanced_average():
    # denoise_15 is a row of its own but not part of the paper's five-benchmark average
    rows = irpo.table_rows({"AdaIR": [scores(0.0)], "IRPO": [scores(1.0), scores(2.0), scores(3.0)]}, "in_domain")
    psnr = rows[rows.metric == "PSNR"].set_index(["method", "dataset"])
    assert set(psnr.loc["AdaIR"].index) == {"SOTS", "Rain100L", "BSD68 (sigma 25)", "GoPro", "LOL", "BSD68 (sigma 15)", "average"}
    assert psnr.loc[("AdaIR", "SOTS"), "value"] == pytest.approx(20.15)
    assert psnr.loc[("AdaIR", "average"), "value"] == pytest.approx(np.mean([20 + k + 0.15 for k in range(5)]))
    assert psnr.loc[("IRPO", "average"), "value"] == pytest.approx(psnr.loc[("AdaIR", "average"), "value"] + 2.0)
    assert psnr.loc[("IRPO", "average"), "n_seeds"] == 3 and psnr.loc[("AdaIR", "average"), "n_seeds"] == 1
    lo, hi = psnr.loc[("IRPO", "average"), ["ci_low", "ci_high"]]
    assert lo <= psnr.loc[("IRPO", "average"), "value"] <= hi


def test_kind_balanced_average_weights_each_kind_once():
    unbalanced = pd.concat([scores(0.0, kinds=("dehaze",), per_kind=8), scores(0.0, kinds=("derain",), per_kind=2)],
                           ignore_index=True)
    balanced = irpo._kind_balanced(unbalanced, ("dehaze", "derain"), "psnr")
    dehaze = unbalanced[unbalanced.kind == "dehaze"].psnr.mean()
    derain = unbalanced[unbalanced.kind == "derain"].psnr.mean()
    assert balanced.mean() == pytest.approx((dehaze + derain) / 2)


def test_paired_claims_find_a_consistent_gain():
    results = {"IRPO": [scores(1.0), scores(1.1), scores(0.9)], "AdaIR": [scores(0.0)]}
    claims = irpo.paired_claims(results, [("IRPO", "AdaIR"), ("IRPO", "missing")], "in_domain")
    psnr = claims[claims.metric == "PSNR"].iloc[0]
    assert len(claims) == 2 and psnr.comparison == "IRPO - AdaIR"
    assert psnr.difference == pytest.approx(1.0) and psnr.verdict == "A better" and psnr.seeds == "3 vs 1"


def test_paper_profile_without_data_root_refuses():
    from ispbench import parameters
    from ispbench.data.prepared import DatasetMissingError

    params = parameters.profile_parameters("irpo/main", "paper")
    assert params["data_root"] == ""
    with pytest.raises(DatasetMissingError) as info:
        irpo.test_sets(params)
    assert "data_root" in str(info.value) and "restoration_paper" in str(info.value)


def test_embedded_test_sets_are_the_test_photos():
    from ispbench import parameters
    from ispbench.data.photos import photo_names

    params = {**parameters.profile_parameters("irpo/main", "smoke")}
    sets, data = irpo.test_sets(params)
    assert set(sets["in_domain"].photo) == set(photo_names("test")) == set(sets["ood"].photo)
    assert set(sets["ood"].kind) == set(irpo.OOD_DATASETS) and "test photos" in data


def test_shipped_files_names_valid_methods():
    with pytest.raises(ValueError, match="method"):
        irpo.shipped_files("restormer")
