"""How the leaderboard's pages write an estimate with its confidence interval (shared by the
markdown and the HTML page, whose script writes the same digits)."""

from __future__ import annotations

import math

from metarl_bench import stats


def ci_decimals(half: float, value: float) -> int:
    """Decimals that show two significant digits of the CI half-width (4 of the value without one)."""
    if math.isfinite(half) and half > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(half)))))
    if math.isfinite(value) and value != 0:
        return int(min(6, max(0, 3 - math.floor(math.log10(abs(value))))))
    return 2


def fmt_ci(iv: stats.Interval | None) -> str:
    """``point [low, high]``, rounded to the interval's precision; ``—`` when undefined."""
    if iv is None or not math.isfinite(iv.point):
        return "—"
    d = ci_decimals((iv.high - iv.low) / 2, iv.point)
    return f"{iv.point:.{d}f} [{iv.low:.{d}f}, {iv.high:.{d}f}]"
