"""Training recipes of the shipped AdaptiveISP-chapter models (the policy and the two baselines).

The notebooks retrain with these when ``retrain=True``; each shipped checkpoint's model card
(``ispbench/weights/adaptiveisp_embedded.md``, ``hpo_embedded.md``, ``attention_embedded.md``)
states the same settings.

* Embedded data: the shipped policy's CPU recipe (hard reuse mask, heads warm-started from the
  shipped HPO baseline, normalised advantages, per-stage reward for the parameters).
* Real data (``data_root`` set): the paper's settings (selector at the same learning rate as the
  parameter heads, identity-initialised heads), i.e. :class:`~ispbench.methods.adaptiveisp.train.Args`' defaults.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Settings of the shipped embedded policy that differ from ``train.Args``' (paper) defaults; the
#: selector learning rate equals the notebook's ``lr`` (:func:`policy_train_args`).
EMBEDDED_POLICY_RECIPE = dict(mask_reuse=True, param_init="hpo", advantage_norm=True, param_objective="reward",
                              entropy_coef=0.2, lr_decay=False)
#: Settings shared by the policy on every dataset: shared parameter heads, no Denoise (seconds per image on a CPU).
POLICY_SETTINGS = dict(batch_size=8, param_heads="shared", disabled_modules="denoise")
#: The baselines' fixed pipeline: the paper's ten stages without Denoise (see the Table 5 notebook).
BASELINE_PIPELINE = "exposure,white_balance,ccm,sharpen_blur,gamma,tone,contrast,saturation,desaturation"
#: Learning rate of each baseline's trainer.
BASELINE_LR = {"hpo": 0.05, "attention": 1e-3}
#: Notebook parameters a recipe reads.
RECIPE_PARAMETERS = ("seed", "device", "data_root", "dataset", "detector_weights", "imgsz", "iterations", "lr")


def _common(params: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in RECIPE_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"params: missing notebook parameter(s) {missing}; a recipe needs {list(RECIPE_PARAMETERS)}")
    data_root = params["data_root"]
    return dict(seed=params["seed"], device=params["device"], data_root=data_root,
                dataset=params["dataset"] if data_root else "", detector_weights=params["detector_weights"],
                imgsz=params["imgsz"], iterations=params["iterations"])


def policy_train_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides of :class:`~ispbench.methods.adaptiveisp.train.Args` for retraining the policy.

    Args:
        params: the notebook's parameters (``seed``, ``device``, ``data_root``, ``dataset``,
            ``detector_weights``, ``imgsz``, ``iterations``, ``lr``).

    Returns:
        Keyword arguments for ``train.Args`` (``lambda_c`` and the reuse settings are added by
        :func:`ispbench.chapters.adaptiveisp.adaptiveisp_policy`).

    Example:
        >>> p = dict(seed=0, device="cpu", data_root="", dataset="lod", detector_weights="", imgsz=160,
        ...          iterations=10, lr=1e-4)
        >>> policy_train_args(p)["selector_lr"], policy_train_args(p)["dataset"]
        (0.0001, '')
    """
    recipe = dict(selector_lr=params["lr"], **EMBEDDED_POLICY_RECIPE) if not params.get("data_root") else {}
    return dict(**_common(params), lr=params["lr"], **POLICY_SETTINGS, progress_bar=False, **recipe)


def baseline_train_args(params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Overrides of :class:`ispbench.detection_baselines.train.Args` for retraining the ``hpo`` or ``attention`` baseline.

    Raises:
        ValueError: unknown ``method``.
    """
    if method not in BASELINE_LR:
        raise ValueError(f"method: expected one of {sorted(BASELINE_LR)}, got {method!r}")
    return dict(**_common(params), batch_size=8, progress_bar=False, pipeline=BASELINE_PIPELINE,
                lr=BASELINE_LR[method])


__all__ = ["BASELINE_LR", "BASELINE_PIPELINE", "EMBEDDED_POLICY_RECIPE", "POLICY_SETTINGS", "RECIPE_PARAMETERS",
           "baseline_train_args", "policy_train_args"]
