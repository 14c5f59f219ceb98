"""RLPixTuner's learned state encoder, actor and twin critics (Sec. 3.3, Fig. 2, App. C.2).

:class:`StateEncoder` turns an :class:`~ispbench.methods.rlpixtuner.env.Observation` into the
state ``s_t = Concat(F^D; F^S; F^H)``:

* ``F^D`` (``dual_path=True``): the concatenated current/goal 64x64 images (plus their difference
  when ``diff_input``) go through a stride-2 conv encoder (two 3x3 stride-2 convs, 64 -> 16), then
  a *local path* of two stride-1 3x3 convs and a *global path* of one stride-2 conv and three FC
  layers; fusion ``relu(G + L_xy)`` (broadcast add), then a 4x4 average pool, flatten, Linear.
  With ``dual_path=False`` a naive CNN (four stride-2 convs, flatten, Linear) replaces it: the
  paper's "RL" baseline of Table 4. The Laplacian-pyramid features (``pyramid``) belong to F^D
  here: they come with the dual path in the ablation presets.
* ``F^S`` (``stats=True``): ``Linear(H_rgb(I_t); H_rgb(I_g))`` + luminance, median, contrast
  and saturation of both images.
* ``F^H`` (``history=True``): ``Linear(a_{1:t}; l_{0:t})``.
* always: current parameters and the step index (as in the authors' observation).

``residual_actor`` (off in the paper's architecture and in our shipped CPU policy; on in an earlier one): see :class:`Actor`.

The concatenation goes through a Linear + LayerNorm + tanh trunk (DrQ-v2 style, keeps the
heterogeneous inputs on one scale), then the actor/critic MLPs (paper: 4 hidden layers of 512;
default here 2 x 256 for CPU). One encoder is shared by the actor and both critics and is trained
by the critic loss only; the actor sees detached features (a CPU saving, DrQ/SAC-AE style;
SB3's TD3 gives the actor its own encoder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ispbench.methods.rlpixtuner.env import Observation
from ispbench.methods.rlpixtuner.state import N_PARAMS, StateLayout

#: Table 4 rows -> switches.
ABLATIONS: dict[str, dict[str, bool]] = {
    "naive": dict(dual_path=False, pyramid=False, stats=False, history=False),
    "dual": dict(dual_path=True, pyramid=True, stats=False, history=False),
    "dual+stats": dict(dual_path=True, pyramid=True, stats=True, history=False),
    "dual+history": dict(dual_path=True, pyramid=True, stats=False, history=True),
    "all": dict(dual_path=True, pyramid=True, stats=True, history=True),
}


@dataclass
class NetConfig:
    """Architecture switches and widths (stored in checkpoints)."""

    dual_path: bool = True
    pyramid: bool = True
    stats: bool = True
    history: bool = True
    diff_input: bool = True
    width: int = 16
    cnn_features: int = 128
    feature_dim: int = 256
    hidden: int = 256
    layers: int = 2
    max_steps: int = 10
    residual_actor: bool = False
    residual_scale: float = 0.5
    mlp: tuple[int, ...] = ()
    """hidden widths of the actor and critic MLPs, e.g. ``(400, 300)`` (the authors' code); empty: ``layers x hidden``"""
    mdp: str = "cumulative"
    """the episode dynamics the policy was trained in (``env.MDPS``); inference runs the same"""

    def __post_init__(self) -> None:
        self.mlp = tuple(int(w) for w in self.mlp)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.mlp or (self.hidden,) * self.layers

    @property
    def layout(self) -> StateLayout:
        return StateLayout(max_steps=self.max_steps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "NetConfig":
        """From :meth:`to_dict`; configs saved before the ``mdp`` field are of the absolute MDP."""
        return cls(**{"mdp": "absolute", **state})


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))


class DualPathCNN(nn.Module):
    """HDRNet-like dual-path features of a 64x64 input, ``(B, C, 64, 64) -> (B, out)``."""

    def __init__(self, cin: int, width: int = 16, out: int = 128) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv(cin, w, 2), _conv(w, 2 * w, 2))  # 64 -> 16
        self.local = nn.Sequential(_conv(2 * w, 2 * w, 1), nn.Conv2d(2 * w, 2 * w, 3, 1, 1))
        self.global_conv = _conv(2 * w, 2 * w, 2)  # 16 -> 8
        self.global_fc = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * 8 * 8, 4 * w), nn.ReLU(inplace=True),
            nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, 2 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(2 * w * 16, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x)
        local = self.local(f)
        glob = self.global_fc(self.global_conv(f))
        fused = torch.relu(local + glob[:, :, None, None])
        return self.head(self.pool(fused).flatten(1))


