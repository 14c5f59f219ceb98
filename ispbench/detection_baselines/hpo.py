"""Hyperparameter Optimization baseline (Tseng et al., SIGGRAPH 2019) on a fixed 10-stage pipeline.

AdaptiveISP compares against static hand-crafted pipelines whose parameters are tuned for the
detector (Table 1 "Hyperparameter Optimization", Table 5: 10 stages). Tseng et al. optimise a
black-box ISP's hyper-parameters through a differentiable *proxy*; our modules are differentiable
already, so the proxy is the ISP itself: one parameter vector, **the same for every image**,
optimised with Adam by back-propagating the frozen detector's loss through the pipeline.

Fixed pipeline (:data:`FIXED_PIPELINE`, all ten modules of the pool in a conventional ISP order,
Fig. 9 RGB domain): exposure -> white_balance -> ccm -> denoise -> sharpen_blur -> gamma -> tone
-> contrast -> saturation -> desaturation. Parameters start at each module's identity
(:func:`ispbench.ops.identity_raw`) and are kept in range with
:func:`ispbench.ops.squash`. ``--pipeline`` selects a different order or subset.

This file also holds the trainer shared with :mod:`ispbench.detection_baselines.attention`
(same data, detector, loss and checkpointing; only the parameter model differs).

    python -m ispbench.detection_baselines.hpo --iterations 300 --lr 0.05 --export ispbench/weights/hpo_embedded.pt
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ispbench import atomic
from ispbench.paths import WEIGHTS_DIR
from ispbench.seeding import seed_everything

#: The static pipeline of both baselines (10 stages, paper Table 5).
FIXED_PIPELINE: tuple[str, ...] = (
    "exposure", "white_balance", "ccm", "denoise", "sharpen_blur",
    "gamma", "tone", "contrast", "saturation", "desaturation",
)


def _ops():
    from ispbench import ops

    return ops


def render_pipeline(x: torch.Tensor, pipeline: Sequence[str], params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply ``pipeline`` in order with per-image ``params[name]`` (B, n) in range; output clipped to [0, 1]."""
    ops = _ops()
    for name in pipeline:
        x = ops.apply(name, x, params[name], clamp=True)
    return x.clamp(0, 1)


class HPOISP(nn.Module):
    """Fixed pipeline with one learned parameter vector shared by all images.

    ``forward(linear (B, 3, H, W)) -> (B, 3, H, W)``; :meth:`params` gives the in-range values.
    """

    method = "hpo"

    def __init__(self, pipeline: Sequence[str] = FIXED_PIPELINE) -> None:
        super().__init__()
        from ispbench.ops import identity_raw

        ops = _ops()
        self.pipeline = list(pipeline)
        for name in self.pipeline:
            if name not in ops.MODULE_NAMES:
                raise ValueError(f"HPOISP: unknown module {name!r} in pipeline; valid: {ops.MODULE_NAMES}")
        self.raw = nn.ParameterDict({name: nn.Parameter(identity_raw(name, ops.n_params(name))) for name in self.pipeline})

    def config(self) -> dict:
        return {"method": self.method, "pipeline": self.pipeline}

    def params(self, batch: int = 1) -> dict[str, torch.Tensor]:
        ops = _ops()
        return {name: ops.squash(name, raw.view(1, -1)).expand(batch, -1) for name, raw in self.raw.items()}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        return render_pipeline(linear, self.pipeline, self.params(linear.shape[0]))


