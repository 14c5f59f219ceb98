"""``ispbench`` command routing: every trainer is listed and answers ``--help``."""

from __future__ import annotations

import pytest

from ispbench import cli

TRAINERS = ("adaptiveisp", "hpo", "attention", "rlpixtuner", "proxy", "detector")


def test_train_help_lists_all_trainers(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name in TRAINERS:
        assert f"train {name} " in out


@pytest.mark.parametrize("name", TRAINERS)
def test_each_trainer_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: ispbench train {name}" in out and "--seed" in out
