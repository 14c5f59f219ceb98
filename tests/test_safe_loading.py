"""Every checkpoint and weights loader refuses a crafted ``.pt`` (a pickle that would run code) without running it.

The crafted file is what ``torch.save`` writes for an object whose ``__reduce__`` calls a function
(here: ``pathlib.Path.touch`` on a marker file; a real attack would call ``os.system``). Each loader
must raise, naming the file, and the marker must not exist afterwards. The shipped weights must load
with ``weights_only=True`` (the detector through ultralytics' restricted loader).
"""

from __future__ import annotations

import pathlib

import pytest
import torch

from ispbench.paths import WEIGHTS_DIR


class _Payload:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _crafted(tmp_path: pathlib.Path, layout: dict) -> tuple[pathlib.Path, pathlib.Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "crafted.pt"
    torch.save({k: (_Payload(marker) if v is None else v) for k, v in layout.items()}, path)
    return path, marker


def _adaptiveisp(path):
    from ispbench.methods.adaptiveisp.inference import load_policy

    return load_policy(path)


def _rlpixtuner(path):
    from ispbench.methods.rlpixtuner.inference import Policy

    return Policy.load(str(path))


def _baseline(path):
    from ispbench.detection_baselines.models import load_baseline

    return load_baseline(path)


def _proxy(path):
    from ispbench.finishing_baselines.proxy import load_proxy

    return load_proxy(path, "cascaded")


def _detector(path):
    from ispbench.tasks.detector import FrozenDetector

    return FrozenDetector(path, imgsz=64)


def _segmenter(path):
    from ispbench.tasks.segmenter import FrozenSegmenter

    return FrozenSegmenter(path, imgsz=64)


def _resume(path):
    from ispbench.training.checkpoint import load_checkpoint

    path.rename(path.with_name("last.pt"))
    return load_checkpoint(path.parent, resume=True)


LOADERS = {
    "adaptiveisp": (_adaptiveisp, {"config": {}, "state_dict": None}),
    "rlpixtuner": (_rlpixtuner, {"policy": None}),
    "baseline": (_baseline, {"config": None, "state_dict": {}}),
    "proxy": (_proxy, {"state_dict": None, "metrics": {"kind": "cascaded"}}),
    "detector": (_detector, {"model": None, "train_args": {}}),
    "segmenter": (_segmenter, {"model": None, "train_args": {}}),
    "resume": (_resume, {"iteration": 1, "args": None}),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_crafted_checkpoint_is_refused_and_never_runs(tmp_path, name):
    loader, layout = LOADERS[name]
    path, marker = _crafted(tmp_path, layout)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type differs per loader; the message is checked
        loader(path)
    assert "crafted.pt" in str(info.value) or "last.pt" in str(info.value), str(info.value)
    assert "refused" in str(info.value)
    assert not marker.exists(), f"{name}: loading the crafted file ran its code"


def test_the_probe_payload_does_run_when_unpickled_unsafely(tmp_path):
    """Sanity check of the probe itself: an unrestricted load creates the marker."""
    path, marker = _crafted(tmp_path, {"x": None})
    torch.load(path, weights_only=False)
    assert marker.exists()


#: Ultralytics detector and segmenter checkpoints pickle their module classes: they load through the restricted loader below.
SEGMENTERS = sorted(p.name for p in WEIGHTS_DIR.glob("embedded_yolo*_seg.pt"))
DETECTORS = sorted(p.name for p in WEIGHTS_DIR.glob("embedded_yolo*.pt") if p.name not in SEGMENTERS)


@pytest.mark.parametrize("path", sorted(p.relative_to(WEIGHTS_DIR).as_posix() for p in WEIGHTS_DIR.rglob("*.pt")
                                        if p.name not in DETECTORS + SEGMENTERS))
def test_shipped_weights_load_with_weights_only(path):
    torch.load(WEIGHTS_DIR / path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detectors_load_through_the_restricted_loader(name):
    from ispbench.tasks.detector import FrozenDetector

    det = FrozenDetector(WEIGHTS_DIR / name, imgsz=64)
    assert sum(p.numel() for p in det.parameters()) > 0


@pytest.mark.parametrize("name", SEGMENTERS)
def test_shipped_segmenters_load_through_the_restricted_loader(name):
    from ispbench.tasks.segmenter import FrozenSegmenter

    seg = FrozenSegmenter(WEIGHTS_DIR / name, imgsz=64)
    assert sum(p.numel() for p in seg.parameters()) > 0
