"""The IRPO chapter's tables: per-benchmark rows, the kind-balanced average, paired claims, the smoke models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ispbench.chapters import irpo
from ispbench.data.restoration import RestorationSet
from ispbench.methods.irpo.network import AdaIR


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


def ood_scores(offset: float) -> pd.DataFrame:
    return scores(offset, kinds=tuple(irpo.OOD_DATASETS))


def test_ablation_table_keeps_its_runs_and_the_pretrained_row():
    results = {"in_domain": {"adair": [scores(0.0)], "all": [scores(1.0)], "general": [scores(0.5)], "worst10": [scores(2.0)]},
               "ood": {"adair": [ood_scores(0.0)], "all": [ood_scores(0.2)]}}
    reward = irpo.ablation_table(results, "reward")
    psnr = reward[reward.metric == "PSNR"].set_index(["table", "run"])
    assert set(psnr.loc["in_domain"].index) == {"adair", "all", "general"}  # worst10 belongs to the data ablation
    assert psnr.loc[("in_domain", "all"), "value"] - psnr.loc[("in_domain", "adair"), "value"] == pytest.approx(1.0)
    assert psnr.loc[("in_domain", "general"), "label"] == "general only"
    assert psnr.loc[("ood", "all"), "value"] - psnr.loc[("ood", "adair"), "value"] == pytest.approx(0.2)
    data = irpo.ablation_table(results, "data")
    worst10 = data[(data.run == "worst10") & (data.metric == "PSNR")].iloc[0]
    assert (worst10.selection, worst10.fraction) == ("worst", 0.1)
    with pytest.raises(ValueError, match="table"):
        irpo.ablation_table(results, "lr")


def test_ablations_cover_both_tables_with_distinct_files_and_paper_rows():
    names = [ab.name for ab in irpo.ABLATIONS]
    assert len(set(names)) == len(names) and len({ab.file for ab in irpo.ABLATIONS}) == len(names)
    assert {ab.rewards for ab in irpo.ABLATIONS if "reward" in ab.tables} >= {"general", "expert", "restoration"}
    assert {(ab.selection, ab.fraction) for ab in irpo.ABLATIONS if "data" in ab.tables} >= {("worst", 0.1), ("random", 0.1),
                                                                                            ("worst", 0.3), ("random", 0.3)}
    paper_methods = set(irpo.ablation_paper_rows("reward").method)
    assert {ab.label for ab in irpo.ABLATIONS if "reward" in ab.tables} <= paper_methods


def test_reward_curves_figure_draws_each_log(tmp_path):
    path = tmp_path / "run_train.csv"
    pd.DataFrame({"iteration": [0, 20, 40, 40], "reward_total": [None, 1.0, 1.2, None], "reward_general": [None, 0.5, 0.6, None],
                  "val_psnr": [20.0, None, None, 20.5], "val_stochastic_psnr": [19.0, None, None, 19.2]}).to_csv(path, index=False)
    fig = irpo.reward_curves_figure([path, path], labels=["a", "b"])
    total, val = fig.axes[0], fig.axes[-1]
    assert len(total.lines) == 2 and list(total.lines[0].get_xdata()) == [20, 40]
    assert len(val.lines) == 4  # both paths of each log


def test_policy_gradient_reaches_only_the_policy_heads():
    # the heads read features upstream of every shared trainable layer: the reward's gradient cannot reach
    # the test-time path directly, only the L1 and consistency terms can
    torch.manual_seed(0)
    pool = RestorationSet("train", crops_per_photo=1, size=64, seed=0)
    shares = irpo.gradient_shares(AdaIR(irpo.SMOKE_CONFIG), pool, rewards="general", n_inputs=2).set_index(["term", "part"])
    assert shares.loc[("pg", "shared layers"), "grad_norm"] == 0.0
    assert shares.loc[("pg", "policy heads"), "grad_norm"] > 0.0
    assert shares.loc[("sup", "shared layers"), "grad_norm"] > 0.0
    assert shares.groupby("part").share.sum().round(6).eq(1.0).all()
