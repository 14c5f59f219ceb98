"""The papers' published numbers, typed in by hand as CSV, and helpers to set ours beside them.

One CSV per paper (``adaptiveisp.csv``, ``rlpixtuner.csv``, ``posisp.csv``, ``irpo.csv``), one
row per published number, columns::

    paper, table, dataset, method, metric, value, unit, setting, note

- ``table``: the paper's table number as a string (``"1"`` ... ``"10"``); IRPO's two numbers
  come from its abstract (``"abstract"``). POS-ISP's numbers come from its project page, whose
  tables have no numbers: ``"main"`` (detection on LOD-Dark / LOD-All, segmentation on LIS-Dark /
  LIS-All) and ``"efficiency"`` (predictor cost).
- ``dataset``: as the paper writes it (``LOD``, ``OnePlus``, ``Raw COCO``, ``ROD``,
  ``FiveK-Target``, ``Random-Target``, ``HDR+``); empty where the paper names none.
- ``method``: the paper's "Ours" is stored under the method's name (``AdaptiveISP``,
  ``RLPixTuner``); the paper's own row label is kept in ``note``. Baselines use one spelling
  across tables (``Hyperparameter Optimization``, ``Attention-aware Learning``, ``ReconfigISP``,
  ``Refactoring ISP``, ``CMAES``, ``Monolithic Proxy``, ``Cascaded Proxy`` ...).
- ``metric``: ``mAP@0.5``, ``mAP@0.75``, ``mAP@0.5:0.95`` (in %, i.e. AP x 100), ``PSNR`` (dB),
  ``SSIM``, ``LPIPS``, ``queries``, ``time`` (unit in ``unit``), ``frequency`` (%).
- ``setting``: ``key=value`` pairs joined by ``;`` that tell rows of one table apart, e.g.
  ``detector=YOLOX``, ``stages=3``, ``lambda_c=0.01;module=CCM``, ``resolution=720P``,
  ``reuse_penalty=yes``; empty otherwise.
- ``value``: empty where the paper prints no number but the cell means something (RLPixTuner
  Table 2 out-of-memory cells, ``note`` = ``OOM``). Cells printed as ``-`` are not stored.

Notebooks compare with :func:`side_by_side`. Matching is **exact** on ``dataset``, ``method``,
``metric`` and ``setting``: a notebook must name its rows with the paper's names as stored here
(``AdaptiveISP``, not ``Ours``; ``mAP@0.5``, not ``map50``). Rows it produces that the paper
does not have are kept, with ``paper_value`` NaN.

Example:
    >>> from ispbench import papers
    >>> papers.value("AdaptiveISP", "1", "LOD", "AdaptiveISP", "mAP@0.5")
    71.4
    >>> papers.tables("RLPixTuner")
    ['1', '2', '3', '4']
"""

from __future__ import annotations

import difflib
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

PAPERS_DIR = Path(__file__).resolve().parent

#: Paper name -> CSV file in this package.
PAPER_FILES: dict[str, str] = {
    "AdaptiveISP": "adaptiveisp.csv",
    "RLPixTuner": "rlpixtuner.csv",
    "POS-ISP": "posisp.csv",
    "IRPO": "irpo.csv",
}

#: The columns of the typed paper numbers (one CSV per paper).
COLUMNS = ["paper", "table", "dataset", "method", "metric", "value", "unit", "setting", "note"]
#: Key that identifies one published number inside a (paper, table).
KEY = ["dataset", "method", "metric", "setting"]
#: Columns of :func:`side_by_side`'s output.
#: The columns of :func:`side_by_side`'s output.
SIDE_BY_SIDE_COLUMNS = [
    "paper", "table", "dataset", "method", "metric", "setting",
    "paper_value", "our_value", "difference", "profile", "data",
]
#: Our rows' interval columns (:func:`ispbench.stats.interval_fields`), carried into the comparison when present.
INTERVAL_COLUMNS = {"n_seeds": "n_seeds", "ci_low": "our_ci_low", "ci_high": "our_ci_high"}
METRICS = ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95", "PSNR", "SSIM", "LPIPS", "queries", "time", "frequency", "params",
           "MACs", "peak memory", "FPS")


