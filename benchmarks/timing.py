"""Timing one callable: warm-up first, then repeats for at least a minimum time; percentiles and
throughput. Shared by every benchmark of the project."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class Timing:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    faces_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure(fn: Callable[[], object], batch: int, *, warmup: int = 3, min_runs: int = 10,
            min_seconds: float = 2.0, max_runs: int = 10_000) -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return Timing(batch, len(times), float(np.percentile(ms, 50)), float(np.percentile(ms, 90)),
                  float(np.percentile(ms, 99)), batch * len(times) / float(np.sum(times)))
