"""The reproduction-status page, from fake result files written with ``write_results``."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from ispbench import papers, report
from ispbench.results import write_results

A, R = "AdaptiveISP", "RLPixTuner"


@pytest.fixture
def results(tmp_path, monkeypatch):
    root = tmp_path / "results"
    monkeypatch.setenv("ISPBENCH_RESULTS", str(root))
    return root


def _write(name, comparison, data="toy data", profile="embedded"):
    return write_results(name, profile=profile, parameters={"profile": profile}, data=data,
                         tables={"comparison": comparison}, seed=0, wall_time_s=1.0)


def full_table9(profile="embedded"):
    ours = [
        {"method": "ReconfigISP", "metric": "mAP@0.5", "value": 58.1},
        {"method": A, "metric": "mAP@0.5", "value": 70.6},
        {"method": A, "metric": "mAP@0.75", "value": 48.5},
        {"method": A, "metric": "mAP@0.5:0.95", "value": 44.3},
        {"method": "RGB", "metric": "mAP@0.5", "value": 50.0},  # not in the paper: kept as extra
    ]
    return papers.side_by_side(ours, paper=A, table=9, profile=profile, data="embedded OnePlus-like | 8 images")


def partial_rlpixtuner_table1(profile="embedded"):
    ours = [
        {"dataset": "Random-Target", "method": R, "metric": "PSNR", "value": 33.46},
        {"dataset": "Random-Target", "method": R, "metric": "SSIM", "value": 0.9514},
    ]
    return papers.side_by_side(ours, paper=R, table=1, profile=profile, data="skimage photos, 6 images")


def test_status_full_partly_not_yet(results):
    _write("adaptiveisp/table9", full_table9())
    _write("rlpixtuner/table1", partial_rlpixtuner_table1(), data="skimage photos")
    status = report.status_table("embedded").set_index(["paper", "table"])
    assert list(status.reset_index().columns) == report.STATUS_COLUMNS
    t9 = status.loc[(A, "9")]
    assert t9.status == "reproduced" and t9.cells_paper == 4 and t9.cells_compared == 4
    # one mean per metric, never across metrics (units differ)
    assert t9.mean_abs_difference == pytest.approx({"mAP@0.5": (2.0 + 5.0) / 2, "mAP@0.75": 2.0, "mAP@0.5:0.95": 3.0})
    assert t9.units == {"mAP@0.5": "%", "mAP@0.75": "%", "mAP@0.5:0.95": "%"}
    assert t9.notebooks == "adaptiveisp/table9" and "8 images" in t9.data and t9.profile == "embedded"
    assert t9.pages == "adaptiveisp/table9"  # the book's page of the table
    t1 = status.loc[(R, "1")]
    assert t1.status == "partly" and t1.cells_compared == 2 and t1.cells_paper == 28
    assert t1.mean_abs_difference == pytest.approx({"PSNR": 5.0, "SSIM": 0.03})
    assert t1.units == {"PSNR": "dB", "SSIM": ""} and t1.pages == "rlpixtuner/table1"
    assert status.loc[(A, "1")].status == "not yet"
    assert status.loc[(A, "1")].mean_abs_difference == {}
    assert status.loc[(A, "1")].pages == "adaptiveisp/table1"  # the book's page even before a run
    assert status.loc[("IRPO", "abstract")].status == "not yet"
    assert status.loc[(R, "2")].cells_paper == 12  # OOM cells are not numbers to reproduce
    assert status.loc[("POS-ISP", "main")].status == "not yet" and status.loc[("POS-ISP", "main")].cells_paper == 72
    assert "posisp/main" not in status.loc[("POS-ISP", "main")].pages  # no POS-ISP result in this fixture


def test_newest_result_wins_and_differences_use_current_paper_numbers(results):
    older = partial_rlpixtuner_table1()
    _write("rlpixtuner/old", older)
    newer = older.copy()
    newer.loc[newer.our_value.notna(), "our_value"] = [38.46, 0.9814]
    newer.loc[newer.our_value.notna(), "difference"] = 999.0  # stale difference: ignored
    import time

    time.sleep(1.1)  # written_at has one-second resolution
    _write("rlpixtuner/table1", newer)
    row = report.status_table("embedded").set_index(["paper", "table"]).loc[(R, "1")]
    assert row.cells_compared == 2 and row.mean_abs_difference == pytest.approx({"PSNR": 0.0, "SSIM": 0.0})
    assert row.notebooks == "rlpixtuner/table1"


def test_markdown_contains_numbers_and_statuses(results):
    _write("adaptiveisp/table9", full_table9())
    _write("rlpixtuner/table1", partial_rlpixtuner_table1())
    page = report.status_markdown("embedded")
    assert page.startswith("# Reproduction status\n")
    assert page.count("\n# ") == 0  # a single top-level title
    assert "Newest result:" in page and "embedded" in page
    # summary: four short columns, one mean per metric in its unit, a link to the notebook page
    summary = page.split("## Summary\n\n", 1)[1].split("\n## ", 1)[0]
    adaptive = summary.split("### AdaptiveISP tables\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert adaptive[0] == "| Table | Status: compared | Mean abs. difference |"
    assert ("| [Table 9](executed/adaptiveisp/table9.ipynb) | reproduced: 4 of 4 | mAP@0.5 3.5 pt; mAP@0.75 2.0 pt; "
            "mAP@0.5:0.95 3.0 pt |") in adaptive
    assert "| [Table 1](executed/adaptiveisp/table1.ipynb) | not yet: 0 of 50 | — |" in adaptive
    assert ("| [Table 1](executed/rlpixtuner/table1.ipynb) | partly: 2 of 28 | PSNR 5.00 dB; SSIM 0.0300 |"
            in summary.split("### RLPixTuner tables\n\n", 1)[1].splitlines())
    assert "8 images" not in summary  # the data are said below each table, not in the summary
    # below the summary, per table: the data once, pipes escaped, and a link to the number-by-number page;
    # no six-column cell tables (they do not fit a phone: the notebook page has them)
    assert "Our numbers: profile `embedded`, data: embedded OnePlus-like \\| 8 images." in page
    assert "Number by number, beside the paper's: [Table 9](executed/adaptiveisp/table9.ipynb)." in page
    assert "75.6" not in page and "| OnePlus | AdaptiveISP |" not in page
    assert max(len(line.split("|")) for line in page.splitlines() if line.startswith("|")) == 5  # 3 columns
    assert "## POS-ISP" in page and "### IRPO: Abstract" in page
    _check_pipe_tables(page)


def _check_pipe_tables(page: str) -> None:
    """Every table line has the same number of unescaped cells as its header; no raw HTML."""
    cells = None
    for line in page.splitlines():
        if line.startswith("|"):
            n = len(re.split(r"(?<!\\)\|", line))
            cells = n if cells is None else cells
            assert n == cells, line
        else:
            cells = None
    assert not re.search(r"<[a-zA-Z/]", page)


def test_empty_results_page_says_nothing_ran(results):
    page = report.status_markdown("embedded")
    assert "Nothing has run yet" in page
    assert page.count("| not yet: 0 of ") == len(report.status_table("embedded")) == 21
    _check_pipe_tables(page)


def test_main_writes_page(results, tmp_path, capsys):
    _write("adaptiveisp/table9", full_table9())
    out = tmp_path / "book" / "status.md"
    assert report.main(["--profile", "embedded", "--out", str(out)]) == 0
    text = out.read_text()
    assert text == report.status_markdown("embedded")
    assert "Table 9" in text and "reproduced: 4 of 4" in text
    assert "1 reproduced" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_main_via_cli_and_unknown_profile(results, tmp_path, capsys):
    from ispbench.cli import main as cli_main

    out = tmp_path / "status.md"
    assert cli_main(["report", "status", "--profile", "embedded", "--out", str(out)]) == 0
    assert "Nothing has run yet" in out.read_text()
    assert report.main(["--profile", "nosuch", "--out", str(out)]) == 2
    assert "valid profiles" in capsys.readouterr().err


def test_malformed_comparison_is_refused(results):
    _write("broken/notebook", [{"method": A, "value": 1.0}])
    with pytest.raises(ValueError, match="broken/notebook.*side_by_side"):
        report.status_table("embedded")


def test_other_tables_are_ignored(results):
    write_results("ops/gallery", profile="embedded", parameters={}, data="toy",
                  tables={"timings": pd.DataFrame([{"module": "Gamma", "ms": 1.0}])})
    status = report.status_table("embedded")
    assert set(status.status) == {"not yet"}


def test_page_renders_with_myst_without_warnings(results, tmp_path):
    """Render through MyST's docutils front end; any warning fails (needs myst-parser)."""
    pytest.importorskip("myst_parser")
    from docutils.core import publish_string
    from myst_parser.docutils_ import Parser

    _write("adaptiveisp/table9", full_table9())
    page = report.status_markdown("embedded")
    warnings = tmp_path / "warnings.txt"
    with open(warnings, "w") as stream:
        publish_string(page, parser=Parser(), writer_name="html5",
                       settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5,
                                           "myst_enable_extensions": ["dollarmath"]})
    # Links to the notebook pages are resolved by Sphinx (test_book builds the book with -n -W);
    # plain docutils knows no documents, so only those warnings are expected here.
    unresolved = re.compile(r'^<string>:\d+: \(ERROR/3\) Unknown target name: "executed/[a-z0-9/]+\.ipynb"\.$')
    other = [line for line in warnings.read_text().splitlines() if line and not unresolved.match(line)]
    assert other == []
    assert "[Table 1](executed/adaptiveisp/table1.ipynb)" in page