class PaperNumberNotFound(KeyError):
    """A look-up in the typed paper numbers failed; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would print the repr (newlines as \\n)
        return str(self.args[0]) if self.args else ""


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", str(name).lower())


def paper_names() -> list[str]:
    """Every paper that has a CSV file (possibly empty): ``['AdaptiveISP', 'RLPixTuner', 'POS-ISP', 'IRPO']``."""
    return list(PAPER_FILES)


def _resolve_paper(paper: str) -> str:
    """Canonical paper name; accepts case and punctuation variants (``posisp`` -> ``POS-ISP``)."""
    if paper in PAPER_FILES:
        return paper
    for name in PAPER_FILES:
        if _norm(name) == _norm(paper):
            return name
    raise PaperNumberNotFound(f"unknown paper {paper!r}; valid papers: {', '.join(PAPER_FILES)}")


@lru_cache(maxsize=None)
def _read(paper: str) -> pd.DataFrame:
    path = PAPERS_DIR / PAPER_FILES[paper]
    if not path.exists():
        raise FileNotFoundError(f"paper numbers of {paper} missing: expected {path} (part of the ispbench package)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    if list(frame.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {COLUMNS}")
    try:
        frame["value"] = pd.to_numeric(frame["value"].replace("", float("nan")), errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: column 'value' must hold numbers or be empty: {exc}") from exc
    bad = frame[frame["paper"] != paper]
    if len(bad):
        raise ValueError(f"{path}: rows with paper {sorted(set(bad['paper']))}, expected only {paper!r}")
    dup = frame[frame.duplicated(["table", *KEY], keep=False)]
    if len(dup):
        raise ValueError(f"{path}: duplicated (table, dataset, method, metric, setting):\n{dup.to_string()}")
    return frame


def load(paper: str | None = None) -> pd.DataFrame:
    """The typed-in numbers of one paper, or of all papers.

    Args:
        paper: ``"AdaptiveISP"``, ``"RLPixTuner"``, ``"POS-ISP"``, ``"IRPO"`` (case-insensitive),
            or ``None`` for all.

    Returns:
        DataFrame with columns :data:`COLUMNS`; ``value`` is float (NaN for e.g. OOM cells), the
        other columns are strings (empty, never NaN). A fresh copy: callers may modify it.

    Raises:
        KeyError: unknown paper, listing the valid ones.
    """
    names = paper_names() if paper is None else [_resolve_paper(paper)]
    frames = [_read(name) for name in names]
    return pd.concat(frames, ignore_index=True).copy()


def tables(paper: str) -> list[str]:
    """The table ids of ``paper`` with typed numbers, in numeric order (``['1', '2', ...]``)."""
    frame = load(paper)
    ids = list(dict.fromkeys(frame["table"]))
    return sorted(ids, key=lambda t: (0, int(t), "") if t.isdigit() else (1, 0, t))


def value(paper: str, table: str | int, dataset: str, method: str, metric: str, setting: str = "") -> float:
    """One published number.

    Example:
        >>> value("RLPixTuner", 1, "Random-Target", "CMAES", "PSNR")
        32.29

    Raises:
        KeyError: naming what was looked up and listing the closest stored rows.
    """
    frame = load(paper)
    table = str(table)
    wanted = {"table": table, "dataset": dataset, "method": method, "metric": metric, "setting": setting}
    mask = pd.Series(True, index=frame.index)
    for column, wanted_value in wanted.items():
        mask &= frame[column] == wanted_value
    hits = frame[mask]
    if len(hits) == 1:
        return float(hits["value"].iloc[0])
    described = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
    if table not in set(frame["table"]):
        raise PaperNumberNotFound(f"{paper}: no table {table!r} in the typed numbers (looked up {described}); "
                       f"tables: {', '.join(tables(paper)) or 'none'}")
    candidates = _close_rows(frame[frame["table"] == table], wanted)
    hint = ""
    if method.strip().lower() == "ours":
        hint = f" (the paper's 'Ours' is stored under the method's name, {_resolve_paper(paper)!r})"
    raise PaperNumberNotFound(f"{paper} table {table}: no number for {described}{hint}; closest stored rows:\n"
                              + candidates)


def _close_rows(frame: pd.DataFrame, wanted: Mapping[str, str], n: int = 5) -> str:
    def score(row: pd.Series) -> float:
        return sum(difflib.SequenceMatcher(None, str(row[c]), str(wanted[c])).ratio() for c in KEY)

    scored = sorted(((score(row), idx) for idx, row in frame.iterrows()), reverse=True)[:n]
    lines = []
    for _, idx in scored:
        row = frame.loc[idx]
        lines.append("  " + ", ".join(f"{c}={row[c]!r}" for c in ["table", *KEY]))
    return "\n".join(lines)


def _ours_frame(ours: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    if isinstance(ours, pd.DataFrame):
        frame = ours.copy()
    else:
        rows = [dict(row) for row in ours]
        frame = pd.DataFrame(rows)
    missing = [c for c in ("method", "metric", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"ours: missing column(s) {missing}; expected at least 'method', 'metric', 'value' "
                         f"(optional 'dataset', 'setting'); got {list(frame.columns)}")
    return frame


def side_by_side(
    ours: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    paper: str,
    table: str | int,
    dataset: str | None = None,
    profile: str,
    data: str,
) -> pd.DataFrame:
    """Our numbers beside the paper's, one row per published number of the table.

    Store the result in the notebook's result file as the table ``comparison`` (see
    :mod:`ispbench.report`).

    Args:
        ours: DataFrame or list of dicts with columns ``method``, ``metric``, ``value`` and
            optionally ``dataset`` and ``setting``. Names must be the paper's as stored in the
            CSV (exact match): ``AdaptiveISP``/``RLPixTuner`` for the paper's "Ours".
        paper, table: which published table.
        dataset: restrict to one dataset of the table. Our rows without a ``dataset`` column get
            this dataset (or the table's only dataset).
        profile: the profile that produced ``ours`` (``smoke``, ``embedded``, ``paper``).
        data: which data produced ``ours``, in words.

    Returns:
        DataFrame with columns :data:`SIDE_BY_SIDE_COLUMNS`: first every published number of the
        table (``our_value`` NaN when we have none), in the paper's order, then our rows the paper
        does not have (``paper_value`` NaN). ``difference = our_value - paper_value``. When ``ours``
        carries interval columns (``n_seeds``, ``ci_low``, ``ci_high``), they follow as ``n_seeds``,
        ``our_ci_low``, ``our_ci_high``.

    Raises:
        KeyError: unknown paper, table or dataset.
        ValueError: malformed ``ours`` (missing columns, non-numeric values, duplicated rows,
            a method called "Ours", datasets outside ``dataset``).

    Example:
        >>> ours = [{"method": "AdaptiveISP", "metric": "mAP@0.5", "value": 70.0}]
        >>> df = side_by_side(ours, paper="AdaptiveISP", table=9, profile="smoke", data="toy")
        >>> round(float(df.loc[df.method.eq("AdaptiveISP") & df.metric.eq("mAP@0.5"), "difference"].iloc[0]), 2)
        -5.6
    """
    paper = _resolve_paper(paper)
    table = str(table)
    published = load(paper)
    published = published[published["table"] == table]
    if published.empty:
        raise PaperNumberNotFound(f"{paper}: no table {table!r} in the typed numbers; tables: {', '.join(tables(paper)) or 'none'}")
    table_datasets = list(dict.fromkeys(published["dataset"]))
    if dataset is not None:
        if dataset not in table_datasets:
            raise PaperNumberNotFound(f"{paper} table {table}: no dataset {dataset!r}; datasets: {table_datasets}")
        published = published[published["dataset"] == dataset]

    frame = _ours_frame(ours)
    if "dataset" not in frame.columns:
        if dataset is not None:
            frame["dataset"] = dataset
        elif len(table_datasets) == 1:
            frame["dataset"] = table_datasets[0]
        else:
            raise ValueError(f"ours has no 'dataset' column and {paper} table {table} has several datasets "
                             f"{table_datasets}: add a 'dataset' column or pass dataset=")
    if "setting" not in frame.columns:
        frame["setting"] = ""
    for column in ("dataset", "method", "metric", "setting"):
        frame[column] = frame[column].fillna("").astype(str)
    try:
        frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"ours: column 'value' must be numeric: {exc}") from exc
    ours_label = frame[frame["method"].str.strip().str.lower() == "ours"]
    if len(ours_label):
        name = "AdaptiveISP" if paper == "AdaptiveISP" else "RLPixTuner" if paper == "RLPixTuner" else paper
        raise ValueError(f"ours: method 'Ours' is ambiguous; use the paper's method name (e.g. {name!r}) so that "
                         f"rows match the typed numbers")
    if dataset is not None:
        other = sorted(set(frame["dataset"]) - {dataset})
        if other:
            raise ValueError(f"ours: rows for dataset(s) {other} but dataset={dataset!r} was asked for")
    dup = frame[frame.duplicated(KEY, keep=False)]
    if len(dup):
        raise ValueError(f"ours: several values for the same (dataset, method, metric, setting):\n"
                         f"{dup[KEY + ['value']].to_string()}")
    unknown_metrics = sorted(set(frame["metric"]) - set(published["metric"]))
    if unknown_metrics:
        warnings.warn(f"ours: metric(s) {unknown_metrics} do not occur in {paper} table {table} "
                      f"(metrics there: {sorted(set(published['metric']))}); they are kept as extra rows",
                      UserWarning, stacklevel=2)

    left = published[["paper", "table", *KEY, "value"]].rename(columns={"value": "paper_value"})
    intervals = [c for c in INTERVAL_COLUMNS if c in frame.columns]
    right = frame[[*KEY, "value", *intervals]].rename(columns={"value": "our_value", **INTERVAL_COLUMNS})
    matched = left.merge(right, on=KEY, how="left")
    extra = right.merge(left[KEY], on=KEY, how="left", indicator=True)
    extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge")
    extra = extra.assign(paper=paper, table=table, paper_value=float("nan"))
    out = pd.concat([matched, extra], ignore_index=True)
    out["paper_value"] = out["paper_value"].astype(float)
    out["our_value"] = out["our_value"].astype(float)
    out["difference"] = out["our_value"] - out["paper_value"]
    out["profile"] = profile
    out["data"] = data
    return out[SIDE_BY_SIDE_COLUMNS + [INTERVAL_COLUMNS[c] for c in intervals]].reset_index(drop=True)


#: Decimals the papers print per metric (used for display only; other metrics: up to 4, trimmed).
DECIMALS = {"mAP@0.5": 1, "mAP@0.75": 1, "mAP@0.5:0.95": 1, "PSNR": 2, "SSIM": 4, "LPIPS": 4, "time": 2}


def format_number(x: Any, metric: str | None = None, signed: bool = False) -> str:
    """Display a number with the paper's precision for ``metric``; NaN -> ``''``.

    Example:
        >>> format_number(49.0, "mAP@0.5"), format_number(0.0968), format_number(-1.4, "PSNR", signed=True)
        ('49.0', '0.0968', '-1.40')
    """
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if x != x:  # NaN
        return ""
    decimals = DECIMALS.get(metric or "")
    sign = "+" if signed else ""
    if decimals is not None:
        text = f"{x:{sign}.{decimals}f}"
    else:
        text = f"{x:{sign}.4f}".rstrip("0").rstrip(".")
    if text.lstrip("+-").strip("0.") == "":
        text = text.lstrip("+-")
    return text


def escape_cell(text: Any) -> str:
    """Make ``text`` safe inside a Markdown pipe-table cell."""
    text = "" if text is None else str(text)
    for char in ("\\", "|", "*", "$"):
        text = text.replace(char, "\\" + char)
    text = text.replace("<", "&lt;")
    return " ".join(text.split())


def markdown_table(header: list[str], rows: Iterable[Iterable[Any]], align: list[str] | None = None) -> str:
    """A plain Markdown pipe table (cells escaped); ``align`` items ``'l'``/``'r'``."""
    align = align or ["l"] * len(header)
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    for row in rows:
        cells = [escape_cell(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"markdown_table: row has {len(cells)} cells, header has {len(header)}")
        lines.append("| " + " | ".join(c if c else " " for c in cells) + " |")
    return "\n".join(lines)


def format_side_by_side(df: pd.DataFrame, *, data_column: bool = True) -> str:
    """A Markdown table of :func:`side_by_side`'s output for display.

    In a notebook: ``IPython.display.Markdown(format_side_by_side(df))``. Empty ``Ours`` cells
    mean "not computed"; ``OOM`` marks cells where the paper reports out-of-memory. With
    ``data_column=False`` the ``Data`` column (profile and data of our numbers) is left out, for
    a page that says it once above the table.
    """
    missing = [c for c in SIDE_BY_SIDE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"format_side_by_side: not a side_by_side() table, missing columns {missing}")
    notes = {}
    for paper in set(df["paper"]):
        try:
            pub = load(paper)
        except KeyError:
            continue
        for _, row in pub[pub["note"] == "OOM"].iterrows():
            notes[(paper, row["table"], *(row[c] for c in KEY))] = "OOM"
    rows = []
    for _, row in df.iterrows():
        key = (row["paper"], str(row["table"]), *(row[c] for c in KEY))
        metric = row["metric"]
        paper_cell = format_number(row["paper_value"], metric) or notes.get(key, "")
        if row["paper_value"] != row["paper_value"] and key not in notes:
            paper_cell = "not in paper"
        ours_cell = format_number(row["our_value"], metric)
        rows.append([row["dataset"], row["method"], metric, row["setting"], paper_cell, ours_cell,
                     format_number(row["difference"], metric, signed=True),
                     f"{row['profile']}: {row['data']}" if ours_cell else ""])
    header = ["Dataset", "Method", "Metric", "Setting", "Paper", "Ours", "Ours − paper", "Data"]
    align = ["l", "l", "l", "l", "r", "r", "r", "l"]
    if not data_column:
        header, align, rows = header[:-1], align[:-1], [row[:-1] for row in rows]
    return markdown_table(header, rows, align)
