"""A tiny in-memory detection split that the baseline trainer tests train on instead of the embedded data."""

from __future__ import annotations

import pytest
import torch

from ispbench.data import synthetic_detection


class _Tiny(torch.utils.data.Dataset):
    def __init__(self, n=6):
        g = torch.Generator().manual_seed(0)
        self.items = [{"image": torch.rand(3, 64, 64, generator=g) * 0.1,
                       "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]]),
                       "labels": torch.tensor([i % 5]), "meta": {"iso": 800}} for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def tiny(monkeypatch):
    data = _Tiny()
    monkeypatch.setattr(synthetic_detection, "load_split", lambda split, light, root=None: data)
    return data
