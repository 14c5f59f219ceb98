"""Datasets: the papers' real datasets (prepared once from the user's own download) and embedded ones.

Real datasets (the user downloads them; ``ispbench data prepare NAME --root DIR`` converts them
once into linear 16-bit PNGs, YOLO label files and split files; see ``data_cards/NAME.md``):

- ``lod``: :class:`ispbench.data.lod.LODDataset`, detection (AdaptiveISP)
- ``lis``: ``ispbench.data.lis.LISDataset``, instance segmentation in the dark (POS-ISP; LIS-Dark / LIS-All)
- ``oneplus``: :class:`ispbench.data.oneplus.OnePlusDataset`, detection (AdaptiveISP)
- ``coco_raw``: :class:`ispbench.data.coco_raw.RawCOCODataset`, detection (AdaptiveISP)
- ``fivek``: :class:`ispbench.data.fivek.FiveKDataset`, photo finishing (RLPixTuner)
- ``hdrplus``: :class:`ispbench.data.hdrplus.HDRPlusDataset`, photo finishing (RLPixTuner)

This module imports nothing heavy: import the sub-module you need
(``from ispbench.data.lod import LODDataset``) or use :func:`get_dataset`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each real dataset's name and the import path of its loader class.
REAL_DATASETS: dict[str, str] = {
    "lod": "ispbench.data.lod:LODDataset",
    "lis": "ispbench.data.lis:LISDataset",
    "oneplus": "ispbench.data.oneplus:OnePlusDataset",
    "coco_raw": "ispbench.data.coco_raw:RawCOCODataset",
    "fivek": "ispbench.data.fivek:FiveKDataset",
    "hdrplus": "ispbench.data.hdrplus:HDRPlusDataset",
}


def get_dataset(name: str, *args: Any, **kwargs: Any):
    """Build the real dataset ``name`` (one of :data:`REAL_DATASETS`) with the class's arguments.

    Example:
        >>> ds = get_dataset("lod", "~/data/LOD", split="val", size=512)   # doctest: +SKIP
    """
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(REAL_DATASETS)}")
    module_name, class_name = REAL_DATASETS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(*args, **kwargs)


__all__ = ["REAL_DATASETS", "get_dataset"]
