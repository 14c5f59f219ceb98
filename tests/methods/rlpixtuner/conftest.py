"""One torch thread in these tests: on a shared, oversubscribed CPU, multi-threaded small ops
spin and wait far longer than they compute."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every RLPixTuner test on one torch thread (``tests/conftest.py``)."""
