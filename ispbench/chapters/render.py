"""How a table notebook shows its results: the paper's layout, our numbers beside the paper's, and a figure.

Display only: nothing here changes a number or the tables a notebook writes to its result file.

* :func:`paper_table` turns a :func:`ispbench.papers.side_by_side` comparison into the paper's
  layout: methods (and settings) as rows, metrics as columns, each cell our number (rounded as the
  paper rounds, :data:`ispbench.papers.DECIMALS`), our 95% interval when the rows carry
  ``our_ci_low``/``our_ci_high``, and the paper's number with the difference; empty where a number
  is missing (never ``NaN``). The profile and data of our numbers are a caption line, not a column.
  The result is a compact HTML table that fits the book's content column (676 px at 1280 px),
  scrolling inside its own box if a paper table is genuinely wider.
* :func:`paper_figure`: bars of our numbers with interval whiskers beside the paper's, one panel per metric.
* :func:`show_results`: both, displayed in a notebook (the cell the published page opens with,
  see :func:`ispbench.runner.publish`).

Example:
    >>> import pandas as pd
    >>> comparison = pd.DataFrame({"paper": "AdaptiveISP", "table": "1", "dataset": "LOD",
    ...     "method": ["AdaptiveISP"], "metric": ["mAP@0.5"], "setting": [""], "paper_value": [71.4],
    ...     "our_value": [70.04], "difference": [-1.36], "profile": "smoke", "data": "toy"})
    >>> paper_table(comparison).frame.loc[0, "mAP@0.5"]
    '70.0 (paper 71.4, −1.4)'
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from ispbench import papers

__all__ = ["COLUMN_KEYS", "FoldedTable", "PaperTable", "curve_figure", "folded", "paper_figure", "paper_table",
           "show_results"]

#: Setting keys that become column groups rather than rows (``module=CCM``, ``resolution=4K``).
COLUMN_KEYS = ("module", "resolution")
#: Widest figure, inches at the inline backend's 100 dpi: the content column is 676 px.
MAX_FIGURE_WIDTH = 6.6
MINUS = "\u2212"

_STYLE = """<style>
.ispbench-paper-table{max-width:100%;overflow-x:auto;margin:0 0 .8em 0}
.ispbench-paper-table table{border-collapse:collapse;font-size:.82em;line-height:1.25;width:auto;margin:0}
.ispbench-paper-table th,.ispbench-paper-table td{padding:.25em .45em;border-bottom:1px solid #ddd;vertical-align:top}
.ispbench-paper-table thead th{text-align:center;border-bottom:2px solid #999;font-weight:600}
.ispbench-paper-table tbody th{text-align:left;font-weight:500;max-width:14em}
.ispbench-paper-table td{text-align:right;white-space:nowrap}
.ispbench-paper-table .ours{font-weight:600;display:block}
.ispbench-paper-table .ci,.ispbench-paper-table .paper{display:block;color:#666;font-size:.9em}
.ispbench-paper-table p.ispbench-caption{font-size:.8em;color:#555;margin:.3em 0 0 0;max-width:100%}
</style>"""


def _check(comparison: pd.DataFrame) -> None:
    missing = [c for c in papers.SIDE_BY_SIDE_COLUMNS if c not in comparison.columns]
    if missing:
        raise ValueError(f"comparison: not a side_by_side() table, missing columns {missing}")


def _checked_frame(comparison: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of a comparison whose key columns are strings ("" where missing)."""
    _check(comparison)
    frame = comparison.copy()
    for column in ("dataset", "method", "metric", "setting"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def _sign(x: float, metric: str) -> str:
    return papers.format_number(x, metric, signed=True).replace("-", MINUS)


def _parse_setting(setting: str) -> list[tuple[str, str]]:
    parts = []
    for part in str(setting or "").split(";"):
        if part.strip():
            key, _, value = part.partition("=")
            parts.append((key.strip(), value.strip()))
    return parts


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _oom_keys(comparison: pd.DataFrame) -> set[tuple]:
    """The (paper, table, dataset, method, metric, setting) cells the paper reports as out of memory."""
    keys = set()
    for paper in set(comparison["paper"]):
        try:
            pub = papers.load(paper)
        except KeyError:
            continue
        for _, row in pub[pub["note"] == "OOM"].iterrows():
            keys.add((paper, row["table"], *(row[c] for c in papers.KEY)))
    return keys


@dataclass
class PaperTable:
    """A comparison in the paper's layout, ready to display (``_repr_html_``).

    Attributes:
        frame: the layout as plain text cells (``"47.0 [45.1, 48.9] (paper 47.1, −0.1)"``; ``""`` when
            empty), rows = methods/settings, columns = metrics (or ``(metric, module)`` pairs).
        caption: the line under the table: which profile and data produced our numbers.
        html: the rendered HTML (a ``<div class="ispbench-paper-table">`` holding a ``<table>``).
    """

    frame: pd.DataFrame
    caption: str
    html: str = field(repr=False)

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.frame.to_string() + "\n" + self.caption


def _layout(comparison: pd.DataFrame, column_keys: Sequence[str]) -> tuple[list[str], list[tuple], list[tuple], dict]:
    """Row keys, column keys and cells (row key, column key) -> comparison row."""
    datasets = list(dict.fromkeys(comparison["dataset"].astype(str)))
    methods = list(dict.fromkeys(comparison["method"].astype(str)))
    row_names: list[str] = []
    if len(datasets) > 1:
        row_names.append("Dataset")
    if len(methods) > 1 or not any(str(s) for s in comparison["setting"]):
        row_names.append("Method")
    setting_keys: list[str] = []
    for setting in comparison["setting"]:
        for key, _ in _parse_setting(setting):
            if key not in column_keys and key not in setting_keys:
                setting_keys.append(key)
    row_names += setting_keys
    rows: list[tuple] = []
    cols: list[tuple] = []
    cells: dict[tuple, pd.Series] = {}
    for _, r in comparison.iterrows():
        parts = dict(_parse_setting(r["setting"]))
        key: list[str] = []
        if "Dataset" in row_names:
            key.append(str(r["dataset"]))
        if "Method" in row_names:
            key.append(str(r["method"]))
        key += [parts.get(k, "") for k in setting_keys]
        col = (str(r["metric"]), " ".join(parts[k] if k in COLUMN_KEYS else f"{k}={parts[k]}"
                                          for k in column_keys if k in parts))
        if tuple(key) not in rows:
            rows.append(tuple(key))
        if col not in cols:
            cols.append(col)
        cells[(tuple(key), col)] = r
    return row_names, rows, cols, cells


def paper_table(comparison: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                methods: Sequence[str] | None = None, column_keys: Sequence[str] = COLUMN_KEYS,
                title: str = "", interval: bool = True) -> PaperTable:
    """A :func:`~ispbench.papers.side_by_side` comparison in the paper's layout.

    Args:
        comparison: :func:`ispbench.papers.side_by_side`'s output (columns
            :data:`ispbench.papers.SIDE_BY_SIDE_COLUMNS`, optionally ``our_ci_low``/``our_ci_high``).
        metrics: only these metrics, in this order (default: all, in the comparison's order).
        methods: only these methods (default: all, the paper's rows and ours).
        column_keys: setting keys that become column groups (``module=CCM`` -> a ``CCM`` column
            under its metric; another key is labelled ``key=value``); the other setting keys
            (``lambda_c``, ``stages``, ``detector``) become row-label columns. A paper table too
            wide for the page reads better turned: ``column_keys=("lambda_c",)`` puts the
            modules in rows and the ``lambda_c`` values in columns.
        title: an optional bold line above the table.
        interval: show our 95% interval where the rows carry one.

    Returns:
        :class:`PaperTable`. A cell reads ``ours [low, high]`` over ``paper P, ours − paper D``;
        only the paper's number where we have none; ``OOM`` where the paper ran out of memory;
        empty where neither has a number.

    Raises:
        ValueError: ``comparison`` is not a side_by_side table.
    """
    if len(comparison) == 0:  # a notebook with nothing to compare under this profile
        caption = "No numbers to compare under this profile."
        return PaperTable(pd.DataFrame(), caption, f"<p class='ispbench-caption'>{caption}</p>")
    frame = _checked_frame(comparison)
    if metrics is not None:
        frame = frame[frame["metric"].isin(list(metrics))]
        order = {m: i for i, m in enumerate(metrics)}
        frame = frame.iloc[sorted(range(len(frame)), key=lambda i: order[frame["metric"].iloc[i]])]
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    profiles = [p for p in dict.fromkeys(frame["profile"].astype(str)) if p and p != "nan"]
    datas = [d for d in dict.fromkeys(frame["data"].astype(str)) if d and d != "nan"]
    paper_names = list(dict.fromkeys(frame["paper"].astype(str)))
    tables = list(dict.fromkeys(frame["table"].astype(str)))
    source = f"{', '.join(paper_names)} Table {', '.join(tables)}" if paper_names else "the paper"
    caption = (f"Ours: profile {', '.join(profiles) or '?'}; data: {'; '.join(datas) or '?'}. "
               f"Each cell: our number{' [95% interval]' if interval else ''}, then {source}'s number "
               f"and ours {MINUS} paper; empty: no number.")
    if frame.empty:
        empty = pd.DataFrame()
        body = f"{_STYLE}<div class='ispbench-paper-table'><p>No numbers to compare.</p><p class='ispbench-caption'>{html.escape(caption)}</p></div>"
        return PaperTable(empty, caption, body)

    row_names, rows, cols, cells = _layout(frame, column_keys)
    oom = _oom_keys(frame)
    text_cells: dict[tuple, str] = {}
    html_cells: dict[tuple, str] = {}
    for (rkey, col), r in cells.items():
        metric = r["metric"]
        ours = papers.format_number(r["our_value"], metric) if _finite(r["our_value"]) else ""
        ci = ""
        if interval and ours and _finite(r.get("our_ci_low")) and _finite(r.get("our_ci_high")):
            ci = f"[{papers.format_number(r['our_ci_low'], metric)}, {papers.format_number(r['our_ci_high'], metric)}]"
        paper_text = ""
        if _finite(r["paper_value"]):
            paper_text = f"paper {papers.format_number(r['paper_value'], metric)}"
            if ours and _finite(r["difference"]):
                paper_text += f", {_sign(r['difference'], metric)}"
        elif (r["paper"], str(r["table"]), *(r[c] for c in papers.KEY)) in oom:
            paper_text = "paper OOM"
        text = " ".join(t for t in (ours, ci) if t)
        text_cells[(rkey, col)] = (f"{text} ({paper_text})" if text and paper_text else text or paper_text)
        parts = []
        if ours:
            parts.append(f"<span class='ours'>{html.escape(ours)}</span>")
        if ci:
            parts.append(f"<span class='ci'>{html.escape(ci)}</span>")
        if paper_text:
            parts.append(f"<span class='paper'>{html.escape(paper_text)}</span>")
        html_cells[(rkey, col)] = "".join(parts)

    grouped = any(sub for _, sub in cols)
    col_labels = [f"{m} {sub}".strip() for m, sub in cols]
    index = pd.MultiIndex.from_tuples(rows, names=row_names) if len(row_names) > 1 else pd.Index([r[0] for r in rows], name=row_names[0])
    out = pd.DataFrame([[text_cells.get((r, c), "") for c in cols] for r in rows], index=index, columns=col_labels)

    if grouped:
        top = "".join(f"<th rowspan='2'>{html.escape(n)}</th>" for n in row_names)
        sub = ""
        for metric in dict.fromkeys(m for m, _ in cols):
            subs = [s for m, s in cols if m == metric]
            if any(subs):
                top += f"<th colspan='{len(subs)}'>{html.escape(metric)}</th>"
                sub += "".join(f"<th>{html.escape(_header(s))}</th>" for s in subs)
            else:
                top += f"<th rowspan='2'>{html.escape(metric)}</th>"
        head = [f"<tr>{top}</tr>", f"<tr>{sub}</tr>"]
    else:
        head = ["<tr>" + "".join(f"<th>{html.escape(n)}</th>" for n in row_names)
                + "".join(f"<th>{html.escape(m)}</th>" for m, _ in cols) + "</tr>"]
    body_rows = []
    for r in rows:
        label = "".join(f"<th>{html.escape(v)}</th>" for v in r)
        body_rows.append("<tr>" + label + "".join(f"<td>{html_cells.get((r, c), '')}</td>" for c in cols) + "</tr>")
    title_html = f"<p><strong>{html.escape(title)}</strong></p>" if title else ""
    rendered = (f"{_STYLE}<div class='ispbench-paper-table'>{title_html}<table class='ispbench-paper'>"
                f"<thead>{''.join(head)}</thead><tbody>{''.join(body_rows)}</tbody></table>"
                f"<p class='ispbench-caption'>{html.escape(caption)}</p></div>")
    return PaperTable(out, caption, rendered)


#: How setting names read in a table header (the narrow column of Table 4 needs the paper's symbol).
HEADER_NAMES = {"lambda_c=": "λc=", "resolution=": ""}


def _header(label: str) -> str:
    for long, short in HEADER_NAMES.items():
        label = label.replace(long, short)
    return label


def _row_label(r: pd.Series, multi_dataset: bool, multi_method: bool) -> str:
    parts = [r["dataset"]] if multi_dataset else []
    if multi_method or not r["setting"]:
        parts.append(r["method"])
    parts += [f"{k}={v}" for k, v in _parse_setting(r["setting"])]
    return " · ".join(p for p in parts if p)


def paper_figure(comparison: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None, max_panels: int = 6):
    """Bars of our numbers (with 95% interval whiskers) beside the paper's, one panel per metric.

    Only metrics with at least one of our numbers are drawn (at most ``max_panels``); a row
    without our number shows the paper's bar alone. The figure is at most
    :data:`MAX_FIGURE_WIDTH` inches wide (the book's content column).

    Returns:
        ``matplotlib.figure.Figure``, or ``None`` when there is none of our numbers to draw.
    """
    if len(comparison) == 0:
        return None
    frame = _checked_frame(comparison)
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    ours_metrics = [m for m in dict.fromkeys(frame["metric"]) if frame.loc[frame["metric"] == m, "our_value"].notna().any()]
    if metrics is not None:
        ours_metrics = [m for m in metrics if m in ours_metrics]
    ours_metrics = ours_metrics[:max_panels]
    if not ours_metrics:
        return None
    multi_dataset = frame["dataset"].nunique() > 1
    multi_method = frame["method"].nunique() > 1
    ncols = min(3, len(ours_metrics))
    nrows = math.ceil(len(ours_metrics) / ncols)
    n_bars = max(int((frame["metric"] == m).sum()) for m in ours_metrics)
    height = min(2.8, 0.6 + 0.22 * n_bars)
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_FIGURE_WIDTH, height * nrows + 0.4), squeeze=False)
    for ax, metric in zip(axes.flat, ours_metrics, strict=False):
        sub = frame[frame["metric"] == metric]
        labels = [_row_label(r, multi_dataset, multi_method) for _, r in sub.iterrows()]
        y = np.arange(len(sub))
        ours = sub["our_value"].astype(float).to_numpy()
        paper = sub["paper_value"].astype(float).to_numpy()
        lo = sub["our_ci_low"].astype(float).to_numpy() if "our_ci_low" in sub else np.full(len(sub), np.nan)
        hi = sub["our_ci_high"].astype(float).to_numpy() if "our_ci_high" in sub else np.full(len(sub), np.nan)
        err = np.vstack([np.where(np.isfinite(lo), ours - lo, 0.0), np.where(np.isfinite(hi), hi - ours, 0.0)])
        err = np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)
        ax.barh(y - 0.2, np.nan_to_num(ours), height=0.4, color="#3b75af", xerr=err, capsize=2,
                error_kw={"elinewidth": 0.8}, label="ours (95% interval)")
        ax.barh(y + 0.2, np.nan_to_num(paper), height=0.4, color="#bbbbbb", label="paper")
        ax.set_yticks(y)
        ax.set_yticklabels([lab if len(lab) <= 28 else lab[:27] + "…" for lab in labels], fontsize=6)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=8)
        ax.tick_params(axis="x", labelsize=6)
    for ax in list(axes.flat)[len(ours_metrics):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def curve_figure(summary: pd.DataFrame, *, x: str, y: str = "mean", group: Sequence[str] = ("method",),
                 panels: str | None = None, log_x: bool = False, xlabel: str = "", ylabel: str = "",
                 title: str = "", reference: dict[str, float] | None = None):
    """Lines of ``y`` against ``x`` with their 95% interval bands, one line per ``group`` value.

    Args:
        summary: rows with columns ``x``, ``y`` and the ``group`` columns; ``ci_low``/``ci_high``
            (drawn as bands where finite).
        panels: a column whose values get one panel each (e.g. the target set).
        reference: horizontal dashed lines ``{label: value}`` (e.g. the paper's number).

    Returns:
        ``matplotlib.figure.Figure`` (at most :data:`MAX_FIGURE_WIDTH` inches wide).
    """
    missing = [c for c in (x, y, *group, *([panels] if panels else [])) if c not in summary.columns]
    if missing:
        raise ValueError(f"summary: missing column(s) {missing}; has {list(summary.columns)}")
    keys = list(dict.fromkeys(summary[panels])) if panels else [None]
    fig, axes = plt.subplots(1, len(keys), figsize=(MAX_FIGURE_WIDTH, 3.0), squeeze=False, sharey=True)
    for ax, key in zip(axes.flat, keys, strict=True):
        sub = summary if key is None else summary[summary[panels] == key]
        for label, line in sub.groupby(list(group), sort=False):
            line = line.sort_values(x)
            name = " ".join(str(v) for v in (label if isinstance(label, tuple) else (label,)))
            (drawn,) = ax.plot(line[x], line[y], marker="o", markersize=2.5, linewidth=1.2, label=name)
            if {"ci_low", "ci_high"} <= set(line.columns) and np.isfinite(line["ci_low"].astype(float)).any():
                ax.fill_between(line[x], line["ci_low"].astype(float), line["ci_high"].astype(float),
                                color=drawn.get_color(), alpha=0.15, linewidth=0)
        for ref_label, value in (reference or {}).items():
            ax.axhline(value, color="#888888", linestyle="--", linewidth=0.8)
            ax.annotate(ref_label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=6, color="#555555",
                        va="bottom")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel or x, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3, linewidth=0.5)
        if key is not None:
            ax.set_title(str(key), fontsize=8)
    axes.flat[0].set_ylabel(ylabel or y, fontsize=7)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(len(names), 1)), fontsize=6, frameon=False)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0.12 + 0.05 * (len(names) > 4), 1, 1))
    return fig


