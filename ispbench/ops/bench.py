"""``ispbench bench ops``: time every ISP module against a memory-copy floor.

For each module and batch size the forward pass (no autograd) on random ``size x size`` images
is timed and printed beside:

* the paper's Table 4 time (ms; measured by the AdaptiveISP authors on a GTX 1660 Ti at 512 px),
* the time of a same-size ``x.clone()`` (the memory-bound floor of any op that reads and writes
  the image once), measured in the same rounds, and the ratio to it;
* straightforward ``unfold``-based implementations of denoise (NLM) and sharpen/blur
  (rows ``"denoise (unfold reference)"``, ``"sharpen_blur (unfold reference)"``);
* for batches above 1, the executor with every sample choosing a different module versus the
  authors' way of running all nine non-denoise modules on every sample;
* the non-finite input check every entry point runs (:func:`ispbench.ops.checks.require_finite`,
  one ``sum``), beside ``torch.isfinite(x).all()`` and the cheapest module (exposure) with the
  check skipped (:func:`ispbench.ops.checks.unchecked`): the module rows include the check.

Timing: one warm-up call, then ``--repeats`` rounds; in each round the op (and the copy) is run
``number`` times in a row (``number`` chosen so a round lasts about 10 ms) and the mean per call
is recorded; the table reports the median over rounds. CUDA timings synchronise before reading
the clock. The result file is ``results/<profile>/bench/ops.json`` (+ ``__ops.csv``).

Example:
    $ ispbench bench ops --size 512 --batches 1 8 --repeats 5 --device cpu --profile embedded
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ispbench.ops import modules as M
from ispbench.ops.checks import require_finite, unchecked
from ispbench.ops.color import luminance
from ispbench.ops.executor import apply_stage
from ispbench.results import write_results

# ------------------------------------------------------------------------- reference implementations


def nlm_unfold_reference(x: Tensor, strength: Tensor) -> Tensor:
    """Straightforward unfold-based NLM (same maths as ``apply("denoise", ...)``).

    All 121 neighbours of every pixel are materialised with ``F.unfold`` (121 x 4 x H x W
    values), one sample at a time to bound memory.
    """
    rs, rp = M.NLM_SEARCH // 2, M.NLM_PATCH // 2
    outs = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        _, _, h, w = xb.shape
        hh = 2.0 * (M.NLM_SIGMA_MAX * float(strength[b])) ** 2
        lum_p = F.pad(luminance(xb), (rs + rp,) * 4, mode="replicate")
        hp, wp = h + 2 * rp, w + 2 * rp
        neighbours = F.unfold(lum_p, M.NLM_SEARCH)  # (1, 121, hp * wp)
        center = lum_p[:, :, rs : rs + hp, rs : rs + wp].reshape(1, 1, -1)
        dist = F.avg_pool2d((neighbours - center).square().view(1, -1, hp, wp), M.NLM_PATCH, stride=1)
        weight = torch.exp(-dist / max(hh, 1e-12)).view(1, 1, -1, h * w)  # (1, 1, 121, HW)
        x_nb = F.unfold(F.pad(xb, (rs,) * 4, mode="replicate"), M.NLM_SEARCH).view(1, 3, -1, h * w)
        out = (x_nb * weight).sum(2) / weight.sum(2)
        outs.append(out.view(1, 3, h, w))
    return torch.cat(outs, 0)


def sharpen_unfold_reference(x: Tensor, p: Tensor) -> Tensor:
    """Straightforward unfold-based sharpen/blur: 3x3 neighbourhoods, weighted sum, lerp, clamp."""
    b, c, h, w = x.shape
    k = torch.tensor(M._SHARPEN_KERNEL, dtype=x.dtype, device=x.device).reshape(1, 1, 9, 1) / 13.0
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(b, c, 9, h * w)
    blur = (patches * k).sum(2).view(b, c, h, w)
    return torch.lerp(blur, x, p.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


# ------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _per_call(fn: Callable[[], object], number: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / number


def time_pair(fn: Callable[[], object], floor: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per call of ``fn`` and of ``floor``, measured in alternating rounds."""
    warm_fn = _per_call(fn, 1, device)
    warm_floor = _per_call(floor, 1, device)
    n_fn = max(1, min(100, math.ceil(0.01 / max(warm_fn, 1e-7))))
    n_floor = max(1, min(200, math.ceil(0.01 / max(warm_floor, 1e-7))))
    fn_times, floor_times = [], []
    for _ in range(repeats):
        floor_times.append(_per_call(floor, n_floor, device))
        fn_times.append(_per_call(fn, n_fn, device))
    return statistics.median(fn_times), statistics.median(floor_times)


