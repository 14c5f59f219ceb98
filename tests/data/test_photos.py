"""Embedded photos: sources, disjoint splits, deterministic Random-Target pairs, out-of-family retouches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ispbench.data import photos
from ispbench.ops.finishing import finish


def test_split_names_and_disjointness():
    assert set(photos.SPLITS) == {"train", "val", "test"}
    sets = {s: set(photos.photo_names(s)) for s in photos.SPLITS}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sum(len(v) for v in sets.values()) == len(photos.photo_names()) == len(set(photos.photo_names()))
    holding_stereo = [s for s, names in sets.items() if names & {"motorcycle_left", "motorcycle_right"}]
    assert holding_stereo == ["train"] and {"motorcycle_left", "motorcycle_right"} <= sets["train"]


@pytest.mark.parametrize("name", photos.photo_names())
def test_every_photo_loads_as_a_colour_image(name):
    img = photos.load_photo(name)
    assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.02
    chroma = img - img.mean(axis=2, keepdims=True)  # zero everywhere for a grey image
    assert float(np.abs(chroma).mean()) > 0.01, f"{name} looks grey"
    assert photos.photo_source(name)["licence"]


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        photos.photo_names("heldout")
    with pytest.raises(ValueError, match="unknown photo"):
        photos.load_photo("lena")
    with pytest.raises(ValueError, match="n must be"):
        photos.eval_crops("test", 0, 16, np.random.default_rng(0))


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
    e = photos.random_target_eval_set("val", n=4, size=24, seed=1)
    e2 = photos.random_target_eval_set("val", n=4, size=24, seed=1)
    assert e.inputs.shape == (4, 3, 24, 24) and torch.equal(e.goals, e2.goals)
    assert e.names == ["flower", "bus", "flower", "bus"]
    t = photos.random_target_eval_set(n=3, size=24)
    assert t.names == ["chelsea", "coffee", "grace_hopper"]  # the tables use the test split
    h = photos.expert_target_eval_set(n=3, size=24)
    assert h.goal_actions is None and h.goals.shape == (3, 3, 24, 24)
    assert set(h.names) <= set(photos.photo_names("test"))
    assert "matplotlib, scikit-image" in h.description and "ultralytics" not in h.description
    assert float((h.goals - h.inputs).abs().mean()) > 0.02  # the expert-like edit does something


def test_retouch_outside_family_is_seeded_bounded_and_changes_the_image():
    crop = photos.eval_crops("test", 1, 64, np.random.default_rng(0))[0][0].clip(0, 1)
    out = photos.retouch_outside_family(crop, np.random.default_rng(5))
    again = photos.retouch_outside_family(crop, np.random.default_rng(5))
    other = photos.retouch_outside_family(crop, np.random.default_rng(6))
    assert out.shape == crop.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, again) and not np.array_equal(out, other)
    assert float(np.abs(out - crop).mean()) > 0.02


def test_retouch_parts_behave_as_documented():
    # the hue rotation keeps grey grey and is a rotation; the blur rows sum to one (mirrored borders)
    rotation = photos._hue_rotation_matrix(20.0)
    np.testing.assert_allclose(rotation @ np.ones(3), np.ones(3), atol=1e-12)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(photos._hue_rotation_matrix(120.0) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    blur = photos._gaussian_blur_matrix(5, 8.0)  # radius 24 > length: repeated reflections
    np.testing.assert_allclose(blur.sum(axis=1), np.ones(5))
    np.testing.assert_allclose(photos._gaussian_blur_matrix(6, 1.0) @ np.full(6, 0.3), np.full(6, 0.3))
    # a flat image stays flat (the unsharp mask has no edge to boost); the per-channel curves tint it
    grey = np.full((16, 16, 3), 0.5, np.float32)
    out = photos.retouch_outside_family(grey, np.random.default_rng(0))
    assert float(np.abs(out - out.mean(axis=2, keepdims=True)).max()) > 0
    assert float(np.abs(out - out[:1, :1]).max()) < 1e-6


def test_retouch_refuses_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="img must be"):
        photos.retouch_outside_family(np.zeros((8, 8)), rng)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        photos.retouch_outside_family(np.full((8, 8, 3), 1.5), rng)
    with pytest.raises(TypeError, match="rng"):
        photos.retouch_outside_family(np.zeros((8, 8, 3)), 0)
