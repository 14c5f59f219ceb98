"""The IRPO throughput benchmark's step timing (the benchmark itself is a command, not a test)."""

import numpy as np
import pytest

from ispbench.methods.irpo.bench import _step_seconds, trainer_throughput


def test_step_seconds_are_differences_of_the_trainer_clock_after_warmup():
    rows = [{"iteration": 0, "val_psnr": 20.0},  # the initial validation row has no clock
            *({"iteration": i, "elapsed_s": t} for i, t in zip(range(1, 6), (5.0, 6.0, 8.0, 9.0, 11.0), strict=True))]
    np.testing.assert_allclose(_step_seconds(rows, warmup=0), [1.0, 2.0, 1.0, 2.0])
    np.testing.assert_allclose(_step_seconds(rows, warmup=2), [1.0, 2.0])


def test_throughput_refuses_no_steps():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        trainer_throughput(steps=0)
