"""Fixture files in the datasets' real on-disk formats, written into ``tmp_path``.

* DNG: ``ispbench.ops.dng.write_dng`` when it exists, else a minimal DNG written with tifffile
  (CFA photometric, RGGB pattern, black/white level, AsShotNeutral, ColorMatrix1, ISO and
  exposure time in IFD0) that LibRaw/rawpy decodes.
* LOD: ``RAW_dark/<n>.CR2`` (a DNG container under the CR2 name: LibRaw identifies raw files by
  content, and a real CR2 cannot be written here) + VOC XML in ``RAW-dark-Annotations/``.
* OnePlus: 16-bit single-channel PNG holding 10-bit RGGB + labelme JSON.
* COCO: ``val2017/<id:012d>.jpg`` + ``annotations/instances_val2017.json``.
* FiveK: ``raw_photos/HQa1to700/photos/aNNNN-x.dng`` + ``expertC/aNNNN-x.tif``.
* HDR+: ``results_20171023/<scene>/merged.dng`` + ``final.jpg``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ispbench.data.prepared import COCO80_CATEGORY_IDS, COCO80_NAMES

H, W = 32, 48  # raw fixture size (even, landscape)


def _tifffile_dng(path: Path, bayer: np.ndarray, *, black_level=64, white_level=4095, iso=None, exposure_time=None) -> None:
    import tifffile

    tags = [
        (254, "I", 1, 0, True),
        (271, "s", 0, "ispbench", True),
        (272, "s", 0, "fixture", True),
        (33421, "H", 2, (2, 2), True),
        (33422, "B", 4, (0, 1, 1, 2), True),  # RGGB
        (50706, "B", 4, (1, 4, 0, 0), True),
        (50708, "s", 0, "ispbench fixture", True),
        (50714, "H", 1, int(black_level), True),
        (50717, "H", 1, int(white_level), True),
        (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),  # identity
        (50778, "H", 1, 21, True),
        (50728, "2I", 3, (1, 2, 1, 1, 1, 2), True),  # AsShotNeutral (0.5, 1, 0.5)
    ]
    if iso is not None:
        tags.append((34855, "H", 1, int(iso), True))
    if exposure_time is not None:
        tags.append((33434, "2I", 1, (1, int(round(1 / exposure_time))), True))
    tifffile.imwrite(path, bayer.astype(np.uint16), photometric=32803, extratags=tags)


def write_dng(path: Path, bayer: np.ndarray, **kw) -> Path:
    """A small RGGB DNG; uses the project's writer when present."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from ispbench.ops.dng import write_dng as project_write_dng
    except ImportError:
        project_write_dng = None
    if project_write_dng is not None:
        project_write_dng(
            path, bayer.astype(np.uint16), pattern="RGGB", black_level=kw.get("black_level", 64),
            white_level=kw.get("white_level", 4095), iso=kw.get("iso"), exposure_time=kw.get("exposure_time"),
        )
    else:
        _tifffile_dng(path, bayer, **kw)
    return path


def bayer_fixture(seed: int, h: int = H, w: int = W, top: int = 4095) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(64, top, (h, w)).astype(np.uint16)


def voc_xml(path: Path, width: int, height: int, objects) -> Path:
    """objects: [(name, xmin, ymin, xmax, ymax)]."""
    parts = [f"<annotation><filename>{path.stem}.CR2</filename><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, x1, y1, x2, y2 in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def build_lod(root: Path) -> Path:
    """LOD layout with dark ids 2, 4, 6 (normal ids 1, 3, 5 are not needed) in ``root``."""
    for k, n in enumerate((2, 4, 6)):
        write_dng(root / "RAW_dark" / f"{n}.CR2", bayer_fixture(n), iso=6400, exposure_time=1 / 50)
        # annotations sized as the full-resolution camera image (10x the fixture), same aspect ratio
        voc_xml(root / "RAW-dark-Annotations" / f"{n}.xml", W * 10, H * 10,
                [("person", 48, 32, 144, 224), ("diningtable", 0, 0, 480, 320)][: k + 1])
    return root


@pytest.fixture
def lod_root(tmp_path) -> Path:
    return build_lod(tmp_path / "LOD")


def labelme_json(path: Path, image_name: str, width: int, height: int, shapes) -> Path:
    doc = {
        "version": "4.5.6",
        "flags": {},
        "shapes": [
            {"label": label, "points": pts, "group_id": None, "shape_type": kind, "flags": {}}
            for label, pts, kind in shapes
        ],
        "imagePath": image_name,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def build_oneplus(root: Path) -> Path:
    """OnePlus layout (two 10-bit RGGB PNGs with labelme JSON) in ``root``."""
    for n in (1, 2):
        img = bayer_fixture(n, top=1023)
        (root / "data").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "data" / f"{n:04d}.png"), img)
        labelme_json(root / "data" / f"{n:04d}.json", f"{n:04d}.png", W, H,
                     [("Person", [[6, 4], [18, 28]], "rectangle"), ("bus", [[24, 0], [48, 16], [30, 10]], "polygon")])
    return root


