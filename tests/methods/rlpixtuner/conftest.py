"""One torch thread in these tests: on a shared, oversubscribed CPU, multi-threaded small ops
spin and wait far longer than they compute."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
