"""Hypothesis settings of the fuzz suite: a bounded, reproducible example budget for CI.

``ci`` (default): 60 examples per target, derandomized (the same examples on every run, so CI
is reproducible), no deadline (2 shared cores make timings noisy), no example database written
into the checkout. ``long``: ``HYPOTHESIS_PROFILE=long pytest test/fuzz`` explores 2,000 random
examples per target, for a nightly job or before a release. Targets that are slow per example
lower ``max_examples`` themselves with ``@settings``; the profile supplies the rest.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=2000, derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