class NaiveCNN(nn.Module):
    """Plain CNN baseline (Table 4 "RL"): four 3x3 stride-2 convs, flatten, Linear."""

    def __init__(self, cin: int, width: int = 16, out: int = 128) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(_conv(cin, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, 2),
                                 nn.Flatten(), nn.Linear(2 * w * 4 * 4, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StateEncoder(nn.Module):
    """Observation -> state features ``(B, cfg.feature_dim)`` (see module docstring)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        lay = cfg.layout
        self.slices = lay.slices
        cin = 9 if cfg.diff_input else 6
        self.cnn = (DualPathCNN if cfg.dual_path else NaiveCNN)(cin, cfg.width, cfg.cnn_features)
        dim = cfg.cnn_features + lay.sizes["params"]
        if cfg.pyramid:
            self.pyr = nn.Linear(lay.sizes["pyramid"], 64)
            dim += 64
        if cfg.stats:
            self.hist = nn.Linear(lay.sizes["hist"], 64)
            dim += 64 + lay.sizes["stats"]
        if cfg.history:
            self.hist_emb = nn.Linear(lay.sizes["history"], 64)
            dim += 64
        self.trunk = nn.Sequential(nn.Linear(dim, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim), nn.Tanh())

    def forward(self, obs: Observation) -> torch.Tensor:
        cur, goal, vec = obs.cur64.float(), obs.goal64.float(), obs.vec.float()
        imgs = [cur, goal] + ([goal - cur] if self.cfg.diff_input else [])
        parts = [self.cnn(torch.cat(imgs, 1)), vec[:, self.slices["params"]]]
        if self.cfg.pyramid:
            parts.append(torch.relu(self.pyr(vec[:, self.slices["pyramid"]])))
        if self.cfg.stats:
            parts.append(torch.relu(self.hist(vec[:, self.slices["hist"]])))
            parts.append(vec[:, self.slices["stats"]])
        if self.cfg.history:
            parts.append(torch.relu(self.hist_emb(vec[:, self.slices["history"]])))
        return self.trunk(torch.cat(parts, 1))


def mlp(cin: int, hidden: tuple[int, ...], cout: int) -> nn.Sequential:
    """``Linear -> ReLU`` for each width in ``hidden``, then ``Linear(., cout)``."""
    mods: list[nn.Module] = []
    d = cin
    for width in hidden:
        mods += [nn.Linear(d, width), nn.ReLU(inplace=True)]
        d = width
    mods.append(nn.Linear(d, cout))
    return nn.Sequential(*mods)


class Actor(nn.Module):
    """Deterministic policy head in [-1, 1]^9.

    ``mu(s) = tanh(MLP(s))`` (the paper), or with ``residual_actor``:
    ``mu(s) = clip(P_t + residual_scale * tanh(MLP(s)), -1, 1)``: the output is still the absolute
    parameter set for the next query (the MDP is unchanged), but it is parameterised around the
    current parameters ``P_t``, so an untrained actor keeps the image as it is instead of jumping to
    arbitrary parameters.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.residual, self.scale = cfg.residual_actor, cfg.residual_scale
        self.net = mlp(cfg.feature_dim, cfg.hidden_sizes, N_PARAMS)

    def base(self, params: torch.Tensor) -> torch.Tensor:
        """What the output is centred on: ``P_t`` (residual) or 0."""
        return params if self.residual else torch.zeros_like(params)

    def preactivation(self, feat: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim)`` -> ``(B, 9)``: the MLP's output before ``tanh``."""
        return self.net(feat)

    def squash(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Pre-activation ``(B, 9)`` and current parameters ``(B, 9)`` -> actions ``(B, 9)`` in [-1, 1]."""
        if self.residual:
            return (params + self.scale * torch.tanh(z)).clamp(-1, 1)
        return torch.tanh(z)

    def forward(self, feat: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.squash(self.preactivation(feat), params)


class Critic(nn.Module):
    """Twin Q heads ``Q_1, Q_2 (s, a)``."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.q1 = mlp(cfg.feature_dim + N_PARAMS, cfg.hidden_sizes, 1)
        self.q2 = mlp(cfg.feature_dim + N_PARAMS, cfg.hidden_sizes, 1)

    def forward(self, feat: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([feat, action], 1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)


__all__ = ["NetConfig", "ABLATIONS", "StateEncoder", "DualPathCNN", "NaiveCNN", "Actor", "Critic", "mlp"]
