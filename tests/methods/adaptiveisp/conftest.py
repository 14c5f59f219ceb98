"""Fixtures for the AdaptiveISP tests: a tiny in-memory detection dataset, a random-init detector."""

from __future__ import annotations

import pytest
import torch


class TinyDetectionSet(torch.utils.data.Dataset):
    """``n`` dark linear 64x64 images with one or two boxes each (the embedded dataset's item format)."""

    def __init__(self, n: int = 12, size: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            img = torch.rand(3, size, size, generator=g) * 0.05
            k = 1 + i % 2
            boxes = torch.rand(k, 4, generator=g) * 0.3 + torch.tensor([0.35, 0.35, 0.2, 0.2])
            for b in boxes:  # paint the objects brighter so the detector loss depends on the image
                cx, cy, w, h = (b * size).long().tolist()
                img[:, max(cy - h // 2, 0): cy + h // 2, max(cx - w // 2, 0): cx + w // 2] += 0.1
            self.items.append({
                "image": img.clamp(0, 1),
                "boxes": boxes,
                "labels": torch.randint(0, 5, (k,), generator=g),
                "meta": {"iso": 800 * (1 + i % 4), "exposure_time": 1 / 30, "light": 1.0, "scene_id": i},
            })

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@pytest.fixture
def tiny_data(monkeypatch):
    """Patch ``load_split`` so trainers read a tiny in-memory dataset."""
    from ispbench.data import synthetic_detection

    data = {split: TinyDetectionSet(12 if split == "train" else 6, seed=hash(split) % 100) for split in ("train", "val", "test")}
    monkeypatch.setattr(synthetic_detection, "load_split", lambda split, light, root=None: data[split])
    return data


@pytest.fixture(scope="session")
def tiny_detector():
    """A randomly initialised YOLOv8n (5 classes) at 64 px, from ultralytics' YAML (no download)."""
    from ispbench.tasks.detector import FrozenDetector

    torch.manual_seed(0)
    return FrozenDetector(model_yaml="yolov8n.yaml", nc=5, imgsz=64)