# ----------------------------------------------------------------------------- shared trainer
@dataclass
class BaselineArgs:
    """Arguments of the fixed-pipeline baselines' trainer (``--field-name value``)."""

    method: str = "hpo"
    """``hpo`` (one parameter set for all images) or ``attention`` (per-image parameters from a CNN)"""
    seed: int = 0
    """seed of every random number generator"""
    device: str = "cpu"
    """torch device"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    data_root: str = ""
    """root of the embedded detection data (empty = the package default), or of a prepared real dataset
    (with ``dataset``)"""
    dataset: str = ""
    """``""`` / ``embedded``: the embedded synthetic set; ``lod``, ``oneplus``, ``coco_raw``: that prepared real
    dataset under ``data_root`` (its ``train`` split, COCO-80 labels: use a COCO detector)"""
    light: str = "low"
    """``low`` or ``normal``: which embedded train split"""
    n_train: int = 0
    """use only the first ``n_train`` training images (0 = all)"""
    detector_weights: str = ""
    """frozen detector checkpoint (empty = ``ispbench/weights/embedded_yolo.pt``)"""
    detector_yaml: str = ""
    """build a randomly initialised detector from this ultralytics model YAML instead (tests, smoke)"""
    detector_nc: int = 0
    """classes of the YAML detector (0 = the embedded data's class count)"""
    imgsz: int = 160
    """side of the square images the ISP processes and the detector sees (160 = the embedded detector's)"""
    batch_size: int = 8
    """images per iteration"""
    iterations: int = 300
    """optimisation steps"""
    lr: float = 0.05
    """Adam learning rate (HPO: ~0.05 on the raw parameters; attention: ~1e-3)"""
    lr_decay: bool = True
    """multiply the learning rate by 0.1 per third of training"""
    grad_clip: float = 1.0
    """gradient-norm clipping (0 = off)"""
    pipeline: str = ",".join(FIXED_PIPELINE)
    """comma-separated module order of the fixed pipeline"""
    out_dir: str = ""
    """run folder; empty = ``runs/<method>/seed<seed>``"""
    checkpoint_every: int = 100
    """write ``last.pt`` every this many iterations"""
    log_every: int = 10
    """metrics row every this many iterations"""
    resume: bool = True
    """continue from ``out_dir/last.pt`` when it exists"""
    export: str = ""
    """at the end write the model (weights + config) here, e.g. ``ispbench/weights/hpo_embedded.pt``"""
    progress_bar: bool = True
    """tqdm progress bar"""


def parse_baseline_args(argv: list[str] | None, method: str) -> BaselineArgs:
    """Command line -> :class:`BaselineArgs` with ``method`` as the default method."""
    parser = argparse.ArgumentParser(prog=f"python -m ispbench.detection_baselines.{method}")
    for f in dataclasses.fields(BaselineArgs):
        flag = "--" + f.name.replace("_", "-")
        default = method if f.name == "method" else f.default
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        else:
            typ = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, dest=f.name, type=typ, default=default)
    return BaselineArgs(**vars(parser.parse_args(argv)))


def build_model(method: str, pipeline: Sequence[str], **kwargs) -> nn.Module:
    """``hpo`` -> :class:`HPOISP`, ``attention`` -> :class:`~ispbench.detection_baselines.attention.AttentionISP`."""
    if method == "hpo":
        return HPOISP(pipeline)
    if method == "attention":
        from ispbench.detection_baselines.attention import AttentionISP

        return AttentionISP(pipeline, **kwargs)
    raise ValueError(f"method must be 'hpo' or 'attention', got {method!r}")


