"""AdaptiveISP policy and value networks (paper Appendix C.1, Fig. 10 and Fig. 12).

Both networks look at a 64x64 down-sample of the current image plus constant "extra channels":

* policy input (``3 + N + 1`` channels, paper Fig. 12): the image, ``N = 10`` "module used" bits
  (one constant plane per module of :data:`ispbench.ops.MODULE_NAMES`) and one "stage" plane
  holding ``t`` (authors' code; ``stage_plane="index"``) or ``t / T`` (``"fraction"``, the shipped
  embedded policy's). The authors' code has two more planes (a constant "reward" flag and a
  "stopped" flag); we leave both out: the reward flag is always 1 in their code and stopped
  samples are never fed to the policy again here (the executor skips them).
* value input (``3 + N + 1 + 3`` channels): the policy input plus the image's mean luminance,
  contrast (luminance variance, authors' code, or its std: ``contrast_stat``) and saturation as
  three constant planes (Appendix C.3).

Feature extractor: four ``Conv(4x4, stride 2) - BatchNorm - LeakyReLU(0.2)`` layers with
32-64-128-256 channels, 64 -> 4 px, flattened to ``256 * 4 * 4 = 4096`` features.

* :class:`PolicyNet`: a selector CNN (dropout 0.5, FC 4096-128, LeakyReLU, FC 128-A, softmax
  over ``A = 10`` modules, or 11 with the optional learned STOP action) and a *separate* CNN for
  the parameter heads. With ``param_heads="per_module"`` (authors' code) every module has its own
  4096-128-n_params head; ``"shared"`` shares the 4096-128 layer between modules and keeps a
  128-n_params output layer per module (paper text: "parameter prediction networks share a common
  feature extraction backbone"); the shared variant is 5x smaller (the shipped CPU checkpoint uses
  it to stay under 10 MB). Head outputs go through :func:`ispbench.ops.squash` (tanh into each
  module's range, Appendix B).
* :class:`ValueNet`: the same CNN without dropout, FC 4096-128, LeakyReLU, FC 128-1.

Example:
    >>> policy = PolicyNet()                                    # doctest: +SKIP
    >>> state = torch.rand(2, policy.in_channels, 64, 64)
    >>> logits, raw = policy(state)                             # (2, 10), {name: (2, n)}
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ispbench import ops

#: Side length of the down-sampled image both networks see.
STATE_SIZE = 64
#: Width of the flattened CNN features (256 channels x 4 x 4).
N_FEATURES = 4096
#: Stage-plane contents: ``index`` = ``t`` (authors' code), ``fraction`` = ``t / T``.
STAGE_PLANES = ("index", "fraction")
#: Contrast statistic of the value input: ``variance`` (authors' code) or ``std`` of the luminance.
CONTRAST_STATS = ("variance", "std")


class FeatureExtractor(nn.Module):
    """Four Conv(4x4, s2)-BN-LeakyReLU(0.2) layers, 32-64-128-256 channels: (B, C, 64, 64) -> (B, 4096)."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.2),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_features = previous * (STATE_SIZE // 2 ** len(widths)) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (STATE_SIZE, STATE_SIZE):
            raise ValueError(
                f"FeatureExtractor: expected x of shape (B, {self.in_channels}, {STATE_SIZE}, {STATE_SIZE}), "
                f"got {tuple(x.shape)}"
            )
        return self.body(x).flatten(1)


