"""The resume guard and run-folder hash of :mod:`ispbench.training.checkpoint`."""

from __future__ import annotations

import pytest

from ispbench.training.checkpoint import SettingsChangedError, resume_segments, setting_changes, settings_hash


def test_setting_changes_names_each_difference_and_treats_1_as_1_0():
    assert setting_changes({"lr": 1e-4, "seed": 0, "x": 1}, {"lr": 0.5, "seed": 0, "x": 1.0, "new": True}) == {
        "lr": (1e-4, 0.5), "new": (setting_changes.__globals__["_ABSENT"], True)}


def test_resume_segments_refuses_then_records():
    ckpt = {"args": {"lr": 1e-4, "iterations": 10, "seed": 0}, "segments": [{"start": 0}]}
    with pytest.raises(SettingsChangedError, match=r"lr: 0.0001 -> 0.5"):
        resume_segments(ckpt, {"lr": 0.5, "iterations": 20, "seed": 0}, path="x/last.pt", position=4, allow_changed=False)
    # the run length is a segment setting: no flag needed
    seg = resume_segments(ckpt, {"lr": 1e-4, "iterations": 20, "seed": 0}, path="p", position=4, allow_changed=False)
    assert seg[-1] == {"start": 4, "changed": {}, "segment_changes": {"iterations": [10, 20]}}
    seg = resume_segments(ckpt, {"lr": 0.5, "iterations": 10, "seed": 0}, path="p", position=4, allow_changed=True)
    assert seg == [{"start": 0}, {"start": 4, "changed": {"lr": [1e-4, 0.5]}, "segment_changes": {}}]
    assert resume_segments(None, {}, path="p", position=0, allow_changed=False) == [{"start": 0}]


def test_settings_hash_ignores_where_and_how_but_not_what():
    a = {"lr": 1e-3, "seed": 0, "out_dir": "a", "progress_bar": True}
    assert settings_hash(a) == settings_hash({**a, "out_dir": "b", "progress_bar": False})
    assert settings_hash(a) != settings_hash({**a, "seed": 1}) and len(settings_hash(a)) == 10
