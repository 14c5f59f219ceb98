"""IRPO's real datasets (``paper`` profile): (degraded, clean) pairs read from the user's own downloads.

IRPO post-trains AdaIR on the five-task training data of AdaIR (BSD400 + WED, Rain100L, RESIDE-OTS,
GoPro, LOL), tests it in domain (BSD68, Urban100, Rain100L, SOTS-outdoor, GoPro, LOL) and out of
domain (SIDD, GT-Rain, RRSHID, ReLoBlur, LoLI-Street). None of them can ship with this project:
users download them and point the notebooks at the folder. :data:`PAPER_SETS` lists every set
(role, task, expected layout, where to get it); :func:`load_restoration_pairs` reads one into a
:class:`PairedRestorationSet`, which has the attributes of the embedded
:class:`ispbench.data.restoration.RestorationSet` (``clean``, ``degraded``, ``photo``, ``kind``,
``task``, ``crop``), so :func:`ispbench.tasks.restoration_eval.evaluate_restoration` scores both.
See ``data_cards/restoration_paper.md``; the ``embedded`` profile uses the synthetic stand-ins of
:mod:`ispbench.data.restoration` instead.

Where a set lies (``root``): either the AdaIR data tree (the folder holding ``Train/`` and
``test/``, the authors' ``data/``; the out-of-domain sets under ``OOD/``), or the set's own folder.
Each set lists its candidate folders (:attr:`PaperSet.folders`, tried in order, ``""`` = ``root``
itself) and its accepted layouts (:attr:`PaperSet.layouts`, the authors' first); the first
candidate folder in which a layout finds degraded images is used.

Pairing follows the authors' code where it fixes one (``utils/dataset_utils.py`` and ``test.py``
of their AdaIR fork): Rain100L ``rainy/rain-<k>.png`` <-> ``gt/norain-<k>.png``; RESIDE
``synthetic/part<p>/<id>_<A>_<beta>.jpg`` <-> ``original/<id>.<ext>``; SOTS ``input/<id>_<A>_<beta>.jpg``
<-> ``target/<id>.png``; GoPro ``blur/`` <-> ``sharp/``, LOL ``low/`` <-> ``gt/`` (same names);
the other test sets ``input/`` <-> ``target/`` (same names). A clean counterpart is found by its
stem in any image format (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, any case).

Sizes: AdaIR takes sides divisible by 8. With ``size`` every image is centre-cropped to that
size and ``clean`` / ``degraded`` are ``(N, 3, h, w)`` tensors. Without it every image keeps its
own size, centre-cropped down to multiples of ``multiple`` (8; the authors' scripts crop to
multiples of 16, ``multiple=16`` scores exactly their pixels); when the sizes differ,
``clean`` / ``degraded`` are :class:`ImageList` objects: ``x[i]`` is one ``(3, H_i, W_i)`` image
and ``x[a:b]`` stacks a run of same-sized images into ``(B, 3, H, W)``, so evaluate with
``batch_size=1``.

Example:
    >>> data = load_restoration_pairs("~/data/AdaIR", "rain100l_test")        # doctest: +SKIP
    >>> rows = evaluate_restoration(model, data, batch_size=1)                # doctest: +SKIP
    >>> bsd = load_restoration_pairs("~/data/AdaIR", "bsd68", sigma=25, size=256)   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from ispbench.data.preparation import read_display_image
from ispbench.data.prepared import DatasetFormatError, DatasetMissingError
from ispbench.ops import degradations as D

__all__ = [
    "IMAGE_SUFFIXES",
    "PAPER_SETS",
    "ROLES",
    "ImageList",
    "Layout",
    "PairedRestorationSet",
    "PaperSet",
    "describe_layout",
    "find_pairs",
    "load_restoration_pairs",
]

#: File suffixes read as images (compared lower-case).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
#: Roles of the sets: ``train`` (AdaIR / IRPO training data), ``test`` (in-domain tests),
#: ``ood`` (out-of-domain tests).
ROLES: dict[str, str] = {"train": "training", "test": "in-domain test", "ood": "out-of-domain test"}
#: Names that start a reported list (missing counterparts, ambiguous files).
_SHOW = 5
# distinguishes the noise stream from any other use of the same seed
_NOISE_STREAM = 0x5E7A


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------

Rule = Callable[[PurePosixPath], tuple[PurePosixPath, ...]]


@dataclass(frozen=True)
class Layout:
    """One accepted file layout of a set.

    Attributes:
        degraded: glob of the degraded images, relative to the set's folder (``**`` recurses);
            for the noise sets, the clean images.
        clean: how the clean counterpart is named (for messages and the data card).
        rule: degraded path relative to the set's folder -> candidate clean paths, relative, without
            suffix (the first that exists wins); ``None`` for the noise sets (clean images only).
    """

    degraded: str
    clean: str
    rule: Rule | None = None


@dataclass(frozen=True)
class PaperSet:
    """One dataset IRPO uses.

    Attributes:
        name: the key in :data:`PAPER_SETS` (``rain100l_test``).
        dataset: its usual name (``Rain100L``).
        role: ``train``, ``test`` (in domain) or ``ood`` (out of domain); see :data:`ROLES`.
        task: one of :data:`ispbench.data.restoration.TASKS`.
        kind: the embedded stand-in kind of :mod:`ispbench.data.restoration` that samples are
            labelled with (``denoise_<sigma>`` for the noise sets).
        folders: candidate folders of the set under ``root``, tried in order; ``""`` is ``root``.
        layouts: accepted layouts, tried in order in each folder (the authors' layout first).
        source: which dataset, from which project, to download.
        released: the set's size as released, as far as it is known here.
        sigmas: the noise levels (0-255 scale) the paper tests with (noise sets only).
        note: assumptions and caveats.
    """

    name: str
    dataset: str
    role: str
    task: str
    kind: str
    folders: tuple[str, ...]
    layouts: tuple[Layout, ...]
    source: str
    released: str
    sigmas: tuple[int, ...] = ()
    note: str = ""

    @property
    def noise(self) -> bool:
        """Clean images only: Gaussian noise of ``sigma`` is added on loading."""
        return self.layouts[0].rule is None


def _same(stem: str) -> str:
    return stem


def _rain_to_norain(stem: str) -> str:  # rain-12 -> norain-12 (the glob guarantees the prefix)
    return "norain-" + stem[len("rain-"):]


def _haze_to_clear(stem: str) -> str:  # 0025_0.8_0.04 -> 0025
    return stem.split("_")[0]


def _noisy_to_gt(stem: str) -> str:  # NOISY_SRGB_010 -> GT_SRGB_010
    return "GT" + stem[len("NOISY"):]


def _rainy_frame_to_clean(stem: str) -> str:  # Gurutto_1-2-R-001 -> Gurutto_1-2-C-000
    return re.sub(r"-R-\d+$", "-C-000", stem)


def _swap(src: str, dst: tuple[str, ...], stem: Callable[[str], str] = _same, *, keep_subfolders: bool = True) -> Rule:
    """The clean file sits in folder ``dst`` (one of, in order) where the degraded one has folder
    ``src`` (the innermost folder of that name); folders below ``src`` are kept or dropped."""

    def rule(rel: PurePosixPath) -> tuple[PurePosixPath, ...]:
        dirs = rel.parts[:-1]
        i = len(dirs) - 1 - dirs[::-1].index(src)
        head = PurePosixPath(*dirs[:i])
        below = dirs[i + 1:] if keep_subfolders else ()
        new = stem(PurePosixPath(rel.parts[-1]).stem)
        return tuple(head.joinpath(d, *below, new) for d in dst)

    return rule


def _sibling(stem: Callable[[str], str]) -> Rule:
    """The clean file lies in the degraded file's folder under another stem."""

    def rule(rel: PurePosixPath) -> tuple[PurePosixPath, ...]:
        return (rel.parent / stem(rel.stem),)

    return rule


_INPUT_TARGET = Layout("input/*", "target/<same name>", _swap("input", ("target",)))
_FLAT = Layout("*", "(clean images only; Gaussian noise of sigma added on loading)")

_SETS: tuple[PaperSet, ...] = (
    # ------------------------------------------------------------------ training (AdaIR's data/Train)
    PaperSet(
        "bsd400_wed", "BSD400 + WED", "train", "denoise", "denoise_{sigma}",
        ("Train/Denoise", ""), (_FLAT,),
        "BSD400 (the 400 Berkeley Segmentation Dataset images used to train DnCNN) and WED (the Waterloo "
        "Exploration Database, University of Waterloo), both linked from AdaIR's INSTALL.md",
        "400 BSD400 + 4,744 WED images (the 5,144 names listed in AdaIR's data_dir/noisy/denoise.txt)",
        (15, 25, 50),
        "all images of both sets in one flat folder; training adds noise of sigma 15, 25 and 50 on the fly",
    ),
    PaperSet(
        "rain100l_train", "Rain100L (train)", "train", "derain", "derain",
        ("Train/Derain", ""),
        (Layout("rainy/rain-*", "gt/norain-<k> (rainy/rain-<k>.png <-> gt/norain-<k>.png)",
                _swap("rainy", ("gt",), _rain_to_norain)),),
        "Rain100L (Yang et al., JORDER, CVPR 2017), the light-rain training pairs as distributed by "
        "PromptIR / AdaIR ('Train100L')",
        "200 pairs (the 200 names in AdaIR's data_dir/rainy/rainTrain.txt)",
    ),
    PaperSet(
        "reside_ots", "RESIDE-OTS", "train", "dehaze", "dehaze",
        ("Train/Dehaze", ""),
        (Layout("synthetic/**/*", "original/<id>.<any suffix> (synthetic/part<p>/<id>_<A>_<beta>.jpg <-> original/<id>)",
                _swap("synthetic", ("original",), _haze_to_clear, keep_subfolders=False)),),
        "RESIDE-beta OTS (Outdoor Training Set) of the RESIDE benchmark (Li et al.); AdaIR trains on the "
        "subset listed in its data_dir/hazy/hazy_outside.txt",
        "AdaIR's list: 72,135 hazy images (parts 1-4) of 2,061 clear images; the full OTS release is larger",
        note="several hazy versions (airlight A, scattering beta) share one clear image, and so one 'photo'",
    ),
    PaperSet(
        "gopro_train", "GoPro (train)", "train", "deblur", "deblur",
        ("Train/Deblur", "GOPRO_Large/train", "train", ""),
        (Layout("blur/*", "sharp/<same name>", _swap("blur", ("sharp",))),
         Layout("*/blur/*", "<sequence>/sharp/<same name> (the GOPRO_Large release)", _swap("blur", ("sharp",)))),
        "GoPro (Nah et al., DeepDeblur, CVPR 2017), the GOPRO_Large training split",
        "2,103 pairs",
        note="AdaIR flattens the sequences into blur/GOPR0372_07_00_000047.png; the release's "
             "<sequence>/blur/ + <sequence>/sharp/ folders are accepted too (blur_gamma/ is not read)",
    ),
    PaperSet(
        "lol_train", "LOL (train)", "train", "lowlight", "lowlight",
        ("Train/Enhance", "our485", "LOLdataset/our485", ""),
        (Layout("low/*", "gt/<same name> (AdaIR) or high/<same name> (the LOL release)", _swap("low", ("gt", "high"))),),
        "LOL / LOL-v1 (Wei et al., RetinexNet, BMVC 2018), the our485 training pairs",
        "485 pairs",
    ),
    # ------------------------------------------------------------------ in-domain tests (data/test)
    PaperSet(
        "bsd68", "BSD68", "test", "denoise", "denoise_{sigma}",
        ("test/denoise/bsd68", ""), (_FLAT,),
        "BSD68 / CBSD68 (the colour version of the 68 Berkeley test images; the CBSD68-dataset repository, "
        "'original' images), linked from AdaIR's INSTALL.md",
        "68 images", (15, 25, 50),
        "sigma 25 in the five-task table; 15, 25 and 50 in the single-task denoising table",
    ),
    PaperSet(
        "urban100", "Urban100", "test", "denoise", "denoise_{sigma}",
        ("test/denoise/urban100", ""), (_FLAT,),
        "Urban100 (Huang et al., self-similarity super-resolution, CVPR 2015), the high-resolution images",
        "100 images", (15, 25, 50),
    ),
    PaperSet(
        "rain100l_test", "Rain100L (test)", "test", "derain", "derain",
        ("test/derain/Rain100L", ""), (_INPUT_TARGET,),
        "Rain100L (Yang et al., JORDER, CVPR 2017), the light-rain test pairs as distributed by PromptIR / AdaIR",
        "100 pairs",
    ),
    PaperSet(
        "sots_outdoor", "SOTS-outdoor", "test", "dehaze", "dehaze",
        ("test/dehaze", "SOTS/outdoor", "outdoor", ""),
        (Layout("input/*", "target/<id>.png (input/<id>_<A>_<beta>.jpg <-> target/<id>)",
                _swap("input", ("target",), _haze_to_clear)),
         Layout("hazy/*", "gt/<id> or clear/<id> (the RESIDE release)", _swap("hazy", ("gt", "clear"), _haze_to_clear))),
        "SOTS-outdoor, the outdoor Synthetic Objective Testing Set of RESIDE (Li et al.)",
        "500 pairs",
    ),
    PaperSet(
        "gopro_test", "GoPro (test)", "test", "deblur", "deblur",
        ("test/deblur/gopro", "GOPRO_Large/test", "test", ""),
        (_INPUT_TARGET,
         Layout("*/blur/*", "<sequence>/sharp/<same name> (the GOPRO_Large release)", _swap("blur", ("sharp",)))),
        "GoPro (Nah et al., DeepDeblur, CVPR 2017), the GOPRO_Large test split",
        "1,111 pairs",
    ),
    PaperSet(
        "lol_test", "LOL (test, eval15)", "test", "lowlight", "lowlight",
        ("test/enhance/lol", "eval15", "LOLdataset/eval15", ""),
        (_INPUT_TARGET, Layout("low/*", "high/<same name> (the LOL release)", _swap("low", ("high",)))),
        "LOL / LOL-v1 (Wei et al., RetinexNet, BMVC 2018), the eval15 test pairs",
        "15 pairs",
    ),
    # ------------------------------------------------------------------ out-of-domain tests (no authors' layout)
    PaperSet(
        "sidd", "SIDD", "ood", "denoise", "real_noise",
        ("OOD/SIDD", "SIDD_Small_sRGB_Only", ""),
        (Layout("Data/*/NOISY_SRGB_*", "<scene>/GT_SRGB_<k> (Data/<scene>/NOISY_SRGB_<k>.PNG <-> GT_SRGB_<k>.PNG)",
                _sibling(_noisy_to_gt)),
         _INPUT_TARGET),
        "SIDD, the Smartphone Image Denoising Dataset (Abdelhamed et al., CVPR 2018): real-noise sRGB "
        "noisy / ground-truth pairs (e.g. SIDD-Small sRGB)",
        "SIDD-Small sRGB: 160 scene instances; the validation set: 1,280 blocks of 256 x 256 (in .mat files)",
        note="layout assumed: the release's Data/<scene>/ folders, or input/ + target/ PNGs (e.g. the "
             "validation .mat blocks written out one PNG per block); full-size SIDD images are large, use size=",
    ),
    PaperSet(
        "gt_rain", "GT-Rain", "ood", "derain", "dense_rain",
        ("OOD/GT-RAIN_test", "GT-RAIN_test", ""),
        (Layout("*/*-R-*", "<scene>/<scene>-C-000 (every rainy frame <scene>-R-<k>.png of a scene <-> its clean frame)",
                _sibling(_rainy_frame_to_clean)),
         _INPUT_TARGET),
        "GT-Rain (Ba et al., 'Not Just Streaks: Towards Ground Truth for Single Image Deraining', ECCV 2022), "
        "the real-rain test split",
        "several rainy frames per scene and one clean frame; counts as in the release",
        note="layout assumed: the release's GT-RAIN_test/<scene>/ folders; all frames of a scene share one 'photo'",
    ),
    PaperSet(
        "rrshid", "RRSHID", "ood", "dehaze", "nonuniform_haze",
        ("OOD/RRSHID", ""),
        (Layout("hazy/*", "clear/<same stem> or gt/<same stem>", _swap("hazy", ("clear", "gt"))), _INPUT_TARGET),
        "RRSHID, a real-world remote-sensing hazy image dataset, as IRPO's reference names it: its paired "
        "(hazy, clear) release",
        "counts as in the release",
        note="layout assumed (not fixed by the authors' code): hazy/ + clear/ (or gt/) with the same names. "
             "A 277-image collection also called RRSHID (hazy AID / DIOR images) has no clean images and "
             "cannot be scored with PSNR",
    ),
    PaperSet(
        "reloblur", "ReLoBlur", "ood", "deblur", "other_blur",
        ("OOD/ReLoBlur", "ReLoBlur_test", ""),
        (Layout("blur/*", "sharp/<same name>", _swap("blur", ("sharp",))), _INPUT_TARGET),
        "ReLoBlur (Li et al., 'Real-World Deep Local Motion Deblurring', AAAI 2023), the real local-motion-blur test pairs",
        "395 test pairs (2,010 training pairs) as released, 2152 x 1436 px or a 538 x 359 px resized version",
        note="layout assumed: blur/ + sharp/ with the same names (the local-blur masks are not read)",
    ),
    PaperSet(
        "loli_street", "LoLI-Street", "ood", "lowlight", "lowlight_street",
        ("OOD/LoLI-Street/Val", "Val", ""),
        (Layout("low/*", "high/<same name>", _swap("low", ("high",))), _INPUT_TARGET),
        "LoLI-Street (Islam et al., 'LoLI-Street: Benchmarking Low-Light Image Enhancement and Beyond', "
        "ACCV 2024), its paired low-light / well-lit street images",
        "paired Train and Val splits and an unpaired real low-light Test split; counts as in the release",
        note="layout assumed: the Val split's low/ + high/ with the same names (Test has no references)",
    ),
)

#: Every set IRPO uses, by name (training, in-domain tests, out-of-domain tests, in that order).
PAPER_SETS: dict[str, PaperSet] = {s.name: s for s in _SETS}


def _spec(name: str) -> PaperSet:
    if not isinstance(name, str) or name not in PAPER_SETS:
        raise ValueError(f"unknown restoration set {name!r}; valid names: {', '.join(PAPER_SETS)}")
    return PAPER_SETS[name]


def describe_layout(name: str) -> str:
    """The expected folders and file names of set ``name``, for error messages and the data card.

    Args:
        name: a key of :data:`PAPER_SETS`.

    Returns:
        Several lines: the dataset and its role, where it may lie under ``root``, each accepted
        layout (degraded files <-> clean files), where to get it and any assumption made.

    Raises:
        ValueError: an unknown ``name`` (the message lists the valid ones).

    Example:
        >>> print(describe_layout("rain100l_train").splitlines()[0])
        rain100l_train: Rain100L (train), training set, task derain
    """
    spec = _spec(name)
    where = ", ".join(f"<root>/{f}" if f else "<root>" for f in spec.folders)
    lines = [f"{spec.name}: {spec.dataset}, {ROLES[spec.role]} set, task {spec.task}",
             f"  set folder (first found): {where}"]
    for k, layout in enumerate(spec.layouts):
        label = "layout" if len(spec.layouts) == 1 else f"layout {k + 1}"
        lines.append(f"  {label}: {layout.degraded}  <->  {layout.clean}")
    if spec.noise:
        lines.append(f"  noise: Gaussian, sigma on the 0-255 scale (the paper: {', '.join(map(str, spec.sigmas))})")
    lines.append(f"  get it: {spec.source}")
    lines.append(f"  as released: {spec.released}")
    if spec.note:
        lines.append(f"  note: {spec.note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# finding the pairs
# ----------------------------------------------------------------------------------------------


def _natural_key(text: str) -> list[tuple[int, int, str]]:
    """Sort ``rain-9`` before ``rain-10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", text) if t]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _images(folder: Path, pattern: str) -> list[Path]:
    found = [p for p in folder.glob(pattern) if _is_image(p)]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(folder).as_posix()))


def _locate(root: Path, spec: PaperSet) -> tuple[Path, Layout, list[Path]]:
    """The set's folder, the layout found there and its degraded (or, noise sets, clean) files."""
    tried = []
    for folder in spec.folders:
        where = root / folder if folder else root
        if not where.is_dir():
            tried.append(f"{where} (no such folder)")
            continue
        for layout in spec.layouts:
            files = _images(where, layout.degraded)
            if files:
                return where, layout, files
        tried.append(f"{where} (no images matching {' or '.join(lay.degraded for lay in spec.layouts)})")
    raise DatasetMissingError(
        f"{spec.dataset} ({spec.name}): no images found under {root}; looked in: {'; '.join(tried)}. "
        f"Expected layout:\n{describe_layout(spec.name)}"
    )


def find_pairs(root: str | os.PathLike, name: str) -> tuple[Path, Layout, list[tuple[Path, Path]]]:
    """Find every (degraded, clean) file pair of set ``name`` under ``root``, without reading images.

    For the noise sets both paths are the clean image. Pairs are in natural order of the degraded
    file's path (``rain-9`` before ``rain-10``).

    Args:
        root: the AdaIR data tree (holding ``Train/``, ``test/``, ``OOD/``) or the set's own folder.
        name: a key of :data:`PAPER_SETS`.

    Returns:
        ``(set folder, layout used, [(degraded path, clean path), ...])``.

    Raises:
        ValueError: an unknown ``name`` (lists the valid ones).
        DatasetMissingError: ``root`` or every candidate folder is missing or holds no matching
            image (names the folders tried and the expected layout).
        DatasetFormatError: degraded images without a clean counterpart, or with several (the
            same stem in two formats); the message counts them and names the first few.
    """
    spec = _spec(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetMissingError(f"{root}: no such folder for {spec.dataset} ({spec.name}). "
                                  f"Expected layout:\n{describe_layout(spec.name)}")
    folder, layout, files = _locate(root, spec)
    if layout.rule is None:
        return folder, layout, [(p, p) for p in files]
    listings: dict[Path, dict[str, list[Path]]] = {}

    def by_stem(directory: Path) -> dict[str, list[Path]]:
        if directory not in listings:
            index: dict[str, list[Path]] = {}
            if directory.is_dir():
                for p in directory.iterdir():
                    if _is_image(p):
                        index.setdefault(p.stem, []).append(p)
            listings[directory] = index
        return listings[directory]

    pairs, missing, ambiguous = [], [], []
    for path in files:
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        candidates = layout.rule(rel)
        for candidate in candidates:
            hits = by_stem(folder / candidate.parent).get(candidate.name, [])
            if hits:
                break
        if not hits:
            missing.append(f"{rel} (expected {' or '.join(f'{c}.*' for c in candidates)})")
        elif len(hits) > 1:
            ambiguous.append(f"{rel} -> {', '.join(sorted(h.name for h in hits))}")
        else:
            pairs.append((path, hits[0]))
    if missing:
        raise DatasetFormatError(
            f"{spec.dataset} ({spec.name}) in {folder}: {len(missing)} of {len(files)} degraded images have no clean "
            f"counterpart (first: {'; '.join(missing[:_SHOW])}). Expected layout:\n{describe_layout(spec.name)}"
        )
    if ambiguous:
        raise DatasetFormatError(
            f"{spec.dataset} ({spec.name}) in {folder}: {len(ambiguous)} degraded images match several clean files "
            f"(first: {'; '.join(ambiguous[:_SHOW])}); keep one file per name"
        )
    return folder, layout, pairs


# ----------------------------------------------------------------------------------------------
# the loaded set
# ----------------------------------------------------------------------------------------------


class ImageList(Sequence):
    """Images of different sizes, indexed like a ``(N, 3, H, W)`` tensor.

    ``x[i]`` is image ``i``, ``(3, H_i, W_i)``; ``x[a:b]`` stacks images ``a .. b-1`` into
    ``(B, 3, H, W)`` and needs them to share one size (so take them one at a time:
    ``evaluate_restoration(fn, data, batch_size=1)``).

    Args:
        images: ``(3, H_i, W_i)`` tensors.

    Example:
        >>> x = ImageList([torch.zeros(3, 8, 16), torch.zeros(3, 16, 8)])
        >>> len(x), tuple(x[1:2].shape), x.sizes
        (2, (1, 3, 16, 8), [(8, 16), (16, 8)])
    """

    def __init__(self, images: Sequence[Tensor]) -> None:
        self._images = list(images)
        for k, img in enumerate(self._images):
            if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] != 3:
                shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
                raise ValueError(f"images[{k}] must be a (3, H, W) tensor, got {shape}")

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """``(H_i, W_i)`` of every image."""
        return [(int(x.shape[1]), int(x.shape[2])) for x in self._images]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index):
        if isinstance(index, slice):
            chosen = self._images[index]
            shapes = sorted({tuple(x.shape[1:]) for x in chosen})
            if len(shapes) > 1:
                raise ValueError(f"images {index.start or 0}..{(index.stop or len(self)) - 1} differ in size "
                                 f"({', '.join(f'{h}x{w}' for h, w in shapes[:_SHOW])}); take them one at a time "
                                 "(batch_size=1) or load the set with size=...")
            if not chosen:
                return torch.empty((0, 3, 0, 0))
            return torch.stack(chosen)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int or a slice, got {type(index).__name__}")
        return self._images[index]

    def __repr__(self) -> str:
        return f"ImageList({len(self)} images, sizes {sorted(set(self.sizes))[:_SHOW]})"


class PairedRestorationSet(torch.utils.data.Dataset):
    """(degraded, clean) pairs of one real set, with the attributes of
    :class:`ispbench.data.restoration.RestorationSet`; built by :func:`load_restoration_pairs`.

    Attributes:
        clean, degraded: float32 in [0, 1]; ``(N, 3, H, W)`` tensors when every image has the same
            size (always with ``size``), else :class:`ImageList` objects (see the module docstring).
        photo: per sample, the clean image's file stem, or, where stems repeat in the set (SIDD's
            ``GT_SRGB_010`` in every scene folder), its path relative to the set folder without
            suffix; degraded versions of one clean image share it, so bootstraps cluster them.
        kind, task: per sample, the stand-in kind of :mod:`ispbench.data.restoration`
            (``denoise_25``, ``derain``, ``real_noise``, ...) and its task.
        crop: ``(N,)`` int64 zeros (one centre crop per image).
        kind_index: ``(N,)`` int64 zeros, the index of the kind in :attr:`kinds`.
        degraded_files, clean_files: per sample, the files read (the same file for the noise sets).
        name, dataset, role, folder, layout, size, sigma, seed, multiple, quantize, kinds: how it was built.
    """

    def __init__(self, *, spec: PaperSet, folder: Path, layout: Layout, degraded: Tensor | ImageList,
                 clean: Tensor | ImageList, pairs: Sequence[tuple[Path, Path]], photo: Sequence[str], kind: str,
                 size: tuple[int, int] | None, sigma: float | None, seed: int, multiple: int, quantize: bool) -> None:
        self.name, self.dataset, self.role = spec.name, spec.dataset, spec.role
        self.folder, self.layout = folder, layout
        self.size, self.sigma, self.seed, self.multiple, self.quantize = size, sigma, seed, multiple, quantize
        self.kinds = (kind,)
        self.degraded, self.clean = degraded, clean
        self.degraded_files = [d for d, _ in pairs]
        self.clean_files = [c for _, c in pairs]
        self.photo = list(photo)
        self.kind = [kind] * len(pairs)
        self.task = [spec.task] * len(pairs)
        self.crop = np.zeros(len(pairs), dtype=np.int64)
        self.kind_index = np.zeros(len(pairs), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.kind)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        """``(degraded (3, H, W), clean (3, H, W), kind_index)`` of sample ``index``."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a PairedRestorationSet of {n} samples")
        return self.degraded[index], self.clean[index], int(self.kind_index[index])

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> PairedRestorationSet:
        """A new set holding only samples ``indices`` (in that order), e.g. the worst ones:
        ``data.subset(np.argsort(psnr)[:k])``."""
        idx = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D sequence of ints, got dtype {idx.dtype} shape {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices must be in [0, {len(self)}), got range [{idx.min()}, {idx.max()}]")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        if isinstance(self.clean, Tensor):
            rows = torch.from_numpy(idx)
            new.clean, new.degraded = self.clean[rows], self.degraded[rows]
        else:
            new.clean = ImageList([self.clean[int(i)] for i in idx])
            new.degraded = ImageList([self.degraded[int(i)] for i in idx])
        for field in ("degraded_files", "clean_files", "photo", "kind", "task"):
            setattr(new, field, [getattr(self, field)[i] for i in idx])
        new.crop, new.kind_index = self.crop[idx], self.kind_index[idx]
        return new

    def __repr__(self) -> str:
        shape = f"size={self.size}" if self.size else (
            f"size={tuple(self.clean.shape[2:])}" if isinstance(self.clean, Tensor) else "sizes vary")
        sigma = f", sigma={self.sigma:g}" if self.sigma is not None else ""
        return f"PairedRestorationSet({self.name!r}, samples={len(self)}, {shape}{sigma}, folder={str(self.folder)!r})"


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_size(size, multiple: int) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    if (not isinstance(hw, (tuple, list)) or len(hw) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < multiple or v % multiple for v in hw)):
        raise ValueError(f"size must be None, an int or a (height, width) pair of positive multiples of {multiple}, got {size!r}")
    return int(hw[0]), int(hw[1])


def _centre_crop(img: np.ndarray, hw: tuple[int, int], path: Path) -> np.ndarray:
    h, w = img.shape[:2]
    if h < hw[0] or w < hw[1]:
        raise DatasetFormatError(f"{path}: {h}x{w} px is smaller than the crop {hw[0]}x{hw[1]} (height x width)")
    top, left = (h - hw[0]) // 2, (w - hw[1]) // 2
    return img[top:top + hw[0], left:left + hw[1]]


def _to_tensor(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _photo_names(folder: Path, clean_files: Sequence[Path]) -> list[str]:
    """Clean file stems, or relative paths without suffix where two clean files share a stem."""
    distinct = set(clean_files)
    if len({p.stem for p in distinct}) == len(distinct):
        return [p.stem for p in clean_files]
    return [PurePosixPath(p.relative_to(folder).as_posix()).with_suffix("").as_posix() for p in clean_files]


def _noise_seed(seed: int, rel: str, sigma: float) -> int:
    """A 63-bit seed for one image's noise: depends on the image's path, not on the other images."""
    entropy = [seed, zlib.crc32(rel.encode("utf-8")), int(round(sigma * 1000)), _NOISE_STREAM]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def load_restoration_pairs(root: str | os.PathLike, name: str, *, max_images: int = 0,
                           size: int | tuple[int, int] | None = None, sigma: float | None = None, seed: int = 0,
                           multiple: int = 8, quantize: bool = False) -> PairedRestorationSet:
    """Read set ``name`` of :data:`PAPER_SETS` from ``root`` as (degraded, clean) pairs.

    Images are read as RGB in [0, 1] (8- or 16-bit PNG, JPEG, BMP, TIFF; greyscale replicated).
    Both images of a pair must have the same size; each is then centre-cropped to ``size``, or,
    without it, down to multiples of ``multiple`` (offsets ``(H mod m) // 2``, as the authors'
    ``crop_img``). The noise sets (``bsd400_wed``, ``bsd68``, ``urban100``) read the clean
    images and add white Gaussian noise ``clip(x + sigma / 255 * n, 0, 1)``
    (:func:`ispbench.ops.degradations.gaussian_noise`) from a generator seeded with ``(seed,
    the image's path, sigma)``, so each image's noise is reproducible and does not depend on
    the other images or on ``max_images``.

    Args:
        root: the AdaIR data tree (``Train/``, ``test/``, ``OOD/``) or the set's own folder
            (:attr:`PaperSet.folders`).
        name: a key of :data:`PAPER_SETS`.
        max_images: keep the first ``max_images`` pairs in natural file order; 0 keeps all.
            Every image is held in memory: use it (and ``size``) for the large training sets.
        size: ``None`` (full images), an int (square crop) or ``(height, width)``, multiples of
            ``multiple``.
        sigma: noise standard deviation on the 0-255 scale, > 0; required for the noise sets
            and refused for the others. The paper: 15, 25, 50 (BSD68 at 25 in the five-task table).
        seed: base seed of the noise, >= 0.
        multiple: sides are made divisible by it, >= 1 (8 for AdaIR; the authors' scripts use 16).
        quantize: store noisy images as the authors do, truncated to 8 bits
            (``floor(255 * noisy) / 255``); default ``False`` (float noise, as the embedded set).

    Returns:
        A :class:`PairedRestorationSet` of ``N`` pairs; ``kind`` is the set's stand-in kind
        (``denoise_<sigma>`` for the noise sets).

    Raises:
        ValueError: an unknown ``name`` (lists the valid ones), a missing or unneeded ``sigma``,
            a bad ``size``, ``max_images``, ``seed`` or ``multiple``.
        DatasetMissingError: ``root`` or the set's folder is missing (names the paths tried and
            the expected layout).
        DatasetFormatError: degraded images without a clean counterpart (counted, first few
            named), an unreadable image (names the file), pairs of different sizes or an image
            smaller than the crop (name the files).

    Example:
        >>> data = load_restoration_pairs("~/data/AdaIR", "bsd68", sigma=25, size=256)   # doctest: +SKIP
        >>> data.degraded.shape, data.kind[0], data.task[0]                              # doctest: +SKIP
        (torch.Size([68, 3, 256, 256]), 'denoise_25', 'denoise')
    """
    spec = _spec(name)
    multiple = _check_int("multiple", multiple, 1)
    hw = _check_size(size, multiple)
    max_images = _check_int("max_images", max_images, 0)
    seed = _check_int("seed", seed, 0)
    if spec.noise:
        if sigma is None:
            raise ValueError(f"{spec.dataset} ({name}) holds clean images only: pass sigma, the noise level on the "
                             f"0-255 scale (the paper uses {', '.join(map(str, spec.sigmas))})")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a finite number > 0 (0-255 scale), got {sigma!r}")
        sigma = float(sigma)
        kind = f"denoise_{sigma:g}"
    else:
        if sigma is not None:
            noise_sets = [s.name for s in _SETS if s.noise]
            raise ValueError(f"sigma applies only to the noise sets ({', '.join(noise_sets)}); {name} has real "
                             f"degraded images, got sigma={sigma!r}")
        kind = spec.kind

    folder, layout, pairs = find_pairs(root, name)
    photos = _photo_names(folder, [c for _, c in pairs])  # over the whole set: stable under max_images
    if max_images:
        pairs, photos = pairs[:max_images], photos[:max_images]
    degraded, clean = [], []
    with torch.no_grad():
        for deg_path, clean_path in pairs:
            clean_img = read_display_image(clean_path, log=None)
            deg_img = clean_img if spec.noise else read_display_image(deg_path, log=None)
            if deg_img.shape != clean_img.shape:
                raise DatasetFormatError(
                    f"{deg_path} is {deg_img.shape[0]}x{deg_img.shape[1]} px but its clean counterpart {clean_path} is "
                    f"{clean_img.shape[0]}x{clean_img.shape[1]} px (height x width); a pair must have one size")
            h, w = clean_img.shape[:2]
            target = hw or (h - h % multiple, w - w % multiple)
            if target[0] == 0 or target[1] == 0:
                raise DatasetFormatError(f"{clean_path}: {h}x{w} px is smaller than {multiple} px, the multiple sides are cropped to")
            c = _to_tensor(_centre_crop(clean_img, target, clean_path))
            if spec.noise:
                rel = clean_path.relative_to(folder).as_posix()
                generator = torch.Generator().manual_seed(_noise_seed(seed, rel, sigma))
                d = D.gaussian_noise(c[None], sigma, generator)[0]
                if quantize:
                    d = torch.floor(d * 255.0) / 255.0
            else:
                d = _to_tensor(_centre_crop(deg_img, target, deg_path))
            degraded.append(d)
            clean.append(c)
    if len({tuple(x.shape) for x in clean}) == 1:  # find_pairs found at least one pair
        deg_out: Tensor | ImageList = torch.stack(degraded)
        clean_out: Tensor | ImageList = torch.stack(clean)
    else:
        deg_out, clean_out = ImageList(degraded), ImageList(clean)
    return PairedRestorationSet(spec=spec, folder=folder, layout=layout, degraded=deg_out, clean=clean_out,
                                pairs=pairs, photo=photos, kind=kind, size=hw, sigma=sigma if spec.noise else None, seed=seed,
                                multiple=multiple, quantize=bool(quantize))
