"""POS-ISP's two networks: an image-independent sequence decoder and a per-image parameter net.

Sizes as in the authors' code (reference ``56cc0d3`` of ``TheSpringComes/POS-ISP``; see
``../shared/reference/papers-and-official-code.md``):

* :class:`SequenceDecoder` (56,635 parameters): a bidirectional GRU (hidden 64) fed one token at a
  time (token embedding 12 x 64: the 10 modules, SOS and EOS); a step embedding (11 x 16) through
  ``Linear(16, 256)`` and ``tanh`` gives FiLM ``gamma, beta`` (128 each) applied to the GRU output;
  ``Linear(128, 11)`` scores the 10 modules and EOS. Its weights start at 0 and its bias at 1, so the
  first choices are uniform. Chosen modules are masked out; at most :data:`MAX_LENGTH` (10) modules;
  EOS ends the sequence. The decoder sees no image: it is one pipeline distribution for the task.
* :class:`ParameterNet` (527,067 parameters, the paper's 0.53 M): the image resized to 64 x 64,
  five 3 x 3 stride-2 convolutions (32, 64, 128, 128, 128) with ReLU, average and max pooling
  concatenated (256), an MLP 256 -> 256 -> 128 -> 256 -> 27 and ``(tanh + 1) / 2``: all 27 module
  parameters of the pool at once, each mapped linearly into its range of the ``"posisp"`` variant
  of :mod:`ispbench.ops.modules` (:func:`ispbench.ops.squash`).

Our readings where the reference is silent: FiLM is ``gamma * h + beta``; EOS may be chosen at
any step, the first included (an empty pipeline is the input itself); the activation of the
parameter net is ReLU (any choice without parameters gives the same count).

Example:
    >>> dec = SequenceDecoder()
    >>> seq = dec.sample(4, temperature=2.5)
    >>> seq.modules.shape, seq.log_prob.shape
    (torch.Size([4, 10]), torch.Size([4]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ispbench import ops

#: Longest pipeline the decoder emits (the pool has 10 modules, each used at most once).
MAX_LENGTH = 10
#: Side of the parameter net's input.
PARAM_INPUT_SIZE = 64
#: Range variant of the module pool POS-ISP uses.
VARIANT = "posisp"
#: ``executor.STOP``: the padding of a sequence after its EOS.
STOP = ops.STOP


@dataclass
class SampledSequences:
    """Pipelines drawn from the decoder.

    Attributes:
        modules: ``(B, MAX_LENGTH)`` long, indices into the decoder's ``module_names``, ``STOP`` (-1)
            after the sequence's end.
        log_prob: ``(B,)`` sum of the log-probabilities of the drawn tokens (EOS included), with
            gradient to the decoder.
        entropy: ``(B,)`` sum of the per-step entropies of the tempered distributions.
        lengths: ``(B,)`` long, number of modules before EOS.
    """

    modules: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    lengths: torch.Tensor

    def names(self, module_names: Sequence[str]) -> list[list[str]]:
        """The pipelines as lists of module names."""
        return [[module_names[int(m)] for m in row if int(m) != STOP] for row in self.modules]


class SequenceDecoder(nn.Module):
    """Autoregressive, image-independent module-sequence decoder (see the module docstring)."""

    def __init__(self, module_names: Sequence[str] = ops.MODULE_NAMES, hidden: int = 64, step_dim: int = 16,
                 max_length: int = MAX_LENGTH) -> None:
        super().__init__()
        self.module_names = list(module_names)
        n = len(self.module_names)
        if not 1 <= max_length <= n:
            raise ValueError(f"max_length must be in [1, {n}] (each module at most once), got {max_length}")
        self.n_modules, self.max_length, self.hidden = n, max_length, hidden
        self.sos, self.eos = n, n + 1  # token ids; the output's EOS column is ``n``
        self.tokens = nn.Embedding(n + 2, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.steps = nn.Embedding(max_length + 1, step_dim)
        self.film = nn.Linear(step_dim, 4 * hidden)
        self.out = nn.Linear(2 * hidden, n + 1)
        nn.init.zeros_(self.out.weight)  # uniform first choices
        nn.init.ones_(self.out.bias)

    def config(self) -> dict:
        return {"module_names": self.module_names, "hidden": self.hidden, "step_dim": self.steps.embedding_dim,
                "max_length": self.max_length}

    def _step_logits(self, token: torch.Tensor, h: torch.Tensor | None, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: ``token (B,)`` -> logits ``(B, n + 1)`` (modules, EOS) and the new GRU state."""
        y, h = self.gru(self.tokens(token)[:, None], h)
        gamma, beta = torch.tanh(self.film(self.steps(token.new_full((1,), step)))).chunk(2, dim=1)
        return self.out(gamma * y[:, 0] + beta), h

    def sample(self, batch: int, temperature: float = 1.0, *, greedy: bool = False,
               generator: torch.Generator | None = None) -> SampledSequences:
        """Draw ``batch`` pipelines (each its own) from ``softmax(logits / temperature)``; ``greedy``: argmax.

        The log-probabilities are those of the tempered distribution the tokens were drawn from
        (what REINFORCE differentiates).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        device = self.out.weight.device
        n = self.n_modules
        token = torch.full((batch,), self.sos, dtype=torch.long, device=device)
        h = None
        used = torch.zeros(batch, n + 1, dtype=torch.bool, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        modules = torch.full((batch, self.max_length), STOP, dtype=torch.long, device=device)
        log_prob = torch.zeros(batch, device=device)
        ent = torch.zeros(batch, device=device)
        for t in range(self.max_length + 1):
            logits, h = self._step_logits(token, h, t)
            if t == self.max_length:  # every module slot filled: only EOS is left
                used[:, :n] = True
            logp = F.log_softmax((logits / temperature).masked_fill(used, float("-inf")), dim=1)
            if greedy:
                choice = logp.argmax(1)
            else:
                choice = torch.multinomial(logp.exp().detach(), 1, generator=generator)[:, 0]
            active = ~done
            step_logp = logp.gather(1, choice[:, None])[:, 0]
            p = logp.exp()
            step_ent = -(p * logp.masked_fill(used, 0.0)).sum(1)
            log_prob = log_prob + torch.where(active, step_logp, torch.zeros_like(step_logp))
            ent = ent + torch.where(active, step_ent, torch.zeros_like(step_ent))
            is_module = active & (choice < n)
            if t < self.max_length:
                modules[:, t] = torch.where(is_module, choice, torch.full_like(choice, STOP))
            used = used | F.one_hot(torch.where(is_module, choice, torch.full_like(choice, n)), n + 1).bool() & is_module[:, None]
            done = done | (choice == n)
            token = torch.where(choice == n, torch.full_like(choice, self.eos), choice)
            if bool(done.all()):
                break
        lengths = (modules != STOP).sum(1)
        return SampledSequences(modules, log_prob, ent, lengths)

    @torch.no_grad()
    def decode(self) -> list[str]:
        """The inference pipeline: the argmax sequence (module names, EOS removed)."""
        return self.sample(1, greedy=True).names(self.module_names)[0]


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True))


class ParameterNet(nn.Module):
    """Per-image parameters of every module in the pool (see the module docstring).

    ``forward(linear (B, 3, H, W)) -> (B, 27)`` in [0, 1]; :meth:`module_params` maps them into the
    modules' ranges: ``{name: (B, n_params(name))}``.
    """

    def __init__(self, module_names: Sequence[str] = ops.MODULE_NAMES, widths: Sequence[int] = (32, 64, 128, 128, 128),
                 mlp: Sequence[int] = (256, 128, 256), variant: str = VARIANT) -> None:
        super().__init__()
        self.module_names, self.variant = list(module_names), variant
        self.param_sizes = [ops.n_params(m) for m in self.module_names]
        self.n_outputs = sum(self.param_sizes)
        chans = [3, *widths]
        self.features = nn.Sequential(*[_conv(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        dims = [2 * widths[-1], *mlp]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], self.n_outputs))
        self.head = nn.Sequential(*layers)
        self.widths, self.mlp = list(widths), list(mlp)

    def config(self) -> dict:
        return {"module_names": self.module_names, "widths": self.widths, "mlp": self.mlp, "variant": self.variant}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(linear, size=(PARAM_INPUT_SIZE, PARAM_INPUT_SIZE), mode="bilinear", align_corners=False)
        f = self.features(x)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return (torch.tanh(self.head(pooled)) + 1.0) / 2.0

    def module_params(self, unit: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 27)`` in [0, 1] -> ``{name: (B, n)}`` mapped linearly into each module's range."""
        out, start = {}, 0
        for name, n in zip(self.module_names, self.param_sizes, strict=True):
            ranges = ops.param_ranges(name, self.variant)
            low = unit.new_tensor([r[0] for r in ranges])
            high = unit.new_tensor([r[1] for r in ranges])
            out[name] = low + (high - low) * unit[:, start:start + n]
            start += n
        return out


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())




