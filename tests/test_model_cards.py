"""Every recipe command in a model card (``ispbench/weights/*.md`` and ``*.json``) parses with its
trainer's command line as it is today, so that a reader can copy it and rerun the recipe."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from ispbench.detection_baselines import candidates, reconfigisp_train
from ispbench.detection_baselines import train as baseline_train
from ispbench.finishing_baselines import proxy
from ispbench.methods.adaptiveisp import train as adaptiveisp_train
from ispbench.methods.irpo import grpo as irpo_grpo
from ispbench.methods.irpo import pretrain as irpo_pretrain
from ispbench.methods.posisp import train as posisp_train
from ispbench.methods.rlpixtuner import train as rlpixtuner_train
from ispbench.paths import WEIGHTS_DIR
from ispbench.training import config
from ispbench.training import detector as detector_train

#: ``ispbench train NAME`` -> (its arguments dataclass, the defaults it starts from)
TRAINERS = {
    "adaptiveisp": (adaptiveisp_train.Args, None),
    "hpo": (baseline_train.Args, baseline_train.Args(method="hpo")),
    "attention": (baseline_train.Args, baseline_train.Args(method="attention")),
    "rlpixtuner": (rlpixtuner_train.Args, None),
    "proxy": (proxy.ProxyTrainArgs, None),
    "detector": (detector_train.Args, None),
    "candidates": (candidates.CandidatesArgs, None),
    "posisp": (posisp_train.Args, None),
    "reconfigisp": (reconfigisp_train.Args, None),
    "irpo-pretrain": (irpo_pretrain.Args, None),
    "irpo": (irpo_grpo.Args, None),
}
COMMAND = re.compile(r"ispbench train ([\w-]+)([^`\n\"]*)")


def recipe_commands() -> list[tuple[str, str, str]]:
    """(file, trainer, arguments) of every ``ispbench train ...`` command written in a model card."""
    found = []
    for path in sorted(WEIGHTS_DIR.glob("*.md")) + sorted(WEIGHTS_DIR.glob("*.json")):
        text = path.read_text()
        if path.suffix == ".json":
            text = "\n".join(str(v) for v in json.loads(text).values() if isinstance(v, str))
        text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
        for match in COMMAND.finditer(text):
            # placeholders such as <monolithic|cascaded> stand for their first choice
            args = re.sub(r"<([^|>]+)(\|[^>]*)?>", r"\1", match.group(2))
            found.append((path.name, match.group(1), args.strip()))
    return found


def test_model_cards_hold_recipe_commands():
    names = {trainer for _, trainer, _ in recipe_commands()}
    assert {"adaptiveisp", "hpo", "attention", "rlpixtuner", "proxy", "detector"} <= names


@pytest.mark.parametrize(("card", "trainer", "arguments"), recipe_commands())
def test_recipe_command_parses(card, trainer, arguments):
    assert trainer in TRAINERS, f"{card}: unknown trainer {trainer!r} in `ispbench train {trainer}`"
    cls, base = TRAINERS[trainer]
    parser = config.build_parser(cls, prog=f"ispbench train {trainer}", base=base)
    try:
        parser.parse_args(shlex.split(arguments, comments=True))
    except SystemExit as exc:  # argparse reports the bad flag on stderr
        pytest.fail(f"{card}: `ispbench train {trainer} {arguments}` does not parse (exit {exc.code})")


def test_every_model_card_is_on_the_checkpoints_page():
    page = (WEIGHTS_DIR.parents[1] / "book" / "checkpoints.md").read_text()
    missing = [p.name for p in sorted(WEIGHTS_DIR.glob("*.md")) if f"../ispbench/weights/{p.name}" not in page]
    assert not missing, f"book/checkpoints.md does not include {missing}"
