"""How sure a table is: confidence intervals of a mean over seeds, and paired t-tests of a
variant against the baseline over the seeds both ran (same seed: same data order and
initialisation, so the pairs share their noise)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_PAIRS = 3  # fewer shared seeds: no test, the table says so


def confidence_half_width(values: tuple[float, ...], level: float = 0.95) -> float | None:
    """Half-width of the ``level`` confidence interval of the mean of ``values``, from the
    t-distribution with n - 1 degrees of freedom: ``t_{(1+level)/2, n-1} * s / sqrt(n)``; None
    for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    s = float(np.std(values, ddof=1))
    return float(stats.t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n)


@dataclass(frozen=True)
class PairedTest:
    """A variant against the baseline over their shared seeds: ``n`` pairs, the mean of the
    differences, the t statistic and two-sided p-value (None with fewer than MIN_PAIRS pairs)."""

    n: int
    mean_difference: float
    t: float | None
    p: float | None

    def significant(self, alpha: float) -> bool | None:
        """Whether the difference is significant at ``alpha``; None when untested."""
        return None if self.p is None else self.p < alpha


def paired_test(variant: dict[int, float], baseline: dict[int, float]) -> PairedTest:
    """Paired t-test of ``variant`` against ``baseline`` (values by seed) over the seeds both
    have: ``t = mean(d) / (s_d / sqrt(n))`` with ``d`` the per-seed differences, n - 1 degrees of
    freedom. Differences all equal give t = 0 (p = 1) when zero, else an infinite t (p = 0).
    A seed whose value is not finite on either side (a diverged run) is not a pair; no pair at
    all is an untested result with n = 0."""
    seeds = sorted(s for s in set(variant) & set(baseline)
                   if math.isfinite(variant[s]) and math.isfinite(baseline[s]))
    d = np.array([variant[s] - baseline[s] for s in seeds], dtype=float)
    mean = float(d.mean()) if len(d) else math.nan
    if len(d) < MIN_PAIRS:
        return PairedTest(len(d), mean, None, None)
    s = float(d.std(ddof=1))
    if s == 0:
        return PairedTest(len(d), mean, 0.0 if mean == 0 else math.copysign(math.inf, mean),
                          1.0 if mean == 0 else 0.0)
    t = mean / (s / math.sqrt(len(d)))
    return PairedTest(len(d), mean, t, float(2 * stats.t.sf(abs(t), len(d) - 1)))
