"""A small AdaIR: the all-in-one restoration network IRPO post-trains, with its stochastic Beta heads.

AdaIR (Cui et al., ICLR 2025) is a Restormer-style encoder-decoder (four levels of transformer blocks
with channel-wise "transposed" attention and a gated feed-forward) whose decoder gets three
*adaptive frequency learning blocks* (:class:`FrequencyModule`): each splits features of the
degraded input into low and high frequencies with a centred FFT mask, lets each part attend to the
decoder's features, recombines them with spatial and channel gates, and adds the result to the
decoder's features with two learned per-channel gains.

IRPO's authors (``grpo_ir``, a fork of AdaIR) make it a policy: in each frequency module two Beta
heads sample the mask ratios ``(r_h, r_w)`` and two fusion gains ``(g1, g2)`` that multiply the two
per-channel gains; the sum of the three modules' log-probabilities is the sample's log-probability.
The deterministic path (test time) takes the ratios from the original ``rate_conv`` and the gains as 1.

Two facts of the authors' code that this file reproduces by default (``mask_rule="authors"``):

* the mask's half-size is ``int((h // 128) * r)``, of a feature map that is 128 px or smaller on
  128-px training patches (and well under 256 px on the test images), so it is 0: the mask is empty,
  the "low" part is zero and the ratio heads change nothing. ``mask_rule="fraction"`` (our named fix)
  uses ``int(r * h / 2)``, so the ratios open a low-pass window of that fraction of the spectrum.
* the stochastic gains are Beta samples in (0, 1) while the deterministic path uses 1, so sampled
  restorations are systematically different from the test-time one.

Sizes: :data:`EMBEDDED_CONFIG` (dim 16, one block per level, one refinement block: about 1.1 M
parameters, the CPU size) and :data:`PAPER_CONFIG` (the authors' dim 48, [4, 6, 6, 8] blocks, 4
refinement blocks: about 28.8 M).

Example:
    >>> net = AdaIR(EMBEDDED_CONFIG)
    >>> x = torch.rand(2, 3, 64, 64)
    >>> net(x).shape
    torch.Size([2, 3, 64, 64])
    >>> out, log_prob = net(x, stochastic=True)
    >>> log_prob.shape
    torch.Size([2])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Beta
from torch.nn import functional as F

MASK_RULES = ("authors", "fraction")


@dataclass(frozen=True)
class AdaIRConfig:
    """Architecture of :class:`AdaIR` (the defaults are the CPU size, :data:`EMBEDDED_CONFIG`)."""

    dim: int = 16
    """channels at level 1 (authors: 48); level ``k`` has ``dim * 2**(k-1)``"""
    num_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    """transformer blocks per encoder level (the decoder mirrors levels 1-3; authors: 4, 6, 6, 8)"""
    num_refinement_blocks: int = 1
    """transformer blocks after the decoder (authors: 4)"""
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    """attention heads per level (authors: 1, 2, 4, 8; the frequency modules use level 3's)"""
    ffn_expansion_factor: float = 2.66
    """hidden width of the gated feed-forward, as a multiple of its input (authors: 2.66)"""
    mask_rule: str = "authors"
    """``authors``: mask half-size ``int((h // 128) * r)`` (empty below 256 px); ``fraction``: ``int(r * h / 2)``"""

    def __post_init__(self) -> None:
        if self.dim < 8 or self.dim % 8:
            raise ValueError(f"dim must be a multiple of 8 (the heads' widths are dim // 8), got {self.dim}")
        if len(self.num_blocks) != 4 or min(self.num_blocks) < 1:
            raise ValueError(f"num_blocks must be 4 positive counts, got {self.num_blocks}")
        if self.mask_rule not in MASK_RULES:
            raise ValueError(f"mask_rule must be one of {list(MASK_RULES)}, got {self.mask_rule!r}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> AdaIRConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown AdaIR config fields {sorted(unknown)}; valid: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


EMBEDDED_CONFIG = AdaIRConfig()
PAPER_CONFIG = AdaIRConfig(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)`` at every pixel, with a bias (Restormer's "WithBias")."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, 1e-5).permute(0, 3, 1, 2)


class GatedFeedForward(nn.Module):
    """1x1 expansion to two branches, 3x3 depthwise, ``gelu(a) * b``, 1x1 back (Restormer's GDFN)."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


def _channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, temperature: torch.Tensor) -> torch.Tensor:
    """Attention across channels (a ``C/heads x C/heads`` map per head), linear in the pixel count."""
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * temperature
    return (attn.softmax(dim=-1) @ v).reshape(b, c, h, w)


class ChannelAttention(nn.Module):
    """Restormer's MDTA: q, k, v from 1x1 + 3x3 depthwise convolutions, attention across channels."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(_channel_attention(q, k, v, self.heads, self.temperature))


class CrossChannelAttention(nn.Module):
    """Channel attention with queries from ``x`` and keys/values from ``y`` (same shape)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"cross attention needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        return self.project_out(_channel_attention(q, k, v, self.heads, self.temperature))


class TransformerBlock(nn.Module):
    """``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GatedFeedForward(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _blocks(n: int, dim: int, heads: int, expansion: float) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, expansion) for _ in range(n)])


class Downsample(nn.Module):
    """``(B, C, H, W) -> (B, 2C, H/2, W/2)``: 3x3 conv to ``C/2``, then pixel-unshuffle."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """``(B, C, H, W) -> (B, C/2, 2H, 2W)``: 3x3 conv to ``2C``, then pixel-shuffle."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FrequencyRefine(nn.Module):
    """Recombine the two parts: the low part gated by a spatial map of the high part, the high part
    by channel weights of the low part, summed and projected (AdaIR's frequency modulation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        hidden = max(dim // 16, 1)
        self.channel_mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, dim, 1, bias=False))
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        spatial = torch.sigmoid(self.spatial(torch.cat([high.amax(1, keepdim=True), high.mean(1, keepdim=True)], 1)))
        channel = torch.sigmoid(self.channel_mlp(F.adaptive_avg_pool2d(low, 1)) + self.channel_mlp(F.adaptive_max_pool2d(low, 1)))
        return self.proj(low * spatial + high * channel)


def _beta(raw: torch.Tensor) -> tuple[Beta, Beta]:
    """Two Beta distributions from ``(B, 4, 1, 1)`` raw head outputs (``softplus + 1e-4``, as the authors)."""
    a = F.softplus(raw.flatten(1)) + 1e-4
    return Beta(a[:, 0], a[:, 1]), Beta(a[:, 2], a[:, 3])


def centred_box_mask(shape: tuple[int, int, int, int], half_h: torch.Tensor, half_w: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` 1 inside the box ``[H//2 - half_h, H//2 + half_h) x [W//2 - half_w, W//2 + half_w)``
    of a centred spectrum, per image (``half_h``, ``half_w``: ``(B,)`` integers)."""
    b, _, h, w = shape
    rows = torch.arange(h, device=half_h.device).view(1, h, 1)
    cols = torch.arange(w, device=half_h.device).view(1, 1, w)
    hh, hw = half_h.view(b, 1, 1), half_w.view(b, 1, 1)
    inside = (rows >= h // 2 - hh) & (rows < h // 2 + hh) & (cols >= w // 2 - hw) & (cols < w // 2 + hw)
    return inside.unsqueeze(1).float()


class FrequencyModule(nn.Module):
    """AdaIR's adaptive frequency learning block, with IRPO's Beta heads.

    ``forward(image (B, 3, H0, W0), features (B, C, H, W), stochastic, action)`` returns the features
    ``(B, C, H, W)``, the log-probability ``(B,)`` of the sampled ratios and gains (zeros when
    deterministic) and the sample ``(B, 4)``.
    """

    def __init__(self, dim: int, heads: int, mask_rule: str = "authors") -> None:
        super().__init__()
        self.mask_rule = mask_rule
        self.embed = nn.Conv2d(3, dim, 3, padding=1, bias=False)
        self.gain_frequency = nn.Parameter(torch.zeros(dim, 1, 1))  # starts off: the block adds nothing at first
        self.gain_skip = nn.Parameter(torch.ones(dim, 1, 1))
        self.attend_high = CrossChannelAttention(dim, heads)
        self.attend_low = CrossChannelAttention(dim, heads)
        self.attend_aggregate = CrossChannelAttention(dim, heads)
        self.refine = FrequencyRefine(dim)
        self.rate_conv = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(), nn.Conv2d(dim // 8, 2, 1, bias=False))
        # IRPO's policy heads: (alpha, beta) of r_h, r_w and of the two fusion gains
        self.policy_rate = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(), nn.Conv2d(dim // 8, 4, 1))
        self.policy_fuse = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(), nn.Conv2d(dim // 8, 4, 1))

    def half_sizes(self, ratio: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer half-sizes ``(B,)`` of the low-pass box for ratios ``(B, 2)`` in (0, 1)."""
        if self.mask_rule == "authors":
            return (h // 128 * ratio[:, 0]).int(), (w // 128 * ratio[:, 1]).int()
        return (ratio[:, 0] * h / 2).int(), (ratio[:, 1] * w / 2).int()

    def split_frequencies(self, x: torch.Tensor, ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(high, low)`` magnitudes of ``x`` ``(B, C, H, W)`` outside and inside the centred box."""
        h, w = x.shape[-2:]
        half_h, half_w = self.half_sizes(ratio, h, w)
        if not bool((half_h > 0).any() and (half_w > 0).any()):
            # an empty box: the low part is exactly 0 and the high part is |x| (skips two FFTs, same values)
            return x.abs(), torch.zeros_like(x)
        mask = centred_box_mask(tuple(x.shape), half_h, half_w)
        spectrum = torch.fft.fftshift(torch.fft.fft2(x, norm="forward"), dim=(-2, -1))
        high = torch.fft.ifft2(torch.fft.ifftshift(spectrum * (1 - mask), dim=(-2, -1)), norm="forward").abs()
        low = torch.fft.ifft2(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1)), norm="forward").abs()
        return high, low

    def forward(self, image: torch.Tensor, y: torch.Tensor, stochastic: bool = False,
                action: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns ``(features, log_prob (B,), action (B, 4) or None)``; the action is ``(r_h, r_w, g1, g2)``.
        A given ``action`` (stochastic path only) is used instead of a sample and scored under the current
        heads (PPO's new/old ratio over several updates of one group)."""
        x = self.embed(F.interpolate(image, y.shape[-2:], mode="bilinear"))
        pooled = F.adaptive_avg_pool2d(x, 1)
        log_prob = torch.zeros(y.shape[0], device=y.device, dtype=y.dtype)
        if stochastic:
            dist_h, dist_w = _beta(self.policy_rate(pooled))
            dist_1, dist_2 = _beta(self.policy_fuse(F.adaptive_avg_pool2d(y, 1)))
            if action is None:  # reparameterised, as the authors: the L1 terms reach the heads through the sample
                action = torch.stack([dist_h.rsample(), dist_w.rsample(), dist_1.rsample(), dist_2.rsample()], 1)
            else:
                # a stored sample is replayed; clamped off 0 and 1, where a Beta's log-density is infinite
                action = action.detach().clamp(1e-6, 1 - 1e-6)
            ratio, g1, g2 = action[:, :2], action[:, 2].view(-1, 1, 1, 1), action[:, 3].view(-1, 1, 1, 1)
            log_prob = (dist_h.log_prob(action[:, 0]) + dist_w.log_prob(action[:, 1]) + dist_1.log_prob(action[:, 2])
                        + dist_2.log_prob(action[:, 3]))
        else:
            ratio = torch.sigmoid(self.rate_conv(pooled)).flatten(1)
            g1 = g2 = torch.ones(1, 1, 1, 1, device=y.device, dtype=y.dtype)
        high, low = self.split_frequencies(x, ratio)
        aggregate = self.refine(self.attend_low(low, y), self.attend_high(high, y))
        out = self.attend_aggregate(y, aggregate)
        return out * (self.gain_frequency * g1) + y * (self.gain_skip * g2), log_prob, action


class AdaIR(nn.Module):
    """``forward(x (B, 3, H, W), stochastic=False)``: the restored image ``(B, 3, H, W)`` (a residual on
    ``x``); with ``stochastic=True`` also the summed log-probability ``(B,)`` of the heads' samples.
    ``H`` and ``W`` must be multiples of 8 (three downsamplings)."""

    def __init__(self, config: AdaIRConfig = EMBEDDED_CONFIG) -> None:
        super().__init__()
        self.config = config
        d, nb, hd, e = config.dim, config.num_blocks, config.heads, config.ffn_expansion_factor
        self.patch_embed = nn.Conv2d(3, d, 3, padding=1, bias=False)
        self.encoder_level1 = _blocks(nb[0], d, hd[0], e)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = _blocks(nb[1], d * 2, hd[1], e)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = _blocks(nb[2], d * 4, hd[2], e)
        self.down3_4 = Downsample(d * 4)
        self.latent = _blocks(nb[3], d * 8, hd[3], e)
        self.frequency1 = FrequencyModule(d * 8, hd[2], config.mask_rule)
        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, 1, bias=False)
        self.decoder_level3 = _blocks(nb[2], d * 4, hd[2], e)
        self.frequency2 = FrequencyModule(d * 4, hd[2], config.mask_rule)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=False)
        self.decoder_level2 = _blocks(nb[1], d * 2, hd[1], e)
        self.frequency3 = FrequencyModule(d * 2, hd[2], config.mask_rule)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = _blocks(nb[0], d * 2, hd[0], e)
        self.refinement = _blocks(config.num_refinement_blocks, d * 2, hd[0], e)
        self.output = nn.Conv2d(d * 2, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, stochastic: bool = False,
                actions: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``actions``: ``(B, 3, 4)`` samples of the three modules to replay (stochastic path); the ones drawn
        by the last stochastic call are kept in ``last_actions``."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"AdaIR expects (B, 3, H, W) with H and W multiples of 8, got {tuple(x.shape)}")
        if actions is not None and (not stochastic or actions.shape != (x.shape[0], 3, 4)):
            raise ValueError(f"actions: expected ({x.shape[0]}, 3, 4) on the stochastic path, got "
                             f"{tuple(actions.shape)} (stochastic={stochastic})")
        replay = [None] * 3 if actions is None else list(actions.unbind(1))
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        latent, lp1, a1 = self.frequency1(x, self.latent(self.down3_4(e3)), stochastic, replay[0])
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), e3], 1)))
        d3, lp2, a2 = self.frequency2(x, d3, stochastic, replay[1])
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d2, lp3, a3 = self.frequency3(x, d2, stochastic, replay[2])
        d1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1)))
        out = self.output(d1) + x
        if not stochastic:
            return out
        self.last_actions = torch.stack([a1, a2, a3], 1).detach()
        return out, lp1 + lp2 + lp3

    def frequency_modules(self) -> list[FrequencyModule]:
        return [self.frequency1, self.frequency2, self.frequency3]

    def policy_parameters(self) -> list[nn.Parameter]:
        """The Beta heads' parameters (``policy_rate`` and ``policy_fuse`` of the three modules)."""
        return [p for m in self.frequency_modules() for head in (m.policy_rate, m.policy_fuse) for p in head.parameters()]

    def authors_trainable_parameters(self) -> list[nn.Parameter]:
        """What the authors' GRPO optimises (``--train_policy_only``): the policy heads, the norms of
        ``decoder_level1``, all of ``refinement`` and the output convolution."""
        norms = [p for m in self.decoder_level1.modules() if isinstance(m, ChannelLayerNorm) for p in m.parameters()]
        params = self.policy_parameters() + norms + list(self.refinement.parameters()) + list(self.output.parameters())
        unique, seen = [], set()
        for p in params:
            if id(p) not in seen:
                unique.append(p)
                seen.add(id(p))
        return unique


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["AdaIR", "AdaIRConfig", "EMBEDDED_CONFIG", "FrequencyModule", "MASK_RULES", "PAPER_CONFIG",
           "centred_box_mask", "count_parameters"]