def show_results(comparison: pd.DataFrame, *, figure: bool = True, **kwargs: Any) -> None:
    """Display :func:`paper_table` and (``figure=True``) :func:`paper_figure` in a notebook.

    ``kwargs`` go to :func:`paper_table` (``metrics``, ``methods``, ``title`` ...); the figure gets
    the same ``metrics`` and ``methods``. Returns nothing (a returned value would be shown twice).
    """
    table = paper_table(comparison, **kwargs)
    display(table)
    if figure:
        fig = paper_figure(comparison, metrics=kwargs.get("metrics"), methods=kwargs.get("methods"))
        if fig is not None:
            plt.show()


@dataclass
class FoldedTable:
    """A long-format table shown folded under a one-line summary (``<details>``), one click to open.

    Attributes:
        frame: the table as given.
        summary: the line shown while folded.
    """

    frame: pd.DataFrame
    summary: str

    def _repr_html_(self) -> str:
        body = self.frame.to_html(classes="dataframe ispbench-long-table", border=0, na_rep="",
                                  float_format=lambda x: f"{x:.6g}")
        # opened, a long table scrolls inside its own box rather than widening the page
        return (f'<details class="ispbench-folded"><summary>{html.escape(self.summary)} '
                f'({len(self.frame)} rows)</summary><div style="overflow-x: auto">{body}</div></details>')

    def __str__(self) -> str:
        return f"{self.summary}\n{self.frame.to_string()}"


def folded(frame: pd.DataFrame, summary: str) -> FoldedTable:
    """Show ``frame`` (the long-format numbers behind a page's paper table, provenance columns
    included) folded below the page's results: closed by default, so it never widens the page.

    Example:
        >>> "<details" in folded(pd.DataFrame({"a": [1.0]}), "Our numbers")._repr_html_()
        True
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame: expected a pandas DataFrame, got {type(frame).__name__}")
    return FoldedTable(frame, str(summary))
