"""AdaIR pre-training: it must learn a small denoising problem in seconds, and resume exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ispbench.methods.irpo import pretrain
from ispbench.methods.irpo.inference import load_model
from ispbench.methods.irpo.network import AdaIRConfig

SIZE = 32
TINY = AdaIRConfig(dim=8)


def smooth_images(rng: np.random.Generator, n: int) -> torch.Tensor:
    """Colour gradients with a soft disc: smooth, so denoising them is learnable by a tiny network."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    out = []
    for _ in range(n):
        a = rng.uniform(0.2, 0.8, (3, 1, 1))
        b = rng.uniform(-0.2, 0.2, (3, 1, 1))
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        disc = 1 / (1 + np.exp(((yy - cy) ** 2 + (xx - cx) ** 2 - r * r) * 80))
        out.append(np.clip(a + b * xx + 0.2 * disc, 0, 1))
    return torch.tensor(np.stack(out), dtype=torch.float32)


class NoisyStream:
    """Gaussian noise (sigma 25 / 255) on fresh smooth images, from seeded generators."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = smooth_images(self.rng, n)
        return (clean + torch.randn(clean.shape, generator=self.gen) * 25 / 255).clamp(0, 1), clean

    def generators(self) -> dict:
        return {"crops": self.rng, "degradations": self.gen}


@dataclass
class ToyVal:
    degraded: torch.Tensor
    clean: torch.Tensor
    photo: list
    kind: list
    task: list
    crop: list

    def __len__(self) -> int:
        return len(self.clean)


def toy_val(n: int = 12) -> ToyVal:
    degraded, clean = NoisyStream(99).batch(n)
    return ToyVal(degraded, clean, ["toy"] * n, ["denoise_25"] * n, ["denoise"] * n, list(range(n)))


def args(tmp_path, **kw) -> pretrain.Args:
    base = dict(model_size="embedded", patch_size=SIZE, batch_size=8, iterations=120, lr=2e-3, warmup_fraction=0.05,
                eval_every=60, log_every=20, checkpoint_every=60, out_dir=str(tmp_path / "run"), progress_bar=False)
    return pretrain.Args(**{**base, **kw})


@pytest.mark.usefixtures("one_thread")
def test_pretraining_learns_to_denoise(tmp_path):
    val = toy_val()
    input_psnr = float(pretrain.evaluate_restoration(lambda x: x, val).psnr.mean())
    result = pretrain.train(args(tmp_path), config=TINY, stream=NoisyStream(0), val=val)
    rows = [r for r in result["metrics"] if r.get("val_psnr") not in (None, "")]
    final = float(rows[-1]["val_psnr"])
    # the noisy input is ~20.5 dB; a network that learned to smooth gains several dB, a broken update does not
    assert final > input_psnr + 3.0, (input_psnr, rows)
    l1 = [float(r["l1"]) for r in result["metrics"] if r.get("l1") not in (None, "")]
    assert l1[-1] < 0.6 * l1[0]
    best = load_model(result["out_dir"] / "best.pt")
    assert best.metadata["validation"]["val_psnr"] == result["summary"]["best"]["val_psnr"]


@pytest.mark.usefixtures("one_thread")
def test_resume_is_exact(tmp_path):
    kw = dict(iterations=8, eval_every=4, log_every=2, checkpoint_every=2)
    straight = pretrain.train(args(tmp_path / "a", **kw), config=TINY, stream=NoisyStream(0), val=toy_val(4))
    pretrain.train(args(tmp_path / "b", stop_after=5, **kw), config=TINY, stream=NoisyStream(0), val=toy_val(4))
    resumed = pretrain.train(args(tmp_path / "b", **kw), config=TINY, stream=NoisyStream(0), val=toy_val(4))
    for (name, a), b in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert straight["metrics"] == resumed["metrics"] or [
        {k: v for k, v in r.items() if k not in ("elapsed_s", "images_per_s")} for r in straight["metrics"]] == [
        {k: v for k, v in r.items() if k not in ("elapsed_s", "images_per_s")} for r in resumed["metrics"]]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="kinds"):
        pretrain.parse_kinds("denoise_25,snow")
    with pytest.raises(ValueError, match="patch_size"):
        pretrain.train(args(tmp_path, patch_size=30), config=TINY, stream=NoisyStream(0), val=toy_val(2))
    with pytest.raises(ValueError, match="model_size"):
        pretrain.train(args(tmp_path, model_size="huge"), config=TINY, stream=NoisyStream(0), val=toy_val(2))


def test_learning_rate_schedule():
    a = pretrain.Args(iterations=100, lr=1.0, warmup_fraction=0.1)
    lrs = [pretrain.learning_rate(i, a) for i in range(101)]
    assert lrs[0] == 0 and lrs[10] == 1.0 and lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(x >= y for x, y in zip(lrs[10:-1], lrs[11:], strict=True))
