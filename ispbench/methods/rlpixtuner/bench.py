"""``ispbench bench tune``: RLPixTuner's own time beside its pipeline renders (Table 2's policy overhead).

    ispbench bench tune                       # shipped policy, 720P and 1K, 5 alternating repeats
    ispbench bench tune --resolutions 720P,4K --repeats 9 --threads 2

Prints one row per resolution: the median wall time of ``tune`` (10 queries), of the same 10 pipeline
renders alone, their difference (the policy's own work: observation features, networks, the
environment's bookkeeping) and the overhead ratio (target: at most 0.2 at 720P). Measured side by
side in one process, alternating, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch

from ispbench.data.photos import RESOLUTIONS, full_resolution
from ispbench.methods.rlpixtuner.inference import Policy, tune
from ispbench.ops.finishing import finish
from ispbench.paths import WEIGHTS_DIR


def policy_overhead(policy: Policy, resolutions: dict[str, tuple[int, int]], *, steps: int = 10, repeats: int = 5,
                    photo: str = "coffee") -> pd.DataFrame:
    """The policy's own time beside its pipeline renders, per resolution (Table 2's "policy overhead").

    For each resolution, ``repeats`` alternating measurements of (a) ``tune(policy, image, goal, steps)``
    and (b) the same number of pipeline renders alone (``steps`` chained ``finish`` calls at that
    resolution, what any method pays for ``steps`` queries), in this process; medians.

    Returns:
        Rows ``resolution, height, width, tune_s, renders_s, policy_s`` (= tune - renders) and
        ``overhead`` (= policy_s / renders_s; the target is at most 0.2 at 720P).
    """
    g = torch.Generator().manual_seed(0)
    a_goal = (torch.rand(1, 9, generator=g) * 2 - 1) * 0.5
    edits = (torch.rand(steps, 1, 9, generator=g) * 2 - 1) * 0.1
    if repeats < 1 or steps < 1:
        raise ValueError(f"repeats and steps must be >= 1, got {repeats}, {steps}")
    tiny = torch.rand(1, 3, 16, 16)
    tune(policy, tiny, tiny, steps=1)  # untimed warm-up
    rows = []
    for res_name, (h, w) in resolutions.items():
        img = torch.from_numpy(full_resolution(photo, (h, w)).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            goal = finish(img, a_goal).clamp(0, 1)
        tune_s, renders_s = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tune(policy, img, goal, steps=steps)
            tune_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = img
                for a in edits:
                    out = finish(out, a).clamp(0, 1)
            renders_s.append(time.perf_counter() - t0)
        t, r = float(np.median(tune_s)), float(np.median(renders_s))
        rows.append({"resolution": res_name, "height": h, "width": w, "tune_s": t, "renders_s": r,
                     "policy_s": t - r, "overhead": (t - r) / r, "repeats": repeats})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """``ispbench bench tune [--resolutions 720P,1K] [--repeats 5] [--threads 1] [--checkpoint FILE]``."""
    parser = argparse.ArgumentParser(prog="ispbench bench tune", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--resolutions", default="720P,1K", help=f"comma-separated names from {list(RESOLUTIONS)}")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats per resolution (medians)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoint", default=str(WEIGHTS_DIR / "rlpixtuner_embedded_seed0.pt"), help="policy file")
    args = parser.parse_args(argv)
    names = [r.strip() for r in args.resolutions.split(",") if r.strip()]
    unknown = [r for r in names if r not in RESOLUTIONS]
    if unknown:
        parser.error(f"--resolutions: unknown {unknown}; valid: {list(RESOLUTIONS)}")
    torch.set_num_threads(args.threads)
    table = policy_overhead(Policy.load(args.checkpoint), {r: RESOLUTIONS[r] for r in names}, repeats=args.repeats)
    print(f"{args.checkpoint}; {args.threads} torch thread(s); medians of {args.repeats} alternating repeats")
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
