"""The reproduction-status page: which paper tables the book reproduces, and how closely.

Convention
----------
A notebook that reproduces (part of) a paper table stores, in its result file, a table named
``comparison``: the output of :func:`ispbench.papers.side_by_side`::

    comparison = papers.side_by_side(ours, paper="AdaptiveISP", table=1, profile=profile, data=data)
    write_results("adaptiveisp/table1", profile=profile, data=data, parameters=...,
                  tables={"comparison": comparison, ...})

so each row carries ``paper, table, dataset, method, metric, setting, paper_value, our_value,
difference, profile, data``. A notebook may cover several paper tables: concatenate their
``side_by_side`` frames into one ``comparison``. Rows are matched to the typed paper numbers
(:mod:`ispbench.papers`) on ``(paper, table, dataset, method, metric, setting)``; differences
are recomputed against the current CSV, so fixing a typo in the paper numbers needs no re-run.
When two notebooks report the same cell, the newer result file wins. Only the profile's own
results count (:func:`ispbench.results.all_results`): a run with other parameters (``-p``
overrides, a direct papermill run) lives in ``results/<profile>/runs/`` and is left out.

Status of a paper table (counting only cells where the paper prints a number):

- ``reproduced``: every number of the table has our value;
- ``partly``: some have;
- ``not yet``: none has.

Command line::

    ispbench report status --profile embedded --out book/status.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ispbench import atomic, papers, runner
from ispbench.paths import REPO_DIR, results_dir
from ispbench.results import ResultFileError, all_results

COMPARISON_TABLE = "comparison"
STATUS_COLUMNS = [
    "paper", "table", "status", "cells_paper", "cells_compared", "mean_abs_difference", "units",
    "notebooks", "pages", "profile", "data", "newest",
]
#: Where the status page (``book/status.md``) finds the notebook pages (``book/executed/<id>.ipynb``).
PAGES_DIR = "executed"
#: How a difference's unit reads: a difference of two percentages is in percentage points.
UNIT_DISPLAY = {"%": "pt", "count": ""}


def _is_nan(x: Any) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def _norm_setting(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def comparison_rows(profile: str) -> pd.DataFrame:
    """Every ``comparison`` row of every result file of ``profile``, newest file first.

    Columns: :data:`ispbench.papers.SIDE_BY_SIDE_COLUMNS` plus ``notebook``, ``written_at``
    and ``git_commit``. Rows without a number of ours are kept (they list what a notebook
    attempted).
    """
    rows: list[dict[str, Any]] = []
    for result in all_results(profile):
        table = (result.get("tables") or {}).get(COMPARISON_TABLE) or []
        for row in table:
            missing = [c for c in ("paper", "table", "method", "metric") if c not in row]
            if missing:
                name = result.get("name", "?")
                raise ValueError(f"result {name!r} (profile {profile!r}): table {COMPARISON_TABLE!r} rows lack "
                                 f"{missing}; build it with ispbench.papers.side_by_side")
            record = {c: row.get(c) for c in papers.SIDE_BY_SIDE_COLUMNS}
            record["table"] = str(record["table"])
            for c in ("dataset", "setting"):
                record[c] = _norm_setting(record[c])
            record["our_value"] = float("nan") if _is_nan(record["our_value"]) else float(record["our_value"])
            record["data"] = record["data"] if record["data"] else result.get("data", "")
            record["profile"] = record["profile"] or result.get("profile", profile)
            record["notebook"] = result.get("name", "?")
            record["written_at"] = result.get("written_at") or ""
            record["git_commit"] = (result.get("provenance") or {}).get("git_commit", "unknown")
            rows.append(record)
    columns = [*papers.SIDE_BY_SIDE_COLUMNS, "notebook", "written_at", "git_commit"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("written_at", ascending=False, kind="stable").reset_index(drop=True)


def _our_cells(comparisons: pd.DataFrame, paper: str, table: str) -> dict[tuple, dict[str, Any]]:
    """Key -> newest comparison row with a value, for one paper table."""
    cells: dict[tuple, dict[str, Any]] = {}
    part = comparisons[(comparisons["paper"] == paper) & (comparisons["table"] == table)]
    for _, row in part.iterrows():  # newest first
        if _is_nan(row["our_value"]):
            continue
        key = tuple(row[c] for c in papers.KEY)
        cells.setdefault(key, row.to_dict())
    return cells


def status_table(profile: str) -> pd.DataFrame:
    """One row per (paper, table) of the typed paper numbers, with its reproduction status.

    Columns: ``paper, table, status`` (``reproduced``/``partly``/``not yet``), ``cells_paper``
    (numbers the paper prints), ``cells_compared`` (of those, how many we have),
    ``mean_abs_difference`` (metric -> mean ``|ours - paper|`` over that metric's compared cells,
    in its unit; empty if none: units are never averaged together), ``units`` (metric -> the
    paper's unit), ``notebooks`` (comma-separated ids that contributed), ``pages`` (the book's
    notebook pages of the table: contributing notebooks and ``<paper>/table<N>``, among the
    profile's notebooks), ``profile``, ``data`` (``; ``-joined descriptions), ``newest`` (time of
    the newest contributing result file).
    """
    published = papers.load()
    comparisons = comparison_rows(profile)
    book_notebooks = list(runner.load_profile(profile).get("notebooks") or {})
    out = []
    for paper in papers.paper_names():
        pub = published[published["paper"] == paper]
        for table in papers.tables(paper):
            cells = pub[(pub["table"] == table) & pub["value"].notna()]
            ours = _our_cells(comparisons, paper, table)
            diffs: dict[str, list[float]] = {}
            units: dict[str, str] = {}
            used = []
            for _, cell in cells.iterrows():
                key = tuple(cell[c] for c in papers.KEY)
                if key in ours:
                    diffs.setdefault(cell["metric"], []).append(abs(ours[key]["our_value"] - cell["value"]))
                    units.setdefault(cell["metric"], _norm_setting(cell.get("unit")))
                    used.append(ours[key])
            notebooks = list(dict.fromkeys(r["notebook"] for r in used))
            data = list(dict.fromkeys(str(r["data"]) for r in used if r["data"]))
            conventional = f"{paper.lower().replace('-', '')}/table{table}"
            pages = [n for n in dict.fromkeys([*notebooks, conventional]) if n in book_notebooks]
            n = len(used)
            status = "reproduced" if n and n == len(cells) else "partly" if n else "not yet"
            out.append({
                "paper": paper, "table": table, "status": status,
                "cells_paper": len(cells), "cells_compared": n,
                "mean_abs_difference": {m: sum(d) / len(d) for m, d in diffs.items()}, "units": units,
                "notebooks": ", ".join(notebooks), "pages": ", ".join(pages), "profile": profile,
                "data": "; ".join(data), "newest": max((r["written_at"] for r in used), default=""),
            })
    return pd.DataFrame(out, columns=STATUS_COLUMNS)


def _profile_description(profile: str) -> str:
    description = (runner.load_profile(profile).get("description") or "").strip()
    return " ".join(description.split())


def _short_commit(commit: str) -> str:
    dirty = commit.endswith("+dirty")
    base = commit[: -len("+dirty")] if dirty else commit
    return (base[:12] if len(base) > 12 else base) + (" with uncommitted changes" if dirty else "")


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_DIR.resolve()))
    except ValueError:
        return str(path)


def format_differences(means: dict[str, float], units: dict[str, str]) -> str:
    """One table's mean absolute differences, metric by metric, each in its own unit.

    Example:
        >>> format_differences({"mAP@0.5": 1.62, "time": 628.8}, {"mAP@0.5": "%", "time": "ms"})
        'mAP@0.5 1.6 pt; time 628.80 ms'
    """
    parts = []
    for metric, value in means.items():
        unit = UNIT_DISPLAY.get(units.get(metric, ""), units.get(metric, ""))
        parts.append(" ".join(x for x in (metric, papers.format_number(value, metric), unit) if x))
    return "; ".join(parts)


def _page_link(table: str, pages: str, pages_dir: str) -> str:
    title = f"Table {table}" if table.isdigit() else table.capitalize()
    first = pages.split(", ")[0] if pages else ""
    return f"[{title}]({pages_dir}/{first}.ipynb)" if first else title


def status_markdown(profile: str, *, pages_dir: str = PAGES_DIR) -> str:
    """The reproduction-status page of ``profile`` as MyST Markdown (plain pipe tables, no HTML).

    The summary is one short table per paper, one row per paper table: the table (a link to its
    notebook page under ``pages_dir``, relative to the page), its status and the numbers compared,
    and the mean absolute difference per metric in the metric's unit. The data of our numbers are said once per table
    below it, and on the notebook page.
    """
    description = _profile_description(profile)
    status = status_table(profile)
    results = all_results(profile)
    esc = papers.escape_cell

    lines = ["# Reproduction status", ""]
    intro = (f"Generated by `ispbench report status --profile {profile}` from the result files of the "
             f"**{esc(profile)}** profile (`{_display_path(results_dir(profile))}`). ")
    if description:
        intro += f"The {esc(profile)} profile: {description} "
    if results:
        newest = max(results, key=lambda r: r.get("written_at") or "")
        commit = (newest.get("provenance") or {}).get("git_commit", "unknown")
        intro += (f"Newest result: `{newest.get('name', '?')}`, written {newest.get('written_at') or 'at an unknown time'} "
                  f"from commit `{_short_commit(commit)}`.")
    else:
        intro += (f"**Nothing has run yet** under this profile: there are no result files. Run "
                  f"`ispbench run --profile {profile}`, then this command again.")
    lines += [intro, ""]
    lines += ["A paper table is *reproduced* when every number it prints has a number of ours, *partly* when "
              "some have, *not yet* when none has. *Compared*: numbers of ours out of the numbers the paper "
              "prints (*status: compared*). *Mean abs. difference*: the mean of |ours − paper| over the compared numbers, metric "
              "by metric in the metric's unit (mAP and frequencies in percentage points, pt; PSNR in dB; "
              "time in the paper's unit). Each table links to its notebook page, which says which data "
              "produced our numbers.", ""]

    # One short table per paper (three columns fit a phone's width): the table, linked to its
    # notebook page; its status with the numbers compared; the mean difference per metric.
    lines += ["## Summary", ""]
    for paper, part in status.groupby("paper", sort=False):
        summary_rows = [[
            _page_link(row["table"], row["pages"], pages_dir),
            f"{row['status']}: {row['cells_compared']} of {row['cells_paper']}",
            format_differences(row["mean_abs_difference"], row["units"]) or "—",
        ] for _, row in part.iterrows()]
        lines += [f"### {paper} tables", "",
                  papers.markdown_table(["Table", "Status: compared", "Mean abs. difference"], summary_rows), ""]
    without = [p for p in papers.paper_names() if papers.load(p).empty]
    if without:
        lines += ["Papers with no typed numbers (their available text gives none): "
                  + ", ".join(f"{esc(p)}: not yet reproduced: no notebook" for p in without) + ".", ""]

    for paper in papers.paper_names():
        paper_tables = papers.tables(paper)
        lines += [f"## {paper}", ""]
        if not paper_tables:
            lines += ["Not yet reproduced: no notebook, and no typed paper numbers to compare with.", ""]
            continue
        for table in paper_tables:
            row = status[(status["paper"] == paper) & (status["table"] == table)].iloc[0]
            title = f"Table {table}" if table.isdigit() else table.capitalize()
            lines += [f"### {paper}: {title}", ""]
            if row["notebooks"]:
                summary = (f"Status: **{row['status']}** ({row['cells_compared']} of {row['cells_paper']} "
                           f"numbers compared) by {', '.join(f'`{n}`' for n in row['notebooks'].split(', '))}.")
            else:
                summary = f"Status: **not yet** reproduced: no notebook has compared with it ({row['cells_paper']} numbers)."
            if row["data"]:
                summary += f" Our numbers: profile `{esc(profile)}`, data: {esc(row['data'])}."
            if row["pages"]:
                # the cell-by-cell comparison lives on the notebook page: a six-column table does not fit a phone
                summary += f" Number by number, beside the paper's: {_page_link(table, row['pages'], pages_dir)}."
            lines += [summary, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``ispbench report status --profile embedded --out book/status.md``."""
    parser = argparse.ArgumentParser(
        prog="ispbench report status",
        description="Write the reproduction-status page (MyST Markdown) from the result files of a profile.",
    )
    parser.add_argument("--profile", default="embedded", help="profile whose results to report (default: embedded)")
    parser.add_argument("--out", default="book/status.md", type=Path, help="page to write (default: book/status.md)")
    args = parser.parse_args(argv)
    if args.profile not in runner.available_profiles():
        print(f"ispbench report status: unknown profile {args.profile!r}; valid profiles: "
              f"{', '.join(runner.available_profiles())}", file=sys.stderr)
        return 2
    try:
        page = status_markdown(args.profile)
        status = status_table(args.profile)
    except ResultFileError as exc:  # names the file and the command that regenerates it
        print(f"ispbench report status: {exc}", file=sys.stderr)
        return 2
    atomic.write_text(args.out, page)
    counts = status["status"].value_counts().to_dict()
    print(f"wrote {args.out}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("reproduced", "partly", "not yet"))
          + f" ({len(status)} paper tables, profile {args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
