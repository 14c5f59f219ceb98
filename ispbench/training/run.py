"""A run folder's console and files: where it is, the metrics log, the progress bar, the result.

Every trainer writes into one folder ``out_dir``::

    run_dir = start_run(args.out_dir)                     # created, and printed
    log = MetricsLog(run_dir, rows=ckpt["metrics"] if ckpt else [])
    bar = progress_bar(total=args.iterations, initial=start, desc="adaptiveisp", enabled=args.progress_bar)
    ...
    log.append({"iteration": it + 1, "loss": loss})      # metrics.csv rewritten atomically
    bar.update(1)                                          # never counts past ``total``
    ...
    finish_run("load_policy", export_path)                 # how to load what was trained
"""

from __future__ import annotations

import csv
import importlib.util
import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# tqdm.auto's notebook bar needs ipywidgets; without it, it warns in every kernel that imports this
# module (the warning was on each page of the book), so the plain bar is used there
if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm import tqdm

from ispbench import atomic

#: The metrics log every trainer writes in its run folder.
METRICS_NAME = "metrics.csv"


def start_run(out_dir: str | Path) -> Path:
    """Create the run folder ``out_dir`` and print where it is (stderr)."""
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run folder: {run_dir.resolve()}", file=sys.stderr)
    return run_dir


def finish_run(loader: str, path: str | Path) -> str:
    """Print (stderr) and return how to load the result, e.g. ``load_policy('/abs/policy.pt')``.

    Args:
        loader: ``"module:function"`` that loads the file (e.g.
            ``"ispbench.methods.adaptiveisp.inference:load_policy"``).
        path: the file it loads.
    """
    module, func = loader.split(":")
    text = f"from {module} import {func}; {func}({str(Path(path).resolve())!r})"
    print(f"done; load the result with: {text}", file=sys.stderr)
    return text


class MetricsLog:
    """``<run_dir>/metrics.csv``: rows of metrics, the whole file rewritten atomically on each append.

    Args:
        run_dir: the run folder.
        rows: rows already logged (those of the checkpoint a run resumes from); they are kept.
        fieldnames: the columns (default: the keys of the first row); a row lacking a column
            gets an empty cell there.
    """

    def __init__(self, run_dir: str | Path, rows: Iterable[Mapping[str, Any]] = (),
                 fieldnames: Sequence[str] | None = None) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self.fieldnames = list(fieldnames) if fieldnames else None
        self._text = ""  # the rendered CSV so far (rows are immutable once logged)
        self._rendered = 0
        if self.rows:
            self._write()

    def append(self, row: Mapping[str, Any]) -> None:
        """Add ``row`` and rewrite the file."""
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        if self.fieldnames is None:
            self.fieldnames = list(self.rows[0])
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fieldnames, restval="")
        if self._rendered == 0:
            writer.writeheader()
        writer.writerows(self.rows[self._rendered:])
        self._text += buf.getvalue()
        self._rendered = len(self.rows)
        atomic.write_text(self.path, self._text)


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``<run_dir>/metrics.csv`` (values as strings)."""
    with (Path(run_dir) / METRICS_NAME).open(newline="") as fh:
        return list(csv.DictReader(fh))


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """A tqdm bar over ``[0, total]`` that never counts past ``total`` (``update`` is clipped)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "") -> None:
        self.total = int(total)
        self._bar = tqdm(total=self.total, initial=min(int(initial), self.total), desc=desc, dynamic_ncols=True,
                         file=sys.stderr)

    @property
    def n(self) -> int:
        return int(self._bar.n)

    def update(self, n: int = 1) -> None:
        """Advance by ``n``, stopping at ``total``."""
        n = min(int(n), self.total - self.n)
        if n > 0:
            self._bar.update(n)

    def set_postfix(self, **kwargs: Any) -> None:
        self._bar.set_postfix(**kwargs)

    def close(self) -> None:
        self._bar.close()


def progress_bar(total: int, initial: int = 0, desc: str = "", *, enabled: bool = True) -> ProgressBar | _NoBar:
    """A :class:`ProgressBar`, or a silent stand-in with the same methods when not ``enabled``."""
    return ProgressBar(total, initial, desc) if enabled else _NoBar()


__all__ = ["METRICS_NAME", "MetricsLog", "ProgressBar", "finish_run", "progress_bar", "read_metrics", "start_run"]
