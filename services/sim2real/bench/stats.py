"""Latency summaries."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def percentiles(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=float)
    return {"p50": round(float(np.percentile(values, 50)), 3), "p99": round(float(np.percentile(values, 99)), 3),
            "mean": round(float(values.mean()), 3), "n": int(values.size)}


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 10) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; milliseconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return percentiles(samples)
