"""``ispbench data generate NAME``: generate an embedded dataset into the cache (re-used if present).

Example:
    $ ispbench data generate embedded-detection --scenes 1200 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time

from ispbench.data import synthetic_detection as sd

#: Dataset names this command can generate.
GENERATORS = ("embedded-detection",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ispbench data generate", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"dataset to generate; one of: {', '.join(GENERATORS)}")
    parser.add_argument("--root", default=None, help="parent folder of the version-hash folders (default: cache_dir()/embedded_detection)")
    parser.add_argument("--scenes", type=int, default=None, help="scenes in total, split 4:1:1 train/val/test (default 1200: 800/200/200)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--image-size", type=int, default=160, help="square image side in pixels, even (default 160)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete cached copy exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.name not in GENERATORS:
        print(f"ispbench data generate: unknown dataset {args.name!r}; valid names: {', '.join(GENERATORS)}", file=sys.stderr)
        return 2
    if args.image_size < 32 or args.image_size % 2:
        print(f"ispbench data generate: --image-size must be even and >= 32, got {args.image_size}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        cfg = sd.config_for(args.scenes, seed=args.seed, image_size=args.image_size)
    except ValueError as err:
        print(f"ispbench data generate: {err}", file=sys.stderr)
        return 2
    target = sd.dataset_dir(cfg, args.root)
    cached = sd.is_complete(target) and not args.force
    start = time.perf_counter()
    path = sd.generate(cfg, root=args.root, force=args.force, verbose=True)
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{k} {v}" for k, v in cfg.counts.items())
    how = "re-used cached copy" if cached else "generated"
    print(f"{args.name} ({counts} scenes, {cfg.image_size}x{cfg.image_size}, seed {cfg.seed}): {how} in {elapsed:.1f} s")
    print(f"  {path}")
    print(f"  detector data: {path / 'yolo' / 'data.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
