"""ISP operations: AdaptiveISP's ten differentiable modules and the stage executor.

``from ispbench.ops import apply, MODULE_NAMES, apply_stage`` ... The finishing pipeline
(``ispbench.ops.finishing``), raw-domain ops (``raw``, ``dng``) and the benchmark (``bench``)
are sub-modules imported on demand (not here, to keep ``import ispbench.ops`` light).
"""

from ispbench.ops.color import LUM_WEIGHTS, hsv_to_rgb, luminance, rgb_to_hsv
from ispbench.ops.executor import STOP, apply_pipeline, apply_stage
from ispbench.ops.modules import (
    KERNELS,
    MAX_PARAMS,
    MODULE_COST_MS,
    MODULE_NAMES,
    PARAM_RANGES,
    PARAM_RANGES_CODE,
    PARAM_RANGES_POSISP,
    VARIANTS,
    apply,
    clamp_params,
    identity_params,
    identity_raw,
    n_params,
    param_ranges,
    squash,
    unsquash,
)

__all__ = [
    "LUM_WEIGHTS",
    "KERNELS",
    "MAX_PARAMS",
    "MODULE_COST_MS",
    "MODULE_NAMES",
    "PARAM_RANGES",
    "PARAM_RANGES_CODE",
    "PARAM_RANGES_POSISP",
    "STOP",
    "VARIANTS",
    "apply",
    "apply_pipeline",
    "apply_stage",
    "clamp_params",
    "hsv_to_rgb",
    "identity_params",
    "identity_raw",
    "luminance",
    "n_params",
    "param_ranges",
    "rgb_to_hsv",
    "squash",
    "unsquash",
]
