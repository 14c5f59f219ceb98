"""The shared training kit: every trainer's command line, run folder, checkpoints and logs.

* :mod:`.config`: a trainer's documented dataclass as its command line (``parse``), flat
  overrides (``from_overrides``) and the command that rebuilds a config (``to_argv``).
"""
