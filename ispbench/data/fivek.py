"""MIT-Adobe FiveK (Bychkovsky et al., CVPR 2011) for RLPixTuner's photo finishing.

``ispbench data prepare fivek --root ROOT`` decodes each ``raw_photos/HQa*/photos/<id>.dng`` once to
linear RGB (``ispbench.ops.dng.read_raw_linear``, settings ``ispbench.ops.dng.RAWPY_SETTINGS``) and
pairs it with Expert C's rendition (``<expert C folder>/<id>.tif``), stored display-referred as a
16-bit PNG ``goal/<id>.png``.

Splits (fixed rule, no randomness): the number in the id (``a0001`` -> 1) decides:
``train`` = 1..4500, ``val`` = 4501..5000, ``all`` = every prepared id.

Random-Target: for every id, 9 actions in [-1, 1] are drawn with
``numpy.random.default_rng([RANDOM_TARGET_SEED, number]).uniform(-1, 1, 9)`` and stored in
``splits/random_target.json``; ``FiveKDataset(target="random")`` renders the goal as
``ispbench.ops.finishing.finish(image, actions)`` from the (resized) input, so every user gets
the same targets at any resolution.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ispbench.atomic import write_json
from ispbench.data.preparation import (
    check_max_side,
    check_settings,
    files_with_suffix,
    find_dirs,
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
    DatasetFormatError,
    DatasetMissingError,
    PreparedFinishingDataset,
    collate_finishing,
    prepared_dir,
    resize_sample,
)
from ispbench.ops.finishing import finish

NAME = "fivek"
URL = "https://data.csail.mit.edu/graphics/fivek/"
EXPECTED_IMAGES = 5000
#: ids with number <= TRAIN_LAST are train, the others val (4500 / 500).
TRAIN_LAST = 4500
RANDOM_TARGET_SEED = 20240
N_ACTIONS = 9
#: Folder names accepted for Expert C's renditions (lower-case, without - _ and spaces).
EXPERT_C_DIRS = ("expertC", "expert_c", "Expert C", "tiff16_c", "c")
ID_PATTERN = re.compile(r"^a(\d{4})")

DOWNLOAD_HELP = (
    f"Download MIT-Adobe FiveK from {URL}: the full archive fivek_dataset.tar (DNG files) and Expert C's "
    "retouched images (TIFF); extract so that <root>/raw_photos/HQa1to700/photos/a0001-jmac_DSC1459.dng "
    "and <root>/expertC/a0001-jmac_DSC1459.tif (or a0001.tif) exist."
)


def id_number(item_id: str) -> int:
    """``"a0001-jmac_DSC1459"`` -> 1."""
    m = ID_PATTERN.match(item_id)
    if not m:
        raise DatasetFormatError(f"FiveK: file name {item_id!r} does not start with 'a' + 4 digits (e.g. a0001-...)")
    return int(m.group(1))


def random_actions(item_id: str) -> list[float]:
    """The Random-Target actions of one image: 9 floats in [-1, 1], fixed by its id number."""
    rng = np.random.default_rng([RANDOM_TARGET_SEED, id_number(item_id)])
    return [float(v) for v in rng.uniform(-1.0, 1.0, N_ACTIONS)]


class FiveKDataset(PreparedFinishingDataset):
    """A split of prepared FiveK: linear input and a display-referred goal.

    Args:
        root, split, prepared, size, resize, limit: as :class:`ispbench.data.lod.LODDataset`
            (splits ``train`` 4500, ``val`` 500, ``all``). ``resize`` defaults to ``"plain"``.
        target: ``"expert_c"`` (Expert C rendition) or ``"random"`` (Random-Target: goal =
            ``finish(image, actions)`` with the stored actions; item also has ``"actions"`` (9,)).

    Items: ``{"image": (3, H, W) linear RGB, "goal": (3, H, W) display-referred in [0, 1], "meta"}``.
    """

    name = NAME

    def __init__(self, root, split: str = "val", *, target: str = "expert_c", resize: str = "plain", **kwargs: Any) -> None:
        super().__init__(root, split, resize=resize, **kwargs)
        if target not in {"expert_c", "random"}:
            raise ValueError(f"target: expected 'expert_c' or 'random', got {target!r}")
        self.target = target
        self.actions: dict[str, list[float]] = {}
        if target == "random":
            path = self.prepared / "splits" / "random_target.json"
            if not path.is_file():
                raise DatasetMissingError(f"FiveK: {path} not found; re-run `ispbench data prepare fivek --root {self.root}`")
            try:
                self.actions = json.loads(path.read_text(encoding="utf-8"))["actions"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise DatasetFormatError(f"{path}: expected JSON with an 'actions' object ({exc})") from exc
            missing = [i for i in self.ids if i not in self.actions]
            if missing:
                raise DatasetFormatError(f"{path}: no actions for {len(missing)} ids of split {split!r} (first: {missing[:3]})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.target == "expert_c":
            return super().__getitem__(index)
        import torch

        item_id = self.ids[index]
        image, _, _, info = resize_sample(self._image("linear", item_id), None, self.size, self.resize)
        actions = torch.tensor(self.actions[item_id], dtype=torch.float32)
        with torch.no_grad():
            goal = finish(image[None], actions[None])[0].clamp(0.0, 1.0).to(torch.float32)
        meta = self._meta(item_id)
        meta.update(info, target="random")
        return {"image": image, "goal": goal, "actions": actions, "meta": meta}


def _find_dngs(root: Path, out: Path) -> list[Path]:
    raw_root = root / "raw_photos"
    if not raw_root.is_dir():
        nested = find_dirs(root, ("raw_photos",), depth=2, exclude=out)
        raw_root = nested[0] if nested else raw_root
    files = files_with_suffix(raw_root, {".dng"}, recursive=True) if raw_root.is_dir() else []
    if not files:
        raise DatasetMissingError(f"FiveK: expected {root}/raw_photos/HQa*/photos/*.dng (found 0). {DOWNLOAD_HELP}")
    return files


def _find_expert_c(root: Path, out: Path) -> dict[int, Path]:
    dirs = find_dirs(root, EXPERT_C_DIRS, depth=2, exclude=out)
    for d in dirs:
        files = files_with_suffix(d, {".tif", ".tiff", ".png", ".jpg", ".jpeg"})
        index = {}
        for f in files:
            m = ID_PATTERN.match(f.stem)
            if m:
                index[int(m.group(1))] = f
        if index:
            return index
    raise DatasetMissingError(
        f"FiveK: expected Expert C's images in {root}/expertC/a*.tif (looked in "
        f"{', '.join(map(str, dirs)) or 'no expertC folder'}; found 0). {DOWNLOAD_HELP}"
    )


def prepare(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    max_side: int | None = None,
    splits_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check a FiveK download under ``root`` and write the prepared format to ``out``."""
    root = Path(root).expanduser()
    out = prepared_dir(root, out)
    max_side = check_max_side(max_side)
    dngs = {p.stem: p for p in _find_dngs(root, out)}
    ids = sorted(dngs, key=id_number)
    if len(ids) != EXPECTED_IMAGES:
        log(f"FiveK: found {len(ids)} DNG files; the full release has {EXPECTED_IMAGES}")
    numbers = [id_number(i) for i in ids]
    if len(set(numbers)) != len(numbers):
        raise DatasetFormatError(f"FiveK: several DNG files share an id number under {root}/raw_photos")
    experts = _find_expert_c(root, out)
    missing = [i for i in ids if id_number(i) not in experts]
    if missing:
        raise DatasetMissingError(f"FiveK: no Expert C image for {len(missing)} DNG files (first: {missing[:3]}). {DOWNLOAD_HELP}")
    if limit is not None:
        ids = ids[: int(limit)]
    started = check_settings(out, NAME, {"max_side": max_side, "rawpy_settings": rawpy_settings()})

    def work(item_id: str) -> None:
        linear, meta = raw_to_linear(dngs[item_id], log)
        goal_path = experts[id_number(item_id)]
        goal, resized = fit_goal(read_display_image(goal_path, log), linear.shape[:2], goal_path, dngs[item_id])
        linear, goal = resize_max_side(linear, max_side), resize_max_side(goal, max_side)
        meta.update(file=str(dngs[item_id].relative_to(root)), goal_file=str(goal_path.relative_to(root)), goal_resized=resized)
        write_json(out / "meta" / f"{item_id}.json", meta)
        write_png16(out / "goal" / f"{item_id}.png", goal)
        write_png16(out / "linear" / f"{item_id}.png", linear)

    counts = process_items(ids, out, ("meta/.json", "goal/.png", "linear/.png"), work, log, "FiveK ", after_first=started)
    splits = {
        "train": [i for i in ids if id_number(i) <= TRAIN_LAST],
        "val": [i for i in ids if id_number(i) > TRAIN_LAST],
        "all": list(ids),
    }
    for name, split_ids in splits.items():
        write_split(out / "splits" / f"{name}.txt", split_ids)
    write_json(
        out / "splits" / "random_target.json",
        {
            "rule": f"numpy.random.default_rng([{RANDOM_TARGET_SEED}, id_number]).uniform(-1, 1, {N_ACTIONS})",
            "pipeline": "ispbench.ops.finishing.finish(image, actions), rendered from the loader's (resized) input",
            "actions": {i: random_actions(i) for i in ids},
        },
    )
    write_manifest(
        out,
        NAME,
        source=str(root),
        n_items=len(ids),
        expected_items=EXPECTED_IMAGES,
        limit=limit,
        max_side=max_side,
        split_source=f"fixed rule: id number <= {TRAIN_LAST} -> train, else val",
        split_sizes={k: len(v) for k, v in splits.items()},
        rawpy_settings=rawpy_settings(),
        goal="Expert C rendition as distributed (divided by 255 or 65535), no colour-space conversion, 16-bit PNG",
        checksums="none published per file; checked: DNG count, one Expert C image per DNG, matching aspect ratio",
    )
    return {"dataset": NAME, "out": str(out), **counts, "splits": {k: len(v) for k, v in splits.items()}}


__all__ = ["FiveKDataset", "collate_finishing", "prepare", "random_actions"]
