"""Training recipes of the AdaptiveISP-chapter models (the policy and the two baselines).

The notebooks retrain with these when ``retrain=True``; each shipped checkpoint's model card
(``ispbench/weights/adaptiveisp_embedded.md``, ``hpo_embedded.md``, ``attention_embedded.md``)
states the same settings. Two named policy recipes (notebook parameter ``recipe``):

* ``"paper"`` (:data:`PAPER_RECIPE`, the ``paper`` profile): the authors' code, i.e.
  :class:`~ispbench.methods.adaptiveisp.train.Args`' defaults: per-module heads, Denoise allowed,
  heads maximise ``Q``, no hard reuse mask, identity-initialised heads, lr 3e-5 with x0.1 per third,
  discount 1, gradient-norm clip 1e-5, epsilon mixed into the softmax, stage plane ``t``, luminance
  variance, batch 8. Needs the real dataset (``data_root``).
* ``"cpu"`` (:data:`CPU_RECIPE`, the default; the shipped embedded policy's): the short-CPU-run shortcuts
  of :data:`CPU_SHORTCUTS` (shared heads, hard reuse mask, heads warm-started from the shipped HPO
  baseline, normalised advantages, per-stage reward for the parameters, ...).

Example:
    >>> for name, (ours, paper, why) in CPU_SHORTCUTS.items():     # a model card's table
    ...     print(f"| {name} | {ours} | {paper} | {why} |")         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

#: Whether the CPU recipe lets the policy pick Denoise (our NLM costs seconds per image forward + backward on a
#: CPU); flip to ``True`` once Denoise is fast enough. The paper recipe always allows it.
CPU_ALLOWS_DENOISE = False
#: Settings of the shipped embedded policy's recipe beyond :data:`POLICY_SETTINGS`; the selector learning rate
#: equals the notebook's ``lr`` (:func:`policy_train_args`).
EMBEDDED_POLICY_RECIPE = dict(mask_reuse=True, param_init="hpo", advantage_norm=True, param_objective="reward",
                              entropy_coef=0.2, lr_decay=False)
#: Settings of the CPU recipe on every dataset: shared parameter heads, no Denoise (unless :data:`CPU_ALLOWS_DENOISE`).
POLICY_SETTINGS = dict(batch_size=8, param_heads="shared", disabled_modules="" if CPU_ALLOWS_DENOISE else "denoise")
#: The CPU recipe's numerical settings where the authors' code differs (our former ``Args`` defaults, kept so
#: the CPU recipe trains as the shipped embedded policy was trained).
CPU_NUMERICS = dict(gamma=0.99, grad_clip=1.0, epsilon_mode="replace", stage_plane="fraction", contrast_stat="std")
#: The ``cpu`` recipe (overrides of ``train.Args``; plus ``selector_lr`` = the notebook's ``lr``).
CPU_RECIPE: dict[str, Any] = {**POLICY_SETTINGS, **EMBEDDED_POLICY_RECIPE, **CPU_NUMERICS}
#: The ``paper`` recipe: the authors' code settings (= ``train.Args``' defaults, spelled out). ``lr`` is the
#: paper's; :func:`policy_train_args` uses the notebook's ``lr`` (the ``paper`` profile sets 3e-5).
PAPER_RECIPE: dict[str, Any] = dict(
    batch_size=8, param_heads="per_module", disabled_modules="", mask_reuse=False, param_init="identity",
    advantage_norm=False, param_objective="q", entropy_coef=0.05, lr=3e-5, selector_lr=0.0, lr_decay=True,
    gamma=1.0, grad_clip=1e-5, epsilon=0.05, epsilon_mode="mixed", stage_plane="index", contrast_stat="variance",
    param_warmup=0,
)
#: The named policy recipes.
RECIPES: dict[str, dict[str, Any]] = {"paper": PAPER_RECIPE, "cpu": CPU_RECIPE}
#: Every setting of the ``cpu`` recipe that differs from the authors' code: name -> (cpu value, paper value, why).
CPU_SHORTCUTS: dict[str, tuple[Any, Any, str]] = {
    "param_heads": ("shared", "per_module", "one shared 4096-128 layer: 5x fewer weights, the shipped file stays under 10 MB"),
    "disabled_modules": (POLICY_SETTINGS["disabled_modules"], "", "our differentiable NLM Denoise costs seconds per image "
                         "forward + backward on a CPU (the paper's Table 4 never selects it)"),
    "mask_reuse": (True, False, "a hard no-reuse mask: short runs otherwise pick one module at every stage"),
    "param_init": ("hpo", "identity", "heads start at the shipped HPO baseline's parameters (a warm start; not independent "
                   "of that baseline)"),
    "advantage_norm": (True, False, "the TD advantage is in reward units (0-100) and dwarfs the entropy term"),
    "param_objective": ("reward", "q", "heads maximise the stage's own reward, not r + gamma V(s'): a few hundred "
                        "iterations leave the critic too poor to follow"),
    "entropy_coef": (0.2, 0.05, "slows the selector's collapse onto one pipeline"),
    "lr_decay": (False, True, "a short run, model selection on val snapshots instead"),
    "lr": ("notebook lr (1e-4)", 3e-5, "a short run; the selector at the same rate as the heads"),
    "gamma": (0.99, 1.0, "our former default, kept for the shipped policy's recipe"),
    "grad_clip": (1.0, 1e-5, "our former default: 1e-5 clips every step and Adam's eps then damps the updates"),
    "epsilon_mode": ("replace", "mixed", "our former exploration (replace the sample; REINFORCE on log softmax)"),
    "stage_plane": ("fraction", "index", "our former input (t / T); the shipped policy was trained with it"),
    "contrast_stat": ("std", "variance", "our former value input (luminance std)"),
}
#: Learning rate of each baseline's trainer.
BASELINE_LR = {"hpo": 0.05, "attention": 1e-3}
#: The baselines' fixed pipeline: the paper's ten stages without Denoise (see the Table 5 notebook).
BASELINE_PIPELINE = "exposure,white_balance,ccm,sharpen_blur,gamma,tone,contrast,saturation,desaturation"
#: Notebook parameters a recipe reads (``recipe`` and ``profile`` are optional, see :func:`recipe_name`).
RECIPE_PARAMETERS = ("seed", "device", "data_root", "dataset", "detector_weights", "imgsz", "iterations", "lr")


def _common(params: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in RECIPE_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"params: missing notebook parameter(s) {missing}; a recipe needs {list(RECIPE_PARAMETERS)}")
    data_root = params["data_root"]
    return dict(seed=params["seed"], device=params["device"], data_root=data_root,
                dataset=params["dataset"] if data_root else "", detector_weights=params["detector_weights"],
                imgsz=params["imgsz"], iterations=params["iterations"],
                # Table 9 (limited data): the first n_train training images; absent elsewhere, so other runs keep their hash
                **({"n_train": params["n_train"]} if params.get("n_train") else {}))


def recipe_name(params: Mapping[str, Any]) -> str:
    """The policy recipe a notebook asks for: its ``recipe`` parameter, else ``"paper"`` under the ``paper`` profile
    and ``"cpu"`` otherwise.

    Raises:
        ValueError: an unknown recipe.
    """
    name = params.get("recipe") or ("paper" if params.get("profile") == "paper" else "cpu")
    if name not in RECIPES:
        raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {name!r}")
    return name


def policy_train_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides of :class:`~ispbench.methods.adaptiveisp.train.Args` for retraining the policy.

    Args:
        params: the notebook's parameters (``seed``, ``device``, ``data_root``, ``dataset``,
            ``detector_weights``, ``imgsz``, ``iterations``, ``lr``; ``recipe`` and ``profile``
            pick the recipe, :func:`recipe_name`).

    Returns:
        Keyword arguments for ``train.Args`` (``lambda_c`` and the reuse settings are added by
        :func:`ispbench.chapters.adaptiveisp.adaptiveisp_policy`): the recipe's settings with the
        notebook's ``lr`` (and, for ``cpu``, ``selector_lr`` = ``lr``).

    Raises:
        ValueError: ``recipe="paper"`` without ``data_root`` (the paper recipe trains on the real
            dataset; the embedded data gets the ``cpu`` recipe), an unknown recipe, a missing parameter.

    Example:
        >>> p = dict(seed=0, device="cpu", data_root="", dataset="lod", detector_weights="", imgsz=160,
        ...          iterations=10, lr=1e-4)
        >>> policy_train_args(p)["selector_lr"], policy_train_args(p)["dataset"]
        (0.0001, '')
    """
    name = recipe_name(params)
    common = _common(params)
    if name == "paper" and not params["data_root"]:
        raise ValueError(
            "recipe 'paper' (the authors' settings: 100k iterations at 512 px, per-module heads, Denoise) needs the "
            "real dataset: set data_root to a prepared dataset (`ispbench data prepare lod --root DIR`), or use "
            "recipe='cpu' for the embedded data"
        )
    recipe = dict(RECIPES[name])
    recipe["lr"] = params["lr"]
    if name == "cpu":
        recipe["selector_lr"] = params["lr"]
    return dict(**common, progress_bar=False, **recipe)


def baseline_train_args(params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Overrides of :class:`ispbench.detection_baselines.train.Args` for retraining the ``hpo`` or ``attention`` baseline.

    Raises:
        ValueError: unknown ``method``.
    """
    if method not in BASELINE_LR:
        raise ValueError(f"method: expected one of {sorted(BASELINE_LR)}, got {method!r}")
    return dict(**_common(params), batch_size=8, progress_bar=False, pipeline=BASELINE_PIPELINE,
                lr=BASELINE_LR[method])


__all__ = ["BASELINE_LR", "BASELINE_PIPELINE", "CPU_ALLOWS_DENOISE", "CPU_NUMERICS", "CPU_RECIPE", "CPU_SHORTCUTS",
           "EMBEDDED_POLICY_RECIPE", "PAPER_RECIPE", "POLICY_SETTINGS", "RECIPES", "RECIPE_PARAMETERS",
           "baseline_train_args", "policy_train_args", "recipe_name"]
