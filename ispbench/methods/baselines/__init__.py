"""Baselines that are not learned per image (e.g. the camera's static default ISP)."""