class PolicyNet(nn.Module):
    """Module selector (softmax) and per-module parameter heads (tanh -> range).

    Args:
        module_names: the module pool, default :data:`ispbench.ops.MODULE_NAMES`.
        use_stop: add an 11th "STOP" action (our extension, not in the authors' code).
        param_heads: ``"per_module"`` (own 4096-128-n head per module, authors' code) or
            ``"shared"`` (shared 4096-128 layer, own 128-n output layer per module).
        dropout: dropout before the first FC layer (0.5 in the paper).
        param_sizes: ``{name: n_params}``; default from :func:`ispbench.ops.n_params`.
        mask_reuse: trained with already-used modules masked out of the softmax (``Args.mask_reuse``);
            :func:`.inference.run_policy` then masks them too. Default ``False`` (the paper: a soft
            reuse penalty in the reward).
        disabled_modules: modules the selector may never pick (logit -1e9), e.g. ``["denoise"]``
            on a CPU, where our NLM costs ~6 s per 256 px image forward + backward. The paper's
            Table 4 never selects Denoise (0% at every lambda_c).
        stage_plane: what the stage plane of the input holds: ``"index"`` = ``t`` (authors' code) or
            ``"fraction"`` = ``t / T`` (:func:`.agent.policy_state`); stored in the config so that
            inference builds the same input. Files without it were trained with ``"fraction"``.
        contrast_stat: the value net's contrast statistic during training (``"variance"``, authors'
            code, or ``"std"``); the policy does not read it, the config records it with the other
            input settings (files without it: ``"std"``).

    ``forward(state)`` returns ``(logits (B, A), raw)`` where ``raw[name]`` is the pre-squash head
    output ``(B, n_params)``; :meth:`module_params` maps it into the module's range.
    """

    def __init__(
        self,
        module_names: Sequence[str] | None = None,
        *,
        use_stop: bool = False,
        param_heads: str = "per_module",
        dropout: float = 0.5,
        param_sizes: dict[str, int] | None = None,
        disabled_modules: Sequence[str] = (),
        mask_reuse: bool = False,
        stage_plane: str = "index",
        contrast_stat: str = "variance",
        denoise_window: int = ops.modules.NLM_SEARCH,
    ) -> None:
        super().__init__()
        if isinstance(denoise_window, bool) or not isinstance(denoise_window, int) or denoise_window < 1 or denoise_window % 2 == 0:
            raise ValueError(f"PolicyNet: denoise_window must be an odd int >= 1, got {denoise_window!r}")
        #: Denoise's search window in training and, via the config, at inference (11 = the authors')
        self.denoise_window = denoise_window
        if stage_plane not in STAGE_PLANES:
            raise ValueError(f"PolicyNet: stage_plane must be one of {list(STAGE_PLANES)}, got {stage_plane!r}")
        if contrast_stat not in CONTRAST_STATS:
            raise ValueError(f"PolicyNet: contrast_stat must be one of {list(CONTRAST_STATS)}, got {contrast_stat!r}")
        self.stage_plane = stage_plane
        self.contrast_stat = contrast_stat
        #: forbid modules already used in this episode (masked out of the softmax); stored in the
        #: config so that inference applies the same rule the policy was trained with.
        self.mask_reuse = bool(mask_reuse)
        if module_names is None:
            module_names = list(ops.MODULE_NAMES)
        if param_heads not in {"per_module", "shared"}:
            raise ValueError(f"PolicyNet: param_heads must be 'per_module' or 'shared', got {param_heads!r}")
        self.module_names = list(module_names)
        self.n_modules = len(self.module_names)
        self.use_stop = bool(use_stop)
        self.n_actions = self.n_modules + int(self.use_stop)
        self.param_heads = param_heads
        if param_sizes is None:
            param_sizes = {name: int(ops.n_params(name)) for name in self.module_names}
        self.param_sizes = {name: int(param_sizes[name]) for name in self.module_names}
        self.in_channels = 3 + self.n_modules + 1
        unknown = set(disabled_modules) - set(self.module_names)
        if unknown:
            raise ValueError(f"PolicyNet: disabled_modules {sorted(unknown)} not in the pool {self.module_names}")
        self.disabled_modules = [n for n in self.module_names if n in set(disabled_modules)]
        mask = torch.tensor([n not in self.disabled_modules for n in self.module_names] + [True] * int(self.use_stop))
        #: (A,) bool, False for actions the selector may never pick (their logits are set to -1e9).
        self.register_buffer("action_mask", mask, persistent=False)
        # Selector branch.
        self.selector_features = FeatureExtractor(self.in_channels)
        self.selector = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(N_FEATURES, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, self.n_actions),
        )
        # Parameter branch: its own CNN.
        self.param_features = FeatureExtractor(self.in_channels)
        self.param_dropout = nn.Dropout(dropout)
        if param_heads == "shared":
            self.param_trunk = nn.Sequential(nn.Linear(N_FEATURES, 128), nn.LeakyReLU(0.2))
            self.heads = nn.ModuleDict({name: nn.Linear(128, n) for name, n in self.param_sizes.items()})
        else:
            self.param_trunk = nn.Identity()
            self.heads = nn.ModuleDict(
                {
                    name: nn.Sequential(nn.Linear(N_FEATURES, 128), nn.LeakyReLU(0.2), nn.Linear(128, n))
                    for name, n in self.param_sizes.items()
                }
            )
        # Start every parameter head near its module's identity (small last-layer weights, bias =
        # the pre-tanh value of the identity parameters): an untrained policy's modules are
        # harmless, and the CCM does not start at the all-zero matrix (row sums 0) that a zero
        # bias would give. Our choice; the paper does not say how the heads are initialised.
        for name, head in self.heads.items():
            last = head if isinstance(head, nn.Linear) else head[-1]
            nn.init.normal_(last.weight, std=1e-3)
            with torch.no_grad():
                last.bias.copy_(ops.identity_raw(name, self.param_sizes[name]))

    def config(self) -> dict:
        """Constructor arguments, stored with checkpoints so :func:`load_policy` can rebuild the net."""
        return {
            "module_names": self.module_names,
            "use_stop": self.use_stop,
            "param_heads": self.param_heads,
            "param_sizes": self.param_sizes,
            "disabled_modules": self.disabled_modules,
            "mask_reuse": self.mask_reuse,
            "stage_plane": self.stage_plane,
            "contrast_stat": self.contrast_stat,
            "denoise_window": self.denoise_window,
        }

    @torch.no_grad()
    def init_head_biases(self, raw_values: dict[str, torch.Tensor]) -> list[str]:
        """Set each listed module head's output bias to ``raw_values[name]`` (pre-squash, (n_params,)).

        Used to warm-start the parameter heads (``Args.param_init="hpo"``: the HPO baseline's learned
        raw values, so an untrained head outputs the HPO parameters). Returns the modules set.
        """
        done = []
        for name, raw in raw_values.items():
            if name not in self.heads:
                continue
            last = self.heads[name] if isinstance(self.heads[name], nn.Linear) else self.heads[name][-1]
            raw = torch.as_tensor(raw, dtype=last.bias.dtype).reshape(-1)
            if raw.numel() != last.bias.numel():
                raise ValueError(f"init_head_biases: {name} needs {last.bias.numel()} values, got {raw.numel()}")
            last.bias.copy_(raw)
            done.append(name)
        return done

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.selector(self.selector_features(state))
        if not bool(self.action_mask.all()):
            logits = logits.masked_fill(~self.action_mask, -1e9)
        hidden = self.param_trunk(self.param_dropout(self.param_features(state)))
        raw = {name: head(hidden) for name, head in self.heads.items()}
        return logits, raw

    def module_params(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map raw head outputs into each module's range with :func:`ispbench.ops.squash` (tanh)."""
        return {name: ops.squash(name, value) for name, value in raw.items()}


class ValueNet(nn.Module):
    """State value V(s): CNN (no dropout) on ``3 + N + 1 + 3`` channels, FC 4096-128-1."""

    def __init__(self, n_modules: int = 10) -> None:
        super().__init__()
        self.n_modules = n_modules
        self.in_channels = 3 + n_modules + 1 + 3
        self.features = FeatureExtractor(self.in_channels)
        self.head = nn.Sequential(nn.Linear(N_FEATURES, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """(B, 3+N+4, 64, 64) -> (B,)."""
        return self.head(self.features(state)).squeeze(1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in nats, (B, A) -> (B,)."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def max_entropy(n_actions: int) -> float:
    """ln(A), the entropy of the uniform distribution over A actions."""
    return math.log(n_actions)
