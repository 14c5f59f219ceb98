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

Denoise (non-local means, by far the slowest module) is also timed on its own, forward and
forward + backward (gradients for the image and the strength), for the implementation in use
(``ispbench.ops.modules._nlm``) beside the former one it replaced
(``ispbench.ops.modules._nlm_reference``, same function), in alternating rounds, with the
speed-up (table ``denoise``; cases ``--denoise-cases``, default 160 px batch 1 and 8, 512 px
batch 2).

``--step`` adds an AdaptiveISP-style training step at ``--step-size`` (160) px, batch
``--step-batch`` (8), table ``step``: the ISP part (only the chosen module per sample, as the
trainer runs it; input image without gradient, parameters with) forward + backward, with the
modules chosen (a) uniformly among the 9 modules other than denoise, (b) uniformly among all 10,
(c) all denoise (worst case), each with today's and the former denoise, and (c) with a smaller
search window (:func:`ispbench.ops.modules.nlm_search_window`); the frozen embedded detector's
per-image loss forward + backward to the image; and a whole step (policy and value nets, ISP,
detector, backward, two Adam steps) for (a), (b), (c). "Uniform" is exact: one round runs a
cycle of steps in which every module is chosen equally often (9 or 10 steps of 8 samples), and
the reported time is the median over rounds of the mean step of the cycle. Ratios are to (a).

Timing: one warm-up call, then ``--repeats`` rounds; in each round the op (and the copy) is run
``number`` times in a row (``number`` chosen so a round lasts about 10 ms) and the mean per call
is recorded; the table reports the median over rounds. CUDA timings synchronise before reading
the clock. The result file is ``results/<profile>/bench/ops.json`` (+ ``__ops.csv``).

Example:
    $ ispbench bench ops --size 512 --batches 1 8 --repeats 5 --device cpu --profile embedded
    $ ispbench bench ops --threads 1 --step --no-references --denoise-cases 160x8   # the training-step table
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import statistics
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ispbench.methods.adaptiveisp import agent
from ispbench.methods.adaptiveisp.networks import PolicyNet, ValueNet
from ispbench.ops import modules as M
from ispbench.ops.checks import require_finite, unchecked
from ispbench.ops.color import luminance
from ispbench.ops.executor import apply_stage
from ispbench.results import write_results
from ispbench.tasks.detector import DEFAULT_WEIGHTS, FrozenDetector

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


