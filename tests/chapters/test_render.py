"""ispbench.chapters.render: the paper's layout of a side_by_side comparison, and its figure."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ispbench import runner  # noqa: E402
from ispbench.chapters import render  # noqa: E402
from ispbench.papers import side_by_side  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: The notebooks whose pages show a paper's table.
TABLE_NOTEBOOKS = ["adaptiveisp/table1", "adaptiveisp/table3", "adaptiveisp/table4", "adaptiveisp/table5",
                   "adaptiveisp/table8", "adaptiveisp/table9", "rlpixtuner/table1", "rlpixtuner/table2", "rlpixtuner/table3",
                   "rlpixtuner/table4"]


def _table1():
    ours = [{"method": "AdaptiveISP", "metric": "mAP@0.5", "value": 70.04321, "ci_low": 68.149, "ci_high": 71.93,
             "n_seeds": 1},
            {"method": "AdaptiveISP", "metric": "mAP@0.5:0.95", "value": 45.0, "ci_low": float("nan"),
             "ci_high": float("nan"), "n_seeds": 1},
            {"method": "Default ISP", "metric": "mAP@0.5", "value": 60.5, "ci_low": 58.1, "ci_high": 62.0, "n_seeds": 1}]
    return side_by_side(ours, paper="AdaptiveISP", table="1", dataset="LOD", profile="smoke", data="toy low-light set")


def test_methods_are_rows_and_metrics_columns_in_the_papers_order():
    table = render.paper_table(_table1())
    assert list(table.frame.columns) == ["mAP@0.5", "mAP@0.75", "mAP@0.5:0.95"]
    assert table.frame.index.name == "Method"
    assert table.frame.index[0] == "Crafting" and table.frame.index[-1] == "Default ISP"  # paper's rows, then ours
    assert "data" not in table.frame.columns and "profile" not in table.frame.columns


def test_cells_round_as_the_paper_show_interval_and_difference_and_nan_is_empty():
    frame = render.paper_table(_table1()).frame
    assert frame.loc["AdaptiveISP", "mAP@0.5"] == "70.0 [68.1, 71.9] (paper 71.4, \u22121.4)"
    assert frame.loc["AdaptiveISP", "mAP@0.75"] == "paper 51.7"  # paper only: no NaN, no difference
    assert frame.loc["AdaptiveISP", "mAP@0.5:0.95"] == "45.0 (paper 47.1, \u22122.1)"  # NaN interval left out
    assert frame.loc["Default ISP", "mAP@0.5"] == "60.5 [58.1, 62.0]"  # not in the paper
    assert frame.loc["Default ISP", "mAP@0.75"] == ""
    html = render.paper_table(_table1()).html
    assert "nan" not in html.lower().replace("ispbench", "")
    assert "<table" in html and "overflow-x:auto" in html


def test_rounding_follows_each_metric():
    ours = [{"method": "CMAES", "metric": m, "value": v} for m, v in
            [("PSNR", 22.644833), ("SSIM", 0.7504246), ("LPIPS", 0.07504246), ("queries", 200.0)]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparison = side_by_side(ours, paper="RLPixTuner", table="1", dataset="Random-Target", profile="smoke", data="toy")
    frame = render.paper_table(comparison).frame
    assert frame.loc["CMAES", "PSNR"].startswith("22.64 (paper ")
    assert frame.loc["CMAES", "SSIM"].startswith("0.7504 ")
    assert frame.loc["CMAES", "LPIPS"].startswith("0.0750 ")
    assert frame.loc["CMAES", "queries"].startswith("200 ")


def test_caption_names_profile_and_data():
    table = render.paper_table(_table1())
    assert "profile smoke" in table.caption and "toy low-light set" in table.caption
    assert "AdaptiveISP Table 1" in table.caption
    assert "ispbench-caption" in table.html and "toy low-light set" in table.html


def test_settings_become_row_labels_and_modules_column_groups():
    ours = [{"method": "AdaptiveISP", "metric": "frequency", "value": 50.0, "setting": "lambda_c=0;module=CCM"},
            {"method": "AdaptiveISP", "metric": "mAP@0.5", "value": 70.0, "setting": "lambda_c=0"}]
    comparison = side_by_side(ours, paper="AdaptiveISP", table="4", dataset="LOD", profile="smoke", data="toy")
    comparison = comparison[~comparison.setting.str.startswith("module=")]
    frame = render.paper_table(comparison, metrics=["frequency"]).frame
    assert frame.index.name == "lambda_c" and list(frame.index) == ["0", "0.005", "0.01", "0.05", "0.1"]
    assert "frequency CCM" in frame.columns and len(frame.columns) == 10
    assert frame.loc["0", "frequency CCM"].startswith("50 (paper 99.75, ")
    html = render.paper_table(comparison, metrics=["frequency"]).html
    assert "colspan='10'" in html


def test_paper_out_of_memory_cells_say_so():
    comparison = side_by_side([{"method": "RLPixTuner", "metric": "time", "value": 0.5, "setting": "resolution=4K"}],
                              paper="RLPixTuner", table="2", profile="smoke", data="toy")
    frame = render.paper_table(comparison).frame
    assert frame.loc["Cascaded Proxy", "time 4K"] == "paper OOM"
    assert frame.loc["RLPixTuner", "time 4K"] == "0.50 (paper 1.23, \u22120.73)"


def test_empty_and_malformed_comparisons():
    assert "No numbers" in render.paper_table(pd.DataFrame()).html
    assert render.paper_figure(pd.DataFrame()) is None
    with pytest.raises(ValueError, match="side_by_side"):
        render.paper_table(pd.DataFrame({"method": ["x"]}))


def test_figure_has_one_panel_per_metric_with_our_numbers_and_fits_the_column():
    fig = render.paper_figure(_table1())
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["mAP@0.5", "mAP@0.5:0.95"]  # mAP@0.75: no number of ours
    assert fig.get_size_inches()[0] <= render.MAX_FIGURE_WIDTH
    whiskers = [c for c in panels[0].containers if getattr(c, "errorbar", None) is not None]
    assert whiskers, "our bars carry interval whiskers"
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("notebook", TABLE_NOTEBOOKS)
def test_every_table_notebook_shows_the_paper_table(notebook):
    nb = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())
    cells = [c for c in nb["cells"] if runner.PAPER_TABLE_TAG in c.get("metadata", {}).get("tags", [])]
    assert cells, f"{notebook}: no cell tagged {runner.PAPER_TABLE_TAG!r}"
    assert all("show_results(" in "".join(c["source"]) and "hide-input" in c["metadata"]["tags"] for c in cells)
    # a cell whose last line shows the long comparison shows it folded (render.folded), never open
    shown = [c for c in nb["cells"] if c["cell_type"] == "code" and "comparison" in "".join(c["source"]).split("\n")[-1]
             and runner.PAPER_TABLE_TAG not in c["metadata"].get("tags", [])]
    assert all("".join(c["source"]).split("\n")[-1].startswith("folded(") for c in shown), \
        f"{notebook}: long tables not folded"


def test_folded_table_is_closed_details_with_every_row():
    frame = pd.DataFrame({"method": ["A", "B"], "value": [1.23456789, float("nan")]})
    html = render.folded(frame, "Our numbers")._repr_html_()
    assert html.startswith('<details class="ispbench-folded"><summary>Our numbers (2 rows)</summary>')
    assert "open" not in html.split(">")[0] and "1.23457" in html and "nan" not in html.lower()
    with pytest.raises(TypeError, match="frame"):
        render.folded([1, 2], "x")


def test_a_wide_paper_table_can_be_turned():
    ours = [{"method": "AdaptiveISP", "metric": "frequency", "value": 50.0, "setting": "lambda_c=0;module=CCM"}]
    comparison = side_by_side(ours, paper="AdaptiveISP", table="4", dataset="LOD", profile="smoke", data="toy")
    frame = render.paper_table(comparison[~comparison.setting.str.startswith("module=")], metrics=["frequency"],
                               column_keys=("lambda_c",)).frame
    assert frame.index.name == "module" and len(frame) == 10
    assert list(frame.columns) == [f"frequency lambda_c={v}" for v in ("0", "0.005", "0.01", "0.05", "0.1")]
    assert frame.loc["CCM", "frequency lambda_c=0"].startswith("50 (paper 99.75")
