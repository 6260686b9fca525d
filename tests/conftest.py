"""Shared pytest configuration: hypothesis profiles and small generic fixtures.

Profiles (select with ``HYPOTHESIS_PROFILE=NAME``):

* ``default``: 30 examples per property, no deadline (the machines are small and shared; speed is
  measured by ``benchmarks/``, never asserted in tests), derandomised so that ``make test`` is
  reproducible;
* ``thorough``: 300 random examples per property, for a longer local run;
* ``random``: the default's 30 examples, drawn at random: with ``--hypothesis-seed=N`` each seed
  draws other problems (the stress runs: tolerances must hold for any seed, not for one);
* ``quick``: 10 examples, for iterating on a test;
* ``mutation``: 10 examples and no shrinking, to see quickly which tests a deliberately broken
  engine fails (shrinking a failure through the brute-force oracle is slow).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("default", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=300, derandomize=False, **_COMMON)
settings.register_profile("random", max_examples=30, derandomize=False, **_COMMON)
settings.register_profile("quick", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile(
    "mutation", max_examples=10, derandomize=True, phases=[Phase.explicit, Phase.generate], **_COMMON
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded random generator for example-based tests."""
    return np.random.default_rng(20211206)