def test_corrupt_result_file_is_named_with_how_to_regenerate(results, tmp_path, capsys):
    path = _write("rlpixtuner/table1", partial_rlpixtuner_table1())
    path.resolve().write_text("{not json")
    assert report.main(["--profile", "embedded", "--out", str(tmp_path / "status.md")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "ispbench run rlpixtuner/table1 --profile embedded --force" in err


def test_only_results_with_the_profiles_parameters_count(results, capsys):
    from ispbench.results import read_results

    own = write_results("rlpixtuner/table1", profile="embedded", parameters={"profile": "embedded", "n_images": 24},
                        data="own", tables={"comparison": partial_rlpixtuner_table1()})
    ad_hoc = write_results("rlpixtuner/table1", profile="embedded", parameters={"profile": "embedded", "n_images": 3},
                           data="ad hoc", tables={"comparison": partial_rlpixtuner_table1()})
    assert "runs/rlpixtuner/table1-" in str(ad_hoc) and "parameters differ" in capsys.readouterr().err
    assert read_results("rlpixtuner/table1", "embedded")["data"] == "own" and own.exists()
    assert [r["data"] for r in report.all_results("embedded")] == ["own"]


def test_differences_are_never_averaged_across_units():
    text = report.format_differences({"mAP@0.5": 1.59, "time": 628.8, "queries": 3.0},
                                     {"mAP@0.5": "%", "time": "ms", "queries": "count"})
    assert text == "mAP@0.5 1.6 pt; time 628.80 ms; queries 3"
    assert report.format_differences({}, {}) == ""
