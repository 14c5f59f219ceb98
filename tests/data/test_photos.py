"""Embedded photos: sources, disjoint splits, deterministic Random-Target pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.data import photos
from ispbench.ops.finishing import finish


def test_splits_are_disjoint_and_loadable():
    sets = {s: set(photos.photo_names(s)) for s in photos.SPLITS}
    assert not sets["train"] & sets["heldout"]
    assert not sets["train"] & sets["heldout2"]
    assert not sets["heldout"] & sets["heldout2"]
    for name in photos.photo_names():
        img = photos.load_photo(name)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.02  # a real colour photo
        assert photos.photo_source(name)["licence"]


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        photos.photo_names("val")
    with pytest.raises(ValueError, match="unknown photo"):
        photos.load_photo("lena")


def test_photo_crops_deterministic_and_goal_is_finish_of_input():
    ds = photos.PhotoCrops("train", size=32, seed=3, length=5)
    x, g, a = ds[2]
    x2, g2, a2 = photos.PhotoCrops("train", size=32, seed=3, length=5)[2]
    assert x.shape == (3, 32, 32) and a.shape == (9,)
    assert torch.equal(x, x2) and torch.equal(a, a2)
    assert torch.allclose(g, finish(x[None], a[None])[0].clamp(0, 1))
    assert float(a.abs().max()) <= 0.5
    assert not torch.equal(ds[1][0], x)
    with pytest.raises(IndexError):
        ds[5]


def test_eval_sets():
    e = photos.random_target_eval_set("heldout", n=4, size=24, seed=1)
    e2 = photos.random_target_eval_set("heldout", n=4, size=24, seed=1)
    assert e.inputs.shape == (4, 3, 24, 24) and torch.equal(e.goals, e2.goals)
    assert e.names == ["chelsea", "coffee", "chelsea", "coffee"]
    h = photos.expert_target_eval_set(n=3, size=24)
    assert h.goal_actions is None and h.goals.shape == (3, 3, 24, 24)
    assert set(h.names) <= set(photos.photo_names("heldout2"))
    assert float((h.goals - h.inputs).abs().mean()) > 0.02  # the expert-like edit does something
