"""Shared pytest configuration: deterministic hypothesis, one torch thread, offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Derandomised: the same examples every run, so CI is reproducible. `--hypothesis-profile=explore`
# draws fresh examples.
settings.register_profile("default", derandomize=True, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("explore", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

try:  # keep torch to one thread in the test process (the shared CI box has 2 cores)
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
