"""RLPixTuner (Wu et al., NeurIPS 2024): goal-conditioned TD3 for photo-finishing tuning.

* :mod:`.env`: the black-box tuning environment (reward, truncation, query counting).
* :mod:`.state`: the pre-computed state parts (64x64 images, histograms, statistics, pyramid, history).
* :mod:`.networks`: dual-path CNN encoder, actor and twin critics, Table 4 ablation switches.
* :mod:`.td3`: the TD3 algorithm (:class:`TD3`, :class:`TD3Config`).
* :mod:`.buffer`: the replay buffer (batched, vectorised ``add``).
* :mod:`.inference`: the deployable :class:`Policy` and the inference loop :func:`tune`.
* :mod:`.train`: the one-file trainer (``ispbench train rlpixtuner``).
"""

from ispbench.methods.rlpixtuner.env import FinishingEnv, Observation
from ispbench.methods.rlpixtuner.inference import Policy, Trajectory, tune
from ispbench.methods.rlpixtuner.networks import ABLATIONS, NetConfig
from ispbench.methods.rlpixtuner.td3 import TD3, TD3Config
from ispbench.paths import WEIGHTS_DIR

__all__ = ["FinishingEnv", "Observation", "ABLATIONS", "NetConfig", "TD3", "TD3Config", "Policy", "Trajectory", "tune",
           "shipped_weights"]


def shipped_weights(name: str = "rlpixtuner_embedded_seed0.pt"):
    """Path of a checkpoint shipped in ``ispbench/weights`` (a clear error if it is missing)."""
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights {path} not found; train with `ispbench train rlpixtuner` "
                                f"and copy <out_dir>/policy.pt there")
    return path
