"""The notebooks' evaluation helpers on tiny inputs."""

from __future__ import annotations

import math

import torch

from ispbench.chapters.rlpixtuner import run_methods, time_methods
from ispbench.finishing_baselines.proxy import CascadedProxy
from ispbench.methods.rlpixtuner.inference import Policy
from ispbench.methods.rlpixtuner.networks import NetConfig
from ispbench.ops.finishing import finish


def _policy():
    torch.manual_seed(0)
    return Policy(NetConfig(width=4, cnn_features=8, feature_dim=16, hidden=16, layers=1)).eval()


def test_run_methods_rows_use_paper_names_and_count_queries():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g)
    goal = finish(x, (torch.rand(2, 9, generator=g) - 0.5))
    summary, per = run_methods(x, goal, policy=_policy(), budget=15, proxy_iterations=2,
                               proxies={"Cascaded Proxy": CascadedProxy(width=4)}, progress=None,
                               methods=("Input", "RLPixTuner", "CMAES", "Greedy Search", "Cascaded Proxy"))
    q = summary[summary.metric == "queries"].set_index("method")["value"]
    assert q["RLPixTuner"] == 10 and q["CMAES"] <= 15 and q["Greedy Search"] <= 15 and q["Cascaded Proxy"] == 1
    ps = summary[summary.metric == "PSNR"].set_index("method")["value"]
    assert ps["RLPixTuner (best-of-10)"] >= ps["RLPixTuner"] - 1e-6
    assert ps["CMAES"] > ps["Input"]
    assert set(per.method) == set(summary.method) and len(per) == 2 * len(set(per.method))


def test_time_methods_extrapolates_and_labels():
    df = time_methods({"tiny": (20, 30)}, policy=_policy(), proxies={"Cascaded Proxy": CascadedProxy(width=4)},
                      budget=40, proxy_iterations=40, measured=4, progress=None)
    row = df.set_index("method").loc["CMAES"]
    assert "extrapolated x10" in row["note"] and row["value"] > 0 and not math.isnan(row["value"])
    assert df.set_index("method").loc["RLPixTuner", "note"] == ""
