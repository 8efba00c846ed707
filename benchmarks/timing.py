"""Timing helpers that hold on a shared, noisy machine.

Interference from other processes only ever makes a run slower, so the best (shortest) of a few
repeats is the estimate of what the code costs; two things compared are timed alternately, so a
burst of load hits both.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Shortest wall time in seconds of `repeats` calls of `run`, after `warmup` untimed calls."""
    return best_times({"run": run}, repeats, warmup)["run"]


def best_times(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict:
    """{name: best time} of several functions, timed alternately (a, b, a, b, ...)."""
    return {name: min(times) for name, times in all_times(runs, repeats, warmup).items()}


def all_times(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict:
    """{name: [wall time of each of `repeats` calls]} of several functions, timed alternately
    (a, b, a, b, ...) after `warmup` untimed calls of each."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times