def time_side_by_side(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                      round_s: float = 0.01) -> dict[str, float]:
    """Median seconds per call of each of ``fns``, measured in the same alternating rounds.

    One warm-up call each; then ``repeats`` rounds, each running every function ``number`` times
    in a row (``number`` chosen so that its share of a round lasts about ``round_s``, at least 1).
    """
    warm = {k: _per_call(f, 1, device) for k, f in fns.items()}
    number = {k: max(1, min(100, math.ceil(round_s / max(t, 1e-7)))) for k, t in warm.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(_per_call(f, number[k], device))
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------------- denoise: today vs former


def parse_case(text: str) -> tuple[int, int]:
    """``"160x8"`` -> ``(160, 8)`` (size in px, batch)."""
    try:
        size, batch = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a denoise case is SIZExBATCH such as 160x8, got {text!r}") from None
    if size < 1 or batch < 1:
        raise ValueError(f"a denoise case needs size and batch >= 1, got {text!r}")
    return size, batch


def denoise_rows(cases: list[tuple[int, int]], repeats: int, device: str, references: bool = True) -> list[dict]:
    """Denoise forward and forward + backward, today's ``_nlm`` beside
    the former ``_nlm_reference`` (same function), side by side.

    Random images, strengths in [0.3, 1]; the backward pass computes the gradients of
    ``sum(out * G)`` (``G`` fixed random) for the image and the strength.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(1)
    impls = {"today (_nlm)": M._nlm, "former (_nlm_reference)": M._nlm_reference}
    if not references:
        impls.pop("former (_nlm_reference)")
    rows: list[dict] = []
    for size, batch in cases:
        x = torch.rand(batch, 3, size, size, generator=gen).to(dev)
        strength = (0.3 + 0.7 * torch.rand(batch, generator=gen)).to(dev)
        upstream = torch.randn(batch, 3, size, size, generator=gen).to(dev)
        xg, sg = x.clone().requires_grad_(True), strength.clone().requires_grad_(True)
        fns: dict[str, Callable[[], object]] = {}
        for name, fn in impls.items():
            def forward(fn=fn, x=x, strength=strength):
                with torch.no_grad():
                    return fn(x, strength)

            def forward_backward(fn=fn, xg=xg, sg=sg, upstream=upstream):
                return torch.autograd.grad((fn(xg, sg) * upstream).sum(), (xg, sg))

            fns[f"{name}|forward"] = forward
            fns[f"{name}|forward+backward"] = forward_backward
        medians = time_side_by_side(fns, repeats, dev, round_s=0.05)
        for key, t in medians.items():
            name, which = key.split("|")
            ref = medians.get(f"former (_nlm_reference)|{which}")
            rows.append({
                "implementation": name, "pass": which, "size": size, "batch": batch, "device": device,
                "median_ms": round(t * 1e3, 3), "ms_per_image": round(t * 1e3 / batch, 3),
                "speedup_vs_former": round(ref / t, 2) if ref else None,
            })
            print(f"  denoise {name:<24} {which:<16} {size} px batch {batch}: {t * 1e3:10.2f} ms"
                  + (f"  (x{ref / t:5.1f} vs former)" if ref else ""), flush=True)
    return rows


# ------------------------------------------------------------------------- AdaptiveISP-style training step


@contextlib.contextmanager
def _denoise_implementation(nlm: Callable[[Tensor, Tensor], Tensor] | None) -> Iterator[None]:
    """Inside, ``apply("denoise")`` runs ``nlm(x, strength)`` (``None``: unchanged)."""
    if nlm is None:
        yield
        return
    original = M.KERNELS["denoise"]

    def kernel(x: Tensor, p: Tensor, variant: str, clamp: bool) -> Tensor:
        strength = p[:, 0]
        return torch.where(strength.view(-1, 1, 1, 1) > 0, nlm(x, strength), x)

    M.KERNELS["denoise"] = kernel
    try:
        yield
    finally:
        M.KERNELS["denoise"] = original


def _balanced_cycle(pool: list[int], batch: int, gen: torch.Generator) -> list[Tensor]:
    """``len(pool)`` steps of ``batch`` module indices in which every module of ``pool`` occurs ``batch`` times."""
    slots = torch.tensor(pool).repeat_interleave(batch)
    slots = slots[torch.randperm(len(slots), generator=gen)]
    return list(slots.view(len(pool), batch))


def step_rows(size: int, batch: int, repeats: int, device: str, windows: list[int]) -> list[dict]:
    """The training-step table (see the module docstring): ISP part, detector, whole step."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(2)
    names = list(M.MODULE_NAMES)
    denoise = names.index("denoise")
    pools = {"(a) 9 modules, no denoise": [i for i in range(len(names)) if i != denoise],
             "(b) all 10 modules": list(range(len(names))),
             "(c) all denoise": [denoise]}
    x = (0.05 + 0.5 * torch.rand(batch, 3, size, size, generator=gen)).to(dev)
    raw = {n: (0.5 * torch.randn(batch, M.n_params(n), generator=gen)).to(dev) for n in names}
    upstream = torch.randn(batch, 3, size, size, generator=gen).to(dev)
    cycles = {k: _balanced_cycle(pool, batch, gen) for k, pool in pools.items()}

    def isp_cycle(cycle: list[Tensor], nlm=None, window: int = M.NLM_SEARCH) -> None:
        with _denoise_implementation(nlm), M.nlm_search_window(window):
            for idx in cycle:
                leaves = {n: r.clone().requires_grad_(True) for n, r in raw.items()}
                params = {n: M.squash(n, v) for n, v in leaves.items()}
                out = apply_stage(x, idx.to(dev), params, clamp=False)
                torch.autograd.grad((out * upstream).sum(), list(leaves.values()), allow_unused=True)

    fns: dict[str, Callable[[], object]] = {}
    steps: dict[str, int] = {}

    def register(part: str, run: Callable[..., None]) -> None:
        """Rows of one part: each cycle today (and with the former Denoise), and all-Denoise per window."""
        for label, cycle in cycles.items():
            fns[f"{part}|{label}|today"] = lambda c=cycle: run(c)
            steps[f"{part}|{label}|today"] = len(cycle)
            if "(a)" not in label:
                fns[f"{part}|{label}|former"] = lambda c=cycle: run(c, M._nlm_reference)
                steps[f"{part}|{label}|former"] = len(cycle)
        for w in windows:
            key = f"{part}|(c) all denoise|today, nlm_search_window({w})"
            fns[key] = lambda w=w: run(cycles["(c) all denoise"], window=w)
            steps[key] = 1

    register("ISP part", isp_cycle)

    detector = None
    if DEFAULT_WEIGHTS.is_file():
        detector = FrozenDetector(device=dev)
        targets = torch.tensor([[b, b % max(detector.nc, 1), 0.3 + 0.05 * (b % 5), 0.5, 0.3, 0.4] for b in range(batch)],
                               dtype=torch.float32, device=dev)
        policy, value = PolicyNet(names).to(dev), ValueNet(len(names)).to(dev)
        policy_opt = torch.optim.Adam(policy.parameters(), lr=1e-5)
        value_opt = torch.optim.Adam(value.parameters(), lr=1e-5)
        used = torch.zeros(batch, len(names), device=dev)
        stage = torch.zeros(batch, dtype=torch.long, device=dev)

        def detector_step() -> None:
            image = x.clone().requires_grad_(True)
            torch.autograd.grad(detector.per_image_loss(image, targets).sum(), image)

        def whole_cycle(cycle: list[Tensor], nlm=None, window: int = M.NLM_SEARCH) -> None:  # one trainer iteration per entry
            with _denoise_implementation(nlm), M.nlm_search_window(window):
                _whole_steps(cycle)

        def _whole_steps(cycle: list[Tensor]) -> None:
            for idx in cycle:
                logits, raw_out = policy(agent.policy_state(x, used, stage, 5))
                x_raw = apply_stage(x, idx.to(dev), policy.module_params(raw_out), clamp=False)
                x_next = x_raw.clamp(0, 1)
                loss_out = detector.per_image_loss(x_next, targets)
                for p in value.parameters():
                    p.requires_grad_(False)
                v_next = value(agent.value_state(x_next, agent.mark_used(used, idx.to(dev)), stage + 1, 5))
                for p in value.parameters():
                    p.requires_grad_(True)
                v = value(agent.value_state(x, used, stage, 5))
                q = -loss_out + v_next
                logp = torch.log_softmax(logits, 1).gather(1, idx.to(dev).view(-1, 1)).squeeze(1)
                total = -((q - v).detach() * logp).mean() - q.mean() + F.mse_loss(v, q.detach())
                policy_opt.zero_grad(set_to_none=True)
                value_opt.zero_grad(set_to_none=True)
                total.backward()
                policy_opt.step()
                value_opt.step()

        fns["detector|per-image loss, forward+backward to the image|"] = detector_step
        steps["detector|per-image loss, forward+backward to the image|"] = 1
        register("whole step", whole_cycle)
    else:
        print(f"  step: the embedded detector {DEFAULT_WEIGHTS} is missing (`ispbench train detector`): "
              "detector and whole-step rows skipped", flush=True)

    medians = time_side_by_side(fns, repeats, dev, round_s=0.0)
    per_step = {k: t / steps[k] for k, t in medians.items()}
    rows: list[dict] = []
    for key, t in per_step.items():
        part, label, impl = key.split("|")
        base_key = f"{part}|(a) 9 modules, no denoise|today"
        base = per_step.get(base_key) if part in ("ISP part", "whole step") else None
        rows.append({
            "part": part, "modules": label, "denoise": impl, "size": size, "batch": batch, "device": device,
            "median_ms_per_step": round(t * 1e3, 2),
            "ratio_to_a": round(t / base, 3) if base else None,
        })
        print(f"  step {part:<10} {label:<28} {impl:<32} {t * 1e3:9.1f} ms/step"
              + (f"  x{t / base:5.2f} of (a)" if base else ""), flush=True)
    return rows


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
    parser.add_argument("--denoise-cases", nargs="*", default=["160x1", "160x8", "512x2"], metavar="SIZExBATCH",
                        help="denoise today vs former, forward and forward+backward (default 160x1 160x8 512x2; none: skip)")
    parser.add_argument("--step", action="store_true", help="also time an AdaptiveISP-style training step (table step)")
    parser.add_argument("--step-size", type=int, default=160, help="image size of the step (default 160, the trainer's)")
    parser.add_argument("--step-batch", type=int, default=8, help="batch of the step (default 8, the paper's)")
    parser.add_argument("--step-windows", type=int, nargs="*", default=None,
                        help="search windows of the extra all-denoise rows (default 5 and scaled_search_window(step size))")
    args = parser.parse_args(argv)
    if args.size < 8 or args.repeats < 1 or any(b < 1 for b in args.batches):
        parser.error("--size must be >= 8, --repeats >= 1 and batches >= 1")
    try:
        cases = [parse_case(c) for c in args.denoise_cases]
    except ValueError as err:
        parser.error(f"--denoise-cases: {err}")
    windows = args.step_windows if args.step_windows is not None else sorted({5, M.scaled_search_window(args.step_size)})
    if any(w < 1 or w % 2 == 0 for w in windows):
        parser.error(f"--step-windows must be odd and >= 1, got {windows}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"ispbench bench ops: {args.size}x{args.size}, batches {args.batches}, device {args.device} ({_device_words(args.device)})")
    rows = run(args.size, args.batches, args.repeats, args.device, references=not args.no_references)
    print("denoise, today vs former (forward; forward + backward for image and strength):", flush=True)
    dn_rows = denoise_rows(cases, args.repeats, args.device, references=not args.no_references)
    st_rows = []
    if args.step:
        print(f"training step, {args.step_size} px, batch {args.step_batch}:", flush=True)
        st_rows = step_rows(args.step_size, args.step_batch, args.repeats, args.device, windows)

    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    tables = {"ops": df}
    for name, part in (("denoise", dn_rows), ("step", st_rows)):
        if part:
            tables[name] = pd.DataFrame(part)
            print(tables[name].to_string(index=False))
    path = write_results(
        "bench/ops",
        profile=args.profile,
        parameters={**vars(args), "threads": torch.get_num_threads(),
                    "timing": "ops: forward, no autograd; median of rounds. denoise/step: see the module docstring"},
        data=f"random {args.size}x{args.size} tensors",
        tables=tables,
        metrics={"paper_table4_hardware": "GTX 1660 Ti, 512x512 (AdaptiveISP Table 4)"},
        device=_device_words(args.device),
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