@pytest.fixture
def oneplus_root(tmp_path) -> Path:
    return build_oneplus(tmp_path / "OnePlus")


def build_coco(root: Path) -> Path:
    """COCO val2017 layout (two JPEGs, instances JSON) in ``root``."""
    (root / "val2017").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = []
    for image_id, (h, w) in ((139, (40, 60)), (285, (30, 30))):
        cv2.imwrite(str(root / "val2017" / f"{image_id:012d}.jpg"), rng.integers(0, 255, (h, w, 3)).astype(np.uint8))
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
    annotations = [
        {"id": 1, "image_id": 139, "category_id": 1, "bbox": [6.0, 4.0, 12.0, 20.0], "iscrowd": 0, "area": 240.0},
        {"id": 2, "image_id": 139, "category_id": 90, "bbox": [30.0, 10.0, 30.0, 20.0], "iscrowd": 0, "area": 600.0},
        {"id": 3, "image_id": 139, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "iscrowd": 1, "area": 100.0},
        {"id": 4, "image_id": 285, "category_id": 23, "bbox": [0.0, 0.0, 30.0, 30.0], "iscrowd": 0, "area": 900.0},
    ]
    categories = [{"id": cid, "name": COCO80_NAMES[i], "supercategory": "x"} for i, cid in enumerate(COCO80_CATEGORY_IDS)]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8"
    )
    return root


@pytest.fixture
def coco_root(tmp_path) -> Path:
    return build_coco(tmp_path / "coco")


def build_fivek(root: Path) -> Path:
    """FiveK layout (ids 1, 4501, 4502: DNG + Expert C TIFF) in ``root``."""
    import tifffile

    rng = np.random.default_rng(1)
    for n, folder in ((1, "HQa1to700"), (4501, "HQa4201to5000"), (4502, "HQa4201to5000")):
        stem = f"a{n:04d}-fixture_DSC{n}"
        write_dng(root / "raw_photos" / folder / "photos" / f"{stem}.dng", bayer_fixture(n))
        (root / "expertC").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "expertC" / f"{stem}.tif", rng.integers(0, 65535, (H, W, 3)).astype(np.uint16), photometric="rgb")
    return root


@pytest.fixture
def fivek_root(tmp_path) -> Path:
    return build_fivek(tmp_path / "fivek_dataset")


def build_hdrplus(root: Path) -> Path:
    """HDR+ layout (two scenes: merged.dng + final.jpg) in ``root``."""
    rng = np.random.default_rng(2)
    for k, scene in enumerate(("0006_20160721_163256_525", "0007_20160722_100111_111")):
        d = root / "results_20171023" / scene
        write_dng(d / "merged.dng", bayer_fixture(10 + k))
        cv2.imwrite(str(d / "final.jpg"), rng.integers(0, 255, (H * 2, W * 2, 3)).astype(np.uint8))
    return root


@pytest.fixture
def hdrplus_root(tmp_path) -> Path:
    return build_hdrplus(tmp_path / "hdrplus")


def build_restoration_tests(root: Path, n: int = 2, size: tuple[int, int] = (40, 44)) -> Path:
    """IRPO's ten test sets in the AdaIR data tree (``test/...``, the OOD sets under ``OOD/...``), ``n`` smooth
    colour images each (clean) with a darker, shifted copy as the degraded one; BSD68 holds clean images only
    (its noise is added by the loader)."""
    import cv2

    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]

    def image(k: int) -> np.ndarray:
        return np.stack([(40 + 3 * k + 2 * yy + xx + 50 * c) % 256 for c in range(3)], axis=2).astype(np.uint8)

    def write(path: Path, rgb: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))

    def pair(degraded: Path, clean: Path, k: int) -> None:
        write(clean, image(k))
        write(degraded, (image(k) * 0.6 + 20).astype(np.uint8))

    for k in range(n):
        pair(root / f"test/dehaze/input/{k:04d}_0.8_0.2.png", root / f"test/dehaze/target/{k:04d}.png", k)
        for folder in ("test/derain/Rain100L", "test/deblur/gopro", "test/enhance/lol", "OOD/SIDD", "OOD/GT-RAIN_test",
                       "OOD/RRSHID", "OOD/ReLoBlur", "OOD/LoLI-Street/Val"):
            pair(root / folder / "input" / f"{k}.png", root / folder / "target" / f"{k}.png", k)
        write(root / f"test/denoise/bsd68/{k}.png", image(k))
    return root
