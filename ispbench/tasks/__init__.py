"""Tasks that score an ISP output (detection, finishing metrics) and the embedded detector's trainer."""
