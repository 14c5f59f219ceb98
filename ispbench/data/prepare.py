"""``ispbench data prepare NAME --root DIR [--out DIR] [--limit N]``: check and convert a download.

Each real dataset is downloaded by the user (none may be mirrored by ispbench; see
``data_cards/NAME.md``). This command

1. checks the layout under ``--root`` (file counts, one annotation / target per image, sizes that
   agree) and stops with the exact download instruction when something is missing;
2. converts every raw file once into the prepared format (linear RGB as 16-bit PNG, YOLO label
   files, per-image metadata; see :mod:`ispbench.data.prepared`), written atomically;
3. writes the split files and ``manifest.json``.

Re-running skips items whose outputs all exist, so an interrupted run simply continues; a re-run
whose settings (``--max-side``, decoder settings) differ from the existing ``manifest.json`` is
refused (prepare into another ``--out``, or delete the folder). ``--extract`` first unpacks the
zip/tar archives lying directly in ``--root`` (members that would land outside ``--root`` are
refused; a corrupt or truncated archive is reported by name and leaves nothing extracted).

Every annotation field and pixel range is validated (see :mod:`ispbench.data.preparation`): a
malformed field stops the run with one line naming the file and field. Exit status: 0 on
success, 1 on a data problem (one line on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ispbench.atomic import write_text
from ispbench.data.preparation import UnsafeArchiveError, extract_archive, is_archive
from ispbench.data.prepared import DatasetFormatError, DatasetMissingError

#: Dataset name -> module with ``prepare(root, out, *, limit, max_side, splits_dir, log)``.
PREPARERS: dict[str, str] = {
    "lod": "ispbench.data.lod",
    "oneplus": "ispbench.data.oneplus",
    "coco_raw": "ispbench.data.coco_raw",
    "fivek": "ispbench.data.fivek",
    "hdrplus": "ispbench.data.hdrplus",
    "lis": "ispbench.data.lis",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ispbench data prepare",
        description="Check a paper dataset you downloaded and convert it once into ispbench's prepared format.",
    )
    p.add_argument("name", help=f"dataset: one of {', '.join(PREPARERS)}")
    p.add_argument("--root", required=True, type=Path, help="folder holding your download (see data_cards/NAME.md)")
    p.add_argument("--out", type=Path, default=None, help="where to write the prepared files (default: ROOT/ispbench-prepared)")
    p.add_argument("--limit", type=int, default=None, help="prepare only the first N items (smoke runs)")
    p.add_argument("--max-side", type=int, default=None, help="downscale so the longer side is at most this many pixels (default: keep)")
    p.add_argument("--splits", type=Path, default=None, help="folder with the authors' split lists (LOD: train.txt, val.txt, test.txt; LIS: its lis_coco_*.json files)")
    p.add_argument("--extract", action="store_true", help="first extract the zip/tar archives found directly in --root")
    return p


def _one_line(exc: BaseException) -> str:
    """The error message on one line (multi-line messages from libraries are joined)."""
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ispbench data prepare``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.name not in PREPARERS:
        print(
            f"ispbench data prepare: unknown dataset {args.name!r}; valid names: {', '.join(PREPARERS)}",
            file=sys.stderr,
        )
        return 2
    if args.limit is not None and args.limit <= 0:
        print(f"ispbench data prepare: --limit must be a positive integer, got {args.limit}", file=sys.stderr)
        return 2
    if args.max_side is not None and args.max_side <= 0:
        print(
            f"ispbench data prepare: --max-side must be a positive number of pixels, got {args.max_side} "
            "(leave it out to keep the full resolution)",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(PREPARERS[args.name])
    root = args.root.expanduser()
    if not root.is_dir():
        print(f"ispbench data prepare {args.name}: --root {root} is not a folder. {module.DOWNLOAD_HELP}", file=sys.stderr)
        return 1
    archives = sorted(p for p in root.iterdir() if is_archive(p))
    start = time.time()
    try:
        if args.extract:
            for archive in archives:
                marker = root / f".{archive.name}.extracted"
                if marker.exists():
                    print(f"{archive.name}: already extracted (delete {marker.name} to redo)")
                    continue
                print(f"extracting {archive.name} ...")
                extract_archive(archive, root)
                write_text(marker, f"{archive.name}\n")
        summary = module.prepare(
            root, args.out, limit=args.limit, max_side=args.max_side, splits_dir=args.splits, log=print
        )
    except DatasetMissingError as exc:
        hint = ""
        if archives and not args.extract:
            hint = f" Found archives in {root} ({', '.join(a.name for a in archives)}): extract them, or re-run with --extract."
        print(f"ispbench data prepare {args.name}: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1
    except (DatasetFormatError, UnsafeArchiveError) as exc:
        print(f"ispbench data prepare {args.name}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(
            f"ispbench data prepare {args.name}: a conversion function is not available ({exc}); "
            "update ispbench (ispbench.ops.dng / ispbench.ops.raw)",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.name}: {summary['done']} converted, {summary['skipped']} already done, splits "
        f"{summary['splits']} -> {summary['out']} ({time.time() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
