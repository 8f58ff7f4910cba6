"""Small statistics helpers shared by the driver and the report (no numpy on purpose)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max in milliseconds of latency samples given in seconds."""
    vals = sorted(seconds)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    return {
        "n": len(vals),
        "p50": ms(percentile(vals, 50)),
        "p90": ms(percentile(vals, 90)),
        "p99": ms(percentile(vals, 99)),
        "max": ms(vals[-1] if vals else None),
    }


def summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Median and min–max of the runs of one cell (None values are skipped)."""
    vals = sorted(v for v in values if v is not None and not math.isnan(v))
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    n = len(vals)
    mid = n // 2
    median = vals[mid] if n % 2 else (vals[mid - 1] + vals[mid]) / 2.0
    return {"n": n, "median": median, "min": vals[0], "max": vals[-1]}