def render(linear: torch.Tensor, modules: torch.Tensor, params: dict[str, torch.Tensor], *, variant: str = VARIANT) -> torch.Tensor:
    """Run each image's own pipeline.

    Args:
        linear: ``(B, 3, H, W)`` in [0, 1].
        modules: ``(B, L)`` long, pool indices in order, ``STOP`` (-1) = nothing at that step.
        params: ``{name: (B, n)}`` in range (:meth:`ParameterNet.module_params`).

    Returns:
        ``(B, 3, H, W)`` clipped to [0, 1]; differentiable in ``linear`` and ``params``.
    """
    x = linear
    for t in range(modules.shape[1]):
        if bool((modules[:, t] != STOP).any()):
            x = ops.apply_stage(x, modules[:, t], params, variant=variant)
    return x.clamp(0, 1)


class PosISP(nn.Module):
    """The inference model: the decoder's argmax pipeline with per-image parameters from the parameter net.

    ``forward(linear (B, 3, H, W)) -> (B, 3, H, W)``; :meth:`pipeline` is the decoded module order
    (the same for every image); ``denoise_window`` is the Denoise search window it was trained with.
    """

    method = "posisp"

    def __init__(self, decoder: SequenceDecoder | None = None, param_net: ParameterNet | None = None,
                 denoise_window: int = ops.modules.NLM_SEARCH) -> None:
        super().__init__()
        self.decoder = decoder or SequenceDecoder()
        self.param_net = param_net or ParameterNet(self.decoder.module_names)
        if self.param_net.module_names != self.decoder.module_names:
            raise ValueError("PosISP: decoder and parameter net must share module_names")
        self.denoise_window = int(denoise_window)
        self._pipeline: torch.Tensor | None = None  # decoded once per eval() (the decoder sees no image)

    def config(self) -> dict:
        return {"decoder": self.decoder.config(), "param_net": self.param_net.config(), "denoise_window": self.denoise_window}

    def train(self, mode: bool = True) -> PosISP:
        self._pipeline = None
        return super().train(mode)

    def pipeline_indices(self) -> torch.Tensor:
        """``(L,)`` long: the argmax pipeline (recomputed after any ``train()``/``eval()`` call)."""
        if self._pipeline is None or self.training:
            self._pipeline = self.decoder.sample(1, greedy=True).modules[0].detach()
        return self._pipeline

    def pipeline(self) -> list[str]:
        """The decoded module names in order."""
        return [self.decoder.module_names[int(m)] for m in self.pipeline_indices() if int(m) != STOP]

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        modules = self.pipeline_indices().to(linear.device)[None].expand(linear.shape[0], -1)
        with ops.modules.nlm_search_window(self.denoise_window):
            return render(linear, modules, self.param_net.module_params(self.param_net(linear)))


__all__ = ["MAX_LENGTH", "PARAM_INPUT_SIZE", "VARIANT", "ParameterNet", "PosISP", "SampledSequences", "SequenceDecoder",
           "n_parameters", "render"]
