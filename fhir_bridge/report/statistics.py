"""Descriptive statistics and Student's t quantile for the outcome report, in pure Python.

The t quantile inverts the t distribution function, written with the regularized incomplete
beta function (continued fraction, modified Lentz), so no SciPy is needed at run time:
F(t; v) = 1 - I_{v/(v+t^2)}(v/2, 1/2) / 2 for t >= 0.
https://dlmf.nist.gov/8.17 (incomplete beta, 8.17.22 continued fraction), https://dlmf.nist.gov/8.17.E2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPSILON = 1e-15
_TINY = 1e-300


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1 denominator); None below two values."""
    if len(values) < 2:
        return None
    centre = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - centre) ** 2 for v in values) / (len(values) - 1))


def quantile(values: Sequence[float], p: float) -> float | None:
    """The p-quantile by linear interpolation between order statistics (Hyndman and Fan
    type 7, the default of R, NumPy and pandas)."""
    if not values:
        return None
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (DLMF 8.17.22)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < _EPSILON:
            break
    return result


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # the fraction converges fast only below the mean; use the symmetry I_x(a,b) = 1 - I_1-x(b,a)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (0 < p < 1), by bisection
    of t_cdf to double precision."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    sd: float | None
    median: float | None
    q1: float | None
    q3: float | None


def summary(values: Sequence[float]) -> Summary:
    return Summary(
        len(values),
        mean(values),
        sd(values),
        quantile(values, 0.5),
        quantile(values, 0.25),
        quantile(values, 0.75),
    )


@dataclass(frozen=True)
class Change:
    """Paired change (later - baseline): mean with its t interval and Cohen's d_z."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    d_z: float | None


def paired_change(changes: Sequence[float], level: float = 0.95) -> Change:
    """Mean change with the paired t interval mean +/- t(1 - alpha/2, n - 1) * SD / sqrt(n), and
    d_z = mean change / SD of change (None when the SD is 0 or undefined)."""
    n = len(changes)
    centre, spread = mean(changes), sd(changes)
    if centre is None or spread is None:
        return Change(n, centre, spread, None, None, None)
    margin = t_quantile(1.0 - (1.0 - level) / 2.0, n - 1) * spread / math.sqrt(n)
    d_z = centre / spread if spread > 0 else None
    return Change(n, centre, spread, centre - margin, centre + margin, d_z)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t interval of a mean: mean +/- t(1 - alpha/2, n - 1) * SD / sqrt(n)."""
    centre, spread = mean(values), sd(values)
    if centre is None or spread is None:
        return None
    n = len(values)
    margin = t_quantile(1.0 - (1.0 - level) / 2.0, n - 1) * spread / math.sqrt(n)
    return centre - margin, centre + margin
