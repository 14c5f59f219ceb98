"""POS-ISP (CVPR 2026 Findings): the whole ISP module sequence and its parameters in one pass.

* :mod:`.networks`: the image-independent :class:`SequenceDecoder` (GRU with FiLM step embeddings and
  EOS), the per-image :class:`ParameterNet` and the inference model :class:`PosISP`;
* :mod:`.train`: the one-file trainer (``ispbench train posisp``): terminal task reward, parameters
  through the differentiable ISP, the sequence by REINFORCE (authors' no-baseline form, or with a
  running-mean / leave-one-out baseline);
* :mod:`.inference`: :func:`load_model`, :func:`export_model`, :func:`make_isp_fn`.
"""

from .inference import export_model, load_model, make_isp_fn
from .networks import ParameterNet, PosISP, SequenceDecoder

__all__ = ["ParameterNet", "PosISP", "SequenceDecoder", "export_model", "load_model", "make_isp_fn"]
