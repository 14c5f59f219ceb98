"""The typed-in paper numbers (ispbench/papers/*.csv) against the papers' text, and the helpers.

The paper texts live outside the package (``<repo>/../shared/seeds`` or ``$ISPBENCH_SEEDS``);
tests that need them skip with the reason when they are absent.
"""

from __future__ import annotations

import math
import os
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from ispbench import papers

A, R = "AdaptiveISP", "RLPixTuner"

# ----------------------------------------------------------------------------- seed texts

#: A phrase that identifies each paper's full text, wherever the file is.
SEED_MARKERS = {
    A: "AdaptiveISP: Learning an Adaptive Image Signal",
    R: "Goal Conditioned Reinforcement Learning for Photo Finishing Tuning",
}


def seeds_dir() -> Path:
    env = os.environ.get("ISPBENCH_SEEDS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


@lru_cache(maxsize=None)
def _seed_lines(paper: str) -> tuple[str, ...] | None:
    root = seeds_dir()
    if not root.is_dir():
        return None
    for path in sorted(root.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if SEED_MARKERS[paper] in text:
            return tuple(text.splitlines())
    return None


def seed_lines(paper: str) -> tuple[str, ...]:
    lines = _seed_lines(paper)
    if lines is None:
        pytest.skip(f"text of {paper} not found: expected a .txt containing {SEED_MARKERS[paper]!r} in "
                    f"{seeds_dir()} (set ISPBENCH_SEEDS to the folder holding the paper texts)")
    return lines


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers(line: str) -> list[float]:
    """Every number on a line, in order ('-' and 'OOM' cells are not numbers, so they drop out)."""
    return [float(x) for x in NUMBER.findall(line)]


def contains_run(haystack: list[float], needle: list[float]) -> bool:
    n = len(needle)
    return any(all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(haystack[i:i + n], needle, strict=False))
               for i in range(len(haystack) - n + 1))


def table_window(lines: tuple[str, ...], table: str, size: int = 30) -> list[str]:
    """The caption line of ``Table <table>:`` and the ``size`` lines after it."""
    pattern = re.compile(rf"Table {re.escape(table)}:")
    for i, line in enumerate(lines):
        if pattern.search(line):
            return list(lines[i:i + size])
    raise AssertionError(f"caption 'Table {table}:' not found in the paper text")


# ----------------------------------------------------------------------------- typed rows, grouped as in the paper

#: Setting parts that vary *along* a printed row (columns), not between rows.
COLUMN_KEYS = ("module=", "resolution=")
#: Tables whose printed rows carry no method label (lambda_c rows, stage rows, check marks).
LABEL_FREE = {(A, "4"), (A, "8")}


def _row_key(setting: str) -> str:
    return ";".join(p for p in setting.split(";") if p and not p.startswith(COLUMN_KEYS))


def printed_rows(paper: str, tables: tuple[str, ...]) -> list[tuple[str, str, str, str, list[float], str]]:
    """Typed numbers regrouped into the paper's printed rows: (paper, table, method, row key, values, label)."""
    frame = papers.load(paper)
    frame = frame[frame["table"].isin(tables) & frame["value"].notna()]
    groups: dict[tuple[str, str, str], dict] = {}
    for _, row in frame.iterrows():
        key = (row["table"], row["method"], _row_key(row["setting"]))
        group = groups.setdefault(key, {"values": [], "label": ""})
        group["values"].append(row["value"])
        match = re.search(r"paper row '([^']+)'", row["note"])
        if match and not group["label"]:
            group["label"] = match.group(1)
    return [(paper, t, m, k, g["values"], g["label"]) for (t, m, k), g in groups.items()]


SWEEP = printed_rows(A, tuple(str(i) for i in range(1, 11))) + printed_rows(R, ("1", "2", "3", "4"))


@pytest.mark.parametrize(
    "paper,table,method,key,values,label", SWEEP,
    ids=[f"{p}-T{t}-{m}-{k or 'row'}" for p, t, m, k, _, _ in SWEEP],
)
def test_every_typed_row_appears_in_the_paper_text(paper, table, method, key, values, label):
    """Each printed row's typed numbers appear, in order, on one line of that table in the text."""
    window = table_window(seed_lines(paper), table)
    hits = [line for line in window if contains_run(numbers(line), values)]
    assert hits, f"{paper} table {table}, {method} {key}: {values} not found in sequence on any line of:\n" + "\n".join(window)
    check_label = label and (paper, table) not in LABEL_FREE and not (paper, table, label) == (A, "5", "Ours")
    if check_label:
        assert any(label in line for line in hits), f"{paper} table {table}: label {label!r} not on the line(s) {hits}"


def test_sweep_covers_the_required_tables():
    covered = {(p, t) for p, t, *_ in SWEEP}
    for required in [(A, "1"), (A, "3"), (A, "5"), (R, "1"), (R, "3")]:
        assert required in covered


def test_adaptiveisp_table1_lod_ours_map50_is_in_the_text():
    assert papers.value(A, "1", "LOD", A, "mAP@0.5") == 71.4
    lines = seed_lines(A)
    assert "Ours 71.4 51.7 47.1 70.1 49.7 45.0 54.9 40.1 37.7" in lines
    typed = [papers.value(A, 1, ds, A, m) for ds in ("LOD", "OnePlus", "Raw COCO")
             for m in ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95")]
    assert typed == [71.4, 51.7, 47.1, 70.1, 49.7, 45.0, 54.9, 40.1, 37.7]


def test_rlpixtuner_table1_random_target_cmaes_psnr_is_in_the_text():
    assert papers.value(R, 1, "Random-Target", "CMAES", "PSNR") == 32.29
    line = next(line for line in seed_lines(R) if line.startswith("CMAES [9, 20]\t28.53"))
    cells = line.split("\t")[1:]
    assert [float(c) for c in cells] == [
        papers.value(R, 1, ds, "CMAES", m) for ds in ("FiveK-Target", "Random-Target")
        for m in ("PSNR", "SSIM", "LPIPS", "queries")
    ]


# ----------------------------------------------------------------------------- the CSVs themselves

#: Numbers per table, counted by hand from the papers ('-' cells excluded, OOM cells included).
EXPECTED_COUNTS = {
    (A, "1"): 50, (A, "2"): 10, (A, "3"): 18, (A, "4"): 80, (A, "5"): 27, (A, "6"): 6, (A, "7"): 9,
    (A, "8"): 22, (A, "9"): 4, (A, "10"): 6,
    (R, "1"): 28, (R, "2"): 16, (R, "3"): 18, (R, "4"): 10,
    ("IRPO", "abstract"): 2,
    ("IRPO", "data_ablation"): 12,
    ("IRPO", "in_domain"): 24,
    ("IRPO", "ood"): 24,
    ("IRPO", "reward_ablation"): 8,
    ("POS-ISP", "main"): 72, ("POS-ISP", "efficiency"): 17,
}


def test_counts_per_table():
    frame = papers.load()
    counts = frame.groupby(["paper", "table"]).size().to_dict()
    assert counts == EXPECTED_COUNTS


def test_columns_vocabulary_and_keys():
    frame = papers.load()
    assert list(frame.columns) == papers.COLUMNS
    assert set(frame["metric"]) <= set(papers.METRICS)
    assert not frame.duplicated(["paper", "table", *papers.KEY]).any()
    for column in ("paper", "table", "dataset", "method", "metric", "unit", "setting", "note"):
        assert not frame[column].isna().any(), column
    assert "Ours" not in set(frame["method"])
    assert set(frame.loc[frame["paper"] == A, "dataset"]) == {"LOD", "OnePlus", "Raw COCO", "ROD"}
    assert set(frame.loc[frame["paper"] == R, "dataset"]) == {"FiveK-Target", "Random-Target", "HDR+", ""}
    # every setting is key=value pairs
    for setting in set(frame["setting"]) - {""}:
        assert all(re.fullmatch(r"[a-z_]+=[^;=]+", part) for part in setting.split(";")), setting


def test_oom_cells_are_empty_with_note():
    frame = papers.load(R)
    oom = frame[frame["note"] == "OOM"]
    assert len(oom) == 4
    assert oom["value"].isna().all()
    assert set(zip(oom["method"], oom["setting"], strict=True)) == {
        ("Monolithic Proxy", "resolution=4K"), ("Cascaded Proxy", "resolution=1K"),
        ("Cascaded Proxy", "resolution=2K"), ("Cascaded Proxy", "resolution=4K"),
    }
    assert frame.drop(oom.index)["value"].notna().all()
    assert papers.value(R, 2, "", R, "time", "resolution=4K") == 1.23


def test_table4_and_8_settings():
    assert papers.value(A, 4, "LOD", A, "time", "module=Denoise") == 10
    assert papers.value(A, 4, "LOD", A, "frequency", "lambda_c=0.01;module=Exposure") == 57.5
    assert papers.value(A, 4, "LOD", A, "time", "lambda_c=0.1") == 9.20
    assert papers.value(A, 8, "LOD", A, "frequency", "reuse_penalty=no;module=CCM") == 164
    assert papers.value(A, 5, "LOD", "ReconfigISP", "mAP@0.5", "stages=5") == 69.4
    assert papers.value(A, 3, "LOD", "RGB", "mAP@0.5:0.95", "detector=DDQ") == 35.9


def test_irpo_deltas_and_posisp_tables():
    deltas = papers.load("IRPO").query("table == 'abstract'")
    assert sorted(deltas["value"]) == [0.83, 3.43]
    assert set(deltas["setting"]) == {"relative_to=AdaIR"}
    # the README tables' averages give the abstract's gains
    gain = papers.value("IRPO", "in_domain", "average", "IRPO", "PSNR") - papers.value("IRPO", "in_domain", "average", "AdaIR", "PSNR")
    assert round(gain, 2) == 0.83
    gain = papers.value("IRPO", "ood", "average", "IRPO", "PSNR") - papers.value("IRPO", "ood", "average", "AdaIR", "PSNR")
    assert round(gain, 2) == 3.43
    assert papers.value("IRPO", "data_ablation", "average", "random", "PSNR", "fraction=30%") == 30.4
    assert papers.tables("POS-ISP") == ["efficiency", "main"]
    # spot checks against the reference's tables
    assert papers.value("POS-ISP", "main", "LIS-Dark", "POS-ISP", "mAP@0.5") == 51.8
    assert papers.value("POS-ISP", "main", "LOD-All", "ReconfigISP", "mAP@0.75") == 54.4
    assert papers.value("POS-ISP", "efficiency", "", "POS-ISP", "MACs", "device=RTX 2080 Ti") == 15.1
    assert papers.value("POS-ISP", "efficiency", "", "AdaptiveISP", "time", "device=Galaxy S10 CPU") == 29.0


# ----------------------------------------------------------------------------- load / value / tables

def test_load_all_and_one():
    everything = papers.load()
    assert set(everything["paper"]) == {A, R, "IRPO", "POS-ISP"}
    assert len(everything) == sum(EXPECTED_COUNTS.values())
    one = papers.load("adaptiveisp")
    assert set(one["paper"]) == {A}
    one.loc[:, "value"] = 0.0  # a copy: the cache is untouched
    assert papers.value(A, 1, "LOD", A, "mAP@0.5") == 71.4


def test_load_unknown_paper_lists_valid():
    with pytest.raises(KeyError, match="valid papers: AdaptiveISP, RLPixTuner, POS-ISP, IRPO"):
        papers.load("ReconfigISP")


def test_tables_numeric_order():
    assert papers.tables(A) == [str(i) for i in range(1, 11)]
    assert papers.tables(R) == ["1", "2", "3", "4"]
    assert papers.tables("IRPO") == ["abstract", "data_ablation", "in_domain", "ood", "reward_ablation"]


def test_value_accepts_int_table_and_paper_variants():
    assert papers.value("rlpixtuner", 4, "Random-Target", "RL+F^D+F^S+F^H", "PSNR") == 38.46
    assert papers.value(R, "3", "HDR+", "Greedy Search", "queries") == 200


def test_value_unknown_method_names_lookup_and_candidates():
    with pytest.raises(KeyError) as info:
        papers.value(A, 1, "LOD", "Ours", "mAP@0.5")
    message = str(info.value)
    assert "method='Ours'" in message and "'AdaptiveISP'" in message and "closest stored rows" in message
    assert "\\n" not in message  # readable, not a repr


def test_value_unknown_table_lists_tables():
    with pytest.raises(KeyError, match=r"no table '11'.*tables: 1, 2, 3"):
        papers.value(A, 11, "LOD", A, "mAP@0.5")


def test_value_missing_setting_suggests_setting():
    with pytest.raises(KeyError, match="stages=5"):
        papers.value(A, 5, "LOD", "ReconfigISP", "mAP@0.5")


# ----------------------------------------------------------------------------- side_by_side

def test_side_by_side_difference_missing_and_extra():
    ours = pd.DataFrame([
        {"dataset": "HDR+", "method": R, "metric": "PSNR", "value": 30.0},
        {"dataset": "HDR+", "method": "CMAES", "metric": "SSIM", "value": 0.95},
        {"dataset": "HDR+", "method": "Identity", "metric": "PSNR", "value": 20.5},
    ])
    df = papers.side_by_side(ours, paper=R, table=3, profile="smoke", data="3 toy photos")
    assert list(df.columns) == papers.SIDE_BY_SIDE_COLUMNS
    assert len(df) == 18 + 1
    row = df[(df.method == R) & (df.metric == "PSNR")].iloc[0]
    assert row.paper_value == 31.54 and row.our_value == 30.0
    assert row.difference == pytest.approx(30.0 - 31.54)
    cmaes = df[(df.method == "CMAES") & (df.metric == "SSIM")].iloc[0]
    assert cmaes.difference == pytest.approx(0.95 - 0.9539)
    missing = df[(df.method == "Greedy Search") & (df.metric == "PSNR")].iloc[0]
    assert math.isnan(missing.our_value) and math.isnan(missing.difference) and missing.paper_value == 25.79
    extra = df[df.method == "Identity"].iloc[0]
    assert math.isnan(extra.paper_value) and extra.our_value == 20.5 and math.isnan(extra.difference)
    assert extra.paper == R and extra.table == "3"
    assert df.index[-1] == extra.name  # extras after the paper's rows
    assert set(df.profile) == {"smoke"} and set(df.data) == {"3 toy photos"}


def test_side_by_side_list_of_dicts_fills_single_dataset_and_setting():
    ours = [{"method": A, "metric": "mAP@0.5", "value": 60.0, "setting": "stages=2"}]
    df = papers.side_by_side(ours, paper=A, table=5, profile="embedded", data="toy")
    row = df[(df.method == A) & (df.setting == "stages=2") & (df.metric == "mAP@0.5")].iloc[0]
    assert row.dataset == "LOD" and row.difference == pytest.approx(60.0 - 70.9)
    assert df.our_value.notna().sum() == 1  # setting matched exactly: stages=3 untouched


def test_side_by_side_dataset_filter():
    ours = [{"method": A, "metric": "mAP@0.75", "value": 40.0}]
    df = papers.side_by_side(ours, paper=A, table=1, dataset="Raw COCO", profile="smoke", data="toy")
    assert set(df.dataset) == {"Raw COCO"} and len(df) == 15
    assert df.loc[df.our_value.notna(), "difference"].iloc[0] == pytest.approx(40.0 - 40.1)


def test_side_by_side_refuses_ambiguous_or_bad_input():
    kw = dict(profile="smoke", data="toy")
    with pytest.raises(ValueError, match="several datasets"):
        papers.side_by_side([{"method": A, "metric": "mAP@0.5", "value": 1.0}], paper=A, table=1, **kw)
    with pytest.raises(ValueError, match="'AdaptiveISP'"):
        papers.side_by_side([{"method": "Ours", "metric": "mAP@0.5", "value": 1.0}], paper=A, table=9, **kw)
    with pytest.raises(ValueError, match="missing column"):
        papers.side_by_side([{"method": A, "value": 1.0}], paper=A, table=9, **kw)
    with pytest.raises(ValueError, match="numeric"):
        papers.side_by_side([{"method": A, "metric": "mAP@0.5", "value": "high"}], paper=A, table=9, **kw)
    dup = [{"method": A, "metric": "mAP@0.5", "value": 1.0}] * 2
    with pytest.raises(ValueError, match="several values"):
        papers.side_by_side(dup, paper=A, table=9, **kw)
    with pytest.raises(KeyError, match="no table '42'"):
        papers.side_by_side([], paper=A, table=42, **kw)
    with pytest.raises(KeyError, match="no dataset 'COCO'"):
        papers.side_by_side([], paper=A, table=1, dataset="COCO", **kw)
    with pytest.raises(ValueError, match="dataset='LOD'"):
        papers.side_by_side([{"dataset": "OnePlus", "method": A, "metric": "mAP@0.5", "value": 1.0}],
                            paper=A, table=1, dataset="LOD", **kw)
    with pytest.warns(UserWarning, match="map50"):
        papers.side_by_side([{"method": A, "metric": "map50", "value": 1.0}], paper=A, table=9, **kw)


def test_side_by_side_oom_rows_and_format():
    ours = [{"method": R, "metric": "time", "value": 0.5, "setting": "resolution=720P", "dataset": ""}]
    df = papers.side_by_side(ours, paper=R, table=2, profile="smoke", data="toy | 2 images")
    assert len(df) == 16
    text = papers.format_side_by_side(df)
    lines = text.splitlines()
    assert lines[0].startswith("| Dataset | Method |") and len(lines) == 2 + 16
    assert "OOM" in text and "| 0.27 | 0.50 | +0.23 |" in text
    assert "toy \\| 2 images" in text  # pipes escaped inside cells
    assert all(len(re.split(r"(?<!\\)\|", line)) == 8 + 2 for line in lines)  # 8 columns everywhere


def test_format_side_by_side_rejects_other_frames():
    with pytest.raises(ValueError, match="missing columns"):
        papers.format_side_by_side(pd.DataFrame({"method": ["x"]}))


def test_side_by_side_carries_our_intervals():
    ours = [{"method": "AdaptiveISP", "metric": "mAP@0.5", "value": 70.0, "n_seeds": 3, "ci_low": 68.0, "ci_high": 72.5}]
    df = papers.side_by_side(ours, paper="AdaptiveISP", table=9, profile="smoke", data="toy")
    row = df[df.method.eq("AdaptiveISP") & df.metric.eq("mAP@0.5")].iloc[0]
    assert (row.n_seeds, row.our_ci_low, row.our_ci_high) == (3, 68.0, 72.5)
    assert list(df.columns[-3:]) == ["n_seeds", "our_ci_low", "our_ci_high"]
    plain = papers.side_by_side([{k: ours[0][k] for k in ("method", "metric", "value")}], paper="AdaptiveISP", table=9,
                         profile="smoke", data="toy")
    assert "our_ci_low" not in plain.columns
