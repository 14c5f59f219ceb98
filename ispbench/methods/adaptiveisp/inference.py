"""Run a trained AdaptiveISP policy: per image the pipeline it chose (as data), outputs, timings.

At test time the module choice is greedy (argmax of the selector's softmax) and the networks are in
eval mode (no dropout, BatchNorm running statistics). ``stages=k`` stops every pipeline after ``k``
stages (paper Table 5: the same model evaluated after 1..5 stages). Checkpoints trained with any
``lambda_c`` (Table 4) load the same way.

Example:
    >>> policy = load_policy()                                    # doctest: +SKIP
    >>> run = run_policy(policy, linear)                          # linear: (B, 3, H, W) in [0, 1]
    >>> run.pipelines[0]
    [{'stage': 0, 'module': 'ccm', 'params': [...]}, {'stage': 1, 'module': 'sharpen_blur', ...}, ...]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ispbench.ops.modules import NLM_SEARCH, nlm_search_window
from ispbench.paths import WEIGHTS_DIR
from ispbench.training.checkpoint import safe_load

from . import agent
from .networks import PolicyNet

#: The shipped accuracy-oriented (lambda_c = 0) checkpoint trained on the embedded low-light split.
DEFAULT_WEIGHTS = WEIGHTS_DIR / "adaptiveisp_embedded.pt"
#: Input settings of policy files whose config predates ``stage_plane`` / ``contrast_stat`` (``t / T``, std).
LEGACY_STAGE_PLANE, LEGACY_CONTRAST_STAT = "fraction", "std"


@dataclass
class PolicyRun:
    """Result of :func:`run_policy` on a batch of B images.

    Attributes:
        outputs: (B, 3, H, W) final images, clipped to [0, 1].
        pipelines: per image, the list of ``{"stage": t, "module": name, "params": [floats]}`` it ran
            (a STOP ends the list early).
        module_index: (B, stages) LongTensor of executor indices per stage (-1 = skipped / stopped).
        stage_images: when ``return_stages``: ``[input, after stage 1, ...]`` each (B, 3, H, W).
        policy_ms: per stage, wall time of the policy network per image (ms).
        isp_ms: per stage, wall time of the ISP modules per image (ms).
        cost_ms: (B,) sum of the paper's Table 4 module times of each image's pipeline.
    """

    outputs: torch.Tensor
    pipelines: list[list[dict]]
    module_index: torch.Tensor
    stage_images: list[torch.Tensor] = field(default_factory=list)
    policy_ms: list[float] = field(default_factory=list)
    isp_ms: list[float] = field(default_factory=list)
    cost_ms: torch.Tensor | None = None

    @property
    def stage_ms(self) -> list[float]:
        """Per stage, policy + ISP wall time per image (ms)."""
        return [p + i for p, i in zip(self.policy_ms, self.isp_ms, strict=True)]


def load_policy(path: str | Path | None = None, device: str = "cpu") -> PolicyNet:
    """Load a policy from an exported file (``--export``) or a training checkpoint ``last.pt``.

    The config's ``stage_plane`` / ``contrast_stat`` say how the policy's input was built; a file
    without them (written before the options existed, e.g. the first shipped embedded policy) gets
    the former behaviour: ``"fraction"`` (``t / T``) and ``"std"``.

    Raises:
        FileNotFoundError: with the command that trains one, when ``path`` does not exist.
    """
    path = Path(path or DEFAULT_WEIGHTS)
    if not path.exists():
        raise FileNotFoundError(
            f"AdaptiveISP policy {path} not found; train one with "
            f"`ispbench train adaptiveisp --iterations 600 --lr 3e-4 --param-heads shared --export {path}`"
        )
    payload = safe_load(path, what="AdaptiveISP policy")
    if "state_dict" in payload and "config" in payload:
        config, state = payload["config"], payload["state_dict"]
    elif "policy" in payload and "policy_config" in payload:
        config, state = payload["policy_config"], payload["policy"]
    else:
        raise ValueError(f"{path}: not an AdaptiveISP policy export or training checkpoint (keys {sorted(payload)[:8]})")
    policy = PolicyNet(
        config["module_names"], use_stop=config["use_stop"], param_heads=config["param_heads"],
        param_sizes=config["param_sizes"], disabled_modules=config.get("disabled_modules", ()),
        mask_reuse=config.get("mask_reuse", False),
        # files written before these options existed were trained with t / T and the luminance std
        stage_plane=config.get("stage_plane", LEGACY_STAGE_PLANE), contrast_stat=config.get("contrast_stat", LEGACY_CONTRAST_STAT),
        denoise_window=int(config.get("denoise_window", NLM_SEARCH)),
    )
    policy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    policy.metadata = payload.get("metadata", {"train_args": payload.get("args", {})})
    return policy.to(device).eval()


@torch.no_grad()
def run_policy(
    policy: PolicyNet,
    linear_images: torch.Tensor,
    T: int = 5,
    *,
    stages: int | None = None,
    greedy: bool = True,
    epsilon: float = 0.0,
    generator: torch.Generator | None = None,
    return_stages: bool = False,
    forbid_reuse: bool | None = None,
    epsilon_mode: str = "mixed",
) -> PolicyRun:
    """Process linear images with the policy's per-image pipelines.

    Args:
        policy: a :class:`PolicyNet` (put into eval mode here).
        linear_images: (B, 3, H, W) linear RGB in [0, 1].
        T: the number of stages the policy was trained for (its stage plane holds ``t`` or ``t / T``,
            as ``policy.stage_plane`` says).
        stages: run only the first ``stages <= T`` stages (Table 5); default ``T``.
        greedy: argmax module choice (test time); ``False`` samples (with ``epsilon``).
        return_stages: keep every intermediate image (for figures).
        forbid_reuse: mask the modules this image already used (a hard version of the reuse
            penalty, which in the paper "constrains the policy network picking the same ISP module no
            more than once"). ``None`` (default): as the policy was trained (``policy.mask_reuse``).
        epsilon_mode: how ``epsilon`` explores when not ``greedy`` (:func:`.agent.sample_actions`).
    """
    if forbid_reuse is None:
        forbid_reuse = bool(getattr(policy, "mask_reuse", False))
    agent._check_images(linear_images, "linear_images")
    stages = T if stages is None else int(stages)
    if not 0 <= stages <= T:
        raise ValueError(f"run_policy: stages must be in [0, T={T}], got {stages}")
    with nlm_search_window(getattr(policy, "denoise_window", NLM_SEARCH)):  # the window it was trained with
        policy.eval()
        device = next(policy.parameters()).device
        x = linear_images.to(device).float()
        b, n = x.shape[0], policy.n_modules
        used = torch.zeros(b, n, device=device)
        stopped = torch.zeros(b, dtype=torch.bool, device=device)
        pipelines: list[list[dict]] = [[] for _ in range(b)]
        indices, images, policy_ms, isp_ms = [], [x.clamp(0, 1)] if return_stages else [], [], []
        costs = agent.module_costs(policy.module_names).to(device)
        cost = torch.zeros(b, device=device)
        for t in range(stages):
            t0 = time.perf_counter()
            stage = torch.full((b,), t, device=device)
            logits, raw = policy(agent.policy_state(x, used, stage, T, stage_plane=getattr(policy, "stage_plane", LEGACY_STAGE_PLANE)))
            valid = policy.action_mask
            if forbid_reuse:
                valid = agent.reuse_mask(used, policy.n_actions, policy.action_mask)
                logits = logits.masked_fill(~valid, -1e9)
            params = policy.module_params(raw)
            actions = agent.sample_actions(logits, epsilon=epsilon, greedy=greedy, generator=generator, valid=valid,
                                           mode=epsilon_mode)
            t1 = time.perf_counter()
            midx = agent.to_module_index(actions, n, stopped)
            x = agent.apply_modules(x, midx, params, policy.module_names, clamp=True)
            t2 = time.perf_counter()
            policy_ms.append((t1 - t0) * 1000 / b)
            isp_ms.append((t2 - t1) * 1000 / b)
            cost += torch.where(midx >= 0, costs[midx.clamp(min=0)], torch.zeros_like(cost))
            for i in range(b):
                m = int(midx[i])
                if m >= 0:
                    name = policy.module_names[m]
                    pipelines[i].append({"stage": t, "module": name, "params": [round(float(v), 5) for v in params[name][i]]})
            stopped = stopped | (actions >= n)
            used = agent.mark_used(used, midx)
            indices.append(midx)
            if return_stages:
                images.append(x.clamp(0, 1))
        module_index = torch.stack(indices, 1) if indices else torch.zeros(b, 0, dtype=torch.long)
        return PolicyRun(x.clamp(0, 1), pipelines, module_index.cpu(), images, policy_ms, isp_ms, cost.cpu())


def make_isp_fn(
    policy: PolicyNet, T: int = 5, stages: int | None = None, forbid_reuse: bool | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``linear (B, 3, H, W) -> output (B, 3, H, W)`` for :func:`ispbench.tasks.detection_eval.evaluate_isp`."""

    def isp(linear: torch.Tensor) -> torch.Tensor:
        return run_policy(policy, linear, T, stages=stages, forbid_reuse=forbid_reuse).outputs

    return isp


def module_frequencies(pipelines: list[list[dict]], module_names: list[str]) -> dict[str, float]:
    """Fraction of images whose pipeline contains each module (can exceed 1 with reuse, as Table 8)."""
    n = max(len(pipelines), 1)
    return {name: sum(step["module"] == name for p in pipelines for step in p) / n for name in module_names}
