"""Atomic writes: the target appears only complete, failures leave the old file, permissions are normal."""

from __future__ import annotations

import os
import stat

import pytest

from ispbench import atomic


def test_write_json_round_trip_and_normal_permissions(tmp_path):
    path = atomic.write_json(tmp_path / "a" / "r.json", {"x": 1})
    assert path.read_text().strip().startswith("{")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o044, f"file is not readable by others: {oct(mode)}"  # not mkstemp's 0600


def test_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.txt"
    atomic.write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]