def load_baseline(path: str | Path, device: str = "cpu") -> nn.Module:
    """Load an exported baseline (``--export``) or a training checkpoint; eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"baseline weights {path} not found; train them with "
            f"`python -m ispbench.detection_baselines.hpo --method <hpo|attention> --export {path}`"
        )
    payload = torch.load(path, map_location="cpu", weights_only=False)
    config = payload["config"]
    model = build_model(config["method"], config["pipeline"], **config.get("kwargs", {}))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()


def default_weights(method: str) -> Path:
    """Shipped checkpoint of a baseline: ``ispbench/weights/<method>_embedded.pt``."""
    return WEIGHTS_DIR / f"{method}_embedded.pt"


def make_isp_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``linear -> output`` under ``no_grad`` and eval mode, for ``evaluate_isp``."""
    model.eval()

    def isp(linear: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(linear.to(next(iter(model.parameters())).device))

    return isp


def _write_csv(path: Path, rows: list[dict]) -> None:
    if rows:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(path, buf.getvalue())


def train_baseline(args: BaselineArgs) -> dict:
    """Optimise the baseline through the frozen detector (mean per-image detector loss)."""
    from ispbench.data.synthetic_detection import CLASS_NAMES
    from ispbench.methods.adaptiveisp.train import Args as _A, build_detector, learning_rate, load_sample, make_targets, train_dataset

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir or f"runs/{args.method}/seed{args.seed}")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = seed_everything(args.seed)
    dataset = train_dataset(args)
    n = len(dataset)
    det_args = _A(detector_weights=args.detector_weights, detector_yaml=args.detector_yaml,
                  detector_nc=args.detector_nc, imgsz=args.imgsz, device=args.device)
    real = bool(args.dataset) and args.dataset != "embedded"
    detector = build_detector(det_args, 80 if real else len(CLASS_NAMES))
    pipeline = [p.strip() for p in args.pipeline.split(",") if p.strip()]
    model = build_model(args.method, pipeline).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start, rows, order, cursor, elapsed_before = 0, [], torch.randperm(n, generator=gen), 0, 0.0
    ckpt_path = out_dir / "last.pt"
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, rows, order, cursor, elapsed_before = ck["iteration"], ck["metrics"], ck["order"], ck["cursor"], ck["elapsed_s"]
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        gen.set_state(ck["rng"]["generator"])
        print(f"resumed from {ckpt_path} at iteration {start}", file=sys.stderr)
    shim = _A(lr=args.lr, lr_decay=args.lr_decay, iterations=args.iterations)
    bar = None
    if args.progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.iterations, initial=start, desc=args.method, dynamic_ncols=True)
    t0 = time.perf_counter()
    acc, acc_n = 0.0, 0
    model.train()
    for it in range(start, args.iterations):
        for group in opt.param_groups:
            group["lr"] = learning_rate(shim, it)
        idx = []
        for _ in range(args.batch_size):
            if cursor >= n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx.append(int(order[cursor]))
            cursor += 1
        samples = [load_sample(dataset, i, args.imgsz) for i in idx]
        x = torch.stack([s[0] for s in samples]).to(args.device)
        targets = make_targets([s[1] for s in samples]).to(args.device)
        loss = detector.per_image_loss(model(x), targets).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        acc += loss.item()
        acc_n += 1
        if (it + 1) % args.log_every == 0 or it + 1 == args.iterations:
            rows.append({"iteration": it + 1, "lr": opt.param_groups[0]["lr"], "loss": acc / acc_n,
                         "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 3)})
            _write_csv(out_dir / "metrics.csv", rows)
            acc, acc_n = 0.0, 0
            if bar is not None:
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
        if bar is not None:
            bar.update(1)
        if (it + 1) % args.checkpoint_every == 0 or it + 1 == args.iterations:
            atomic.torch_save({
                "iteration": it + 1, "args": asdict(args), "model": model.state_dict(), "opt": opt.state_dict(),
                "order": order, "cursor": cursor, "metrics": rows, "elapsed_s": elapsed_before + time.perf_counter() - t0,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "generator": gen.get_state()},
            }, ckpt_path)
    if bar is not None:
        bar.close()
    elapsed = elapsed_before + time.perf_counter() - t0
    summary = {"method": args.method, "iterations": args.iterations, "elapsed_s": round(elapsed, 1), "args": asdict(args),
               "machine": f"{platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}",
               "last_metrics": rows[-1] if rows else {}}
    atomic.write_json(out_dir / "summary.json", summary)
    if args.export:
        atomic.torch_save({"format": "ispbench.baseline/1", "config": model.config(), "state_dict": model.state_dict(),
                           "metadata": {"train_args": asdict(args), "elapsed_s": round(elapsed, 1)}}, args.export)
    model.eval()
    return {"model": model, "metrics": rows, "summary": summary, "out_dir": out_dir}


def main(argv: list[str] | None = None) -> int:
    """``python -m ispbench.detection_baselines.hpo [--field value ...]``."""
    result = train_baseline(parse_baseline_args(argv, "hpo"))
    print(json.dumps(result["summary"]["last_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
