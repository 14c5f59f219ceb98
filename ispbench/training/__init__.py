"""The shared training kit: every trainer's command line, run folder, checkpoints and logs.

* :mod:`.config`: a trainer's documented dataclass as its command line (``parse``), flat
  overrides (``from_overrides``) and the command that rebuilds a config (``to_argv``).
* :mod:`.checkpoint`: RNG state capture/restore (readable with ``weights_only=True``) and the
  atomic ``last.pt`` checkpoint a rerun resumes from.
* :mod:`.run`: the run folder, the ``metrics.csv`` log, the progress bar, the closing "load it with" line.
* :mod:`.detection`: the detection-training settings and helpers of the AdaptiveISP and baseline trainers.
* :mod:`.detector`: the trainer of the embedded YOLO detector (``ispbench train detector``).
"""
