"""ReconfigISP baseline (Yu et al., ICCV 2021): a differentiable (DARTS) search over ISP module choices.

ReconfigISP is a comparison method of AdaptiveISP (Table 1) and POS-ISP. It searches an ISP's
*architecture* for a frozen task network: every stage of a supernet runs all candidate modules on
the stage's input and mixes their outputs with softmax architecture weights (DARTS, Liu et al.
ICLR 2019); the architecture logits and the modules' parameters are optimised through the task
loss; the search ends by keeping each stage's strongest op, whose parameters are then fine-tuned.
Our re-implementation from the paper's description, not the authors' code, on the ten-module pool
of :mod:`ispbench.ops` (the paper searches over its own ISP modules and trains proxy networks for
the non-differentiable ones; ours are all differentiable, so no proxy is needed):

* :class:`ReconfigSupernet`: ``stages`` stages (default 5, AdaptiveISP's pipeline length); each
  stage's candidates are the pool's modules plus a ``skip`` (identity) op; the architecture logits
  ``alpha`` are ``(stages, n_ops)`` and each stage has its own image-independent parameters per
  module (raw values squashed into range with :func:`ispbench.ops.squash`, starting at each module's
  identity as :class:`~.hpo.HPOISP` does). The forward pass of stage ``t`` is
  ``x_{t+1} = sum_k softmax(alpha_t)_k op_k(x_t; theta_{t,k})`` (DARTS' mixed op); the output is
  clipped to [0, 1].
* :func:`discretise_architecture` / :meth:`ReconfigSupernet.discretise`: per stage in order the op of
  largest ``alpha``, **except that a module already chosen at an earlier stage is passed over for the
  stage's best not-yet-used op** (``skip`` may repeat); skips are removed. The fixed pipeline's
  models (:class:`~.hpo.HPOISP`) key parameters by module name, so a module can appear once; the
  rule keeps the chosen op's learned parameters. (DARTS' argmax may repeat a module; ours then
  takes the runner-up at the later stage.)
* :class:`ReconfigDiscreteISP`: the discrete result, an :class:`~.hpo.HPOISP` (method
  ``"reconfigisp"``) whose parameters are those the search learned for the chosen ops; it also
  records the Denoise search window it was searched with (``denoise_window``, applied in its
  forward pass). :func:`~.models.load_baseline` and :func:`~.models.make_isp_fn` read it like HPO.

The trainer (first-order DARTS bilevel search, then HPO-style fine-tuning) is
:mod:`ispbench.detection_baselines.reconfigisp_train`::

    ispbench train reconfigisp --search-iterations 300 --finetune-iterations 300 --denoise-window 5 \\
        --export ispbench/weights/reconfigisp_embedded.pt

Cost: the supernet runs every op at every stage (50 module calls for 5 stages of 11 ops, 5 of them
Denoise's non-local means). One search iteration (an architecture step on a held-out batch plus a
module-parameter step on a training batch, each a forward and backward pass through the supernet
and the frozen embedded detector) at 160 px, batch 8, one thread (``torch.set_num_threads(1)``),
measured as CPU time on the 2-core development machine while other jobs held it (load 6-9, so
wall time was 1.5-2x these): Denoise window 11 (the authors') 5.2-7.4 s, window 5 3.2-3.4 s,
window 3 1.9 s, without Denoise (``--modules`` minus ``denoise``) 1.5 s, of which the detector's
two forward and backward passes are 0.5 s. One fine-tune iteration of a 5-module pipeline (HPO's
step) 0.3 s (0.7 s with Denoise at window 11). A 30 + 20 iteration run on 64 embedded images at
window 5 (``ispbench train reconfigisp --search-iterations 30 --finetune-iterations 20 --n-train 64
--denoise-window 5 --threads 1``) took 4.3 s per search and 0.44 s per fine-tune iteration (wall).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ispbench import ops
from ispbench.ops.checks import require_finite, unchecked
from ispbench.ops.modules import nlm_search_window

from .hpo import HPOISP
from .pipeline import check_pipeline

#: The identity op every stage may choose (removed at discretisation).
SKIP = "skip"
#: Stages of the supernet by default (AdaptiveISP's maximum pipeline length T = 5).
DEFAULT_STAGES = 5


class ReconfigDiscreteISP(HPOISP):
    """The discretised ReconfigISP pipeline: an :class:`~.hpo.HPOISP` (one parameter vector for every image).

    ``forward(linear (B, 3, H, W)) -> (B, 3, H, W)`` under :func:`ispbench.ops.modules.nlm_search_window`
    ``(denoise_window)``, the window the search and fine-tuning used (11 = the authors').

    Example:
        >>> isp = ReconfigDiscreteISP(["exposure", "gamma"])
        >>> isp(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    method = "reconfigisp"

    def __init__(self, pipeline: Sequence[str], denoise_window: int = ops.modules.NLM_SEARCH) -> None:
        super().__init__(pipeline)
        _check_window(denoise_window)
        self.denoise_window = int(denoise_window)

    def config(self) -> dict:
        return {"method": self.method, "pipeline": self.pipeline, "kwargs": {"denoise_window": self.denoise_window}}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        with nlm_search_window(self.denoise_window):
            return super().forward(linear)


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"denoise_window must be an odd int >= 1, got {window!r}")


def discretise_architecture(alpha: torch.Tensor, op_names: Sequence[str]) -> list[str]:
    """The op kept at each stage: the largest logit among ``skip`` and the modules not chosen at an earlier stage.

    Args:
        alpha: architecture logits ``(stages, n_ops)`` (or their softmax: only the order per row matters).
        op_names: the ``n_ops`` op names of the columns (module names and :data:`SKIP`).

    Returns:
        One op name per stage (``skip`` included; :meth:`ReconfigSupernet.discretise` drops them). Ties
        go to the lower column.

    Example:
        >>> discretise_architecture(torch.tensor([[3.0, 1.0, 0.0], [2.0, 1.5, 0.0], [0.0, 0.0, 1.0]]),
        ...                         ["exposure", "gamma", "skip"])
        ['exposure', 'gamma', 'skip']
    """
    if alpha.ndim != 2 or alpha.shape[1] != len(op_names):
        raise ValueError(f"alpha: expected (stages, {len(op_names)}) logits, got {tuple(alpha.shape)}")
    chosen: list[str] = []
    for row in alpha.detach().cpu().double().tolist():
        ranking = sorted(range(len(op_names)), key=lambda k: (-row[k], k))
        pick = next(op_names[k] for k in ranking if op_names[k] == SKIP or op_names[k] not in chosen)
        chosen.append(pick)
    return chosen


class ReconfigSupernet(nn.Module):
    """DARTS supernet over ISP modules: ``stages`` mixed stages of the modules plus ``skip``.

    ``forward(linear (B, 3, H, W) in [0, 1]) -> (B, 3, H, W)`` in [0, 1]: each stage's output is the
    softmax(``alpha[t]``)-weighted sum of every candidate's output on the stage's input.

    Args:
        stages: number of stages ``T`` (>= 1).
        modules: the candidate modules (distinct names of :data:`ispbench.ops.MODULE_NAMES`); every stage
            also has :data:`SKIP`.
        denoise_window: Denoise's non-local-means search window (odd; 11 = the authors'), a speed option
            (:func:`ispbench.ops.modules.nlm_search_window`).

    Attributes:
        op_names: the ``n_ops = len(modules) + 1`` columns of ``alpha`` (modules, then ``skip``).
        alpha: ``(stages, n_ops)`` architecture logits (``nn.Parameter``), DARTS' init ``1e-3 N(0, 1)``.
        raw: per stage a ``ParameterDict`` ``{module: (n_params,)}`` of raw module parameters.

    Example:
        >>> net = ReconfigSupernet(stages=2, modules=["exposure", "gamma"])
        >>> net(torch.rand(2, 3, 16, 16)).shape, tuple(net.alpha.shape)
        (torch.Size([2, 3, 16, 16]), (2, 3))
    """

    method = "reconfigisp"

    def __init__(self, stages: int = DEFAULT_STAGES, modules: Sequence[str] = ops.MODULE_NAMES,
                 denoise_window: int = ops.modules.NLM_SEARCH) -> None:
        super().__init__()
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
            raise ValueError(f"stages must be an int >= 1, got {stages!r}")
        modules = check_pipeline(modules, "ReconfigSupernet")
        if not modules or len(set(modules)) != len(modules):
            raise ValueError(f"ReconfigSupernet: modules must be distinct and at least one, got {modules}")
        _check_window(denoise_window)
        self.stages, self.modules_pool, self.denoise_window = stages, list(modules), int(denoise_window)
        self.op_names: list[str] = [*self.modules_pool, SKIP]
        self.alpha = nn.Parameter(1e-3 * torch.randn(stages, len(self.op_names)))
        self.raw = nn.ModuleList(
            nn.ParameterDict({m: nn.Parameter(ops.identity_raw(m, ops.n_params(m))) for m in self.modules_pool})
            for _ in range(stages)
        )

    def config(self) -> dict:
        return {"method": self.method, "stages": self.stages, "modules": self.modules_pool,
                "denoise_window": self.denoise_window}

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture logits (the outer, held-out-batch problem of the bilevel search)."""
        return [self.alpha]

    def module_parameters(self) -> list[nn.Parameter]:
        """Every stage's raw module parameters (the inner, training-batch problem)."""
        return [p for stage in self.raw for p in stage.values()]

    def weights(self) -> torch.Tensor:
        """``softmax(alpha)`` per stage, ``(stages, n_ops)``."""
        return torch.softmax(self.alpha, dim=1)

    def stage_params(self, t: int, batch: int = 1) -> dict[str, torch.Tensor]:
        """Stage ``t``'s in-range parameters ``{module: (batch, n)}`` (the same row for every image)."""
        return {m: ops.squash(m, raw.view(1, -1)).expand(batch, -1) for m, raw in self.raw[t].items()}

    def forward(self, linear: torch.Tensor) -> torch.Tensor:
        require_finite("linear", linear)
        if linear.ndim != 4 or linear.shape[1] != 3:
            raise ValueError(f"linear: expected (B, 3, H, W), got {tuple(linear.shape)}")
        w = self.weights().to(linear.dtype)
        x = linear
        with nlm_search_window(self.denoise_window), unchecked():  # input checked; stage outputs stay finite
            for t in range(self.stages):
                params = self.stage_params(t, x.shape[0])
                mixed = w[t, -1] * x  # skip
                for k, m in enumerate(self.modules_pool):
                    mixed = mixed + w[t, k] * ops.apply(m, x, params[m], clamp=True)
                x = mixed
        return x.clamp(0, 1)

    def architecture(self) -> list[str]:
        """The op kept at each stage (:func:`discretise_architecture`; ``skip`` included)."""
        return discretise_architecture(self.alpha, self.op_names)

    def discretise(self) -> ReconfigDiscreteISP:
        """The fixed pipeline of :meth:`architecture` without skips, with each chosen op's learned raw parameters.

        Returns a new :class:`ReconfigDiscreteISP` (on the supernet's device; no shared tensors).
        """
        arch = self.architecture()
        pipeline = [op for op in arch if op != SKIP]
        model = ReconfigDiscreteISP(pipeline, self.denoise_window).to(self.alpha.device)
        with torch.no_grad():
            for t, op in enumerate(arch):
                if op != SKIP:
                    model.raw[op].copy_(self.raw[t][op])
        return model


__all__ = ["DEFAULT_STAGES", "SKIP", "ReconfigDiscreteISP", "ReconfigSupernet", "discretise_architecture"]
