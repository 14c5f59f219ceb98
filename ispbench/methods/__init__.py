"""ISP methods: one sub-package per method (``adaptiveisp``, ``rlpixtuner``, ``baselines``)."""
