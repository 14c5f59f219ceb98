"""IRPO (arXiv 2512.00814): GRPO post-training of an all-in-one restoration network (AdaIR).

* :mod:`.network`: a small :class:`AdaIR` (Restormer-style encoder-decoder with three frequency
  modules) with IRPO's stochastic Beta heads, and the authors' paper-size configuration;
* :mod:`.pretrain`: the one-file L1 pre-trainer on five degradations (``ispbench train irpo-pretrain``);
* :mod:`.inference`: :func:`load_model`, :func:`export_model`, :func:`make_restore_fn`.
"""

from .inference import export_model, load_model, make_restore_fn
from .network import EMBEDDED_CONFIG, PAPER_CONFIG, AdaIR, AdaIRConfig

__all__ = ["EMBEDDED_CONFIG", "PAPER_CONFIG", "AdaIR", "AdaIRConfig", "export_model", "load_model", "make_restore_fn"]
