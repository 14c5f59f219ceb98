"""``ispbench.training.config``: nested dataclasses as one flat command line."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ispbench.training.config import ConfigError, build_parser, flat_dict, from_overrides, parse, to_argv


@dataclass
class Inner:
    """Inner settings."""

    imgsz: int = 160
    """image side"""
    light: str = "low"
    """which split"""


@dataclass
class Outer:
    """Outer settings."""

    inner: Inner = field(default_factory=Inner)
    """the inner group (shown as the group's description)"""
    lr: float = 1e-3
    """learning rate"""
    decay: bool = True
    """decay the learning rate"""


@dataclass
class Clash:
    inner: Inner = field(default_factory=Inner)
    imgsz: int = 3


def test_nested_leaves_are_flat_flags_and_bools_have_one_syntax():
    cfg = parse(Outer, ["--imgsz", "96", "--lr", "0.5", "--no-decay"], prog="t")
    assert cfg == Outer(Inner(96, "low"), 0.5, False)
    assert parse(Outer, ["--decay"], prog="t").decay is True
    with pytest.raises(SystemExit):  # the old "--decay false" syntax is gone
        parse(Outer, ["--decay", "false"], prog="t")
    text = build_parser(Outer, prog="t").format_help()
    assert "image side" in text and "the inner group" in text and "(default: 160)" in text


def test_base_instance_gives_the_defaults():
    assert parse(Outer, [], prog="t", base=Outer(lr=7.0)).lr == 7.0
    assert "(default: 7.0)" in build_parser(Outer, prog="t", base=Outer(lr=7.0)).format_help()


def test_overrides_flat_or_dotted_and_round_trips():
    cfg = from_overrides(Outer, {"imgsz": 64, "inner.light": "normal", "lr": 1})
    assert cfg.inner == Inner(64, "normal") and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert flat_dict(cfg) == {"imgsz": 64, "light": "normal", "lr": 1.0, "decay": True}
    assert parse(Outer, to_argv(cfg), prog="t") == cfg
    assert to_argv(Outer(decay=False)) == ["--no-decay"]


def test_unknown_key_and_wrong_type_are_refused():
    with pytest.raises(ConfigError, match="no setting 'imgsize'.*valid: decay, imgsz"):
        from_overrides(Outer, {"imgsize": 3})
    with pytest.raises(ConfigError, match="decay: expected true or false"):
        from_overrides(Outer, {"decay": "false"})
    with pytest.raises(SystemExit):
        parse(Outer, ["--bogus", "1"], prog="t")


def test_duplicate_leaf_name_is_refused():
    with pytest.raises(TypeError, match="'imgsz' is used twice"):
        build_parser(Clash, prog="t")
