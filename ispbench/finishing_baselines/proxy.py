"""First-order proxy baselines: learn a differentiable imitation of the pipeline, then tune the
parameters by gradient descent through it (Tseng et al. 2019 "monolithic", Tseng et al. 2022
"cascaded"; RLPixTuner Appendix C.3).

* :class:`MonolithicProxy`: one small UNet ``(image, 9 parameter planes) -> image`` (the
  parameters are broadcast as extra input planes and re-injected at the bottleneck).
* :class:`CascadedProxy`: one small proxy per pipeline module in the pipeline's order (exposure,
  colour balance, saturation, contrast, tone = highlights + shadows, texture); pointwise modules are
  three 1x1 convs, the area-wise texture module five 3x3 convs (as in [29]). Each module proxy is
  trained on that module alone: the pipeline with only that module's sliders non-zero (zero
  sliders are the identity), on inputs that went through random earlier modules.
* :func:`proxy_search`: 100 Adam iterations on the actions (clamped to [-1, 1]) minimising the
  MSE between ``proxy(input, a)`` and the goal; the found actions are then rendered once by the
  real pipeline (the only query).

Training follows the paper's recipe in spirit (Adam 1e-4 there, batch 512, 100 epochs on 1,000
FiveK images x 100 samples per parameter); here it is CPU-small: 48x48 random crops of the
``train`` embedded photos, uniform random actions, Adam 2e-3, a few hundred iterations. Trained
proxies are cached under ``ispbench.paths.cache_dir()/proxies`` (or loaded from
``ispbench/weights/finishing_proxy_<kind>.pt`` when shipped). Train one from the command line::

    ispbench train proxy --kind cascaded --iterations 600 --out ispbench/weights/finishing_proxy_cascaded.pt
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ispbench import atomic
from ispbench.data.photos import _limit_side, load_photo, photo_names, random_crop
from ispbench.ops.finishing import finish
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.training.checkpoint import safe_load
from ispbench.training.config import parse
from ispbench.training.run import finish_run, progress_bar

N_PARAMS = 9
#: (module name, slider indices) in pipeline order.
MODULES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("exposure", (0,)), ("white_balance", (1, 2, 3)), ("saturation", (4,)), ("contrast", (5,)),
    ("tone", (6, 7)), ("texture", (8,)),
)


class MonolithicProxy(nn.Module):
    """Small 2-level UNet conditioned on the 9 actions via extra input planes. ``(B,3,H,W),(B,9) -> (B,3,H,W)``."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = width
        c = 3 + N_PARAMS
        self.enc1 = nn.Sequential(nn.Conv2d(c, w, 3, 1, 1), nn.ReLU(True), nn.Conv2d(w, w, 3, 1, 1), nn.ReLU(True))
        self.enc2 = nn.Sequential(nn.Conv2d(w + N_PARAMS, 2 * w, 3, 2, 1), nn.ReLU(True), nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU(True))
        self.dec1 = nn.Sequential(nn.Conv2d(3 * w, w, 3, 1, 1), nn.ReLU(True), nn.Conv2d(w, 3, 3, 1, 1))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        planes = a[:, :, None, None].expand(-1, -1, h, w)
        e1 = self.enc1(torch.cat([x, planes], 1))
        e2 = self.enc2(torch.cat([e1, planes], 1))
        up = F.interpolate(e2, size=(h, w), mode="bilinear", align_corners=False)
        return (x + self.dec1(torch.cat([e1, up], 1))).clamp(0, 1)


