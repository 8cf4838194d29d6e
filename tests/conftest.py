"""Shared test settings: hypothesis profiles for the property-based fuzzing suites.

`ci` (the default) is bounded and derandomized, so every CI run tries the same examples and the
whole suite stays within a few minutes on two cores; `--hypothesis-profile=thorough` explores far
more examples locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per test worker (and the processes it starts): two workers on two cores each
    # spinning two OpenMP threads slow everything down several-fold
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# for tests that take capsys and reset it themselves (capsys.readouterr()) for every example
CAPSYS_OK = [*_SLOW_OK, HealthCheck.function_scoped_fixture]

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("thorough", deadline=None, max_examples=2000,
                          suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci: int, most: int | None = None) -> int:
    """`ci` examples under the ci profile; otherwise the active profile's (larger) count, capped
    at `most` for properties that start processes or run networks."""
    if settings.get_current_profile_name() == "ci":
        return ci
    count = max(ci, settings().max_examples)
    return min(count, most) if most else count
