"""Baselines of the detection task: fixed-pipeline ISPs tuned for a frozen detector (HPO, attention-aware)."""
