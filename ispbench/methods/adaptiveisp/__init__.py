"""AdaptiveISP (Wang et al., NeurIPS 2024): an RL policy that builds a per-image ISP pipeline.

* :mod:`.networks`: policy (module selector + per-module parameter heads) and value networks;
* :mod:`.agent`: states, action sampling, one ISP stage, rewards and penalties;
* :mod:`.train`: the one-file trainer (``ispbench train adaptiveisp``);
* :mod:`.inference`: :func:`run_policy` (greedy, pipeline as data, timings), :func:`load_policy`;
* :mod:`.evaluation`: helpers behind the notebooks.
"""

from .inference import PolicyRun, load_policy, make_isp_fn, run_policy
from .networks import PolicyNet, ValueNet

__all__ = ["PolicyNet", "ValueNet", "PolicyRun", "load_policy", "make_isp_fn", "run_policy"]