class _ModuleProxy(nn.Module):
    """One module's proxy: pointwise (three 1x1 convs) or area-wise (five 3x3 convs); residual."""

    def __init__(self, n_params: int, area: bool, width: int = 32) -> None:
        super().__init__()
        k, p, n = (3, 1, 5) if area else (1, 0, 3)
        layers: list[nn.Module] = []
        c = 3 + n_params
        for i in range(n):
            last = i == n - 1
            layers.append(nn.Conv2d(c, 3 if last else width, k, 1, p))
            if not last:
                layers.append(nn.ReLU(True))
            c = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        planes = a[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return (x + self.net(torch.cat([x, planes], 1))).clamp(0, 1)


class CascadedProxy(nn.Module):
    """Chain of per-module proxies in pipeline order. ``(B,3,H,W),(B,9) -> (B,3,H,W)``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stages = nn.ModuleList(_ModuleProxy(len(idx), name == "texture", width) for name, idx in MODULES)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        for stage, (_, idx) in zip(self.stages, MODULES, strict=True):
            x = stage(x, a[:, list(idx)])
        return x


def _pipeline(pipeline: Callable | None) -> Callable:
    return finish if pipeline is None else pipeline


def _train_batch(rng: np.random.Generator, images: list[np.ndarray], n: int, size: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(random_crop(images[int(rng.integers(len(images)))], size, rng).transpose(2, 0, 1).copy())
                        for _ in range(n)])


@dataclass
class ProxyTrainConfig:
    """CPU-small proxy training (paper: Adam 1e-4, batch 512, 100 epochs)."""

    iterations: int = 400
    """Adam steps (cosine learning-rate schedule over them)"""
    batch_size: int = 16
    """random crops per step"""
    size: int = 48
    """side of the training crops"""
    lr: float = 2e-3
    """initial Adam learning rate"""
    seed: int = 0
    """seed of torch (initialisation) and of the crop / action generator"""


def train_proxy(kind: str, cfg: ProxyTrainConfig | None = None, pipeline: Callable | None = None,
                progress: bool = False) -> tuple[nn.Module, dict]:
    """Train a ``"monolithic"`` or ``"cascaded"`` proxy on the ``train`` embedded photos.

    Returns the proxy and a metrics dict (final training MSE, wall time).
    """
    cfg = cfg or ProxyTrainConfig()
    if kind not in {"monolithic", "cascaded"}:
        raise ValueError(f"kind must be 'monolithic' or 'cascaded', got {kind!r}")
    pipe = _pipeline(pipeline)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images = [_limit_side(load_photo(n), 256) for n in photo_names("train")]
    model = MonolithicProxy() if kind == "monolithic" else CascadedProxy()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.iterations)
    t0, losses = time.perf_counter(), []
    bar = progress_bar(cfg.iterations, desc=f"proxy[{kind}]", enabled=progress)
    for _ in range(cfg.iterations):
        x = _train_batch(rng, images, cfg.batch_size, cfg.size)
        a = torch.from_numpy(rng.uniform(-1, 1, (cfg.batch_size, N_PARAMS)).astype(np.float32))
        if kind == "monolithic":
            with torch.no_grad():
                y = pipe(x, a).clamp(0, 1)
            loss = F.mse_loss(model(x, a), y)
        else:
            # each module on its own: input = x after random earlier modules, target = that module alone
            loss = 0.0
            with torch.no_grad():
                prefix = torch.zeros_like(a)
            for stage, (_, idx) in zip(model.stages, MODULES, strict=True):
                with torch.no_grad():
                    xin = pipe(x, prefix).clamp(0, 1) if prefix.abs().sum() > 0 else x
                    only = torch.zeros_like(a)
                    only[:, list(idx)] = a[:, list(idx)]
                    y = pipe(xin, only).clamp(0, 1)
                loss = loss + F.mse_loss(stage(xin, a[:, list(idx)]), y)
                prefix[:, list(idx)] = a[:, list(idx)]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    metrics = {"kind": kind, "train_mse_last50": float(np.mean(losses[-50:])), "iterations": cfg.iterations,
               "batch_size": cfg.batch_size, "size": cfg.size, "lr": cfg.lr, "seed": cfg.seed,
               "wall_time_s": round(time.perf_counter() - t0, 1)}
    return model.eval(), metrics


def _cache_path(kind: str, cfg: ProxyTrainConfig) -> Path:
    return cache_dir() / "proxies" / f"finishing_proxy_{kind}_it{cfg.iterations}_b{cfg.batch_size}_s{cfg.size}_seed{cfg.seed}.pt"


def proxy_path(kind: str, cfg: ProxyTrainConfig | None = None) -> Path:
    """Where a trained proxy is looked up: shipped weights first, then the cache (keyed by the recipe)."""
    shipped = WEIGHTS_DIR / f"finishing_proxy_{kind}.pt"
    if shipped.is_file():
        return shipped
    return _cache_path(kind, cfg or ProxyTrainConfig())


def get_proxy(kind: str, cfg: ProxyTrainConfig | None = None, retrain: bool = False, progress: bool = False) -> tuple[nn.Module, dict]:
    """Load the cached/shipped proxy of ``kind``, or train it (CPU, minutes) and cache it."""
    cfg = cfg or ProxyTrainConfig()
    path = proxy_path(kind, cfg)
    if path.is_file() and not retrain:
        return load_proxy(path, kind)
    model, metrics = train_proxy(kind, cfg, progress=progress)
    atomic.torch_save({"state_dict": model.state_dict(), "metrics": metrics}, _cache_path(kind, cfg))
    return model, metrics


def load_proxy(path: str | Path, kind: str = "") -> tuple[nn.Module, dict]:
    """A trained proxy file -> (proxy in eval mode, its training metrics); ``kind`` default: the file's own."""
    state = safe_load(path, what="finishing proxy")
    kind = kind or state["metrics"]["kind"]
    model = MonolithicProxy() if kind == "monolithic" else CascadedProxy()
    model.load_state_dict(state["state_dict"])
    return model.eval(), state["metrics"]


@dataclass
class ProxyTrainArgs:
    """Arguments of ``ispbench train proxy``."""

    kind: str = "cascaded"
    """``monolithic`` (one UNet for the whole pipeline) or ``cascaded`` (one small proxy per module)"""
    training: ProxyTrainConfig = field(default_factory=ProxyTrainConfig)
    """the training recipe"""
    out: str = ""
    """where the trained proxy goes (empty = the cache file :func:`get_proxy` looks up for this recipe)"""
    progress: bool = True
    """show a tqdm progress bar"""


def main(argv: list[str] | None = None) -> int:
    """``ispbench train proxy [--field value ...]``: train a proxy and write it atomically."""
    args = parse(ProxyTrainArgs, argv, prog="ispbench train proxy", description=(__doc__ or "").splitlines()[0])
    out = Path(args.out) if args.out else _cache_path(args.kind, args.training)
    print(f"output: {out.resolve()}", file=sys.stderr)
    model, metrics = train_proxy(args.kind, args.training, progress=args.progress)
    atomic.torch_save({"state_dict": model.state_dict(), "metrics": metrics}, out)
    print(json.dumps(metrics, indent=1))
    finish_run("ispbench.finishing_baselines.proxy:load_proxy", out)
    return 0


@dataclass
class ProxyResult:
    """Found ``actions (B, 9)``, real-pipeline ``images (B,3,H,W)``, queries per image, proxy loss history."""

    actions: torch.Tensor
    images: torch.Tensor
    queries: int
    history: list[float]


def proxy_search(proxy: nn.Module, images: torch.Tensor, goals: torch.Tensor, iterations: int = 100, lr: float = 0.05,
                 pipeline: Callable | None = None) -> ProxyResult:
    """Tune actions by gradient descent through ``proxy`` (batched, per-image actions), then render.

    ``iterations`` Adam steps (paper: 100) from the identity; actions are clamped to [-1, 1]
    after each step. One real pipeline query per image renders the result.
    """
    proxy.eval()
    for p in proxy.parameters():
        p.requires_grad_(False)
    a = torch.zeros(images.shape[0], N_PARAMS, requires_grad=True)
    opt = torch.optim.Adam([a], lr=lr)
    hist = []
    for _ in range(iterations):
        loss = (proxy(images, a) - goals).pow(2).flatten(1).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            a.clamp_(-1, 1)
        hist.append(float(loss.detach()) / images.shape[0])
    with torch.no_grad():
        out = _pipeline(pipeline)(images, a.detach()).clamp(0, 1)
    return ProxyResult(a.detach(), out, 1, hist)


__all__ = ["MonolithicProxy", "CascadedProxy", "MODULES", "ProxyTrainConfig", "train_proxy", "get_proxy", "proxy_path",
           "proxy_search", "ProxyResult", "load_proxy", "ProxyTrainArgs"]
