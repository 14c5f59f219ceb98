"""HDR+ burst photography dataset (Hasinoff et al., SIGGRAPH Asia 2016), the 153-scene subset.

RLPixTuner evaluates (no training) on the official subset: input = the aligned and merged raw
``<scene>/merged.dng``, goal = the HDR+ pipeline's finished ``<scene>/final.jpg``.
``ispbench data prepare hdrplus --root ROOT`` accepts ``ROOT/<scene>/`` or the bucket's
``ROOT/results_20171023/<scene>/`` layout, decodes ``merged.dng`` once with
``ispbench.ops.dng.read_raw_linear`` and stores ``final.jpg`` (8-bit sRGB, /255) as a 16-bit PNG goal.
Splits: ``all`` and ``val`` (the same 153 scenes, evaluation only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ispbench.atomic import write_json
from ispbench.data.preparation import (
    check_max_side,
    check_settings,
    fit_goal,
    process_items,
    raw_to_linear,
    rawpy_settings,
    read_display_image,
    resize_max_side,
    write_manifest,
    write_png16,
    write_split,
)
from ispbench.data.prepared import (
    DatasetMissingError,
    PreparedFinishingDataset,
    collate_finishing,
    prepared_dir,
)

NAME = "hdrplus"
URL = "https://hdrplusdata.org/dataset.html"
EXPECTED_SCENES = 153

DOWNLOAD_HELP = (
    f"Download the HDR+ subset (153 scenes) as described at {URL} (e.g. "
    "`gsutil -m cp -r gs://hdrplusdata/20171106_subset/results_20171023 <root>/`) so that "
    "<root>/results_20171023/<scene>/merged.dng and .../final.jpg (or <root>/<scene>/merged.dng) exist."
)


class HDRPlusDataset(PreparedFinishingDataset):
    """The prepared HDR+ subset: ``{"image": linear (3, H, W), "goal": final.jpg (3, H, W), "meta"}``.

    Arguments as :class:`ispbench.data.fivek.FiveKDataset` (no ``target``); default split ``"all"``.
    """

    name = NAME

    def __init__(self, root, split: str = "all", *, resize: str = "plain", **kwargs: Any) -> None:
        super().__init__(root, split, resize=resize, **kwargs)


def _scenes(root: Path, out: Path) -> dict[str, Path]:
    base = root / "results_20171023" if (root / "results_20171023").is_dir() else root
    scenes: dict[str, Path] = {}
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if d.resolve() == out.resolve():
                continue
            if (d / "merged.dng").is_file():
                scenes[d.name] = d
    return scenes


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check an HDR+ subset download under ``root`` and write the prepared format to ``out``."""
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    scenes = _scenes(root, out)
    if not scenes:
        raise DatasetMissingError(f"HDR+: expected {root}/results_20171023/<scene>/merged.dng (found 0 scenes). {DOWNLOAD_HELP}")
    no_final = [s for s, d in scenes.items() if not (d / "final.jpg").is_file()]
    if no_final:
        raise DatasetMissingError(
            f"HDR+: {len(no_final)} scenes have merged.dng but no final.jpg (first: {scenes[no_final[0]] / 'final.jpg'}). {DOWNLOAD_HELP}"
        )
    ids = sorted(scenes)
    if len(ids) != EXPECTED_SCENES:
        log(f"HDR+: found {len(ids)} scenes; the official subset has {EXPECTED_SCENES}")
    if limit is not None:
        ids = ids[: int(limit)]
    started = check_settings(out, NAME, {"max_side": max_side, "rawpy_settings": rawpy_settings()})

    def work(item_id: str) -> None:
        d = scenes[item_id]
        linear, meta = raw_to_linear(d / "merged.dng", log)
        goal, resized = fit_goal(read_display_image(d / "final.jpg", log), linear.shape[:2], d / "final.jpg", d / "merged.dng")
        linear, goal = resize_max_side(linear, max_side), resize_max_side(goal, max_side)
        meta.update(file=str((d / "merged.dng").relative_to(root)), goal_file=str((d / "final.jpg").relative_to(root)), goal_resized=resized)
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_png16(out / "goal" / f"{item_id}.png", goal)
        write_png16(out / "linear" / f"{item_id}.png", linear)

    counts = process_items(ids, out, ("meta/.json", "goal/.png", "linear/.png"), work, log, "HDR+ ", after_first=started)
    for name in ("all", "val"):
        write_split(out / "splits" / f"{name}.txt", ids)
    write_manifest(
        out,
        NAME,
        source=str(root),
        n_items=len(ids),
        expected_items=EXPECTED_SCENES,
        limit=limit,
        max_side=max_side,
        split_source="all scenes of the subset (evaluation only)",
        split_sizes={"all": len(ids), "val": len(ids)},
        rawpy_settings=rawpy_settings(),
        goal="final.jpg (8-bit sRGB) / 255 as a 16-bit PNG",
        checksums="none published per file; checked: scene count, merged.dng + final.jpg per scene, matching aspect ratio",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": {"all": len(ids), "val": len(ids)}}


__all__ = ["HDRPlusDataset", "collate_finishing", "prepare"]
