"""The ``ispbench`` command line.

Each sub-command lives beside the code it drives and exposes ``main(argv) -> int``; this
module only routes to it, so ``ispbench --help`` stays fast (nothing heavy is imported).
"""

from __future__ import annotations

import importlib
import sys

from ispbench import __version__

#: (command, sub-command) -> "module:function" taking the remaining argv.
COMMANDS: dict[tuple[str, str | None], tuple[str, str]] = {
    ("run", None): ("ispbench.runner:main", "execute the book's notebooks (or some) with a profile through papermill"),
    ("report", "status"): ("ispbench.report:main", "write the reproduction-status page from the result files"),
    ("bench", "ops"): ("ispbench.ops.bench:main", "time every ISP module against a memory-copy floor"),
    ("bench", "irpo"): ("ispbench.methods.irpo.bench:main", "IRPO's pre-training and GRPO steps: images/s and peak memory"),
    ("bench", "tune"): ("ispbench.methods.rlpixtuner.bench:main", "RLPixTuner's own time beside its 10 pipeline renders"),
    ("data", "prepare"): ("ispbench.data.prepare:main", "check and convert a paper dataset you downloaded"),
    ("data", "generate"): ("ispbench.data.generate:main", "generate an embedded dataset (cached)"),
    ("train", "adaptiveisp"): ("ispbench.methods.adaptiveisp.train:main", "train an AdaptiveISP policy"),
    ("train", "hpo"): ("ispbench.detection_baselines.train:main_hpo", "train the HPO baseline (one parameter set)"),
    ("train", "attention"): ("ispbench.detection_baselines.train:main_attention",
                             "train the attention-aware baseline (per-image parameters)"),
    ("train", "posisp"): ("ispbench.methods.posisp.train:main", "train POS-ISP (module sequence + per-image parameters)"),
    ("train", "reconfigisp"): ("ispbench.detection_baselines.reconfigisp_train:main",
                               "train the ReconfigISP baseline (DARTS search over modules, then fine-tuning)"),
    ("train", "rlpixtuner"): ("ispbench.methods.rlpixtuner.train:main", "train an RLPixTuner TD3 policy"),
    ("train", "irpo-pretrain"): ("ispbench.methods.irpo.pretrain:main",
                                 "pre-train the all-in-one AdaIR restorer with L1 on five degradations (IRPO)"),
    ("train", "irpo"): ("ispbench.methods.irpo.grpo:main", "post-train AdaIR with GRPO on its worst-restored samples (IRPO)"),
    ("train", "proxy"): ("ispbench.finishing_baselines.proxy:main", "train a finishing-pipeline proxy (monolithic/cascaded)"),
    ("train", "detector"): ("ispbench.training.detector:main",
                          "train the embedded YOLO detector (--task segment: the YOLO11n-seg segmenter)"),
    ("train", "candidates"): ("ispbench.detection_baselines.candidates:main",
                              "tune N candidate 5-module fixed pipelines as HPO does, rank them on val"),
}


def _usage(only: str | None = None) -> str:
    """The command list (of one command group, e.g. ``train``, when ``only`` is given)."""
    head = f"usage: ispbench {only} SUBCOMMAND [ARGS...]" if only else "usage: ispbench COMMAND [SUBCOMMAND] [ARGS...]"
    lines = [head, "", "commands:"]
    for (command, sub), (_, help_text) in COMMANDS.items():
        if only and command != only:
            continue
        name = f"{command} {sub}" if sub else command
        lines.append(f"  {name:<22} {help_text}")
    lines.append("")
    lines.append("Run `ispbench COMMAND [SUBCOMMAND] --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    subs_of_command = [sub for c, sub in COMMANDS if c == command and sub]
    if subs_of_command and (not rest or rest[0] in {"-h", "--help"}):
        print(_usage(command))
        return 0 if rest else 2
    key: tuple[str, str | None] | None = None
    if (command, None) in COMMANDS:
        key = (command, None)
    elif rest and (command, rest[0]) in COMMANDS:
        key, rest = (command, rest[0]), rest[1:]
    if key is None:
        subs = sorted(f"{c} {s}" if s else c for c, s in COMMANDS)
        print(f"ispbench: unknown command {' '.join(argv[:2])!r}; valid: {', '.join(subs)}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[key]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
