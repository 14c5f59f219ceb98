"""Baselines of the detection task: fixed-pipeline ISPs tuned for a frozen detector (HPO, attention-aware, ReconfigISP).

* :mod:`.pipeline`: the fixed pipeline and its renderer;
* :mod:`.hpo` (:class:`~.hpo.HPOISP`), :mod:`.attention` (:class:`~.attention.AttentionISP`): the parameter models;
* :mod:`.models`: build, load (``load_baseline``) and run (``make_isp_fn``) them;
* :mod:`.train`: their one-file trainer (``ispbench train hpo``, ``ispbench train attention``);
* :mod:`.reconfigisp` (:class:`~.reconfigisp.ReconfigSupernet`, :class:`~.reconfigisp.ReconfigDiscreteISP`): the
  ReconfigISP baseline, a DARTS supernet over the module pool discretised into a fixed pipeline; its trainer
  :mod:`.reconfigisp_train` (``ispbench train reconfigisp``);
* :mod:`.candidates`: what adaptivity can gain: candidate 5-module fixed pipelines tuned as HPO is
  (``ispbench train candidates``), a per-image detection cache, the per-image loss oracle and the
  random-pipeline control.
"""