def _random_params(name: str, batch: int, device: torch.device, gen: torch.Generator) -> Tensor:
    raw = 0.5 * torch.randn(batch, M.n_params(name), generator=gen)
    return M.squash(name, raw).to(device)


def run(size: int, batches: list[int], repeats: int, device: str, references: bool = True) -> list[dict]:
    """Time everything; returns the table's rows (see the module docstring)."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    rows: list[dict] = []

    def add(module: str, batch: int, fn, floor, paper_ms=None):
        t, t_floor = time_pair(fn, floor, repeats, dev)
        rows.append({
            "module": module,
            "batch": batch,
            "size": size,
            "device": device,
            "median_ms": round(t * 1e3, 4),
            "copy_floor_ms": round(t_floor * 1e3, 4),
            "ratio_to_floor": round(t / t_floor, 2),
            "paper_ms_table4": paper_ms,
        })
        print(f"  {module:<34} batch {batch}: {t * 1e3:9.3f} ms  (copy {t_floor * 1e3:7.3f} ms, x{t / t_floor:6.1f})", flush=True)

    with torch.no_grad():
        for batch in batches:
            x = torch.rand(batch, 3, size, size, generator=gen).to(dev)
            floor = x.clone
            for name in M.MODULE_NAMES:
                p = _random_params(name, batch, dev, gen)
                add(name, batch, lambda n=name, p=p, x=x: M.apply(n, x, p), floor, M.MODULE_COST_MS[name])
            add("finite check: require_finite (sum)", batch, lambda x=x: require_finite("image", x), floor)
            add("finite check: torch.isfinite(x).all()", batch, lambda x=x: bool(torch.isfinite(x).all()), floor)
            p_exp = _random_params("exposure", batch, dev, gen)

            def exposure_unchecked(x=x, p=p_exp):
                with unchecked():
                    return M.apply("exposure", x, p)

            add("exposure, check skipped (unchecked())", batch, exposure_unchecked, floor)
            if references:
                s = torch.full((batch,), 0.5, device=dev)
                add("denoise (unfold reference)", batch, lambda x=x, s=s: nlm_unfold_reference(x, s), floor)
                q = _random_params("sharpen_blur", batch, dev, gen)
                add("sharpen_blur (unfold reference)", batch, lambda x=x, q=q: sharpen_unfold_reference(x, q), floor)
            if batch > 1:
                pool = [i for i, n in enumerate(M.MODULE_NAMES) if n != "denoise"]
                idx = torch.tensor([pool[b % len(pool)] for b in range(batch)], device=dev)
                params = torch.cat([
                    torch.stack([F.pad(_random_params(M.MODULE_NAMES[i], 1, dev, gen)[0], (0, M.MAX_PARAMS - M.n_params(M.MODULE_NAMES[i]))) for i in idx.tolist()])
                ])
                add("executor: one module per sample", batch, lambda x=x, idx=idx, params=params: apply_stage(x, idx, params), floor)

                def all_modules(x=x, idx=idx, params=params, pool=pool, batch=batch):  # the authors' code: all modules, keep one
                    outs = [M.apply(M.MODULE_NAMES[i], x, params[:, : M.n_params(M.MODULE_NAMES[i])]) for i in pool]
                    onehot = F.one_hot(idx, len(M.MODULE_NAMES))[:, pool].to(x.dtype).T.reshape(len(pool), batch, 1, 1, 1)
                    return (torch.stack(outs) * onehot).sum(0)

                add("all 9 non-denoise modules per sample (one-hot)", batch, all_modules, floor)
    return rows


def _device_words(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ispbench bench ops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image height and width (default 512, as Table 4)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per row; the median is reported")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--profile", default="embedded", help="results go to results/<profile>/bench/ops.json")
    parser.add_argument("--no-references", action="store_true", help="skip the slow unfold reference rows")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.size < 8 or args.repeats < 1 or any(b < 1 for b in args.batches):
        parser.error("--size must be >= 8, --repeats >= 1 and batches >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"ispbench bench ops: {args.size}x{args.size}, batches {args.batches}, device {args.device} ({_device_words(args.device)})")
    rows = run(args.size, args.batches, args.repeats, args.device, references=not args.no_references)

    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    path = write_results(
        "bench/ops",
        profile=args.profile,
        parameters={**vars(args), "threads": torch.get_num_threads(), "timing": "forward, no autograd; median of rounds"},
        data=f"random {args.size}x{args.size} tensors",
        tables={"ops": df},
        metrics={"paper_table4_hardware": "GTX 1660 Ti, 512x512 (AdaptiveISP Table 4)"},
        device=_device_words(args.device),
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
